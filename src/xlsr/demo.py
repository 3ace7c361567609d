"""The demo: XLSR's two findings reproduced on the embedded corpus, from the same library calls a user makes.

    synthesize (target + pretraining languages) → fine-tune three tiny models on the target's labeled
    phones (from the released multilingual checkpoint, the released monolingual one, from scratch) →
    PER on the target's test set → shared-units analysis of the multilingual checkpoint → a short live
    pretraining run → DIR/report.md (+ demo.json, demo.log)

`run_demo(out_dir)` is `xlsr demo --out DIR`; `DemoSettings.quick()` is `--quick` (seconds, for tests);
`full=True` first re-creates the released checkpoints from scratch (xlsr.released.build) into DIR/released.
Every figure in the report is what this run measured.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from xlsr.errors import XlsrError
from xlsr.released.recipes import CLEAN_SYNTH, MULTILINGUAL_LANGS, PRETRAIN_RECIPE, TARGET

MULTILINGUAL = "tiny-multilingual"
MONOLINGUAL = f"tiny-monolingual-{TARGET}"
STAGES = ("synth", "finetune", "analysis", "pretrain", "report")
DEMO_MARKER = "demo.log"  # a folder holding this was written by the demo, so the demo may replace its outputs
OUTPUTS = ("corpus", "finetune", "analysis", "pretrain_live", "pretrain_curve.png", "report.md", "demo.json",
           DEMO_MARKER)


@dataclass
class DemoSettings:
    """Sizes of every stage; the defaults fit a 2-core CPU in about 20 minutes."""

    target: str = TARGET  # held out of the multilingual checkpoint; fine-tuned and tested on
    pretrain_langs: tuple[str, ...] = MULTILINGUAL_LANGS  # the multilingual checkpoint's languages
    target_utts: int = 150  # target utterances, 80/10/10 → ~6 min of labeled training audio
    other_utts: int = 12  # per pretraining language: what the analysis and the live run read
    seed: int = 0  # corpus seed; the released corpora used another, so the target's test set is unseen
    # synthesize_corpus options: the clean corpus the released checkpoints were pretrained on (not yet the
    # realistic default of `xlsr synth`; to change together with the releases)
    corpus: dict = field(default_factory=lambda: dict(CLEAN_SYNTH))
    synth_workers: int = 2
    # 150 updates left all three models in CTC's blank-dominated first stage (PER 63-96%, mostly deletions)
    finetune_updates: int = 800
    finetune_seed: int = 1  # the same for the three fine-tuning runs
    # 7.5 s of audio per batch; the pretrained CNNs are frozen and their output cached (~0.2 s per update on the
    # 2-core CPU), the scratch model trains its CNN (~0.3 s per update)
    finetune_settings: dict = field(default_factory=lambda: {"max_tokens": 120_000})  # further FinetuneConfig keys
    analysis_seconds: float | None = 20.0  # audio per language for the analysis (None: the analysis default)
    analysis_with_target: bool = True  # also place the held-out target among the pretraining languages
    pretrain_recipe: str = PRETRAIN_RECIPE
    pretrain_updates: int = 300  # the live run: ~3 minutes; the recipe leaves chance level after ~100 updates
    # fp32: on the 2-core CPU, eager bf16 pretraining steps measured ~2.7x slower than fp32
    pretrain_settings: dict = field(default_factory=lambda: {"precision": "fp32"})  # further PretrainConfig keys
    device: str = "auto"  # auto: this machine's GPU if it has one, else the CPU

    @classmethod
    def quick(cls) -> DemoSettings:
        """Seconds instead of minutes: two pretraining languages, a few updates each (for tests)."""
        return cls(pretrain_langs=MULTILINGUAL_LANGS[:2], target_utts=12, other_utts=6, synth_workers=1,
                   finetune_updates=3, finetune_settings={"max_tokens": 160_000, "valid_every": 0,
                                                          "save_every": 0, "tensorboard": False},
                   analysis_seconds=4.0, pretrain_updates=3,
                   pretrain_settings={"precision": "fp32", "max_tokens": 160_000, "min_sample_size": 8000, "valid_every": 0,
                                      "save_every": 0, "num_workers": 0, "tensorboard": False})

    def check(self) -> None:
        """One XlsrError line for settings the demo cannot run with."""
        from xlsr.data.synth.languages import get_language

        for lang in (self.target, *self.pretrain_langs):
            get_language(lang)
        if self.target in self.pretrain_langs:
            raise XlsrError(f"pretrain_langs: the target {self.target!r} must be held out of the pretraining languages")
        if len(self.pretrain_langs) < 2 and self.analysis_with_target is False:
            raise XlsrError("pretrain_langs: the analysis compares languages and needs at least 2")
        if self.target_utts < 10:
            raise XlsrError(f"target_utts: need at least 10 target utterances for train/dev/test, got {self.target_utts}")


@dataclass
class FinetuneResult:
    """One fine-tuning run and its error rates."""

    name: str  # multilingual | monolingual | scratch
    init: str  # checkpoint folder, or "none"
    run_dir: str
    test_per: float
    dev_per: float | None
    counts: dict  # substitutions, deletions, insertions, ref_len on the test set
    seconds: float


@dataclass
class DemoResult:
    """What the demo measured and where it wrote it."""

    out_dir: Path
    settings: dict
    corpus: dict = field(default_factory=dict)
    finetune: list[FinetuneResult] = field(default_factory=list)
    analysis: dict = field(default_factory=dict)
    pretrain: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    released: dict = field(default_factory=dict)
    report: Path | None = None


class StageLog:
    """One line per stage, on stdout and in DIR/demo.log, with its wall time."""

    def __init__(self, out_dir: Path, total: int, quiet: bool = False):
        self.path = out_dir / DEMO_MARKER
        self.total = total
        self.quiet = quiet
        self.index = 0
        self.start = time.perf_counter()
        self.path.write_text("")

    def begin(self, what: str) -> float:
        """Announce a stage; returns its start time."""
        self.index += 1
        if not self.quiet:
            print(f"[{self.index}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        return time.perf_counter()

    def done(self, stage: str, t0: float, message: str) -> float:
        """The stage's one line; returns its seconds."""
        seconds = time.perf_counter() - t0
        line = f"[{self.index}/{self.total}] {stage}: {message} ({_duration(seconds)})"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if not self.quiet:
            print(line, flush=True)
        return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def prepare_out_dir(out_dir: str | Path) -> Path:
    """DIR, empty or holding an earlier demo (whose outputs are removed); anything else is an XlsrError."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise XlsrError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
        raise XlsrError(f"--out {out}: folder is not empty and holds no earlier demo ({DEMO_MARKER}); "
                        f"choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # only what an earlier demo wrote; released/ and release_work/ (--full) are kept
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return out


# --- stages -------------------------------------------------------------------------------------------

def synthesize(settings: DemoSettings, corpus_dir: Path, show_progress: bool = True) -> dict:
    """Synthesize the target (labeled, for fine-tuning) and the pretraining languages (for analysis and
    the live run) into corpus_dir/<lang>/{train,dev,test}.jsonl; returns minutes of audio per language/split."""
    from xlsr.data.synth import synthesize_corpus

    total = {}
    # The target gets many more utterances than the others, hence two calls into the same folder.
    for langs, n in (([settings.target], settings.target_utts), (list(settings.pretrain_langs), settings.other_utts)):
        summary = synthesize_corpus(corpus_dir, langs, n, seed=settings.seed, workers=settings.synth_workers,
                                    show_progress=show_progress, **settings.corpus)
        total.update({lang: {split: round(s / 60, 3) for split, s in splits.items()}
                      for lang, splits in summary.seconds.items()})
    return total


def scratch_architecture(released_folder: Path) -> dict:
    """`model` overrides that give `--init none` the released checkpoint's architecture (CNN normalization,
    sizes, codebook), with fine-tuning's own training-time defaults: the from-scratch baseline then differs
    from the pretrained models in its initial weights only."""
    from xlsr.interop.load import read_checkpoint_config
    from xlsr.model import Wav2Vec2Config
    from xlsr.train.finetune import finetune_model_defaults

    # config.json alone: the weights are not needed. The round trip through Wav2Vec2Config fills fields
    # an older checkpoint lacks with their defaults, as loading the model would.
    released = Wav2Vec2Config.from_dict(read_checkpoint_config(released_folder).get("model") or {})
    return {**released.to_dict(), **finetune_model_defaults()}


def finetune_one(name: str, init: str, settings: DemoSettings, corpus_dir: Path, run_dir: Path,
                 model: dict | None = None) -> FinetuneResult:
    """Fine-tune on the target's train split (best checkpoint by dev PER), then measure PER on its test split."""
    from xlsr.config import load_config
    from xlsr.train.finetune import FinetuneConfig, finetune

    target = corpus_dir / settings.target
    overrides = {"train": [str(target / "train.jsonl")], "dev": [str(target / "dev.jsonl")], "init": init,
                 "labels": "phones", "out": str(run_dir), "max_updates": settings.finetune_updates,
                 "seed": settings.finetune_seed, "device": settings.device,
                 **({"model": model} if model else {}), **settings.finetune_settings}
    start = time.perf_counter()
    run = finetune(load_config(FinetuneConfig, None, overrides))
    seconds = time.perf_counter() - start
    best = run / "checkpoints" / "best"
    model = best if (best / "config.json").is_file() else run / "checkpoints" / "last"
    test = evaluate_per(model, target / "test.jsonl", settings.device)
    return FinetuneResult(name=name, init=init, run_dir=str(run), test_per=test["per"], dev_per=best_dev_per(run),
                          counts=test["counts"], seconds=seconds)


