"""CTC fine-tuning: the head on the encoder (Wav2Vec2ForCTC), the loss and best-path decoding; blank is id 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xlsr.errors import XlsrError
from xlsr.model.config import Wav2Vec2Config
from xlsr.model.wav2vec2 import Wav2Vec2Model


@dataclass
class CTCOutput:
    """CTC head outputs: fp32 logits over the vocabulary (index 0 = blank)."""

    logits: torch.Tensor  # (B, T, V) fp32
    frame_lengths: torch.Tensor  # (B,)
    loss: torch.Tensor | None = None


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

    def set_encoder_trainable(self, trainable: bool, *, keep_cnn_frozen: bool = True) -> None:
        """Turn gradients of the encoder (all but the CTC head) on or off; with keep_cnn_frozen the CNN stays off.

        With the parameters off, autograd builds no graph through the Transformer: the same saving as
        fairseq's `torch.no_grad()` around the body during `freeze_finetune_updates`. Works on the model as FSDP2
        shards it in place (the parameters become DTensors; requires_grad is set on them the same way).
        """
        cnn = {id(p) for p in self.wav2vec2.feature_encoder.parameters()}
        for p in self.wav2vec2.parameters():
            if id(p) in cnn and keep_cnn_frozen:
                continue
            p.requires_grad_(trainable)

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
        output (see Wav2Vec2Model.features); the rest of the step is unchanged. In training, time and channel
        masks are drawn from the config (with `generator`).
        """
        out = self.wav2vec2(waveforms, lengths, features=features, frame_lengths=frame_lengths,
                            spec_augment=self.training, generator=generator)
        logits = self.lm_head(self.dropout(out.last_hidden_state)).float()  # (B, T, V)
        loss = None if labels is None else ctc_loss(logits, out.frame_lengths, labels, label_lengths)
        return CTCOutput(logits, out.frame_lengths, loss)




def ctc_loss(logits: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor,
             label_lengths: torch.Tensor | None, reduction: Literal["mean", "sum", "none"] = "mean") -> torch.Tensor:
    """CTC in fp32, blank 0, zero_infinity; by default the mean over the batch of per-target-length losses.

    logits (B, T, V); labels (B, L) padded with 0 or negatives past label_lengths (inferred as the count of
    labels > 0 when None). reduction as torch's: "sum" adds each utterance's -log p (fairseq's, which
    sentence_avg then divides by the utterances of an update), "none" gives them per utterance (B,).
    """
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
        return F.ctc_loss(log_probs, labels.long().clamp(min=0), frame_lengths,
                          label_lengths.long().to(frame_lengths.device), blank=0, reduction=reduction,
                          zero_infinity=True)


def ctc_segments(path: Sequence[int], blank_id: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Collapse a frame-level path: (token ids, first frame of each token, the frame after its last one).
    A token's frames are its run in the path; blank separates repeats and is no token's frame."""
    ids: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    prev = None
    for t, idx in enumerate(path):
        idx = int(idx)
        if idx != prev:
            if prev is not None and prev != blank_id:
                ends.append(t)
            if idx != blank_id:
                ids.append(idx)
                starts.append(t)
        prev = idx
    if prev is not None and prev != blank_id:
        ends.append(len(path))
    return ids, starts, ends


def ctc_collapse(path: Sequence[int], blank_id: int = 0) -> tuple[list[int], list[int]]:
    """Collapse a frame-level path: (token ids, start frame of each token). Blank separates repeats."""
    ids, starts, _ = ctc_segments(path, blank_id)
    return ids, starts


def ctc_best_path_segments(logits: torch.Tensor, frame_lengths: torch.Tensor | None,
                           blank_id: int = 0) -> list[tuple[list[int], list[int], list[int]]]:
    """Per row of logits (B, T, V): `ctc_segments` of the best path over its first frame_lengths[b] frames."""
    best = logits.argmax(dim=-1).cpu()  # (B, T); one transfer for the whole batch
    T = best.shape[1]
    lengths = [T] * best.shape[0] if frame_lengths is None else torch.as_tensor(frame_lengths).tolist()
    return [ctc_segments(best[b, : int(n)].tolist(), blank_id) for b, n in enumerate(lengths)]


def ctc_best_path_with_starts(logits: torch.Tensor, frame_lengths: torch.Tensor | None,
                              blank_id: int = 0) -> list[tuple[list[int], list[int]]]:
    """Per row of logits (B, T, V): (token ids, start frames) of the best path over its first frame_lengths[b] frames."""
    return [(ids, starts) for ids, starts, _ in ctc_best_path_segments(logits, frame_lengths, blank_id)]


def ctc_best_path(logits: torch.Tensor, frame_lengths: torch.Tensor | None) -> list[list[int]]:
    """Greedy CTC decoding of logits (B, T, V): argmax per valid frame, merge repeats, drop blanks (id 0)."""
    return [ids for ids, _ in ctc_best_path_with_starts(logits, frame_lengths)]
