"""Sharded fine-tuning meets the utterances the manifest path filters out or refuses: one too short for its label
(shorter than the CNN's receptive field: no frame at all) is reported and skipped as the manifest path's filter
skips it, one of 0 samples is a bad file named in the manifest's words, and a member that decodes shorter than
its .json says is a bad file, not a batch row without frames."""

import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data import shards as shards_mod
from xlsr.data.manifest import Utterance, record_problem, write_manifest
from xlsr.data.shard_index import read_index
from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_stream import StreamSpec
from xlsr.data.shards import write_shards
from xlsr.model.config import cnn_frames, standard_conv_layers
from xlsr.text.labels import learnable
from xlsr.text.vocab import Vocabulary
from xlsr.train.shard_finetune import ShardLabeler

SR = 16000
LENGTHS = [8000, 300, 9000, 12000, 7000, 10000]  # aa-01: 300 samples, under the receptive field (400): no frame
VOCAB = Vocabulary.build(["a b"], kind="phones")
CONV = standard_conv_layers()


def _corpus(root: Path) -> list[Utterance]:
    utts = []
    for i, n in enumerate(LENGTHS):
        path = root / "aa" / "wav" / f"{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR), SR)
        utts.append(Utterance(str(path), n, "aa", phones="a b", id=f"aa-{i:02d}"))
    write_manifest(root / "aa" / "train.jsonl", utts)
    return utts


def _one_pass(out: Path, caplog) -> tuple[list[list[str]], ShardLoader, list[str]]:
    """Each batch's ids of one pass of sharded fine-tuning with the trainer's labeler, the loader, the warnings."""
    index = read_index(out)
    spec = StreamSpec(index.root, tuple(index.of_split("train")), max_tokens=40_000, pretrain=False,
                      labeler=ShardLabeler(VOCAB, "phones", CONV), passes=1)
    loader = ShardLoader(spec, max_bad_share=0.5)
    with caplog.at_level(logging.WARNING, logger="xlsr.data.shard_loader"):
        batches = [b.ids for b in loader]
    return batches, loader, [r.getMessage() for r in caplog.records if r.name == "xlsr.data.shard_loader"]


def test_an_utterance_too_short_for_its_label_is_reported_and_skipped_as_the_manifest_path_skips_it(tmp_path,
                                                                                                      caplog):
    utts = _corpus(tmp_path)
    keep, report = learnable(utts, VOCAB, "phones", lambda n: cnn_frames(n, CONV))
    assert report.label_too_long == ["aa-01"]  # the manifest path: skipped, in one line
    out = tmp_path / "shards"
    write_shards(tmp_path, out, shard_size=10**7, splits=["train"], show_progress=False)
    batches, loader, warnings = _one_pass(out, caplog)
    assert sorted(i for b in batches for i in b) == sorted(u.id for u, k in zip(utts, keep) if k)
    assert all(batches) and loader.bad_files == 0
    said = [w for w in warnings if "aa-01" in w]
    assert len(said) == 1 and "aa-000000.tar: utterance aa-01 skipped" in said[0] and "300 samples" in said[0]
    assert "aa utterances whose label is empty or needs more frames than their audio gives are skipped" in said[0]
    assert "\n" not in said[0]


def _shards_with(tmp_path: Path, monkeypatch, edit) -> Path:
    """Shards of the corpus, with aa-03's tar sample changed by `edit(sample)` as it is written."""
    _corpus(tmp_path)
    encode = shards_mod.encode_utterance

    def edited(u, key):
        sample, n = encode(u, key)
        return (edit(sample), n) if u.id == "aa-03" else (sample, n)

    monkeypatch.setattr(shards_mod, "encode_utterance", edited)
    out = tmp_path / "shards"
    write_shards(tmp_path, out, shard_size=10**7, splits=["train"], show_progress=False)
    return out


def _with_json(sample: dict, **fields) -> dict:
    meta = json.loads(sample["json"])
    meta.update(fields)
    return {**sample, "json": json.dumps(meta).encode()}


def test_an_utterance_of_zero_samples_is_a_bad_file_in_the_words_of_a_manifest_line(tmp_path, monkeypatch, caplog):
    """A tar made elsewhere (xlsr data shard never writes empty audio) with a 0-sample member."""
    def empty(sample):
        flac = io.BytesIO()
        sf.write(flac, np.zeros(0, dtype=np.float32), SR, format="FLAC", subtype="PCM_16")
        return _with_json({**sample, "flac": flac.getvalue()}, num_samples=0)

    out = _shards_with(tmp_path, monkeypatch, empty)
    batches, loader, warnings = _one_pass(out, caplog)
    assert loader.bad_files == 1 and all(batches)
    assert sorted(i for b in batches for i in b) == ["aa-00", "aa-02", "aa-04", "aa-05"]
    problem = record_problem({"audio": "x.wav", "num_samples": 0, "lang": "aa"})  # the manifest path's words
    assert [w for w in warnings if problem in w and "aa-000000.tar" in w]


def test_a_member_that_decodes_shorter_than_its_json_says_is_a_bad_file_not_a_row_without_frames(tmp_path,
                                                                                                  monkeypatch, caplog):
    """Its .json says 12000 samples (enough frames, so the labeler keeps it), its FLAC holds 300: as the manifest
    path's check of a decoded length against the manifest's, a bad file."""
    def short(sample):
        flac = io.BytesIO()
        sf.write(flac, np.zeros(300, dtype=np.float32), SR, format="FLAC", subtype="PCM_16")
        return {**sample, "flac": flac.getvalue()}

    out = _shards_with(tmp_path, monkeypatch, short)
    batches, loader, warnings = _one_pass(out, caplog)
    assert "aa-03" not in {i for b in batches for i in b} and all(batches)
    assert loader.bad_files == 1
    assert [w for w in warnings if "aa-03" in w and "decoded 300 samples, its .json says 12000" in w]


def test_many_unlabelled_utterances_give_one_line_per_language_for_the_whole_run(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "LENGTHS", [8000, 300, 9000, 200, 7000, 350])
    _corpus(tmp_path)
    out = tmp_path / "shards"
    write_shards(tmp_path, out, shard_size=10**7, splits=["train"], show_progress=False)
    index = read_index(out)
    spec = StreamSpec(index.root, tuple(index.of_split("train")), max_tokens=40_000, pretrain=False,
                      labeler=ShardLabeler(VOCAB, "phones", CONV), passes=1)
    loader = ShardLoader(spec, max_bad_share=0.5)
    with caplog.at_level(logging.WARNING, logger="xlsr.data.shard_loader"):
        for _ in range(3):  # three passes, as three epochs
            ids = sorted(i for b in loader for i in b.ids)
            assert ids == ["aa-00", "aa-02", "aa-04"]
    said = [r.getMessage() for r in caplog.records if "skipped as they stream by" in r.getMessage()]
    assert len(said) == 1 and "utterance aa-01 skipped" in said[0]
