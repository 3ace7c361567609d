"""The settings of CTC fine-tuning (`xlsr finetune`): `FinetuneConfig`, its model overrides, the freeze length.

What each setting does in the recipe, and where its defaults come from: train/finetune.py's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from xlsr.data.augment import parse_augment
from xlsr.data.decoder_pool import setting_timeout
from xlsr.data.shard_index import shard_source
from xlsr.errors import XlsrError
from xlsr.interop.native import LANGUAGE_CODE
from xlsr.model.config import check_override_keys
from xlsr.rates import RECEPTIVE_FIELD_SAMPLES
from xlsr.train.trainer_config import TrainerConfig, check_at_least


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

    recipe: str | None = None  # the shipped fine-tuning recipe this config started from (informational)
    train: list[str] = field(default_factory=list)  # training manifests (JSONL; several = multilingual), or SHARDS/<split>
    dev: list[str] = field(default_factory=list)  # dev manifests; error rates are reported per language
    init: str = "none"  # checkpoint (ours, HF dir, fairseq .pt) or pretraining run folder; "none" = from scratch
    labels: Literal["phones", "chars"] = "phones"  # phones: the manifest's `phones`; chars: its `text`
    # a vocabulary JSON to use instead of building one from the labels; a CTC --init's head is kept when the file
    # holds the init's tokens in their order
    vocab: str | None = None
    new_head: bool = False  # with a CTC --init: drop its head and vocabulary, build both from the labels
    target_lang: str | None = None  # MMS --init with per-language adapters: the language to load (and to train)
    train_only: Literal["all", "adapters"] = "all"  # all, or adapters: only MMS's adapters and the CTC head train
    # Never added to a head taken from --init. > 0 starts the model predicting blanks, the usual first stage of
    # CTC training, and keeps it out of blank-free solutions that memorize small data. The head itself has
    # PyTorch's default Linear init (weights and bias uniform in +-1/sqrt(width): logits of std ~0.58 on
    # unit-variance features), which is neither fairseq's (xavier_uniform_ weights, zero bias: std ~1.4 for a
    # 1024-wide encoder) nor transformers' (weights N(0, 0.02), zero bias: std 0.02 x sqrt(width)). 3: on the tone
    # corpus 2, 3 and 4 all learned where 0 mostly failed; with 2 some heads still started half on symbols, 3 all-blank.
    blank_bias: float = 3.0  # added to the blank logit's bias in a new CTC head (> 0: starts all-blank; 0: nothing)
    # label symbols outside a given vocabulary: error stops the run; warn maps them to <unk> with a warning, unk
    # without one (their counts are in data_report.json either way)
    oov: Literal["error", "warn", "unk"] = "error"
    # mean: torch's "mean", each utterance's -log p divided by its label count, averaged over the micro-batch,
    # every micro-batch of an update weighing the same. sentence: fairseq's sentence_avg (set by its vox-* and XLS-R
    # yamls): the utterances' -log p summed, not divided by their label counts, and the gradient divided by the
    # utterances of the whole update (all micro-batches and processes); next to it, mean gives an utterance with 10x
    # the labels 1/10 of the weight. The logged `loss` is the mean one (nats per label) either way, the dev `loss`
    # too; sentence adds `sentence_loss`, the loss it trains (nats per utterance).
    ctc_loss: Literal["mean", "sentence"] = "mean"  # the CTC loss averaged per label (mean) or per utterance (sentence)
    preset: str = "tiny"  # model size for --init none: tiny, base, large, xlsr-53, xls-r-300m, xls-r-1b, xls-r-2b
    model: dict = field(default_factory=finetune_model_defaults)  # Wav2Vec2Config overrides (masks, dropouts)
    # Whatever the init, as fairseq fine-tunes (feature_grad_mult 0): one configuration then means one protocol for
    # a pretrained and a random encoder. A model.feature_grad_mult above 0 given with it is refused.
    freeze_feature_encoder: bool = True  # keep the CNN frozen; false trains it (for a model trained from scratch)
    # Only the random head trains until it reads the encoder (fairseq: the first 10k updates, 77% of its 10m/1h
    # runs and 50% of 10h). 0.5 unfreezes where the tri-stage decay begins: the head gets warmup and hold at the
    # peak rate, the Transformer only decaying rates.
    freeze_ratio: float = 0.5  # share of max_updates during which the Transformer stays frozen (the head trains)
    freeze_updates: int | None = None  # the Transformer's frozen updates as a count; replaces freeze_ratio
    cache_features: bool = True  # keep the frozen CNN's output per utterance in CPU memory (exact for either CNN)
    max_tokens: int = 160_000  # audio samples per batch of each process (160 000: 10 s at 16 kHz); an update takes processes × update_freq batches
    max_sample_size: int | None = None  # utterances longer than this (in samples) are skipped (none: max_tokens)
    num_workers: int = 0  # data-loading processes (0: load in the training process)
    decode_timeout: float = 300.0  # seconds one file (manifest or shard utterance) may take to decode: a data worker past it is stopped and the file skipped; decoding in the training process (num_workers 0, validation), the run stops naming the file and the same command skips it; 0: none
    max_bad_share: float = 0.05  # share of bad manifest lines, and of unreadable audio files per epoch, logged and skipped; past it the run stops (one process: saved first)
    # on-the-fly effects on training audio, e.g. "default" or "noise=0.5:5-30" (docs/synth.md); manifests only
    augment: str = "none"
    # --- Trainer defaults for fine-tuning: fairseq's Adam and tri-stage schedule (spec §7.2) at a CPU-sized budget.
    # 800 updates of 10 s: ~40 epochs of 3 minutes of labels, minutes on a CPU with the CNN output cached.
    max_updates: int = 800
    # fairseq fine-tunes at 1/50-1/10 of its pretraining peak (vox 1e-4..3e-4 after 5e-3, base 5e-5 after 5e-4)
    # over 13k+ updates. 5e-4, 1/4 of the tiny recipe's 2e-3, is lower than before (1e-3), so that the decay phase
    # adapts the pretrained Transformer rather than overwrites it; a larger share than fairseq's because the run
    # is 16x shorter. It is slow for the head: on the demo's dev set the runs leave CTC's all-blank stage only
    # once the Transformer trains (docs/demo/investigation.md, third round).
    lr: float = 5e-4  # peak learning rate
    lr_schedule: Literal["polynomial", "tri_stage", "constant"] = "tri_stage"
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    valid_every: int = 50
    save_every: int = 50
    keep_last: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ctc_loss not in ("mean", "sentence"):
            raise XlsrError(f"ctc_loss: {self.ctc_loss!r} is not one of mean, sentence")
        if not math.isfinite(self.blank_bias):
            raise XlsrError(f"blank_bias: must be a finite number, got {self.blank_bias}")
        check_at_least(self, max_tokens=1, max_sample_size=RECEPTIVE_FIELD_SAMPLES, num_workers=0)
        if not 0.0 <= self.max_bad_share <= 1.0:
            raise XlsrError(f"max_bad_share: must be between 0 and 1, got {self.max_bad_share:g}")
        setting_timeout(self.decode_timeout)
        if not 0.0 <= self.freeze_ratio <= 1.0:
            raise XlsrError(f"freeze_ratio: must be between 0 and 1, got {self.freeze_ratio}")
        if self.freeze_updates is not None and self.freeze_updates < 0:
            raise XlsrError(f"freeze_updates: must be at least 0, got {self.freeze_updates}")
        if self.freeze_updates is not None and self.freeze_updates > self.max_updates:
            raise XlsrError(f"freeze_updates: {self.freeze_updates} is more than max_updates {self.max_updates}, so the "
                            f"Transformer would never train; give --freeze-updates at most {self.max_updates}, or "
                            f"--freeze-ratio (a share of max_updates) instead")
        if isinstance(self.train, str):
            self.train = [self.train]
        if isinstance(self.dev, str):
            self.dev = [self.dev]
        # A partial `model` section (YAML or --model.key) adds to the defaults instead of replacing them.
        self.model = {**finetune_model_defaults(), **dict(self.model)}
        # a bad spec fails before the run folder is written; the shard stream applies no effects, so a shard folder
        # with augment on is refused rather than trained without them
        shards = [path for path in self.train if shard_source(path)]
        if parse_augment(self.augment).enabled and shards:
            raise XlsrError(f"augment: not available when --train is a shard folder ({shards[0]})")
        check_override_keys(self.model)  # a typo in a YAML's model section, before any checkpoint is loaded
        self._check_cnn_gradient()
        self._check_adapter_settings()

    def _check_cnn_gradient(self) -> None:
        """XlsrError for a model.feature_grad_mult above 0 given with a frozen CNN, which would make it 0 unsaid, and
        for 0 given with a CNN to train, which would leave it frozen unsaid.

        Refused, not warned about: no shipped recipe sets it, and fairseq's fine-tuning configs freeze the CNN with
        feature_grad_mult 0.0, which agrees with a frozen CNN and is taken."""
        mult = self.model.get("feature_grad_mult")
        if not isinstance(mult, int | float) or isinstance(mult, bool):
            return  # left out, or not a number (which apply_overrides names)
        if mult == 0 and not self.freeze_feature_encoder and self.train_only != "adapters":
            raise XlsrError("model.feature_grad_mult 0: it freezes the CNN, which freeze_feature_encoder false asks "
                            "to train; give --freeze-feature-encoder true to freeze it (its output can then be "
                            "cached), or a scale above 0 to train it")
        if not mult > 0:
            return  # 0 (or below, which apply_overrides names) with a frozen CNN: what freezing sets anyway
        if self.train_only == "adapters":
            raise XlsrError(f"model.feature_grad_mult {mult:g}: with train_only adapters the CNN is frozen, so its "
                            f"gradient is 0 whatever this says; leave --model.feature_grad_mult out")
        if self.freeze_feature_encoder:
            raise XlsrError(f"model.feature_grad_mult {mult:g}: the CNN is frozen (freeze_feature_encoder true), so "
                            f"its gradient is 0 whatever this says; give --freeze-feature-encoder false to train the "
                            f"CNN with it, or leave --model.feature_grad_mult out")

    def _check_adapter_settings(self) -> None:
        """XlsrError, before anything is loaded or written, for train_only adapters settings that cannot hold: a
        target_lang that cannot name the adapter file the run ends by writing, or a CNN asked to train."""
        if self.train_only != "adapters":
            return
        lang = self.target_lang
        if isinstance(lang, str) and not LANGUAGE_CODE.fullmatch(lang):
            # it names RUN/adapter/adapter.<lang>.safetensors; found only once training is over otherwise
            raise XlsrError(f"target_lang: {lang!r} cannot name the adapter file adapter.<lang>.safetensors (letters, "
                            f"digits, '_' and '-' only); MMS names languages by ISO 639-3 codes, e.g. 'ind'")
        if not self.freeze_feature_encoder:
            raise XlsrError("freeze_feature_encoder: false, but with train_only adapters only the adapters and the "
                            "CTC head train (the CNN stays frozen); leave --freeze-feature-encoder out")


def transformer_freeze_updates(cfg: FinetuneConfig) -> int:
    """Updates during which the Transformer stays frozen: `freeze_updates`, else `freeze_ratio` x `max_updates`."""
    # A ratio moves with max_updates, as the tri-stage phases do: resuming with another max_updates moves both.
    return int(cfg.freeze_updates) if cfg.freeze_updates is not None else round(cfg.freeze_ratio * cfg.max_updates)

