"""An index over several manifests: per-table questions (speakers, utterances at a table's first row) see each row in
its own table, whichever rows a selection keeps."""

import json

import numpy as np

from xlsr.data.index_cache import open_split
from xlsr.data.manifest import read_split


def _write(path, lang: str, speakers: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"audio": f"{lang}{i}.flac", "num_samples": 1000 + i, "lang": lang,
                                        "speaker": s}) + "\n" for i, s in enumerate(speakers)))


def test_speakers_and_utterances_are_counted_in_their_own_table(tmp_path):
    _write(tmp_path / "de" / "train.jsonl", "de", ["anna", "anna", "bert"])
    _write(tmp_path / "es" / "train.jsonl", "es", ["carla", "dario", "dario", "elena"])
    index = open_split(tmp_path, "train")
    expected = read_split(tmp_path, "train")
    assert list(index) == expected and index.num_speakers() == 5
    first_of_es = index.subset(np.array([3]))  # the first row of the second table alone
    assert first_of_es.num_speakers() == 1 and list(first_of_es) == [expected[3]]
    edges = index.subset(np.array([2, 3, 6]))
    assert edges.num_speakers() == 3 and [u.speaker for u in edges] == ["bert", "carla", "elena"]
