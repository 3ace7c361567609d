"""A decoder that crashes on one file kills the data worker reading it: the run loses the file, not the run.

The crash is real (the worker process is killed by SIGSEGV); the file is named from the worker's slot, charged as a
bad file, never decoded again in the run (nor after a resume), and the batches are those of a run where the file was
unreadable. A worker killed otherwise (SIGKILL: the OOM killer) stops the run in one line naming the file.
"""

import logging
import os
import resource
import signal
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from data_fixtures import PhoneVocab
from torch.utils.data import get_worker_info

from xlsr.data import batching
from xlsr.data.audio import load_audio
from xlsr.data.batching import finetune_loader, pretrain_loader
from xlsr.data.manifest import Utterance
from xlsr.errors import AudioError, XlsrError

PRETRAIN = dict(max_tokens=48000, min_sample_size=4000, max_sample_size=16000, alpha=1.0, seed=3)


def _corpus(tmp_path, names):
    utts = []
    for i, name in enumerate(names):
        path = tmp_path / f"{name}.wav"
        n = 8000 + 1000 * i
        sf.write(path, np.sin(np.arange(n) * (0.01 + 0.003 * i)).astype(np.float32), 16000, subtype="FLOAT")
        utts.append(Utterance(audio=str(path), num_samples=n, lang="aa" if i % 2 else "bb", id=name,
                              phones="a b" if i % 2 else "b c"))
    return utts


def _decoder(log_path, kill=signal.SIGSEGV):
    """load_audio, except that a worker decoding a file named crash* dies of `kill` (and says so in `log_path`)."""
    def load(path, *args, **kwargs):
        if os.path.basename(str(path)).startswith("crash"):
            assert get_worker_info() is not None, "the crashing file was decoded in the trainer's own process"
            with open(log_path, "a") as f:
                f.write(f"{path}\n")
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
            os.kill(os.getpid(), kill)
            time.sleep(10)
        return load_audio(path, *args, **kwargs)
    return load


def _unreadable(path, *args, **kwargs):
    """The reference: the same files, the crashing one unreadable."""
    if os.path.basename(str(path)).startswith("crash"):
        raise AudioError(f"{path}: unreadable")
    return load_audio(path, *args, **kwargs)


def _crashes(log_path):
    return log_path.read_text().splitlines() if log_path.exists() else []


NAMES = [f"u{i}" for i in range(10)] + ["crash"] + [f"v{i}" for i in range(7)]


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_a_crashing_decoder_costs_its_file_not_the_run(tmp_path, monkeypatch, caplog, task):
    utts = _corpus(tmp_path, NAMES)
    vocab = PhoneVocab([u.phones for u in utts])

    def loader(num_workers):
        if task == "pretrain":
            return pretrain_loader(utts, **PRETRAIN, num_workers=num_workers, max_bad_share=0.2)
        return finetune_loader(utts, vocab, max_tokens=40000, seed=3, num_workers=num_workers, max_bad_share=0.2)

    monkeypatch.setattr(batching, "load_audio", _unreadable)
    reference = [b.waveforms for b in loader(0)]

    crashes = tmp_path / "crashes.txt"
    monkeypatch.setattr(batching, "load_audio", _decoder(crashes))
    crashing = loader(2)
    caplog.set_level(logging.WARNING, logger="xlsr.data.batching")
    caplog.clear()  # the reference's line for its unreadable file
    got = []
    for batch in crashing:
        got.append(batch.waveforms)
        # the trainer is busy while workers decode ahead, and one dies: PyTorch's error must not surface here
        time.sleep(1.0 if len(got) == 1 else 0.05)
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    crashed = len(_crashes(crashes))  # 1, or 2 where both workers had a batch drawing the file before it was known
    assert crashed >= 1
    assert crashing.bad_files == crashing.epoch_bad_files == 1
    warned = [r.getMessage() for r in caplog.records if "crash.wav" in r.getMessage()]
    assert len(warned) == 1 and "the audio decoder crashed on it" in warned[0] and "SIGSEGV" in warned[0]

    # the next epoch and a resumed run count the file as bad again, without decoding it (which would crash)
    crashing.set_epoch(1)
    assert len(list(crashing)) > 0
    assert len(_crashes(crashes)) == crashed and crashing.bad_files == 2 and crashing.epoch_bad_files == 1
    state = crashing.state_dict()
    assert [i for i, _ in state["crashed"]] == [NAMES.index("crash")]
    resumed = loader(2)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert len(list(resumed)) > 0
    assert len(_crashes(crashes)) == crashed and resumed.epoch_bad_files == 1
    crashing.close()
    resumed.close()


def test_crashes_count_against_max_bad_share(tmp_path, monkeypatch):
    utts = _corpus(tmp_path, [f"u{i}" for i in range(6)] + ["crash1", "crash2"])
    monkeypatch.setattr(batching, "load_audio", _decoder(tmp_path / "crashes.txt"))
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=2, max_bad_share=0.1)  # not one of the epoch's files
    with pytest.raises(XlsrError, match=r"\d of \d audio files in epoch 0 are bad .*the audio decoder crashed on it"):
        list(loader)
    loader.close()


def test_a_worker_killed_by_sigkill_stops_the_run_naming_the_file(tmp_path, monkeypatch):
    utts = _corpus(tmp_path, NAMES)
    monkeypatch.setattr(batching, "load_audio", _decoder(tmp_path / "crashes.txt", kill=signal.SIGKILL))
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=2)
    with pytest.raises(XlsrError, match=r"a data loading worker of rank 0 ended while decoding \S+crash\.wav: "
                                        r"SIGKILL \(the kernel's out-of-memory killer"):
        list(loader)
    loader.close()


def test_a_worker_crashing_outside_decoding_stops_the_run_in_one_line(tmp_path, monkeypatch):
    utts = _corpus(tmp_path, [f"u{i}" for i in range(8)])
    crop = batching.crop_batch

    def crashing_crop(*args, **kwargs):  # no file is being decoded: no file to blame
        if get_worker_info() is not None:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        return crop(*args, **kwargs)

    monkeypatch.setattr(batching, "crop_batch", crashing_crop)
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=2)
    with pytest.raises(XlsrError, match=r"^a data loading worker of rank 0 ended outside audio decoding: SIGSEGV$"):
        list(loader)
    loader.close()


def test_a_worker_killed_between_epochs_stops_the_next_one_in_one_line(tmp_path):
    loader = pretrain_loader(_corpus(tmp_path, [f"u{i}" for i in range(8)]), **PRETRAIN, num_workers=2)
    assert len(list(loader)) > 0
    os.kill(loader._loader._iterator._workers[1].pid, signal.SIGKILL)  # the OOM killer, say, while it waits
    time.sleep(0.5)
    loader.set_epoch(1)
    with pytest.raises(XlsrError, match=r"^a data loading worker of rank 0 ended outside audio decoding: SIGKILL"):
        list(loader)
    loader.close()
