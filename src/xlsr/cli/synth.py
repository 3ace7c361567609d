"""`xlsr synth`: synthesize the embedded multilingual corpus with espeak-ng."""

from __future__ import annotations

import argparse

from xlsr.cli import finite_float, folder_name, non_negative_int
from xlsr.errors import XlsrError

HELP = "synthesize a labeled multilingual speech corpus with espeak-ng"
CLEAN = {"augment": "none", "voices": "basic", "speakers_per_lang": 10}  # the corpus of earlier versions


def register(subparsers) -> None:
    # numpy and soxr come with these: 0.2 s (measured) that `xlsr --help` need not pay (it shows HELP)
    from xlsr.data.augment import DEFAULT_AUGMENT, EFFECTS
    from xlsr.data.synth.corpus import SPEAKERS_PER_LANG

    effects = "; ".join(f"{name}: {lo:g}-{hi:g} ({what})" for name, ((lo, hi), _, what) in EFFECTS.items())
    p = subparsers.add_parser(
        "synth", help=HELP,
        description="Write DIR/<lang>/{train,dev,test}.jsonl and 16 kHz FLAC audio (labels: text, IPA phones), "
        "speakers disjoint across splits. By default a realistic corpus: many speakers per language and, on a "
        f"share of utterances, speed perturbation, room reverberation, noise and band-limiting ({DEFAULT_AUGMENT}); "
        "--clean gives the clean corpus of earlier versions. Deterministic for a seed. See docs/synth.md.")
    # not required by the parser: --list needs none (run() says when it is missing)
    p.add_argument("--out", type=folder_name, help="output folder (needed unless --list)")
    p.add_argument("--langs", default="es,it,de",
                   help="comma-separated codes, or 'all': see --list (default %(default)s)")
    p.add_argument("--utts-per-lang", type=int, default=200,
                   help="utterances per language, split 80/10/10 (default %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0,  # numpy's generators refuse a negative seed
                   help="random seed (0 or more); the corpus is the same for the same seed (default %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel processes; the corpus does not depend on their number (default %(default)s)")
    p.add_argument("--augment", default=None, metavar="SPEC",
                   help=f"acoustic effects, 'name=SHARE[:LOW-HIGH],...' with SHARE the share of utterances "
                   f"(0-1) and LOW-HIGH the range drawn from; 'none' for clean audio; default {DEFAULT_AUGMENT!r}. "
                   f"Effects and default ranges: {effects}. Noise is white, pink, brown or babble "
                   f"(background talkers).")
    p.add_argument("--voices", choices=("varied", "basic"), default=None,
                   help="'varied' (default): espeak's 12 voice variants x 5 vocal-tract lengths (formants "
                   "scaled 0.88-1.12) x 2 synthesizers (formant, Klatt) with wide pitch, range and rate; "
                   "'basic': the 12 variants, as in earlier versions")
    p.add_argument("--speakers-per-lang", type=int, default=None,
                   help=f"speakers per language, split 80/10/10 like the utterances (default {SPEAKERS_PER_LANG})")
    p.add_argument("--clean", action="store_true",
                   help="the clean corpus of earlier versions: --augment none --voices basic --speakers-per-lang 10")
    p.add_argument("--noise-snr", type=finite_float, default=None, metavar="DB",
                   help="also add white noise to every utterance at this SNR in dB (±5 per utterance); "
                   "default none")
    p.add_argument("--words-per-utt", default="4-12", metavar="MIN-MAX",
                   help="words per utterance text, drawn uniformly from MIN to MAX inclusive (default %(default)s)")
    p.add_argument("--list", action="store_true", help="list the available languages and exit")
    p.set_defaults(func=run)


def _words(spec: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in spec.split("-"))
    except ValueError:
        raise XlsrError(f"--words-per-utt: expected MIN-MAX such as 4-12, got {spec!r}") from None
    return lo, hi


def corpus_options(args: argparse.Namespace) -> dict:
    """augment, voices and speakers_per_lang from the flags: --clean's values, else the defaults, else as given."""
    # lazy: as in register
    from xlsr.data.augment import DEFAULT_AUGMENT
    from xlsr.data.synth.corpus import SPEAKERS_PER_LANG

    given = {key: getattr(args, key) for key in CLEAN if getattr(args, key) is not None}
    if args.clean:
        clash = [key for key, value in given.items() if value != CLEAN[key]]
        if clash:
            flag = "--" + clash[0].replace("_", "-")
            raise XlsrError(f"{flag}: --clean means {flag} {CLEAN[clash[0]]}; leave out one of the two")
        return dict(CLEAN)
    return {"augment": DEFAULT_AUGMENT, "voices": "varied", "speakers_per_lang": SPEAKERS_PER_LANG, **given}


def run(args: argparse.Namespace) -> int:
    # lazy: xlsr.data.synth imports numpy and soxr (~0.4 s); `xlsr --help` imports every command module
    from xlsr.data.synth import LANGUAGES, synthesize_corpus

    if args.list:
        for lang in LANGUAGES.values():
            print(f"{lang.code:<4}{lang.name:<20}{lang.family:<15}espeak:{lang.voice}")
        return 0
    if args.out is None:
        raise XlsrError("--out: give an output folder (only --list runs without one)")
    s = synthesize_corpus(args.out, args.langs, args.utts_per_lang, seed=args.seed, workers=args.workers,
                          noise=args.noise_snr, words_per_utt=_words(args.words_per_utt), **corpus_options(args))
    n = sum(sum(v.values()) for v in s.utterances.values())
    speakers = s.speaker_counts()
    langs = f"{len(s.utterances)} language{'' if len(s.utterances) == 1 else 's'}"
    print(f"wrote {n} utterances, {s.audio_seconds / 60:.1f} min of audio in {langs} "
          f"to {s.out_dir} ({s.wall_seconds:.1f} s, {s.realtime_per_core:.0f}x real time per core)")
    print(f"speakers: {sum(speakers.values())} ({', '.join(f'{k} {v}' for k, v in speakers.items())}; disjoint "
          f"across splits); effects: {', '.join(f'{k} {v}' for k, v in sorted(s.effects.items()))} utterances")
    return 0
