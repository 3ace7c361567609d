"""A run resumed with its manifests' paths spelled otherwise (relative, or through a link) reads the same manifests:
no warning that the data changed, and the epoch's bad files stay counted as the checkpoint has them."""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.batching import pretrain_loader
from xlsr.data.index_cache import open_split

LOADER = dict(max_tokens=8000, min_sample_size=1000, max_sample_size=8000, seed=0, alpha=1.0, max_bad_share=0.2)


@pytest.fixture
def checkpointed(tmp_path):
    """A corpus DIR/data/xx/train.jsonl (10 files) and a loader's state after one batch, with one bad file in it."""
    lang = tmp_path / "data" / "xx"
    (lang / "audio").mkdir(parents=True)
    lines = []
    for i in range(10):
        sf.write(lang / "audio" / f"{i:02d}.wav", np.full(4000, 0.1), 16000)
        lines.append(json.dumps({"audio": f"audio/{i:02d}.wav", "num_samples": 4000, "lang": "xx"}))
    (lang / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    loader = pretrain_loader(open_split(tmp_path / "data", "train"), **LOADER)
    bad = loader.plans()[0].indices[0]
    (lang / "audio" / f"{bad:02d}.wav").write_text("not audio")
    next(iter(loader))
    state = loader.state_dict()
    assert state["epoch_bad_files"] == 1 and state["bad_indices"] == [bad]
    return tmp_path, state


@pytest.mark.parametrize("spelling", ["relative", "link"])
def test_a_resume_over_the_same_manifest_spelled_otherwise_is_no_change(checkpointed, spelling, monkeypatch, caplog):
    root, state = checkpointed
    monkeypatch.chdir(root)
    if spelling == "link":
        (root / "link").symlink_to(root / "data")
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        resumed = pretrain_loader(open_split("data" if spelling == "relative" else root / "link", "train"), **LOADER)
        resumed.load_state_dict(state)
    assert not [r for r in caplog.records if "changed since" in r.getMessage()]
    assert resumed.epoch_bad_files == 1 and resumed.bad_indices == set(state["bad_indices"])


def test_a_checkpoint_that_spells_its_manifest_relative_resumes_from_the_same_folder(checkpointed, monkeypatch,
                                                                                      caplog):
    root, state = checkpointed
    monkeypatch.chdir(root)
    (stamp,) = state["manifests"].values()
    state = state | {"manifests": {"data/xx/train.jsonl": stamp}}  # as a run given relative paths recorded them
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        resumed = pretrain_loader(open_split(root / "data", "train"), **LOADER)
        resumed.load_state_dict(state)
    assert not [r for r in caplog.records if "changed since" in r.getMessage()]
    assert resumed.epoch_bad_files == 1
