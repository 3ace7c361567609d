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


def test_a_cached_length_is_taken_only_where_the_manifest_line_could_have_decoded_to_it(tones, monkeypatch):
    from xlsr.data.batching import finetune_loader
    from xlsr.data.index_cache import open_manifest
    from xlsr.text.labels import build_vocabulary

    train, _ = tones
    utts = open_manifest(train)
    vocab = build_vocabulary({str(train): utts}, "phones")
    decoded = []
    monkeypatch.setattr(batching, "load_audio", lambda path, *a, **k: decoded.append(str(path)) or load_audio(path))
    loader = finetune_loader(utts, vocab, max_tokens=10**7, shuffle=False, seed=0, max_bad_share=1.0)
    ids = [utts.utterance_id(i) for i in range(3)]
    listed = [int(utts.num_samples[i]) for i in range(3)]
    # 0: its own length (not decoded); 1: a length this line could not decode to (another corpus's entry); 2: a file
    # known bad since it was cached (charged as bad, as any bad file)
    loader.dataset.cached_lengths = {ids[0]: listed[0], ids[1]: listed[1] + 5000, ids[2]: listed[2]}
    loader.dataset.crashed[2] = f"{utts.audio(2)}: crashed before"
    [batch] = list(loader)
    assert utts.audio(0) not in decoded and utts.audio(1) in decoded and utts.audio(2) not in decoded
    assert ids[2] not in batch.ids and loader.bad_files == 1
    row = batch.ids.index(ids[0])
    assert int(batch.lengths[row]) == listed[0] and not batch.waveforms[row].any()  # a silent row of its length
