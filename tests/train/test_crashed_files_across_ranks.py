"""A file a decoder crashed or hung on in one rank is known to every rank after a resume (`task_state`), with the
same number of ranks or another: no rank decodes it again."""

import numpy as np
import soundfile as sf

from xlsr.data import batching
from xlsr.data.audio import load_audio
from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance
from xlsr.train.trainer_checkpoints import task_state


def _state(crashed, **loader):
    return {"loader": {"epoch": 0, "position": 0, "crashed": crashed, **loader}, "generator": "g"}


def test_every_rank_gets_the_crashed_files_of_all_ranks():
    tasks = [_state([[3, "a: crashed"]]), _state([[7, "b: hung"], [3, "a: crashed"]]), _state([])]
    for rank in range(3):
        state = task_state(tasks, rank)
        assert state["loader"]["crashed"] == [(3, "a: crashed"), (7, "b: hung")]
        assert state["generator"] == "g" and state["loader"]["epoch"] == 0
    assert tasks[2]["loader"]["crashed"] == []  # the saved states are left as they were


def test_shard_streams_merge_their_keys_and_consumers_alike():
    shard = {"consumers": {}, "layout": [2, 1]}
    tasks = [_state([("s/aa.tar:k1", "x")], **shard), _state([("s/bb.tar:k9", "y")], **shard)]
    assert task_state(tasks, 0)["loader"]["crashed"] == [("s/aa.tar:k1", "x"), ("s/bb.tar:k9", "y")]


def test_a_rank_resumed_with_another_ranks_crash_does_not_decode_its_file(tmp_path, monkeypatch):
    utts = []
    for i in range(6):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, np.sin(np.arange(9000) * 0.01 * (i + 1)).astype(np.float32), 16000)
        utts.append(Utterance(audio=str(path), num_samples=9000, lang="aa", id=f"u{i}"))
    decoded = []
    monkeypatch.setattr(batching, "load_audio", lambda path, *a, **k: decoded.append(path) or load_audio(path, *a, **k))
    ranks = [pretrain_loader(utts, max_tokens=18000, min_sample_size=4000, max_sample_size=9000, rank=r,
                             world_size=2, max_bad_share=0.5) for r in range(2)]
    victim = ranks[1].plans()[0].indices[0]
    ranks[1].dataset.crashed[victim] = f"{utts[victim].audio}: the audio decoder crashed on it"
    saved = [{"loader": loader.state_dict()} for loader in ranks]
    one = pretrain_loader(utts, max_tokens=18000, min_sample_size=4000, max_sample_size=9000, max_bad_share=0.5)
    one.load_state_dict(task_state(saved, 0)["loader"])  # one rank now: rank 0's state, every rank's crashes
    assert len(list(one)) > 0
    assert utts[victim].audio not in map(str, decoded) and victim in one.bad_indices
