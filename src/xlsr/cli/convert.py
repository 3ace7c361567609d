"""`xlsr convert SRC DST --to hf|fairseq|xlsr`: any supported checkpoint to a Hugging Face, fairseq or xlsr folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from xlsr.errors import XlsrError


def register(subparsers) -> None:
    """Add the `convert` subcommand."""
    p = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (fairseq .pt, Hugging Face dir, xlsr dir) to Hugging Face, fairseq or xlsr format",
        description="Load SRC (a fairseq .pt, a Hugging Face wav2vec2 directory or an xlsr checkpoint "
        "directory; nothing in it is executed) and write it to the folder DST in the chosen format: a new folder, or "
        "an earlier checkpoint's, replaced atomically; into a Hugging Face hub clone (git clone of a model repo) the "
        "files go beside .git, the model card and the rest, which are kept, and the earlier model's files are "
        "removed. --to fairseq writes DST/checkpoint.pt (and, for a CTC model, "
        "DST/dict.ltr.txt or dict.phn.txt) for fairseq's checkpoint_utils.load_model_ensemble_and_task; "
        "after moving the folder, pass arg_overrides={'data': NEW_FOLDER}. --to hf writes a model without a CTC "
        "head with transformers' SpecAugment values for fine-tuning (mask_time_prob 0.05), as the hub's pretrained "
        "configs have them; its pretraining masking stays under config.json's xlsr_config, which xlsr reads back. A model "
        "with MMS adapters for one language (--target-lang, an adapter run) is written in the MMS layout "
        "(adapter.LANG.safetensors, vocab.json keyed by language, tokenizer_config.json's target_lang).",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint to read")
    p.add_argument("dst", metavar="DST", help="directory to write")
    p.add_argument("--to", choices=("hf", "fairseq", "xlsr"), required=True, help="output format")
    p.add_argument("--dict", dest="dictionary", metavar="FILE",
                   help="fairseq dictionary (dict.ltr.txt) for a fine-tuned .pt; default: one beside SRC")
    p.add_argument("--target-lang", metavar="LANG",
                   help="MMS checkpoints with per-language adapters: the language whose adapters, head and "
                   "vocabulary to keep (without it, the error lists the languages SRC has, unless SRC holds "
                   "only its base weights' language)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert args.src to args.dst in format args.to."""
    # lazy: xlsr.interop imports torch (~6 s); `xlsr --help` imports every command module
    from xlsr.interop.fairseq_export import export_fairseq
    from xlsr.interop.hf_config import spec_augment_note
    from xlsr.interop.huggingface import export_hf
    from xlsr.interop.load import load_pretrained
    from xlsr.interop.native import save_checkpoint

    src, dst = Path(args.src).resolve(), Path(args.dst).resolve()
    if dst == src or dst in src.parents:
        raise XlsrError(f"{args.dst}: is or holds the source {args.src}; DST's checkpoint files are replaced, so "
                        f"converting there could lose the source; give a new folder")
    if src in dst.parents:
        raise XlsrError(f"{args.dst}: lies inside the source {args.src}, which a copy there would change (a checkpoint "
                        f"folder holds its own files only); give a folder outside it")
    loaded = load_pretrained(args.src, dictionary=args.dictionary, target_lang=args.target_lang)
    name = type(loaded.model).__name__
    no_vocab = _why_no_vocabulary(loaded) if name == "Wav2Vec2ForCTC" and not loaded.vocab else None
    if no_vocab and args.to == "fairseq":
        raise XlsrError(f"{args.src}: a CTC model without its vocabulary ({no_vocab}); fairseq's checkpoint needs it "
                        f"as its dictionary")
    if args.to == "hf":
        export_hf(loaded.model, args.dst, vocab=loaded.vocab, kind=loaded.metadata.get("labels"),
                  target_lang=loaded.metadata.get("target_lang"))  # an MMS language: the MMS layout
    elif args.to == "fairseq":
        export_fairseq(loaded.model, args.dst, vocab=loaded.vocab, kind=loaded.metadata.get("labels"))
    else:
        metadata = {**loaded.metadata, "converted_from": loaded.source_format}
        save_checkpoint(args.dst, loaded.model, vocab=loaded.vocab, metadata=metadata)
    vocab = f", {len(loaded.vocab)} tokens" if loaded.vocab else ""
    print(f"{args.src} ({loaded.source_format}, {name}{vocab}) -> {args.dst} ({args.to})")
    if no_vocab:
        print(f"{args.dst}: a CTC model written without its vocabulary ({no_vocab})")
    note = spec_augment_note(loaded.config, name) if args.to == "hf" else None
    if note:
        print(f"{args.dst}: {note}")
    return 0


def _why_no_vocabulary(loaded) -> str:
    """Why a CTC checkpoint came without its vocabulary, and for a fairseq file how to give it."""
    if loaded.source_format == "fairseq":
        return "no fairseq dictionary such as dict.ltr.txt beside it; --dict FILE gives it"
    return "none came with it: no vocab.json" if loaded.source_format == "hf" else "its config.json lists none"
