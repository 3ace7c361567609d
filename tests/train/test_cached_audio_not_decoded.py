"""Fine-tuning with the frozen-CNN feature cache decodes each utterance once: later epochs and validations take its
cached CNN output and its cached length, and the run is the same, bit for bit, as one that decodes every epoch."""

import pytest
import torch

import xlsr.data.batching as batching
from xlsr.data.audio import load_audio
from xlsr.interop.native import load_checkpoint
from xlsr.train.feature_cache import FeatureCache, load_caches, save_caches
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune
from xlsr.train.monitor import read_log

from .test_finetune import QUIET, SMALL

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    from ._tones import write_tone_corpus

    root = tmp_path_factory.mktemp("tones")
    return write_tone_corpus(root, "train", 12, seed=1), write_tone_corpus(root, "dev", 4, seed=2)


def _run(train, dev, out, monkeypatch, *, skip: bool) -> tuple[list, dict, list]:
    decoded = []

    def counting(path, *args, **kwargs):
        decoded.append(str(path))
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(batching, "load_audio", counting)
    if not skip:  # the reference: every epoch decoded, as before the lengths were cached
        monkeypatch.setattr(FinetuneTask, "_skip_cached_audio", lambda self, loader, split: None)
    cfg = FinetuneConfig(train=[str(train)], dev=[str(dev)], out=str(out), init="none", model=SMALL,
                         max_updates=24, valid_every=8, save_every=8, log_every=1, max_tokens=80_000, seed=3, **QUIET)
    run = finetune(cfg)
    monkeypatch.undo()
    logs = [{k: v for k, v in r.items() if k not in ("time", "wall", "updates_per_s", "audio_s_per_s", "data_wait_share",
                                                   "seconds_per_update")}
            for r in read_log(run / "log.jsonl")]
    return logs, load_checkpoint(run / "checkpoints" / "last").model.state_dict(), decoded


def test_cached_utterances_are_decoded_once_and_the_run_is_the_same(tones, tmp_path, monkeypatch):
    train, dev = tones
    logs, weights, decoded = _run(train, dev, tmp_path / "skip", monkeypatch, skip=True)
    ref_logs, ref_weights, ref_decoded = _run(train, dev, tmp_path / "ref", monkeypatch, skip=False)
    assert logs == ref_logs
    assert weights.keys() == ref_weights.keys() and all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    # 12 training and 4 dev utterances, each decoded once; the reference decodes every epoch and validation
    assert sorted(decoded) == sorted(set(ref_decoded)) and len(set(decoded)) == 16
    assert len(ref_decoded) > 2 * len(decoded)


def test_the_lengths_travel_with_a_saved_cache(tmp_path):
    cache = FeatureCache()
    cache.entries, cache.lengths, cache.cnn = {"u": torch.ones(3, 4)}, {"u": 1234}, "cnn"
    save_caches({"train": cache}, tmp_path / "c.pt")
    loaded = load_caches(tmp_path / "c.pt")["train"]
    assert loaded.lengths == {"u": 1234} and torch.equal(loaded.entries["u"], cache.entries["u"])
