#!/usr/bin/env bash
# Re-create the released checkpoints (src/xlsr/released/<name>/) from scratch:
#   xlsr synth (the release's corpus) -> xlsr pretrain --recipe tiny-demo -> xlsr plot -> release folder
# with config.json + model.safetensors (the run's last checkpoint), curve.png, recipe.json and RECIPE.md
# recording the exact commands, seeds, corpus, compute and final metrics.
#
#   scripts/release_checkpoints.sh                          # both releases, device auto, into src/xlsr/released
#   scripts/release_checkpoints.sh --device cuda --parallel # on one GPU, both runs at once
#   scripts/release_checkpoints.sh --quick --dest /tmp/rel  # seconds-long check of the machinery
#
# Options: --dest DIR --work DIR --names NAME... --device D --precision P --num-workers N
#          --synth-workers N --parallel --quick   (python -m xlsr.released.build --help)
# Re-running resumes: corpora are kept when unchanged and `xlsr pretrain` resumes its run folders.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
exec "$PY" -m xlsr.released.build "$@"
