"""`xlsr pretrain`: self-supervised wav2vec 2.0 / XLSR pretraining on per-language manifests.

    xlsr pretrain --data DIR --preset tiny --out RUN --max-updates N [--alpha 0.5]
                  [--recipe tiny-demo] [--config run.yaml] [--<key> VALUE ...] [--model.<key> VALUE ...]

Settings are resolved as: defaults < --recipe YAML < --config YAML < command-line keys; the result is
saved in RUN/config.yaml. Re-running the same command on RUN resumes from RUN/checkpoints/last.
Several processes: `torchrun --nproc_per_node=N -m xlsr.cli.main pretrain ...` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse
import os

# Listed by `xlsr --help` without building the options below (they come from the config dataclasses, which import torch).
HELP = "self-supervised pretraining (wav2vec 2.0 / XLSR) with α language sampling"


def register(subparsers) -> None:
    """Add the `pretrain` subcommand."""
    from xlsr.config import add_config_arguments
    from xlsr.model import Wav2Vec2Config
    from xlsr.train.pretrain import PretrainConfig

    p = subparsers.add_parser(
        "pretrain", help=HELP,
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings (command-line keys override it)")
    p.add_argument("--recipe", metavar="NAME", help="a shipped recipe (e.g. tiny-demo), applied before --config")
    add_config_arguments(p, PretrainConfig, skip=("recipe",))
    group = p.add_argument_group("model settings (override the preset)")
    add_config_arguments(group, Wav2Vec2Config, prefix="model.")
    p.set_defaults(func=run)


def run(args) -> int:
    """Resolve the configuration and pretrain."""
    from xlsr.config import collect_overrides, load_config
    from xlsr.train.pretrain import PretrainConfig, pretrain, recipe_path

    overrides = collect_overrides(args)
    yamls = []
    if args.recipe:
        yamls.append(recipe_path(args.recipe))
        overrides["recipe"] = args.recipe
    if args.config:
        yamls.append(args.config)
    cfg = load_config(PretrainConfig, yamls, overrides)
    run_dir = pretrain(cfg)
    if os.environ.get("RANK", "0") == "0":
            print(f"run folder: {run_dir}  (checkpoints/last, checkpoints/best, log.jsonl, tb/; `xlsr plot {run_dir}`)")
    return 0
