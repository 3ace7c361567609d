"""wav2vec 2.0 / XLSR: the encoder (Wav2Vec2Model), its pretraining objective and its CTC fine-tuning head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xlsr.errors import XlsrError
from xlsr.model.config import Wav2Vec2Config
from xlsr.model.feature_encoder import FeatureEncoder
from xlsr.model.losses import (
    contrastive_accuracy,
    contrastive_logits,
    contrastive_loss,
    diversity_loss,
    sample_negatives,
)
from xlsr.model.masking import compute_channel_mask, compute_mask_indices, padding_mask
from xlsr.model.quantizer import GumbelVectorQuantizer
from xlsr.model.transformer import TransformerEncoder


@dataclass
class Wav2Vec2ModelOutput:
    """Encoder outputs; `frame_lengths` gives each row's valid frames (the rest is padding)."""

    last_hidden_state: torch.Tensor  # (B, T, D)
    extract_features: torch.Tensor  # (B, T, C) after feature_norm, before the projection
    frame_lengths: torch.Tensor  # (B,) long
    hidden_states: tuple[torch.Tensor, ...] | None = None  # input of each block, then the final output


@dataclass
class PreTrainingOutput:
    """Loss terms are sums over the num_masked masked frames (fairseq); loss = contrastive + diversity + penalty."""

    loss: torch.Tensor
    contrastive_loss: torch.Tensor  # InfoNCE summed over masked frames
    diversity_loss: torch.Tensor  # alpha * (GV - prob_perplexity) / GV * num_masked
    feature_penalty: torch.Tensor  # beta * mean(f(x)^2) * num_masked (the unweighted mean when beta = 0)
    accuracy: torch.Tensor
    prob_perplexity: torch.Tensor
    code_perplexity: torch.Tensor
    temperature: float
    num_masked: int  # B * M
    neg_is_pos: torch.Tensor  # share of distractors identical to their positive
    logits: torch.Tensor | None = None  # (B, M, 1 + K) fp32, positive first
    mask_time_indices: torch.Tensor | None = None  # (B, T) bool


