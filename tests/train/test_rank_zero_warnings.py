"""Under torchrun the `xlsr` command says a warning that every rank would give alike once, from rank 0, and keeps
what only one rank can say: its bad audio files, and any error. XLSR_LOG_ALL_RANKS=1 shows every rank's."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.cli.main import main
from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance

from . import _ranks
from ._tones import write_tone_corpus


def _utterances(folder, bad: bool) -> list[Utterance]:
    """Four 1 s noise files, and with `bad` a fifth that is no audio file."""
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for k in range(5 if bad else 4):
        path = folder / f"u{k}.wav"
        if k < 4:
            sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(16000)).astype(np.float32), 16000)
        else:
            path.write_text("not audio")
        utts.append(Utterance(audio=str(path), num_samples=16000, lang="xx", id=f"u{k}"))
    return utts


def _worker(rank: int, world: int, port: int, data: str, out: str, own: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a run every rank makes alike: its data has no dev manifests
    assert main(["pretrain", "--preset", "tiny", "--data", data, "--out", out, "--max_updates", "1",
                 "--max_tokens", "16000", "--min_sample_size", "8000", "--max_sample_size", "16000",
                 "--device", "cpu", "--progress", "false", "--tensorboard", "false", "--num_workers", "0"]) == 0
    # what only rank 1 reads: its share of an epoch holds a bad file
    loader = pretrain_loader(_utterances(Path(own) / f"rank{rank}", bad=rank == 1), max_tokens=64000,
                             min_sample_size=8000, max_sample_size=16000, max_bad_share=0.5)
    assert sum(len(b.waveforms) for b in loader) == 4


def test_two_ranks_say_a_shared_warning_once_and_a_ranks_own_bad_file(tmp_path, capfd):
    data = tmp_path / "tones"
    write_tone_corpus(data, "train", 6, seed=0)  # no dev.jsonl
    _ranks.run(_worker, (2, _ranks.free_ports(1)[0], str(data), str(tmp_path / "run"), str(tmp_path / "own")))
    err = capfd.readouterr().err
    assert err.count("has no dev manifests: training without validation") == 1  # was 2: one per rank
    assert err.count(f"xlsr: warning: skipping bad audio: {tmp_path / 'own' / 'rank1' / 'u4.wav'}") == 1
    warnings = [line for line in err.splitlines() if line.startswith("xlsr: warning:")]
    assert len(warnings) == len(set(warnings)) == 2, err


@pytest.fixture
def rank_1(monkeypatch, capsys):
    """This process as rank 1 of a torchrun job, its log shown as the `xlsr` command shows it."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("XLSR_LOG_ALL_RANKS", raising=False)
    assert main(["synth", "--list"]) == 0
    capsys.readouterr()
    return monkeypatch


def test_a_rank_other_than_0_still_shows_errors_and_its_own_data_problems(rank_1, capsys):
    logging.getLogger("xlsr.train.pretrain").warning("data has no dev manifests")
    logging.getLogger("xlsr.data.batching").warning("skipping %d of %d utterances longer than %d samples", 2, 9, 10)
    logging.getLogger("xlsr.train.trainer").error("cannot write the log")
    logging.getLogger("xlsr.data.batching").warning("skipping bad audio: %s", "a.wav: not audio")
    logging.getLogger("xlsr.data.batching").warning("language %s: %d of %s in epoch %d %s bad, more than ...", "es",
                                                    3, "the 9 es audio files rank 1 of 2 reads", 0, "are")
    logging.getLogger("xlsr.data.shard_loader").warning("%s", "SHARDS/train: es dropped")
    assert capsys.readouterr().err == ("xlsr: error: cannot write the log\n"
                                       "xlsr: warning: skipping bad audio: a.wav: not audio\n"
                                       "xlsr: warning: language es: 3 of the 9 es audio files rank 1 of 2 reads in "
                                       "epoch 0 are bad, more than ...\n"
                                       "xlsr: warning: SHARDS/train: es dropped\n")


def test_every_ranks_warnings_on_request_and_rank_0s_always(rank_1, capsys):
    rank_1.setenv("XLSR_LOG_ALL_RANKS", "1")
    logging.getLogger("xlsr.train.pretrain").warning("data has no dev manifests")
    rank_1.setenv("XLSR_LOG_ALL_RANKS", "0")
    logging.getLogger("xlsr.train.pretrain").warning("not shown")
    rank_1.setenv("RANK", "0")
    logging.getLogger("xlsr.train.pretrain").warning("rank 0 says it")
    assert capsys.readouterr().err == "xlsr: warning: data has no dev manifests\nxlsr: warning: rank 0 says it\n"


def test_each_nodes_first_process_shows_its_nodes_warnings(rank_1, capsys):
    rank_1.setenv("RANK", "3")
    rank_1.setenv("LOCAL_RANK", "0")  # the first process of a second node: its disk, its memory
    logging.getLogger("xlsr.data.index_cache").warning("cannot write the utterance index beside m.jsonl")
    rank_1.setenv("LOCAL_RANK", "1")
    logging.getLogger("xlsr.data.index_cache").warning("not shown")
    assert capsys.readouterr().err == "xlsr: warning: cannot write the utterance index beside m.jsonl\n"
