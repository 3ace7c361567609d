"""Tests for behaviour of the session-32 changes that no test held (a mutation pass, review s33): each fails on a small
change of the code it names (a boundary moved, a condition dropped) that every earlier test passed."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist
from test_demo_journey_out_folder import stand_in_releases

from xlsr.cli.data import _alpha_table
from xlsr.cli.main import main
from xlsr.data.batching import pretrain_loader
from xlsr.data.import_hf import split_of
from xlsr.data.import_writer import ImportWriter
from xlsr.data.manifest import Utterance
from xlsr.data.sampling import weights_table
from xlsr.data.synth.corpus import plan_corpus
from xlsr.data.synth.languages import get_language
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.decode.evaluate import normalize_hypothesis
from xlsr.demo import DEMO_MARKER, DemoSettings
from xlsr.demo.pipeline import check_out_dir, run_demo
from xlsr.errors import XlsrError
from xlsr.folder_lock import LOCK_FILE
from xlsr.text.vocab import UNK
from xlsr.train import distributed as dist_util
from xlsr.train import elastic
from xlsr.train.distributed import DistInfo
from xlsr.train.trainer import Trainer, TrainerConfig

# --- train/elastic.py: the count of ranks that know of a failure, and an error every rank meets alike ----------------


class EndedForPeer(Exception):
    """Raised where a rank would end for a peer (os._exit): the test sees which way the rank went."""


@pytest.fixture
def store(monkeypatch):
    """One in-memory store shared by every watch of the test, all of one group; a rank that ends for a peer is
    recorded (and its watch stops) instead of ending the test's process."""
    shared = dist.HashStore()
    monkeypatch.setattr(elastic, "_group_store", lambda: shared)
    monkeypatch.setattr(elastic, "broadcast_object", lambda obj, info: obj)
    monkeypatch.setattr(elastic, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex="group")))
    monkeypatch.setattr(elastic, "POLL_SECONDS", 0.02)
    monkeypatch.setattr(elastic, "_wait_until_gone", lambda process, limit_s: None)
    ended = []

    def end_for_peer(self, message):
        ended.append((self.info.rank, message))
        self._stop.set()
        if threading.current_thread() is threading.main_thread():  # the training thread, not the watch's
            raise EndedForPeer(message)

    monkeypatch.setattr(elastic.FailureWatch, "end_for_peer", end_for_peer)
    return shared, ended


