"""The probe's inputs: labeled audio from a manifest, the layers to probe, and each layer's frozen features.

Layer names follow transformers' `hidden_states` convention, which `Wav2Vec2Model(...,
output_hidden_states=True)` keeps: "cnn" is `extract_features` (the CNN output after feature_norm, before the
projection); layer 0 is `hidden_states[0]`, the input to the first Transformer block (projection, positional
convolution, and for post-LN models the encoder LayerNorm); layer i (1..L) is `hidden_states[i]`, the output of
block i, the last one after the final LayerNorm in pre-LN models.

Every utterance goes through the encoder once per model (eval mode, no masking, no gradient), in batches packed
by length; the probed layers' valid frames stay in memory and are packed again, by frames, into the padded
(B, T, D) batches that all heads reuse, each utterance's frames freed as they are copied, so that the cache is never
held twice. That memory is estimated from the manifests before any audio is read (`estimate_memory`), and a run that
would not fit in what the machine, or the memory cgroup the process runs in, has available is refused
(`check_memory`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from xlsr.data.audio import load_audio, normalize_waveform
from xlsr.data.batching import pack_batches, pad_waveforms
from xlsr.data.manifest import Utterance, read_manifest
from xlsr.errors import AudioError, XlsrError
from xlsr.model import Wav2Vec2Config, Wav2Vec2Model
from xlsr.rates import SAMPLE_RATE
from xlsr.text.labels import LABEL_FIELD
from xlsr.text.vocab import Vocabulary
from xlsr.train.linear_probe import HeadBatch

log = logging.getLogger(__name__)

CNN = "cnn"

MAX_BATCH_SAMPLES = 60 * SAMPLE_RATE  # padded audio per encoder forward pass, as the analysis

Layer = str | int  # "cnn" or a hidden-state index 0..L
MEMINFO = Path("/proc/meminfo")  # Linux: MemAvailable, what the kernel can hand out without swapping
CGROUP_ROOT = Path("/sys/fs/cgroup")  # where the cgroup hierarchies are mounted (v2 here, v1 under memory/)
PROC_CGROUP = Path("/proc/self/cgroup")  # the cgroup of this process in each hierarchy
# per value of a layer's train frames while probe.layer_statistics holds them: float32 (4) with their float64 copy
# (8), then that copy with its centred copy (8 + 8) in model.feature_health
STATISTICS_BYTES = 16


@dataclass
class LabeledAudio:
    """A manifest's readable utterances: raw waveforms (not normalised) and their label strings."""

    manifest: Path
    waveforms: list[np.ndarray]
    labels: list[str]
    ids: list[str]
    skipped: int = 0  # unreadable or shorter than the CNN's receptive field
    audio: list[str] = field(default_factory=list)  # each kept utterance's audio file, as the manifest resolves it
    speakers: list[str | None] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return sum(w.shape[0] for w in self.waveforms) / SAMPLE_RATE / 60


@dataclass
class UtteranceFeatures:
    """One utterance's valid frames at each probed layer, its label ids and its reference string."""

    features: list[torch.Tensor]  # one (T, D_l) per probed layer
    label_ids: list[int]
    ref: str


@dataclass
class FeatureBatch(HeadBatch):
    """One padded batch for the heads (a (B, T, D_l) tensor per probed layer, ...) and its reference strings."""

    refs: list[str] = field(default_factory=list)


def parse_layers(spec: str | list | None) -> list[Layer] | None:
    """"all" (or None) -> None; "cnn,0,3" -> ["cnn", 0, 3]: names in the order given, duplicates dropped."""
    if spec is None or (isinstance(spec, str) and spec.strip() == "all"):
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    layers: list[Layer] = []
    for item in items:
        item = str(item).strip()
        if item == CNN:
            layer: Layer = CNN
        else:
            try:
                layer = int(item)
            except ValueError:
                raise XlsrError(f"--layers: {item!r} is not 'cnn' or a layer number (use all, or e.g. cnn,0,3)") from None
            if layer < 0:
                raise XlsrError(f"--layers: layer numbers start at 0, got {layer}")
        if layer not in layers:
            layers.append(layer)
    if not layers:
        raise XlsrError("--layers: no layer given (use all, or e.g. cnn,0,3)")
    return layers


