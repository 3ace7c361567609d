"""The demo's fine-tuning runs: every initialisation × every seed under one FinetuneConfig, and their PER.

Only `init`, `seed` and the peak learning rate (one per initialisation, chosen on the dev set by one rule for
all: DemoSettings.finetune_lr) differ between the runs (and the run folder): freezing, schedule, masks, updates and
batch size are FinetuneConfig's defaults plus the demo's few settings, the same for all. The
random-weight baseline is a checkpoint too (the released architecture, weights drawn once), so that its
seeds vary exactly what a pretrained model's seeds vary, and its frozen CNN is cached once like theirs.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

import torch

from xlsr.config import config_to_dict, load_config
from xlsr.cores import available_cores
from xlsr.data.audio import load_audio
from xlsr.data.manifest import read_manifest
from xlsr.decode.greedy import greedy_decode
from xlsr.demo.settings import INITS, DemoSettings
from xlsr.errors import TrainingInterrupted
from xlsr.interop.load import load_pretrained, read_checkpoint_config
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.text.metrics import corpus_counts
from xlsr.train.checkpoint import run_finished
from xlsr.train.feature_cache import FeatureCache, cnn_fingerprint, load_caches, save_caches
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune
from xlsr.train.monitor import read_log

FEATURES_PREFIX = ".cnn_features-"  # the side-by-side stage's folder of each init's CNN features, under out_dir
# Fields of the resolved FinetuneConfig that may differ between the demo's runs; everything else is shared.
PER_RUN_FIELDS = ("init", "seed", "out", "lr")


@dataclass
class FinetuneResult:
    """One fine-tuning run (one initialisation, one seed) and its error rates."""

    name: str  # multilingual | monolingual | scratch
    init: str  # the checkpoint folder it started from
    seed: int
    run_dir: str
    test_per: float
    dev_per: float | None
    counts: dict  # substitutions, deletions, insertions, ref_len on the test set
    seconds: float
    # utterances sent through the frozen CNN for training (0: all came from the init's shared cache); side by side,
    # the init's one pass (`init_features`) counts for its first seed, as it does when the runs go one at a time
    cnn_passes: int = 0
    eval_per: float | None = None  # PER on the larger held-out test set (DemoSettings.eval_utts), None without one
    eval_counts: dict | None = None


def random_init(released_folder: Path, folder: Path, seed: int) -> Path:
    """A checkpoint of random weights with the released checkpoint's architecture (its config.json alone)."""
    # The round trip through Wav2Vec2Config fills fields an older checkpoint lacks with their defaults.
    config = Wav2Vec2Config.from_dict(read_checkpoint_config(released_folder).get("model") or {})
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = Wav2Vec2ForPreTraining(config)
    return save_checkpoint(folder, model, metadata={"random_init_seed": seed, "architecture_of": str(released_folder)})


def finetune_config(settings: DemoSettings, corpus_dir: Path, init: str, seed: int, run_dir: Path,
                    name: str | None = None) -> FinetuneConfig:
    """The resolved configuration of one demo run (`name`: its initialisation, which picks the peak rate): the same
    for every run but for `PER_RUN_FIELDS`."""
    target = corpus_dir / settings.target
    overrides = {"train": [str(target / "train.jsonl")], "dev": [str(target / "dev.jsonl")], "init": init,
                 "labels": "phones", "out": str(run_dir), "max_updates": settings.finetune_updates,
                 "seed": seed, "device": settings.device, **settings.finetune_settings}
    if name is not None and (settings.finetune_lr or {}).get(name) is not None:
        overrides["lr"] = settings.finetune_lr[name]
    # one line per finished run (said by the stage) instead of a bar and a line per validation for each of nine runs
    # (and interleaved bars where runs go side by side)
    overrides["progress"] = False
    return load_config(FinetuneConfig, None, overrides)


def peak_rates(settings: DemoSettings, corpus_dir: Path) -> dict[str, float]:
    """The peak learning rate each initialisation's runs use (what the report states)."""
    return {name: finetune_config(settings, corpus_dir, "none", 0, corpus_dir, name).lr for name in INITS}


