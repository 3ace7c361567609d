"""The failures wav2vec 2.0 pretraining runs into, recognized from one update's (or one validation's) logs."""

from __future__ import annotations

import math

from xlsr.train.feature_monitor import CONTEXT_EFF_DIM, FEATURE_EFF_DIM, INIT_SUFFIX, INPUT_EFF_DIM

# A collapse, not drift: the released tiny checkpoints' CNN features measured 4.1-5.4 against 48.6 at random
# initialisation (about 0.1); healthy training changes the effective dimension far less than 4-fold.
DIMENSION_COLLAPSE_RATIO = 0.25
DIMENSION_KEYS = ((FEATURE_EFF_DIM, "feature_collapse", "CNN features (after feature_norm)"),
                  (CONTEXT_EFF_DIM, "context_collapse", "final-layer context"))


def pretrain_health_warnings(logs: dict, *, num_groups: int, num_codevectors_per_group: int,
                             num_distractors: int, update: int, min_update: int = 100,
                             collapse_ratio: float = 0.1, neg_is_pos_max: float = 0.05,
                             chance_margin: float = 0.02, stuck_after: int = 1000,
                             dimension_collapse_ratio: float = DIMENSION_COLLAPSE_RATIO) -> list[tuple[str, str]]:
    """(kind, message) pairs for the failures wav2vec 2.0 users hit, from one update's (or validation's) logs.

    - feature collapse: the effective dimension of the CNN features (or of the context) below
      `dimension_collapse_ratio` of its value at initialisation (validation logs only; from any update on);
    - codebook collapse: code perplexity below `collapse_ratio` of its ceiling: `code_perplexity_max` when the
      log has it (G·min(V, masked frames) of each batch, averaged as code_perplexity is), else G·min(V, sample_size)
      for a log of one batch;
    - distractors equal to their positive: `neg_is_pos` share above `neg_is_pos_limit` (neg_is_pos_max or G/V);
    - loss stuck at chance: contrastive loss (bits) within `chance_margin` of log2(1 + distractors) after `stuck_after`;
      `num_distractors` is every candidate besides the positive in a masked frame's logits, K + cross-sample K.
    """
    out = dimension_collapse_warnings(logs, dimension_collapse_ratio)
    if update < min_update:
        return out
    ceiling = logs.get("code_perplexity_max") or code_perplexity_ceiling(
        num_groups, num_codevectors_per_group, logs.get("sample_size") or num_codevectors_per_group)
    ppl = logs.get("code_perplexity")
    if ppl is not None and ppl < collapse_ratio * ceiling:
        out.append(("codebook_collapse",
                    f"codebook collapse: code perplexity {ppl:.1f} of at most {ceiling:.0f} "
                    f"(G·V = {num_groups * num_codevectors_per_group}); lower the learning rate or raise "
                    f"diversity_weight / latent_temp"))
    nip = logs.get("neg_is_pos")
    limit = neg_is_pos_limit(num_groups, num_codevectors_per_group, neg_is_pos_max)
    if nip is not None and nip > limit:
        out.append(("neg_is_pos",
                    f"{100 * nip:.1f}% of distractors equal their positive, above {100 * limit:.1f}% (codebook "
                    f"under-used; the contrastive loss is becoming trivial)"))
    chance = math.log2(num_distractors + 1)
    loss = logs.get("contrastive_loss")
    if loss is not None and update >= stuck_after and loss >= (1 - chance_margin) * chance:
        out.append(("stuck_at_chance",
                    f"contrastive loss {loss:.3f} bits is at chance level log2(1 + {num_distractors} distractors) = "
                    f"{chance:.3f} after "
                    f"{update} updates; try a higher learning rate, longer crops or fewer negatives"))
    return out


def code_perplexity_ceiling(num_groups: int, num_codevectors_per_group: int, frames: float) -> float:
    """The most code perplexity one batch of `frames` masked frames can show: G·min(V, frames)."""
    return num_groups * min(num_codevectors_per_group, max(1.0, float(frames)))


def neg_is_pos_limit(num_groups: int, num_codevectors_per_group: int, floor: float = 0.05) -> float:
    """The `neg_is_pos` share above which a codebook of G groups of V entries is warned about: G/V, at least `floor`.

    Distractors are frames of the positive's own utterance, and frames of one sound often carry the same codeword:
    the coarser the codebook, the more often, so a fixed limit fits one codebook size only. G/V bounds the chance
    that two unrelated frames agree in some group when each group spreads over its V entries; a distractor equals
    its positive only when they agree in every group, and healthy runs stay below G/V although neighbouring frames
    agree far beyond chance. Measured: the released tiny runs (G·V = 2·16, 82-90% of it in use) logged 1-6% all run
    (the release curve's validation 0.053 at update 400, train logs up to 0.059) against G/V = 12.5%, while shrinking
    codebooks passed it (docs/pretrain_recipe.md trials: F 0.23 at 7.1 of 32 codes, E 1.0 at 2). For V = 320 G/V is
    0.6% and the 5% floor decides, as before.
    """
    return max(floor, num_groups / num_codevectors_per_group)


def dimension_collapse_warnings(logs: dict, ratio: float = DIMENSION_COLLAPSE_RATIO) -> list[tuple[str, str]]:
    """Warnings for an effective dimension (`<key>`) below `ratio` of its value at initialisation (`<key>_init`).

    The CNN's warning also quotes the input's own log-mel dimension (`input_eff_dim`) when it was measured: random
    weights spread the audio over many more directions than it varies in, so a CNN that learns falls towards the
    audio's dimension, which can itself be under the line.
    """
    out = []
    for key, kind, what in DIMENSION_KEYS:
        now, init = logs.get(key), logs.get(key + INIT_SUFFIX)
        if isinstance(now, int | float) and isinstance(init, int | float) and init > 0 and now < ratio * init:
            audio = logs.get(INPUT_EFF_DIM)
            beside = (f" (the input's log-mel spectrum: {audio:.1f})"
                      if key == FEATURE_EFF_DIM and isinstance(audio, int | float) else "")
            out.append((kind, f"{what} collapsed: effective dimension {now:.1f}{beside}, {now / init:.0%} of its "
                              f"{init:.1f} at initialisation (warning below {ratio:.0%}); a few directions carry "
                              f"its variance, which by itself does not mean poor transfer: judge by a probe "
                              f"(probe_every, xlsr probe; docs/pretrain_recipe.md, feature health)"))
    return out
