"""`xlsr plot RUN`: the training curves of a run folder as a PNG."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add the `plot` subcommand."""
    p = subparsers.add_parser("plot",
                              help="draw a run's training curves (loss, error rate, accuracy, perplexity) to PNG",
                              description="Draw the curves in RUN/log.jsonl (train and per-language validation; "
                                          "for fine-tuning the validation PER or CER; "
                                          "for pretraining also the features' effective dimension against its "
                                          "value at initialisation, channel-scale spread and probe error rates "
                                          "when logged).")
    p.add_argument("run", metavar="RUN", help="a run folder written by `xlsr pretrain` or `xlsr finetune`")
    p.add_argument("--out", metavar="PNG", help="output image (default: RUN/curves.png)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Plot and print the image path."""
    # lazy: xlsr.train (and matplotlib) imports torch (~6 s); `xlsr --help` imports every command module
    from xlsr.train.curves import plot_training_curves

    print(plot_training_curves(args.run, args.out))
    return 0
