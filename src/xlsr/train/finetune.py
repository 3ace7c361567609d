"""CTC fine-tuning (spec §7): a CTC head on a pretrained (or random) encoder, run by the shared Trainer.

The recipe, one mechanism per place:
- vocabulary: built from the training labels (phones or characters; the union over languages), unless the
  `--init` checkpoint already carries one or `vocab` names a JSON file; saved with every checkpoint;
- model: Wav2Vec2ForCTC with the pretrained encoder's weights (quantizer and projections dropped) and a
  fresh head whose blank logit starts `blank_bias` higher, so CTC begins in its all-blank stage; the CNN is
  frozen throughout (`FinetuneTask.build_model`);
- the Transformer is frozen for the first `freeze_updates` updates, so that only the head trains while it
  is random (`FinetuneTask.on_update_start`);
- time masks (with the learned mask embedding) and channel masks, LayerDrop, dropouts: `model` overrides
  applied to the encoder's config (the model draws the masks in training mode);
- tri-stage learning rate, Adam (0.9, 0.98), eps 1e-8 (`TrainerConfig` defaults below);
- CTC in fp32, mean over per-target-length losses, zero_infinity (inside Wav2Vec2ForCTC);
- utterances with an empty label, or a label longer than its frame count, are filtered and counted;
- with a frozen CNN its output never changes, so each utterance's CNN output is computed once and kept in
  CPU memory (`FeatureCache`, `cache_features`); later epochs and validations start at feature_norm;
- dev error rate (PER or CER, word boundaries excluded) per language every `valid_every`
  updates; `checkpoints/best` keeps the lowest.

Defaults are sized for the tiny model on a few minutes of audio on a CPU: 250 updates of 10 s batches,
peak lr 1e-3 (a few hundred updates need a higher rate than the paper's 13k), 25 head-only updates. On a
tone corpus a scaled-down tiny model learns in ~100 updates at lr 3e-3 (tests/train/test_finetune.py);
the defaults have not yet been tuned on real speech with a pretrained tiny encoder. The paper's settings for real models are in recipes (fairseq vox_10m/1h: lr 1e-4..3e-4, 13k updates, 10k
frozen, mask_prob 0.65-0.75, channel prob 0.25 over 64 channels, LayerDrop 0.1).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from xlsr.data.augment import parse_augment
from xlsr.errors import CheckpointError, XlsrError
from xlsr.train.task import Task
from xlsr.train.trainer import TrainerConfig

log = logging.getLogger(__name__)

LABEL_FIELD = {"phones": "phones", "chars": "text"}
WORD_BOUNDARY = "|"


def finetune_model_defaults() -> dict:
    """The Wav2Vec2Config overrides fine-tuning applies by default (training-time switches only)."""
    # fairseq vox_* fine-tuning: no dropout except in the FFN, LayerDrop, SpecAugment-like masks. The mask
    # rates are lower than the paper's 0.65-0.75 because a few hundred updates cannot absorb that much
    # regularisation; channel spans are scaled to the tiny model's 256 channels (64 of 1024 in the paper).
    return {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.1, "dropout_input": 0.0,
            "final_dropout": 0.0, "layerdrop": 0.05, "mask_prob": 0.3, "mask_length": 10, "min_masks": 0,
            "mask_channel_prob": 0.1, "mask_channel_length": 16}


@dataclass
class FinetuneConfig(TrainerConfig):
    """Everything `xlsr finetune` needs (the Trainer's fields plus these); saved resolved as RUN/config.yaml."""

    train: list[str] = field(default_factory=list)  # training manifests (JSONL; several = multilingual)
    dev: list[str] = field(default_factory=list)  # dev manifests; error rates are reported per language
    init: str = "none"  # checkpoint (ours, HF dir, fairseq .pt) or pretraining run folder; "none" = from scratch
    labels: Literal["phones", "chars"] = "phones"  # phones: the manifest's `phones`; chars: its `text`
    vocab: str | None = None  # a vocabulary JSON to use instead of building one from the labels
    new_head: bool = False  # with a CTC --init: drop its head and vocabulary, build both from the labels
    # Added to the blank logit's bias in a freshly created CTC head (never in one taken from --init). > 0 starts
    # the model predicting blanks, the usual first stage of CTC training, and keeps it out of blank-free solutions
    # that memorize small data; 0 = PyTorch's plain Linear init, as fairseq and transformers. 3: on the tone corpus
    # 2, 3 and 4 all learned where 0 mostly failed; with 2 some heads still started half on symbols, 3 all-blank.
    blank_bias: float = 3.0
    oov: Literal["error", "warn", "unk"] = "error"  # label symbols outside a given vocabulary
    preset: str = "tiny"  # model size for --init none
    model: dict = field(default_factory=finetune_model_defaults)  # Wav2Vec2Config overrides (masks, dropouts)
    freeze_updates: int = 25  # the Transformer (and mask embedding) stay fixed for this many updates
    freeze_feature_encoder: bool | None = None  # None: frozen with a pretrained --init, trained from scratch
    cache_features: bool = True  # keep the frozen CNN's output per utterance in CPU memory (exact for either CNN)
    max_tokens: int = 160_000  # samples per batch (10 s of 16 kHz audio)
    max_sample_size: int | None = None  # longer utterances are skipped (default: max_tokens)
    num_workers: int = 0
    max_bad_share: float = 0.05  # unreadable audio files tolerated per epoch
    augment: str = "none"  # on-the-fly effects on training audio, e.g. "default" or "noise=0.5:5-30" (docs/synth.md)
    # Trainer defaults for fine-tuning: fairseq's Adam and tri-stage schedule (spec §7.2) at a CPU-sized budget.
    max_updates: int = 250
    lr: float = 1e-3
    lr_schedule: Literal["polynomial", "tri_stage", "constant"] = "tri_stage"
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    valid_every: int = 50
    save_every: int = 50
    keep_last: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.blank_bias):
            raise XlsrError(f"blank_bias: must be a finite number, got {self.blank_bias}")
        if isinstance(self.train, str):
            self.train = [self.train]
        if isinstance(self.dev, str):
            self.dev = [self.dev]
        # A partial `model` section (YAML or --model.key) adds to the defaults instead of replacing them.
        self.model = {**finetune_model_defaults(), **dict(self.model)}
        parse_augment(self.augment)  # a bad spec fails before the run folder is written


