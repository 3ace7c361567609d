"""When the loader stops its workers after a hang, none of them is left running: a worker stuck where its slot does
not show it (outside decoding, or on a file for less than decode_timeout) ignores SIGTERM, so DataLoader's shutdown
(a join, a SIGTERM, a join) would leave it alive, holding its memory, and Python's exit would wait on it for ever."""

import multiprocessing
import os
import signal
import time

from test_worker_crash import PRETRAIN, _corpus
from torch.utils.data import get_worker_info

from xlsr.data import batching
from xlsr.data.audio import load_audio
from xlsr.data.batching import pretrain_loader


def _alive(pid):
    return any(p.pid == pid for p in multiprocessing.active_children())


def test_a_worker_stuck_outside_decoding_is_not_left_running(tmp_path, monkeypatch):
    utts = _corpus(tmp_path, [f"u{i}" for i in range(12)])
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=2, max_bad_share=0.5, decode_timeout=1.0)
    plans = loader.plans()
    assert len(plans) >= 2
    hang_on = utts[plans[0].indices[-1]].audio  # worker 0 hangs decoding the last file of the first batch
    marker = tmp_path / "stuck.pid"

    def load(path, *args, **kwargs):
        if str(path) == hang_on:
            while True:
                time.sleep(1)
        return load_audio(path, *args, **kwargs)

    real_crop = batching.crop_batch

    def crop_once_stuck(*args, **kwargs):
        # the first worker to collate (worker 1, on the second batch) is stuck there for good: no file to blame
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return real_crop(*args, **kwargs)
        assert get_worker_info() is not None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        while True:
            time.sleep(1)

    monkeypatch.setattr(batching, "load_audio", load)
    monkeypatch.setattr(batching, "crop_batch", crop_once_stuck)
    stuck = None
    try:
        got = [b.waveforms for b in loader]
        stuck = int(marker.read_text())
        assert loader.bad_files == 1
        assert len(got) == len(plans)  # the pass went on (started anew), less the file: no batch lost
        assert not _alive(stuck), "the worker stuck outside decoding was left running"
    finally:
        loader.close()
        if stuck is None and marker.exists() and marker.read_text():
            stuck = int(marker.read_text())
        if stuck is not None and _alive(stuck):
            os.kill(stuck, signal.SIGKILL)


def test_close_stops_a_worker_stuck_on_a_file_it_decodes_ahead(tmp_path, monkeypatch):
    """The run ends (or leaves the pass) while a worker, decoding ahead, is stuck on a file: close() must not leave
    it running, or Python's exit waits on it for ever."""
    from torch.utils.data import _utils

    monkeypatch.setattr(_utils, "MP_STATUS_CHECK_INTERVAL", 0.2)  # DataLoader's joins at shutdown: quick here
    utts = _corpus(tmp_path, [f"u{i}" for i in range(12)])
    loader = pretrain_loader(utts, **PRETRAIN, num_workers=1, decode_timeout=30.0)
    plans = loader.plans()
    assert len(plans) >= 2
    hang_on = utts[plans[1].indices[0]].audio  # the first file of the second batch
    marker = tmp_path / "stuck.pid"

    def load(path, *args, **kwargs):
        if str(path) == hang_on:
            marker.write_text(str(os.getpid()))
            while True:
                time.sleep(1)
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(batching, "load_audio", load)
    stuck = None
    try:
        batches = iter(loader)
        next(batches)  # the first batch; the worker goes on to the second and is stuck in it
        for _ in range(200):
            if marker.exists() and marker.read_text():
                break
            time.sleep(0.01)
        stuck = int(marker.read_text())
        loader.close()
        assert not _alive(stuck), "close() left a worker stuck on a file running"
    finally:
        if stuck is not None and _alive(stuck):
            os.kill(stuck, signal.SIGKILL)
