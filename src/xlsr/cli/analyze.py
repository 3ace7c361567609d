"""`xlsr analyze`: which discrete units the languages share, from a pretraining checkpoint and a data folder."""

from __future__ import annotations

import argparse

from xlsr.cli import finite_float, positive_float


def register(subparsers) -> None:
    """Add the `analyze` subcommand."""
    p = subparsers.add_parser(
        "analyze",
        help="codeword usage per language, sharing, similarity, PCA and dendrogram of a pretrained model",
        description="Run the quantizer (eval mode) over the same amount of audio per language and write "
        "per-language codeword distributions, sharing statistics, pairwise similarities (Jensen-Shannon distance, "
        "cosine), a PCA scatter, a dendrogram (average linkage on the JS distance), a similarity heatmap and a "
        "sharing histogram (OUT/analysis.json, OUT/codeword_counts.npz and four PNGs). A codeword is a frame's "
        "whole choice across the G codebook groups, one of V^G (102,400 for XLSR-53's 2 groups of 320), as in "
        "the XLSR paper's analysis; it is not counted per group. A rerun may replace its own earlier outputs in "
        "OUT; any other file of the same name is refused and left as it is.",
    )
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="pretraining checkpoint: an xlsr directory, a Hugging Face directory or a fairseq .pt")
    p.add_argument("--data", required=True, metavar="DIR", help="data folder laid out as DIR/<lang>/<split>.jsonl")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--split", default="train", help="manifest split to read (default: train)")
    p.add_argument("--seconds-per-lang", type=finite_float, default=None, metavar="S",
                   help="seconds of audio per language, at least the model's receptive field (0.025 s) "
                   "(default: the smallest language's total, capped by --max-seconds)")
    p.add_argument("--max-seconds", type=positive_float, default=None, metavar="S",
                   help="cap on the default amount per language (default: 600)")
    p.add_argument("--langs", nargs="+", default=None, metavar="LANG", help="only these languages (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the utterance sample (default: 0)")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-plots", action="store_true",
                   help="write the JSON and counts only (an earlier analysis's figures in --out are removed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the analysis and print its summary table."""
    # lazy: xlsr.analysis imports torch (~6 s); `xlsr --help` imports every command module
    from xlsr.analysis import analyze, format_summary
    from xlsr.analysis.run import DEFAULT_MAX_SECONDS

    report = analyze(
        args.model, args.data, args.out, split=args.split, seconds_per_lang=args.seconds_per_lang,
        langs=args.langs, max_seconds=args.max_seconds if args.max_seconds is not None else DEFAULT_MAX_SECONDS,
        seed=args.seed, device=args.device, plots=not args.no_plots,
    )
    print(format_summary(report.summary))
    print(f"wrote {', '.join(sorted(p.name for p in report.files.values()))} to {report.out_dir}")
    return 0
