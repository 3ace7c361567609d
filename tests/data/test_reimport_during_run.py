"""A corpus re-imported under a running training run (import_writer.py swaps its manifest and audio): the stop at
max_bad_share says which manifest changed, the rerun reads the new manifest (the index cache does not serve the
old one), and a resume from a checkpoint of the old data says the data changed and counts its bad files anew."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.batching import pretrain_loader
from xlsr.data.index_cache import open_split
from xlsr.errors import XlsrError

N = 10
LOADER = dict(max_tokens=8000, min_sample_size=1000, max_sample_size=8000, seed=0, alpha=1.0, max_bad_share=0.2)


def _import(data, folder: str, samples: int | list[int]) -> None:
    """Audio of `samples` samples (each, or per file) under DIR/xx/audio/<folder>/, and the manifest listing it,
    written as an import writes it: the new manifest renamed over the old one."""
    lang = data / "xx"
    (lang / "audio" / folder).mkdir(parents=True, exist_ok=True)
    lines = []
    for i, n in enumerate([samples] * N if isinstance(samples, int) else samples):
        sf.write(lang / "audio" / folder / f"{i:02d}.wav", np.full(n, 0.1 * (i + 1)), 16000)
        lines.append(json.dumps({"audio": f"audio/{folder}/{i:02d}.wav", "num_samples": n, "lang": "xx"}))
    tmp = lang / ".train.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, lang / "train.jsonl")


def _reimport_replacing_files(data) -> None:
    """Same file names, other audio (another length), and a new manifest."""
    shutil.rmtree(data / "xx" / "audio" / "train")
    _import(data, "train", 6000)


def _reimport_after_commit(data) -> None:
    """The run indexed the committed manifest, which points into the hidden folder; the import then moves the audio
    to audio/train, rewrites the manifest to point there and removes the hidden folder."""
    _import(data, "train", 6000)
    shutil.rmtree(data / "xx" / "audio" / ".train.importing")


@pytest.mark.parametrize("first, reimport", [("train", _reimport_replacing_files),
                                             (".train.importing", _reimport_after_commit)])
def test_the_stop_names_the_manifest_that_changed_and_the_rerun_reads_it_anew(tmp_path, first, reimport):
    _import(tmp_path, first, 4000)
    if first != "train":  # what the run read: the new audio under the hidden folder, also in audio/train
        shutil.copytree(tmp_path / "xx" / "audio" / first, tmp_path / "xx" / "audio" / "train")
    loader = pretrain_loader(open_split(tmp_path, "train"), **LOADER)
    reimport(tmp_path)
    manifest = str(tmp_path / "xx" / "train.jsonl")
    with pytest.raises(XlsrError) as stop:
        list(loader)
    message = str(stop.value)
    assert "audio files in epoch 0 are bad" in message and "\n" not in message
    assert f"{manifest} changed since this run read it (re-imported?)" in message

    utts = open_split(tmp_path, "train")  # the rerun
    assert utts.tables[0].source == manifest
    assert utts.num_samples.tolist() == [6000] * N
    assert {os.path.dirname(utts.audio(i)) for i in range(N)} == {str(tmp_path / "xx" / "audio" / "train")}
    loader = pretrain_loader(utts, **LOADER)
    assert sum(len(b.langs) for b in loader) == N and loader.epoch_bad_files == 0


def test_a_stop_over_an_unchanged_manifest_says_nothing_of_a_change(tmp_path):
    _import(tmp_path, "train", 4000)
    loader = pretrain_loader(open_split(tmp_path, "train"), **LOADER)
    for i in range(3):
        (tmp_path / "xx" / "audio" / "train" / f"{i:02d}.wav").write_text("not audio")
    with pytest.raises(XlsrError, match="audio files in epoch 0 are bad") as stop:
        list(loader)
    assert "changed since" not in str(stop.value)


def test_a_resume_over_a_changed_manifest_warns_and_counts_the_epochs_bad_files_anew(tmp_path, caplog):
    _import(tmp_path, "train", 4000)
    loader = pretrain_loader(open_split(tmp_path, "train"), **LOADER)
    batches = iter(loader)
    next(batches)  # read before the re-import
    stale = set(loader.plans()[1].indices)  # the next batch's files come back as other (longer) recordings
    _import(tmp_path, "train", [6000 if i in stale else 4000 for i in range(N)])
    next(batches)  # the run skips and counts them, then reads the next batch
    state = loader.state_dict()  # the checkpoint
    assert state["epoch_bad_files"] == 2 and set(state["bad_indices"]) == stale

    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):  # the rerun
        resumed = pretrain_loader(open_split(tmp_path, "train"), **LOADER)
        resumed.load_state_dict(state)
    manifest = str(tmp_path / "xx" / "train.jsonl")
    warned = [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]
    assert len(warned) == 1 and manifest in warned[0] and "\n" not in warned[0]
    assert (resumed.epoch, resumed.position) == (0, state["position"])
    assert resumed.epoch_bad_files == 0 and resumed.bad_indices == set()
    # the rest of the epoch reads every utterance its plans hold: none is left out as bad in the old data
    rest = [i for p in resumed.plans()[resumed.position:] for i in p.indices]
    assert stale & set(rest)
    assert sum(len(b.langs) for b in resumed) == len(rest) and resumed.epoch_bad_files == 0

    caplog.clear()
    again = pretrain_loader(open_split(tmp_path, "train"), **LOADER)
    again.load_state_dict(state | {"manifests": resumed.state_dict()["manifests"]})  # the same data: no warning
    assert not [r for r in caplog.records if "changed since" in r.getMessage()]
    assert again.bad_indices == stale
