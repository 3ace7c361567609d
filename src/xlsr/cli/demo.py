"""`xlsr demo --out DIR`: the whole XLSR story on the embedded corpus in about 20 CPU minutes.

Synthesizes the corpus, fine-tunes three tiny models on the target language (from the released
multilingual checkpoint, the released monolingual one, from scratch) and reports their PER, analyses the
multilingual checkpoint's shared units, runs a short live pretraining, and writes DIR/report.md.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser("demo", help="the full demo: fine-tuning comparison, shared units, live pretraining",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or an earlier demo's)")
    p.add_argument("--full", action="store_true",
                   help="first re-create the released checkpoints from scratch into DIR/released (~30 min more on a 2-core CPU; "
                        "see src/xlsr/released/README.md)")
    p.add_argument("--quick", action="store_true", help="a seconds-long run of every stage (for tests)")
    p.add_argument("--released", metavar="DIR", help="use the released checkpoints in DIR (default: the shipped ones)")
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the PER table."""
    # lazy: importing xlsr.demo adds ~0.06 s to `xlsr --help` (which imports every command module)
    from xlsr.demo import DemoSettings, per_table, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    settings.device = args.device
    result = run_demo(args.out, settings, released_dir=args.released, full=args.full, quick_release=args.quick)
    print()
    print(f"Phone error rate on the {settings.target} test set:")
    print(per_table(result.finetune))
    print(f"report: {result.report}")
    return 0