def evaluate_per(model_dir: Path, manifest: Path, device: str = "cpu") -> dict:
    """PER (word boundaries excluded) of a fine-tuned checkpoint on a manifest, greedy decoding, with edit counts."""
    import torch

    from xlsr.data.audio import load_audio
    from xlsr.data.manifest import read_manifest
    from xlsr.decode.greedy import greedy_decode
    from xlsr.interop.load import load_pretrained
    from xlsr.text.metrics import corpus_counts

    loaded = load_pretrained(model_dir)
    model = loaded.model.to(device).eval()
    refs, hyps = [], []
    with torch.no_grad():
        for utt in read_manifest(manifest):
            x = torch.from_numpy(load_audio(utt.audio, normalize=loaded.config.normalize_waveform))[None].to(device)
            hyp = greedy_decode(model(x).logits.float().cpu())[0]
            hyps.append(" ".join(loaded.vocab[i] for i in hyp.token_ids))
            refs.append(utt.phones or "")
    counts = corpus_counts(refs, hyps, "phone")
    return {"per": counts.rate, "counts": counts.to_dict()}


def best_dev_per(run_dir: Path) -> float | None:
    """The lowest overall dev PER in a fine-tuning run's log (what picked checkpoints/best)."""
    from xlsr.train.monitor import read_log

    values = [r["per"] for r in read_log(run_dir / "log.jsonl") if r.get("split") == "valid" and "per" in r]
    return min(values) if values else None


