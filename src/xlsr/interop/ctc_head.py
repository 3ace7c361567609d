"""Bring an imported CTC head to our vocabulary convention: `<blank>` at row 0, `<unk>` at row 1.

fairseq puts `<s>` (its blank), `<pad>`, `</s>`, `<unk>` first; Hugging Face models put the pad
token (their blank) anywhere. Permuting the head's rows together with the token list changes no
prediction; it only renumbers the outputs.
"""

from __future__ import annotations

import torch

from xlsr.text.vocab import BLANK, UNK


def convention_order(size: int, blank: int, unk: int | None) -> list[int]:
    """Source row for each of our rows: blank first, then unk (if any), then the rest in their order."""
    head = [blank] + ([unk] if unk is not None and unk != blank else [])
    return head + [i for i in range(size) if i not in head]


def to_convention(
    state: dict[str, torch.Tensor], tokens: list[str] | None, blank: int, unk: int | None, prefix: str = "lm_head."
) -> tuple[list[str] | None, list[int] | None]:
    """Permute `state`'s head rows (in place) and rename/reorder `tokens`; return (tokens, order or None)."""
    size = state[prefix + "weight"].shape[0]
    order = convention_order(size, blank, unk)
    if tokens is not None:
        tokens = list(tokens)
        tokens[blank] = BLANK
        if unk is not None:
            tokens[unk] = UNK
    if order == list(range(size)):
        return tokens, None
    index = torch.tensor(order)
    for name in ("weight", "bias"):
        if prefix + name in state:
            state[prefix + name] = state[prefix + name][index]
    return (None if tokens is None else [tokens[i] for i in order]), order
