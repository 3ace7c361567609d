#!/usr/bin/env bash
# The GPU figures the open issues ask for, in one command on the lent GPU machine (prepare here first with
# scripts/gpu_checks/prepare.py, then run through the device tool: `bash scripts/gpu_checks/run.sh`, carry
# [".gpu"], timeout_s 600). Everything lands in $OUT (at most 8 files):
#   gpu.txt                      the GPU, torch and transformers versions
#   pretrain_step_base_bf16.txt  issue #2: one `base` pretraining step in bf16, xlsr vs transformers, plain and
#                                with activation checkpointing (speed ratio, activation memory)
#   demo_full.log                issues #4 and #7: `xlsr demo --full` on the GPU: both releases re-created (the
#                                tiny-demo recipe as shipped: 1600 updates of two batches each, side by side), then the demo
#   report.md, *.RECIPE.md, multilingual_curve.png   what the demo and the release builds wrote
#   speed.txt                    issue #17: the layer-norm CNN's convolution implementations timed side by side
#                                (fp32 and bf16; which one CONV_IMPL should pick on CUDA), then the top ops and the
#                                host syncs (set_sync_debug_mode) of a `base` and an `xls-r-300m` pretraining step
# CHECKS picks the parts (default all: "step speed demo"); e.g. CHECKS=speed runs issue #17's alone (~3 min).
# A dry run of the plumbing on a CPU: DEVICE=cpu QUICK=1 OUT=/tmp/gpu_out bash scripts/gpu_checks/run.sh
set -uo pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu_out}
CHECKS=" ${CHECKS:-step speed demo} "
mkdir -p "$OUT"
if [ -n "${QUICK:-}" ]; then
    STEP_ARGS="--preset tiny --batch 2 --seconds 2 --steps 1 --warmup 0 --dtype fp32"
    CNN_ARGS="--channels 32 --batch 2 --seconds 1 --repeat 2"
    PROFILE_ARGS="--preset tiny --batch 2 --seconds 2 --warmup 1 --dtype fp32"
    PROFILE_LN_ARGS="$PROFILE_ARGS"
    DEMO_ARGS="--quick"
    PY=${PY:-.venv/bin/python}
else
    STEP_ARGS="--preset base --batch 8 --seconds 10 --steps 10 --warmup 3 --dtype bf16"
    CNN_ARGS="--channels 512 --batch 8 --seconds 15 --repeat 10"
    PROFILE_ARGS="--preset base --batch 8 --seconds 10 --warmup 3 --dtype bf16 --top 20"
    PROFILE_LN_ARGS="--preset xls-r-300m --batch 4 --seconds 10 --warmup 3 --dtype bf16 --top 20"
    DEMO_ARGS=""
    PY=${PY:-python3}
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD/.gpu:/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi";
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'cpus', __import__('os').cpu_count())"; } | tee "$OUT/gpu.txt"

# Issue #2: `base`, bf16 autocast, forward + backward + Adam; then the same with activation checkpointing.
if [[ $CHECKS == *" step "* ]]; then
timeout 120 $PY benchmarks/pretrain_step.py $STEP_ARGS --device "$DEVICE" 2>&1 | tee "$OUT/pretrain_step_base_bf16.txt"
timeout 90 $PY benchmarks/pretrain_step.py $STEP_ARGS --device "$DEVICE" --activation-checkpointing 2>&1 \
    | tee -a "$OUT/pretrain_step_base_bf16.txt"
fi

# Issue #17: the layer-norm CNN's convolution on CUDA (model/channels_last_conv.py picks "conv", cuDNN, unless
# this says otherwise), fp32 and bf16; then where a pretraining step's time goes, and its host syncs (expected:
# the one of mask_spans, the masked-frame count M).
if [[ $CHECKS == *" speed "* ]]; then
{ for dtype in fp32 bf16; do
      timeout 120 $PY benchmarks/cnn_conv.py $CNN_ARGS --dtype $dtype --device "$DEVICE" 2>&1
  done
  timeout 150 $PY benchmarks/profile_step.py $PROFILE_ARGS --device "$DEVICE" 2>&1
  timeout 150 $PY benchmarks/profile_step.py $PROFILE_LN_ARGS --device "$DEVICE" 2>&1
} | grep -v "^USDT" | tee "$OUT/speed.txt"
fi

# Issues #4 and #7: the releases re-created from scratch on the GPU, then the demo, timed stage by stage.
if [[ $CHECKS == *" demo "* ]]; then
rm -rf /tmp/xlsr_demo
start=$(date +%s)
timeout 400 $PY -m xlsr.cli.main demo --full --out /tmp/xlsr_demo --device "$DEVICE" $DEMO_ARGS \
    > "$OUT/demo_full.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/demo_full.log"
tail -25 "$OUT/demo_full.log"
cp /tmp/xlsr_demo/report.md "$OUT/" 2>/dev/null
for name in tiny-multilingual tiny-monolingual-it; do
    cp "/tmp/xlsr_demo/released/$name/RECIPE.md" "$OUT/$name.RECIPE.md" 2>/dev/null
done
cp /tmp/xlsr_demo/released/tiny-multilingual/curve.png "$OUT/multilingual_curve.png" 2>/dev/null
fi
ls -la "$OUT"
