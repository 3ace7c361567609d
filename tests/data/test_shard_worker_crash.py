"""A decoder that crashes or hangs on one utterance of a shard stream costs that utterance, not the run.

The crash is real (the worker process dies of SIGSEGV); the utterance is named from the worker's slot (its shard and
member key), charged as a bad file, never decoded again in the run nor after a resume, and the streams go on from
where the last batch handed over left each consumer. A worker killed otherwise (SIGKILL: the OOM killer) stops the
run in one line naming the utterance. A worker on one utterance for longer than decode_timeout is stopped alike.
"""

import logging
import os
import re
import resource
import signal
import time
from dataclasses import replace

import pytest
from data_fixtures import TONE_SIZES, tone_shards, tone_spec
from torch.utils.data import get_worker_info

from xlsr.data import shard_stream
from xlsr.data.audio import decode_audio
from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_stream import ConsumerStream, DecodeGuard, StreamSpec
from xlsr.errors import AudioError, XlsrError

VICTIM = "aa-03"  # the utterance id the decoder fails on
EPOCH = 12  # batches per epoch: more than the corpus fills once (19 utterances, a few per batch)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> StreamSpec:
    """Short tones of two languages in several shards, ids <lang>-NN; α = 1: every utterance comes in an epoch."""
    return replace(tone_spec(tone_shards(tmp_path_factory)), alpha=1.0)


def _failing(log_path, how):
    """decode_audio, except on VICTIM: noted in `log_path`, then `how` (a signal to die of, or 'hang')."""
    def decode(data, name, *args, **kwargs):
        if name.endswith(f"utterance {VICTIM}"):
            with open(log_path, "a") as f:
                f.write(f"{name} {get_worker_info() is not None}\n")
            if how == "hang":
                time.sleep(3600)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
            os.kill(os.getpid(), how)
            time.sleep(10)
        return decode_audio(data, name, *args, **kwargs)
    return decode


def _decodings(log_path) -> list[str]:
    return log_path.read_text().splitlines() if log_path.exists() else []


def _epoch_ids(loader: ShardLoader, epoch: int) -> list[list[str]]:
    loader.set_epoch(epoch)
    return [batch.ids for batch in loader]


@pytest.mark.parametrize("how", [signal.SIGSEGV, "hang"])
def test_a_decoder_that_crashes_or_hangs_costs_its_utterance_not_the_run(spec, tmp_path, monkeypatch, caplog, how):
    decodings = tmp_path / "decodings"
    monkeypatch.setattr(shard_stream, "decode_audio", _failing(decodings, how))
    loader = ShardLoader(spec, num_workers=2, epoch_batches=EPOCH, max_bad_share=0.5,
                         decode_timeout=2.0 if how == "hang" else None)
    with caplog.at_level(logging.WARNING):
        first = _epoch_ids(loader, 0)
        second = _epoch_ids(loader, 1)
    try:
        assert len(_decodings(decodings)) == 1  # decoded once, in a worker, never again
        assert _decodings(decodings)[0].endswith("True")
        what = r"crashed on it \(its data worker was killed by SIGSEGV\)" if how != "hang" else \
            r"hung on it \(no answer in \d+ s, more than decode_timeout=2; its data worker was stopped\)"
        lines = [r.getMessage() for r in caplog.records if f"utterance {VICTIM}: " in r.getMessage()]
        assert lines and all(re.search(f"the audio decoder {what}", line) for line in lines), lines
        assert len(lines) == 2  # charged once in each epoch
        assert loader.bad_files == 2 and loader.epoch_bad_files == 1
        for batches in (first, second):  # the streams went on: whole epochs, of every language, without it
            assert len(batches) == EPOCH
            ids = {i for batch in batches for i in batch}
            assert VICTIM not in ids and {i[:2] for i in ids} == set(TONE_SIZES)

        resumed = ShardLoader(spec, num_workers=2, epoch_batches=EPOCH, max_bad_share=0.5)
        resumed.load_state_dict(loader.state_dict())
        assert VICTIM not in {i for batch in _epoch_ids(resumed, 2) for i in batch}
        assert len(_decodings(decodings)) == 1  # a resumed run knows it too
        assert resumed.epoch_bad_files == 1
        resumed.close()
    finally:
        loader.close()


def test_crashes_count_against_max_bad_share(spec, tmp_path, monkeypatch):
    monkeypatch.setattr(shard_stream, "decode_audio", _failing(tmp_path / "decodings", signal.SIGSEGV))
    loader = ShardLoader(spec, num_workers=2, epoch_batches=EPOCH, max_bad_share=0.01)
    with pytest.raises(XlsrError, match=r"^1 of about 19 utterances in epoch 0 are unreadable, more than "
                                        r"max_bad_share=0.01 \(last: .*aa-000000\.tar: utterance aa-03: the audio decoder crashed on it"):
        _epoch_ids(loader, 0)
    loader.close()


def test_a_worker_killed_by_sigkill_stops_the_run_naming_the_utterance(spec, tmp_path, monkeypatch):
    monkeypatch.setattr(shard_stream, "decode_audio", _failing(tmp_path / "decodings", signal.SIGKILL))
    loader = ShardLoader(spec, num_workers=2, epoch_batches=EPOCH)
    with pytest.raises(XlsrError, match=r"^a data loading worker of rank 0 ended \(killed by SIGKILL\) while decoding "
                                        r".*aa-000000\.tar: utterance aa-03 \(the kernel's out-of-memory"):
        _epoch_ids(loader, 0)
    loader.close()


def _batches(spec: StreamSpec, guard: DecodeGuard | None, n: int = 30):
    stream = ConsumerStream(spec, 0, 1, None, guard)
    out = []
    for produced in stream.batches():
        out.append((produced.batch.ids if produced.batch is not None else None,
                    [(b.key, b.count, b.message) for b in produced.bad], produced.state["done"]))
        if len(out) == n:
            break
    return out


def test_an_utterance_known_bad_is_not_decoded_and_streams_as_an_unreadable_one(spec, monkeypatch):
    """The stream's side: a key the guard knows is charged with the guard's line, in the batches a decoder that
    refused it would give."""
    line = "it crashed the decoder before"
    seen = []

    class Known(DecodeGuard):
        def known_bad(self, key):
            seen.append(key)
            return line if key.endswith(":aa-000000003") else None

    def refusing(data, name, *args, **kwargs):
        if name.endswith(f"utterance {VICTIM}"):
            raise AudioError(line)
        return decode_audio(data, name, *args, **kwargs)

    known = _batches(spec, Known())
    monkeypatch.setattr(shard_stream, "decode_audio", refusing)
    assert known == _batches(spec, None)
    victim = [k for k in seen if k.endswith(":aa-000000003")]
    assert victim and [bad for _, bads, _ in known for bad in bads] == [(k, 1, line) for k in victim]


def test_the_loader_refuses_a_timeout_that_is_not_positive(spec):
    with pytest.raises(XlsrError, match="^decode_timeout: must be more than 0 seconds"):
        ShardLoader(spec, num_workers=1, decode_timeout=0)
