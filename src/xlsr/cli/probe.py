"""`xlsr probe`: layer-wise linear CTC probe of frozen encoders (test PER per layer, one line per model).

    xlsr probe --model CKPT [--model CKPT2 ...] --train TRAIN.jsonl --test TEST.jsonl --out DIR
               [--layers all|cnn,0,3,...] [--labels phones|chars] [--epochs N] [--lr X] [--seed N]

For the CNN output ("cnn") and every Transformer layer (0 = the first block's input, i = block i's output), a
linear CTC head is trained on the frozen features of TRAIN and scored on TEST by greedy decoding. Writes
DIR/probe.json and DIR/probe.png (error rate by layer; several --model share one plot), over an earlier probe's
files only: another file of either name in DIR is refused and left as it is (with --no-plot, an earlier probe's
probe.png is removed, a user's file of that name kept). Any checkpoint `load_pretrained` reads: ours, Hugging Face,
fairseq, or a run folder; each once. Both files are written again after each model: Ctrl-C keeps
the models finished (their table is printed, exit code 130).
"""

from __future__ import annotations

import argparse
import sys

from xlsr.cli import INTERRUPTED, finite_float

# Listed by `xlsr --help` without importing torch (the option defaults come from ProbeSettings).
HELP = "layer-wise linear CTC probe of frozen encoders: test PER by layer, several models on one plot"


def register(subparsers) -> None:
    """Add the `probe` subcommand."""
    # lazy: xlsr.analysis imports torch (~5 s measured with -X importtime); `xlsr --help` lists HELP without registering
    from xlsr.analysis.probe import ProbeSettings

    d = ProbeSettings()
    p = subparsers.add_parser("probe", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, action="append", metavar="CKPT",
                   help="checkpoint to probe (ours, HF directory, fairseq .pt, run folder); repeat to compare")
    p.add_argument("--train", required=True, metavar="JSONL", help="labeled manifest the heads train on")
    p.add_argument("--test", required=True, metavar="JSONL", help="labeled manifest the error rates come from")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (probe.json, probe.png)")
    p.add_argument("--layers", default="all", help="all (default), or a list such as cnn,0,3")
    p.add_argument("--labels", choices=("phones", "chars"), default="phones",
                   help="manifest field to predict: phones (PER) or text as characters (CER) (default: phones)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the train features (default: {d.epochs})")
    p.add_argument("--lr", type=finite_float, default=d.lr, help=f"Adam learning rate, cosine decay (default: {d.lr:g})")
    p.add_argument("--batch-frames", type=int, default=d.batch_frames, metavar="N",
                   help=f"padded frames per head-training batch (default: {d.batch_frames})")
    p.add_argument("--max-batch-samples", type=int, default=d.max_batch_samples, metavar="N",
                   help=f"padded audio samples per encoder forward pass (default: {d.max_batch_samples})")
    p.add_argument("--cache-dtype", choices=("float32", "float16"), default=d.cache_dtype,
                   help="precision of the cached features (float16 halves their memory) (default: float32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order (default: 0)")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-plot", action="store_true",
                   help="write probe.json only (an earlier probe's probe.png in DIR is removed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Probe every model and print the table of error rates by layer."""
    from xlsr.analysis.probe import (  # lazy: as in register
        JSON_FILE,
        ProbeInterrupted,
        ProbeSettings,
        format_summary,
        probe,
    )

    settings = ProbeSettings(epochs=args.epochs, lr=args.lr, batch_frames=args.batch_frames,
                             max_batch_samples=args.max_batch_samples,
                             cache_dtype=args.cache_dtype)
    try:
        report = probe(args.model, args.train, args.test, args.out, layers=args.layers, labels=args.labels,
                       settings=settings, seed=args.seed, device=args.device, plot=not args.no_plot)
    except ProbeInterrupted as stop:  # Ctrl-C after some models: what they found is written, and shown
        report = stop.report
        done = report.summary.get("models") or [report.summary]
        print(format_summary(report.summary))
        again = "; the same command probes them all again" if len(done) < len(args.model) else ""
        print(f"xlsr: interrupted: {report.out_dir / JSON_FILE} holds the {len(done)} of {len(args.model)} models "
              f"finished ({', '.join(e['name'] for e in done)}){again}", file=sys.stderr)
        return INTERRUPTED
    print(format_summary(report.summary))
    print(f"wrote {', '.join(sorted(p.name for p in report.files.values()))} to {report.out_dir} "
          f"({report.summary['seconds']:.0f} s)")
    return 0
