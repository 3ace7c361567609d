"""Wav2Vec2Config: every hyperparameter of wav2vec 2.0 / XLSR, the named presets, and a JSON round trip.

Field names follow docs/CONTRACTS.md; the fairseq name is given in brackets where it differs. Every config
(a preset, a checkpoint's config.json, an imported HF or fairseq config) is checked here, once: each value of
the right kind (nothing coerced), and sizes within bounds (MAX_SIZES, MAX_CNN, MAX_CODEVECTORS) far above any
published model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlsr.errors import XlsrError
from xlsr.jsonl import parse_json

# fairseq's "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]": 20 ms hop, 25 ms receptive field.
STANDARD_KERNELS_STRIDES = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2


def standard_conv_layers(channels: int = 512) -> list[tuple[int, int, int]]:
    """The standard 7-layer CNN as (dim, kernel, stride) triples with `channels` in every layer."""
    return [(channels, k, s) for k, s in STANDARD_KERNELS_STRIDES]


def cnn_frames(num_samples: int, conv_layers: list[tuple[int, int, int]]) -> int:
    """Frames a CNN of (dim, kernel, stride) layers gives for `num_samples`: floor((L - k) / s) + 1 per layer, >= 0."""
    frames = int(num_samples)
    for _, k, s in conv_layers:
        frames = max(0, (frames - k) // s + 1)  # as feature_encoder.conv_output_lengths, without a tensor
    return frames


@dataclass
class Wav2Vec2Config:
    """Hyperparameters of the model and of its pretraining objective (fairseq semantics)."""

    # --- CNN feature encoder
    conv_layers: list[tuple[int, int, int]] = field(
        default_factory=standard_conv_layers)  # the CNN's layers, each (dim, kernel, stride)
    extractor_mode: str = "group_norm"  # "group_norm": GroupNorm on layer 0 only; "layer_norm": LN in every layer
    conv_bias: bool = False  # the CNN's convolutions have a bias
    feature_grad_mult: float = 1.0  # scales the CNN's gradients (0 freezes it) [feature_grad_mult]
    # --- Transformer
    hidden_size: int = 768  # D: the Transformer's width [encoder_embed_dim]
    num_layers: int = 12  # Transformer blocks [encoder_layers]
    num_heads: int = 12  # attention heads per block [encoder_attention_heads]
    ffn_dim: int = 3072  # width of each block's feed-forward layer [encoder_ffn_embed_dim]
    layer_norm_first: bool = False  # pre-LN blocks (XLSR family) instead of post-LN (Base)
    dropout: float = 0.1  # on the Transformer's input and each block's attention and feed-forward outputs
    attention_dropout: float = 0.1  # on the attention weights
    activation_dropout: float = 0.0  # inside the feed-forward layer, after its activation
    dropout_input: float = 0.0  # on the CNN features after their projection to D
    dropout_features: float = 0.0  # on the quantizer's copy of the CNN features
    final_dropout: float = 0.0  # before the CTC head
    layerdrop: float = 0.0  # chance that training skips a Transformer block (LayerDrop) [encoder_layerdrop]
    conv_pos: int = 128  # kernel of the convolutional positional embedding
    conv_pos_groups: int = 16  # groups of the convolutional positional embedding
    layer_norm_eps: float = 1e-5  # epsilon of the Transformer's LayerNorms
    # MMS: a bottleneck adapter of this width after every block (None: none) [adp_dim; HF adapter_attn_dim]
    adapter_attn_dim: int | None = None
    # --- quantizer and contrastive task
    final_dim: int = 256  # F: width of the contrastive space [final_dim]
    codevector_dim: int = 256  # quantizer output dim = G x entry dim [latent_dim, 0 -> final_dim]
    num_codevector_groups: int = 2  # G: codebooks of the quantizer [latent_groups]
    num_codevectors_per_group: int = 320  # V: entries per codebook [latent_vars]
    latent_temp: tuple[float, float, float] = (2.0, 0.5, 0.999995)  # Gumbel temperature: max, min, decay per update
    logit_temp: float = 0.1  # kappa: temperature of the contrastive logits
    num_negatives: int = 100  # K: distractors per masked frame, from its own utterance
    cross_sample_negatives: int = 0  # distractors per masked frame from the batch's other utterances
    # --- masking
    mask_prob: float = 0.65  # time masks: mask_prob x frames / mask_length spans per utterance (they may overlap)
    mask_length: int = 10  # frames per time-mask span
    min_masks: int = 2  # fewest time-mask spans per utterance
    mask_channel_prob: float = 0.0  # channel masks (fine-tuning's SpecAugment): as mask_prob, over the D channels
    mask_channel_length: int = 64  # channels per channel-mask span
    # --- loss weights [criterion.loss_weights]
    diversity_weight: float = 0.1  # alpha: weight of the codebook diversity loss
    feature_penalty_weight: float = 0.0  # beta: weight of the L2 penalty on the CNN features
    # --- data contract: per-utterance z-norm of the waveform, applied by the data side
    normalize_waveform: bool = False  # the model expects each waveform z-normed (zero mean, unit variance)

    def __post_init__(self) -> None:
        self._check_types()
        # JSON/YAML give lists; keep one canonical (hashable, comparable) form.
        self.conv_layers = [tuple(int(v) for v in layer) for layer in self.conv_layers]
        self.latent_temp = tuple(float(v) for v in self.latent_temp)
        self.validate()

    def _check_types(self) -> None:
        """Raise XlsrError naming the first field whose value is of the wrong kind (a config file may hold anything).

        Nothing is coerced: "0.1", 16.7 or true where a whole number belongs would otherwise be read as something
        the file did not say (int(16.7) is 16, bool("false") is True). Integers of other types (numpy) become int.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = _FIELD_KINDS.get(f.name)
            if kind is None:
                continue
            if value is None and f.name in _OPTIONAL:
                continue
            if not _is_kind(value, kind):
                raise XlsrError(f"Wav2Vec2Config.{f.name}={_clip(value)}: must be {_KIND_WORDS[kind]}"
                                f"{' or null' if f.name in _OPTIONAL else ''}, not {type(value).__name__}")
            if kind is int:
                setattr(self, f.name, int(value))
        if not isinstance(self.conv_layers, (list, tuple)) or not all(
                isinstance(t, (list, tuple)) and len(t) == 3 and all(_is_kind(v, int) for v in t)
                for t in self.conv_layers):  # fmt: skip
            raise XlsrError(f"Wav2Vec2Config.conv_layers={_clip(self.conv_layers)}: must be a list of "
                            f"[dim, kernel, stride] triples of whole numbers")
        if not isinstance(self.latent_temp, (list, tuple)) or not all(_is_kind(v, float) for v in self.latent_temp):
            raise XlsrError(f"Wav2Vec2Config.latent_temp={_clip(self.latent_temp)}: must be a list of numbers "
                            f"[max, min, decay]")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise XlsrError naming the first field whose value cannot build a model."""

        def bad(name: str, why: str) -> XlsrError:
            return XlsrError(f"Wav2Vec2Config.{name}={getattr(self, name)!r}: {why}")

        if not self.conv_layers or any(len(t) != 3 or min(t) < 1 for t in self.conv_layers):
            raise bad("conv_layers", "must be a non-empty list of (dim, kernel, stride) with positive ints")
        # Upper bounds far above any published model, checked before anything is built: a file asking for a
        # 10**9-wide or 10**6-deep model is refused here, not after minutes of building or gigabytes allocated.
        if len(self.conv_layers) > MAX_CNN["layers"]:
            raise XlsrError(f"Wav2Vec2Config.conv_layers: {len(self.conv_layers)} layers, above the limit "
                            f"{MAX_CNN['layers']} (the published models have 7)")
        for i, (dim, kernel, stride) in enumerate(self.conv_layers):
            for what, value in (("dim", dim), ("kernel", kernel), ("stride", stride)):
                if value > MAX_CNN[what]:
                    raise XlsrError(f"Wav2Vec2Config.conv_layers[{i}]: {what} {value} is above the limit "
                                    f"{MAX_CNN[what]}, which no published model comes near (512, 10, 5)")
        if self.extractor_mode not in ("group_norm", "layer_norm"):
            raise bad("extractor_mode", "allowed: 'group_norm', 'layer_norm'")
        for name in ("hidden_size", "num_layers", "num_heads", "ffn_dim", "final_dim", "codevector_dim",
                     "num_codevector_groups", "num_codevectors_per_group", "mask_length", "conv_pos",
                     "conv_pos_groups", "mask_channel_length"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be a positive integer")
        if self.adapter_attn_dim is not None and int(self.adapter_attn_dim) < 1:
            raise bad("adapter_attn_dim", "must be a positive integer or None")
        for name, limit in MAX_SIZES.items():
            value = getattr(self, name)
            if value is not None and value > limit:
                raise bad(name, f"above the limit {limit}, which no published model comes near "
                                f"(the largest, XLS-R 2B: hidden_size 1920, num_layers 48, ffn_dim 7680)")
        if self.hidden_size % self.num_heads:
            raise bad("num_heads", f"must divide hidden_size={self.hidden_size}")
        if self.hidden_size % self.conv_pos_groups:
            raise bad("conv_pos_groups", f"must divide hidden_size={self.hidden_size}")
        if self.codevector_dim % self.num_codevector_groups:
            raise bad("codevector_dim", f"must be divisible by num_codevector_groups={self.num_codevector_groups}")
        codevectors = self.num_codevector_groups * self.num_codevectors_per_group  # G x V: the codebook's rows
        if codevectors > MAX_CODEVECTORS:  # each a row of weight_proj's output and of the codebook, built at once
            raise bad("num_codevectors_per_group", f"with Wav2Vec2Config.num_codevector_groups="
                      f"{self.num_codevector_groups} the codebook holds G x V = {codevectors} codevectors, above "
                      f"the limit {MAX_CODEVECTORS}, which no published model comes near (XLSR-53, XLS-R, MMS: 2 x 320)")
        if int(self.num_codevectors_per_group) ** int(self.num_codevector_groups) >= 2 ** 63:
            # a codeword is one int64 id (the objective's distractor check, `xlsr analyze`): past that it would wrap
            raise bad("num_codevector_groups", f"with {self.num_codevectors_per_group} codevectors per group the "
                      "product codebook has 2^63 or more codewords (V^G); use fewer groups")
        for name in ("dropout", "attention_dropout", "activation_dropout", "dropout_input", "dropout_features",
                     "final_dropout", "layerdrop", "mask_prob", "mask_channel_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if self.num_negatives < 0 or self.cross_sample_negatives < 0 or self.min_masks < 0:
            raise XlsrError("Wav2Vec2Config: num_negatives, cross_sample_negatives and min_masks must be >= 0")
        if self.num_negatives + self.cross_sample_negatives < 1:
            raise bad("num_negatives", "num_negatives + cross_sample_negatives must be at least 1")
        for name in ("feature_grad_mult", "diversity_weight", "feature_penalty_weight"):
            # a negative loss weight rewards what its term is there to keep small, a negative gradient scale climbs
            # the loss; inf or nan: NaN many updates later (the command line refuses those, a JSON config may not)
            if not 0.0 <= float(getattr(self, name)) < math.inf:
                raise bad(name, "must be a finite number >= 0")
        if not 0.0 < float(self.layer_norm_eps) < math.inf:  # eps 0 divides by zero on a constant vector
            raise bad("layer_norm_eps", "must be a finite number > 0")
        if len(self.latent_temp) != 3 or not 0 < self.latent_temp[1] <= self.latent_temp[0]:
            raise bad("latent_temp", "must be (max, min, decay) with 0 < min <= max")
        if not 0 < self.latent_temp[2] <= 1:  # above 1 the temperature would grow each update, to overflow
            raise bad("latent_temp", "the decay per update (third value) must be in (0, 1]")
        if not 0.0 < float(self.logit_temp) < math.inf:  # inf: every logit 0, nothing to learn
            raise bad("logit_temp", "must be a finite number > 0")

    # ------------------------------------------------------------------ derived sizes
    @property
    def conv_dim(self) -> int:
        """Channels of the CNN's last layer (C, 512 in the paper)."""
        return self.conv_layers[-1][0]

    @property
    def receptive_field(self) -> int:
        """Samples one output frame sees (400 for the standard CNN)."""
        field_, jump = 1, 1
        for _, k, s in self.conv_layers:
            field_ += (k - 1) * jump
            jump *= s
        return field_

    @property
    def total_stride(self) -> int:
        """Samples between consecutive frames (320 for the standard CNN)."""
        out = 1
        for _, _, s in self.conv_layers:
            out *= s
        return out

    def num_frames(self, num_samples: int) -> int:
        """Frames the CNN gives for `num_samples` of audio (see `cnn_frames`)."""
        return cnn_frames(num_samples, self.conv_layers)

    # ------------------------------------------------------------------ presets and serialisation
    @classmethod
    def preset(cls, name: str) -> Wav2Vec2Config:
        """A named configuration: tiny, base, large, xlsr-53, xls-r-300m, xls-r-1b, xls-r-2b."""
        if name not in PRESETS:
            raise XlsrError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
        return cls(**PRESETS[name])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["conv_layers"] = [list(t) for t in self.conv_layers]
        d["latent_temp"] = list(self.latent_temp)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Wav2Vec2Config:
        """Build from a dict; unknown keys are an error naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise XlsrError(f"Wav2Vec2Config: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**d)

    def to_json(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> Wav2Vec2Config:
        """Read a config written by `to_json`."""
        try:
            d = parse_json(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise XlsrError(f"{path}: cannot read a Wav2Vec2Config JSON ({e})") from None
        if not isinstance(d, dict):
            raise XlsrError(f"{path}: expected a JSON object with Wav2Vec2Config fields")
        return cls.from_dict(d)


# What each field holds (int: a whole number, never a bool; float: any number; bool: true/false only).
_FIELD_KINDS: dict[str, type] = {
    **dict.fromkeys(("hidden_size", "num_layers", "num_heads", "ffn_dim", "conv_pos", "conv_pos_groups",
                     "adapter_attn_dim", "final_dim", "codevector_dim", "num_codevector_groups",
                     "num_codevectors_per_group", "num_negatives", "cross_sample_negatives", "mask_length",
                     "min_masks", "mask_channel_length"), int),
    **dict.fromkeys(("feature_grad_mult", "dropout", "attention_dropout", "activation_dropout", "dropout_input",
                     "dropout_features", "final_dropout", "layerdrop", "layer_norm_eps", "logit_temp", "mask_prob",
                     "mask_channel_prob", "diversity_weight", "feature_penalty_weight"), float),
    **dict.fromkeys(("conv_bias", "layer_norm_first", "normalize_waveform"), bool),
    "extractor_mode": str,
}
_OPTIONAL = {"adapter_attn_dim"}
_KIND_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}

# Upper bounds on the sizes (the largest published values: XLS-R 2B 1920 wide, 48 layers, FFN 7680; MMS-1B
# 1280/48/5120; a 7-layer CNN of 512 channels, kernels <= 10, strides <= 5; 2 x 320 codevectors of 1024 dims).
MAX_SIZES: dict[str, int] = {
    "hidden_size": 16384, "num_layers": 1024, "ffn_dim": 65536, "adapter_attn_dim": 16384,
    "final_dim": 16384, "codevector_dim": 16384, "num_codevector_groups": 64,
    "num_negatives": 10000, "cross_sample_negatives": 10000, "conv_pos": 4096,
}
MAX_CNN = {"layers": 64, "dim": 16384, "kernel": 4096, "stride": 4096}
MAX_CODEVECTORS = 65536  # G x V, the codebook's entries over all groups (the published models: 2 x 320 = 640)


def in_file_words(message: str, names: dict[str, str]) -> str:
    """A Wav2Vec2Config message in a file's words: each `Wav2Vec2Config.<field>` it names becomes names[field]
    ("Wav2Vec2Config.ffn_dim=0: ..." -> "intermediate_size=0: ..."); a field without a key of its own keeps the prefix."""
    return re.sub(r"Wav2Vec2Config\.(\w+)", lambda m: names.get(m.group(1), m.group(0)), message)


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int in Python; in a config it is a mistake for a size or a rate
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    return isinstance(value, kind)


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Base = fairseq wav2vec2_base_librispeech.yaml; the XLSR family = wav2vec2_large_librivox.yaml ("vox_new":
# layer-norm CNN, conv bias, pre-LN, no dropout, tau 2 -> 0.1, beta 0, z-normed waveforms). Spec §2.5, §10.1.
_BASE = dict(
    extractor_mode="group_norm", conv_bias=False, feature_grad_mult=0.1,
    hidden_size=768, num_layers=12, num_heads=12, ffn_dim=3072, layer_norm_first=False,
    dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, dropout_input=0.1, dropout_features=0.1,
    layerdrop=0.05, final_dim=256, codevector_dim=256, latent_temp=(2.0, 0.5, 0.999995),
    diversity_weight=0.1, feature_penalty_weight=10.0, normalize_waveform=False,
)
_LARGE = dict(
    extractor_mode="layer_norm", conv_bias=True, feature_grad_mult=1.0,
    hidden_size=1024, num_layers=24, num_heads=16, ffn_dim=4096, layer_norm_first=True,
    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0, dropout_features=0.0,
    layerdrop=0.0, final_dim=768, codevector_dim=768, latent_temp=(2.0, 0.1, 0.999995),
    diversity_weight=0.1, feature_penalty_weight=0.0, normalize_waveform=True,
)
PRESETS: dict[str, dict[str, Any]] = {
    # ~5M parameters, for CPU work: the XLSR family's stable layout at a small width.
    "tiny": dict(
        _LARGE, conv_layers=standard_conv_layers(256), hidden_size=256, num_layers=4, num_heads=4,
        ffn_dim=1024, final_dim=256, codevector_dim=256,
        dropout=0.1, attention_dropout=0.1, dropout_input=0.1, dropout_features=0.1,
        latent_temp=(2.0, 0.5, 0.999995),
    ),
    "base": dict(_BASE),
    "large": dict(_LARGE),
    "xlsr-53": dict(_LARGE),
    "xls-r-300m": dict(_LARGE),
    "xls-r-1b": dict(_LARGE, num_layers=48, hidden_size=1280, ffn_dim=5120, final_dim=1024, codevector_dim=1024),
    "xls-r-2b": dict(_LARGE, num_layers=48, hidden_size=1920, ffn_dim=7680, final_dim=1024, codevector_dim=1024),
}


def check_override_keys(overrides: dict) -> None:
    """A run's `model` overrides name Wav2Vec2Config fields; the first that does not is one XlsrError line."""
    known = {f.name for f in dataclasses.fields(Wav2Vec2Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise XlsrError(f"model.{unknown[0]}: unknown Wav2Vec2Config field; allowed: {', '.join(sorted(known))}")
