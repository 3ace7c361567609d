"""A run resumed mid-epoch with another α or epoch_size draws other files: the epoch's bad files it will no longer
read leave its count, so a bad file of the old draw cannot stop the new one at max_bad_share."""

import numpy as np
import soundfile as sf

from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance

KW = dict(max_tokens=40000, min_sample_size=4000, max_sample_size=16000, alpha=1.0, seed=5, max_bad_share=0.2)


def _corpus(tmp_path, n=12, missing=5):
    utts = []
    for i in range(n):
        path = tmp_path / f"u{i}.wav"
        if i != missing:  # the missing one is a bad file
            sf.write(path, np.sin(np.arange(8000 + 500 * i) * 0.02).astype(np.float32), 16000, subtype="FLOAT")
        utts.append(Utterance(audio=str(path), num_samples=8000 + 500 * i, lang="aa", id=f"u{i}"))
    return utts


def _drawn(loader):
    return {i for p in loader.plans() for i in p.indices}


def test_a_bad_file_the_resumed_draw_no_longer_holds_leaves_the_epochs_count(tmp_path):
    utts, missing = _corpus(tmp_path), 5
    first = pretrain_loader(utts, **KW)
    batches = iter(first)
    while first.epoch_bad_files == 0:
        next(batches)
    state = first.state_dict()
    assert state["bad_indices"] == [missing] and state["epoch_bad_files"] == 1

    # the same run resumed with a smaller epoch: a draw of 4 files without the bad one (1 bad > 0.2 x 4 would stop it)
    size = next(k for k in range(3, 8) if missing not in _drawn(pretrain_loader(utts, **KW, epoch_size=k)))
    resumed = pretrain_loader(utts, **KW, epoch_size=size)
    resumed.load_state_dict(state)
    resumed.position = 0  # the shorter epoch from its start
    assert len(list(resumed)) == len(resumed.plans())
    assert resumed.epoch_bad_files == 0 and resumed.state_dict()["bad_indices"] == []
    assert resumed.bad_files == 1  # the run's total keeps what it met


def test_a_bad_file_the_draw_still_holds_stays_counted(tmp_path):
    utts, missing = _corpus(tmp_path), 5
    first = pretrain_loader(utts, **{**KW, "max_bad_share": 0.5})
    batches = iter(first)
    while first.epoch_bad_files == 0:
        next(batches)
    resumed = pretrain_loader(utts, **{**KW, "max_bad_share": 0.5})
    resumed.load_state_dict(first.state_dict())
    list(resumed)
    assert resumed.epoch_bad_files == 1 and resumed.state_dict()["bad_indices"] == [missing]