# --- vocabulary --------------------------------------------------------------------------------------

def label_of(utt, labels: str) -> str:
    """The label string of an utterance for `labels` ("phones" or "chars"), '' when absent."""
    return (getattr(utt, LABEL_FIELD[labels]) or "").strip()


def build_vocabulary(utts_by_manifest: dict[str, list], labels: str):
    """The union of the per-manifest vocabularies built from their labels (blank 0, <unk> 1)."""
    from xlsr.text.vocab import Vocabulary

    vocabs = []
    for path, utts in utts_by_manifest.items():
        texts = [label_of(u, labels) for u in utts if label_of(u, labels)]
        if not texts:
            raise XlsrError(f"{path}: no utterance has a {LABEL_FIELD[labels]!r} label (--labels {labels})")
        vocabs.append(Vocabulary.build(texts, kind=labels))
    return vocabs[0] if len(vocabs) == 1 else Vocabulary.union(vocabs)


def vocabulary_from_tokens(tokens: list[str], labels: str):
    """A Vocabulary over exactly `tokens` (e.g. from a checkpoint), tokenizing as `labels`."""
    from xlsr.text.vocab import Vocabulary

    return Vocabulary(list(tokens), kind=labels)


def format_oov(report: dict[str, int], limit: int = 8) -> str:
    """'x'×3, 'y'×1, ... (most frequent first)."""
    items = sorted(report.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{s!r}×{n}" for s, n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- filtering ----------------------------------------------------------------------------------------

def num_frames(num_samples: int, conv_layers: list[tuple[int, int, int]]) -> int:
    """Frames the CNN produces for `num_samples` samples: T = floor((S - k) / s) + 1 per layer."""
    t = int(num_samples)
    for _, k, s in conv_layers:
        t = (t - k) // s + 1
        if t <= 0:
            return 0
    return t


def ctc_min_frames(ids: list[int]) -> int:
    """Fewest frames CTC needs for a target: its length plus one blank between each repeated pair."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


@dataclass
class FilterReport:
    """Utterances dropped before training, by reason (the first few ids of each kept for the message)."""

    total: int = 0
    empty_label: list[str] = field(default_factory=list)
    label_too_long: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.total - len(self.empty_label) - len(self.label_too_long)

    def summary(self, name: str) -> str:
        """One line: what was dropped from `name` and why."""
        parts = []
        if self.empty_label:
            parts.append(f"{len(self.empty_label)} with an empty label (e.g. {', '.join(self.empty_label[:3])})")
        if self.label_too_long:
            parts.append(f"{len(self.label_too_long)} whose label is longer than their frames "
                         f"(e.g. {', '.join(self.label_too_long[:3])})")
        return f"{name}: skipped {' and '.join(parts)}; {self.kept} of {self.total} kept"


def filter_utterances(utts: list, vocab, labels: str, conv_layers) -> tuple[list, FilterReport]:
    """Drop utterances CTC cannot learn from: empty labels, labels longer than the audio's frames."""
    report = FilterReport(total=len(utts))
    kept = []
    for u in utts:
        text = label_of(u, labels)
        ids = list(vocab.encode(text)) if text else []
        if not ids:
            report.empty_label.append(u.id or u.audio)
        elif ctc_min_frames(ids) > num_frames(u.num_samples, conv_layers):
            report.label_too_long.append(u.id or u.audio)
        else:
            kept.append(u)
    return kept, report


# --- model initialisation -------------------------------------------------------------------------------

def resolve_model_path(path: str | Path) -> Path:
    """A run folder means its best checkpoint (else its last); anything else is returned as is."""
    from xlsr.interop.load import resolve_run_folder

    return resolve_run_folder(path)


@dataclass
class InitModel:
    """What fine-tuning takes from `--init`: the encoder config and weights, and a CTC head if any."""

    config: object  # Wav2Vec2Config
    encoder_state: dict[str, torch.Tensor] | None  # Wav2Vec2Model state dict; None = from scratch
    vocab_tokens: list[str] | None = None
    head_state: dict[str, torch.Tensor] | None = None  # lm_head.{weight,bias}
    labels: str | None = None  # "phones"/"chars" of the checkpoint's vocabulary, when recorded
    source: str = "none"


def load_init(init: str, preset: str) -> InitModel:
    """Read `--init` (any format load_pretrained reads, or a run folder); "none" gives the preset, random."""
    from xlsr.model import Wav2Vec2Config

    if init in ("none", "", None):
        return InitModel(Wav2Vec2Config.preset(preset), None)
    from xlsr.interop.load import load_pretrained

    path = resolve_model_path(init)
    loaded = load_pretrained(path)
    model = loaded.model
    encoder = getattr(model, "wav2vec2", model)  # ForPreTraining / ForCTC hold it; Wav2Vec2Model is it
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    head = None
    if hasattr(model, "lm_head"):
        head = {k: v.detach().clone() for k, v in model.lm_head.state_dict().items()}
    labels = (loaded.metadata or {}).get("labels")
    return InitModel(loaded.config, state, loaded.vocab, head, labels, str(path))


def apply_overrides(config, overrides: dict):
    """A copy of a Wav2Vec2Config with fine-tuning overrides; an unknown key is an XlsrError naming it."""
    from xlsr.model import Wav2Vec2Config

    d = config.to_dict()
    unknown = sorted(set(overrides) - set(d))
    if unknown:
        raise XlsrError(f"model.{unknown[0]}: unknown Wav2Vec2Config field; allowed: {', '.join(sorted(d))}")
    d.update(overrides)
    return Wav2Vec2Config.from_dict(d)


# --- frozen-CNN feature cache -----------------------------------------------------------------------------

# Host memory for cached CNN output, per process; past it, further utterances go through the CNN every time.
FEATURE_CACHE_MAX_BYTES = 4 * 2**30


class FeatureCache:
    """The frozen CNN's output for each utterance id, unpadded (T_i, C), in CPU memory.

    Derived state: never checkpointed, a resumed run refills it. Each entry is computed from its utterance
    alone, so its value never depends on the batch it first came in with (a resumed run sees the same values).
    """

    def __init__(self, max_bytes: int = FEATURE_CACHE_MAX_BYTES):
        self.entries: dict[str, torch.Tensor] = {}
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0
        self.full = False

    def __len__(self) -> int:
        return len(self.entries)

    @torch.no_grad()
    def batch_features(self, encoder: nn.Module, waveforms: torch.Tensor, lengths: torch.Tensor,
                       ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, T, C) zero-padded on the waveforms' device, frame lengths (B,) on CPU) for a padded batch.

        `encoder` is the Wav2Vec2Model; T is what its CNN gives for the padded batch, so the shapes match the
        uncached path exactly. Padded frames hold zeros: the Transformer zeroes them anyway.
        """
        from xlsr.model.wav2vec2 import check_waveforms

        # The uncached path's checks (lengths within the batch, none shorter than the receptive field).
        lengths = check_waveforms(waveforms, lengths.cpu(), encoder.config.receptive_field)
        frames = encoder.frame_lengths(lengths)
        T = int(encoder.frame_lengths(torch.tensor([waveforms.shape[1]]))[0])
        rows = []
        for i, key in enumerate(ids):
            feats = self.entries.get(key)
            if feats is None or feats.shape[0] != int(frames[i]):
                self.misses += 1
                feats = encoder.feature_encoder(waveforms[i:i + 1, : int(lengths[i])])[0].cpu()  # (T_i, C)
                self._store(key, feats)
            else:
                self.hits += 1
            rows.append(feats)
        out = torch.zeros((len(rows), T, rows[0].shape[-1]), dtype=rows[0].dtype)
        for i, feats in enumerate(rows):
            out[i, : feats.shape[0]] = feats
        return out.to(waveforms.device, non_blocking=True), frames

    def _store(self, key: str, feats: torch.Tensor) -> None:
        size = feats.numel() * feats.element_size()
        if self.nbytes + size > self.max_bytes:
            if not self.full:
                log.warning("feature cache: %.1f GiB of CNN output cached, the limit; further utterances go "
                            "through the frozen CNN every time", self.nbytes / 2**30)
            self.full = True
            return
        self.entries[key] = feats.clone()  # own storage: never a view into a batch tensor
        self.nbytes += size


def cache_blocker(cfg: FinetuneConfig, model_config, freeze_cnn: bool, utts: list) -> str | None:
    """Why the frozen-CNN cache cannot be used for `utts` (None: it can)."""
    if not cfg.cache_features:
        return "cache_features is off"
    if not freeze_cnn:
        return "the CNN trains (no pretrained --init, or freeze_feature_encoder false)"
    dup = [k for k, n in Counter(u.id for u in utts).items() if n > 1]
    if dup:
        return f"utterance ids are not unique (e.g. {dup[0]!r})"
    return None


# --- the task ---------------------------------------------------------------------------------------------

class FinetuneTask(Task):
    """CTC fine-tuning for the generic Trainer."""

    best_lower_is_better = True
    summed_logs = ("sample_size",)

    def __init__(self, cfg: FinetuneConfig):
        from xlsr.data.manifest import read_manifest

        if not cfg.train:
            raise XlsrError("train: give at least one training manifest (--train)")
        if cfg.labels not in LABEL_FIELD:
            raise XlsrError(f"labels: {cfg.labels!r} is not one of phones, chars")
        self.cfg = cfg
        self.info = None
        self.best_metric = "per" if cfg.labels == "phones" else "cer"
        self.init = load_init(cfg.init, cfg.preset)
        self.model_config = apply_overrides(self.init.config, dict(cfg.model))
        pretrained = self.init.encoder_state is not None
        self.freeze_cnn = pretrained if cfg.freeze_feature_encoder is None else bool(cfg.freeze_feature_encoder)
        # A random Transformer has nothing to protect: freezing it would only waste updates.
        self.freeze_updates = int(cfg.freeze_updates) if pretrained else 0
        self.has_unused_parameters = self.freeze_updates > 0  # the frozen Transformer has no gradient then
        if self.freeze_cnn:
            self.model_config.feature_grad_mult = 0.0
        train = {p: read_manifest(p) for p in cfg.train}
        dev = {p: read_manifest(p) for p in cfg.dev}
        self.vocab, self.keep_head = self._choose_vocabulary(train)
        self._check_labels(train)
        conv = self.model_config.conv_layers
        self.train_utts, self.filter_reports = [], {}
        for path, utts in train.items():
            kept, report = filter_utterances(utts, self.vocab, cfg.labels, conv)
            self.filter_reports[path] = report
            if report.kept < report.total:
                log.warning("%s", report.summary(path))
            self.train_utts.extend(kept)
        if not self.train_utts:
            raise XlsrError(f"{', '.join(cfg.train)}: no usable training utterance (all labels empty or "
                            f"longer than their audio)")
        self.dev_utts: dict[str, list] = {}
        for path, utts in dev.items():
            kept, report = filter_utterances(utts, self.vocab, cfg.labels, conv)
            if report.kept < report.total:
                log.warning("%s", report.summary(path))
            for u in kept:
                self.dev_utts.setdefault(u.lang, []).append(u)
        self._train_loader = None
        self._dev_loaders: dict | None = None
        self.feature_caches = self._feature_caches()
        self.boundary_id = self.vocab.tokens.index(WORD_BOUNDARY) if WORD_BOUNDARY in self.vocab.tokens else None

    def _feature_caches(self) -> dict[str, FeatureCache]:
        """One cache for the training utterances and one for the dev sets, where a cache is exact."""
        dev = [u for utts in self.dev_utts.values() for u in utts]
        caches = {}
        for name, utts in (("train", self.train_utts), ("dev", dev)):
            blocker = cache_blocker(self.cfg, self.model_config, self.freeze_cnn, utts) if utts else "no data"
            if name == "train" and blocker is None and parse_augment(self.cfg.augment).enabled:
                blocker = "augment is on (each epoch hears other audio)"
            if blocker is None:
                caches[name] = FeatureCache()
            elif self.freeze_cnn and self.cfg.cache_features and utts:
                log.info("%s features are not cached: %s", name, blocker)
        return caches

    # --- vocabulary -------------------------------------------------------------------------------------
    def _choose_vocabulary(self, train: dict[str, list]):
        """(vocabulary, keep the init head?) by precedence: --vocab file, the init's CTC vocab, the labels."""
        from xlsr.text.vocab import Vocabulary

        cfg = self.cfg
        if cfg.vocab:
            return Vocabulary.from_json(cfg.vocab), False
        if self.init.vocab_tokens and not cfg.new_head:
            if self.init.labels and self.init.labels != cfg.labels:
                raise XlsrError(f"{self.init.source}: its vocabulary is for {self.init.labels} but --labels is "
                                f"{cfg.labels}; pass --new-head to train a new head")
            return vocabulary_from_tokens(self.init.vocab_tokens, cfg.labels), True
        return build_vocabulary(train, cfg.labels), False

    def _check_labels(self, train: dict[str, list]) -> None:
        """Symbols outside a vocabulary that did not come from these labels: error (or warn) with counts."""
        cfg = self.cfg
        for path, utts in train.items():
            report = self.vocab.oov_report([label_of(u, cfg.labels) for u in utts if label_of(u, cfg.labels)])
            if not report:
                continue
            source = cfg.vocab or self.init.source
            message = (f"{path}: {sum(report.values())} label symbols are not in the vocabulary of {source} "
                       f"({format_oov(report)})")
            if cfg.oov == "error":
                hint = "; pass --new-head to build a new head from these labels" if self.keep_head else \
                    "; use oov=unk to map them to <unk>"
                raise XlsrError(message + hint)
            log.warning("%s; mapped to <unk>", message)

    # --- Task interface ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """Wav2Vec2ForCTC with the init encoder (and head, when its vocabulary is reused); CNN frozen."""
        from xlsr.model import Wav2Vec2ForCTC

        model = Wav2Vec2ForCTC(self.model_config, len(self.vocab.tokens))
        if self.init.encoder_state is not None:
            missing, unexpected = model.wav2vec2.load_state_dict(self.init.encoder_state, strict=False)
            if missing or unexpected:
                raise CheckpointError(f"{self.init.source}: encoder weights do not fit "
                                      f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        if self.keep_head and self.init.head_state is not None:
            model.lm_head.load_state_dict(self.init.head_state)
        else:
            start_blank_dominated(model.lm_head, self.cfg.blank_bias)
        if self.freeze_cnn:
            model.freeze_feature_encoder()
        return model

    def setup(self, info) -> None:
        self.info = info
        if info.world_size > 1 and self.cfg.distributed == "fsdp":
            self.feature_caches = {}  # sharded CNN weights cannot run outside the wrapped forward

    def ctc_forward(self, model: nn.Module, batch, split: str = "train"):
        """The model on a batch: from cached CNN output when this split has a cache, else from the waveforms."""
        cache = self.feature_caches.get(split)
        if cache is None:
            return model(batch.waveforms, batch.lengths, batch.labels, batch.label_lengths)
        from xlsr.train.distributed import unwrap

        features, frames = cache.batch_features(unwrap(model).wav2vec2, batch.waveforms, batch.lengths, batch.ids)
        return model(labels=batch.labels, label_lengths=batch.label_lengths, features=features,
                     frame_lengths=frames)

    def _rank(self) -> tuple[int, int]:
        return (self.info.rank, self.info.world_size) if self.info is not None else (0, 1)

    def _loader(self, utts: list, shuffle: bool):
        from xlsr.data.batching import finetune_loader

        cfg = self.cfg
        rank, world = self._rank() if shuffle else (0, 1)
        return finetune_loader(utts, self.vocab, max_tokens=cfg.max_tokens, shuffle=shuffle,
                               seed=cfg.seed, normalize=self.model_config.normalize_waveform,
                               label_field=cfg.labels, rank=rank, world_size=world,
                               num_workers=cfg.num_workers, max_bad_share=cfg.max_bad_share,
                               max_sample_size=cfg.max_sample_size, oov="unk",
                               augment=parse_augment(cfg.augment) if shuffle else None)  # training data only

    def train_batches(self, epoch: int, skip: int = 0):
        if self._train_loader is None:
            self._train_loader = self._loader(self.train_utts, shuffle=True)
        loader = self._train_loader
        state = loader.state_dict()
        loader.load_state_dict({**state, "epoch": epoch, "position": skip})
        return iter(loader)

    def on_update_start(self, model: nn.Module, update: int) -> dict:
        """Same LayerDrop draws on every rank; the Transformer trains only after `freeze_updates`."""
        model.set_layerdrop_seed(self.cfg.seed * 1_000_003 + update)
        frozen = update < self.freeze_updates
        set_encoder_trainable(model, not frozen, keep_cnn_frozen=self.freeze_cnn)
        return {"encoder_frozen": float(frozen)}

    def train_step(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        out = self.ctc_forward(model, batch, "train")
        with torch.no_grad():
            pred = out.logits.argmax(dim=-1)  # (B, T)
            valid = torch.arange(pred.shape[1], device=pred.device)[None, :] < out.frame_lengths[:, None]
            blank_share = ((pred == 0) & valid).sum() / valid.sum().clamp(min=1)
        return out.loss, {"loss": out.loss.detach(), "blank_share": blank_share}

    def valid_sets(self) -> dict:
        if self._dev_loaders is None:
            self._dev_loaders = {lang: self._loader(utts, shuffle=False) for lang, utts in sorted(self.dev_utts.items())}
        sets = {}
        for lang, loader in self._dev_loaders.items():
            loader.set_epoch(0)
            sets[lang] = loader
        return sets

    def valid_step(self, model: nn.Module, batch) -> dict:
        """CTC loss and the greedy unit error rate (PER/CER, word boundaries excluded) of one dev batch."""
        from xlsr.text.metrics import edit_ops

        out = self.ctc_forward(model, batch, "dev")
        hyps = greedy_ids(out.logits, out.frame_lengths)
        errors = ref_len = 0
        drop = {self.boundary_id} if self.boundary_id is not None else set()
        for row, hyp in enumerate(hyps):
            ref = batch.labels[row, : int(batch.label_lengths[row])].tolist()
            ops = edit_ops([t for t in ref if t not in drop], [t for t in hyp if t not in drop])
            errors += ops.substitutions + ops.deletions + ops.insertions
            ref_len += ops.ref_len
        return {"loss": float(out.loss), self.best_metric: errors / max(ref_len, 1), "sample_size": max(ref_len, 1)}

    def batch_audio_seconds(self, batch) -> float:
        return float(batch.lengths.sum()) / 16000.0

    def health_warnings(self, logs: dict, update: int) -> list:
        # Pitfall §11.4: a long all-blank phase is normal at first; long after the freeze it is not.
        share = logs.get("blank_share")
        if share is not None and share > 0.995 and update >= max(3 * self.freeze_updates, 200):
            return [("all_blank", f"the model still predicts only blanks after {update} updates; expected early "
                                  f"on, otherwise raise lr (now {self.cfg.lr:g}) or max_updates")]
        return []

    def save_model(self, directory: Path, model: nn.Module) -> None:
        from xlsr.interop.native import save_checkpoint

        save_checkpoint(directory, model, vocab=self.vocab.tokens,
                        metadata={"task": "finetune", "labels": self.cfg.labels, "init": self.init.source})


@torch.no_grad()
def start_blank_dominated(head: nn.Linear, blank_bias: float) -> None:
    """Add `blank_bias` to the blank's (id 0) bias of a fresh CTC head, so that its first outputs are mostly blanks.

    CTC training normally passes through an all-blank stage before symbols appear at their frames. A head that
    starts on symbols instead can settle, on little data, in a blank-free path that memorizes the training set.
    On unit-variance features PyTorch's Linear init gives logits of std ~0.58 whatever the width, so one offset
    suits every model size.
    """
    head.bias[0] += blank_bias


def set_encoder_trainable(model: nn.Module, trainable: bool, *, keep_cnn_frozen: bool = True) -> None:
    """Turn gradients of the encoder (all but the CTC head) on or off; the CNN stays as it was frozen.

    With the parameters off, autograd builds no graph through the Transformer: the same saving as
    fairseq's `torch.no_grad()` around the body during `freeze_finetune_updates`.
    """
    encoder = model.wav2vec2
    cnn = {id(p) for p in encoder.feature_encoder.parameters()}
    for p in encoder.parameters():
        if id(p) in cnn and keep_cnn_frozen:
            continue
        p.requires_grad_(trainable)


def greedy_ids(logits: torch.Tensor, frame_lengths: torch.Tensor) -> list[list[int]]:
    """Best path per row: argmax, merge repeats, drop blanks (id 0)."""
    from xlsr.decode.greedy import greedy_decode

    return [h.token_ids for h in greedy_decode(logits, frame_lengths)]


def finetune(cfg: FinetuneConfig) -> Path:
    """Fine-tune with CTC into `cfg.out`; re-running on the same folder resumes. Returns the run folder."""
    from xlsr.config import config_to_dict, save_config
    from xlsr.train.trainer import Trainer

    if not cfg.out:
        raise XlsrError("out: give a run folder (--out RUN)")
    task = FinetuneTask(cfg)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    reports = {p: {"total": r.total, "kept": r.kept, "empty_label": len(r.empty_label),
                   "label_too_long": len(r.label_too_long)} for p, r in task.filter_reports.items()}
    _write_json(run / "data_report.json", {"filtered": reports, "vocab_size": len(task.vocab.tokens),
                                           "train_utterances": len(task.train_utts),
                                           "dev_utterances": {k: len(v) for k, v in task.dev_utts.items()}})
    return Trainer(cfg, task, resolved_config=config_to_dict(cfg)).fit()


def _write_json(path: Path, data: dict) -> None:
    import json

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