def resolve_layers(layers: list[Layer] | None, num_layers: int, model_name: str) -> list[Layer]:
    """The probed layers of a model with `num_layers` Transformer blocks: all of them, or the asked ones checked."""
    if layers is None:
        return [CNN, *range(num_layers + 1)]
    too_deep = [x for x in layers if x != CNN and x > num_layers]
    if too_deep:
        raise XlsrError(f"{model_name} has {num_layers} Transformer layers; --layers asked for {too_deep[0]} "
                        f"(allowed: cnn, 0..{num_layers})")
    return list(layers)


def encoder_of(model: torch.nn.Module, model_name: str) -> Wav2Vec2Model:
    """The Wav2Vec2Model inside a pretraining, CTC or bare encoder model."""
    encoder = model if isinstance(model, Wav2Vec2Model) else getattr(model, "wav2vec2", None)
    if not isinstance(encoder, Wav2Vec2Model):
        raise XlsrError(f"{model_name}: a {type(model).__name__} holds no wav2vec 2.0 encoder to probe")
    return encoder


def read_labeled(manifest: str | Path, labels: str, *, min_samples: int, max_samples: int | None = None,
                 utterances: list[Utterance] | None = None) -> LabeledAudio:
    """Every utterance of `manifest` (its `utterances` where already read) with its `labels` field, but those longer
    than `max_samples` (an uncut recording, which one forward pass and its CTC lattice cannot hold: left out with a
    warning naming the longest, counted as skipped); XlsrError for an empty manifest or a missing label."""
    if labels not in LABEL_FIELD:
        raise XlsrError(f"--labels: {labels!r} is not one of {', '.join(LABEL_FIELD)}")
    manifest = Path(manifest)
    utts = read_manifest(manifest) if utterances is None else utterances
    if not utts:
        raise XlsrError(f"{manifest}: empty manifest (no utterances)")
    key = LABEL_FIELD[labels]
    for number, utt in enumerate(utts, 1):
        if not (getattr(utt, key) or "").strip():
            raise XlsrError(f"{manifest}: utterance {utt.id!r} (line {number}) has no {key!r} field, "
                            f"needed for --labels {labels}")
    data = LabeledAudio(manifest, [], [], [])
    too_long = [(utt.num_samples, number) for number, utt in enumerate(utts, 1)
                if max_samples is not None and utt.num_samples > max_samples]
    if too_long:
        samples, number = max(too_long)
        log.warning("%s: %d utterance(s) longer than --max-batch-samples (%d) left out, which a forward pass takes "
                    "whole (the longest: line %d, %.1f s); cut such recordings into utterances, or raise "
                    "--max-batch-samples", manifest, len(too_long), max_samples, number, samples / SAMPLE_RATE)
        data.skipped += len(too_long)
        utts = [utt for utt in utts if utt.num_samples <= max_samples]
    for utt in utts:
        try:
            wave = load_audio(utt.audio)
        except AudioError as exc:
            log.warning("skipping bad audio: %s", exc)
            data.skipped += 1
            continue
        if wave.shape[0] < min_samples:
            data.skipped += 1  # gives no frame
            continue
        data.waveforms.append(wave)
        data.labels.append(getattr(utt, key))
        data.ids.append(utt.id)
        data.audio.append(str(utt.audio))
        data.speakers.append(utt.speaker)
    if not data.waveforms:
        longer = f", or longer than {max_samples}" if too_long else ""
        raise XlsrError(f"{manifest}: none of its {len(utts) + len(too_long)} utterances could be read "
                        f"(unreadable audio, or shorter than {min_samples} samples{longer})")
    return data


