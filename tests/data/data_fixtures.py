"""Helpers shared by the data tests (a module of its own: `conftest` is not importable by name)."""

from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shard_index import read_index
from xlsr.data.shard_stream import StreamSpec
from xlsr.data.shards import write_shards

SR = 16000
TONE_SIZES = {"aa": 14, "bb": 5}  # utterances per language: aa in ~5 shards, bb in ~2 at TONE_SHARD_SIZE
TONE_SHARD_SIZE = 40_000


class PhoneVocab:
    """A minimal stand-in for text.vocab.Vocabulary: blank 0, <unk> 1, then the phones seen."""

    def __init__(self, labels):
        self.tokens = ["<blank>", "<unk>"] + sorted({p for label in labels for p in label.split()})
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, label):
        return [self.index.get(p, 1) for p in label.split()]

    def oov_report(self, labels):
        report = {}
        for label in labels:
            for p in label.split():
                if p not in self.index:
                    report[p] = report.get(p, 0) + 1
        return report


def write_tone(path: Path, rng: np.random.Generator) -> int:
    """A tone of 0.4-1.2 s at a pitch `rng` draws, written to `path` (16-bit wav: FLAC keeps it exactly); its
    number of samples."""
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * np.arange(int(rng.integers(6400, 19200))) / SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR)
    return len(x)


def tone_shards(tmp_path_factory) -> Path:
    """A shard folder of short tones (0.4-1.2 s) of the train split, TONE_SIZES utterances per language, ids
    <lang>-NN, each id's manifest line NN."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for lang, n in TONE_SIZES.items():
        utts = []
        for i in range(n):
            path = root / lang / "wav" / f"{i:02d}.wav"
            utts.append(Utterance(str(path), write_tone(path, rng), lang, phones="a b", id=f"{lang}-{i:02d}"))
        write_manifest(root / lang / "train.jsonl", utts)
    out = tmp_path_factory.mktemp("shards")
    write_shards(root, out, shard_size=TONE_SHARD_SIZE, splits=["train"], show_progress=False)
    return out


def tone_spec(out: Path, **kw) -> StreamSpec:
    """The fine-tuning stream of the train split of the shard folder `out` (small buffers); `kw` replaces fields."""
    index = read_index(out)
    base = dict(max_tokens=40_000, pretrain=False, labeler=lambda meta: [1], shuffle_buffer=4, window_batches=1)
    return StreamSpec(index.root, tuple(index.of_split("train")), **{**base, **kw})