def shared_protocol(cfg: FinetuneConfig) -> dict:
    """The part of a run's resolved configuration that all the demo's runs share (what the report states)."""
    return {k: v for k, v in config_to_dict(cfg).items() if k not in PER_RUN_FIELDS}


def finetune_one(name: str, init: str, seed: int, settings: DemoSettings, corpus_dir: Path, run_dir: Path,
                 caches: dict[str, FeatureCache], eval_manifests: list[Path] = ()) -> FinetuneResult:
    """Fine-tune on the target's train split (best checkpoint by dev PER), then measure PER on its test split and,
    pooled, on `eval_manifests` (the larger held-out test set).

    `caches` is shared by the runs of one init: the first fills it, the others read their CNN output from it."""
    return score_run(train_run(name, init, seed, settings, corpus_dir, run_dir, caches), settings, corpus_dir,
                     caches, eval_manifests)


def train_run(name: str, init: str, seed: int, settings: DemoSettings, corpus_dir: Path, run_dir: Path,
              caches: dict[str, FeatureCache]) -> FinetuneResult:
    """`finetune_one`'s fine-tuning: its result before scoring (test PER nan, no counts)."""
    passes_before = _training_cnn_passes(caches)
    start = time.perf_counter()
    run = finetune(finetune_config(settings, corpus_dir, init, seed, run_dir, name), feature_caches=caches)
    seconds = time.perf_counter() - start
    stop_unless_finished(run, settings.finetune_updates, f"fine-tuning run {name} seed {seed}")
    return FinetuneResult(name=name, init=init, seed=seed, run_dir=str(run), test_per=math.nan,
                          dev_per=best_dev_per(run), counts={}, seconds=seconds,
                          cnn_passes=_training_cnn_passes(caches) - passes_before)


def score_run(trained: FinetuneResult, settings: DemoSettings, corpus_dir: Path, caches: dict[str, FeatureCache],
              eval_manifests: list[Path] = ()) -> FinetuneResult:
    """`finetune_one`'s scoring of a `train_run` result: PER of its best checkpoint on the test split and, pooled, on
    `eval_manifests`."""
    scored = best_checkpoint(Path(trained.run_dir))
    scoring = caches.setdefault("scoring", FeatureCache())  # the frozen CNN on the scored sets, once per init
    test = evaluate_pooled(scored, [corpus_dir / settings.target / "test.jsonl"], settings.device, scoring)
    held_out = evaluate_pooled(scored, eval_manifests, settings.device, scoring) if eval_manifests else {}
    return replace(trained, test_per=test["per"], counts=test["counts"], eval_per=held_out.get("per"),
                   eval_counts=held_out.get("counts"))


def _training_cnn_passes(caches: dict[str, FeatureCache]) -> int:
    """Utterances the runs sharing `caches` sent through the frozen CNN while training (scoring's cache apart)."""
    return sum(c.misses for name, c in caches.items() if name != "scoring")


def stop_unless_finished(run_dir: Path, max_updates: int, what: str) -> None:
    """TrainingInterrupted (the CLI's exit status 130) unless the run's saved trainer state reached `max_updates`:
    Ctrl-C or SIGTERM makes the trainer save and return normally, and the demo must not score or report that run."""
    if not run_finished(run_dir, max_updates):
        raise TrainingInterrupted(f"the demo's {what} ({run_dir}) stopped before its {max_updates} updates "
                                  f"(Ctrl-C or SIGTERM); no report was written (run the demo again to start over)")


def finetune_inits(settings: DemoSettings, inits: dict[str, Path], corpus_dir: Path, out_dir: Path,
                   on_run=None, eval_manifests: list[Path] = (), on_trained=None) -> list[FinetuneResult]:
    """Every init × every seed into out_dir/<name>/seed<k>, each also scored on `eval_manifests` (pooled); results
    in that order. One run at a time with one feature cache per init, kept across its seeds; or `settings.workers()`
    runs side by side, in worker processes that read each init's CNN output from one pass over its data (a CNN
    output is the same whoever computes it)."""
    jobs = [(name, str(init), seed) for name, init in inits.items() for seed in settings.finetune_seeds]
    workers = min(settings.workers(), len(jobs))
    if workers > 1:
        return _finetune_side_by_side(jobs, workers, settings, corpus_dir, out_dir, eval_manifests, on_run,
                                      on_trained)
    caches: dict[str, dict[str, FeatureCache]] = {}  # per init: filled by its first seed's run, read by the next
    results = []
    for name, init, seed in jobs:
        result = finetune_one(name, init, seed, settings, corpus_dir, out_dir / name / f"seed{seed}",
                              caches.setdefault(init, {}), eval_manifests)
        results.append(result)
        if on_run is not None:
            on_run(result)
    return results