@torch.no_grad()
def compute_features(encoder: Wav2Vec2Model, data: LabeledAudio, vocab: Vocabulary, layers: list[Layer], *,
                     device: torch.device, max_batch_samples: int = MAX_BATCH_SAMPLES,
                     cache_dtype: torch.dtype = torch.float32, bar=None) -> list[UtteranceFeatures]:
    """Each probed layer's features for every utterance of `data` (in its order), from padded batches."""
    encoder.eval()
    normalize = bool(encoder.config.normalize_waveform)
    lengths = np.array([w.shape[0] for w in data.waveforms], dtype=np.int64)
    items: list[UtteranceFeatures | None] = [None] * len(lengths)
    for rows in pack_batches(lengths, np.arange(len(lengths)), max_batch_samples, crop_to_shortest=False):
        waves = [normalize_waveform(data.waveforms[i]) if normalize else data.waveforms[i] for i in rows]
        x, n = pad_waveforms(waves)
        out = encoder(x.to(device), n, output_hidden_states=True)
        feats = [_layer_output(out, layer) for layer in layers]
        for r, (i, frames) in enumerate(zip(rows, out.frame_lengths.tolist())):
            # clone: a slice would keep the whole padded batch alive
            items[i] = UtteranceFeatures([f[r, :frames].to(cache_dtype).clone() for f in feats],
                                         vocab.encode(data.labels[i]), data.labels[i])
        if bar is not None:
            bar.update(len(rows))
    return items


def batch_features(items: list[UtteranceFeatures], max_batch_frames: int, *,
                   consume: bool = False) -> list[FeatureBatch]:
    """Utterances packed shortest first into padded batches of at most `max_batch_frames` (B x longest); with
    `consume`, each utterance's features are dropped once copied into its batch, so that they are not held twice."""
    frames = np.array([u.features[0].shape[0] for u in items], dtype=np.int64)
    batches = []
    for rows in pack_batches(frames, np.arange(len(items)), max_batch_frames, crop_to_shortest=False):
        group = [items[i] for i in rows]
        feats = [pad_sequence([u.features[k] for u in group], batch_first=True) for k in range(len(group[0].features))]
        if consume:
            for u in group:
                u.features = []
        label_lengths = torch.tensor([len(u.label_ids) for u in group], dtype=torch.long)
        labels = torch.zeros(len(group), max(1, int(label_lengths.max())), dtype=torch.long)
        for r, u in enumerate(group):
            labels[r, : len(u.label_ids)] = torch.tensor(u.label_ids, dtype=torch.long)
        batches.append(FeatureBatch(feats, torch.from_numpy(frames[rows]), labels, label_lengths,
                                    [u.ref for u in group]))
    return batches


@dataclass
class MemoryEstimate:
    """What a probe run holds at its peak, in bytes: the audio all along, one model's features at a time.

    Not counted: the model's weights and one encoder batch's activations, which do not grow with the manifests
    (--max-batch-samples bounds them), and the padding of the heads' batches (small: they are packed by length)."""

    audio: int  # every utterance's waveform, float32 at 16 kHz
    features: int  # the probed features of the model that needs most, once: the batches are packed as they are freed
    statistics: int  # its widest layer's train frames, float32 and float64, while their statistics are computed
    frames: int  # that model's frames over every utterance
    values: int  # its values per frame over the probed layers
    value_bytes: int  # 4 for float32, 2 for float16

    @property
    def on_device(self) -> int:
        return self.features + self.statistics

    @property
    def total(self) -> int:
        return self.audio + self.on_device


