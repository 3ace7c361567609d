"""Synthesis speed of `xlsr synth`: seconds of audio per CPU-second, per core, against the 200x target.

Renders the same small corpus in one worker, for two cases, each in a fresh Python process with an empty
$XLSR_CACHE (as on a machine that never synthesized):

  clean    the corpus of earlier versions (`--clean`: basic voices, no effects)
  default  default voices and effects (`augment.DEFAULT_AUGMENT`)

and twice in that process: `first` (cold: imports, rooms, babble talkers all paid in the timed call) and
`second` (the same corpus again: what a long synthesis costs per utterance).

The basis is CPU time, not wall time, so that a machine shared with other jobs distorts it little: the
process's CPU time (time.process_time) over the whole `synthesize_corpus(..., workers=1)` call (planning,
rendering, effects, FLAC, manifests). The word lists and the espeak-ng engine are set up first, untimed
(their CPU time is printed): a synthesis process pays them once whatever the effects. Wall time is printed
next to it; a wall time well above the CPU time means the machine was busy.

    .venv/bin/python benchmarks/synth_speed.py [--langs es,de,ru,zh,hi,ar] [--utts-per-lang 30] [--repeats 2]
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
CASES = {"clean": {"voices": "basic", "augment": "none", "speakers_per_lang": 10}, "default": {}}
RUNS = ("first", "second")


def measure(langs: str, utts: int, options: dict) -> dict:
    """Synthesize once into a temporary folder (one worker): CPU and wall time of the call, what was made."""
    with tempfile.TemporaryDirectory() as out:
        c0, w0 = time.process_time(), time.perf_counter()
        s = synthesize_corpus(out, langs, utts, seed=0, workers=1, show_progress=False, **options)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"utterances": sum(sum(v.values()) for v in s.utterances.values()), "audio_s": s.audio_seconds,
            "cpu_s": cpu, "wall_s": wall, "render_cpu_s": s.cpu_seconds,
            "effects": dict(sorted(s.effects.items())), "speakers": s.speaker_counts()}


def child(args: argparse.Namespace) -> None:
    """One case in this (fresh) process: setup, then the corpus twice; prints JSON."""
    c0 = time.process_time()
    for lang in parse_languages(args.langs):
        word_list(lang.code)
    engine()
    setup = time.process_time() - c0
    runs = [measure(args.langs, args.utts_per_lang, CASES[args.case]) for _ in RUNS]
    print(json.dumps({"setup_cpu_s": setup, "runs": runs}))


def run_case(case: str, args: argparse.Namespace) -> dict:
    """The case in a fresh process with an empty cache folder."""
    with tempfile.TemporaryDirectory() as empty_cache:
        env = dict(os.environ, XLSR_CACHE=empty_cache)
        out = subprocess.run([sys.executable, __file__, "--case", case, "--langs", args.langs,
                              "--utts-per-lang", str(args.utts_per_lang)],
                             env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="es,de,ru,fi,tr,hi,ar,zh,vi,ko")
    parser.add_argument("--utts-per-lang", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per case (a range when > 1)")
    parser.add_argument("--case", choices=tuple(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return child(args)
    results = {case: [run_case(case, args) for _ in range(args.repeats)] for case in CASES}
    default = results["default"][0]["runs"][0]
    print(f"default effects: {DEFAULT_AUGMENT}; applied {default['effects']}")
    print(f"speakers per split: clean {results['clean'][0]['runs'][0]['speakers']}, default {default['speakers']}")
    print("basis: CPU time of the whole synthesize_corpus call (one worker) in a fresh process with an empty "
          "$XLSR_CACHE; word lists and espeak-ng set up before it, untimed")
    print(f"{'case':<8} {'run':<7} {'utts':>4} {'audio s':>7} {'CPU s':>11} {'wall s':>11} "
          f"{'x real time per core':>21}  setup CPU s (untimed)")
    for case, repeats in results.items():
        for i, run in enumerate(RUNS):
            rows = [r["runs"][i] for r in repeats]
            speeds = [r["audio_s"] / r["cpu_s"] for r in rows]
            verdict = "OK" if min(speeds) >= TARGET else "BELOW"
            print(f"{case:<8} {run:<7} {rows[0]['utterances']:>4} {rows[0]['audio_s']:>7.0f} "
                  f"{span([r['cpu_s'] for r in rows], '.2f'):>11} {span([r['wall_s'] for r in rows], '.2f'):>11} "
                  f"{span(speeds, '.0f') + 'x':>14} {verdict:<6}  "
                  f"{span([r['setup_cpu_s'] for r in repeats], '.2f') if i == 0 else ''}")
    print(f"target: {TARGET:.0f}x real time per core")


def span(values: list[float], fmt: str) -> str:
    """'a' or 'min-max' of the values."""
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)}-{format(hi, fmt)}"


if __name__ == "__main__":
    main()
