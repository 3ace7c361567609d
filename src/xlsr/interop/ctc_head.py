"""Bring an imported CTC head to our vocabulary convention: `<blank>` at row 0, `<unk>` at row 1.

fairseq puts `<s>` (its blank), `<pad>`, `</s>`, `<unk>` first; Hugging Face models put the pad
token (their blank) anywhere. Permuting the head's rows together with the token list changes no
prediction; it only renumbers the outputs. A vocabulary without an unk token gets a row for it that is
never predicted (weight 0, bias NEVER_PREDICTED_BIAS): every other token's log-probability stays as it was.
"""

from __future__ import annotations

import torch

from xlsr.text.vocab import BLANK, UNK

# The bias of a head row that stands in for a token the model never learned: exp(-1e4) is 0 in fp32.
NEVER_PREDICTED_BIAS = -1e4


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
        if unk is not None and unk != blank:  # an unk that is the blank (pad) names no row of its own
            tokens[unk] = UNK
    if order == list(range(size)):
        return tokens, None
    index = torch.tensor(order)
    for name in ("weight", "bias"):
        if prefix + name in state:
            state[prefix + name] = state[prefix + name][index]
    return (None if tokens is None else [tokens[i] for i in order]), order


def with_unk_row(state: dict[str, torch.Tensor], tokens: list[str], prefix: str = "lm_head.") -> list[str]:
    """Tokens (blank first) with `<unk>` at index 1, adding a never-predicted head row (in place) if it lacks one."""
    if tokens[1:2] == [UNK]:
        return tokens
    weight, bias = state[prefix + "weight"], state[prefix + "bias"]
    state[prefix + "weight"] = torch.cat([weight[:1], torch.zeros_like(weight[:1]), weight[1:]])
    state[prefix + "bias"] = torch.cat([bias[:1], torch.full_like(bias[:1], NEVER_PREDICTED_BIAS), bias[1:]])
    return [tokens[0], UNK, *tokens[1:]]
