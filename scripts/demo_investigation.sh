#!/usr/bin/env bash
# The second round of docs/demo/investigation.md: which difference between the demo and the paper makes
# monolingual pretraining beat multilingual on the demo's target. Three extra pretraining runs (the tiny-demo
# recipe), each fine-tuned in two conditions and evaluated on the demo's Italian test set.
# About 80 minutes on the 2-core CPU (runs one thread each, two or three at a time).
#
#   bash scripts/demo_investigation.sh WORK        # WORK: a new folder for corpora, runs and results
#   QUICK=1 bash scripts/demo_investigation.sh /tmp/inv   # the plumbing in a minute (tiny corpora, 2 updates)
set -euo pipefail
UTTS=1000; SMALL=120; PT=800; PT_LONG=1600; FT=800; FREEZE=25
if [ -n "${QUICK:-}" ]; then UTTS=12; SMALL=4; PT=2; PT_LONG=4; FT=2; FREEZE=1; fi
WORK=$(realpath -m "${1:?usage: demo_investigation.sh WORK}")
X=${XLSR:-$(dirname "$0")/../.venv/bin/xlsr}
X=$(realpath "$X")
RELEASED=$(dirname "$(realpath "$0")")/../src/xlsr/released
export OMP_NUM_THREADS=1
mkdir -p "$WORK" && cd "$WORK"

# Corpora: the release corpora (seed 1), and the demo's (seed 0) for fine-tuning and testing.
$X synth --out corpus15 --langs es,pt,fr,ro,ca,en,de,nl,sv,ru,pl,cs,fi,hu,tr --utts-per-lang $UTTS --seed 1 --workers 2
$X synth --out corpus_it --langs it --utts-per-lang $UTTS --seed 1 --workers 2
mkdir -p corpus16 corpus_it_small/it
for d in corpus15/*/ corpus_it/*/; do ln -sfn "$WORK/$d" "corpus16/$(basename "$d")"; done
ln -sfn "$WORK/corpus_it/it/audio" corpus_it_small/it/audio          # 7 min of unlabeled Italian
head -$SMALL corpus_it/it/train.jsonl > corpus_it_small/it/train.jsonl
cp corpus_it/it/dev.jsonl corpus_it_small/it/
"${X%/xlsr}/python" -c "from pathlib import Path; from xlsr.demo import DemoSettings, synthesize; \
synthesize(DemoSettings(), Path('demo_corpus'), False)"
head -30 demo_corpus/it/train.jsonl > demo_corpus/it/train30.jsonl   # 1.6 min of labels

pretrain() {  # NAME DATA UPDATES (every language folder in DATA)
    $X pretrain --recipe tiny-demo --data "$2" --out "run_$1" --seed 1 --alpha 0.5 --valid-split dev \
        --max-updates "$3" --progress false > "pt_$1.log" 2>&1
}
# The demo's fine-tuning settings when this round ran (lr 1e-3, Transformer frozen for 25 updates), pinned: the
# fine-tuning defaults have changed since (docs/demo/investigation.md, third round).
finetune() {  # NAME INIT TRAIN [finetune options]: the round's fine-tuning settings, then test PER
    local name=$1 init=$2 train=$3
    shift 3
    $X finetune --init "$init" --train "$train" --dev demo_corpus/it/dev.jsonl --labels phones --out "ft_$name" \
        --max-updates $FT --max-tokens 120000 --seed 1 --lr 0.001 --freeze-updates $FREEZE --progress false "$@" > "ft_$name.log" 2>&1
    $X evaluate --model "ft_$name" --manifest demo_corpus/it/test.jsonl > "eval_$name.txt" 2>&1
}
both_conditions() {  # NAME INIT: 6.5 min of labels with the CNN frozen (the demo), 1.6 min with it trainable
    finetune "$1_frozen" "$2" demo_corpus/it/train.jsonl &
    local frozen=$!
    finetune "$1_30" "$2" demo_corpus/it/train30.jsonl --freeze-feature-encoder false &
    local thirty=$!
    wait $frozen; wait $thirty  # each job's status: a failed run stops the script (a bare `wait` hides it)
}

pretrain multi_it corpus16 $PT &        # the 15 languages + Italian (46 min of 710)
a=$!
pretrain multi_1600 corpus15 $PT_LONG &  # the released multilingual recipe, twice the updates
b=$!
pretrain mono_small corpus_it_small $PT &
c=$!
wait $a; wait $b; wait $c
both_conditions multi_it run_multi_it/checkpoints/last
both_conditions multi1600 run_multi_1600/checkpoints/last
both_conditions mono_small run_mono_small/checkpoints/last
# the released checkpoints again in the 1.6-minute condition: the run-to-run spread
finetune rel_multi_30 "$RELEASED/tiny-multilingual" demo_corpus/it/train30.jsonl --freeze-feature-encoder false &
a=$!
finetune rel_mono_30 "$RELEASED/tiny-monolingual-it" demo_corpus/it/train30.jsonl --freeze-feature-encoder false &
b=$!
wait $a; wait $b
grep -H '^total' eval_*.txt  # xlsr evaluate's last row: every language together
