"""`xlsr transcribe`: transcribe audio files or folders with a fine-tuned CTC model.

    xlsr transcribe --model RUN_OR_CKPT FILES_OR_DIRS... --out out.jsonl [--target-lang LANG] [--lm LM]
                    [--lexicon FILE] [--beam N] [--lm-weight X] [--word-score X] [--timestamps]
                    [--chunk-seconds S] [--precision bf16] [--decode-workers N] [--decode-timeout S]

Greedy CTC by default; `--lm` (a KenLM file from `xlsr lm build`), `--lexicon` or `--beam` switch to
flashlight beam search. Recordings longer than --chunk-seconds (default 30; 0 = never) are split into
overlapping windows merged by time. --target-lang picks the language of an MMS checkpoint with
per-language adapters (without it, the error lists the languages it has). One JSON line per file: audio, duration, text, tokens, score
(+ timestamps). Unreadable files are listed at the end and the others are still transcribed (exit code 1
when some failed); the audio is decoded in --decode-workers processes, so a decoder that crashes or hangs (past
--decode-timeout) on a damaged file costs that file, listed with them, not the job. Each result is kept in OUT.partial as it is made: the same command
after a stop (Ctrl-C, a crash, a lost machine), or after some files failed, transcribes only the files not done
yet, however their paths are typed this time (relative or absolute, through a link; OUT names them as typed now);
it is refused when --model now means another checkpoint (a run folder's new best), or the checkpoint, the LM
or the lexicon was saved again since. OUT is refused when it is an input (an audio file, the LM or lexicon), inside
the model, or an existing file that is not an earlier OUT of this command; --lm-weight without --lm, and
--word-score without --lm, --lexicon or --beam, are refused rather than ignored. In folders, recordings in formats
xlsr does not read (.m4a, .aac, .wma, ...) are listed with the failures.
"""

from __future__ import annotations

import argparse
import sys

from xlsr.cli import (
    add_decode_timeout_argument,
    check_seconds,
    decode_timeout,
    finite_float,
    non_negative_int,
    positive_int,
)
from xlsr.errors import XlsrError


def add_model_arguments(p) -> None:
    """The model options `transcribe` and `evaluate` share: the checkpoint and, for MMS, its language."""
    p.add_argument("--model", required=True, help="run folder (its best checkpoint) or checkpoint (ours, HF, fairseq)")
    p.add_argument("--target-lang", metavar="LANG",
                   help="MMS checkpoints with per-language adapters: the language whose adapters, head and "
                   "vocabulary to use (without it, the error lists the languages the checkpoint has)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the model under bf16 autocast, the CTC logits in fp32 (faster on GPUs and on CPUs "
                   "with AMX; slower on CPUs without native bf16; results differ slightly from fp32)")


def add_decoder_arguments(p, *, sweep: bool = False) -> None:
    """The decoding options `transcribe` and `evaluate` share: greedy by default, beam search with them; with
    `sweep` (evaluate), --lm-weight and --word-score take several values, each pair scored."""
    p.add_argument("--lm", help="KenLM n-gram model (ARPA or binary) for beam search")
    p.add_argument("--lexicon", help="lexicon or word list: decode words only (with --lm: a word LM)")
    p.add_argument("--beam", type=positive_int, help="beam size (default 50 with --lm/--lexicon; alone: beam search without LM)")
    several = {"nargs": "+", "metavar": "X"} if sweep else {}
    also = "; several values: every pair with --word-score is scored (the model runs once), best first" if sweep else ""
    p.add_argument("--lm-weight", type=finite_float, help="weight of the LM's log10 probabilities (KenLM's, as in "
                   f"fairseq and flashlight) beside the model's natural-log ones (default 2.0){also}", **several)
    p.add_argument("--word-score", type=finite_float, help="score added per word: per lexicon word, or without a "
                   "lexicon per `|` emitted; no effect without a lexicon when the vocabulary has no `|` (phones) "
                   "(default 0.0)" + ("; several values: as --lm-weight" if sweep else ""), **several)


def check_decoder_options(args) -> None:
    """--lm-weight and --word-score only with a decoder they act on: refused in one line, not silently ignored.
    Without --lm no LM scores the words (the weight multiplies nothing); greedy decoding adds no word score."""
    if args.lm_weight is not None and args.lm is None:
        raise XlsrError("--lm-weight: weighs the scores of a language model; give --lm with it")
    if args.word_score is not None and args.lm is None and args.lexicon is None and not args.beam:
        raise XlsrError("--word-score: a beam-search setting, which greedy decoding ignores; give --lm, --lexicon or "
                        "--beam with it")


def check_score_weights(args) -> None:
    """--lm-weight and --word-score (a value, or a sweep's several) within BeamSearchConfig's bounds, checked before
    the model loads rather than after."""
    # lazy: flashlight and torch (the command loads them next anyway)
    from xlsr.decode.beam import check_score_weight

    for name in ("lm_weight", "word_score"):
        given = getattr(args, name)
        for value in given if isinstance(given, list) else [given]:
            if value is not None:
                check_score_weight(f"--{name.replace('_', '-')}", value)


def add_batching_arguments(p) -> None:
    """How much audio the model sees at once, shared by `transcribe` and `evaluate` (lower them when out of memory)."""
    p.add_argument("--chunk-seconds", type=finite_float, default=30.0,
                   help="recordings longer than this are decoded in windows of this length (default 30; 0 = never)")
    p.add_argument("--chunk-stride", type=finite_float, default=2.0, help="context on each side of a window, seconds (default 2; at most a quarter of the window)")
    p.add_argument("--batch-seconds", type=finite_float, default=60.0, help="padded audio per batch, seconds (default 60)")


