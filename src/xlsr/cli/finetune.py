"""`xlsr finetune`: CTC fine-tuning of a pretrained (or random) wav2vec 2.0 / XLSR encoder on phones or characters.

    xlsr finetune --init CKPT_OR_RUN --train M [M ...] --dev M [M ...] --labels phones|chars --out RUN
                  [--max-updates N] [--lr X] [--freeze-ratio R | --freeze-updates N] [--config run.yaml]
                  [--<key> VALUE ...] [--model.<key> VALUE ...] [--target-lang LANG [--train-only adapters]]
                  [--recipe vox-10m|vox-1h|vox-10h|vox-100h|xls-r-commonvoice]

`--init` takes our checkpoint folder, a pretraining run folder, a Hugging Face folder or a fairseq .pt;
`--init none` trains from random weights (the paper's baseline). Several --train manifests (one per language)
give one multilingual model over the union vocabulary. Whatever the init, the CNN stays frozen and the
Transformer is frozen for the first --freeze-ratio share of the updates (default half; --freeze-updates N
for a count), as fairseq fine-tunes pretrained models; for a model trained from scratch in every layer, add
--freeze-feature-encoder false --freeze-ratio 0. The learning rate follows the tri-stage schedule. The dev error rate
(PER for phones, CER for chars) is logged per language every --valid-every updates in RUN/log.jsonl (`split`
valid_LANG; `xlsr plot RUN`); pooled over the languages (their errors over their reference symbols) it picks
RUN/checkpoints/best, whose update and rates the run prints as it ends. A training language without dev utterances,
or a dev language without training ones, is warned about. Settings: defaults < --config YAML < command-line keys,
saved in RUN/config.yaml; re-running the same command resumes. A re-run with other settings resumes with them from
that update (learning rate and schedule, --max-updates, --max-tokens, manifests, intervals); what a resume cannot
change is refused in one line naming the setting, its recorded value and the given one: --init, --target-lang, the vocabulary, a --model.* value
(with a Hugging Face or fairseq --init also one left out), --seed, --labels, --new-head, --blank-bias, --train-only,
--freeze-feature-encoder, and a --max-updates below the update reached. The defaults are sized for the tiny models
on a CPU; --recipe NAME applies fairseq's published fine-tuning settings for Large / XLSR-53 / XLS-R models
(GPU-sized; settings: defaults < recipe < --config < command line; a `recipe:` key in the --config YAML applies that
recipe too). The recipes freeze the Transformer for a count of updates (--freeze-updates); --freeze-ratio on the
command line replaces that count.

MMS checkpoints with per-language adapters: --target-lang LANG loads that language. With --train-only
adapters only the adapters and the CTC head train (MMS's recipe for adding a language, ~2M parameters
for MMS-1B); a LANG the checkpoint lacks is a new language whose adapters and head start afresh, and
the run ends by writing RUN/adapter/ (adapter.LANG.safetensors and vocab.json for transformers'
load_adapter; train/language_adapters.py).
"""

from __future__ import annotations

import os

from xlsr.cli import add_config_command, resolve_config, training_status

# Listed by `xlsr --help` without building the options below (they come from the config dataclasses, which import torch).
HELP = "CTC fine-tuning on labeled phones or characters"


def register(subparsers) -> None:
    """Add the `finetune` subcommand."""
    # lazy: the config's module brings numpy (0.1-0.6 s measured with -X importtime, load-dependent), and
    # `xlsr --help` imports every command module but registers only the one it runs
    from xlsr.train.finetune_config import FinetuneConfig, finetune_model_defaults

    manifests = dict(nargs="+", action="extend", metavar="MANIFEST")
    p = add_config_command(
        subparsers, "finetune", FinetuneConfig, help=HELP, description=__doc__,
        own={"train": dict(manifests, help="training manifest(s) (JSONL)"),
             "dev": dict(manifests, help="dev manifest(s) for validation"),
             "recipe": dict(metavar="NAME", help="a shipped fine-tuning recipe, applied before --config: fairseq's "
                            "vox-10m, vox-1h, vox-10h, vox-100h (Large / XLSR-53 by labeled-set size) or "
                            "xls-r-commonvoice (src/xlsr/recipes/finetune/)")},
        model_group="model settings (override the --init checkpoint's config, or with --init none the --preset's: "
                    "masks, dropouts; the defaults shown are fine-tuning's own, a --recipe may change them)",
        model_defaults=finetune_model_defaults(), model_other_default="the init's")
    p.set_defaults(func=run)


def finetune_config(args):
    """The FinetuneConfig of parsed `args`: defaults < recipe < --config < command line; a --freeze-ratio on the
    command line replaces a recipe's or YAML's --freeze-updates count (a count wins over a ratio otherwise)."""
    from xlsr.config import collect_overrides, set_override  # lazy: as in add_config_command
    from xlsr.train.finetune_config import FinetuneConfig

    given = collect_overrides(args)
    if "freeze_ratio" in given and "freeze_updates" not in given:
        set_override(args, "freeze_updates", "null")
    return resolve_config(FinetuneConfig, args, recipe_kind="finetune")


def run(args) -> int:
    """Resolve the configuration and fine-tune."""
    # lazy: xlsr.train.finetune imports torch (~5 s measured with -X importtime); `xlsr --help` imports every command module
    from xlsr.train.finetune import best_dev_summary, finetune
    from xlsr.train.language_adapters import ADAPTER_DIR

    cfg = finetune_config(args)
    run_dir = finetune(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: said once, by rank 0 (the rank that wrote the run folder)
        return training_status(run_dir, cfg.max_updates)
    if cfg.dev:  # the lowest dev error rate so far, where transcribe and evaluate take a run folder's model from
        kept = best_dev_summary(run_dir, cfg.labels) or "no validation yet: checkpoints/last is the latest model"
    else:
        kept = "no --dev: checkpoints/last is the final model"
    print(f"run folder: {run_dir}  ({kept}; "
          f"`xlsr transcribe --model {run_dir} ...`, `xlsr evaluate --model {run_dir} ...`)")
    if cfg.train_only == "adapters":
        print(f"adapter for transformers: {run_dir / ADAPTER_DIR}/adapter.{cfg.target_lang}.safetensors "
              f"(+ its vocab.json entry)")
    return training_status(run_dir, cfg.max_updates)
