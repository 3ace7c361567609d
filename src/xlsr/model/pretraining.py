"""Wav2Vec2ForPreTraining: the encoder, the Gumbel quantizer and the contrastive task (wav2vec 2.0 §3.2-3.3).

The forward pass follows the data flow:

    waveform -> CNN -> features f(x) ─┬-> LayerNorm -> projection -> mask spans -> Transformer -> final_proj -> c
                                      └-> LayerNorm -> quantizer (masked frames only) -> project_q -> targets q
    distractors: K other masked frames of the same utterance (plus cross-sample ones)
    objective (losses.py): InfoNCE over cos(c, [q; distractors]) / kappa + alpha * diversity + beta * penalty
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xlsr.errors import XlsrError
from xlsr.model.config import Wav2Vec2Config
from xlsr.model.losses import (
    contrastive_accuracy,
    contrastive_logits,
    feature_penalty,
    pretraining_loss,
    sample_negatives,
)
from xlsr.model.masking import compute_mask_indices, padding_mask_if_padded
from xlsr.model.quantizer import GumbelVectorQuantizer, QuantizerOutput, codeword_ids
from xlsr.model.wav2vec2 import Wav2Vec2Model, check_mask


@dataclass
class PreTrainingOutput:
    """Loss terms are sums over the num_masked masked frames (fairseq); loss = contrastive + diversity + penalty."""

    loss: torch.Tensor
    contrastive_loss: torch.Tensor  # InfoNCE summed over masked frames
    diversity_loss: torch.Tensor  # alpha * (GV - prob_perplexity) / GV * num_masked
    feature_penalty: torch.Tensor  # beta * mean(f(x)^2) * num_masked (beta taken as 1, detached, when beta = 0)
    accuracy: torch.Tensor
    prob_perplexity: torch.Tensor
    code_perplexity: torch.Tensor
    temperature: float
    num_masked: int  # B * M
    neg_is_pos: torch.Tensor  # share of distractors identical to their positive
    logits: torch.Tensor | None = None  # (B, M, 1 + K) fp32, positive first
    mask_time_indices: torch.Tensor | None = None  # (B, T) bool


class Wav2Vec2ForPreTraining(nn.Module):
    """Wav2Vec2Model + Gumbel quantizer + projections; forward returns the contrastive pretraining loss."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout_features = nn.Dropout(config.dropout_features)
        self.quantizer = GumbelVectorQuantizer(config)
        self.project_q = nn.Linear(config.codevector_dim, config.final_dim)
        self.final_proj = nn.Linear(config.hidden_size, config.final_dim)

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
        model's device) seeds masks, negatives and Gumbel noise, drawn in that order.
        """
        cfg = self.config
        feats, frames = self.wav2vec2.features(waveforms, lengths)  # f(x) (B, T, C)
        B, T, _ = feats.shape
        mask, masked_t = self.mask_spans(frames, T, feats.device, mask_time_indices, generator)  # (B, T), (B, M)
        out = self.wav2vec2(features=feats, frame_lengths=frames, mask_time_indices=mask)
        targets, q = self.quantized_targets(out.extract_features, masked_t, generator)  # (B, M, F)
        predictions = self.final_proj(_gather_frames(out.last_hidden_state, masked_t))  # (B, M, F)
        negatives, cross = self.distractors(masked_t.shape, negative_indices, generator, feats.device)
        target_ids = codeword_ids(q.codes, cfg.num_codevectors_per_group).view_as(masked_t)  # (B, M)
        logits = contrastive_logits(predictions, targets, negatives, cfg.logit_temp, cross, target_ids)
        penalty = feature_penalty(feats, padding_mask_if_padded(frames, T, feats.device))
        total = pretraining_loss(logits, q.prob_perplexity, cfg.num_codevector_groups * cfg.num_codevectors_per_group,
                                 penalty, diversity_weight=cfg.diversity_weight,
                                 feature_penalty_weight=cfg.feature_penalty_weight)
        return PreTrainingOutput(
            loss=total.loss, contrastive_loss=total.contrastive, diversity_loss=total.diversity,
            feature_penalty=total.feature_penalty, accuracy=contrastive_accuracy(logits.detach()),
            prob_perplexity=q.prob_perplexity.detach(), code_perplexity=q.code_perplexity,
            temperature=self.quantizer.temperature, num_masked=masked_t.numel(),
            neg_is_pos=torch.isinf(logits[..., 1:].detach()).float().mean(), logits=logits, mask_time_indices=mask,
        )

    def mask_spans(self, frame_lengths: torch.Tensor, T: int, device: torch.device,
                   mask_time_indices: torch.Tensor | None, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, T) time mask on `device` (drawn unless given) and its M masked frames per row (B, M), in order."""
        B = frame_lengths.shape[0]
        if mask_time_indices is None:
            cfg = self.config
            mask = compute_mask_indices(frame_lengths.to(device, non_blocking=True), T, cfg.mask_prob,
                                        cfg.mask_length, cfg.min_masks, generator)
        else:
            check_mask(mask_time_indices, (B, T), "mask_time_indices")
            mask = mask_time_indices
        # The one host sync of the step (none for a mask given on the CPU). It stays: M is drawn on the device
        # (the span counts and their overlaps are random) and fixes the shapes of the targets, predictions and
        # distractors and the range the distractors are drawn from, and unequal rows must be refused.
        counts = mask.sum(dim=1).cpu()
        M = int(counts[0]) if B else 0
        if M == 0 or bool((counts != M).any()):
            raise XlsrError(f"mask_time_indices: need the same number (>= 1) of masked frames in every row, "
                            f"got {counts.tolist()}; raise mask_prob/min_masks or use compute_mask_indices")
        mask = mask.to(device)
        return mask, torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :M]

    def quantized_targets(self, z: torch.Tensor, masked_t: torch.Tensor, generator: torch.Generator | None
                          ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Normalized features z (B, T, C) -> targets q (B, M, F) of the masked frames, and the quantizer's output.

        Only the masked frames are quantized: the unmasked features of the frames the Transformer must predict.
        """
        B, M = masked_t.shape
        z_masked = _gather_frames(self.dropout_features(z), masked_t)  # (B, M, C)
        q = self.quantizer(z_masked.reshape(B * M, -1), generator)
        return self.project_q(q.quantized.to(z.dtype)).view(B, M, -1), q

    def distractors(self, shape: torch.Size, negative_indices: torch.Tensor | None,
                    generator: torch.Generator | None, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(within (B, M, K), cross (B, M, Kc) | None) distractor indices: drawn, or the given within ones checked
        (then there are no cross-sample distractors, whatever the config's cross_sample_negatives)."""
        B, M = shape
        if negative_indices is None:
            cfg = self.config
            return sample_negatives(B, M, cfg.num_negatives, cfg.cross_sample_negatives, generator, device)
        if negative_indices.dim() != 3 or tuple(negative_indices.shape[:2]) != (B, M):
            raise XlsrError(f"negative_indices: expected shape ({B}, {M}, K) for {M} masked frames per row, "
                            f"got {tuple(negative_indices.shape)}")
        if negative_indices.is_floating_point() or negative_indices.is_complex() or negative_indices.dtype == torch.bool:
            raise XlsrError(f"negative_indices: expected integer positions in [0, {M}), got {negative_indices.dtype}")
        if negative_indices.device.type == "cpu" and negative_indices.numel() and (
                int(negative_indices.min()) < 0 or int(negative_indices.max()) >= M):  # on a device: no sync here
            raise XlsrError(f"negative_indices: positions must lie in [0, {M}) (the masked frames of a row), got "
                            f"[{int(negative_indices.min())}, {int(negative_indices.max())}]")
        return negative_indices.to(device).long(), None  # given indices: no cross-sample distractors are drawn

    @torch.no_grad()
    def quantize(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebook entries of every frame, argmax without noise: (codes (B, T, G) long, frame_lengths (B,))."""
        feats, frames = self.wav2vec2.features(waveforms, lengths)
        z = self.wav2vec2.feature_norm(feats)
        B, T, C = z.shape
        return self.quantizer.codes(z.reshape(B * T, C)).view(B, T, -1), frames.to(z.device)


def _gather_frames(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """x (B, T, D), frames (B, M) -> (B, M, D)."""
    return x.gather(1, frames.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
