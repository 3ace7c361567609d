"""`xlsr demo --out DIR`: the whole XLSR story on the embedded corpus in about 20 CPU minutes.

Synthesizes the corpus, fine-tunes three tiny models on the target language (from the released
multilingual checkpoint, the released monolingual one, from random weights; three seeds each, one
fine-tuning configuration for all but the peak learning rate, chosen per initialisation on the dev set by one
rule) and reports their PER as mean ± sample sd (n−1), analyses the multilingual
checkpoint's shared units, runs a short live pretraining, and writes DIR/report.md.

--target LANG makes any synthesizable language the low-resource target. A language the released
multilingual checkpoint was pretrained on (the corpus.langs of its recipe.json) is refused unless --full
re-creates the releases without it; --full builds its own releases, so it does not go with --released.
"""

from __future__ import annotations

import argparse

from xlsr.cli import finite_float
from xlsr.released.recipes import MULTILINGUAL_LANGS, TARGET


def register(subparsers) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser("demo", help="the full demo: fine-tuning comparison, shared units, live pretraining",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or an earlier demo's)")
    p.add_argument("--target", default=TARGET, metavar="LANG",
                   help=f"the low-resource target language (default {TARGET}); without --full, not one of the "
                        f"released multilingual checkpoint's languages ({','.join(MULTILINGUAL_LANGS)})")
    p.add_argument("--full", action="store_true",
                   help="first re-create the released checkpoints from scratch into DIR/released, without the target "
                        "(~65 min more on a 2-core CPU; see src/xlsr/released/README.md)")
    p.add_argument("--quick", action="store_true", help="a run of every stage on a tiny scale, under a minute (for tests)")
    p.add_argument("--released", metavar="DIR", help="use the released checkpoints in DIR (default: the shipped ones); each folder as the build "
                        "writes it (recipe.json included); not with --full")
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, metavar="N",
                   help="fine-tuning runs at a time, each in its own process (default: one per CPU core, at most 4; "
                        "1 on a GPU)")
    p.add_argument("--shared-lr", type=finite_float, metavar="RATE",
                   help="one peak fine-tuning rate for all three initialisations instead of each one's rate chosen on "
                        "dev (DemoSettings.finetune_lr; 5e-4 reproduces the demo before 2026-12-05)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the PER table."""
    # lazy: importing xlsr.demo adds ~0.06 s to `xlsr --help` (which imports every command module)
    from xlsr.demo import DemoSettings, per_table, run_demo
    from xlsr.errors import XlsrError

    settings = DemoSettings.quick(args.target) if args.quick else DemoSettings(target=args.target)
    settings.device = args.device
    if args.workers is not None:
        if args.workers < 1:
            raise XlsrError(f"--workers: the number of fine-tuning runs at a time, 1 or more, got {args.workers}")
        settings.finetune_workers = args.workers
    if args.shared_lr is not None:
        if not 0 < args.shared_lr < 1:
            raise XlsrError(f"--shared-lr: a peak learning rate between 0 and 1, got {args.shared_lr:g}")
        settings.finetune_lr = dict.fromkeys(settings.finetune_lr, args.shared_lr)
    result = run_demo(args.out, settings, released_dir=args.released, full=args.full, quick_release=args.quick)
    print()
    where = "held-out test set and test split" if settings.eval_utts else "test set"
    print(f"Phone error rate on the {settings.target} {where} (mean ± sample sd (n−1) over "
          f"{len(settings.finetune_seeds)} seeds):")
    print(per_table(result.finetune, settings.target))
    print(f"report: {result.report}")
    return 0
