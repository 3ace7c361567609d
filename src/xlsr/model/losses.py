"""The pretraining objective: distractor sampling, cosine contrastive logits (InfoNCE), the codebook diversity
loss, the feature penalty, and their weighting into one loss (fairseq's wav2vec criterion)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def sample_negatives(batch_size: int, num_masked: int, num_negatives: int, cross_sample_negatives: int = 0,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Distractor indices for each of the M masked frames of each of the B utterances, drawn with replacement.

    Returns (within (B, M, K) long: indices in [0, M) of *other* masked frames of the same utterance,
    cross (B, M, Kc) long: indices into the flattened B*M masked frames of the batch, never the frame itself,
    or None when Kc = 0). fairseq's trick: draw from M - 1 values and shift those >= the frame's own index up by
    one. With M == 1 there is no other frame; the frame itself is returned (its logit becomes -inf).
    """
    B, M = batch_size, num_masked
    own = torch.arange(M, device=device).view(1, M, 1)
    within = torch.randint(0, max(M - 1, 1), (B, M, num_negatives), device=device, generator=generator)
    within = within + (within >= own).long() if M > 1 else torch.zeros_like(within)
    cross = None
    if cross_sample_negatives > 0:
        own_flat = torch.arange(B * M, device=device).view(B, M, 1)
        n = B * M
        cross = torch.randint(0, max(n - 1, 1), (B, M, cross_sample_negatives), device=device, generator=generator)
        cross = cross + (cross >= own_flat).long() if n > 1 else torch.zeros_like(cross)
    return within, cross


def contrastive_logits(predictions: torch.Tensor, targets: torch.Tensor, negative_indices: torch.Tensor,
                       logit_temp: float, cross_negative_indices: torch.Tensor | None = None,
                       target_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, M, 1 + K [+ Kc]) fp32 logits cos(prediction, candidate) / kappa; candidate 0 is the positive.

    predictions, targets: (B, M, F). negative_indices: (B, M, K) in [0, M), within the utterance;
    cross_negative_indices: (B, M, Kc) into the flattened B*M targets. A distractor identical to its
    positive gets -inf: judged by equal `target_ids` (B, M) (the codeword) when given, else by equal vectors.
    """
    B, M, _ = predictions.shape
    with torch.autocast(device_type=predictions.device.type, enabled=False):
        pred = F.normalize(predictions.float(), dim=-1, eps=1e-8)
        tgt = F.normalize(targets.float(), dim=-1, eps=1e-8)
        # All within-utterance similarities in one batched matmul, then pick the sampled ones: far cheaper than
        # materialising (B, M, K, F) gathered targets.
        sim = torch.bmm(pred, tgt.transpose(1, 2))  # (B, M, M)
        pos = sim.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # (B, M, 1)
        neg = sim.gather(2, negative_indices)  # (B, M, K)
        same = _identical(targets, target_ids, negative_indices, flat=False)
        parts, masks = [pos, neg], [same]
        if cross_negative_indices is not None and cross_negative_indices.shape[-1] > 0:
            cand = tgt.reshape(B * M, -1)[cross_negative_indices]  # (B, M, Kc, F)
            parts.append(torch.einsum("bmf,bmkf->bmk", pred, cand))
            masks.append(_identical(targets, target_ids, cross_negative_indices, flat=True))
        neg_is_pos = F.pad(torch.cat(masks, dim=-1), (1, 0), value=False)  # the positive is never masked
        logits = (torch.cat(parts, dim=-1) / logit_temp).masked_fill(neg_is_pos, float("-inf"))
    return logits


def _identical(targets: torch.Tensor, target_ids: torch.Tensor | None, idx: torch.Tensor, flat: bool) -> torch.Tensor:
    """(B, M, K) bool: is distractor idx[b, m, k] the same target as the positive at (b, m)?"""
    B, M = targets.shape[:2]
    with torch.no_grad():
        if target_ids is not None:
            ids = target_ids.reshape(B * M)[idx] if flat else target_ids.gather(1, idx.flatten(1)).view_as(idx)
            return ids == target_ids.unsqueeze(-1)
        cand = targets.reshape(B * M, -1)[idx] if flat else targets[torch.arange(B, device=idx.device)[:, None, None], idx]
        return (cand == targets.unsqueeze(2)).all(dim=-1)


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE: cross-entropy with the positive at index 0, summed over masked frames (fairseq's sum)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                           logits.new_zeros(logits.shape[0] * logits.shape[1], dtype=torch.long), reduction="sum")


def contrastive_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of frames whose positive has the highest logit; frames where every logit ties count as wrong."""
    flat = logits.reshape(-1, logits.shape[-1])
    top = flat.argmax(-1) == 0
    all_tie = top & (flat.argmin(-1) == 0)
    return (top & ~all_tie).float().mean()


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """sum over groups of exp(entropy) of (N, G, V) probabilities averaged over N (fairseq's +1e-7 guard).

    Of the noise-free softmax this is the quantizer's prob_perplexity, the input of the diversity loss.
    """
    avg = probs.mean(dim=0)  # (G, V)
    return torch.exp(-(avg * torch.log(avg + 1e-7)).sum(dim=-1)).sum()


def diversity_loss(prob_perplexity: torch.Tensor, num_vars_total: int) -> torch.Tensor:
    """(G*V - prob_perplexity) / (G*V): 0 when every codebook entry is used equally."""
    return (num_vars_total - prob_perplexity) / num_vars_total


def feature_penalty(features: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """mean(f(x)^2) in fp32 of the CNN features (B, T, C) over the valid frames.

    fairseq's features_pen; on a padded batch fairseq averages over the padded frames too, which only shrinks the
    penalty by the batch's share of padding (pretraining's cropped batches have none: the two agree there).
    """
    sq = features.float().pow(2)
    if padding_mask is None:
        return sq.mean()
    valid = (~padding_mask).unsqueeze(-1).float()
    return (sq * valid).sum() / (valid.sum() * features.shape[-1]).clamp(min=1.0)


class PretrainingLoss(NamedTuple):
    """The objective and its weighted terms, each a sum over the n masked frames (fairseq's reduction)."""

    loss: torch.Tensor  # contrastive + diversity + feature_penalty
    contrastive: torch.Tensor  # InfoNCE summed over the masked frames
    diversity: torch.Tensor  # alpha * diversity_loss * n
    feature_penalty: torch.Tensor  # beta * penalty * n; penalty * n, detached, when beta = 0 (logged only)


def pretraining_loss(logits: torch.Tensor, prob_perplexity: torch.Tensor, num_vars_total: int,
                     penalty: torch.Tensor, *, diversity_weight: float,
                     feature_penalty_weight: float) -> PretrainingLoss:
    """L = L_m + alpha * L_d * n + beta * penalty * n in fp32, n = B * M masked frames of the (B, M, 1 + K) logits.

    The per-batch terms are scaled by n so that they keep their weight against the summed InfoNCE.
    """
    n = logits.shape[0] * logits.shape[1]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        nce = contrastive_loss(logits)
        div = diversity_weight * diversity_loss(prob_perplexity, num_vars_total) * n
        loss = nce + div
        if feature_penalty_weight > 0:
            penalty = feature_penalty_weight * penalty * n
            loss = loss + penalty
        else:
            penalty = penalty.detach() * n  # logged per masked frame like the weighted one, not trained
    return PretrainingLoss(loss, nce, div, penalty)
