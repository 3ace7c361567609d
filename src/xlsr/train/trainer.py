"""One training loop for every Task: schedules, precision, accumulation, DDP/FSDP, clipping, NaN skipping,
logging, validation, atomic checkpoints and exact resume.

Read `Trainer._train_one_update` top to bottom: it is the whole recipe, one mechanism per line.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from xlsr.data.audio import SAMPLE_RATE
from xlsr.errors import CheckpointError, XlsrError
from xlsr.train import checkpoint as ckpt
from xlsr.train import distributed as dist_util
from xlsr.train.monitor import Monitor
from xlsr.train.optimizer import build_optimizer
from xlsr.train.schedules import learning_rate
from xlsr.train.task import Task


class TrainingError(XlsrError):
    """Training cannot go on (too many non-finite steps in a row); the message says what to change."""


@dataclass
class TrainerConfig:
    """Settings of the generic loop (shared by pretraining and fine-tuning)."""

    out: str = ""  # run folder; re-running on it resumes
    max_updates: int = 1000  # optimizer steps
    # learning rate
    lr: float = 5e-4  # peak learning rate
    lr_schedule: Literal["polynomial", "tri_stage", "constant"] = "polynomial"
    warmup_updates: int | None = None  # polynomial/constant: None -> warmup_ratio * max_updates
    warmup_ratio: float = 0.08  # wav2vec 2.0: first 8% of updates
    end_lr: float = 0.0  # polynomial: rate at max_updates
    lr_power: float = 1.0  # polynomial: 1 = linear decay
    phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5)  # tri_stage: warmup, hold, decay
    init_lr_scale: float = 0.01  # tri_stage: warmup starts at lr * this
    final_lr_scale: float = 0.05  # tri_stage: decay ends at lr * this
    # optimizer (Adam with decoupled weight decay on weights only)
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    weight_decay: float = 0.01
    clip_norm: float = 10.0  # max global gradient norm; 0 = no clipping
    update_freq: int = 1  # gradient accumulation: micro-batches per update
    # numerics and speed
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False  # torch.compile the model (use bucketed crop lengths)
    activation_checkpointing: bool = False  # recompute CNN layers and blocks in backward: less memory, ~1/3 more compute
    device: str = "auto"  # auto | cpu | cuda
    distributed: Literal["ddp", "fsdp"] = "ddp"  # used when launched by torchrun with >1 process
    seed: int = 1
    max_consecutive_nan: int = 10  # stop after this many non-finite steps in a row
    # logs and checkpoints
    log_every: int = 10
    valid_every: int = 1000  # 0 = only at the end
    save_every: int = 1000  # 0 = only at the end (and on SIGINT/SIGTERM)
    keep_last: int = 2  # update checkpoints kept besides `best`
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for key, low in (("max_updates", 0), ("update_freq", 1), ("log_every", 1), ("valid_every", 0),
                         ("save_every", 0), ("keep_last", 0), ("max_consecutive_nan", 1)):
            if getattr(self, key) < low:
                raise XlsrError(f"{key}: must be at least {low}, got {getattr(self, key)}")
        if self.lr < 0 or self.clip_norm < 0:
            raise XlsrError(f"lr and clip_norm: must not be negative, got lr={self.lr:g}, clip_norm={self.clip_norm:g}")


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError: 2.5+


@contextmanager
def _out_of_memory_advice(trainer: Trainer, batch):
    """Turn an out-of-memory error in a training step into one line that says what to change (the last
    checkpoint is kept: the same command with smaller batches resumes from it)."""
    try:
        yield
    except (_OUT_OF_MEMORY, RuntimeError) as exc:
        if not isinstance(exc, _OUT_OF_MEMORY) and "can't allocate memory" not in str(exc):  # the CPU allocator's
            raise
        cfg = trainer.cfg
        shape = "x".join(str(n) for n in getattr(batch, "waveforms", torch.empty(0)).shape) or "?"
        tips = []
        if getattr(cfg, "max_tokens", None):
            tips.append(f"lower --max-tokens (now {cfg.max_tokens}) and raise --update-freq (now {cfg.update_freq}) "
                        f"to keep the batch size")
        if not cfg.activation_checkpointing:
            tips.append("add --activation-checkpointing true")
        if cfg.precision == "fp32" and trainer.device.type == "cuda":
            tips.append("use --precision bf16")
        raise TrainingError(f"{trainer.run_dir}: out of {trainer.device.type} memory at update {trainer.update} "
                            f"on a batch of {shape} samples; {'; '.join(tips) or 'use smaller batches'}") from None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs a Task to `cfg.max_updates` in the run folder `cfg.out`, resuming from its last checkpoint."""

    def __init__(self, cfg: TrainerConfig, task: Task, resolved_config: dict | None = None):
        self.cfg = cfg
        self.task = task
        self.resolved_config = resolved_config or {}
        self.run_dir = Path(cfg.out)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.update = 0  # optimizer steps done
        self.epoch = 0
        self.batches_in_epoch = 0  # micro-batches of `epoch` already consumed
        self.best: float | None = None
        self.nan_skipped = 0
        self.consecutive_nan = 0
        self._stop_requested = False
        self._last_saved: int | None = None
        self._postfix: dict = {}

    # --- setup -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        self.info = dist_util.init_distributed(cfg.device)
        self.device = self.info.device
        self.task.setup(self.info)
        seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
        model = self.task.build_model()
        self.resume_dir = None
        if self.ckpt_root.is_dir():
            if self.info.is_main:
                ckpt.clean_staging(self.ckpt_root)
            dist_util.barrier(self.info)
            self.resume_dir = ckpt.find_resume_dir(self.ckpt_root)
        trainer_state = None
        if self.resume_dir is not None:
            self._check_same_model(model, self.resume_dir)
            trainer_state = ckpt.load_trainer_state(self.resume_dir)
            weights = ckpt.load_model_weights(self.resume_dir)
            try:
                model.load_state_dict(weights, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{self.resume_dir}: weights do not fit the model "
                                      f"({str(exc).splitlines()[0][:120]})") from None
        if cfg.activation_checkpointing:
            model.set_activation_checkpointing(True)
        self.model = model.to(self.device)
        self.fsdp = self.info.distributed and cfg.distributed == "fsdp"
        net = torch.compile(self.model) if cfg.compile else self.model
        self.net = dist_util.wrap_model(net, self.info, cfg.distributed,
                                        unused_parameters=self.task.has_unused_parameters)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.net, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        if trainer_state is not None:
            self._load_trainer_state(trainer_state)
        else:
            seed_everything(cfg.seed + 1000 * self.info.rank)  # ranks draw different masks/dropout
        self.monitor = Monitor(self.run_dir, enabled=self.info.is_main, total_updates=cfg.max_updates,
                               initial_update=self.update, show_progress=cfg.progress,
                               tensorboard=cfg.tensorboard)
        if self.task.describe():
            self.monitor.info(self.task.describe())
        if getattr(self, "monitor_note", None):
            self.monitor.warn("resume", self.monitor_note, self.update)
        if trainer_state is not None:
            self.monitor.info(f"xlsr: resuming {self.run_dir} from update {self.update} ({self.resume_dir.name})")

    def _check_same_model(self, model: nn.Module, resume_dir: Path) -> None:
        """Refuse a run folder whose checkpoint holds another architecture or model config."""
        saved = ckpt.read_model_config(resume_dir)
        arch = type(model).__name__
        if saved.get("architecture") != arch:
            raise CheckpointError(f"{self.run_dir}: holds a {saved.get('architecture')} checkpoint, not a "
                                  f"{arch}; choose another --out")
        current = json.loads(json.dumps(model.config.to_dict(), default=list))
        diff = [k for k in sorted(set(current) | set(saved.get("model", {})))
                if current.get(k) != saved.get("model", {}).get(k)]
        if diff:
            k = diff[0]
            raise CheckpointError(f"{self.run_dir}: holds a model with another config ({k}: "
                                  f"{saved.get('model', {}).get(k)!r} there, {current.get(k)!r} now); "
                                  f"choose another --out")

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train to max_updates (or until SIGINT/SIGTERM), checkpointing along the way; returns the run folder."""
        self._setup()
        handlers = self._install_signal_handlers()
        try:
            self._loop()
        finally:
            self._restore_signal_handlers(handlers)
            self.monitor.close()
            dist_util.shutdown(self.info)
        return self.run_dir

    def _loop(self) -> None:
        cfg = self.cfg
        batches = self._batch_stream()
        window = _Window()
        while self.update < cfg.max_updates and not self._stop_requested:
            t0 = time.perf_counter()
            micro = [next(batches) for _ in range(cfg.update_freq)]
            window.data_wait += time.perf_counter() - t0
            logs = self._train_one_update(micro)
            window.add(logs, time.perf_counter() - t0, sum(self.task.batch_samples(b) for b in micro) / SAMPLE_RATE)
            if logs.get("skipped"):
                continue
            self.monitor.advance(1, self._postfix)
            if self.update % cfg.log_every == 0 or self.update == cfg.max_updates:
                self._log_train(window.summary(), window)
                window = _Window()
            if cfg.valid_every and self.update % cfg.valid_every == 0 and self.update < cfg.max_updates:
                self._validate()
            if cfg.save_every and self.update % cfg.save_every == 0 and self.update < cfg.max_updates:
                self._save()
        if self.update >= cfg.max_updates:
            self._validate()
        self._save()
        if self._stop_requested:
            self.monitor.info(f"xlsr: stopped at update {self.update}; checkpoint saved in {self.ckpt_root / 'last'}; "
                              f"run the same command again to resume")

    def _batch_stream(self):
        """Micro-batches forever, epoch after epoch, starting where the checkpoint left off."""
        while True:
            for batch in self.task.train_batches(self.epoch, skip=self.batches_in_epoch):
                self.batches_in_epoch += 1
                yield self.task.batch_to_device(batch, self.device)
            if self.batches_in_epoch == 0:
                if self.info.distributed:  # batches are dealt out whole, equally: fewer than W means none here
                    raise XlsrError(f"training data: an epoch gave rank {self.info.rank} no batches; the data makes "
                                    f"fewer batches than the {self.info.world_size} processes (lower --max-tokens, "
                                    f"add data or use fewer processes)")
                raise XlsrError("training data: an epoch produced no batches (all utterances filtered out?)")
            self.epoch += 1
            self.batches_in_epoch = 0

    def _train_one_update(self, micro: list) -> dict:
        cfg, task = self.cfg, self.task
        # 1. schedules, the same on all ranks: learning rate, LayerDrop seed, the task's (Gumbel temperature, freezing)
        lr = learning_rate(cfg, self.update)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if hasattr(self.model, "set_layerdrop_seed"):  # the same LayerDrop draws on every rank (DDP/FSDP-safe)
            self.model.set_layerdrop_seed(cfg.seed * 1_000_003 + self.update)
        extra = task.on_update_start(self.model, self.update)
        self.net.train()
        # 2. forward/backward over micro-batches; DDP syncs gradients only on the last one
        logs_sum: dict[str, float] = {}
        sample_size, nonfinite = 0.0, 0
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = nullcontext() if last or not isinstance(self.net, nn.parallel.DistributedDataParallel) \
                else self.net.no_sync()
            with sync, _out_of_memory_advice(self, batch):
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    loss, logs = task.train_step(self.net, batch)
                nonfinite += int(not torch.isfinite(loss.detach()).all())
                self.scaler.scale(loss).backward()
            n = float(logs.get("sample_size", 1))
            sample_size += n
            _accumulate(logs_sum, logs, n, task.summed_logs)
        # 3. one all-reduce for: total sample size, non-finite losses on any rank, a stop request on any rank
        flags = torch.tensor([sample_size, nonfinite, float(self._stop_requested)], dtype=torch.float64)
        dist_util.all_reduce_sum(flags, self.info)
        total_size, any_nonfinite, stop = flags.tolist()
        self._stop_requested = stop > 0
        # 4. normalize: DDP averaged over ranks; we want the sum over every micro-batch / total sample size
        self.scaler.unscale_(self.optimizer)
        factor = self.info.world_size / max(total_size, 1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(factor)
        # 5. clip (the returned norm is the norm before clipping)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_norm if cfg.clip_norm > 0 else math.inf)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        # 6. skip a non-finite step; with fp16, overflowing gradients alone only lower the loss scale
        if any_nonfinite or not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
                if not any_nonfinite:
                    return {"skipped": True, "overflow": True}
            return self._skip_step(any_nonfinite, grad_norm)
        self.consecutive_nan = 0
        # 7. optimizer step
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.update += 1
        out = {k: v / sample_size for k, v in logs_sum.items() if k not in task.summed_logs}
        out.update({k: logs_sum[k] for k in task.summed_logs if k in logs_sum})
        out.update(extra)
        out.update(lr=lr, grad_norm=grad_norm)
        if self.scaler.is_enabled():
            out["loss_scale"] = float(self.scaler.get_scale())
        return out

    def _skip_step(self, any_nonfinite: float, grad_norm: float) -> dict:
        self.nan_skipped += 1
        self.consecutive_nan += 1
        what = "loss" if any_nonfinite else "gradient norm"
        self.monitor.warn("nonfinite", f"non-finite {what}; step skipped ({self.nan_skipped} so far, "
                          f"{self.consecutive_nan} in a row)", self.update, force=True)
        if self.consecutive_nan >= self.cfg.max_consecutive_nan:
            raise TrainingError(f"{self.run_dir}: {self.consecutive_nan} non-finite steps in a row at update "
                                f"{self.update}; lower lr (now {self.cfg.lr:g}), use bf16 instead of fp16, or "
                                f"resume from {self.ckpt_root / 'last'} with a smaller clip_norm")
        return {"skipped": True}

    # --- logs and validation ------------------------------------------------------------------------
    def _log_train(self, logs: dict, window: _Window) -> None:
        logs["nan_skipped"] = self.nan_skipped
        logs["audio_s_per_s"] = window.audio_seconds / max(window.seconds, 1e-9)
        logs["data_wait_share"] = window.data_wait / max(window.seconds, 1e-9)
        logs["seconds_per_update"] = window.seconds / max(window.count, 1)
        logs["epoch"] = self.epoch
        self.monitor.log("train", self.update, logs)
        for kind, message in self.task.health_warnings(logs, self.update):
            self.monitor.warn(kind, message, self.update)
        self._postfix = {k: logs[k] for k in (*self.task.progress_keys, "lr", "audio_s_per_s") if k in logs}

    @torch.no_grad()
    def _validate(self) -> None:
        sets = self.task.valid_sets()
        if not sets:
            return
        model = self.net if self.fsdp else self.model
        model.eval()
        totals: dict[str, float] = {}
        total_size = 0.0
        for name, batches in sets.items():
            acc: dict[str, float] = {}
            size = 0.0
            for batch in batches:
                batch = self.task.batch_to_device(batch, self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    logs = self.task.valid_step(model, batch)
                n = float(logs.get("sample_size", 1))
                size += n
                _accumulate(acc, logs, n, self.task.summed_logs)
            if size == 0:
                continue
            _accumulate(totals, {k: v / size for k, v in acc.items() if k not in self.task.summed_logs},
                        size, ())
            total_size += size
            self.monitor.log(f"valid_{name}", self.update,
                             {k: v / size for k, v in acc.items() if k not in self.task.summed_logs})
        if self.fsdp:
            dist_util.reshard(model)  # a forward without backward leaves the root unsharded
        if total_size == 0:
            return
        overall = {k: v / total_size for k, v in totals.items()}
        overall["sample_size"] = total_size
        self.monitor.log("valid", self.update, overall)
        for kind, message in self.task.health_warnings(overall, self.update):
            self.monitor.warn(f"valid_{kind}", "validation: " + message, self.update)
        metric = overall.get(self.task.best_metric)
        if metric is not None and math.isfinite(metric):
            better = self.best is None or (metric < self.best if self.task.best_lower_is_better else metric > self.best)
            if better:
                self.best = metric
                self._save(best=True)

    # --- checkpoints ----------------------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        rng = dist_util.all_gather_objects(ckpt.capture_rng_state(), self.info)
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            optim = get_optimizer_state_dict(self.net, self.optimizer,
                                             options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            optim = self.optimizer.state_dict()
        return {
            "version": 1,
            "update": self.update,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "best": self.best,
            "nan_skipped": self.nan_skipped,
            "world_size": self.info.world_size,
            "optimizer": optim,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng,
            "task": dist_util.all_gather_objects(self.task.state_dict(), self.info),  # one per rank
            "config": json.loads(json.dumps(self.resolved_config, default=str)),
        }

    def _load_trainer_state(self, state: dict) -> None:
        self.update = int(state["update"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.best = state.get("best")
        self.nan_skipped = int(state.get("nan_skipped", 0))
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.net, self.optimizer, state["optimizer"],
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        rng, tasks = state.get("rng") or [], state.get("task") or [{}]
        if len(rng) == self.info.world_size and len(tasks) == self.info.world_size:
            ckpt.restore_rng_state(rng[self.info.rank])
            self.task.load_state_dict(tasks[self.info.rank])
        else:  # another world size: exact continuation is impossible, keep going with fresh seeds
            self.monitor_note = f"world size changed ({len(rng)} -> {self.info.world_size}); resume is not exact"
            self.task.load_state_dict(tasks[0])
            seed_everything(self.cfg.seed + 1000 * self.info.rank + self.update)
        self._last_saved = self.update

    def _model_for_saving(self) -> nn.Module | None:
        """The full model on rank 0 (gathered from shards under FSDP); None on other ranks."""
        if not self.fsdp:
            return self.model if self.info.is_main else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.info.is_main:
            return None
        if getattr(self, "_cpu_copy", None) is None:
            self._cpu_copy = self.task.build_model()
        self._cpu_copy.load_state_dict(full)
        return self._cpu_copy

    def _save(self, best: bool = False) -> None:
        """Write update_N (unless already written), point `last` (and `best`), prune old ones."""
        if self._last_saved == self.update and not best and (self.ckpt_root / "last").exists():
            return
        state = self._trainer_state()  # collective: every rank takes part
        model = self._model_for_saving()
        if self.info.is_main:
            target = ckpt.write_checkpoint(self.ckpt_root, self.update,
                                           lambda d: self.task.save_model(d, model), state)
            ckpt.point_link(self.ckpt_root, "last", target)
            if best:
                ckpt.point_link(self.ckpt_root, "best", target)
            ckpt.prune_checkpoints(self.ckpt_root, self.cfg.keep_last)
        self._last_saved = self.update
        dist_util.barrier(self.info)

    # --- signals --------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict:
        old = {}

        def request_stop(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self._stop_requested = True
            self.monitor.info(f"xlsr: {signal.Signals(signum).name} received; finishing this update and saving")

        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class _Window:
    """Running sums between two log lines."""

    def __init__(self):
        self.logs: dict[str, float] = {}
        self.count = 0
        self.seconds = 0.0
        self.seconds_list: list[float] = []
        self.data_wait = 0.0
        self.audio_seconds = 0.0

    def add(self, logs: dict, seconds: float, audio_seconds: float) -> None:
        self.seconds += seconds
        self.audio_seconds += audio_seconds
        if logs.get("skipped"):
            return
        self.seconds_list.append(seconds)
        self.count += 1
        for k, v in logs.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                self.logs[k] = self.logs.get(k, 0.0) + float(v)

    def summary(self) -> dict:
        return {k: v / max(self.count, 1) for k, v in self.logs.items()}


def _accumulate(acc: dict, logs: dict, weight: float, summed: tuple) -> None:
    """Add `logs` into `acc`: summed keys as they are, the rest weighted by `weight`."""
    for k, v in logs.items():
        if hasattr(v, "item"):
            v = v.detach().float().item() if v.numel() == 1 else None
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        acc[k] = acc.get(k, 0.0) + (float(v) if k in summed else float(v) * weight)