def _finetune_side_by_side(jobs: list[tuple[str, str, int]], workers: int, settings: DemoSettings, corpus_dir: Path,
                           out_dir: Path, eval_manifests: list[Path], on_run, on_trained=None
                           ) -> list[FinetuneResult]:
    """`finetune_one` for each job in `workers` spawned processes of available_cores() // workers threads each; results in
    job order, `on_trained` as each run's training ends (its dev PER; the scoring is still to come), `on_run` as
    each is scored; the first failure cancels the jobs not yet started and is raised.

    Three kinds of job, submitted once what they need is done and started by the pool in that order:
    - an init's frozen CNN on everything its runs read (`init_features`), once; its runs read it, in whichever
      process, from a file in out_dir (removed at the end). With a cache per process, the first run of an init in
      each process ran the CNN again (~30 s of CPU each time).
    - a run's training, submitted with its init's other runs once the CNN output is there;
    - its scoring, submitted when the training ends and so started after every training: the scorings fill the
      end, where one process would otherwise idle while the other trains the last run (9 runs on 2 processes:
      ~40 s sooner than scoring each run right after its training, but the runs' `on_run` lines all come then)."""
    threads = max(1, available_cores() // workers)
    results: list[FinetuneResult | None] = [None] * len(jobs)
    passes: dict[int, int] = {}  # the first run of an init (its index) -> the CNN passes of the init's features job
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{FEATURES_PREFIX}*"):  # a killed demo's (tens of MB each): only ever this stage's
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=FEATURES_PREFIX) as shared:
        features = {init: Path(shared) / f"{name}.pt" for name, init, _ in jobs}
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_start, initargs=(threads,))
        try:
            # future -> ("features", init) or ("train" | "score", index of the run)
            pending = {pool.submit(_worker_features, name, init, settings, corpus_dir, list(eval_manifests),
                                   features[init]): ("features", init)
                       for name, init in dict.fromkeys((n, i) for n, i, _ in jobs)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, key = pending.pop(future)
                    value = future.result()
                    if kind == "features":  # the init's runs may start
                        runs = [i for i, job in enumerate(jobs) if job[1] == key]
                        passes[runs[0]] = value
                        pending.update({pool.submit(_worker_train, jobs[i], settings, corpus_dir, out_dir,
                                                    features[key]): ("train", i) for i in runs})
                    elif kind == "train":
                        if on_trained is not None:
                            on_trained(value)
                        pending[pool.submit(_worker_score, value, settings, corpus_dir, list(eval_manifests),
                                            features[value.init])] = ("score", key)
                    else:
                        results[key] = result = replace(value, cnn_passes=value.cnn_passes + passes.get(key, 0))
                        if on_run is not None:
                            on_run(result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return results


_WORKER_CACHES: dict[str, dict[str, FeatureCache]] = {}  # in a worker process: per init, across the jobs it runs


def _worker_start(threads: int) -> None:
    """A worker process's setup: its thread count, and a watch that ends it once the demo's process is gone."""
    # A demo killed outright (SIGKILL, the OOM killer) cannot shut its pool down, and a worker waiting for its next
    # job would wait for ever, holding ~0.6-1 GB: it ends itself instead when its parent changes. The watch starts
    # first: nothing before it may block (a forked worker's torch call can wait on a lock taken before the fork).
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="exit-with-demo").start()
    torch.set_num_threads(threads)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_features(name: str, init: str, settings: DemoSettings, corpus_dir: Path, eval_manifests: list[Path],
                     path: Path) -> int:
    """`init_features` into this process's caches and `path`; returns its training CNN passes."""
    caches, passes = init_features(name, init, settings, corpus_dir, eval_manifests)
    _WORKER_CACHES[init] = caches
    save_caches(caches, path)
    return passes


def _worker_train(job: tuple[str, str, int], settings: DemoSettings, corpus_dir: Path, out_dir: Path,
                  features: Path) -> FinetuneResult:
    name, init, seed = job
    return train_run(name, init, seed, settings, corpus_dir, out_dir / name / f"seed{seed}",
                     _worker_caches(init, features))


def _worker_score(trained: FinetuneResult, settings: DemoSettings, corpus_dir: Path, eval_manifests: list[Path],
                  features: Path) -> FinetuneResult:
    return score_run(trained, settings, corpus_dir, _worker_caches(trained.init, features), eval_manifests)


def _worker_caches(init: str, features: Path) -> dict[str, FeatureCache]:
    """This process's caches of `init`, read from `features` when another process computed them."""
    if init not in _WORKER_CACHES:
        _WORKER_CACHES[init] = load_caches(features)
    return _WORKER_CACHES[init]


def init_features(name: str, init: str, settings: DemoSettings, corpus_dir: Path,
                  eval_manifests: list[Path] = ()) -> tuple[dict[str, FeatureCache], int]:
    """The frozen CNN of `init` on every utterance its runs read, each entry as they compute it: the train and dev
    splits from a run's own loaders (under its autocast), the scored sets as `evaluate_pooled` reads them. Returns
    the caches (`finetune_one`'s `caches`) and the training and dev utterances that went through the CNN."""
    with tempfile.TemporaryDirectory() as fresh:  # a run folder without checkpoints: the task reads it, nothing more
        task = FinetuneTask(finetune_config(settings, corpus_dir, init, settings.finetune_seeds[0], Path(fresh), name))
    encoder = task.build_model().to(settings.device).wav2vec2  # the caches are bound to its CNN here
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(task.cfg.precision)
    batches = {"train": task.train_batches(0), "dev": chain(*task.valid_sets().values())}
    with torch.autocast(torch.device(settings.device).type, dtype=amp or torch.float32, enabled=amp is not None):
        for split, cache in task.feature_caches.items():
            for batch in batches[split]:
                cache.batch_features(encoder, batch.waveforms.to(settings.device), batch.lengths, batch.ids)
    scoring = FeatureCache()
    scoring.bind(encoder, task.model_config.normalize_waveform)
    for utt, x in _scored_waveforms([corpus_dir / settings.target / "test.jsonl", *eval_manifests],
                                    task.model_config.normalize_waveform, settings.device):
        scoring.batch_features(encoder, x, torch.tensor([x.shape[1]]), [str(utt.audio)])
    return {**task.feature_caches, "scoring": scoring}, sum(c.misses for c in task.feature_caches.values())


def evaluate_per(model_dir: Path, manifest: Path, device: str = "cpu") -> dict:
    """PER (word boundaries excluded) of a fine-tuned checkpoint on a manifest, greedy decoding, with edit counts."""
    return evaluate_pooled(model_dir, [manifest], device)


def evaluate_pooled(model_dir: Path, manifests: list[Path], device: str = "cpu",
                    cache: FeatureCache | None = None) -> dict:
    """`evaluate_per` over several manifests as one set (the checkpoint loaded once): PER = errors / reference phones.

    `cache`: the CNN output of each utterance (keyed by its audio file) from an earlier call with a checkpoint of the
    same frozen CNN (another seed of one init): those utterances start at the Transformer, with the same logits (one
    utterance at a time, unpadded, either way). Not used when this checkpoint's CNN differs from the cache's."""
    loaded = load_pretrained(model_dir)
    model = loaded.model.to(device).eval()
    if cache is not None and cache.cnn not in (None, cnn_fingerprint(model.wav2vec2.feature_encoder,
                                                                     loaded.config.normalize_waveform)):
        cache = None  # the CNN was trained in this run, or the cache holds another init's
    if cache is not None:
        cache.bind(model.wav2vec2, loaded.config.normalize_waveform)
    refs, hyps = [], []
    with torch.no_grad():
        for utt, x in _scored_waveforms(manifests, loaded.config.normalize_waveform, device):
            if cache is None:
                logits = model(x).logits
            else:
                features, frames = cache.batch_features(model.wav2vec2, x, torch.tensor([x.shape[1]]), [str(utt.audio)])
                logits = model(features=features, frame_lengths=frames).logits
            hyp = greedy_decode(logits.float().cpu())[0]
            hyps.append(" ".join(loaded.vocab[i] for i in hyp.token_ids))
            refs.append(utt.phones or "")
    counts = corpus_counts(refs, hyps, "phone")
    return {"per": counts.rate, "counts": counts.to_dict()}


def _scored_waveforms(manifests: list[Path], normalize: bool, device: str):
    """Each utterance of `manifests`, in order, with its waveform (1, S) on `device`, as scoring reads it."""
    for manifest in manifests:
        for utt in read_manifest(Path(manifest)):
            yield utt, torch.from_numpy(load_audio(utt.audio, normalize=normalize))[None].to(device)


def best_checkpoint(run_dir: Path) -> Path:
    """A fine-tuning run's checkpoint to score: the best by dev PER, or the last where no validation picked one."""
    best = run_dir / "checkpoints" / "best"
    return best if (best / "config.json").is_file() else run_dir / "checkpoints" / "last"


def best_dev_per(run_dir: Path) -> float | None:
    """The lowest overall dev PER in a fine-tuning run's log (what picked checkpoints/best)."""
    # a non-finite PER is written to the log as null (train/monitor.py): it cannot have picked best
    values = [r["per"] for r in read_log(run_dir / "log.jsonl")
              if r.get("split") == "valid" and isinstance(r.get("per"), (int, float)) and math.isfinite(r["per"])]
    return min(values) if values else None


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the finite values (sd None for a single one; both None for none).

    A PER can be inf (a reference without phones and a hypothesis with some) or NaN: those are left out, and
    `summarize` counts them, rather than turning every figure of their initialisation into inf or nan."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None, None
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else None)


