"""Self-supervised pretraining (wav2vec 2.0 / XLSR): the PretrainTask for the generic Trainer, and `pretrain()`.

Data: `DIR/<lang>/train.jsonl` (and optionally `DIR/<lang>/dev.jsonl` for validation) manifests; languages are
resampled per epoch with p_l ∝ (n_l/N)^α. Validation runs per language; `checkpoints/best` is the
lowest validation contrastive loss (wav2vec 2.0's model selection).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from xlsr.config import coerce_fields, config_to_dict, read_yaml, save_config
from xlsr.data.augment import parse_augment
from xlsr.errors import XlsrError
from xlsr.train.monitor import pretrain_health_warnings
from xlsr.train.schedules import gumbel_temperature
from xlsr.train.task import Task
from xlsr.train.trainer import Trainer, TrainerConfig

SAMPLE_RATE = 16000
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


@dataclass
class PretrainConfig(TrainerConfig):
    """Everything `xlsr pretrain` needs; any field can come from YAML or `--key value`."""

    data: str = ""  # folder with <lang>/train.jsonl (+ <lang>/dev.jsonl for validation)
    preset: str = "tiny"  # model size: tiny, base, large, xlsr-53, xls-r-300m, xls-r-1b, xls-r-2b
    model: dict = field(default_factory=dict)  # Wav2Vec2Config fields that override the preset
    init: str | None = None  # continue from these weights (ours, HF dir or fairseq .pt); fresh optimizer
    recipe: str | None = None  # the shipped recipe this config started from (informational)
    langs: list[str] | None = None  # languages to use (default: every folder in `data`)
    alpha: float = 0.5  # language upsampling: p_l ∝ (n_l/N)^α; 1 natural, 0 uniform
    train_split: str = "train"
    valid_split: str = "dev"  # the synth corpus and importers write train/dev/test
    max_tokens: int = 1_400_000  # audio samples per batch (B × crop)
    min_sample_size: int = 32_000  # skip utterances shorter than this (2 s)
    max_sample_size: int = 250_000  # crop length cap (15.6 s)
    crop_multiple: int = 0  # >0: crop lengths rounded down to a multiple (few shapes for torch.compile)
    normalize: bool | None = None  # per-utterance z-norm; None: as the model expects (normalize_waveform)
    epoch_size: int | None = None  # utterances drawn per epoch (default: as many as there are)
    num_workers: int = 2  # data-loading processes per rank
    max_bad_share: float = 0.05  # unreadable audio files tolerated per epoch (logged and skipped)
    valid_max_batches: int = 0  # per language; 0 = all
    augment: str = "none"  # on-the-fly effects on training audio, e.g. "default" or "noise=0.5:5-30" (docs/synth.md)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.warmup_ratio = float(self.warmup_ratio)
        if not 0.0 <= self.alpha <= 1.0:
            raise XlsrError(f"alpha: must be in [0, 1], got {self.alpha:g}")
        parse_augment(self.augment)  # a bad spec fails before the run folder is written


def recipe_path(name: str) -> Path:
    """The YAML file of a shipped recipe (`tiny-demo` → xlsr/recipes/tiny-demo.yaml)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise XlsrError(f"--recipe {name}: no such recipe (available: {', '.join(known) or 'none'})")
    return path


def resolve_model_config(cfg: PretrainConfig, base: dict | None = None):
    """The Wav2Vec2Config of this run: the preset (or `base`, e.g. from --init) + `cfg.model` overrides."""
    from xlsr.model import Wav2Vec2Config

    d = dict(base) if base is not None else Wav2Vec2Config.preset(cfg.preset).to_dict()
    d.update(coerce_fields(Wav2Vec2Config, cfg.model, where="model."))
    mcfg = Wav2Vec2Config.from_dict(d)
    mcfg.validate()
    return mcfg


