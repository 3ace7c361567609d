"""The frozen CNN's output per utterance, kept in CPU memory during fine-tuning.

With a frozen CNN (fine-tuning's default, pretrained or random) its output for an utterance never changes, so
it is computed once; later epochs and validations start at feature_norm. Exact for both CNN modes: each entry is
computed from its utterance alone, and a group-norm CNN normalizes layer 0 over each row's valid steps. Runs
from one init (several seeds) can share a cache: `bind` ties it to one CNN's weights; runs in other processes
read it from a file (`save_caches`, `load_caches`).

The cache also keeps each utterance's decoded length (`lengths`): a loader given it (`_BatchDataset.cached_lengths`)
does not decode a cached utterance again, and hands a silent waveform of that length instead, which only the padding
and frame counts read (the CNN output comes from here).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from xlsr.atomic import save_torch
from xlsr.errors import XlsrError
from xlsr.model.wav2vec2 import check_waveforms

log = logging.getLogger(__name__)

# Host memory for cached CNN output, per process; past it, further utterances go through the CNN every time.
FEATURE_CACHE_MAX_BYTES = 4 * 2**30


class FeatureCache:
    """The frozen CNN's output for each utterance id, unpadded (T_i, C), in CPU memory.

    Derived state: never checkpointed, a resumed run refills it. Each entry is computed from its utterance
    alone, so its value never depends on the batch it first came in with (a resumed run sees the same values).
    """

    def __init__(self, max_bytes: int = FEATURE_CACHE_MAX_BYTES):
        self.entries: dict[str, torch.Tensor] = {}
        self.lengths: dict[str, int] = {}  # the decoded samples of each entry's utterance (the same keys)
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0
        self.full = False
        self.cnn: str | None = None  # fingerprint of the CNN (and waveform normalization) the entries come from

    def bind(self, encoder: nn.Module, normalize_waveform: bool) -> None:
        """Tie the cache to `encoder`'s CNN; XlsrError if it already holds the output of another one.

        A cache handed from run to run (seeds of one init) is exact only for the same frozen CNN weights."""
        fingerprint = cnn_fingerprint(encoder.feature_encoder, normalize_waveform)
        if self.cnn not in (None, fingerprint) and self.entries:
            raise XlsrError("feature cache: it holds the output of another CNN (another --init or conv_layers, or "
                            "another normalize_waveform); give this run a new cache")
        self.cnn = fingerprint

    def __len__(self) -> int:
        return len(self.entries)

    @torch.no_grad()
    def batch_features(self, encoder: nn.Module, waveforms: torch.Tensor, lengths: torch.Tensor,
                       ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, T, C) zero-padded on the waveforms' device, frame lengths (B,) on CPU) for a padded batch.

        `encoder` is the Wav2Vec2Model; T is what its CNN gives for the padded batch, so the shapes match the
        uncached path exactly. Padded frames hold zeros: the Transformer zeroes them anyway.
        """
        # The uncached path's checks (lengths within the batch, none shorter than the receptive field).
        lengths = check_waveforms(waveforms, lengths.cpu(), encoder.config.receptive_field)
        frames = encoder.frame_lengths(lengths)
        T = int(encoder.frame_lengths(torch.tensor([waveforms.shape[1]]))[0])
        rows = []
        for i, key in enumerate(ids):
            feats = self.entries.get(key)
            if feats is not None and feats.shape[0] != int(frames[i]) and self.lengths.get(key) == int(lengths[i]):
                # the same length gives other frames: another CNN's entry, and the row may be a loader's silent
                # stand-in for this cached utterance (`lengths`), which must never go through the CNN
                raise XlsrError(f"feature cache: {key!r} was cached as {feats.shape[0]} frames of {int(lengths[i])} "
                                f"samples, this CNN gives {int(frames[i])}: the cache holds another CNN's output; "
                                f"give this run a new cache")
            if feats is None or feats.shape[0] != int(frames[i]):
                self.misses += 1
                feats = encoder.features(waveforms[i:i + 1, : int(lengths[i])])[0][0].cpu()  # (T_i, C)
                self._store(key, feats, int(lengths[i]))
            else:
                self.hits += 1
            rows.append(feats)
        out = torch.zeros((len(rows), T, rows[0].shape[-1]), dtype=rows[0].dtype)
        for i, feats in enumerate(rows):
            out[i, : feats.shape[0]] = feats
        return out.to(waveforms.device, non_blocking=True), frames

    def _store(self, key: str, feats: torch.Tensor, samples: int) -> None:
        old = self.entries.pop(key, None)  # an entry of another length (another utterance under the same id)
        self.lengths.pop(key, None)
        if old is not None:
            self.nbytes -= old.numel() * old.element_size()
        size = feats.numel() * feats.element_size()
        if self.nbytes + size > self.max_bytes:
            if not self.full:
                log.warning("feature cache: %.1f GiB of CNN output cached, the limit; further utterances go "
                            "through the frozen CNN every time", self.nbytes / 2**30)
            self.full = True
            return
        self.entries[key] = feats.clone()  # own storage: never a view into a batch tensor
        self.lengths[key] = samples
        self.nbytes += size


def save_caches(caches: dict[str, FeatureCache], path: str | Path) -> None:
    """Write named caches (their entries and the CNN they come from) to `path`, for runs in other processes."""
    save_torch({name: {"cnn": cache.cnn, "entries": cache.entries, "lengths": cache.lengths}
                for name, cache in caches.items()}, path)


def load_caches(path: str | Path, max_bytes: int = FEATURE_CACHE_MAX_BYTES) -> dict[str, FeatureCache]:
    """The caches `save_caches` wrote, each tied to its CNN's fingerprint (a run binds it as it would its own)."""
    caches = {}
    for name, state in torch.load(path, map_location="cpu", weights_only=True).items():
        cache = caches[name] = FeatureCache(max_bytes)
        cache.cnn = state["cnn"]
        cache.entries = dict(state["entries"])
        cache.lengths = {k: int(n) for k, n in state.get("lengths", {}).items() if k in cache.entries}
        cache.nbytes = sum(t.numel() * t.element_size() for t in cache.entries.values())
    return caches


def cnn_fingerprint(cnn: nn.Module, normalize_waveform: bool) -> str:
    """A digest of the CNN's weights, buffers, layer geometry and the input normalization: equal digests give equal
    features. The strides are in no weight's shape: CNNs that differ only there share weights, not frames."""
    digest = hashlib.sha1(str(normalize_waveform).encode())
    digest.update(str(cnn.kernels_strides).encode())
    for name, tensor in cnn.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_blocker(cache_features: bool, freeze_cnn: bool, utts: list) -> str | None:
    """Why the frozen-CNN cache cannot be used for `utts` (None: it can)."""
    if not cache_features:
        return "cache_features is off"
    if not freeze_cnn:
        return "the CNN trains (freeze_feature_encoder false)"
    dup = [k for k, n in Counter(u.id for u in utts).items() if n > 1]
    if dup:
        return f"utterance ids are not unique (e.g. {dup[0]!r})"
    return None
