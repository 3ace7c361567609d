"""wav2vec 2.0 / XLSR encoder (Wav2Vec2Model): waveform -> CNN features -> LayerNorm -> projection -> (mask) ->
Transformer -> context c. The pretraining and CTC heads live in pretraining.py and ctc.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xlsr.errors import XlsrError
from xlsr.model.config import Wav2Vec2Config
from xlsr.model.feature_encoder import FeatureEncoder
from xlsr.model.masking import compute_channel_mask, compute_mask_indices, padding_mask_if_padded
from xlsr.model.transformer import TransformerEncoder


@dataclass
class Wav2Vec2ModelOutput:
    """Encoder outputs; `frame_lengths` gives each row's valid frames (the rest is padding)."""

    last_hidden_state: torch.Tensor  # (B, T, D)
    extract_features: torch.Tensor  # (B, T, C) after feature_norm, before the projection
    frame_lengths: torch.Tensor  # (B,) long, on the model's device
    hidden_states: tuple[torch.Tensor, ...] | None = None  # input of each block, then the final output


def check_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor | None,
                    receptive_field: int) -> torch.Tensor | None:
    """Raise XlsrError for a bad batch; return lengths as a long tensor (or None).

    Length values are checked when `lengths` lives on the CPU (the usual case: it comes from the data loader);
    checking device-resident lengths would cost a host sync every step.
    """
    if not isinstance(waveforms, torch.Tensor):
        raise XlsrError(f"waveforms: expected a torch.Tensor of shape (batch, samples), got {type(waveforms).__name__}")
    if waveforms.dim() != 2:
        raise XlsrError(f"waveforms: expected shape (batch, samples), got {tuple(waveforms.shape)}; "
                        "for one utterance use waveforms.unsqueeze(0)")
    if not waveforms.is_floating_point():
        raise XlsrError(f"waveforms: expected a floating-point tensor (float32, bfloat16 or float16), got {waveforms.dtype}")
    B, S = waveforms.shape
    if S < receptive_field:
        raise XlsrError(f"waveforms: {S} samples is shorter than the CNN's receptive field "
                        f"({receptive_field} samples, 25 ms at 16 kHz); give at least {receptive_field}")
    if lengths is None:
        return None
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise XlsrError(f"lengths: expected shape ({B},) for {B} waveforms, got {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool or lengths.is_complex():
        raise XlsrError(f"lengths: expected an integer tensor of sample counts, got {lengths.dtype}")
    if lengths.device.type == "cpu" and B > 0:
        lo, hi = int(lengths.min()), int(lengths.max())
        if hi > S:
            raise XlsrError(f"lengths: a length of {hi} samples exceeds the waveforms' {S} samples; allowed: 1..{S}")
        if lo < receptive_field:
            raise XlsrError(f"lengths: an utterance of {lo} samples is shorter than the CNN's receptive field "
                            f"({receptive_field} samples); allowed: {receptive_field}..{S}")
    return lengths.long()


def check_features(features: torch.Tensor, frame_lengths: torch.Tensor | None, conv_dim: int) -> torch.Tensor:
    """Raise XlsrError for bad precomputed CNN features (B, T, C) or frame lengths; return the features."""
    if not isinstance(features, torch.Tensor):
        raise XlsrError(f"features: expected a torch.Tensor of shape (batch, frames, {conv_dim}), "
                        f"got {type(features).__name__}")
    if features.dim() != 3 or features.shape[-1] != conv_dim or features.shape[1] < 1:
        raise XlsrError(f"features: expected shape (batch, frames >= 1, {conv_dim}) (the CNN's output, "
                        f"channels last), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise XlsrError(f"features: expected a floating-point tensor, got {features.dtype}")
    if frame_lengths is None:
        return features
    B, T, _ = features.shape
    if not isinstance(frame_lengths, torch.Tensor):
        frame_lengths = torch.as_tensor(frame_lengths)
    if frame_lengths.dim() != 1 or frame_lengths.shape[0] != B:
        raise XlsrError(f"frame_lengths: expected shape ({B},) for {B} rows of features, "
                        f"got {tuple(frame_lengths.shape)}")
    if frame_lengths.is_floating_point() or frame_lengths.dtype == torch.bool or frame_lengths.is_complex():
        raise XlsrError(f"frame_lengths: expected an integer tensor of frame counts, got {frame_lengths.dtype}")
    if frame_lengths.device.type == "cpu" and B > 0:
        lo, hi = int(frame_lengths.min()), int(frame_lengths.max())
        if lo < 1 or hi > T:
            raise XlsrError(f"frame_lengths: got a value of {lo if lo < 1 else hi} frames; allowed: 1..{T} "
                            f"(the features' frame count)")
    return features


class Wav2Vec2Model(nn.Module):
    """CNN -> LayerNorm -> projection -> (mask) -> Transformer: contextual representations c (B, T, D)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.config = config
        self.feature_encoder = FeatureEncoder(config)
        self.feature_norm = nn.LayerNorm(config.conv_dim, eps=config.layer_norm_eps)
        self.feature_projection = nn.Linear(config.conv_dim, config.hidden_size)
        self.dropout_input = nn.Dropout(config.dropout_input)
        self.mask_embedding = nn.Parameter(torch.rand(config.hidden_size))
        self.encoder = TransformerEncoder(config)

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames after the CNN for each length in samples."""
        return self.feature_encoder.frame_lengths(torch.as_tensor(sample_lengths).long())

    def set_layerdrop_seed(self, seed: int) -> None:
        """Reseed LayerDrop; the trainer calls it with the update number on every rank (DDP-safe)."""
        self.encoder.set_layerdrop_seed(seed)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Trade compute for memory in training: the CNN layers and Transformer blocks keep only their inputs
        and run again in backward (about a third more compute; activations of long inputs shrink several-fold).
        Results and gradients are unchanged."""
        self.feature_encoder.activation_checkpointing = bool(enabled)
        self.encoder.activation_checkpointing = bool(enabled)

    def features(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """waveforms (B, S), lengths (B,) in samples -> (CNN output f(x) (B, T, C) before feature_norm, frames (B,)).

        The frame lengths stay on the device of `lengths` (the CPU when lengths is None), so that whether the
        batch is padded is known without a host sync. `forward(features=, frame_lengths=)` takes this pair.
        """
        lengths = check_waveforms(waveforms, lengths, self.config.receptive_field)
        # With lengths, a group-norm CNN normalizes layer 0 over each row's valid steps: batched == alone.
        feats = self.feature_encoder(waveforms, lengths)  # (B, T, C)
        B, T, _ = feats.shape
        if lengths is None:
            return feats, torch.full((B,), T, dtype=torch.long)
        return feats, self.frame_lengths(lengths).clamp(max=T)

    def forward(self, waveforms: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None, mask_channel_indices: torch.Tensor | None = None,
                output_hidden_states: bool = False, *, features: torch.Tensor | None = None,
                frame_lengths: torch.Tensor | None = None, spec_augment: bool = False,
                generator: torch.Generator | None = None) -> Wav2Vec2ModelOutput:
        """waveforms (B, S) at 16 kHz, lengths (B,) in samples -> Wav2Vec2ModelOutput.

        Instead of waveforms: `features` (B, T, C), the CNN's output as `features()` returns it, with
        `frame_lengths` (B,) valid frames per row; the CNN is skipped (a frozen CNN's cached output).
        Masks: (B, T) / (B, D) bool, or `spec_augment=True` to draw both from the config's mask_prob and
        mask_channel_prob (fine-tuning's masks) with `generator` (on the model's device).
        """
        feats, frames = self._cnn_features(waveforms, lengths, features, frame_lengths)
        B, T, _ = feats.shape
        device = feats.device
        check_mask(mask_time_indices, (B, T), "mask_time_indices")
        check_mask(mask_channel_indices, (B, self.config.hidden_size), "mask_channel_indices")
        pad = padding_mask_if_padded(frames, T, device)
        frames = frames.to(device, non_blocking=True)
        if spec_augment:
            if mask_time_indices is not None or mask_channel_indices is not None:
                raise XlsrError("spec_augment: draws the masks itself; give it or explicit masks, not both")
            mask_time_indices, mask_channel_indices = self._draw_spec_augment(frames, T, generator)
        z = self.feature_norm(feats)
        h = self.dropout_input(self.feature_projection(z))
        h = self._apply_masks(h, mask_time_indices, mask_channel_indices)
        c, hidden = self.encoder(h, pad, output_hidden_states)
        return Wav2Vec2ModelOutput(c, z, frames, hidden)

    def _cnn_features(self, waveforms: torch.Tensor | None, lengths: torch.Tensor | None,
                      features: torch.Tensor | None, frame_lengths: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """`features()` of the waveforms, or the given CNN output checked: exactly one of the two is given."""
        if features is None:
            if waveforms is None:
                raise XlsrError("waveforms: give waveforms (batch, samples) or precomputed features "
                                "(batch, frames, channels)")
            if frame_lengths is not None:
                raise XlsrError("frame_lengths: only used with precomputed features; with waveforms give lengths "
                                "in samples")
            return self.features(waveforms, lengths)
        if waveforms is not None or lengths is not None:
            raise XlsrError("features: give either waveforms (with lengths in samples) or precomputed features "
                            "(with frame_lengths), not both")
        feats = check_features(features, frame_lengths, self.config.conv_dim)
        if frame_lengths is None:
            return feats, torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long)
        return feats, torch.as_tensor(frame_lengths).long()

    def _draw_spec_augment(self, frame_lengths: torch.Tensor, T: int, generator: torch.Generator | None
                           ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Time spans over the valid frames and channel spans, each only when its probability is > 0."""
        cfg = self.config
        time_mask = channel_mask = None
        if cfg.mask_prob > 0:
            time_mask = compute_mask_indices(frame_lengths, T, cfg.mask_prob, cfg.mask_length, cfg.min_masks,
                                             generator)
        if cfg.mask_channel_prob > 0:
            channel_mask = compute_channel_mask(frame_lengths.shape[0], cfg.hidden_size, cfg.mask_channel_prob,
                                                cfg.mask_channel_length, generator, frame_lengths.device)
        return time_mask, channel_mask

    def _apply_masks(self, h: torch.Tensor, mask_time_indices: torch.Tensor | None,
                     mask_channel_indices: torch.Tensor | None) -> torch.Tensor:
        """Masked frames (B, T, D) become the learned mask embedding; masked channels become 0."""
        if mask_time_indices is not None:
            h = torch.where(mask_time_indices.unsqueeze(-1), self.mask_embedding.to(h.dtype), h)
        elif self.training and torch.is_grad_enabled():
            # Keep mask_embedding in the graph (zero gradient) so DDP never sees an unused parameter.
            h = h + 0.0 * self.mask_embedding.sum().to(h.dtype)
        if mask_channel_indices is not None:
            h = h.masked_fill(mask_channel_indices.unsqueeze(1), 0.0)
        return h


def check_mask(mask: torch.Tensor | None, shape: tuple[int, int], name: str) -> None:
    """Raise XlsrError unless `mask` is None or a bool tensor of `shape`."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise XlsrError(f"{name}: expected a bool tensor of shape {shape}, got {got}")