@dataclass
class CTCOutput:
    """CTC head outputs: fp32 logits over the vocabulary (index 0 = blank)."""

    logits: torch.Tensor  # (B, T, V) fp32
    frame_lengths: torch.Tensor  # (B,)
    loss: torch.Tensor | None = None


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
        self.config = cfg = config
        self.feature_encoder = FeatureEncoder(cfg.conv_layers, cfg.extractor_mode, cfg.conv_bias,
                                              cfg.feature_grad_mult, cfg.layer_norm_eps)
        self.feature_norm = nn.LayerNorm(cfg.conv_dim, eps=cfg.layer_norm_eps)
        self.feature_projection = nn.Linear(cfg.conv_dim, cfg.hidden_size)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.mask_embedding = nn.Parameter(torch.rand(cfg.hidden_size))
        self.encoder = TransformerEncoder(
            cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.attention_dropout,
            cfg.activation_dropout, cfg.layer_norm_first, cfg.layerdrop, cfg.conv_pos, cfg.conv_pos_groups,
            cfg.layer_norm_eps, cfg.adapter_attn_dim,
        )

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

    def extract(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """CNN features (B, T, C) before feature_norm, frame lengths (B,) on the model's device, padding (B, T) | None."""
        lengths = check_waveforms(waveforms, lengths, self.config.receptive_field)
        # With lengths, a group-norm CNN normalizes layer 0 over each row's valid steps: batched == alone.
        feats = self.feature_encoder(waveforms, lengths)  # (B, T, C)
        B, T, _ = feats.shape
        device = feats.device
        if lengths is None:
            return feats, torch.full((B,), T, dtype=torch.long, device=device), None
        frames = self.frame_lengths(lengths).clamp(max=T)
        # Skip the attention mask when nothing is padded; only decidable without a sync for CPU lengths.
        has_padding = bool((frames < T).any()) if frames.device.type == "cpu" else True
        frames = frames.to(device, non_blocking=True)
        return feats, frames, (padding_mask(frames, T) if has_padding else None)

    def take_features(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Precomputed CNN output (B, T, C), as `extract` returns it, -> the same triple as `extract`.

        For a frozen CNN whose output is cached: everything after the CNN (feature_norm onwards) runs and
        trains as usual; the CNN itself gets no gradient on this path. Frames past `frame_lengths` are padding.
        """
        feats = check_features(features, frame_lengths, self.config.conv_dim)
        B, T, _ = feats.shape
        device = feats.device
        if frame_lengths is None:
            return feats, torch.full((B,), T, dtype=torch.long, device=device), None
        frames = torch.as_tensor(frame_lengths).long()
        has_padding = bool((frames < T).any()) if frames.device.type == "cpu" else True
        frames = frames.to(device, non_blocking=True)
        return feats, frames, (padding_mask(frames, T) if has_padding else None)

    def extract_or_take(self, waveforms: torch.Tensor | None, lengths: torch.Tensor | None,
                        features: torch.Tensor | None, frame_lengths: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`extract` from waveforms, or `take_features` from precomputed CNN output: exactly one is given."""
        if features is None:
            if waveforms is None:
                raise XlsrError("waveforms: give waveforms (batch, samples) or precomputed features "
                                "(batch, frames, channels)")
            if frame_lengths is not None:
                raise XlsrError("frame_lengths: only used with precomputed features; with waveforms give lengths "
                                "in samples")
            return self.extract(waveforms, lengths)
        if waveforms is not None or lengths is not None:
            raise XlsrError("features: give either waveforms (with lengths in samples) or precomputed features "
                            "(with frame_lengths), not both")
        return self.take_features(features, frame_lengths)

    def encode(self, z: torch.Tensor, pad: torch.Tensor | None, mask_time_indices: torch.Tensor | None,
               mask_channel_indices: torch.Tensor | None, output_hidden_states: bool = False
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Normalised features z (B, T, C) -> projection, masks, Transformer -> (B, T, D)."""
        h = self.dropout_input(self.feature_projection(z))
        if mask_time_indices is not None:
            h = torch.where(mask_time_indices.unsqueeze(-1), self.mask_embedding.to(h.dtype), h)
        elif self.training and torch.is_grad_enabled():
            # Keep mask_embedding in the graph (zero gradient) so DDP never sees an unused parameter.
            h = h + 0.0 * self.mask_embedding.sum().to(h.dtype)
        if mask_channel_indices is not None:
            h = h.masked_fill(mask_channel_indices.unsqueeze(1), 0.0)
        return self.encoder(h, pad, output_hidden_states)

    def forward(self, waveforms: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None, mask_channel_indices: torch.Tensor | None = None,
                output_hidden_states: bool = False, *, features: torch.Tensor | None = None,
                frame_lengths: torch.Tensor | None = None) -> Wav2Vec2ModelOutput:
        """waveforms (B, S) at 16 kHz, lengths (B,) in samples -> Wav2Vec2ModelOutput.

        Instead of waveforms: `features` (B, T, C), the CNN's output before feature_norm (see `extract`), with
        `frame_lengths` (B,) valid frames per row; the CNN is skipped.
        """
        feats, frames, pad = self.extract_or_take(waveforms, lengths, features, frame_lengths)
        B, T, _ = feats.shape
        _check_mask(mask_time_indices, (B, T), "mask_time_indices")
        _check_mask(mask_channel_indices, (B, self.config.hidden_size), "mask_channel_indices")
        z = self.feature_norm(feats)
        c, hidden = self.encode(z, pad, mask_time_indices, mask_channel_indices, output_hidden_states)
        return Wav2Vec2ModelOutput(c, z, frames, hidden)


class Wav2Vec2ForPreTraining(nn.Module):
    """Wav2Vec2Model + Gumbel quantizer + projections; forward returns the contrastive pretraining loss."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.config = cfg = config
        self.wav2vec2 = Wav2Vec2Model(cfg)
        self.dropout_features = nn.Dropout(cfg.dropout_features)
        self.quantizer = GumbelVectorQuantizer(cfg.conv_dim, cfg.num_codevector_groups,
                                               cfg.num_codevectors_per_group, cfg.codevector_dim)
        self.quantizer.set_temperature(cfg.latent_temp[0])
        self.project_q = nn.Linear(cfg.codevector_dim, cfg.final_dim)
        self.final_proj = nn.Linear(cfg.hidden_size, cfg.final_dim)

    def set_temperature(self, tau: float) -> None:
        """Gumbel-softmax temperature for the next steps."""
        self.quantizer.set_temperature(tau)

    def set_layerdrop_seed(self, seed: int) -> None:
        """See TransformerEncoder: same seed on every rank keeps LayerDrop identical across DDP ranks."""
        self.wav2vec2.set_layerdrop_seed(seed)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """See Wav2Vec2Model.set_activation_checkpointing: less activation memory, same gradients."""
        self.wav2vec2.set_activation_checkpointing(enabled)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None,
                mask_time_indices: torch.Tensor | None = None, negative_indices: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> PreTrainingOutput:
        """One pretraining forward pass.

        mask_time_indices: (B, T) bool with the same number M of masked frames in every row (drawn with
        compute_mask_indices when None). negative_indices: (B, M, K) long in [0, M), positions among each
        utterance's masked frames in time order (drawn with sample_negatives when None). `generator` (on the
        model's device) seeds masks, negatives and Gumbel noise.
        """
        cfg, w = self.config, self.wav2vec2
        feats, frames, pad = w.extract(waveforms, lengths)
        B, T, C = feats.shape
        device = feats.device
        if mask_time_indices is None:
            mask = compute_mask_indices(frames, T, cfg.mask_prob, cfg.mask_length, cfg.min_masks, generator)
        else:
            _check_mask(mask_time_indices, (B, T), "mask_time_indices")
            mask = mask_time_indices.to(device)
        # The one host sync of the step: M fixes the shapes of everything below.
        counts = mask.sum(dim=1).cpu()
        M = int(counts[0]) if B else 0
        if M == 0 or bool((counts != M).any()):
            raise XlsrError(f"mask_time_indices: need the same number (>= 1) of masked frames in every row, "
                            f"got {counts.tolist()}; raise mask_prob/min_masks or use compute_mask_indices")
        masked_t = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :M]  # (B, M) masked frames in order

        penalty = _feature_penalty(feats, pad)
        z = w.feature_norm(feats)
        c, _ = w.encode(z, pad, mask, None)

        # Targets: quantize the unmasked features of the masked frames only.
        z_masked = _gather_frames(self.dropout_features(z), masked_t)  # (B, M, C)
        q = self.quantizer(z_masked.reshape(B * M, C), generator)
        targets = self.project_q(q.quantized.to(z.dtype)).view(B, M, -1)  # (B, M, F)
        predictions = self.final_proj(_gather_frames(c, masked_t))  # (B, M, F)

        if negative_indices is None:
            negative_indices, cross = sample_negatives(B, M, cfg.num_negatives, cfg.cross_sample_negatives,
                                                       generator, device)
        else:
            if negative_indices.dim() != 3 or tuple(negative_indices.shape[:2]) != (B, M):
                raise XlsrError(f"negative_indices: expected shape ({B}, {M}, K) for {M} masked frames per row, "
                                f"got {tuple(negative_indices.shape)}")
            negative_indices, cross = negative_indices.to(device).long(), None
        codeword = _codeword_ids(q.codes, cfg.num_codevectors_per_group).view(B, M)
        logits = contrastive_logits(predictions, targets, negative_indices, cfg.logit_temp, cross, codeword)

        n = B * M
        with torch.autocast(device_type=device.type, enabled=False):
            nce = contrastive_loss(logits)
            div = cfg.diversity_weight * diversity_loss(q.prob_perplexity, q.codes.shape[1] * cfg.num_codevectors_per_group) * n
            loss = nce + div
            if cfg.feature_penalty_weight > 0:
                penalty = cfg.feature_penalty_weight * penalty * n
                loss = loss + penalty
            else:
                penalty = penalty.detach()
        return PreTrainingOutput(
            loss=loss, contrastive_loss=nce, diversity_loss=div, feature_penalty=penalty,
            accuracy=contrastive_accuracy(logits.detach()), prob_perplexity=q.prob_perplexity.detach(),
            code_perplexity=q.code_perplexity, temperature=self.quantizer.temperature, num_masked=n,
            neg_is_pos=torch.isinf(logits[..., 1:].detach()).float().mean(), logits=logits,
            mask_time_indices=mask,
        )

    @torch.no_grad()
    def quantize(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebook entries of every frame, argmax without noise: (codes (B, T, G) long, frame_lengths (B,))."""
        feats, frames, _ = self.wav2vec2.extract(waveforms, lengths)
        z = self.wav2vec2.feature_norm(feats)
        B, T, C = z.shape
        return self.quantizer.codes(z.reshape(B * T, C)).view(B, T, -1), frames


class Wav2Vec2ForCTC(nn.Module):
    """Wav2Vec2Model + dropout + linear head over the vocabulary (blank = 0), trained with CTC."""

    def __init__(self, config: Wav2Vec2Config, vocab_size: int):
        super().__init__()
        if int(vocab_size) < 2:
            raise XlsrError(f"vocab_size={vocab_size}: need at least 2 (the blank and one symbol)")
        self.config = config
        self.vocab_size = int(vocab_size)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, self.vocab_size)

    def freeze_feature_encoder(self) -> None:
        """Keep the CNN fixed: no gradients, and it runs without building a graph."""
        fe = self.wav2vec2.feature_encoder
        fe.grad_mult = 0.0
        for p in fe.parameters():
            p.requires_grad_(False)

    def set_layerdrop_seed(self, seed: int) -> None:
        """See TransformerEncoder: same seed on every rank keeps LayerDrop identical across DDP ranks."""
        self.wav2vec2.set_layerdrop_seed(seed)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """See Wav2Vec2Model.set_activation_checkpointing: less activation memory, same gradients."""
        self.wav2vec2.set_activation_checkpointing(enabled)

    def forward(self, waveforms: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, label_lengths: torch.Tensor | None = None,
                generator: torch.Generator | None = None, *, features: torch.Tensor | None = None,
                frame_lengths: torch.Tensor | None = None) -> CTCOutput:
        """labels (B, L) long, padded with 0 or negatives past label_lengths (inferred as the count of labels > 0).

        `features` (B, T, C) + `frame_lengths` (B,) replace waveforms + lengths with the frozen CNN's precomputed
        output (see Wav2Vec2Model.take_features); the rest of the step is unchanged.
        """
        cfg, w = self.config, self.wav2vec2
        feats, frames, pad = w.extract_or_take(waveforms, lengths, features, frame_lengths)
        B, T, _ = feats.shape
        time_mask = channel_mask = None
        if self.training and cfg.mask_prob > 0:
            time_mask = compute_mask_indices(frames, T, cfg.mask_prob, cfg.mask_length, cfg.min_masks, generator)
        if self.training and cfg.mask_channel_prob > 0:
            channel_mask = compute_channel_mask(B, cfg.hidden_size, cfg.mask_channel_prob, cfg.mask_channel_length,
                                                generator, feats.device)
        c, _ = w.encode(w.feature_norm(feats), pad, time_mask, channel_mask)
        logits = self.lm_head(self.dropout(c)).float()  # (B, T, V)
        loss = None
        if labels is not None:
            loss = self.ctc_loss(logits, frames, labels, label_lengths)
        return CTCOutput(logits, frames, loss)

    def ctc_loss(self, logits: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor,
                 label_lengths: torch.Tensor | None) -> torch.Tensor:
        """CTC in fp32, blank 0, mean over the batch of per-target-length losses, zero_infinity."""
        B = logits.shape[0]
        if labels.dim() != 2 or labels.shape[0] != B:
            raise XlsrError(f"labels: expected shape ({B}, max_label_length), got {tuple(labels.shape)}")
        if labels.is_floating_point():
            raise XlsrError(f"labels: expected integer token ids, got {labels.dtype}")
        if label_lengths is None:
            label_lengths = (labels > 0).sum(dim=1)
        elif label_lengths.shape != (B,):
            raise XlsrError(f"label_lengths: expected shape ({B},), got {tuple(label_lengths.shape)}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
            return F.ctc_loss(log_probs, labels.long().clamp(min=0), frame_lengths, label_lengths.long().to(frame_lengths.device),
                              blank=0, reduction="mean", zero_infinity=True)


def _check_mask(mask: torch.Tensor | None, shape: tuple[int, int], name: str) -> None:
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise XlsrError(f"{name}: expected a bool tensor of shape {shape}, got {got}")


def _gather_frames(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """x (B, T, D), frames (B, M) -> (B, M, D)."""
    return x.gather(1, frames.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _codeword_ids(codes: torch.Tensor, num_vars: int) -> torch.Tensor:
    """(N, G) entries -> (N,) one id per codeword (i_1 * V + i_2 for G = 2)."""
    ids = torch.zeros_like(codes[:, 0])
    for g in range(codes.shape[1]):
        ids = ids * num_vars + codes[:, g]
    return ids


def _feature_penalty(feats: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """mean(f(x)^2) in fp32 over the valid frames (fairseq's features_pen; padding excluded)."""
    sq = feats.float().pow(2)
    if pad is None:
        return sq.mean()
    valid = (~pad).unsqueeze(-1).float()
    return (sq * valid).sum() / (valid.sum() * feats.shape[-1]).clamp(min=1.0)
