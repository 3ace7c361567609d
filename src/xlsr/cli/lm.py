"""`xlsr lm build`: train an n-gram LM with KenLM for beam-search decoding."""

from __future__ import annotations

import argparse

from xlsr.decode.lm import LM_UNITS, build_lm, read_lm_info, sidecar_path


def register(subparsers) -> None:
    parser = subparsers.add_parser("lm", help="build n-gram language models (KenLM)",
                                   description="Build n-gram language models with KenLM's lmplz.")
    sub = parser.add_subparsers(title="lm commands", metavar="ACTION")
    build = sub.add_parser(
        "build", help="train an n-gram LM from a text file",
        description="Train an n-gram LM (KenLM lmplz, Kneser-Ney with --discount_fallback) from a text "
        "file with one sentence per line. OUT ending in .arpa keeps ARPA text, anything else is a KenLM "
        "binary. A sidecar OUT.json records the units, and word LMs get a word list OUT.words.txt, "
        "which `xlsr transcribe --lm OUT` uses as its lexicon. An existing OUT is replaced only when it is an LM "
        "this command wrote (its OUT.json says so).")
    build.add_argument("--text", required=True,
                       help="training text, one sentence (label) per line: plain text, not a JSONL manifest")
    build.add_argument("--order", type=int, default=4, help="n-gram order, 2-6 (default 4)")
    build.add_argument("--out", required=True, help="output LM file (.arpa for ARPA text, else binary)")
    build.add_argument("--units", choices=LM_UNITS, default="words",
                       help="LM 'words': words (lexicon decoding), or phone/char tokens of the labels "
                       "(units LM for lexicon-free decoding of phone/char models; default words)")
    build.add_argument("--memory", default="500M", help="lmplz sort memory, its -S (default 500M)")
    build.set_defaults(func=run_build)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def run_build(args: argparse.Namespace) -> int:
    out = build_lm(args.text, args.order, args.out, units=args.units, memory=args.memory)
    info = read_lm_info(out) or {}
    extra = f", word list {out}.words.txt" if info.get("words") else ""
    print(f"wrote {info.get('format', 'LM')} {args.units} {args.order}-gram LM {out} "
          f"(sidecar {sidecar_path(out)}{extra})")
    return 0
