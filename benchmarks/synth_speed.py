"""Synthesis speed of `xlsr synth`: seconds of audio per CPU-second of rendering, per core.

Renders a small corpus in one process (rendering = espeak-ng + phone labels + resampling + FLAC) and
compares with the 200x real-time target. Word lists are built first and not counted.

    .venv/bin/python benchmarks/synth_speed.py [--langs es,de,ru,zh,hi,ar] [--utts-per-lang 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from xlsr.data.synth import synthesize_corpus
from xlsr.data.synth.languages import parse_languages
from xlsr.data.synth.text import word_list

TARGET = 200.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="es,de,ru,fi,tr,hi,ar,zh,vi,ko")
    parser.add_argument("--utts-per-lang", type=int, default=30)
    parser.add_argument("--noise-snr", type=float, default=None)
    args = parser.parse_args()
    for lang in parse_languages(args.langs):
        word_list(lang.code)
    with tempfile.TemporaryDirectory() as out:
        t0, c0 = time.perf_counter(), time.process_time()
        s = synthesize_corpus(out, args.langs, args.utts_per_lang, seed=0, workers=1, noise=args.noise_snr,
                              show_progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = sum(sum(v.values()) for v in s.utterances.values())
    speed = s.realtime_per_core
    print(f"{n} utterances, {s.audio_seconds:.1f} s of audio, {s.cpu_seconds:.2f} CPU-s rendering, "
          f"{cpu:.2f} CPU-s in all (planning, manifests), {wall:.2f} s wall")
    print(f"end to end: {s.audio_seconds / cpu:.0f}x real time per CPU-second")
    print(f"synthesis speed: {speed:.0f}x real time per core (target {TARGET:.0f}x): "
          f"{'OK' if speed >= TARGET else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