def live_pretrain(settings: DemoSettings, corpus_dir: Path, run_dir: Path, curve_png: Path) -> dict:
    """A short `xlsr pretrain` run on the demo corpus, with its curve; first and last logged train values."""
    from xlsr.config import load_config
    from xlsr.train.curves import plot_training_curves
    from xlsr.train.monitor import read_log
    from xlsr.train.pretrain import PretrainConfig, pretrain, recipe_path

    overrides = {"recipe": settings.pretrain_recipe, "data": str(corpus_dir), "out": str(run_dir),
                 "max_updates": settings.pretrain_updates, "valid_split": "dev", "device": settings.device,
                 "log_every": max(1, settings.pretrain_updates // 30),
                 # warm up over the first eighth of this short run (the recipe's warmup is sized for its own length)
                 "warmup_updates": max(1, settings.pretrain_updates // 8), **settings.pretrain_settings}
    cfg = load_config(PretrainConfig, [recipe_path(settings.pretrain_recipe)], overrides)
    pretrain(cfg)
    plot_training_curves(run_dir, curve_png)
    train = [r for r in read_log(run_dir / "log.jsonl") if r.get("split") == "train"]
    keys = ("update", "loss", "accuracy", "code_perplexity")
    return {"first": {k: train[0].get(k) for k in keys} if train else {},
            "last": {k: train[-1].get(k) for k in keys} if train else {},
            "max_tokens": cfg.max_tokens, "recipe": settings.pretrain_recipe, "curve": curve_png.name}


def run_analysis(settings: DemoSettings, checkpoint: Path, corpus_dir: Path, out_dir: Path, show_progress: bool = True):
    """`xlsr analyze` of the multilingual checkpoint over the pretraining languages (+ the held-out target)."""
    from xlsr.analysis import analyze

    langs = list(settings.pretrain_langs) + ([settings.target] if settings.analysis_with_target else [])
    kwargs = {} if settings.analysis_seconds is None else {"seconds_per_lang": settings.analysis_seconds}
    return analyze(checkpoint, corpus_dir, out_dir, split="train", langs=langs, seed=settings.seed,
                   device=settings.device, show_progress=show_progress, **kwargs)


# --- the pipeline -------------------------------------------------------------------------------------

def run_demo(out_dir: str | Path, settings: DemoSettings | None = None, *, released_dir: str | Path | None = None,
             full: bool = False, quick_release: bool = False, release_work: str | Path | None = None,
             show_progress: bool = True, quiet: bool = False) -> DemoResult:
    """The whole demo into `out_dir`; `full` first re-creates the released checkpoints into DIR/released."""
    from xlsr.devices import pick_device
    from xlsr.released.recipes import require_released

    settings = settings or DemoSettings()
    settings.check()
    settings = replace(settings, device=str(pick_device(settings.device)))  # one line for a bad --device
    names = [MULTILINGUAL, MONOLINGUAL]
    if not full:
        released = require_released(names, released_dir)  # fail in one line before any work
    out = prepare_out_dir(out_dir)
    log = StageLog(out, total=len(STAGES) + int(full), quiet=quiet)
    result = DemoResult(out_dir=out, settings=_plain(asdict(settings)))

    if full:
        from xlsr.released.build import recreate_released

        t0 = log.begin("re-creating the released checkpoints from scratch (xlsr synth + pretrain + plot)")
        released = recreate_released(out / "released", release_work or out / "release_work", names=names,
                                     quick=quick_release, parallel=True, machine={"device": settings.device},
                                     synth_workers=max(1, (os.cpu_count() or 2) // len(names)))  # 1 each on 2 cores
        result.seconds["release"] = log.done("release", t0, ", ".join(f"{n} → {p}" for n, p in released.items()))
    result.released = {name: str(path) for name, path in released.items()}

    corpus = out / "corpus"
    t0 = log.begin(f"synthesizing {1 + len(settings.pretrain_langs)} languages")
    result.corpus = synthesize(settings, corpus, show_progress)
    tgt = result.corpus[settings.target]
    others = sum(sum(v.values()) for lang, v in result.corpus.items() if lang != settings.target)
    result.seconds["synth"] = log.done(
        "synth", t0, f"{settings.target}: {tgt['train']:.1f} min labeled train, {tgt['dev']:.1f} dev, "
        f"{tgt['test']:.1f} test; {len(settings.pretrain_langs)} other languages: {others:.1f} min")

    t0 = log.begin(f"fine-tuning three tiny models on {settings.target} phones ({settings.finetune_updates} updates each)")
    inits = [("multilingual", str(released[MULTILINGUAL]), None), ("monolingual", str(released[MONOLINGUAL]), None),
             ("scratch", "none", scratch_architecture(released[MULTILINGUAL]))]
    for name, init, model in inits:
        result.finetune.append(finetune_one(name, init, settings, corpus, out / "finetune" / name, model))
    result.seconds["finetune"] = log.done(
        "finetune", t0, "test PER " + ", ".join(f"{r.name} {100 * r.test_per:.1f}%" for r in result.finetune))

    t0 = log.begin(f"analysing the quantizer's units of {MULTILINGUAL}")
    report = run_analysis(settings, released[MULTILINGUAL], corpus, out / "analysis", show_progress)
    sharing = report.summary["sharing"]
    result.analysis = {"summary_table": _format_analysis(report.summary), "files": report.summary.get("files", {}),
                       "codewords_used": report.summary["codewords_used"],
                       "num_codewords": report.summary["num_codewords"],
                       "shared_codeword_share": sharing["shared_codeword_share"],
                       "shared_frame_share": sharing["shared_frame_share"],
                       "nearest": {lang: s["nearest"] for lang, s in report.summary["per_language"].items()}}
    result.seconds["analysis"] = log.done(
        "analysis", t0, f"{report.summary['codewords_used']} codewords used, "
        f"{100 * sharing['shared_codeword_share']:.0f}% of them shared by ≥ 2 languages "
        f"({100 * sharing['shared_frame_share']:.0f}% of frames)")

    t0 = log.begin(f"live pretraining run ({settings.pretrain_recipe}, {settings.pretrain_updates} updates)")
    result.pretrain = live_pretrain(settings, corpus, out / "pretrain_live", out / "pretrain_curve.png")
    first, last = result.pretrain["first"], result.pretrain["last"]
    result.seconds["pretrain"] = log.done(
        "pretrain", t0, f"loss {_f(first.get('loss'))} → {_f(last.get('loss'))} bits, accuracy "
        f"{_f(first.get('accuracy'), 3)} → {_f(last.get('accuracy'), 3)} (updates {first.get('update')}–{last.get('update')})")

    t0 = log.begin("writing the report")
    result.report = write_report(result)
    result.seconds["report"] = log.done("report", t0, str(result.report))
    (out / "demo.json").write_text(json.dumps(_plain(asdict(result)), indent=2, ensure_ascii=False) + "\n")
    return result


# --- the report ---------------------------------------------------------------------------------------

LABELS = {"multilingual": f"{MULTILINGUAL} (pretrained on other languages, target held out)",
          "monolingual": f"{MONOLINGUAL} (pretrained on the target's unlabeled audio)",
          "scratch": "none (random weights, `--init none`, the same architecture)"}


def per_table(results: list[FinetuneResult]) -> str:
    """The PER table (Markdown; also readable in a terminal)."""
    rows = ["| initialisation | test PER | best dev PER | sub / del / ins of ref | fine-tune time |",
            "|---|---:|---:|---|---:|"]
    for r in results:
        c = r.counts
        dev = "–" if r.dev_per is None else f"{100 * r.dev_per:.1f}%"
        rows.append(f"| {LABELS.get(r.name, r.name)} | {100 * r.test_per:.1f}% | {dev} | "
                    f"{c.get('substitutions')} / {c.get('deletions')} / {c.get('insertions')} of {c.get('ref_len')} | "
                    f"{_duration(r.seconds)} |")
    return "\n".join(rows)


def comparison(results: list[FinetuneResult]) -> str:
    """One sentence: multilingual against monolingual initialisation, as measured."""
    by = {r.name: r.test_per for r in results}
    if "multilingual" not in by or "monolingual" not in by:
        return ""
    multi, mono = by["multilingual"], by["monolingual"]
    if multi == mono:
        return f"Multilingual and monolingual initialisation tie at {100 * multi:.1f}% PER."
    word = "lower" if multi < mono else "higher"
    rel = abs(mono - multi) / mono if mono > 0 else float("nan")
    return (f"The multilingual initialisation gives a {word} PER than the monolingual one "
            f"({100 * multi:.1f}% against {100 * mono:.1f}%, {100 * rel:.0f}% relative).")


def write_report(result: DemoResult) -> Path:
    """DIR/report.md: the PER table, the analysis pictures and table, the live pretraining curve."""
    s = result.settings
    out = result.out_dir
    tgt = result.corpus[s["target"]]
    ranked = sorted(result.finetune, key=lambda r: r.test_per)
    files = result.analysis.get("files", {})
    pictures = "\n".join(f"![{name}](analysis/{files[name]})" for name in ("pca", "dendrogram", "similarity", "sharing")
                         if name in files)
    released = "\n".join(f"- `{name}`: {path} (see its RECIPE.md)" for name, path in result.released.items())
    stage_times = " · ".join(f"{k} {_duration(v)}" for k, v in result.seconds.items())
    first, last = result.pretrain.get("first", {}), result.pretrain.get("last", {})
    held_out = (f"; `{s['target']}` was held out of this checkpoint's pretraining and is placed among the others"
                if s.get("analysis_with_target") else "")
    text = f"""# xlsr demo

Target language `{s['target']}`: {tgt['train']:.1f} min of labeled training audio, {tgt['dev']:.1f} min dev,
{tgt['test']:.1f} min test (synthesized with espeak-ng, seed {s['seed']}). Pretraining languages of the
multilingual checkpoint: {', '.join(s['pretrain_langs'])}.

Released checkpoints used:
{released}

## 1. Fine-tuning on the target: phone error rate on its test set

Three `tiny` models fine-tuned with identical settings and seed ({s['finetune_updates']} updates, CTC on
phones, best checkpoint by dev PER), differing only in their initialisation.

{per_table(result.finetune)}

Lowest test PER: **{ranked[0].name}**. {comparison(result.finetune)} These are the figures this run
measured; the paper's finding is that multilingual pretraining beats monolingual pretraining on a
low-resource language (spec §8.1).

## 2. Shared discrete units of the multilingual checkpoint

The quantizer run in eval mode over the same seconds of audio per language (`xlsr analyze`){held_out}.

```
{result.analysis.get('summary_table', '')}
```

{pictures}

## 3. A live pretraining run

`xlsr pretrain --recipe {result.pretrain.get('recipe')}` for {s['pretrain_updates']} updates on this demo's
corpus: loss {_f(first.get('loss'))} → {_f(last.get('loss'))} bits per masked frame, contrastive accuracy
{_f(first.get('accuracy'), 3)} → {_f(last.get('accuracy'), 3)}.

![live pretraining curve]({result.pretrain.get('curve', 'pretrain_curve.png')})

## Time

{stage_times}

Reproduce: `xlsr demo --out DIR` (or `make demo`); `xlsr demo --full --out DIR` re-creates the released
checkpoints first. Everything measured is in demo.json.
"""
    path = out / "report.md"
    path.write_text(text)
    return path


def _format_analysis(summary: dict) -> str:
    from xlsr.analysis import format_summary

    return format_summary(summary)


def _f(value, digits: int = 2) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def _plain(obj):
    """JSON-ready copy: Paths to strings, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


__all__ = ["DemoResult", "DemoSettings", "FinetuneResult", "per_table", "run_demo", "write_report"]
