"""`xlsr synth`: synthesize the embedded multilingual corpus with espeak-ng."""

from __future__ import annotations

import argparse

from xlsr.errors import XlsrError


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="synthesize a labeled multilingual speech corpus with espeak-ng",
                              description="Write DIR/<lang>/{train,dev,test}.jsonl and 16 kHz FLAC audio "
                              "(labels: text, IPA phones), speakers disjoint across splits.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--langs", default="es,it,de", help="comma-separated codes, or 'all' (see --list)")
    p.add_argument("--utts-per-lang", type=int, default=200, help="utterances per language, split 80/10/10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--noise-snr", type=float, default=None, metavar="DB",
                   help="add white noise at this SNR in dB (±5 per utterance); default clean")
    p.add_argument("--speakers-per-lang", type=int, default=10)
    p.add_argument("--words-per-utt", default="4-12", metavar="MIN-MAX")
    p.add_argument("--list", action="store_true", help="list the available languages and exit")
    p.set_defaults(func=run)


def _words(spec: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in spec.split("-"))
    except ValueError:
        raise XlsrError(f"--words-per-utt: expected MIN-MAX such as 4-12, got {spec!r}") from None
    return lo, hi


def run(args: argparse.Namespace) -> int:
    # lazy: xlsr.data.synth imports numpy and soxr (~0.4 s); `xlsr --help` imports every command module
    from xlsr.data.synth import LANGUAGES, synthesize_corpus

    if args.list:
        for lang in LANGUAGES.values():
            print(f"{lang.code:<4}{lang.name:<20}{lang.family:<15}espeak:{lang.voice}")
        return 0
    s = synthesize_corpus(args.out, args.langs, args.utts_per_lang, seed=args.seed, workers=args.workers,
                          noise=args.noise_snr, speakers_per_lang=args.speakers_per_lang,
                          words_per_utt=_words(args.words_per_utt))
    n = sum(sum(v.values()) for v in s.utterances.values())
    print(f"wrote {n} utterances, {s.audio_seconds / 60:.1f} min of audio in {len(s.utterances)} languages "
          f"to {s.out_dir} ({s.wall_seconds:.1f} s, {s.realtime_per_core:.0f}x real time per core)")
    return 0
