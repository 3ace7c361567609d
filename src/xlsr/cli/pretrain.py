"""`xlsr pretrain`: self-supervised wav2vec 2.0 / XLSR pretraining on per-language manifests.

    xlsr pretrain --data DIR --preset tiny --out RUN --max-updates N [--alpha 0.5]
                  [--recipe tiny-demo] [--config run.yaml] [--<key> VALUE ...] [--model.<key> VALUE ...]

Settings are resolved as: defaults < --recipe YAML < --config YAML < command-line keys; the result is
saved in RUN/config.yaml. Re-running the same command on RUN resumes from RUN/checkpoints/last. A re-run with other
settings resumes with them from that update (learning rate and schedule, --max-updates, batch size, data, intervals);
what a resume cannot change is refused in one line naming the setting, its recorded value and the given one: --init,
--preset (without --init), a --model.* value (with a Hugging Face or fairseq --init also one left out), --seed, and a
--max-updates below the update reached.
Continuing from published weights: --init CKPT (an xlsr checkpoint or run folder, a Hugging Face folder, a fairseq .pt)
loads every weight, the quantizer's codebook included, into a new run with a fresh optimizer; the update count, the
learning rate's warmup and decay and the Gumbel temperature start at update 0 (the run says so; --model.latent_temp
holds the temperature). The model, its sizes and codebook are the checkpoint's: with --init, --model.* changes only the
training settings (dropouts, masking, negatives, temperatures, loss weights), which are the checkpoint's own, except
for a Hugging Face folder, whose config.json holds transformers' fine-tuning ones: those of --preset (by default the
preset shaped like it) are used, and the run lists them. A checkpoint without a quantizer (a CTC model) gives its
encoder; the quantizer and projections start afresh, said in one line, at the sizes its config.json names unless --model.*
gives others (final_dim, codevector_dim, num_codevector_groups, num_codevectors_per_group).
Several processes: `torchrun --nproc_per_node=N -m xlsr.cli.main pretrain ...` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os

from xlsr.cli import add_config_command, resolve_config, training_status

# Listed by `xlsr --help` without building the options below (they come from the config dataclasses, which import torch).
HELP = "self-supervised pretraining (wav2vec 2.0 / XLSR) with α language sampling"


def register(subparsers) -> None:
    """Add the `pretrain` subcommand."""
    from xlsr.train.pretrain import PretrainConfig  # lazy: imports torch; see HELP above

    p = add_config_command(
        subparsers, "pretrain", PretrainConfig, help=HELP, description=__doc__,
        own={"recipe": dict(metavar="NAME", help="a shipped recipe (e.g. tiny-demo), applied before --config")},
        model_group="model settings (override the --preset, or with --init the checkpoint's config)",
        model_other_default="the preset's")
    p.set_defaults(func=run)


def run(args) -> int:
    """Resolve the configuration and pretrain."""
    from xlsr.train.pretrain import PretrainConfig, pretrain  # lazy: imports torch; see HELP
    cfg = resolve_config(PretrainConfig, args, recipe_kind="pretrain")
    run_dir = pretrain(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(closing_line(run_dir))
    return training_status(run_dir, cfg.max_updates)


def closing_line(run_dir) -> str:
    """'run folder: RUN  (...)' naming what the run wrote of its usual files: no `best` without validation, no tb/
    with --tensorboard false."""
    held = [name for name in ("checkpoints/last", "checkpoints/best", "log.jsonl", "tb/") if (run_dir / name).exists()]
    return f"run folder: {run_dir}  ({', '.join([*held, f'`xlsr plot {run_dir}`'])})"
