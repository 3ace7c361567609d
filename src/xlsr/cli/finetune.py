"""`xlsr finetune`: CTC fine-tuning of a pretrained (or random) wav2vec 2.0 / XLSR encoder on phones or characters.

    xlsr finetune --init CKPT_OR_RUN --train M [M ...] --dev M [M ...] --labels phones|chars --out RUN
                  [--max-updates N] [--lr X] [--freeze-updates N] [--config run.yaml] [--<key> VALUE ...]
                  [--model.<key> VALUE ...]

`--init` takes our checkpoint folder, a pretraining run folder, a Hugging Face folder or a fairseq .pt;
`--init none` trains from scratch (the paper's baseline). Several --train manifests (one per language)
give one multilingual model over the union vocabulary. The CNN stays frozen, the Transformer is frozen
for --freeze-updates updates; the learning rate follows the tri-stage schedule. The dev error rate
(PER for phones, CER for chars) is reported per language every --valid-every updates and picks
RUN/checkpoints/best. Settings: defaults < --config YAML < command-line keys, saved in RUN/config.yaml;
re-running the same command resumes.
"""

from __future__ import annotations

import argparse

# Listed by `xlsr --help` without building the options below (they come from the config dataclasses, which import torch).
HELP = "CTC fine-tuning on labeled phones or characters"


def register(subparsers) -> None:
    """Add the `finetune` subcommand."""
    from xlsr.config import add_config_arguments
    from xlsr.model import Wav2Vec2Config
    from xlsr.train.finetune import FinetuneConfig

    p = subparsers.add_parser(
        "finetune", help=HELP,
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="YAML", help="a YAML file of settings (command-line keys override it)")
    p.add_argument("--train", nargs="+", action="extend", metavar="MANIFEST", help="training manifest(s) (JSONL)")
    p.add_argument("--dev", nargs="+", action="extend", metavar="MANIFEST", help="dev manifest(s) for validation")
    add_config_arguments(p, FinetuneConfig, skip=("train", "dev"))
    group = p.add_argument_group("model settings (override the init checkpoint's config: masks, dropouts)")
    add_config_arguments(group, Wav2Vec2Config, prefix="model.")
    p.set_defaults(func=run)


def run(args) -> int:
    """Resolve the configuration and fine-tune."""
    from xlsr.config import collect_overrides, load_config
    from xlsr.train.finetune import FinetuneConfig, finetune

    overrides = collect_overrides(args)
    for key in ("train", "dev"):
        if getattr(args, key, None):
            overrides[key] = list(getattr(args, key))
    cfg = load_config(FinetuneConfig, [args.config] if args.config else None, overrides)
    run_dir = finetune(cfg)
    print(f"run folder: {run_dir}  (checkpoints/best is the lowest dev error; "
          f"`xlsr transcribe --model {run_dir} ...`, `xlsr evaluate --model {run_dir} ...`)")
    return 0
