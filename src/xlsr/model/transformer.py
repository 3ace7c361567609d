"""Context network: convolutional positional embedding + Transformer blocks (pre-LN or post-LN) + LayerDrop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from xlsr.model.config import Wav2Vec2Config
from xlsr.model.recompute import run_layer


class PositionalConv(nn.Module):
    """Grouped Conv1d(D, D, k=128, groups=16) with weight norm over dim 2, then GELU: a relative position signal."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        dim, kernel = config.hidden_size, config.conv_pos
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=config.conv_pos_groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)  # g: (1, 1, k), v: (D, D/groups, k)
        self.trim = 1 if kernel % 2 == 0 else 0  # an even kernel with padding k/2 yields one extra frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        # A contiguous (B, T, D) is a channels_last (B, D, 1, T) image: the grouped 2-D convolution reads it in
        # place and writes channels-last; conv1d on the (B, D, T) view took 1.5x as long (docs/speed.md).
        conv = self.conv
        image = x.contiguous().transpose(1, 2).unsqueeze(2)
        y = F.conv2d(image, conv.weight.unsqueeze(2), conv.bias, padding=(0, conv.padding[0]),
                     groups=conv.groups).squeeze(2)  # (B, D, T + trim)
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y.transpose(1, 2))


class SelfAttention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention, honouring a key padding mask."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        dim = config.hidden_size
        self.num_heads, self.dropout = config.num_heads, config.attention_dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D); attn_mask (B, 1, 1, T) bool, True where a key may be attended, or None."""
        B, T, D = x.shape
        # One matmul for q, k and v: the concatenated weight is tiny next to the activations.
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        b = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        q, k, v = F.linear(x, w, b).view(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))  # (B, H, T, d) -> (B, T, D)


class FeedForward(nn.Module):
    """fc1 -> GELU -> activation dropout -> fc2."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        dim, ffn_dim = config.hidden_size, config.ffn_dim
        self.fc1, self.fc2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))


class Adapter(nn.Module):
    """MMS's per-language bottleneck adapter: LN -> Linear(D, a) -> ReLU -> Linear(a, D), added to a block's output."""

    def __init__(self, dim: int, adapter_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)  # eps 1e-5 in MMS, whatever the model's layer_norm_eps
        self.down, self.up = nn.Linear(dim, adapter_dim), nn.Linear(adapter_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.down(self.norm(x))))


class TransformerLayer(nn.Module):
    """One block; pre-LN: x + Drop(MHA(LN(x))), x + Drop(FFN(LN(x))); post-LN: LN after each residual sum.

    With `adapter_attn_dim` (MMS), the block's output is then x + Adapter(x).
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        dim, eps = config.hidden_size, config.layer_norm_eps
        self.adapter = Adapter(dim, config.adapter_attn_dim) if config.adapter_attn_dim else None
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(dim, eps=eps)
        self.feed_forward = FeedForward(config)
        self.final_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(config.dropout)
        self.layer_norm_first = config.layer_norm_first

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask))
            x = x + self.dropout(self.feed_forward(self.final_norm(x)))
        else:
            x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask)))
            x = self.final_norm(x + self.dropout(self.feed_forward(x)))
        if self.adapter is not None:
            x = x + self.adapter(x)
        return x


class TransformerEncoder(nn.Module):
    """Positional conv, then the blocks; `norm` sits after the pos conv (post-LN) or after the last block (pre-LN).

    LayerDrop and DDP: the skip decisions come from a CPU generator owned by the encoder, so they cost no device
    sync and are identical on every rank as long as each rank calls `set_layerdrop_seed(update)` with the same
    number before the update (the trainer does). Skipped layers still join the graph with a zero-weighted sum of
    their parameters, so DDP with find_unused_parameters=False finds a gradient (zero) for every parameter.

    Activation checkpointing (`activation_checkpointing = True`): each block keeps only its input for the
    backward pass and runs again there; dropout draws are replayed, so gradients are unchanged. A block
    skipped by LayerDrop is never run, so the two combine under DDP.
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.pos_conv = PositionalConv(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.layer_norm_first = config.layer_norm_first
        self.layerdrop = config.layerdrop
        self.layerdrop_generator = torch.Generator().manual_seed(0)
        self.activation_checkpointing = False
        self.apply(_init_bert_params)

    def set_layerdrop_seed(self, seed: int) -> None:
        """Reseed the LayerDrop draws; call with the same value on every rank (e.g. the update number)."""
        self.layerdrop_generator.manual_seed(int(seed))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """x (B, T, D); padding_mask (B, T) bool, True at padded frames, or None when nothing is padded.

        Returns the output and, if asked, the hidden states: the input to each block and the final output.
        """
        attn_mask = None
        if padding_mask is not None:
            # Padded frames are zeroed so the positional conv sees the same zeros a shorter input would get.
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
            attn_mask = ~padding_mask[:, None, None, :]  # (B, 1, 1, T): True = may attend
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.norm(x)
        x = self.dropout(x)

        hidden = [] if output_hidden_states else None
        skip = self._layers_to_skip()
        for i, layer in enumerate(self.layers):
            if hidden is not None:
                hidden.append(x)
            if skip[i]:
                if not _is_sharded(layer):  # DDP wants every parameter in the graph; FSDP shards cannot join
                    x = x + 0.0 * sum(p.sum() for p in layer.parameters()).to(x.dtype)
                continue
            x = run_layer(layer, x, attn_mask, recompute=self.activation_checkpointing)
        if self.layer_norm_first:
            x = self.norm(x)
        if hidden is not None:
            hidden.append(x)
        return x, (tuple(hidden) if hidden is not None else None)

    def _layers_to_skip(self) -> list[bool]:
        if not self.training or self.layerdrop <= 0.0:
            return [False] * len(self.layers)
        draws = torch.rand(len(self.layers), generator=self.layerdrop_generator)
        return (draws < self.layerdrop).tolist()


def _init_bert_params(module: nn.Module) -> None:
    """fairseq's init_bert_params for Linear layers: N(0, 0.02) weights, zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _is_sharded(layer: nn.Module) -> bool:
    """Whether FSDP holds this layer's parameters as shards (DTensor) outside its own forward."""
    if not torch.distributed.is_available():
        return False
    # lazy: torch.distributed.tensor takes ~2 s to import, and torch builds without distributed support lack it
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in layer.parameters())
