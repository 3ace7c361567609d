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

# max_sample_size above every utterance of _corpus (at most 25000 samples): α = 1 then draws each utterance once an
# epoch, so the crashing file is in every epoch (a crop cap would weigh the languages by the audio crops take of them)
PRETRAIN = dict(max_tokens=48000, min_sample_size=4000, max_sample_size=26000, alpha=1.0, seed=3)


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
    bad_again_without_decoding(crashing, lambda: loader(2), NAMES.index("crash"), lambda: len(_crashes(crashes)))


def bad_again_without_decoding(loader, new_loader, index: int, decodings) -> None:
    """After `loader`'s epoch 0 charged utterance `index` (its decoder crashed or hung): the next epoch, and a loader
    from `new_loader()` resumed from its state, count it as bad again while `decodings()` (how often its decoding
    began) stays where it is; both loaders closed."""
    before = decodings()
    loader.set_epoch(1)
    assert len(list(loader)) > 0
    assert decodings() == before and loader.bad_files == 2 and loader.epoch_bad_files == 1
    state = loader.state_dict()
    assert [i for i, _ in state["crashed"]] == [index]
    resumed = new_loader()
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert len(list(resumed)) > 0
    assert decodings() == before and resumed.epoch_bad_files == 1
    loader.close()
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
    with pytest.raises(XlsrError, match=r"a data loading worker of rank 0 ended \(killed by SIGKILL\) while decoding "
                                        r"\S+crash\.wav \(the kernel's out-of-memory killer"):
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
    with pytest.raises(XlsrError, match=r"^a data loading worker of rank 0 ended \(killed by SIGSEGV\) outside audio "
                                        r"decoding$"):
        list(loader)
    loader.close()


def test_a_worker_killed_between_epochs_stops_the_next_one_in_one_line(tmp_path):
    loader = pretrain_loader(_corpus(tmp_path, [f"u{i}" for i in range(8)]), **PRETRAIN, num_workers=2)
    assert len(list(loader)) > 0
    os.kill(loader._loader._iterator._workers[1].pid, signal.SIGKILL)  # the OOM killer, say, while it waits
    time.sleep(0.5)
    loader.set_epoch(1)
    with pytest.raises(XlsrError, match=r"^a data loading worker of rank 0 ended \(killed by SIGKILL\) outside audio "
                                        r"decoding"):
        list(loader)
    loader.close()


# --- a crash while the trainer is elsewhere: validating, or starting a pass after one it left part-way ----------------

def _ahead_loader(tmp_path, num_workers):
    """A fine-tuning loader of one utterance per batch over 9 files, and the file of its third batch: the first
    iteration sends it to a worker at once, to be decoded ahead of the caller."""
    utts = _corpus(tmp_path, [f"u{i}" for i in range(9)])
    loader = finetune_loader(utts, PhoneVocab([u.phones for u in utts]), max_tokens=16000, seed=3,
                             num_workers=num_workers, max_bad_share=0.2)
    assert all(len(p.indices) == 1 for p in loader.plans())
    return loader, utts[loader.plans()[2].indices[0]].audio


def _reference(tmp_path, monkeypatch, target):
    """The epoch's batches where `target` is unreadable."""
    def unreadable(path, *args, **kwargs):
        if str(path) == target:
            raise AudioError(f"{path}: unreadable")
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(batching, "load_audio", unreadable)
    return [b.waveforms for b in _ahead_loader(tmp_path, 0)[0]]


def _crash_when(go):
    """In a data worker: wait until the file `go` exists, then die of SIGSEGV, as a decoder crashing on its file."""
    deadline = time.monotonic() + 10
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def _leave_a_pass_crashing_on(loader, target, tmp_path, monkeypatch, decodings=None) -> None:
    """Take one batch of `loader` and leave its pass part-way, its workers decoding ahead: the one that decodes the
    file `target` crashes (once the pass is left; each decoding of it noted in `decodings`, when given)."""
    left = tmp_path / "left"

    def load(path, *args, **kwargs):
        if str(path) == target:
            if decodings is not None:
                with open(decodings, "a") as f:
                    f.write(f"{path}\n")
            _crash_when(left)
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(batching, "load_audio", load)
    for _ in loader:
        break
    left.touch()


