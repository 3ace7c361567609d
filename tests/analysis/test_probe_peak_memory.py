"""What `xlsr probe` holds at its peak: the feature cache once (the padded batches are packed from it as it is
freed), the widest layer's statistics beside it, and the estimate says so; each manifest is read once."""

import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import xlsr.analysis.probe as probe_module
import xlsr.analysis.probe_features as probe_features
from xlsr.analysis.probe import ProbeSettings, layer_statistics, probe
from xlsr.analysis.probe_features import UtteranceFeatures, batch_features, estimate_memory
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["cnn", 0, 2]


def micro_config() -> Wav2Vec2Config:
    conv = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    return Wav2Vec2Config(conv_layers=conv, hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64, final_dim=16,
                          codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=8, conv_pos=16,
                          conv_pos_groups=4)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_peak")
    train = write_tone_corpus(root / "data", "train", 8, seed=1)
    test = write_tone_corpus(root / "data", "test", 4, seed=2)
    torch.manual_seed(0)
    save_checkpoint(root / "model", Wav2Vec2ForPreTraining(micro_config()))
    return root, train, test


def cached_features(config: Wav2Vec2Config, num_samples: list[int], seed: int = 0) -> list[UtteranceFeatures]:
    """Random features of the shapes `config` gives utterances of `num_samples`, at each of LAYERS."""
    g = torch.Generator().manual_seed(seed)
    return [UtteranceFeatures([torch.randn(config.num_frames(n), config.conv_dim if layer == "cnn" else
                                           config.hidden_size, generator=g) for layer in LAYERS], [2, 3], "a b")
            for n in num_samples]


def test_consumed_batches_equal_the_others_and_free_each_utterance():
    items = cached_features(micro_config(), [4000, 9000, 6000, 12000, 5000])
    copies = [UtteranceFeatures([f.clone() for f in u.features], u.label_ids, u.ref) for u in items]
    refs = [weakref.ref(f) for u in items for f in u.features]
    consumed = batch_features(items, 60, consume=True)
    kept = batch_features(copies, 60)
    assert len(consumed) == len(kept) > 1
    for a, b in zip(consumed, kept):
        assert all(torch.equal(x, y) for x, y in zip(a.features, b.features, strict=True))
        assert torch.equal(a.frame_lengths, b.frame_lengths) and torch.equal(a.labels, b.labels) and a.refs == b.refs
    assert all(u.features == [] for u in items) and all(r() is None for r in refs)  # freed, not only emptied
    assert all(len(u.features) == 3 for u in copies)  # without consume the caller's cache is left as it was


def test_a_probe_never_holds_the_feature_cache_twice(setup, tmp_path, monkeypatch):
    """Counted from the tensors: the cache as standardised (weak references) plus every padded batch built so far,
    at each batch; before, the whole cache was held beside its batches, and the test set's while the heads trained."""
    root, train, test = setup
    cache: list[tuple[weakref.ref, int]] = []
    batches: list[list[int]] = []  # bytes of each batch's padded tensors, one per layer
    peak, during_heads = [0], []

    def live_cache() -> int:
        return sum(n for ref, n in cache if ref() is not None)

    def batch_features(items, *args, **kw):
        cache.extend((weakref.ref(f), f.numel() * f.element_size()) for u in items for f in u.features)
        return original_batch_features(items, *args, **kw)

    def pad_sequence(*args, **kw):
        padded = original_pad_sequence(*args, **kw)
        if not batches or len(batches[-1]) == len(LAYERS):
            batches.append([])
        batches[-1].append(padded.numel() * padded.element_size())
        peak[0] = max(peak[0], live_cache() + sum(map(sum, batches)))
        return padded

    def train_probe_heads(*args, **kw):
        during_heads.append(live_cache())
        return original_train_probe_heads(*args, **kw)

    original_batch_features, original_pad_sequence, original_train_probe_heads = (
        probe_module.batch_features, probe_features.pad_sequence, probe_module.train_probe_heads)
    monkeypatch.setattr(probe_module, "batch_features", batch_features)
    monkeypatch.setattr(probe_features, "pad_sequence", pad_sequence)
    monkeypatch.setattr(probe_module, "train_probe_heads", train_probe_heads)
    probe(root / "model", train, test, tmp_path / "out", layers=",".join(map(str, LAYERS)),
          settings=ProbeSettings(epochs=1, batch_frames=40), plot=False, show_progress=False)
    held = sum(n for _, n in cache)
    padded = sum(map(sum, batches))
    assert len(batches) >= 8 and padded >= held > 0
    assert peak[0] <= padded + max(map(sum, batches))  # the batches, and the utterances of the one being packed
    assert during_heads == [0]


def allocation_peak(fn) -> int:
    """The most bytes torch's CPU allocator holds at once while `fn()` runs, beyond what it held before."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_estimate_is_the_cache_plus_what_the_widest_layers_statistics_hold(dtype):
    config = micro_config()
    train_samples, test_samples = [160_000, 120_000, 200_000, 90_000], [100_000, 60_000]
    estimate = estimate_memory(train_samples, test_samples, [(config, LAYERS)], dtype)
    train, test = (cached_features(config, samples, seed) for seed, samples in enumerate((train_samples,
                                                                                           test_samples)))
    for u in train + test:
        u.features = [f.to(dtype) for f in u.features]
    assert estimate.features == sum(f.numel() * f.element_size() for u in train + test for f in u.features)
    assert estimate.frames == sum(u.features[0].shape[0] for u in train + test) and estimate.values == 16 + 32 + 32
    assert estimate.audio == 4 * sum(train_samples + test_samples)
    # layer 0 is 32 wide (the CNN 16): what its statistics hold beyond the cache, within the (D, D) covariances
    held = allocation_peak(lambda: layer_statistics(train, 1))
    assert 0 <= held - estimate.statistics <= 3 * 32 * 32 * 8, (held, estimate.statistics)
    assert estimate.total == estimate.audio + estimate.features + estimate.statistics


def test_each_manifest_is_read_once(setup, tmp_path, monkeypatch):
    root, train, test = setup
    reads = []

    def read_manifest(path):
        reads.append(Path(path))
        return original(path)

    original = probe_module.read_manifest
    monkeypatch.setattr(probe_module, "read_manifest", read_manifest)
    monkeypatch.setattr(probe_features, "read_manifest", read_manifest)
    report = probe(root / "model", train, test, tmp_path / "out", layers="cnn", settings=ProbeSettings(epochs=1),
                   plot=False, show_progress=False)
    assert sorted(reads) == sorted([train, test])
    assert (report.summary["train"]["utterances"], report.summary["test"]["utterances"]) == (8, 4)
