"""The frozen-CNN feature cache: an entry is used only for the utterance (length) and the CNN input it came from."""

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.model import Wav2Vec2Config, Wav2Vec2Model
from xlsr.train.feature_cache import FeatureCache, cnn_fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> Wav2Vec2Model:
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2, hidden_size=16,
                         num_layers=1, num_heads=2, ffn_dim=32, conv_pos=8, conv_pos_groups=2, final_dim=8,
                         codevector_dim=8)
    return Wav2Vec2Model(cfg).eval()


def test_an_entry_of_another_length_under_the_same_id_is_recomputed():
    """Another utterance once cached under id 'u' (4000 samples, 12 frames) is not taken for this one (8000)."""
    model, cache = _model(), FeatureCache()
    g = torch.Generator().manual_seed(1)
    cache.batch_features(model, torch.randn(1, 4000, generator=g), torch.tensor([4000]), ["u"])
    x = torch.randn(1, 8000, generator=g)
    feats, frames = cache.batch_features(model, x, torch.tensor([8000]), ["u"])
    with torch.no_grad():
        expected = model.features(x)[0]
    assert frames.tolist() == [24] and cache.entries["u"].shape[0] == 24 and cache.misses == 2
    torch.testing.assert_close(feats, expected, atol=1e-6, rtol=0)
    cache.batch_features(model, x, torch.tensor([8000]), ["u"])
    assert cache.hits == 1  # the same utterance again: from the cache


def test_a_cache_bound_without_waveform_normalization_refuses_a_run_with_it():
    model = _model()
    cnn = model.feature_encoder
    assert cnn_fingerprint(cnn, True) != cnn_fingerprint(cnn, False) == cnn_fingerprint(cnn, False)
    cache = FeatureCache()
    cache.bind(model, False)
    cache.batch_features(model, torch.randn(1, 4000), torch.tensor([4000]), ["u"])
    cache.bind(model, False)  # the same CNN and input: shared
    with pytest.raises(XlsrError, match="another CNN .*normalize_waveform"):
        cache.bind(model, True)