def non_finite(values: list[float]) -> int:
    """How many of `values` are inf or NaN (left out of `mean_sd`)."""
    return sum(not math.isfinite(v) for v in values)


def mean_edits(counts: list[dict]) -> dict[str, float]:
    """Substitutions, deletions, insertions and reference length, each averaged over runs."""
    return {k: statistics.fmean(c.get(k, 0) for c in counts) for k in ("substitutions", "deletions", "insertions", "ref_len")}


def summarize(results: list[FinetuneResult]) -> dict[str, dict]:
    """Per initialisation, in run order: seeds, test PER and best dev PER as mean and sample sd (n−1) over the finite
    values (`<key>_nonfinite`: how many were left out), edits and time per run."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r.name for r in results):
        runs = [r for r in results if r.name == name]
        test_mean, test_sd = mean_sd([r.test_per for r in runs])
        devs = [r.dev_per for r in runs if r.dev_per is not None]
        dev_mean, dev_sd = mean_sd(devs) if devs else (None, None)
        edits = mean_edits([r.counts for r in runs])
        held_out = [r.eval_per for r in runs if r.eval_per is not None]
        eval_edits = mean_edits([r.eval_counts for r in runs]) if all(r.eval_counts for r in runs) else None
        eval_mean, eval_sd = mean_sd(held_out) if len(held_out) == len(runs) else (None, None)
        out[name] = {"init": runs[0].init, "seeds": [r.seed for r in runs], "test_per": [r.test_per for r in runs],
                     "test_per_mean": test_mean, "test_per_sd": test_sd, "dev_per_mean": dev_mean, "dev_per_sd": dev_sd,
                     "eval_per": held_out if len(held_out) == len(runs) else None, "eval_per_mean": eval_mean,
                     "eval_per_sd": eval_sd, "eval_edits_mean": eval_edits, "edits_mean": edits,
                     "seconds_mean": statistics.fmean(r.seconds for r in runs),
                     "test_per_nonfinite": non_finite([r.test_per for r in runs]), "dev_per_nonfinite": non_finite(devs),
                     "eval_per_nonfinite": non_finite(held_out) if len(held_out) == len(runs) else 0}
    return out
