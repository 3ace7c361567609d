"""Short synthetic audio corpora for pretraining tests: tone sequences plus noise, no espeak needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data.manifest import Utterance, write_manifest

SR = 16000

# a model small enough to train a few updates in well under a second each on 2 CPU cores
TINY_MODEL = {
    "conv_layers": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]],
    "hidden_size": 32, "num_layers": 2, "num_heads": 2, "ffn_dim": 64, "final_dim": 16, "codevector_dim": 16,
    "num_codevectors_per_group": 8, "num_negatives": 5, "mask_prob": 0.5, "mask_length": 3, "conv_pos": 8,
    "conv_pos_groups": 4,
}


def make_corpus(root: Path, langs=("aa", "bb"), per_lang: int = 4, seconds: float = 1.0, splits=("train", "dev"),
                seed: int = 0) -> Path:
    """Write DIR/<lang>/<split>.jsonl with `per_lang` wavs each; each language has its own tone range."""
    rng = np.random.default_rng(seed)
    for li, lang in enumerate(langs):
        for split in splits:
            utts = []
            for i in range(per_lang):
                n = int(seconds * SR * rng.uniform(1.0, 1.3))
                t = np.arange(n) / SR
                seg = SR // 10  # a new tone every 100 ms
                freqs = np.repeat(rng.uniform(200 + 300 * li, 500 + 300 * li, size=n // seg + 1), seg)[:n]
                x = 0.5 * np.sin(2 * np.pi * np.cumsum(freqs) / SR) + 0.05 * rng.standard_normal(n)
                x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
                path = root / lang / "wav" / f"{split}_{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x.astype(np.float32), SR)
                utts.append(Utterance(audio=str(path), num_samples=n, lang=lang, speaker=f"s{i % 2}",
                                      id=f"{lang}_{split}_{i}"))
            write_manifest(root / lang / f"{split}.jsonl", utts)
    return root


def text_shard_corpus(root: Path, lang: str, texts) -> tuple[Path, Path]:
    """ROOT/<lang>/train.jsonl, one second of quiet audio per text, and its shards in ROOT/shards (one utterance per
    shard): the same labels as a manifest and as a shard folder."""
    from xlsr.data.shards import write_shards

    (root / lang).mkdir(parents=True, exist_ok=True)
    utts = []
    for k, text in enumerate(texts):
        audio = root / lang / f"u{k}.wav"
        sf.write(audio, np.full(16000, 0.01, dtype=np.float32), 16000)
        utts.append(Utterance(str(audio), 16000, lang, text=text, id=f"u{k}"))
    write_manifest(root / lang / "train.jsonl", utts)
    write_shards(root, root / "shards", shard_size=1, splits=("train",), show_progress=False)
    return root / lang / "train.jsonl", root / "shards"
