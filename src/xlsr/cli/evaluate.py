"""`xlsr evaluate`: error rates of a fine-tuned CTC model on labeled manifests, per language.

    xlsr evaluate --model RUN_OR_CKPT --manifest M [M ...] [--target-lang LANG] [--labels phones|chars]
                  [--lm LM] [--lexicon FILE] [--beam N] [--json report.json] [--hyps hyps.jsonl]
                  [--chunk-seconds S] [--batch-seconds S] [--normalize-text] [--decode-workers N] [--decode-timeout S]
    xlsr evaluate --model RUN --manifest DEV --lm LM --lm-weight 0.5 1 2 --word-score -1 0 1   # a sweep

PER for phone labels (the manifest's `phones`), CER and WER for character labels (its `text`), each
with substitution/deletion/insertion counts and a 95% bootstrap interval over the utterances (where the rate of
another test set of this kind and size would fall); the word boundary `|` is never counted in PER or CER.
--target-lang picks the language of an MMS checkpoint with per-language adapters.
Prints a table (a row per language, then the total over all of them; recordings that fail are listed and left
out, and a row with none scored has no rate); --json writes the same numbers (and the failures) as JSON:
"languages" holds the manifests' languages only, "total" the counts over all of them. As in
`xlsr transcribe`, a batch that runs out of memory is decoded again in halves, and a recording that does not fit
alone is listed as a failure saying what to lower (--chunk-seconds: longer recordings are decoded in windows of that length).
Several --lm-weight / --word-score values: the model runs once, beam search once per pair; the pairs are printed
best first, then the best pair's full report (choose on a dev set, report the test set with it).
--json and --hyps are refused when one is the other, an input (a manifest, the LM or lexicon), inside the model, or
an existing file that is not an earlier output of the same option; their folders are made before the evaluation.
Giving --hyps or --json makes a stopped evaluation resumable: each transcript is kept in H.partial (of --hyps H,
else of --json J: J.partial) as soon as it is made, and the same command after a stop (Ctrl-C, a crash, a lost
machine) transcribes only the recordings not kept yet, then scores them all; H.partial is removed once every
recording is transcribed and the outputs written, and kept when some failed, so that a rerun retries only those.
A rerun is refused when a setting that changes a transcript differs (the checkpoint --model means, or its files,
the LM or lexicon saved again since, --beam, --lm-weight, --word-score, --target-lang, --precision, --chunk-seconds,
--chunk-stride); --labels and --normalize-text may change, as the kept transcripts are scored anew. Without --hyps
or --json nothing is kept; a sweep (several --lm-weight / --word-score) keeps nothing either: run it on a dev set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlsr.atomic import write_json
from xlsr.cli import decode_timeout
from xlsr.cli.transcribe import (
    add_batching_arguments,
    add_decode_workers_argument,
    add_decoder_arguments,
    add_model_arguments,
    batching_options,
    check_decoder_options,
    check_score_weights,
)
from xlsr.errors import XlsrError


def register(subparsers) -> None:
    """Add the `evaluate` subcommand."""
    p = subparsers.add_parser("evaluate", help="PER/CER/WER per language on labeled manifests",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--manifest", required=True, nargs="+", action="extend", help="labeled manifest(s) (JSONL)")
    p.add_argument("--labels", choices=("phones", "chars"), help="reference field (default: the model's vocabulary kind)")
    add_decoder_arguments(p, sweep=True)
    p.add_argument("--json", metavar="PATH", help="write the report as JSON (without --hyps: transcripts are kept in "
                   "PATH.partial as they are made, so that the same command resumes a stopped run)")
    p.add_argument("--hyps", metavar="JSONL", help="write id, lang, ref, hyp per utterance, as scored (in Unicode NFC; "
                   "normalized with --normalize-text); transcripts are kept in JSONL.partial as they are made, so "
                   "that the same command resumes a stopped run")
    p.add_argument("--normalize-text", action="store_true",
                   help="score reference and hypothesis lower-cased in the utterance's language, without "
                   "punctuation (as `xlsr data normalize-text` writes them); character labels")
    add_batching_arguments(p)
    add_decode_workers_argument(p)
    p.add_argument("--device", default="auto",
                   help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Transcribe, score, print the table (and write JSON)."""
    # lazy: xlsr.decode imports torch (~5 s measured with -X importtime); `xlsr --help` imports every command module
    from xlsr.decode.evaluate import METRIC_NAMES, evaluate, read_manifests
    from xlsr.decode.output_files import HYPOTHESES, REPORT, check_outputs, decoder_files
    from xlsr.decode.transcribe import load_ctc_model, make_decoder, write_jsonl
    from xlsr.text.vocab import format_counts

    batching = batching_options(args)
    check_score_weights(args)
    check_outputs([("--json", args.json, REPORT), ("--hyps", args.hyps, HYPOTHESES)],
                  inputs=[*args.manifest, *decoder_files(args.lm, args.lexicon)], model=args.model)
    lm_weights, word_scores = args.lm_weight or [None], args.word_score or [None]
    sweep = len(lm_weights) > 1 or len(word_scores) > 1
    if sweep and args.lm is None and args.lexicon is None:
        raise XlsrError("--lm-weight/--word-score with several values: give --lm (or --lexicon) to sweep them")
    check_decoder_options(args)  # one value each: as `xlsr transcribe`
    kept = None if sweep else kept_transcripts(args)
    # made now, once the command is not refused (which leaves no folder behind): a folder that cannot be made is
    # said before, not after, the work
    for path in (args.json, args.hyps):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    # the checkpoint the kept transcripts' settings name (fingerprinted), not --model again: it may mean another now
    ctc = load_ctc_model(args.model if kept is None else kept.settings["model"], device=args.device,
                         target_lang=args.target_lang, precision=args.precision)
    if args.labels and args.labels != ctc.vocab.kind:
        print(f"xlsr: warning: the model predicts {ctc.vocab.kind}; --labels {args.labels} scores that output "
              f"against another kind of reference", file=sys.stderr)
    utts = read_manifests(args.manifest)
    if sweep:
        from xlsr.decode.beam import BeamSearchConfig, decoder_for_lm
        from xlsr.decode.lm_sweep import sweep_lm_settings, sweep_table

        beam = decoder_for_lm(ctc.vocab, args.lm, lexicon=args.lexicon,
                              config=BeamSearchConfig(**({"beam_size": args.beam} if args.beam else {})))
        defaults = BeamSearchConfig()
        rows = sweep_lm_settings(ctc, utts, beam, [defaults.lm_weight if w is None else w for w in lm_weights],
                                 [defaults.word_score if s is None else s for s in word_scores], labels=args.labels,
                                 normalize=args.normalize_text, show_progress=not args.no_progress,
                                 decode_workers=args.decode_workers, decode_timeout=decode_timeout(args),
                                 **batching)
        print(sweep_table(rows))
        best_weight, best_score, report = rows[0]
        print(f"\nbest: --lm-weight {best_weight:g} --word-score {best_score:g}")
    else:
        decoder = make_decoder(ctc, lm=args.lm, lexicon=args.lexicon, beam=args.beam, lm_weight=lm_weights[0],
                               word_score=word_scores[0])
        report = evaluate(ctc, utts, labels=args.labels, decoder=decoder, **batching,
                          normalize=args.normalize_text, show_progress=not args.no_progress,
                          decode_workers=args.decode_workers, decode_timeout=decode_timeout(args), kept=kept)
    print(report.table())
    if report.oov:
        print(f"xlsr: warning: reference symbols outside the model's vocabulary: {format_counts(report.oov, limit=8)}",
              file=sys.stderr)
    if report.no_reference:
        print(f"xlsr: warning: {len(report.no_reference)} utterance(s) without a reference were skipped "
              f"(e.g. {', '.join(report.no_reference[:3])})", file=sys.stderr)
    if args.json:
        data = report.to_dict()
        if sweep:  # every setting's rates over all languages, best first; the report above is the best's
            data["lm_weight"], data["word_score"] = rows[0][0], rows[0][1]
            data["sweep"] = [{"lm_weight": w, "word_score": s,
                              **{METRIC_NAMES[u].lower(): c.to_dict()["rate"] for u, c in r.total.items()}}
                             for w, s, r in rows]
        write_json(args.json, data)  # a failed file's name that is not UTF-8: escaped (atomic.json_text)
    if args.hyps:
        write_jsonl(args.hyps, report.hypotheses)
    for f in report.failures:
        print(f"xlsr: failed: {f.error}", file=sys.stderr)
    if kept is not None:
        if not report.failures:
            kept.remove()  # every transcript is in the outputs now
        elif kept.path.is_file():
            print(f"xlsr: the other transcripts stay in {kept.path}: the same command (once the recordings are "
                  f"mended) transcribes only the failed ones", file=sys.stderr)
    return 1 if report.failures else 0


