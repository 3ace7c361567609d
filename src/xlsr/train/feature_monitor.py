"""Feature health at validation: a fixed sample of frames, and what model/feature_health says about it.

Validation pools the frames of every validation batch of every language and keeps a uniform random sample of
them (`FrameSample`), one row per frame for each view of it: the CNN features after `feature_norm` (what the
quantizer and the projection read) and the final Transformer layer's output, both from a forward pass without
masks, and the input's log-mel spectrum over the same 25 ms windows (data/log_mel.py): the audio's own
effective dimension, which the CNN's is read against. The effective dimension is computed once over that pooled
sample, never averaged over batches: the participation ratio of a small sample is biased low (by about PR²/N for
N frames), so a per-batch average would depend on the batch size. With the same validation batches in the same
order the sample holds the same frames at every validation, so its values are comparable across updates and with
the one at initialisation.

The forward without masks is a second forward pass. To bound its cost, each language (group) offers frames from
its first validation batches only until it has offered its share, size / languages, of the sample: on a
validation set much larger than the sample, the extra cost is a small part of a validation pass.
"""

from __future__ import annotations

import torch

from xlsr.model.feature_health import channel_scale_spread, effective_dimension

# validation log keys: effective dimension of the CNN features and of the context, CNN channel-scale spread
FEATURE_EFF_DIM = "feature_eff_dim"
CONTEXT_EFF_DIM = "context_eff_dim"
FEATURE_SCALE_SPREAD = "feature_scale_spread"
INPUT_EFF_DIM = "input_eff_dim"  # the input's log-mel spectrum over the same frames: a reference, not a model figure
INIT_SUFFIX = "_init"  # the same figure at initialisation (update 0), logged beside the current one


class FrameSample:
    """A uniform random sample, without replacement, of up to `size` frames seen over several batches.

    Each frame draws a key from a generator seeded at `reset`; the sample keeps the frames with the `size` smallest
    keys. That is a uniform sample of everything added since `reset`, drawn without knowing the total in advance,
    and the same frames again for the same batches.
    """

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.seed = seed
        self.reset()

    def reset(self, groups: int = 1) -> None:
        """Forget every frame; the keys start again from the seed; each of `groups` groups may offer size / groups."""
        self.generator = torch.Generator().manual_seed(self.seed)
        self.keys = torch.empty(0, dtype=torch.float64)
        self.views: list[torch.Tensor] = []
        self.share = -(-self.size // max(groups, 1))
        self.offered: dict[str, int] = {}

    def __len__(self) -> int:
        return self.keys.numel()

    def wants(self, group: str = "") -> bool:
        """Whether `group` has offered fewer frames than its share since `reset`."""
        return self.offered.get(group, 0) < self.share

    def add(self, *views: torch.Tensor, group: str = "") -> None:
        """Offer N frames, each view an (N, D_i) tensor of the same frames; kept frames move to the CPU in fp32."""
        n = views[0].shape[0]
        self.offered[group] = self.offered.get(group, 0) + n
        keys = torch.rand(n, generator=self.generator, dtype=torch.float64)
        merged = torch.cat([self.keys, keys])
        keep = merged.argsort()[: self.size]  # ties have probability 0
        old, new = keep[keep < len(self)], keep[keep >= len(self)] - len(self)
        kept_new = [v[new.to(v.device)].detach().float().cpu() for v in views]
        self.views = kept_new if not self.views else [torch.cat([s[old], k]) for s, k in zip(self.views, kept_new)]
        self.keys = torch.cat([self.keys[old], keys[new]])


def feature_health_logs(features: torch.Tensor, context: torch.Tensor,
                        inputs: torch.Tensor | None = None) -> dict[str, float]:
    """Effective dimension of the CNN features and of the context, and the features' channel-scale spread; with
    `inputs`, the effective dimension of the input's log-mel frames too.

    `features` (N, C), `context` (N, D) and `inputs` (N, M) are the same N frames; empty when there are fewer than 2.
    """
    if features.shape[0] < 2:
        return {}
    logs = {FEATURE_EFF_DIM: effective_dimension(features), CONTEXT_EFF_DIM: effective_dimension(context),
            FEATURE_SCALE_SPREAD: channel_scale_spread(features)}
    if inputs is not None:
        logs[INPUT_EFF_DIM] = effective_dimension(inputs)
    return logs
