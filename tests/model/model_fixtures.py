"""Small configurations and inputs shared by the model tests.

Test modules import them from here, never from conftest: every test folder's conftest is a top-level module
named `conftest`, so which file that name means depends on the folders pytest was given and their order.
"""

import torch

from xlsr.model import Wav2Vec2Config


def micro_config(**overrides) -> Wav2Vec2Config:
    """A few-hundred-thousand-parameter model with the XLSR layout (layer-norm CNN, pre-LN), no dropout."""
    fields = dict(
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2, extractor_mode="layer_norm",
        conv_bias=True, hidden_size=32, num_layers=2, num_heads=4, ffn_dim=64, layer_norm_first=True,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0, dropout_features=0.0,
        conv_pos=16, conv_pos_groups=4, final_dim=16, codevector_dim=16, num_codevector_groups=2,
        num_codevectors_per_group=8, num_negatives=10, mask_prob=0.5, mask_length=3, min_masks=2,
    )
    fields.update(overrides)
    return Wav2Vec2Config(**fields)


def sine_batch(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Sums of random sinusoids with a noise burst, z-normalised per utterance: (B, S) float32."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    freqs = 100 + 2000 * torch.rand(batch, 3, generator=g)
    x = torch.sin(2 * torch.pi * freqs[:, :, None] * t).sum(1)
    start = torch.randint(0, samples // 2, (batch,), generator=g)
    burst = (t[None] * 16000 >= start[:, None]) & (t[None] * 16000 < start[:, None] + samples // 4)
    x = x + burst * torch.randn(batch, samples, generator=g)
    return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)


def assert_padded_batch_equals_single_runs(model, x: torch.Tensor, lengths: list[int]) -> None:
    """Every row of the zero-padded batch `x` gives, at its valid frames, what the utterance alone gives."""
    with torch.no_grad():
        batched = model(x, torch.tensor(lengths))
        for i, n in enumerate(lengths):
            single = model(x[i : i + 1, :n])
            T = single.last_hidden_state.shape[1]
            assert batched.frame_lengths[i] == T
            torch.testing.assert_close(batched.extract_features[i, :T], single.extract_features[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batched.last_hidden_state[i, :T], single.last_hidden_state[0],
                                       atol=1e-5, rtol=0)
