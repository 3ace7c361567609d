"""A corpus CTC can learn in seconds: each "phone" is a pure tone of its own pitch, separated by silence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
TONES = {"a": 300.0, "i": 800.0, "u": 1900.0}  # Hz; far apart so even a random CNN separates them


def tone_utterance(phones: list[str], rng: np.random.Generator) -> np.ndarray:
    """Concatenated tones (120-180 ms each) with 40-70 ms silences around them."""
    parts = [np.zeros(int(rng.integers(640, 1120)), dtype=np.float32)]
    for p in phones:
        n = int(rng.integers(1920, 2880))
        t = np.arange(n) / SR
        env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks
        parts.append((0.5 * env * np.sin(2 * np.pi * TONES[p] * t + rng.uniform(0, 2 * np.pi))).astype(np.float32))
        parts.append(np.zeros(int(rng.integers(640, 1120)), dtype=np.float32))
    return np.concatenate(parts)


def no_repeats(n: int, rng: np.random.Generator) -> list[str]:
    """n tone names, never the same twice in a row (a blank-free CTC path then decodes them exactly)."""
    names = sorted(TONES)
    out = [str(rng.choice(names))]
    while len(out) < n:
        out.append(str(rng.choice([p for p in names if p != out[-1]])))
    return out


def write_tone_corpus(root: Path, split: str, n: int, seed: int, lang: str = "xx",
                      phones_per_utt: tuple[int, int] = (3, 6)) -> Path:
    """Write `n` utterances + ROOT/<lang>/<split>.jsonl (phones = the tone names); returns the manifest."""
    rng = np.random.default_rng(seed)
    folder = root / lang
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        phones = no_repeats(int(rng.integers(*phones_per_utt, endpoint=True)), rng)
        x = tone_utterance(phones, rng)
        name = f"{split}_{k:03d}"
        sf.write(folder / "wav" / f"{name}.wav", x, SR)
        lines.append({"id": name, "audio": f"wav/{name}.wav", "num_samples": len(x), "lang": lang,
                      "speaker": "tone", "text": "".join(phones), "phones": " ".join(phones)})
    manifest = folder / f"{split}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return manifest