def add_decode_workers_argument(p) -> None:
    """--decode-workers and --decode-timeout, shared by `transcribe` and `evaluate`."""
    p.add_argument("--decode-workers", type=non_negative_int, default=1, metavar="N",
                   help="processes decoding the audio files (default 1): a decoder that crashes on a damaged file "
                   "costs that file (listed as failed), not the job, and files are decoded while the model runs; "
                   "0: in this process")
    add_decode_timeout_argument(p)


def batching_options(args) -> dict:
    """The checked --chunk-seconds / --chunk-stride / --batch-seconds as transcribe_files keywords."""
    from xlsr.decode.chunking import check_chunk_seconds  # lazy: torch (the command loads it next anyway)

    if args.chunk_seconds < 0 or args.chunk_stride < 0 or args.batch_seconds <= 0:
        raise XlsrError(f"--chunk-seconds and --chunk-stride must be >= 0 and --batch-seconds > 0, got "
                        f"{args.chunk_seconds:g}, {args.chunk_stride:g} and {args.batch_seconds:g}")
    check_seconds(chunk_seconds=args.chunk_seconds, chunk_stride=args.chunk_stride, batch_seconds=args.batch_seconds)
    if args.chunk_seconds:  # 0: never chunk
        check_chunk_seconds(args.chunk_seconds)
    return {"chunk_seconds": args.chunk_seconds or None, "chunk_stride": args.chunk_stride,
            "max_batch_seconds": args.batch_seconds}


def register(subparsers) -> None:
    """Add the `transcribe` subcommand."""
    p = subparsers.add_parser("transcribe", help="transcribe audio with a fine-tuned CTC model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files or folders (searched recursively)")
    add_model_arguments(p)
    p.add_argument("--out", required=True, metavar="JSONL", help="where to write one JSON line per file")
    add_decoder_arguments(p)
    p.add_argument("--timestamps", action="store_true",
                   help="start/end times in seconds of every token (its frames on the decoded path) and, where the "
                   "model has the word boundary |, of every word")
    add_batching_arguments(p)
    add_decode_workers_argument(p)
    p.add_argument("--device", default="auto",
                   help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Transcribe, write the JSONL, list failures."""
    # lazy: xlsr.decode imports torch (~5 s measured with -X importtime); `xlsr --help` imports every command module
    from xlsr.decode.output_files import TRANSCRIPTS, check_outputs, decoder_files
    from xlsr.decode.partial_results import PartialResults, decoding_settings
    from xlsr.decode.transcribe import find_audio, load_ctc_model, make_decoder, transcribe_files

    batching = batching_options(args)
    check_score_weights(args)
    check_decoder_options(args)
    # never over an audio file, the LM or the model: a rerun replaces only its own earlier OUT
    check_outputs([("--out", args.out, TRANSCRIPTS)], inputs=[*args.inputs, *decoder_files(args.lm, args.lexicon)],
                  model=args.model)
    # the checkpoint --model means now (a run folder's best may change before a rerun), and the settings that
    # the results are made with, fingerprints of the checkpoint's, LM's and lexicon's files among them
    checkpoint, settings, advice = decoding_settings(
        args.model, lm=args.lm, lexicon=args.lexicon,
        options={k: getattr(args, k) for k in ("target_lang", "precision", "beam", "lm_weight", "word_score",
                                               "timestamps", "chunk_seconds", "chunk_stride")})
    # a stopped run's results: those files are not transcribed again, however this run names them
    kept = PartialResults(args.out, settings, advice=advice, by_file=True)
    ctc = load_ctc_model(checkpoint, device=args.device, target_lang=args.target_lang, precision=args.precision)
    decoder = make_decoder(ctc, lm=args.lm, lexicon=args.lexicon, beam=args.beam, lm_weight=args.lm_weight,
                           word_score=args.word_score)
    files, failures = find_audio(args.inputs)
    done = kept.done()  # once: a set built per file made choosing quadratic in the files of a big resumed job
    todo = [f for f in files if kept.key(str(f)) not in done]
    if len(todo) < len(files):
        print(f"xlsr: resuming: {len(files) - len(todo)} of {len(files)} file(s) already in {kept.path}",
              file=sys.stderr)
    try:
        _, more = transcribe_files(ctc, todo, decoder=decoder, timestamps=args.timestamps, **batching,
                                   decode_workers=args.decode_workers, decode_timeout=decode_timeout(args),
                                   show_progress=not args.no_progress,
                                   on_result=lambda r: kept.append(r.to_dict()))
    except BaseException:
        if kept.records:
            print(f"xlsr: {len(kept.records)} of {len(files)} result(s) kept in {kept.path}; the same command "
                  f"resumes", file=sys.stderr)
        raise
    finally:
        kept.close()
    failures += more
    try:
        records = kept.finish([str(f) for f in files] + [f.audio for f in failures])  # a failed file: kept for a rerun
    except OSError as exc:  # OUT could not be written (a full disk): say where the results are, not only why
        if not kept.path.is_file():
            raise
        reason = (exc.strerror or str(exc)).lower()
        raise XlsrError(f"{exc.filename or args.out}: {reason}; the {len(kept.records)} result(s) stay in "
                        f"{kept.path}: the same command, once that is mended, writes {args.out} from them"
                        ) from None
    print(f"transcribed {len(records)} file(s) -> {args.out}", file=sys.stderr)
    if failures:
        print(f"xlsr: {len(failures)} file(s) failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f.error}", file=sys.stderr)
        if kept.path.is_file():
            print(f"xlsr: the other results stay in {kept.path}: the same command (once the files are mended) "
                  f"transcribes only the failed ones", file=sys.stderr)
        return 1
    return 0
