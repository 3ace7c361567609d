"""The demo's stages besides fine-tuning: synthesis, the shared-units analysis, the live pretraining run."""

from __future__ import annotations

from pathlib import Path

from xlsr.analysis import analyze
from xlsr.config import load_config
from xlsr.data.manifest import read_manifest, split_manifests
from xlsr.data.synth import synthesize_corpus
from xlsr.data.synth.corpus import SPLITS
from xlsr.demo.finetuning import stop_unless_finished
from xlsr.demo.settings import DemoSettings
from xlsr.rates import SAMPLE_RATE
from xlsr.train.curves import plot_training_curves
from xlsr.train.monitor import read_log
from xlsr.train.pretrain import PretrainConfig, pretrain
from xlsr.train.recipes import recipe_path


def synthesize(settings: DemoSettings, corpus_dir: Path, show_progress: bool = True, target_only: bool = False) -> dict:
    """Synthesize the target (labeled, for fine-tuning; the live run reads its audio too) and the
    pretraining languages (for the analysis and the live run) into corpus_dir/<lang>/{train,dev,test}.jsonl; returns
    minutes of audio per language/split.
    `target_only` writes the target alone (what fine-tuning needs, e.g. benchmarks/finetune_lr.py)."""
    total = {}
    # The target gets many more utterances than the others, hence two calls into the same folder.
    calls = [([settings.target], settings.target_utts)]
    if not target_only:
        calls.append((list(settings.pretrain_langs), settings.other_utts))
    for langs, n in calls:
        summary = synthesize_corpus(corpus_dir, langs, n, seed=settings.seed, workers=settings.synth_workers,
                                    show_progress=show_progress, **settings.corpus)
        total.update({lang: {split: round(s / 60, 3) for split, s in splits.items()}
                      for lang, splits in summary.seconds.items()})
    return total


def synthesize_eval(settings: DemoSettings, eval_dir: Path, show_progress: bool = True) -> list[Path]:
    """The held-out test set: `eval_utts` further target utterances (own seed and texts; of its 40 speakers in the
    default run, 9 share an espeak voice, at another pitch and rate, with fine-tuning speakers) into
    eval_dir/<target>/; returns its manifests, all splits (scored pooled), or [] when `eval_utts` is 0."""
    if not settings.eval_utts:
        return []
    synthesize_corpus(eval_dir, [settings.target], settings.eval_utts, seed=settings.eval_seed,
                      workers=settings.synth_workers, show_progress=show_progress, **settings.corpus)
    return eval_manifests(settings, eval_dir)


def eval_manifests(settings: DemoSettings, eval_dir: Path) -> list[Path]:
    """The held-out test set's manifests (every split of the target in eval_dir), [] when `eval_utts` is 0."""
    return [eval_dir / settings.target / f"{split}.jsonl" for split in SPLITS] if settings.eval_utts else []


def eval_set_summary(manifests: list[Path]) -> dict:
    """Size of the held-out test set: utterances, minutes, speakers and its manifests ({} without one)."""
    utts = [utt for manifest in manifests for utt in read_manifest(manifest)]
    if not utts:
        return {}
    return {"utterances": len(utts), "minutes": round(sum(u.num_samples for u in utts) / SAMPLE_RATE / 60, 3),
            "speakers": len({u.speaker for u in utts}), "manifests": [str(m) for m in manifests]}


def run_analysis(settings: DemoSettings, checkpoint: Path, corpus_dir: Path, out_dir: Path, show_progress: bool = True):
    """`xlsr analyze` of the multilingual checkpoint over the pretraining languages (+ the held-out target)."""
    langs = list(settings.pretrain_langs) + ([settings.target] if settings.analysis_with_target else [])
    kwargs = {} if settings.analysis_seconds is None else {"seconds_per_lang": settings.analysis_seconds}
    return analyze(checkpoint, corpus_dir, out_dir, split="train", langs=langs, seed=settings.seed,
                   device=settings.device, show_progress=show_progress, **kwargs)


def live_pretrain_config(settings: DemoSettings, corpus_dir: Path, run_dir: Path) -> PretrainConfig:
    """The live run's resolved configuration. It sets no `langs`, so the run reads every language in corpus_dir:
    the pretraining languages and the target's audio too (its labels unused), as the report says."""
    overrides = {"recipe": settings.pretrain_recipe, "data": str(corpus_dir), "out": str(run_dir),
                 "max_updates": settings.pretrain_updates, "valid_split": "dev", "device": settings.device,
                 "log_every": max(1, settings.pretrain_updates // 30),
                 # warm up over the first eighth of this short run (the recipe's warmup is sized for its own length)
                 "warmup_updates": max(1, settings.pretrain_updates // 8), **settings.pretrain_settings}
    return load_config(PretrainConfig, [recipe_path(settings.pretrain_recipe)], overrides)


def live_pretrain_langs(cfg: PretrainConfig) -> list[str]:
    """The languages a pretraining run with `cfg` trains on (its `langs`, or every one with a train manifest)."""
    return list(split_manifests(cfg.data, cfg.train_split, cfg.langs))


def live_pretrain(settings: DemoSettings, corpus_dir: Path, run_dir: Path, curve_png: Path) -> dict:
    """A short `xlsr pretrain` run on the demo corpus, with its curve; first and last logged train values and the
    languages it read."""
    cfg = live_pretrain_config(settings, corpus_dir, run_dir)
    pretrain(cfg)
    stop_unless_finished(run_dir, cfg.max_updates, "live pretraining run")
    plot_training_curves(run_dir, curve_png)
    train = [r for r in read_log(run_dir / "log.jsonl") if r.get("split") == "train"]
    keys = ("update", "loss", "accuracy", "code_perplexity")
    return {"first": {k: train[0].get(k) for k in keys} if train else {},
            "last": {k: train[-1].get(k) for k in keys} if train else {},
            "max_tokens": cfg.max_tokens, "recipe": settings.pretrain_recipe, "curve": curve_png.name,
            "langs": live_pretrain_langs(cfg)}
