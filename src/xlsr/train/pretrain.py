"""Self-supervised pretraining (wav2vec 2.0 / XLSR): the PretrainTask for the generic Trainer, and `pretrain()`.

Data: `DIR/<lang>/train.jsonl` (and optionally `DIR/<lang>/dev.jsonl` for validation) manifests; languages are
resampled per epoch with p_l ∝ (n_l/N)^α. Validation runs per language; `checkpoints/best` is the
lowest validation contrastive loss (wav2vec 2.0's model selection). Validation also measures the health of the
features (train/feature_monitor.py: effective dimension of the CNN features and of the context over frames pooled
from every language), once more before the first update as the reference a collapse is measured against, and,
with `probe_every`, a short linear probe's PER on labeled `probe_data` (train/probe_monitor.py).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from xlsr.config import coerce_fields, config_to_dict, read_yaml
from xlsr.data.augment import parse_augment
from xlsr.data.batching import pretrain_loader, record_decoding
from xlsr.data.decoder_pool import setting_timeout
from xlsr.data.decoding_record import DecodingRecord
from xlsr.data.index_cache import open_split
from xlsr.data.log_mel import log_mel, mel_filterbank
from xlsr.data.manifest import ManifestError, find_manifests
from xlsr.data.sampling import language_weights, trained_table, weights_table
from xlsr.data.shard_index import is_shard_folder, read_index
from xlsr.data.shard_loader import shard_pretrain_loader, shard_valid_loaders
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError
from xlsr.interop.huggingface import keeps_xlsr_settings
from xlsr.interop.init_model import (
    QUANTIZER_FIELDS,
    TRAINING_FIELDS,
    apply_overrides,
    load_init,
    load_pretraining_weights,
    presets_shaped_like,
    pretraining_fields_from,
)
from xlsr.interop.load import checkpoint_path, read_checkpoint_config
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.model.config import check_override_keys
from xlsr.rates import RECEPTIVE_FIELD_SAMPLES, SAMPLE_RATE
from xlsr.train.distributed import unwrap
from xlsr.train.feature_monitor import (
    CONTEXT_EFF_DIM,
    FEATURE_EFF_DIM,
    INIT_SUFFIX,
    INPUT_EFF_DIM,
    FrameSample,
    feature_health_logs,
)
from xlsr.train.monitor import SAMPLING_REPORT, TRAINED_KEY, loader_totals
from xlsr.train.pretrain_health import code_perplexity_ceiling, pretrain_health_warnings
from xlsr.train.probe_monitor import read_probe_slice, run_probe
from xlsr.train.recipes import recipe_path
from xlsr.train.release_memory import release_memory
from xlsr.train.run_folder import check_resumable, resume_checkpoint
from xlsr.train.schedules import gumbel_temperature
from xlsr.train.task import Task
from xlsr.train.trainer import Trainer, TrainerConfig
from xlsr.train.trainer_config import check_at_least

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig(TrainerConfig):
    """Everything `xlsr pretrain` needs; any field can come from YAML or `--key value`."""

    data: str = ""  # folder with <lang>/train.jsonl (+ <lang>/dev.jsonl for validation), or a shard folder
    preset: str = "tiny"  # model size: tiny, base, large, xlsr-53, xls-r-300m, xls-r-1b, xls-r-2b
    model: dict = field(default_factory=dict)  # Wav2Vec2Config fields that override the preset
    init: str | None = None  # continue from these weights (ours, HF dir or fairseq .pt); fresh optimizer
    recipe: str | None = None  # the shipped recipe this config started from (informational)
    langs: list[str] | None = None  # languages to use (default: every folder in --data)
    alpha: float = 0.5  # language upsampling: p_l ∝ (n_l/N)^α; 1 natural, 0 uniform
    train_split: str = "train"  # the training manifests' name: <data>/<lang>/<train_split>.jsonl (or a shard split)
    valid_split: str = "dev"  # the validation manifests' name: <data>/<lang>/<valid_split>.jsonl (synth, importers: dev)
    max_tokens: int = 1_400_000  # audio samples per batch of each process (B × crop); an update takes processes × update_freq batches
    max_utterances: int | None = None  # most utterances per batch (fairseq's dataset.batch_size); none: no limit
    min_sample_size: int = 32_000  # utterances shorter than this many samples are skipped (32 000: 2 s)
    max_sample_size: int = 250_000  # a batch is cropped to its shortest utterance, at most this many samples (15.6 s)
    crop_multiple: int = 0  # >0: crop lengths rounded down to a multiple (few shapes for torch.compile)
    normalize: bool | None = None  # per-utterance z-norm of the waveform; none: as the model expects (normalize_waveform)
    epoch_size: int | None = None  # utterances drawn per epoch (default: as many as there are)
    num_workers: int = 2  # data-loading processes per rank
    decode_timeout: float = 300.0  # seconds one file (manifest or shard utterance) may take to decode: a data worker past it is stopped and the file skipped; decoding in the training process (num_workers 0, validation), the run stops naming the file and the same command skips it; 0: none
    max_bad_share: float = 0.05  # share of bad manifest lines, and of unreadable audio files per epoch, logged and skipped; past it the run stops (one process: saved first)
    valid_max_batches: int = 0  # validation batches per language; 0 = all
    feature_health_frames: int = 8192  # validation frames (all languages pooled) for the feature-health statistics; 0 = off
    probe_every: int = 0  # >0: a short linear CTC probe at the first validation this many updates after the last
    probe_data: list[str] = field(default_factory=list)  # labeled manifest(s) the probe trains and scores on
    probe_labels: Literal["phones", "chars"] = "phones"  # phones: the manifests' `phones`; chars: their `text`
    probe_steps: int = 300  # Adam steps of each probe's linear heads
    augment: str = "none"  # on-the-fly effects on training audio, e.g. "default" or "noise=0.5:5-30" (docs/synth.md)
    shuffle_buffer: int = 1000  # a shard folder's --data: utterances (undecoded) shuffled before batching

    def __post_init__(self) -> None:
        super().__post_init__()
        self.warmup_ratio = float(self.warmup_ratio)
        if not 0.0 <= self.alpha <= 1.0:
            raise XlsrError(f"alpha: must be in [0, 1], got {self.alpha:g}")
        if self.langs is not None and not [lang for lang in self.langs if str(lang).strip()]:
            raise XlsrError("langs: give at least one language code (leave it out to use every language of --data)")
        check_at_least(self, max_tokens=1, min_sample_size=0, max_sample_size=RECEPTIVE_FIELD_SAMPLES, epoch_size=1,
                       num_workers=0, valid_max_batches=0, crop_multiple=0, shuffle_buffer=1, max_utterances=1)
        if not 0.0 <= self.max_bad_share <= 1.0:
            raise XlsrError(f"max_bad_share: must be between 0 and 1, got {self.max_bad_share:g}")
        setting_timeout(self.decode_timeout)
        if self.feature_health_frames < 0 or self.feature_health_frames == 1:
            raise XlsrError(f"feature_health_frames: must be 0 (off) or at least 2, got {self.feature_health_frames}")
        if self.probe_every < 0 or self.probe_steps < 1:
            raise XlsrError(f"probe_every, probe_steps: need probe_every >= 0 and probe_steps >= 1, got "
                            f"{self.probe_every} and {self.probe_steps}")
        if bool(self.probe_every) != bool(self.probe_data):
            raise XlsrError("probe_every, probe_data: the probe needs both (labeled manifests and how often), "
                            f"got probe_every={self.probe_every} and probe_data={self.probe_data or 'none'}")
        parse_augment(self.augment)  # a bad spec fails before the run folder is written
        check_override_keys(self.model)  # a typo in a YAML's model section, before any checkpoint is loaded


def resolve_model_config(cfg: PretrainConfig) -> Wav2Vec2Config:
    """The Wav2Vec2Config a run without --init builds: the preset + `cfg.model` overrides."""
    return apply_overrides(Wav2Vec2Config.preset(cfg.preset), cfg.model)


class PretrainTask(Task):
    """Contrastive + diversity (+ feature penalty) loss of Wav2Vec2ForPreTraining on α-sampled batches."""

    best_metric = "contrastive_loss"
    validation_data_keys = ("data", "valid_split", "langs", "valid_max_batches")
    summed_logs = ("sample_size", "utterances")
    progress_keys = ("loss", "accuracy", "code_perplexity", "temperature")

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        # the architecture: the preset's, or the --init checkpoint's (a resumed run: as its own checkpoint says, the
        # weights of --init unread)
        self.init = load_init(cfg.init, cfg.preset, resume_from=resume_checkpoint(cfg.out))
        base = self.init.config
        # a checkpoint without a quantizer (a CTC model) leaves its sizes free: it starts from random weights
        self.fresh_fields = QUANTIZER_FIELDS if self._init_without_quantizer() else ()
        if self.init.pretrained:
            self._check_recipe_sizes(base)
        if self.init.source_format == "hf" or (self.fresh_fields and self.init.source_format is not None
                                               and not self._started_with_init_fields(base)):
            base = self._preset_training_fields(base)
        elif self.init.source_format is not None and self.init.resumed_from is None:
            self._say_unused_preset(base)
        self.model_cfg = apply_overrides(base, cfg.model, from_checkpoint=self.init.pretrained, fresh=self.fresh_fields)
        self.normalize = self.model_cfg.normalize_waveform if cfg.normalize is None else cfg.normalize
        # a shard folder (SHARDS/index.json) is streamed (data/shard_stream.py); the utterance indexes stay empty
        self.shards = read_index(cfg.data) if is_shard_folder(cfg.data) else None
        empty = UtteranceIndex([])
        self.train_utts, self.valid_utts = self._read_manifests() if self.shards is None else (empty, empty)
        self.has_valid = bool(self.valid_utts) or (self.shards is not None and cfg.valid_split in self.shards.splits())
        if self.shards is not None and parse_augment(cfg.augment).enabled:
            raise XlsrError(f"augment: not available when --data is a shard folder ({cfg.data})")
        self.generator: torch.Generator | None = None
        frames = cfg.feature_health_frames
        self.health = FrameSample(frames, seed=cfg.seed) if frames and self.has_valid else None
        self.health_init: dict | None = None  # the feature-health figures at initialisation (kept on resume)
        self.mel_bank = mel_filterbank() if self.health is not None else None
        self.probe = None
        if cfg.probe_every:
            if not self.has_valid:
                raise XlsrError(f"probe_every: the probe runs at validation, but {cfg.data} has no "
                                f"{cfg.valid_split} manifests")
            self.probe = read_probe_slice(cfg.probe_data, cfg.probe_labels, conv_layers=self.model_cfg.conv_layers,
                                          normalize=self.normalize)
        self.last_probe: int | None = None  # the update of the last probe
        # build_model loaded a trained codebook from --init (never on a resume, which reads no weights of --init)
        self.quantizer_from_init = False
        # a fresh run validates before its first update: the reference a feature collapse is measured against
        self.validate_at_start = self.health is not None or self.probe is not None

    def _init_without_quantizer(self) -> bool:
        """Whether --init holds no quantizer (a CTC model, an encoder): as its weights were read, or, on a resume
        (which reads no weights of --init), as an xlsr checkpoint's config.json names its architecture. A resume
        from another format's --init reads its sizes from the run's own checkpoint, the ones the run took."""
        if self.init.resumed_from is None or self.init.source_format != "xlsr":
            return self.init.without_quantizer
        held = read_checkpoint_config(checkpoint_path(self.init.source)).get("architecture")
        return held != Wav2Vec2ForPreTraining.__name__

    def _started_with_init_fields(self, config: Wav2Vec2Config) -> bool:
        """Whether this is a resume of a run from an --init without a quantizer that an earlier xlsr started with the
        init's own training settings `config` (before the preset's replaced them): it resumes as it started."""
        if self.init.resumed_from is None:
            return False
        held = read_checkpoint_config(self.init.resumed_from).get("model") or {}
        mine = config.to_dict()
        return all(held.get(k) == mine[k] for k in TRAINING_FIELDS if k not in self.cfg.model)

    def _preset_training_fields(self, config: Wav2Vec2Config) -> Wav2Vec2Config:
        """A Hugging Face --init's dropouts, masks and objective settings are transformers' fine-tuning ones, and a
        fine-tuned --init's (a CTC model or encoder of any format: no quantizer) those it was fine-tuned with
        (feature_grad_mult 0 freezing the CNN, fine-tuning's masks and LayerDrop): the preset's are used instead
        (those set with --model.* win over both), and the run says which changed. A Hugging Face folder xlsr
        exported from a pretraining model keeps its own record of them in config.json, which `config` was read from:
        kept."""
        hf = self.init.source_format == "hf"
        if hf and not self.fresh_fields and keeps_xlsr_settings(checkpoint_path(self.init.source),
                                                                type(self.init.model).__name__):
            return config
        # the preset named, unless that is the default and the checkpoint is shaped like another one (an XLS-R
        # 300M folder with no --preset: the `large` family's settings, not `tiny`'s)
        preset, alike = self.cfg.preset, presets_shaped_like(config)
        if preset == PretrainConfig.preset and alike and preset not in alike:
            preset = alike[0]
        config, changed = pretraining_fields_from(config, preset)
        shown = {k: v for k, v in changed.items() if k not in self.cfg.model}
        if shown:
            listed = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in shown.items())
            shaped = "" if preset in alike else " (its sizes match no preset; --preset chooses whose settings)"
            what = ("a Hugging Face model, whose config.json holds settings for fine-tuning" if hf else
                    "a model without a quantizer (a CTC model or an encoder), whose training settings are those "
                    "it was last trained with (fine-tuning's, for a CTC model)")
            log.warning(f"{self.cfg.init} is {what}; pretraining takes the `{preset}` preset's instead{shaped}: "
                        f"{listed} (--model.<field> sets any of them)")
        return config

    def _say_unused_preset(self, config: Wav2Vec2Config) -> None:
        """An xlsr or fairseq --init holds its model and the settings it was trained with: --preset builds nothing.
        A preset other than the default that is not even shaped like the checkpoint (`--preset base` with a tiny
        model) is said to be unused, once, as the run starts."""
        preset, alike = self.cfg.preset, presets_shaped_like(config)
        if preset == PretrainConfig.preset or preset in alike:
            return
        shaped = f"shaped like {', '.join(alike)}" if alike else "sized like no preset"
        log.warning(f"preset {preset} is not used: the model and its training settings are those of {self.cfg.init} "
                    f"({shaped}); --model.<field> changes its training settings")

    def _check_recipe_sizes(self, config: Wav2Vec2Config) -> None:
        """A recipe's `model` section is for the model it builds from scratch: a size or layer kind of it that the
        --init checkpoint `config` does not have is refused naming the recipe (the user never typed that value)."""
        if not self.cfg.recipe:
            return
        try:
            section = read_yaml(recipe_path(self.cfg.recipe, "pretrain")).get("model") or {}
        except XlsrError:
            return  # a name only recorded (the field is informational), not a shipped recipe
        for key, value in section.items():
            if key in (*TRAINING_FIELDS, *self.fresh_fields) or key not in self.cfg.model:
                continue
            given = coerce_fields(Wav2Vec2Config, {key: self.cfg.model[key]}, where="model.")
            if given != coerce_fields(Wav2Vec2Config, {key: value}, where="model."):
                continue  # set otherwise by --config or --model.*: apply_overrides names it
            try:
                apply_overrides(config, given, from_checkpoint=True, fresh=self.fresh_fields)
            except XlsrError:
                held = _as_typed(getattr(config, key))
                raise XlsrError(f"model.{key}: --recipe {self.cfg.recipe} sets {_as_typed(value)} for the model it "
                                f"builds from scratch, the --init checkpoint {self.cfg.init} has {held}; give "
                                f"--model.{key} {held} to continue from it with the recipe's other settings") from None

    def _read_manifests(self) -> tuple[UtteranceIndex, UtteranceIndex]:
        # utterance indexes (data/utterance_index.py): built once per manifest, memory-mapped, shared by the workers
        cfg = self.cfg
        train = open_split(cfg.data, cfg.train_split, cfg.langs, max_bad_share=cfg.max_bad_share)
        if not len(train):
            raise XlsrError(f"{cfg.data}: the {cfg.train_split} manifests list no utterances")
        # Validation: on what the data has of valid_split. A folder without that split at all trains without
        # validation when the split is the default (said once); one asked for by name must exist. A broken
        # manifest of the split is an error as any other, never a silent run without validation.
        try:
            found = find_manifests(cfg.data, cfg.valid_split)
        except ManifestError:
            found = {}
        trained = list(cfg.langs) if cfg.langs else sorted(find_manifests(cfg.data, cfg.train_split))
        missing = [lang for lang in trained if lang not in found]
        langs = [lang for lang in cfg.langs if lang in found] if cfg.langs else list(found)
        if not langs:
            if cfg.valid_split != PretrainConfig.valid_split:
                raise XlsrError(f"valid_split: {cfg.data} has no {cfg.valid_split}.jsonl for "
                                f"{'any of ' if len(trained) > 1 else ''}{', '.join(trained)}")
            log.warning(f"{cfg.data} has no {cfg.valid_split} manifests: training without validation "
                  "(no best checkpoint, no feature-health checks)")
            return train, UtteranceIndex([])
        if missing:
            log.warning(f"{cfg.data}: no {cfg.valid_split}.jsonl for {', '.join(missing)}; validation "
                  f"covers {', '.join(langs)} only")
        return train, open_split(cfg.data, cfg.valid_split, langs, max_bad_share=cfg.max_bad_share)

    # --- Task interface ------------------------------------------------------------------------------
    def setup(self, info) -> None:
        super().setup(info)
        cfg = self.cfg
        # validation's data is decoded in this process, and so is training data with num_workers 0
        self.decoding_record = (DecodingRecord(cfg.out, info.rank, info.world_size,
                                               timeout=setting_timeout(cfg.decode_timeout)) if cfg.out else None)
        if self.shards is not None:
            self.loader = shard_pretrain_loader(
                cfg.data, cfg.train_split, langs=cfg.langs, max_tokens=cfg.max_tokens,
                min_sample_size=cfg.min_sample_size, max_sample_size=cfg.max_sample_size, alpha=cfg.alpha,
                seed=cfg.seed, rank=info.rank, world_size=info.world_size, num_workers=cfg.num_workers,
                normalize=self.normalize, max_bad_share=cfg.max_bad_share, epoch_size=cfg.epoch_size,
                shuffle_buffer=cfg.shuffle_buffer, max_utterances=cfg.max_utterances,
                decode_timeout=setting_timeout(cfg.decode_timeout))
        else:
            self.loader = pretrain_loader(
            self.train_utts, max_tokens=cfg.max_tokens, min_sample_size=cfg.min_sample_size,
            max_sample_size=cfg.max_sample_size, alpha=cfg.alpha, seed=cfg.seed, rank=info.rank,
            world_size=info.world_size, num_workers=cfg.num_workers, normalize=self.normalize,
            epoch_size=cfg.epoch_size, max_bad_share=cfg.max_bad_share, augment=parse_augment(cfg.augment),
            max_utterances=cfg.max_utterances, decode_timeout=setting_timeout(cfg.decode_timeout))
        record_decoding(self.loader, self.decoding_record)
        # the audio trained on per language, run totals in the train log (every rank logs every language's key)
        self.hours = dict(self.loader.hours if self.shards is not None else self.loader.sampler.hours)
        self.counted_logs = tuple(TRAINED_KEY + lang for lang in self.hours)
        self.summed_logs = (*PretrainTask.summed_logs, *self.counted_logs)
        # masks, negatives and Gumbel noise: one generator per rank, saved with the checkpoint
        self.generator = torch.Generator(device=info.device).manual_seed(cfg.seed * 1000 + info.rank)
        self.valid_generator = torch.Generator(device=info.device)
        self._dev_left_out: set[str] = set()  # dev languages without an utterance long enough (valid_sets)

    def describe(self) -> str:
        if self.shards is not None:  # lengths are known only as utterances are read: short ones drop out then
            n = sum(s.utterances for s in self.loader.spec.shards)
            hours, short = self.loader.hours, ""
        else:  # the utterances the loader kept (pretrain_loader drops those under min_sample_size)
            n, hours = len(self.loader.dataset), self.loader.sampler.hours
            skipped = len(self.train_utts) - n
            short = (f" ({skipped} of {len(self.train_utts)} skipped: shorter than min_sample_size="
                     f"{self.cfg.min_sample_size} samples)" if skipped else "")
        return (f"pretraining on {n} utterances in {self.cfg.data}{short}; language sampling:\n"
                + weights_table(hours, self.cfg.alpha) + self._continuing_note())

    def reports(self) -> dict[str, dict]:
        """RUN/sampling.json: each language's hours and the share p_l of the audio that sampling at α aims at (what
        `xlsr plot` draws the shares trained on against)."""
        p = language_weights(self.hours, self.cfg.alpha)
        return {SAMPLING_REPORT: {"alpha": self.cfg.alpha,
                                  "languages": {lang: {"hours": h, "p": p[lang]} for lang, h in self.hours.items()}}}

    def _continuing_note(self) -> str:
        """A trained codebook meets the schedules of a new one (README: continuing pretraining); said once, at the
        start of the run, with the setting that trains the codebook at the temperature it ended at. The codes drawn do
        not depend on the temperature (the argmax of logits plus Gumbel noise); their straight-through gradient does."""
        tau_max, tau_min, _ = self.model_cfg.latent_temp
        if not self.quantizer_from_init or tau_max <= tau_min:
            return ""
        return (f"\ncontinuing pretraining from {self.cfg.init} with a fresh optimizer; the schedules start at "
                f"update 0, the learning rate's and the Gumbel temperature's (from {tau_max:g} down to {tau_min:g}, as "
                f"for a new codebook): --model.latent_temp {tau_min:g},{tau_min:g},1 trains the codebook at the "
                "temperature it ended at (the codes drawn are the same at any temperature; a higher one spreads "
                "their gradient over more entries)")

    def build_model(self) -> nn.Module:
        """Wav2Vec2ForPreTraining with `--init`'s weights, which the first build takes and lets go of: a later one
        (FSDP's saving copy) starts random."""
        model = Wav2Vec2ForPreTraining(self.model_cfg)
        if self.init.resumed_from is not None:
            check_resumable(self.cfg.out, self.init.resumed_from)  # the Trainer loads the run's own weights
        if self.init.model is None:
            return model
        self.quantizer_from_init = load_pretraining_weights(model, self.init)
        self.init.release_weights()  # the run's model holds them; a later build (FSDP's saving copy) gets the run's
        if not self.quantizer_from_init:
            log.warning(f"{self.cfg.init} has no quantizer (not a pretraining checkpoint): its encoder is "
                  f"loaded, the quantizer and the final projections start from random weights")
        return model

    def train_batches(self, epoch: int, skip: int = 0):
        # The loader keeps its own (epoch, position), restored by load_state_dict on resume; whether the epoch is
        # over is its call, not the Trainer's `skip`: a manifest loader's position also counts planned batches that
        # yielded nothing (every file unreadable or too short), so `skip` can fall short of a finished epoch's
        # length, and set_epoch would then replay the epoch. (A shard loader counts yielded batches only.)
        if self.loader.epoch == epoch and self.loader.position >= len(self.loader):
            return  # the checkpoint was taken right at the end of this epoch
        self.loader.set_epoch(epoch)
        yield from self.loader

    def data_totals(self) -> dict[str, int]:
        return loader_totals(self.loader)

    def on_update_start(self, model: nn.Module, update: int) -> dict:
        tau = gumbel_temperature(update, *self.model_cfg.latent_temp)
        model.set_temperature(tau)
        return {"temperature": tau}

    def _crop(self, batch):
        m = self.cfg.crop_multiple
        if m > 0 and batch.waveforms.shape[1] > m:
            s = batch.waveforms.shape[1] // m * m
            batch.waveforms = batch.waveforms[:, :s]
            batch.lengths = batch.lengths.clamp(max=s)
        return batch

    def train_step(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        batch = self._crop(batch)
        out = model(batch.waveforms, batch.lengths, generator=self.generator)
        return out.loss, {**_logs(out, batch, self.model_cfg), **self._trained_seconds(batch)}

    def _trained_seconds(self, batch) -> dict[str, float]:
        """The batch's audio by language, in seconds (its rows are crops of one length: no device sync to count)."""
        seconds = dict.fromkeys(self.counted_logs, 0.0)  # every key on every rank: they are summed across ranks
        for lang in batch.langs:
            seconds[TRAINED_KEY + lang] += batch.waveforms.shape[1] / SAMPLE_RATE
        return seconds

    def closing_report(self, totals: dict[str, float], since: int) -> str:
        trained = {k[len(TRAINED_KEY):]: v for k, v in totals.items() if k.startswith(TRAINED_KEY)}
        if not trained:
            return ""
        updates = f" since update {since}" if since else ""
        return (f"audio trained on{updates}, by language (crops, as drawn; p is the share sampling aims at):\n"
                + trained_table(self.hours, self.cfg.alpha, trained))

    def _dev_batches(self, lang: str, loader):
        """The batches of one validation language; a data error (too many bad files) says it was the dev set's."""
        try:
            yield from loader
        except XlsrError as exc:
            raise XlsrError(f"validation set {lang!r} ({self.cfg.valid_split} split of {self.cfg.data}): {exc}") \
                from None

    def valid_sets(self) -> dict:
        if not self.has_valid:
            return {}
        self.valid_generator.manual_seed(self.cfg.seed + 12345)  # same masks at every validation
        sets = {} if self.shards is None else shard_valid_loaders(
            self.cfg.data, self.cfg.valid_split, self.cfg.langs, max_tokens=self.cfg.max_tokens,
            min_sample_size=self.cfg.min_sample_size, max_sample_size=self.cfg.max_sample_size, seed=self.cfg.seed,
            normalize=self.normalize, max_utterances=self.cfg.max_utterances, max_bad_share=self.cfg.max_bad_share)
        for loader in sets.values():
            record_decoding(loader, getattr(self, "decoding_record", None))
        for lang, utts in self.valid_utts.by_language().items():  # empty for a shard folder
            try:
                loader = pretrain_loader(utts, max_tokens=self.cfg.max_tokens,
                                         min_sample_size=self.cfg.min_sample_size,
                                         max_sample_size=self.cfg.max_sample_size, alpha=1.0, seed=self.cfg.seed,
                                         num_workers=0, normalize=self.normalize,
                                         max_utterances=self.cfg.max_utterances,
                                         max_bad_share=self.cfg.max_bad_share)
                record_decoding(loader, getattr(self, "decoding_record", None))
            except XlsrError as exc:  # every utterance of this language is too short: said at the first validation
                if lang not in self._dev_left_out:
                    self._dev_left_out.add(lang)
                    log.warning("validation leaves out %s: %s", lang, exc)
                continue
            batches = self._dev_batches(lang, loader)
            if self.cfg.valid_max_batches:
                batches = itertools.islice(batches, self.cfg.valid_max_batches)
            sets[lang] = batches
        if self.shards is not None and self.cfg.valid_max_batches:
            sets = {lang: itertools.islice(iter(b), self.cfg.valid_max_batches) for lang, b in sets.items()}
        sets = {lang: self._dev_batches(lang, b) if self.shards is not None else b for lang, b in sets.items()}
        if self.health is not None:
            self.health.reset(groups=len(sets))  # and the same frames sampled
        return sets

    def valid_step(self, model: nn.Module, batch) -> dict:
        batch = self._crop(batch)
        out = model(batch.waveforms, batch.lengths, generator=self.valid_generator)
        logs = _logs(out, batch, self.model_cfg)
        logs["loss"] = float(out.loss) / logs["sample_size"] / math.log(2)
        lang = batch.langs[0]  # a validation set is one language
        if self.health is not None and self.health.wants(lang):
            # A forward without masks: the features and context a downstream task would see.
            enc = unwrap(model).wav2vec2(batch.waveforms, batch.lengths)
            views, keep = [enc.extract_features, enc.last_hidden_state], enc.frame_lengths.tolist()
            if self.health_init is None:  # the input never changes: its log-mel is measured with the reference
                # The same windows as the standard CNN's frames (400 samples every 320); another CNN's frames are
                # paired in order, up to the shorter of the two counts.
                mels = [log_mel(w[:n], bank=self.mel_bank) for w, n in zip(batch.waveforms, batch.lengths.tolist())]
                keep = [min(m.shape[0], t) for m, t in zip(mels, keep)]
                views.append(mels)
            self.health.add(*(torch.cat([v[:k] for v, k in zip(view, keep)]) for view in views), group=lang)
        return logs

    def valid_end(self, model: nn.Module, update: int) -> dict:
        logs = feature_health_logs(*self.health.views) if self.health is not None and self.health.views else {}
        if logs and self.health_init is None:
            self.health_init = {"update": update, **logs}
            if update > 0:  # resumed from a run that did not measure it, or turned on late
                log.warning(f"feature health has no value at initialisation; update {update}'s values "
                      f"are the reference")
        if logs:
            logs.update({k + INIT_SUFFIX: self.health_init[k] for k in (FEATURE_EFF_DIM, CONTEXT_EFF_DIM)})
            if INPUT_EFF_DIM in self.health_init:
                logs[INPUT_EFF_DIM] = self.health_init[INPUT_EFF_DIM]
        if self.probe is not None and (self.last_probe is None or update - self.last_probe >= self.cfg.probe_every):
            logs.update(run_probe(unwrap(model).wav2vec2, self.probe, steps=self.cfg.probe_steps, seed=self.cfg.seed,
                                  device=self.info.device))
            self.last_probe = update
        return logs

    def batch_size_option(self) -> str:
        return f"--max-tokens (now {self.cfg.max_tokens})"

    def health_warnings(self, logs: dict, update: int) -> list[tuple[str, str]]:
        m = self.model_cfg
        return pretrain_health_warnings(logs, num_groups=m.num_codevector_groups,
                                        num_codevectors_per_group=m.num_codevectors_per_group,
                                        num_distractors=m.num_negatives + m.cross_sample_negatives, update=update,
                                        stuck_after=max(100, min(1000, self.cfg.max_updates // 3)))

    def save_model(self, directory: Path, model: nn.Module) -> None:
        save_checkpoint(directory, model, metadata={"task": "pretrain", "preset": self.cfg.preset,
                                                    "data": str(self.cfg.data), "alpha": self.cfg.alpha})

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict(), "generator": self.generator.get_state(),
                "health_init": self.health_init, "last_probe": self.last_probe}

    def load_state_dict(self, state: dict) -> None:
        if "loader" in state:
            self.loader.load_state_dict(state["loader"])
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.health_init = state.get("health_init")
        self.last_probe = state.get("last_probe")

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)  # masks, negatives and Gumbel noise of this rank


def _as_typed(value) -> str:
    """A setting's value as the command line takes it (true/false for a bool)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _logs(out, batch, model_cfg: Wav2Vec2Config) -> dict:
    """Per-frame values in fairseq's units: the loss and its terms in bits per masked frame (loss = contrastive_loss
    + diversity_loss, + feature_penalty when its weight is not 0; fairseq's loss_0, loss_1, loss_2), perplexities,
    shares, and code_perplexity_max: the most code_perplexity this batch's masked frames can show (the health check's
    ceiling; the Trainer averages both alike over micro-batches and updates, while it sums sample_size)."""
    n = float(out.num_masked)
    ln2 = math.log(2)
    return {
        "sample_size": n,
        "utterances": float(batch.waveforms.shape[0]),
        "loss": float(out.loss.detach()) / n / ln2,
        "contrastive_loss": float(out.contrastive_loss.detach()) / n / ln2,
        "diversity_loss": float(out.diversity_loss.detach()) / n / ln2,
        "feature_penalty": float(out.feature_penalty.detach()) / n / ln2 if out.feature_penalty.dim() == 0 else 0.0,
        "accuracy": float(out.accuracy),
        "code_perplexity": float(out.code_perplexity),
        "code_perplexity_max": code_perplexity_ceiling(model_cfg.num_codevector_groups,
                                                       model_cfg.num_codevectors_per_group, n),
        "prob_perplexity": float(out.prob_perplexity),
        "neg_is_pos": float(out.neg_is_pos),
    }


def pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain (or resume) in `cfg.out`; returns the run folder."""
    if not cfg.out:
        raise XlsrError("out: no run folder given (--out RUN)")
    if not cfg.data:
        raise XlsrError("data: no data folder given (--data DIR)")
    run_dir = Trainer(cfg.trainer_config(), lambda: PretrainTask(cfg), resolved_config=config_to_dict(cfg)).fit()
    release_memory()  # the run's model, optimizer and batches are garbage now; give their pages back
    return run_dir
