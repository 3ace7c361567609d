"""Tiny random-weight transformers wav2vec2 models for the interop tests (built offline, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

# Three shapes that differ in everything the converters touch.
HF_CONFIGS = {
    # Base-like: group-norm CNN (layer 0 only), no conv bias, post-LN, even positional kernel.
    "base_like": dict(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=64,
        conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=False,
        feat_extract_norm="group", do_stable_layer_norm=False,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        codevector_dim=24, proj_codevector_dim=20, num_codevector_groups=2, num_codevectors_per_group=7,
    ),
    # XLSR-like: layer-norm CNN in every layer, conv bias, pre-LN, odd positional kernel, G=3.
    "xlsr_like": dict(
        hidden_size=40, num_hidden_layers=2, num_attention_heads=5, intermediate_size=72,
        conv_dim=(24, 24, 24), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=15, num_conv_pos_embedding_groups=4,
        codevector_dim=30, proj_codevector_dim=12, num_codevector_groups=3, num_codevectors_per_group=5,
    ),
    # Odd mix: layer-norm CNN with post-LN blocks, uneven CNN widths, one layer, G=1, no masking configured.
    "odd": dict(
        hidden_size=36, num_hidden_layers=1, num_attention_heads=3, intermediate_size=20,
        conv_dim=(20, 28), conv_kernel=(7, 4), conv_stride=(3, 3), conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=False,
        num_conv_pos_embeddings=7, num_conv_pos_embedding_groups=2,
        codevector_dim=9, proj_codevector_dim=10, num_codevector_groups=1, num_codevectors_per_group=6,
        mask_time_prob=0.0,
    ),
}
VOCAB_SIZE = 11
HF_CLASSES = ("Wav2Vec2Model", "Wav2Vec2ForPreTraining", "Wav2Vec2ForCTC")


def hf_config(name: str, **overrides):
    """A transformers Wav2Vec2Config for one of HF_CONFIGS."""
    return transformers.Wav2Vec2Config(**{**HF_CONFIGS[name], "vocab_size": VOCAB_SIZE, **overrides})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (no zero biases, no unit norms), so that any mapping mistake shows.

    Matrices get std 1/sqrt(fan_in) so activations stay O(1) and fp32 rounding stays far below 1e-4.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * noise)  # norm scales near 1
            elif name.endswith("codevectors") or p.dim() == 1:
                p.copy_(noise * 0.5)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
    return model.eval()


def make_hf(cls_name: str, config_name: str, seed: int = 0, **overrides):
    """A random-weight transformers model of class `cls_name` in eval mode."""
    return randomize(getattr(transformers, cls_name)(hf_config(config_name, **overrides)), seed)


def padded_batch(seed: int = 0, lengths=(1600, 1130, 820)):
    """(waveforms (B, S) zero-padded, lengths (B,), HF attention_mask (B, S))."""
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    x = torch.randn(len(lengths), S, generator=g)
    lengths = torch.tensor(lengths)
    valid = torch.arange(S)[None, :] < lengths[:, None]
    return x * valid, lengths, valid.long()