def estimate_memory(train_samples: Sequence[int], test_samples: Sequence[int],
                    models: Sequence[tuple[Wav2Vec2Config, list[Layer]]], cache_dtype: torch.dtype) -> MemoryEstimate:
    """The memory a probe of train and test utterances of these lengths (16 kHz) holds for `models` (each config and
    its probed layers), features cached as `cache_dtype`: XLS-R 300M, all 26 layers, one hour of train in float32:
    features ~19 GB, statistics ~3 GB."""
    largest = (0, 0, 0, 0)
    for config, layers in models:
        train_frames = sum(config.num_frames(n) for n in train_samples)
        frames = train_frames + sum(config.num_frames(n) for n in test_samples)
        widths = [config.conv_dim if layer == CNN else config.hidden_size for layer in layers]
        features = frames * sum(widths) * cache_dtype.itemsize
        statistics = train_frames * max(widths) * STATISTICS_BYTES
        largest = max(largest, (features + statistics, statistics, frames, sum(widths)))
    on_device, statistics, frames, values = largest
    return MemoryEstimate(audio=4 * (sum(train_samples) + sum(test_samples)), features=on_device - statistics,
                          statistics=statistics, frames=frames, values=values, value_bytes=cache_dtype.itemsize)


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated: for the CPU (Linux), MemAvailable or what this process's memory cgroup
    still allows, whichever is less; the free memory of a CUDA device; None where there is no such figure."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB$", MEMINFO.read_text(), re.MULTILINE)
    except OSError:
        found = None
    figures = [int(found.group(1)) * 1024] if found else []
    cgroup = cgroup_headroom(CGROUP_ROOT, PROC_CGROUP)  # a container's limit, which MemAvailable does not see
    if cgroup is not None:
        figures.append(cgroup)
    return min(figures, default=None)


def cgroup_headroom(root: Path, membership: Path) -> int | None:
    """Bytes this process's memory cgroup and its parents still allow (the tightest limit less the usage that is
    not reclaimable file cache), with cgroup v2 or v1 mounted at `root` and the process's cgroups listed in
    `membership` (/proc/self/cgroup); None where no limit is set or nothing can be read."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    headrooms = []
    for line in lines:
        fields = line.split(":", 2)  # hierarchy id, controllers, path
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2, one hierarchy
            mount, files = root, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            mount, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        # without a cgroup namespace a container sees its host's path, mounted at the root: every level is tried
        folder = mount / path.strip("/")
        for level in [folder, *folder.parents]:
            headroom = _cgroup_level_headroom(level, *files)
            if headroom is not None:
                headrooms.append(headroom)
            if level == mount:
                break
    return min(headrooms, default=None)


def _cgroup_level_headroom(folder: Path, limit_file: str, usage_file: str, reclaimable: str) -> int | None:
    try:
        text = (folder / limit_file).read_text().strip()
        if text == "max":  # v2: no limit at this level
            return None
        limit, usage = int(text), int((folder / usage_file).read_text())
    except (OSError, ValueError):
        return None
    try:  # page cache the kernel drops before it would kill: free for us, as in MemAvailable
        found = re.search(rf"^{reclaimable} (\d+)$", (folder / "memory.stat").read_text(), re.MULTILINE)
    except OSError:
        found = None
    return max(0, limit - usage + (int(found.group(1)) if found else 0))


def check_memory(estimate: MemoryEstimate, device: torch.device) -> None:
    """One XlsrError line when the estimate exceeds what is available where it will be held (the audio in RAM, the
    features on `device`), naming the options that shrink it; nothing is refused where no figure is known."""
    host = estimate.audio + (estimate.on_device if device.type == "cpu" else 0)
    places = [("memory", host, available_memory(torch.device("cpu")))]
    if device.type != "cpu":
        places.append((f"{device} memory", estimate.on_device, available_memory(device)))
    for where, need, have in places:
        if have is not None and need > have:
            raise XlsrError(
                f"probe: the audio and the probed layers' features would take about {_size(estimate.total)} (audio "
                f"{_size(estimate.audio)}; features {_size(estimate.features)}: {estimate.frames:,} frames x "
                f"{estimate.values:,} values x {estimate.value_bytes} bytes; {_size(estimate.statistics)} more "
                f"while the widest layer's statistics are computed) of {where}, and {_size(have)} is available: "
                f"probe fewer layers (--layers, e.g. cnn,0,3), store the features in half precision (--cache-dtype "
                f"float16), or give --train/--test manifests with fewer utterances")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _layer_output(out, layer: Layer) -> torch.Tensor:
    if layer == CNN:
        return out.extract_features  # (B, T, C)
    return out.hidden_states[layer]  # (B, T, D)

