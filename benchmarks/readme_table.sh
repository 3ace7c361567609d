#!/bin/bash
# Re-measure the README's "Measured so far" table: each row's command, its printed output kept in
# benchmarks/results/<date>/<name>.txt, and the machine's load before and after in machine.txt.
# Run it on an otherwise idle machine (the figures move by 2-5x under contention): bash benchmarks/readme_table.sh
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results/$(date +%F)
mkdir -p "$OUT"
run() {  # name, then the command's arguments
    local name=$1; shift
    echo "\$ python $*" > "$OUT/$name.txt"
    $PY "$@" >> "$OUT/$name.txt" 2>&1
    echo "$name: done"
}
{ date; uptime; } > "$OUT/machine.txt"
run pretrain_step benchmarks/pretrain_step.py --preset tiny --batch 8 --seconds 4 --threads 2
run pretrain_step_ac benchmarks/pretrain_step.py --preset tiny --batch 8 --seconds 4 --threads 2 --activation-checkpointing
run finetune_infer benchmarks/finetune_infer.py --preset tiny --threads 2
run pretrain_throughput benchmarks/pretrain_throughput.py
{ date; uptime; } >> "$OUT/machine.txt"