class PretrainTask(Task):
    """Contrastive + diversity (+ feature penalty) loss of Wav2Vec2ForPreTraining on α-sampled batches."""

    best_metric = "contrastive_loss"
    summed_logs = ("sample_size", "utterances")

    def __init__(self, cfg: PretrainConfig):
        from xlsr.data.manifest import read_split

        self.cfg = cfg
        self.init_loaded = None
        if cfg.init:
            from xlsr.interop.load import load_pretrained

            self.init_loaded = load_pretrained(cfg.init)
        self.model_cfg = resolve_model_config(
            cfg, None if self.init_loaded is None else self.init_loaded.config.to_dict())
        self.normalize = self.model_cfg.normalize_waveform if cfg.normalize is None else cfg.normalize
        self.train_utts = read_split(cfg.data, cfg.train_split, cfg.langs)
        if not self.train_utts:
            raise XlsrError(f"{cfg.data}: the {cfg.train_split} manifests list no utterances")
        try:
            self.valid_utts = read_split(cfg.data, cfg.valid_split, cfg.langs)
        except XlsrError:
            self.valid_utts = []  # no validation split: train without validation
        self.generator: torch.Generator | None = None

    # --- Task interface ------------------------------------------------------------------------------
    def setup(self, info) -> None:
        from xlsr.data.batching import pretrain_loader

        super().setup(info)
        cfg = self.cfg
        self.loader = pretrain_loader(
            self.train_utts, max_tokens=cfg.max_tokens, min_sample_size=cfg.min_sample_size,
            max_sample_size=cfg.max_sample_size, alpha=cfg.alpha, seed=cfg.seed, rank=info.rank,
            world_size=info.world_size, num_workers=cfg.num_workers, normalize=self.normalize,
            epoch_size=cfg.epoch_size, max_bad_share=cfg.max_bad_share, augment=parse_augment(cfg.augment))
        # masks, negatives and Gumbel noise: one generator per rank, saved with the checkpoint
        self.generator = torch.Generator(device=info.device).manual_seed(cfg.seed * 1000 + info.rank)
        self.valid_generator = torch.Generator(device=info.device)

    def describe(self) -> str:
        from xlsr.data.sampling import weights_table

        n = len(self.train_utts)
        return (f"pretraining on {n} utterances in {self.cfg.data}; language sampling:\n"
                + weights_table(self.loader.sampler.hours, self.cfg.alpha))

    def build_model(self) -> nn.Module:
        from xlsr.model import Wav2Vec2ForPreTraining

        model = Wav2Vec2ForPreTraining(self.model_cfg)
        if self.init_loaded is not None:
            _load_init_weights(model, self.init_loaded.model, self.cfg.init)
        return model

    def train_batches(self, epoch: int, skip: int = 0):
        # The loader keeps its own (epoch, position), restored by load_state_dict on resume.
        if skip and self.loader.epoch == epoch and skip >= len(self.loader):
            return  # the checkpoint was taken right at the end of this epoch
        self.loader.set_epoch(epoch)
        yield from self.loader

    def on_update_start(self, model: nn.Module, update: int) -> dict:
        tau = gumbel_temperature(update, *self.model_cfg.latent_temp)
        model.set_temperature(tau)
        model.set_layerdrop_seed(self.cfg.seed * 1_000_003 + update)  # identical on every rank (DDP-safe)
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
        return out.loss, _logs(out, batch)

    def valid_sets(self) -> dict:
        from xlsr.data.batching import pretrain_loader

        if not self.valid_utts:
            return {}
        self.valid_generator.manual_seed(self.cfg.seed + 12345)  # same masks at every validation
        sets = {}
        for lang in sorted({u.lang for u in self.valid_utts}):
            utts = [u for u in self.valid_utts if u.lang == lang]
            try:
                loader = pretrain_loader(utts, max_tokens=self.cfg.max_tokens,
                                         min_sample_size=self.cfg.min_sample_size,
                                         max_sample_size=self.cfg.max_sample_size, alpha=1.0, seed=self.cfg.seed,
                                         num_workers=0, normalize=self.normalize)
            except XlsrError:
                continue  # every utterance of this language is too short
            batches = iter(loader)
            if self.cfg.valid_max_batches:
                import itertools

                batches = itertools.islice(batches, self.cfg.valid_max_batches)
            sets[lang] = batches
        return sets

    def valid_step(self, model: nn.Module, batch) -> dict:
        batch = self._crop(batch)
        out = model(batch.waveforms, batch.lengths, generator=self.valid_generator)
        logs = _logs(out, batch)
        logs["loss"] = float(out.loss) / logs["sample_size"] / math.log(2)
        return logs

    def batch_audio_seconds(self, batch) -> float:
        return float(batch.lengths.sum()) / SAMPLE_RATE

    def health_warnings(self, logs: dict, update: int) -> list[tuple[str, str]]:
        m = self.model_cfg
        return pretrain_health_warnings(logs, num_groups=m.num_codevector_groups,
                                        num_codevectors_per_group=m.num_codevectors_per_group,
                                        num_negatives=m.num_negatives, update=update,
                                        stuck_after=max(100, min(1000, self.cfg.max_updates // 3)))

    def save_model(self, directory: Path, model: nn.Module) -> None:
        from xlsr.interop.native import save_checkpoint

        save_checkpoint(directory, model, metadata={"task": "pretrain", "preset": self.cfg.preset,
                                                    "data": str(self.cfg.data), "alpha": self.cfg.alpha})

    def no_decay(self, name: str, param: nn.Parameter) -> bool:
        return param.ndim < 2 or any(k in name for k in ("mask_embedding", "codevectors", "norm"))

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "loader" in state:
            self.loader.load_state_dict(state["loader"])
        if "generator" in state:
            self.generator.set_state(state["generator"])


def _logs(out, batch) -> dict:
    """Per-frame values in fairseq's units: losses in bits per masked frame, perplexities, shares."""
    n = float(out.num_masked)
    ln2 = math.log(2)
    return {
        "sample_size": n,
        "utterances": float(batch.waveforms.shape[0]),
        "loss": float(out.loss.detach()) / n / ln2,
        "contrastive_loss": float(out.contrastive_loss.detach()) / n / ln2,
        "diversity_loss": float(out.diversity_loss.detach()) / n,
        "feature_penalty": float(out.feature_penalty.detach()) / n if out.feature_penalty.dim() == 0 else 0.0,
        "accuracy": float(out.accuracy),
        "code_perplexity": float(out.code_perplexity),
        "prob_perplexity": float(out.prob_perplexity),
        "neg_is_pos": float(out.neg_is_pos),
    }


def _load_init_weights(model: nn.Module, source: nn.Module, path: str) -> None:
    """Copy --init weights: a whole pretraining model, or just the encoder (quantizer starts fresh)."""
    from xlsr.errors import CheckpointError

    if type(source).__name__ == "Wav2Vec2ForPreTraining":
        model.load_state_dict(source.state_dict(), strict=True)
        return
    encoder = getattr(source, "wav2vec2", source)
    if type(encoder).__name__ != "Wav2Vec2Model":
        raise CheckpointError(f"{path}: --init needs a wav2vec 2.0 model, got {type(source).__name__}")
    model.wav2vec2.load_state_dict(encoder.state_dict(), strict=True)
    print(f"xlsr: warning: {path} has no quantizer; it starts from random weights", file=sys.stderr)


def check_run_folder(cfg: PretrainConfig) -> None:
    """Refuse a run folder whose config.yaml describes another model (nothing is written before this)."""
    from dataclasses import replace

    path = Path(cfg.out) / "config.yaml"
    if not path.is_file():
        return
    old = read_yaml(path)
    if "labels" in old or "data" not in old:  # `xlsr finetune` writes labels/train/dev, no data folder
        raise XlsrError(f"{cfg.out}: holds another kind of run (its config.yaml is no pretraining config, "
                        f"e.g. a fine-tuning run); choose another --out")
    for key in ("preset", "init"):
        if old.get(key) != getattr(cfg, key):
            raise XlsrError(f"{cfg.out}: holds a run with {key} {old.get(key)!r} (config.yaml), not "
                            f"{getattr(cfg, key)!r}; choose another --out")
    old_model = old.get("model") or {}
    if cfg.init is None:
        a = resolve_model_config(replace(cfg, model=dict(old_model))).to_dict()
        b = resolve_model_config(cfg).to_dict()
    else:
        a, b = old_model, cfg.model
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diff:
        k = diff[0]
        raise XlsrError(f"{cfg.out}: holds a run with another model ({k}: {a.get(k)!r} there, {b.get(k)!r} now); "
                        f"choose another --out")


def pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain (or resume) in `cfg.out`; returns the run folder."""
    import os

    if not cfg.out:
        raise XlsrError("out: no run folder given (--out RUN)")
    if not cfg.data:
        raise XlsrError("data: no data folder given (--data DIR)")
    if cfg.init is None:
        resolve_model_config(cfg)  # unknown preset / model key: fail before touching anything
    check_run_folder(cfg)
    task = PretrainTask(cfg)
    out = Path(cfg.out)
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    return Trainer(cfg, task, resolved_config=config_to_dict(cfg)).fit()