def kept_transcripts(args):
    """The PartialResults of the first output given (--hyps H: H.partial, else --json J: J.partial), where each
    transcript is kept as it is made; None without either. XlsrError when a stopped run's were made otherwise."""
    from xlsr.decode.output_files import decoder_files, same_file
    from xlsr.decode.partial_results import PartialResults, decoding_settings

    option, out = next(((o, p) for o, p in (("--hyps", args.hyps), ("--json", args.json)) if p), (None, None))
    if out is None:
        return None
    partial = Path(out).with_name(Path(out).name + ".partial")
    for other, path in [("--json", args.json), ("--hyps", args.hyps), *(("--manifest", m) for m in args.manifest),
                        *(("--lm or --lexicon", f) for f in decoder_files(args.lm, args.lexicon))]:
        if path and same_file(partial, path):
            raise XlsrError(f"{option} {out}: its transcripts would be kept in {partial}, which is {other} {path}; "
                            f"give {option} another file name")
    options = {"target_lang": args.target_lang, "precision": args.precision, "beam": args.beam,
               "lm_weight": args.lm_weight[0] if args.lm_weight else None,
               "word_score": args.word_score[0] if args.word_score else None,
               "timestamps": False,  # as `xlsr transcribe` records it: the same results, in the same file format
               "chunk_seconds": args.chunk_seconds, "chunk_stride": args.chunk_stride}
    _, settings, advice = decoding_settings(args.model, lm=args.lm, lexicon=args.lexicon, options=options,
                                            command="xlsr evaluate", output=option)
    return PartialResults(out, settings, advice=advice, by_file=True, command="xlsr evaluate", output=option)
