"""Synthesis speed of `xlsr synth`: seconds of audio per CPU-second of rendering, per core.

Renders the same small corpus in one process (rendering = espeak-ng + phone labels + resampling + effects +
FLAC), each case in a fresh Python process, as a synthesis worker starts:

  clean        the corpus of earlier versions (`--clean`: basic voices, no effects)
  first        default voices and effects on a machine that has never simulated the rooms (empty room cache)
  default      default voices and effects in a new process, rooms already in the cache (the usual case)
  warm         the same corpus again in that process (imports, rooms and babble talkers kept)

The new process's one-offs (importing pyroomacoustics/scipy, loading or simulating the rooms, rendering the
babble talkers) count in `first` and `default`. Word lists and the espeak-ng engine are set up before timing.
Each is compared with the 200x real-time target. The machine may be shared: run it when it is idle, or
read the ratios more than the absolute speeds.

    .venv/bin/python benchmarks/synth_speed.py [--langs es,de,ru,zh,hi,ar] [--utts-per-lang 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from xlsr.data.augment import DEFAULT_AUGMENT
from xlsr.data.synth import synthesize_corpus
from xlsr.data.synth.espeak import engine
from xlsr.data.synth.languages import parse_languages
from xlsr.data.synth.text import word_list

TARGET = 200.0
CLEAN = {"voices": "basic", "augment": "none", "speakers_per_lang": 10}


def measure(langs: str, utts: int, options: dict) -> dict:
    """Synthesize once into a temporary folder (one worker): speed and what was made."""
    with tempfile.TemporaryDirectory() as out:
        c0 = time.process_time()
        s = synthesize_corpus(out, langs, utts, seed=0, workers=1, show_progress=False, **options)
        cpu = time.process_time() - c0
    return {"utterances": sum(sum(v.values()) for v in s.utterances.values()), "audio_s": s.audio_seconds,
            "render_cpu_s": s.cpu_seconds, "cpu_s": cpu, "speed": s.realtime_per_core,
            "effects": dict(sorted(s.effects.items())), "speakers": s.speaker_counts()}


def child(args: argparse.Namespace) -> None:
    """One case in this (fresh) process; prints JSON results."""
    for lang in parse_languages(args.langs):
        word_list(lang.code)
    engine()
    options = CLEAN if args.case == "clean" else {}
    runs = [measure(args.langs, args.utts_per_lang, options)]
    if args.case == "default":
        runs.append(measure(args.langs, args.utts_per_lang, options))  # warm
    print(json.dumps(runs))


def report(label: str, r: dict) -> float:
    print(f"{label:<8} {r['utterances']} utterances, {r['audio_s']:.0f} s of audio, {r['render_cpu_s']:.2f} CPU-s "
          f"rendering: {r['speed']:.0f}x real time per core ({'OK' if r['speed'] >= TARGET else 'BELOW'} "
          f"the {TARGET:.0f}x target)")
    return r["speed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="es,de,ru,fi,tr,hi,ar,zh,vi,ko")
    parser.add_argument("--utts-per-lang", type=int, default=30)
    parser.add_argument("--case", choices=("clean", "first", "default"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return child(args)
    results = {}
    with tempfile.TemporaryDirectory() as empty_cache:
        for case in ("clean", "first", "default"):
            env = dict(os.environ)
            if case == "first":
                env["XLSR_CACHE"] = empty_cache  # no simulated rooms yet (the espeak overlay is rebuilt untimed)
            out = subprocess.run([sys.executable, __file__, "--case", case, "--langs", args.langs,
                                  "--utts-per-lang", str(args.utts_per_lang)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            results[case] = json.loads(out.strip().splitlines()[-1])
    print(f"default effects: {DEFAULT_AUGMENT}; applied {results['default'][0]['effects']}")
    print(f"speakers per split: clean {results['clean'][0]['speakers']}, "
          f"default {results['default'][0]['speakers']}")
    clean = report("clean", results["clean"][0])
    report("first", results["first"][0])
    default = report("default", results["default"][0])
    warm = report("warm", results["default"][1])
    print(f"default/clean speed ratio: {default / clean:.2f} (warm {warm / clean:.2f})")


if __name__ == "__main__":
    main()
