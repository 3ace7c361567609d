"""A cache filled by a CNN of other strides (the same weights: strides are in no weight's shape) is refused, and a
cached utterance, whose row a fine-tuning loader hands as silence, never goes through the CNN as that silence."""

import pytest
import torch

from xlsr.errors import XlsrError
from xlsr.model import Wav2Vec2Config, Wav2Vec2Model
from xlsr.train.feature_cache import FeatureCache, cnn_fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2


def _model(last_stride: int) -> Wav2Vec2Model:
    torch.manual_seed(0)  # the same weights for both: only the last layer's stride differs
    cfg = Wav2Vec2Config(conv_layers=LAYERS[:-1] + [(16, 2, last_stride)], hidden_size=16, num_layers=1, num_heads=2,
                         ffn_dim=32, conv_pos=8, conv_pos_groups=2, final_dim=8, codevector_dim=8)
    return Wav2Vec2Model(cfg).eval()


def test_a_cache_of_a_cnn_with_other_strides_is_refused():
    a, b = _model(2), _model(1)
    assert all(torch.equal(x, y) for x, y in zip(a.feature_encoder.state_dict().values(),
                                                 b.feature_encoder.state_dict().values()))
    assert cnn_fingerprint(a.feature_encoder, False) != cnn_fingerprint(b.feature_encoder, False)
    cache = FeatureCache()
    cache.bind(a, False)
    cache.batch_features(a, torch.randn(1, 8000, generator=torch.Generator().manual_seed(1)), torch.tensor([8000]), ["u"])
    with pytest.raises(XlsrError, match="another CNN"):
        cache.bind(b, False)


def test_a_cached_utterance_is_never_computed_from_its_silent_row():
    """The loader's stand-in for cached 'u' (zeros of its cached length) meets an entry of other frames: an error,
    not the CNN's output of silence cached and trained on."""
    a, b = _model(2), _model(1)
    cache = FeatureCache()  # unbound: the check does not rest on `bind`
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    cache.batch_features(a, x, torch.tensor([8000]), ["u"])
    entry = cache.entries["u"].clone()
    silent = torch.zeros(1, cache.lengths["u"])
    with pytest.raises(XlsrError, match=r"feature cache: 'u' was cached as 24 frames of 8000 samples, this CNN gives "
                                        r"48: the cache holds another CNN's output"):
        cache.batch_features(b, silent, torch.tensor([8000]), ["u"])
    assert torch.equal(cache.entries["u"], entry) and cache.lengths == {"u": 8000}


def test_an_entry_of_another_length_is_still_recomputed():
    """Another utterance under the same id (another length, decoded audio) is recomputed, as before."""
    model, cache = _model(2), FeatureCache()
    g = torch.Generator().manual_seed(2)
    cache.batch_features(model, torch.randn(1, 4000, generator=g), torch.tensor([4000]), ["u"])
    x = torch.randn(1, 8000, generator=g)
    feats, _ = cache.batch_features(model, x, torch.tensor([8000]), ["u"])
    with torch.no_grad():
        torch.testing.assert_close(feats, model.features(x)[0], atol=1e-6, rtol=0)
    assert cache.lengths == {"u": 8000} and cache.misses == 2