def _until(condition, limit_s: float = 2.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _known(shared) -> int:
    return shared.add(elastic.FAILED_KEY + "group" + elastic.READ_KEY, 0)


def test_a_failing_rank_leaves_as_soon_as_every_rank_knows_of_its_failure(tmp_path, store, monkeypatch):
    shared, ended = store
    monkeypatch.setattr(elastic, "READ_WAIT_SECONDS", 5.0)
    peer = elastic.FailureWatch(DistInfo(rank=0, world_size=2), tmp_path)  # its watch polls every 0.02 s
    try:
        t0 = time.monotonic()
        with pytest.raises(XlsrError), elastic.one_failure_ends_all(DistInfo(rank=1, world_size=2), tmp_path):
            raise XlsrError("data/en/train.jsonl: 12 of 40 files unreadable")
        waited = time.monotonic() - t0
        assert _known(shared) == 2  # the failing rank counted itself, the peer's watch itself
        _until(lambda: ended)  # the peer's watch ends it just after counting itself
    finally:
        peer.close()
    assert ended == [(0, "rank 1 failed: data/en/train.jsonl: 12 of 40 files unreadable")]
    assert waited < 2.5, f"waited {waited:.1f} s of READ_WAIT_SECONDS once both ranks knew"


def test_a_failing_rank_waits_for_a_peer_that_has_not_read_its_failure_yet(tmp_path, store, monkeypatch):
    # the store may live in the failing rank's process: leaving at once, it would take the failure with it
    shared, ended = store
    monkeypatch.setattr(elastic, "READ_WAIT_SECONDS", 5.0)
    late = []
    timer = threading.Timer(0.3, lambda: late.append(elastic.FailureWatch(DistInfo(rank=0, world_size=2), tmp_path)))
    timer.start()
    try:
        with pytest.raises(XlsrError), elastic.one_failure_ends_all(DistInfo(rank=1, world_size=2), tmp_path):
            raise XlsrError("batch too large")
        assert _known(shared) == 2  # the peer read it before this rank left
        _until(lambda: ended)
    finally:
        timer.join()
        for watch in late:
            watch.close()
    assert ended == [(0, "rank 1 failed: batch too large")]


def test_a_rank_whose_collective_broke_counts_itself_before_it_ends_for_the_peer(tmp_path, store, monkeypatch):
    shared, ended = store
    monkeypatch.setattr(elastic, "POLL_SECONDS", 60.0)  # the watch threads stay out of it
    failing = elastic.FailureWatch(DistInfo(rank=1, world_size=2), tmp_path)
    failing.announce(XlsrError("out of memory"))
    failing.close()
    assert _known(shared) == 1
    with pytest.raises(EndedForPeer), elastic.one_failure_ends_all(DistInfo(rank=0, world_size=2), tmp_path):
        raise RuntimeError("gloo: connection closed by peer")
    assert ended == [(0, "rank 1 failed: out of memory")]
    assert _known(shared) == 2  # the failing rank, waiting on the count, may leave


def test_the_same_error_of_another_kind_on_every_rank_is_said_once_not_ended_for(tmp_path, store, monkeypatch):
    # an error that is no XlsrError but the same on every rank (a bug every rank meets alike) is the peer's own
    # error, not a collective broken by the peer's leaving: said once, by the first, the others quiet (2)
    shared, ended = store
    monkeypatch.setattr(elastic, "POLL_SECONDS", 60.0)
    monkeypatch.setattr(elastic, "READ_WAIT_SECONDS", 0.0)
    with pytest.raises(ValueError), elastic.one_failure_ends_all(DistInfo(rank=1, world_size=2), tmp_path):
        raise ValueError("codebook size must be a power of 2")
    with pytest.raises(SystemExit) as quiet, elastic.one_failure_ends_all(DistInfo(rank=0, world_size=2), tmp_path):
        raise ValueError("codebook size must be a power of 2")
    assert quiet.value.code == 2 and ended == []


# --- train/trainer.py: the settings check between ranks -----------------------------------------------------------

_RANK_0 = {"max_updates": 3, "lr": 0.01, "seed": 1, "device": "cuda:0"}


def _rank_1_refusal(tmp_path, monkeypatch, mine: dict) -> str:
    cfg = TrainerConfig(out=str(tmp_path), max_updates=3, device="cpu", progress=False, tensorboard=False)
    trainer = Trainer(cfg, lambda: None, resolved_config=mine)
    trainer.info = DistInfo(rank=1, world_size=2)
    monkeypatch.setattr(dist_util, "broadcast_object", lambda obj, info: dict(_RANK_0))
    with pytest.raises(XlsrError) as info:
        trainer._check_same_settings_as_rank_0()
    return str(info.value)


def test_two_differing_settings_name_the_first_and_count_the_other(tmp_path, monkeypatch):
    message = _rank_1_refusal(tmp_path, monkeypatch, {**_RANK_0, "max_updates": 5, "lr": 0.02})
    assert message == ("lr: 0.01 on rank 0, 0.02 on another rank (and 1 more settings differ); every rank must run "
                       "with the same settings (the same command and config file on every node)")


def test_a_setting_rank_0_has_and_another_rank_lacks_is_refused(tmp_path, monkeypatch):
    mine = {k: v for k, v in _RANK_0.items() if k != "seed"}
    assert _rank_1_refusal(tmp_path, monkeypatch, mine).startswith("seed: 1 on rank 0, None on another rank; every ")


# --- decode/evaluate.py: <unk> held by a letter the transcript lacks ---------------------------------------------


def test_a_transcript_holding_the_first_unk_holder_letter_keeps_it():
    rare = chr(0x2A6DF)  # the last ideograph of CJK Extension B: the first letter tried as <unk>'s holder
    assert normalize_hypothesis(f"{rare} {UNK} A") == f"{rare} {UNK} a"


# --- data/import_hf.py: split names from file and folder names --------------------------------------------------


def test_a_split_name_in_capitals_or_with_an_empty_qualifier_is_the_split(tmp_path):
    assert split_of(tmp_path / "TRAIN-00000-of-00004.parquet", tmp_path) == "train"
    assert split_of(tmp_path / "Validation.clean-00000-of-00001.parquet", tmp_path) == "dev.clean"
    assert split_of(tmp_path / "test." / "0000.parquet", tmp_path) == "test"  # not `test.`: test..jsonl


# --- cli/data.py: the α table of `xlsr data stats` ----------------------------------------------------------------


def _utts(lengths: dict[str, list[int]]) -> UtteranceIndex:
    return UtteranceIndex.from_utterances([Utterance(audio=f"/{lang}{k}.flac", num_samples=n, lang=lang, id=f"{lang}{k}")
                                           for lang, ns in lengths.items() for k, n in enumerate(ns)])


def test_an_utterance_exactly_min_sample_size_long_is_weighed_as_the_run_weighs_it():
    utts = _utts({"aa": [32000, 32000], "bb": [48000] * 2})
    run = pretrain_loader(utts, max_tokens=1_400_000, min_sample_size=32000, alpha=0.5)
    table = _alpha_table(utts, 0.5, 32000, "train")
    assert table == weights_table(run.sampler.hours, 0.5)
    assert set(run.sampler.hours) == {"aa", "bb"} and "left out" not in table


# --- data/import_writer.py: the import summary's long recordings -------------------------------------------------


def test_the_summary_counts_only_utterances_longer_than_30_s_and_names_the_longest_whatever_its_place(tmp_path):
    with ImportWriter(tmp_path, source="src", unit="files") as writer:
        for k, seconds in enumerate((30, 600, 31)):  # exactly 30 s is no longer than 30 s
            writer.add(Utterance(audio=f"/r{k}.flac", num_samples=seconds * 16000, lang="sw", id=f"r{k}"), "train")
        summary = writer.finish()
    assert (summary.long, summary.longest) == (2, 600 * 16000)
    assert "; 2 longer than 30 s (the longest 10.0 min):" in summary.line()


# --- data/synth/corpus.py: the words of one utterance ------------------------------------------------------------


def test_words_per_utt_is_capped_at_200_words_an_utterance():
    es = [get_language("es")]
    assert {len(p.text.split()) for p in plan_corpus(es, 3, 0, words_per_utt=(200, 200))} == {200}
    with pytest.raises(XlsrError) as info:
        plan_corpus(es, 3, 0, words_per_utt=(1, 201))
    assert str(info.value) == "--words-per-utt: at most 200 words an utterance (over a minute of speech), got 1-201"


# --- train/curves.py: what a log's update record is --------------------------------------------------------------


def test_a_log_whose_update_numbers_are_booleans_is_no_runs_log(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    record = json.dumps({"split": "train", "update": True, "loss": 1.0})
    (run / "log.jsonl").write_text(f"{record}\n{record}\n")
    assert main(["plot", str(run)]) == 2
    assert capsys.readouterr().err == (f"xlsr: error: {run / 'log.jsonl'}: none of its records has both a `split` "
                                       f"name and an `update` number (is this a run's log.jsonl?)\n")
    assert not (run / "curves.png").exists()


# --- demo/pipeline.py and demo/settings.py: the out folder and the settings' refusals -----------------------------


def _folder_with_log(tmp_path, log: bytes) -> Path:
    out = tmp_path / "demo"
    (out / "finetune").mkdir(parents=True)
    (out / DEMO_MARKER).write_bytes(log)
    return out


@pytest.mark.parametrize("log", ["[my notes]\n", "[1/5] synth: it: 6.8 min labeled train (41 s)\n[my notes"])
def test_a_log_of_the_users_own_that_starts_with_a_bracket_is_no_demos(tmp_path, log):
    out = _folder_with_log(tmp_path, log.encode())
    with pytest.raises(XlsrError, match="holds no earlier demo"):
        check_out_dir(out)


def test_a_long_demo_log_cut_inside_a_character_at_the_read_limit_is_still_the_demos(tmp_path):
    line = "[4/5] pretrain: loss 6.2 → 5.9 bits (updates 1–20)\n".encode()
    arrow, limit = "→".encode(), 1 << 16  # the check reads the log's first 64 KiB

    def log(pad: int) -> bytes:
        return b"[1/5] synth: " + b"x" * pad + b"\n" + line * (limit // len(line) + 2)

    # the first line padded so that an arrow's three bytes straddle the limit: the head ends in a broken character
    pad = next(pad for pad in range(len(line)) if log(pad)[limit - 1:limit + 2] == arrow)
    out = _folder_with_log(tmp_path, log(pad))
    assert check_out_dir(out) == out


def test_a_demo_into_a_folder_of_the_users_own_leaves_its_lock_file_untouched(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / LOCK_FILE).write_text("my notes")
    with pytest.raises(XlsrError, match="holds no earlier demo"):
        run_demo(mine, DemoSettings.quick(), released_dir=stand_in_releases(tmp_path / "rel"), quiet=True)
    assert sorted(p.name for p in mine.iterdir()) == [LOCK_FILE] and (mine / LOCK_FILE).read_text() == "my notes"


def test_an_unknown_pretraining_language_is_named_as_pretrain_langs():
    with pytest.raises(XlsrError) as info:
        replace(DemoSettings.quick(), pretrain_langs=("es", "xx")).check()
    assert str(info.value).startswith("pretrain_langs: unknown language code 'xx'; known: ")