def _until_one_dies(pids):
    """Wait (at most 10 s) until one of the child processes `pids` has ended, without reaping it: PyTorch's SIGCHLD
    handler still finds it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in pids:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                time.sleep(0.2)  # the handler runs here, while validation waits for its batch
                return
        time.sleep(0.01)


def test_a_training_worker_crashing_while_validation_waits_leaves_validation_alone(tmp_path, monkeypatch):
    """Validation asks for its batches (pretraining's loader of them has no workers) while the training loader's
    workers decode ahead, and one of them crashes: the validation pass ends as it would, and training charges the
    file and yields its epoch's batches less that file."""
    train, target = _ahead_loader(tmp_path, 2)
    reference = _reference(tmp_path, monkeypatch, target)
    dev_utts = _corpus(tmp_path, [f"dev{i}" for i in range(3)])
    dev = finetune_loader(dev_utts, PhoneVocab([u.phones for u in dev_utts]), max_tokens=16000, shuffle=False,
                          keep_long=True)
    validating = tmp_path / "validating"

    def load(path, *args, **kwargs):
        if str(path) == target:
            _crash_when(validating)
        if os.path.basename(str(path)).startswith("dev") and not validating.exists():
            validating.touch()  # in the trainer: the training worker dies while validation waits here
            _until_one_dies([w.pid for w in train._loader._iterator._workers])
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(batching, "load_audio", load)
    batches = iter(train)
    got = [next(batches).waveforms]
    assert len(list(dev)) == len(dev.plans()) and validating.exists()
    got += [b.waveforms for b in batches]
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    assert train.epoch_bad_files == 1 and [i for i, _ in train.state_dict()["crashed"]] == \
        [k for k, u in enumerate(train.dataset.utts) if u.audio == target]
    train.close()


def test_a_worker_crashing_on_a_batch_decoded_for_a_pass_left_part_way_costs_its_file(tmp_path, monkeypatch):
    """A pass left part-way (a validation stopped at a count) leaves the workers decoding ahead, and one crashes on
    such a batch: the next pass charges the file and yields the epoch's batches less that file."""
    loader, target = _ahead_loader(tmp_path, 2)
    reference = _reference(tmp_path, monkeypatch, target)
    _leave_a_pass_crashing_on(loader, target, tmp_path, monkeypatch)
    loader.seek(0, 0)
    got = [b.waveforms for b in loader]
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    assert loader.epoch_bad_files == 1
    loader.close()


def test_two_workers_crashing_at_once_cost_their_two_files_and_one_restart(tmp_path, monkeypatch):
    utts = _corpus(tmp_path, [f"u{i}" for i in range(12)])
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=2, max_bad_share=0.5)
    plans = loader.plans()
    # the first file of each worker's first batch (the DataLoader hands batches to its workers in turn)
    doomed = {utts[plans[0].indices[0]].audio, utts[plans[1].indices[0]].audio}
    decoded = tmp_path / "decoded.txt"

    def reference_load(path, *args, **kwargs):
        if str(path) in doomed:
            raise AudioError(f"{path}: unreadable")
        return load_audio(path, *args, **kwargs)

    def crash_together(path, *args, **kwargs):
        if str(path) in doomed:
            with open(decoded, "a") as f:
                f.write(f"{path}\n")
            (tmp_path / f"{os.path.basename(str(path))}.ready").touch()
            deadline = time.monotonic() + 10
            while len(list(tmp_path.glob("*.ready"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(10)
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(batching, "load_audio", reference_load)
    reference = [b.waveforms for b in pretrain_loader(utts, **PRETRAIN, num_workers=0, max_bad_share=0.5)]
    monkeypatch.setattr(batching, "load_audio", crash_together)
    got = [b.waveforms for b in loader]
    assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))
    assert loader.bad_files == 2 and set(loader.dataset.crashed) == {plans[0].indices[0], plans[1].indices[0]}
    # both charged at the one restart: neither decoded (and crashed on) a second time
    assert sorted(decoded.read_text().splitlines()) == sorted(doomed)
    loader.close()


def test_a_crash_on_a_file_another_epoch_drew_is_said_and_charged_by_the_epoch_that_draws_it(tmp_path, monkeypatch,
                                                                                           caplog):
    """Workers decoding ahead for a pass left part-way (epoch 0) crash on a file epoch 1 does not draw: epoch 1 says
    so and does not count it against its own max_bad_share; an epoch that draws it charges it, without decoding."""
    utts = _corpus(tmp_path, [f"u{i:02d}" for i in range(12)])
    loader = pretrain_loader(utts, **{**PRETRAIN, "max_tokens": 16000, "max_sample_size": 16000}, num_workers=2,
                             epoch_size=4, max_bad_share=0.5)
    drawn = {e: {i for p in (loader.set_epoch(e), loader.plans())[1] for i in p.indices} for e in range(40)}
    first = loader.set_epoch(0) or loader.plans()[0].indices
    target = next(i for p in loader.plans()[1:] for i in p.indices if i not in first and i not in drawn[1])
    later = next(e for e in range(2, 40) if target in drawn[e])
    decodings = tmp_path / "decodings"
    _leave_a_pass_crashing_on(loader, utts[target].audio, tmp_path, monkeypatch, decodings)
    loader.set_epoch(1)
    with caplog.at_level(logging.WARNING):
        assert len(list(loader)) == len(loader.plans())
    said = [r.getMessage() for r in caplog.records if "crashed on it" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("(not in epoch 1's draw)") and utts[target].audio in said[0]
    assert loader.epoch_bad_files == 0 and not any(" of 0 " in r.getMessage() for r in caplog.records)
    assert [i for i, _ in loader.state_dict()["crashed"]] == [target]
    loader.set_epoch(later)
    list(loader)
    assert loader.epoch_bad_files == 1 and target in loader.bad_indices
    assert len(decodings.read_text().splitlines()) == 1  # decoded once: when it crashed
    loader.close()
