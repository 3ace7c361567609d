"""One training loop for every Task: schedules, precision, accumulation, DDP/FSDP, clipping, NaN skipping,
logging, validation, atomic checkpoints and exact resume.

Read `Trainer._train_one_update` top to bottom: it is the whole recipe, one mechanism per line. The Trainer
owns what every task shares (the run folder and its guard, LayerDrop seeding, weight decay, throughput); a
Task (train/task.py) brings only what differs: its model, data, loss and logs. What a checkpoint holds and how a
run resumes is the Trainer's other half, train/trainer_checkpoints.py; what happens when one rank of a
multi-process run fails is train/elastic.py.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from xlsr.atomic import write_json
from xlsr.config import save_config
from xlsr.errors import TrainingInterrupted, XlsrError
from xlsr.folder_lock import folder_lock
from xlsr.rates import SAMPLE_RATE
from xlsr.train import checkpoint as ckpt
from xlsr.train import distributed as dist_util
from xlsr.train import elastic
from xlsr.train.checkpoint import seed_everything
from xlsr.train.monitor import LogWindow, Monitor, accumulate_logs
from xlsr.train.optimizer import build_optimizer, set_learning_rate
from xlsr.train.out_of_memory import TrainingError, out_of_memory_advice
from xlsr.train.run_folder import (
    PATH_KEYS,
    UNSAID_KEYS,
    check_run_folder,
    same_setting,
    started_in_note,
    working_folder,
)
from xlsr.train.schedules import learning_rate
from xlsr.train.task import Task
from xlsr.train.trainer_checkpoints import TrainerCheckpoints
from xlsr.train.trainer_config import TrainerConfig

_NO_BATCH = object()  # a validation set's end
# Settings that may differ between the ranks of one run: where and how each rank runs, and what rank 0 alone uses
# (logs, pruning). Not all of run_folder.RUN_AS_KEYS: the ranks must agree on when they validate and save (both
# collective), on validating at start (feature_health_frames, probe_every), on the wrapping (distributed), and on
# precision (fp16's loss scale multiplies the gradients that DDP averages)
RANK_LOCAL_KEYS = ("device", "num_workers", "decode_timeout", "compile", "activation_checkpointing", "log_every",
                   "keep_last")


class Trainer(TrainerCheckpoints):
    """Runs a Task to `cfg.max_updates` in the run folder `cfg.out`, resuming from its last checkpoint.

    `resolved_config` is the run's whole configuration as plain data: written to RUN/config.yaml (after the
    run-folder check, by rank 0) and into every checkpoint's trainer.pt.
    """

    def __init__(self, cfg: TrainerConfig, task: Task | Callable[[], Task], resolved_config: dict | None = None):
        self.cfg = cfg.trainer_config()  # the Trainer's part only, whatever configuration it was handed
        self.task = task  # or a function that makes it, called once the ranks are connected (fit)
        self.resolved_config = resolved_config or {}
        self.run_dir = Path(cfg.out)
        # where the config's relative paths start, as the process started: kept, since the folder may be removed
        # while the run goes on (each checkpoint records it)
        self.started_in = working_folder()
        self.ckpt_root = self.run_dir / "checkpoints"
        self.update = 0  # optimizer steps done
        self.epoch = 0
        self.batches_in_epoch = 0  # micro-batches of `epoch` already consumed
        self.best: float | None = None
        self.nan_skipped = 0
        self.overflow_skipped = 0  # fp16 steps skipped because their gradients overflowed (the scale was lowered)
        self.consecutive_nan = 0
        self._stop_pending = False  # set by the SIGINT/SIGTERM handler; goes into the next update's all-reduce
        self._stop_signal = ""  # the name of the signal that set it
        self._update_audio_seconds = 0.0  # the audio of the last update's batches, every rank's
        self.run_totals: dict[str, float] = {}  # the task's counted_logs over the run's updates, every rank's
        self.run_totals_since = 0  # the update they count from (a resume from a checkpoint that did not keep them)
        self._stop_requested = False  # that all-reduce's result: the same on every rank, so all stop together
        self._last_saved: int | None = None
        self.validation_pending = False  # this update's validation failed and was saved so: a resumed run does it first
        self._postfix: dict = {}
        self.monitor_note: str | None = None

    # --- setup -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        self.device = self.info.device
        self._check_same_settings_as_rank_0()
        self.task.setup(self.info)
        seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
        model = self.task.build_model()
        vocab = getattr(self.task, "vocab", None)  # a CTC task's output tokens
        # before writing; what a resume changed is said once it is accepted (below)
        changed = check_run_folder(self.run_dir, self.resolved_config, model, getattr(vocab, "tokens", None))
        trainer_state = self._load_checkpoint(model)
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
            if self.best is not None and self.update < cfg.max_updates and \
                    (self._validation_data_changed(trainer_state.get("config") or {}, trainer_state.get("cwd"))
                     or trainer_state.get("valid_fingerprint") not in (None, self.task.validation_fingerprint())):
                # a rate on other dev data is no bar for the next one: the next validation's model is the best so far
                self.best = None
                changed = (f"{changed}; " if changed else "") + "checkpoints/best is chosen anew from the next " \
                    "validation on (its rate was measured on other validation data)"
        else:
            seed_everything(cfg.seed + 1000 * self.info.rank)  # ranks draw different masks/dropout
        self._write_run_files()  # only now: a resume refused above (weights, optimizer groups) leaves them as they were
        self.monitor = Monitor(self.run_dir, enabled=self.info.is_main, total_updates=cfg.max_updates,
                               initial_update=self.update, show_progress=cfg.progress,
                               tensorboard=cfg.tensorboard)
        if self.task.describe():
            self.monitor.info(self.task.describe())
        if self.monitor_note:
            self.monitor.warn("resume", self.monitor_note, self.update)
        if elastic.restart_note():
            self.monitor.warn("torchrun", elastic.restart_note(), self.update)
        if trainer_state is not None:
            self.monitor.info(f"xlsr: resuming {self.run_dir} from update {self.update} ({self.resume_dir.name})")
        if changed:  # said only now: a resume refused above (weights, optimizer groups) stays one line
            self.monitor.warn("settings", changed, self.update)

    def _check_same_settings_as_rank_0(self) -> None:
        """XlsrError on a rank whose settings differ from rank 0's in what the run computes (a torchrun command line
        or config file that is not the same on every node): the ranks would otherwise part ways, one waiting for ever
        in a collective the others never reach (another max_updates: one validating while another saves). Where and
        how a rank runs (its device, workers, the paths to its data, which may be mounted elsewhere) may differ."""
        if not self.info.distributed:
            return
        mine = json.loads(json.dumps(self.resolved_config, default=str))
        first = dist_util.broadcast_object(mine, self.info)
        free = (*RANK_LOCAL_KEYS, *PATH_KEYS, *UNSAID_KEYS)
        differ = [k for k in sorted({*mine, *first}) if k not in free and mine.get(k) != first.get(k)]
        if differ:
            key = differ[0]
            # in the same words on every rank that differs alike: said once (train/elastic.py)
            raise XlsrError(f"{key}: {first.get(key)!r} on rank 0, {mine.get(key)!r} on another rank"
                            f"{f' (and {len(differ) - 1} more settings differ)' if len(differ) > 1 else ''}; every "
                            f"rank must run with the same settings (the same command and config file on every node)")

    def _validation_data_changed(self, saved: dict, start: str | None) -> bool:
        """Whether the run's validation data differ from those of the checkpoint it resumes (`saved`: its config,
        `start`: the working folder its relative paths start in); a path compared as the file it names, as the
        resume's check of the settings does (`data/` is `data`, `../data` from a subfolder too)."""
        now = json.loads(json.dumps(self.resolved_config, default=str))
        return any(not same_setting(key, saved.get(key), now.get(key), start)
                   for key in self.task.validation_data_keys if key in saved)

    def _write_run_files(self) -> None:
        """RUN/config.yaml (the resolved configuration) and the task's reports, written by rank 0."""
        if self.info.is_main and self.resolved_config:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.resolved_config, self.run_dir / "config.yaml", header=started_in_note(self.started_in))
            for name, report in self.task.reports().items():
                write_json(self.run_dir / name, report)

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train to max_updates (or until SIGINT/SIGTERM), checkpointing along the way; returns the run folder."""
        elastic.stop_if_failed_before(self.run_dir)  # a restarted torchrun attempt after an XlsrError (reads only)
        self.info = dist_util.init_distributed(self.cfg.device)
        try:
            # an error on one rank ends every rank; rank 0 holds the run folder's lock throughout, and only once
            # every rank knows it holds it may a rank write there (its error record included)
            with elastic.one_failure_ends_all(self.info, self.run_dir) as watch, self._run_lock():
                if callable(self.task) and not isinstance(self.task, Task):
                    # made now, not before the ranks connected: an error that every rank meets in it (a data folder
                    # missing, a bad --init) is said once, by the first rank to meet it
                    self.task = self.task()
                watch.hold_folder()
                self._setup()
                handlers = self._install_signal_handlers()
                try:
                    self._loop()
                finally:
                    self._restore_signal_handlers(handlers)
                    self.monitor.close()
                if self.info.is_main:
                    self.task.on_fit_end(self.run_dir)  # an export, inside the lock: no second run writes beside it
        finally:
            dist_util.shutdown(self.info)
        if self._stop_pending and self.update >= self.cfg.max_updates:
            # the signal came in the last update or after it (in the final validation or save): the run is whole,
            # but the command that holds it must stop too, not go on (a demo to its next stage,
            # `xlsr finetune ... && xlsr evaluate ...` to the evaluation)
            raise TrainingInterrupted(f"{self._stop_signal} came as the run ended: it is finished (update "
                                      f"{self.update}) and saved in {self.run_dir}; stopped there")
        return self.run_dir

    def _run_lock(self):
        """RUN/.lock, held by rank 0 (the one that writes) for the whole run: a second run into the same folder would
        mix its checkpoints, log and config.yaml with this one's."""
        if not self.info.is_main:
            return nullcontext()
        return folder_lock(self.run_dir, "another run is using it; wait for it to end or choose another --out")

    def _loop(self) -> None:
        cfg = self.cfg
        batches = self._batch_stream()
        window = LogWindow(self.task.counted_logs)
        # a re-run of a finished run: validated and saved already (unless its final validation failed)
        finished_before = self.update >= cfg.max_updates and not self.validation_pending
        if self.update == 0 and self.task.validate_at_start:
            # The model at initialisation is no candidate for `best`; restoring the random state (which the
            # validation loaders draw from) keeps the run identical to one without this validation.
            rng = ckpt.capture_rng_state()
            self._validate(select_best=False)
            ckpt.restore_rng_state(rng)
        if self.validation_pending and self.update < cfg.max_updates:  # (at max_updates: the final one, below)
            self._validate_or_save()  # the validation that failed at this update in the run before, done first
        while self.update < cfg.max_updates and not self._stop_requested:
            t0 = time.perf_counter()
            micro = self._next_micro_batches(batches)
            window.data_wait += time.perf_counter() - t0
            logs = self._train_one_update(micro)
            window.add(logs, time.perf_counter() - t0, self._update_audio_seconds)
            if logs.get("skipped"):
                continue
            self.monitor.advance(1, self._postfix)
            if self.update % cfg.log_every == 0 or self.update == cfg.max_updates:
                self._log_train(window.summary(), window)
                window = LogWindow(self.task.counted_logs)
            if cfg.valid_every and self.update % cfg.valid_every == 0 and self.update < cfg.max_updates:
                self._validate_or_save()
            if cfg.save_every and self.update % cfg.save_every == 0 and self.update < cfg.max_updates:
                self._save()
        if self._stop_requested and window.count:
            # the updates since the last log line, logged at the stop update (a straight run logs nothing here); a
            # resumed run thus has a record at its stop update, and its next record averages only the updates after
            self._log_train(window.summary(), window)
        if self.update >= cfg.max_updates and not finished_before:
            self._validate_or_save()
        self._save()
        report = self.task.closing_report(self.run_totals, self.run_totals_since) if self.run_totals else ""
        if report and cfg.progress:  # without the bar, a caller reporting runs itself (the demo)
            self.monitor.info(report)
        if self._stop_requested and self.update < cfg.max_updates:
            self.monitor.info(f"xlsr: stopped at update {self.update}; checkpoint saved in {self.ckpt_root / 'last'}; "
                              f"run the same command again to resume")

    def _next_micro_batches(self, batches) -> list:
        """The next update's micro-batches. A data error (an XlsrError of the loader: more bad files than
        max_bad_share, a language all unreadable) on an update's first micro-batch, in a one-process run, first saves
        the updates trained since the last checkpoint and says so: mended data (or a higher max_bad_share) and the
        same command go on from there, as the run would have. Under torchrun the other ranks cannot take part in a
        save, and with update_freq > 1 an error on a later micro-batch comes after the loader handed over the
        earlier ones: either ends the run as it is (at its last checkpoint)."""
        micro = []
        try:
            for _ in range(self.cfg.update_freq):
                micro.append(next(batches))
            return micro
        except XlsrError:
            # the loaders leave the batch that failed unread; a micro-batch drawn before it is not (resumed here, the
            # run would not be the run it was), nor is an update already saved
            if self.info.distributed or micro or self.update == (self._last_saved or 0):
                raise
            self._save()
            self.monitor.info(f"xlsr: stopped at update {self.update} by the data error below; checkpoint saved in "
                              f"{self.ckpt_root / 'last'}; once the data are mended (or max_bad_share raised), run "
                              f"the same command again to resume")
            raise

    def _batch_stream(self):
        """Micro-batches forever, epoch after epoch, starting where the checkpoint left off."""
        while True:
            for batch in self.task.train_batches(self.epoch, skip=self.batches_in_epoch):
                self.batches_in_epoch += 1
                yield self.task.batch_to_device(batch, self.device)
            if self.batches_in_epoch == 0:
                if self.info.distributed:  # batches are dealt out whole, equally: fewer than W means none here
                    smaller = f"lower {self.task.batch_size_option() or 'the batch size'}"
                    # the same words on every rank (each meets it alike): said once (train/elastic.py)
                    raise XlsrError(f"training data: an epoch gave the ranks no batches; the data makes fewer "
                                    f"batches than the {self.info.world_size} processes ({smaller}, add data or use "
                                    f"fewer processes)")
                raise XlsrError("training data: an epoch produced no batches (all utterances filtered out?)")
            self.epoch += 1
            self.batches_in_epoch = 0

    def _train_one_update(self, micro: list) -> dict:
        cfg, task = self.cfg, self.task
        # 1. schedules, the same on all ranks: learning rate, LayerDrop seed, the task's (Gumbel temperature, freezing)
        lr = learning_rate(cfg, self.update)
        set_learning_rate(self.optimizer, lr)
        if hasattr(self.model, "set_layerdrop_seed"):  # the same LayerDrop draws on every rank (DDP/FSDP-safe)
            self.model.set_layerdrop_seed(cfg.seed * 1_000_003 + self.update)
        extra = task.on_update_start(self.model, self.update)
        self.net.train()
        # 2. forward/backward over micro-batches; DDP syncs gradients only on the last one
        logs_sum, sample_size, nonfinite = self._forward_backward(micro)
        # 3. one all-reduce for: total sample size, non-finite losses on any rank, a stop request on any rank, the
        # data's running counts (each rank counts the files it reads), the audio of the update and its logs, so that
        # the train log tells of every rank's batches, not rank 0's (the task's logs have the same keys on every rank)
        totals = task.data_totals()
        audio = sum(task.batch_samples(b) for b in micro) / SAMPLE_RATE
        keys = sorted(logs_sum)
        flags = torch.tensor([sample_size, nonfinite, float(self._stop_pending), audio, *totals.values(),
                              *(logs_sum[k] for k in keys)], dtype=torch.float64)
        dist_util.all_reduce_sum(flags, self.info)
        total_size, any_nonfinite, stop, self._update_audio_seconds, *rest = flags.tolist()
        summed, logs_sum = rest[:len(totals)], dict(zip(keys, rest[len(totals):]))
        self._stop_requested = stop > 0  # only here: a signal that lands during the all-reduce counts at the next
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
                    return self._skip_overflow()
            return self._skip_step(any_nonfinite, grad_norm)
        self.consecutive_nan = 0
        # 7. optimizer step
        with out_of_memory_advice(self, None, where="optimizer"):  # its first call allocates the optimizer's state
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.update += 1
        for k in task.counted_logs:  # (summed over every rank above: the same totals on each)
            self.run_totals[k] = self.run_totals.get(k, 0.0) + logs_sum.get(k, 0.0)
        out = {k: v / total_size for k, v in logs_sum.items() if k not in task.summed_logs}
        out.update({k: logs_sum[k] for k in task.summed_logs if k in logs_sum})
        out.update({k: self.run_totals[k] for k in task.counted_logs})
        out.update(extra)
        out.update({k: int(v) for k, v in zip(totals, summed)})
        out.update(lr=lr, grad_norm=grad_norm)
        if self.scaler.is_enabled():
            out["loss_scale"] = float(self.scaler.get_scale())
        return out

    def _forward_backward(self, micro: list) -> tuple[dict[str, float], float, int]:
        """Loss and backward of each micro-batch under autocast: (summed logs, sample size, non-finite losses)."""
        logs_sum: dict[str, float] = {}
        sample_size, nonfinite = 0.0, 0
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = nullcontext() if last or not isinstance(self.net, nn.parallel.DistributedDataParallel) \
                else self.net.no_sync()
            with sync, out_of_memory_advice(self, batch):
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    loss, logs = self.task.train_step(self.net, batch)
                nonfinite += int(not torch.isfinite(loss.detach()).all())
                self.scaler.scale(loss).backward()
            n = float(logs.get("sample_size", 1))
            sample_size += n
            accumulate_logs(logs_sum, logs, n, self.task.summed_logs)
        return logs_sum, sample_size, nonfinite

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

    def _skip_overflow(self) -> dict:
        """An fp16 step whose gradients overflowed (the loss was finite): GradScaler has halved the scale; counted,
        and the run ends in one line once the scale falls below min_loss_scale instead of training on zeros."""
        self.overflow_skipped += 1
        scale = float(self.scaler.get_scale())
        if scale < self.cfg.min_loss_scale:
            raise TrainingError(f"{self.run_dir}: the fp16 loss scale fell to {scale:.3g}, below min_loss_scale "
                                f"{self.cfg.min_loss_scale:g}, at update {self.update} ({self.overflow_skipped} "
                                f"overflowing steps skipped): the loss is exploding; lower lr (now {self.cfg.lr:g}), "
                                f"use bf16 or fp32, or resume from {self.ckpt_root / 'last'} with a smaller clip_norm")
        return {"skipped": True, "overflow": True}

    # --- logs and validation ------------------------------------------------------------------------
    def _validate_or_save(self) -> None:
        """`_validate`; when it fails in a one-process run, the updates since the last save are saved, marked
        `validation_pending`, before the error goes on, and the re-run does this validation first. Under DDP/FSDP the
        error ends every rank at once (train/elastic.py): a save is collective, and a rank that failed alone would
        wait in it for ranks that are already training on."""
        rng, best = ckpt.capture_rng_state(), self.best
        pending, self.validation_pending = self.validation_pending, False
        try:
            self._validate()
        except Exception:
            if not self.info.distributed:
                # saved as it was before this validation (random state, best), so the re-run's is a straight run's
                ckpt.restore_rng_state(rng)
                self.best, self.validation_pending = best, True
                self._save()  # (a pending one that failed again: saved so already)
            raise
        if pending:  # done at last: the checkpoint of this update, saved when it failed, gets the state of now
            self._save(best=self.best != best, replace=True)

    def _log_train(self, logs: dict, window: LogWindow) -> None:
        logs["nan_skipped"] = self.nan_skipped
        if self.scaler.is_enabled():
            logs["overflow_skipped"] = self.overflow_skipped
        logs["audio_s_per_s"] = window.audio_seconds / max(window.seconds, 1e-9)
        logs["data_wait_share"] = window.data_wait / max(window.seconds, 1e-9)
        logs["seconds_per_update"] = window.seconds / max(window.count, 1)
        logs["epoch"] = self.epoch
        self.monitor.log("train", self.update, logs)
        for kind, message in self.task.health_warnings(logs, self.update):
            self.monitor.warn(kind, message, self.update)
        self._postfix = {k: logs[k] for k in (*self.task.progress_keys, "lr", "audio_s_per_s") if k in logs}

    @torch.no_grad()
    def _validate(self, select_best: bool = True) -> None:
        sets = self.task.valid_sets()
        if not sets:
            return
        model = self.net if self.fsdp else self.model
        model.eval()
        totals: dict[str, float] = {}
        total_size = 0.0
        by_set: dict[str, float] = {}  # each set's figure that picks `best`, for the line said below
        for name, batches in sets.items():
            means, size = self._validate_set(model, batches)
            if size == 0:
                continue
            accumulate_logs(totals, means, size, ())
            total_size += size
            self.monitor.log(f"valid_{name}", self.update, means)
            if self.task.best_metric in means:
                by_set[name] = means[self.task.best_metric]
        pooled = self.task.valid_end(model, self.update) if total_size else {}
        if self.fsdp:
            dist_util.reshard(model)  # a forward without backward leaves the root unsharded
        metric = None
        if total_size:
            overall = {k: v / total_size for k, v in totals.items()}
            overall["sample_size"] = total_size
            overall.update(pooled)
            self.monitor.log("valid", self.update, overall)
            for kind, message in self.task.health_warnings(overall, self.update):
                self.monitor.warn(f"valid_{kind}", "validation: " + message, self.update)
            metric = overall.get(self.task.best_metric)
        if not select_best:
            return
        # Every rank decides on rank 0's figure (the one logged). A rank whose dev files failed to read this time
        # measures another, and one that saved `best` alone would wait in the save's collective while the others
        # trained on: a hang.
        metric = dist_util.broadcast_object(metric, self.info)
        better = metric is not None and math.isfinite(metric) and (
            self.best is None or (metric < self.best if self.task.best_lower_is_better else metric > self.best))
        if metric is not None and self.cfg.progress:  # without the bar, a caller reporting runs itself (the demo)
            self._say_validation(metric, by_set, better)
        if better:
            self.best = metric
            self._save(best=True)

    def _say_validation(self, metric: float, by_set: dict[str, float], better: bool) -> None:
        """One line per validation, as fairseq and transformers' Trainer print one: the figure that picks `best`,
        over all sets and per set (language), and whether it is the best so far."""
        name = self.task.best_metric
        shown = (lambda v: f"{100 * v:.2f}%") if name in ("per", "cer", "wer") else (lambda v: f"{v:.4g}")
        sets = f" ({', '.join(f'{k} {shown(v)}' for k, v in by_set.items())})" if len(by_set) > 1 else ""
        verdict = "the best so far" if better else f"best so far {shown(self.best)}" if self.best is not None else ""
        self.monitor.info(f"xlsr: validation at update {self.update}: {name} {shown(metric)}{sets}"
                          f"{'; ' + verdict if verdict else ''}")

    def _validate_set(self, model: nn.Module, batches) -> tuple[dict[str, float], float]:
        """One validation subset: (its logs averaged by sample size, its total sample size)."""
        acc: dict[str, float] = {}
        size = 0.0
        batches = iter(batches)
        while True:
            batch = next(batches, _NO_BATCH)
            has_one = batch is not _NO_BATCH
            if not (self._every_rank_has_a_batch(has_one) if self.fsdp else has_one):
                break
            batch = self.task.batch_to_device(batch, self.device)
            with out_of_memory_advice(self, batch, where="valid"), torch.autocast(
                    self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                logs = self.task.valid_step(model, batch)
            n = float(logs.get("sample_size", 1))
            size += n
            accumulate_logs(acc, logs, n, self.task.summed_logs)
        return {k: v / size for k, v in acc.items() if k not in self.task.summed_logs} if size else {}, size

    def _every_rank_has_a_batch(self, has_one: bool) -> bool:
        """Under FSDP a forward is collective: every rank validates as many batches as the rank with the fewest
        (a batch whose dev files all failed to read on one rank yields nothing there); otherwise the ranks' collectives
        pair up wrongly from there on: a hang, or gloo aborting on a size mismatch."""
        missing = torch.tensor([float(not has_one)])
        dist_util.all_reduce_sum(missing, self.info)
        if 0 < missing.item() < self.info.world_size:
            self.monitor.warn("valid_ranks", f"validation: {int(missing.item())} of {self.info.world_size} ranks had "
                              "no next batch of a dev set (files unreadable there?); every rank stops that set here",
                              self.update)
        return missing.item() == 0

    # --- signals --------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict:
        old = {}

        def request_stop(signum, frame):
            if self._stop_pending and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            # Only pending: the next update's all-reduce tells every rank, and all stop after that same update
            # (a rank that stopped on its own signal would wait in the save's collective, its peers in the update's).
            self._stop_pending = True
            self._stop_signal = signal.Signals(signum).name
            self.monitor.info(f"xlsr: {signal.Signals(signum).name} received; finishing the update and saving")

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
