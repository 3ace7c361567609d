"""--shard-size: the units parse as named (MB decimal, MiB binary), and a shard takes utterances while the bytes
their tar members take (a header block each plus data padded to whole blocks) stay within the size, equality included."""

import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shards import parse_size, write_shards
from xlsr.errors import XlsrError

SR = 16000


@pytest.mark.parametrize("text, size", [("1GB", 10**9), ("500MB", 5 * 10**8), ("512MiB", 2**29), ("256mib", 2**28),
                                        ("4KiB", 4096), ("2KB", 2000), ("2000000", 2_000_000), ("1.5GiB", 3 * 2**29)])
def test_sizes_parse_in_their_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "1XB", "-1MB", "0.1B"])
def test_a_size_that_is_not_one_is_refused(text):
    with pytest.raises(XlsrError, match="--shard-size"):
        parse_size(text)


def _corpus(root: Path, lengths: list[int]) -> Path:
    rng = np.random.default_rng(0)
    utts = []
    for i, n in enumerate(lengths):
        path = root / "wav" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), SR)
        utts.append(Utterance(str(path), n, "en", text="a", id=f"u{i}"))
    write_manifest(root / "data" / "en" / "train.jsonl", utts)
    return root / "data"


def _footprints(tar_path: Path) -> list[int]:
    """Bytes each sample (all its members) takes in the tar, read from the member offsets tarfile reports."""
    with tarfile.open(tar_path) as tf:
        members = tf.getmembers()
    ends = [m.offset_data + -(-m.size // 512) * 512 for m in members]
    starts = [m.offset for m in members]
    per_key: dict[str, int] = {}
    for m, s, e in zip(members, starts, ends):
        key = m.name.split(".")[0]
        per_key[key] = per_key.get(key, 0) + e - s
    return list(per_key.values())


def _utterances_per_shard(out: Path) -> list[int]:
    return [len({m.split(".")[0] for m in tarfile.open(p).getnames()}) for p in sorted((out / "train").glob("*.tar"))]


def test_a_shard_fills_up_to_exactly_its_size_and_not_a_byte_over(tmp_path):
    data = _corpus(tmp_path, [3000, 3100, 2900, 3050])
    write_shards(data, tmp_path / "one", shard_size=10**9, splits=["train"], show_progress=False)
    sizes = _footprints(next((tmp_path / "one" / "train").glob("*.tar")))
    assert len(sizes) == 4
    exact = sizes[0] + sizes[1]
    write_shards(data, tmp_path / "exact", shard_size=exact, splits=["train"], show_progress=False)
    assert _utterances_per_shard(tmp_path / "exact")[0] == 2
    write_shards(data, tmp_path / "short", shard_size=exact - 1, splits=["train"], show_progress=False)
    assert _utterances_per_shard(tmp_path / "short")[0] == 1
