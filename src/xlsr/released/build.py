"""Re-create the released checkpoints from scratch: `xlsr synth` → `xlsr pretrain` → `xlsr plot` → release folder.

Each step runs as the very command a user would type (`python -m xlsr.cli.main ...`, the same entry point
as the `xlsr` script), and that command is what RECIPE.md and recipe.json record. The release folder
holds the last checkpoint of the run (config.json + model.safetensors, byte for byte), its training
curve, the machine-readable recipe.json and the human-readable RECIPE.md.

    python -m xlsr.released.build [--dest src/xlsr/released] [--work release_work] [--device cuda]

Re-running resumes: WORK/<name>/recipe_fingerprint.json records what its corpus/ and run/ were made for (the
corpus: languages, utterances, seed, synth options; the resolved pretraining configuration but for the machine
settings). When it matches the recipe, an existing corpus is kept and `xlsr pretrain` resumes its run; when it
differs or is missing, corpus/ and run/ are cleared first, so a changed recipe never resumes another run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from xlsr.atomic import write_text
from xlsr.cores import available_cores
from xlsr.data.augment import parse_augment
from xlsr.data.synth.corpus import SPLITS
from xlsr.errors import TrainingInterrupted, XlsrError
from xlsr.jsonl import parse_json
from xlsr.released.recipes import RELEASE_SYNTH, RELEASED_DIR, RELEASES, ReleaseRecipe, command_line
from xlsr.released.verify import MACHINE_KEYS, expected_pretrain_config
from xlsr.train.monitor import read_log
from xlsr.version import __version__

DEFAULT_WORK = "release_work"
FINGERPRINT = "recipe_fingerprint.json"  # in WORK/<name>/: the recipe its corpus/ and run/ were made for


def run_xlsr(args: list[str], log_file: Path | None = None, threads: int | None = None) -> float:
    """Run `xlsr <args>` in a child process (output to the terminal, or to `log_file`); its wall seconds.

    `threads` caps the child's CPU threads (OMP_NUM_THREADS), so that runs side by side share the cores
    instead of oversubscribing them."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "xlsr.cli.main", *args]
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if log_file is None:
        code = subprocess.call(cmd, env=env)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as f:
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    where = f" (see {log_file})" if log_file is not None else ""
    if code == 130:  # xlsr.cli.INTERRUPTED: Ctrl-C or SIGTERM stopped training; it saved and can resume
        raise TrainingInterrupted(f"`{command_line(args)}` was interrupted before its max_updates{where}; "
                        f"run the build again to resume it")
    if code != 0:
        raise XlsrError(f"`{command_line(args)}` failed with exit code {code}{where}")
    return time.perf_counter() - start


def corpus_matches(corpus: Path, recipe: ReleaseRecipe) -> bool:
    """Whether `corpus` already holds exactly this recipe's synthesized corpus (so it need not be redone): synth.json
    says so, and every language's manifests are there (a synth call stopped while rewriting a language has removed
    them, leaving its record)."""
    record = corpus / "synth.json"
    if not record.is_file():
        return False
    if not all((corpus / lang / f"{split}.jsonl").is_file() for lang in recipe.langs for split in SPLITS):
        return False
    try:
        data = parse_json(record.read_text())
    except json.JSONDecodeError:
        return False
    # a record without augment/voices was written before they existed: a clean corpus with the basic voices
    return (data.get("seed") == recipe.synth_seed and data.get("utts_per_lang") == recipe.utts_per_lang
            and list(data.get("languages", {})) == list(recipe.langs)
            and str(parse_augment(data.get("augment", "none"))) == str(parse_augment(RELEASE_SYNTH["augment"]))
            and data.get("voices", "basic") == RELEASE_SYNTH["voices"]
            and data.get("speakers_per_lang") == RELEASE_SYNTH["speakers_per_lang"])


def recipe_fingerprint(recipe: ReleaseRecipe) -> dict:
    """What a build of `recipe` trains on and how: its corpus (languages, utterances, seed, synth options) and its
    resolved `xlsr pretrain` configuration without the machine settings, with their sha256."""
    content = {"corpus": {"langs": list(recipe.langs), "utts_per_lang": recipe.utts_per_lang,
                          "seed": recipe.synth_seed, **RELEASE_SYNTH},
               "pretrain": {k: v for k, v in expected_pretrain_config(recipe).items() if k not in MACHINE_KEYS}}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return {"sha256": digest, **content}


def clear_unless_same_recipe(work: Path, recipe: ReleaseRecipe, log_file: Path | None = None) -> bool:
    """Keep WORK/<name>/{corpus,run} only when WORK/<name>/recipe_fingerprint.json says they were made for this
    very recipe; otherwise remove them (another recipe's run must not be resumed, nor its corpus reused) and
    record this recipe's fingerprint. Returns whether they were kept."""
    record, wanted = work / FINGERPRINT, recipe_fingerprint(recipe)
    try:
        if parse_json(record.read_text()).get("sha256") == wanted["sha256"]:
            return True
    except (OSError, ValueError, AttributeError):
        pass
    stale = [folder for folder in (work / "corpus", work / "run") if folder.exists()]
    for folder in stale:
        shutil.rmtree(folder)
    if stale:
        line = (f"{work}: {', '.join(f.name + '/' for f in stale)} made for another recipe or corpus "
                f"({'no ' + FINGERPRINT if not record.is_file() else FINGERPRINT + ' differs'}); cleared, starting over")
        if log_file is None:
            print(line, file=sys.stderr, flush=True)
        else:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "a") as f:
                f.write(line + "\n")
    work.mkdir(parents=True, exist_ok=True)
    write_text(record, json.dumps(wanted, indent=2, ensure_ascii=False) + "\n")
    return False


def machine_settings(device: str | None, precision: str | None, num_workers: int | None,
                     probe_data: list[str] | None = None) -> dict[str, str]:
    """`xlsr pretrain` settings that choose the hardware or what validation measures, not the recipe."""
    out = {}
    if probe_data:  # a short phone probe every 100 updates: the curve then shows whether the features transfer
        out["probe_every"] = "100"
        out["probe_data"] = ",".join(probe_data)
    if device:
        out["device"] = device
    if precision:
        out["precision"] = precision
    if num_workers is not None:
        out["num_workers"] = str(num_workers)
    return out


def describe_machine(device: str) -> dict:
    """The compute a run used: device kind and name, CPU cores, torch version."""
    kind = device if device not in ("", "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    info = {"device": kind, "cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}
    if kind.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def final_metrics(run_dir: Path) -> dict:
    """The last train record and the last overall validation record of a run's log.jsonl."""
    keep = ("update", "loss", "contrastive_loss", "accuracy", "code_perplexity", "prob_perplexity",
            "temperature", "audio_s_per_s", "feature_eff_dim", "feature_eff_dim_init", "context_eff_dim",
            "context_eff_dim_init", "input_eff_dim", "probe_feature_per", "probe_context_per")
    out = {}
    for record in read_log(run_dir / "log.jsonl"):
        if record.get("split") in ("train", "valid"):
            out[record["split"]] = {k: record[k] for k in keep if k in record}
    return out


def require_finished(run_dir: Path, pretrain_cfg: dict, final: dict) -> None:
    """One XlsrError line unless the run (its resolved config and `final_metrics`) trained to its max_updates."""
    wanted, reached = pretrain_cfg.get("max_updates"), final.get("train", {}).get("update")
    if reached != wanted:
        raise XlsrError(f"{run_dir}: pretraining stopped at update {reached} of {wanted} (interrupted?); "
                        f"run the build again to resume it")


# One piece (60 lines): synth -> pretrain -> plot -> release folder, each step a visible line in the order it runs.
def build_release(recipe: ReleaseRecipe, dest_root: str | Path = RELEASED_DIR, work_dir: str | Path = DEFAULT_WORK,
                  *, machine: dict[str, str] | None = None, synth_workers: int = 1, log_file: Path | None = None,
                  threads: int | None = None) -> Path:
    """Synthesize, pretrain and plot one release; write DEST/<name>/{config.json, model.safetensors, curve.png,
    recipe.json, RECIPE.md}. Returns the release folder."""


    work = Path(work_dir) / recipe.name
    corpus, run = work / "corpus", work / "run"
    clear_unless_same_recipe(work, recipe, log_file)  # a changed recipe or corpus starts over, never resumes
    staging = work / "release"  # assembled here, then moved into place: a failed build never half-replaces a release
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    synth_args = recipe.synth_args(corpus, synth_workers)
    pretrain_args = recipe.pretrain_args(corpus, run, machine)
    plot_args = ["plot", str(run)]  # draws RUN/curves.png, copied into the release as curve.png

    seconds = {"synth": 0.0}
    if not corpus_matches(corpus, recipe):
        seconds["synth"] = run_xlsr(synth_args, log_file, threads)
    seconds["pretrain"] = run_xlsr(pretrain_args, log_file, threads)
    pretrain_cfg, final = yaml.safe_load((run / "config.yaml").read_text()) or {}, final_metrics(run)
    require_finished(run, pretrain_cfg, final)  # a run stopped by Ctrl-C/SIGTERM exits cleanly: no release from it
    seconds["plot"] = run_xlsr(plot_args, log_file, threads)

    shutil.copyfile(run / "curves.png", staging / "curve.png")
    last = (run / "checkpoints" / "last").resolve()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(last / name, staging / name)
    synth = parse_json((corpus / "synth.json").read_text())
    audio = synth["summary"]["seconds"]
    record = {
        "name": recipe.name,
        "description": recipe.description,
        "xlsr_version": __version__,
        "commands": [command_line(a) for a in (synth_args, pretrain_args, plot_args)],
        "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()},
        "seed": recipe.seed,
        "corpus": {"langs": list(recipe.langs), "utts_per_lang": recipe.utts_per_lang, "seed": recipe.synth_seed,
                   **RELEASE_SYNTH,  # augment, voices, speakers_per_lang (the shipped releases record them in commands only)
                   "hours": {lang: round(sum(s.values()) / 3600, 4) for lang, s in audio.items()},
                   "train_hours": round(sum(s.get("train", 0.0) for s in audio.values()) / 3600, 4)},
        "pretrain": pretrain_cfg,
        "compute": {**describe_machine(pretrain_cfg.get("device", "auto")),
                    "wall_seconds": {k: round(v, 1) for k, v in seconds.items()}},
        "final": final,
    }
    (staging / "recipe.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    (staging / "RECIPE.md").write_text(recipe_markdown(record))

    dest = Path(dest_root) / recipe.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    if old.exists():
        shutil.rmtree(old)
    return dest


# One piece (56 lines): RECIPE.md's text in reading order, a template more than logic.
def recipe_markdown(record: dict) -> str:
    """RECIPE.md of a release: what it is, the exact commands, seed, corpus, compute, final metrics, curve."""
    corpus, cfg, compute = record["corpus"], record["pretrain"], record["compute"]
    hours = sum(corpus["hours"].values())
    device = compute.get("gpu") or f"{compute['cpu']} ({compute['cpu_cores']} cores)"
    walls = compute["wall_seconds"]
    accumulated = int(cfg.get("update_freq") or 1)  # batches accumulated per update
    batches = f"{accumulated} batches of " if accumulated > 1 else ""
    rows = [
        ("corpus", f"`xlsr synth`, {len(corpus['langs'])} language(s) ({', '.join(corpus['langs'])}) × "
                   f"{corpus['utts_per_lang']} utterances, seed {corpus['seed']}: {hours:.2f} h of audio, "
                   f"{corpus['train_hours']:.2f} h in the train split"),
        ("pretraining", f"`--recipe {cfg.get('recipe')}`, preset {cfg.get('preset')}, seed {cfg.get('seed')}, "
                        f"α = {cfg.get('alpha')}, {cfg.get('max_updates')} updates of {batches}at most "
                        f"{cfg.get('max_tokens')} samples, lr {cfg.get('lr')}, precision {cfg.get('precision')}"),
        ("compute", f"{compute['device']} — {device}; torch {compute['torch']}; pretraining "
                    f"{walls.get('pretrain', 0) / 60:.1f} min, synthesis {walls.get('synth', 0) / 60:.1f} min"),
    ]
    for split in ("train", "valid"):
        m = record["final"].get(split)
        if m:
            rows.append((f"final {split} (update {m.get('update')})",
                         ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "update")))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    commands = "\n".join(record["commands"])
    return f"""# {record['name']}

{record['description']}.

| | |
|---|---|
{table}

## Reproduce

```
{commands}
```

then copy `RUN/checkpoints/last/{{config.json,model.safetensors}}` here; `scripts/release_checkpoints.sh`
does all of it (and writes this file). Losses are in bits per masked frame; chance level is
log2(K + 1) for K distractors.

## Training curve

![training curve](curve.png)

## Use

```python
import xlsr
loaded = xlsr.load_pretrained("src/xlsr/released/{record['name']}")   # Wav2Vec2ForPreTraining
```

```
xlsr finetune --init src/xlsr/released/{record['name']} --train it/train.jsonl --dev it/dev.jsonl --labels phones --out RUN
```
"""


def recreate_released(dest_root: str | Path = RELEASED_DIR, work_dir: str | Path = DEFAULT_WORK, *,
                      names: list[str] | None = None, recipes: list[ReleaseRecipe] | None = None,
                      quick: bool = False, machine: dict[str, str] | None = None,
                      synth_workers: int = 1, parallel: bool = False) -> dict[str, Path]:
    """Build every release (or `names`, or the given `recipes`, e.g. another target's) from scratch into
    DEST/<name>/; `parallel` trains them side by side (one GPU holds both tiny runs), each logging to
    WORK/<name>/build.log."""
    if recipes is None:
        names = list(names or RELEASES)
        unknown = [n for n in names if n not in RELEASES]
        if unknown:
            raise XlsrError(f"--names: unknown release(s) {', '.join(unknown)}; known: {', '.join(RELEASES)}")
        recipes = [RELEASES[n] for n in names]
    recipes = [r.quick() if quick else r for r in recipes]
    if not parallel or len(recipes) == 1:
        return {r.name: build_release(r, dest_root, work_dir, machine=machine, synth_workers=synth_workers)
                for r in recipes}

    # The cores are split between the runs unless the user chose a thread count (measured on the 2-core CPU:
    # two one-thread runs side by side take ~23 min each; two-thread runs would contend for the same cores).
    threads = None if "OMP_NUM_THREADS" in os.environ else max(1, available_cores() // len(recipes))
    # Threads only wait on child processes here; the work happens in the `xlsr` processes.
    with ThreadPoolExecutor(len(recipes)) as pool:
        futures = {r.name: pool.submit(build_release, r, dest_root, work_dir, machine=machine,
                                       synth_workers=synth_workers, log_file=Path(work_dir) / r.name / "build.log",
                                       threads=threads)
                   for r in recipes}
        return {name: f.result() for name, f in futures.items()}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of scripts/release_checkpoints.sh."""
    p = argparse.ArgumentParser(prog="release_checkpoints", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", default=str(RELEASED_DIR), help="where the release folders go (default: the package's)")
    p.add_argument("--work", default=DEFAULT_WORK, help="corpora and run folders (default: release_work)")
    p.add_argument("--names", nargs="+", choices=list(RELEASES), help="only these releases (default: all)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the recipe's, i.e. auto)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default: the recipe's")
    p.add_argument("--num-workers", type=int, help="data-loading processes per run (default: the recipe's)")
    p.add_argument("--probe-data", nargs="+", metavar="MANIFEST",
                   help="labeled manifests of held-out languages: log a short phone probe every 100 updates")
    p.add_argument("--synth-workers", type=int, default=max(1, available_cores() // 2))
    p.add_argument("--parallel", action="store_true", help="train the releases at the same time (logs in WORK/<name>/build.log)")
    p.add_argument("--quick", action="store_true", help="a seconds-long build with the same layout (to test the machinery)")
    args = p.parse_args(argv)
    try:
        built = recreate_released(args.dest, args.work, names=args.names, quick=args.quick,
                                  machine=machine_settings(args.device, args.precision, args.num_workers, args.probe_data),
                                  synth_workers=args.synth_workers, parallel=args.parallel)
    except TrainingInterrupted as exc:  # as the stopped `xlsr pretrain`: 130, resumable
        print(f"release_checkpoints: interrupted: {exc}", file=sys.stderr)
        return 130
    except XlsrError as exc:
        print(f"release_checkpoints: error: {exc}", file=sys.stderr)
        return 2
    for name, folder in built.items():
        final = parse_json((folder / "recipe.json").read_text())["final"]
        m = final.get("valid") or final.get("train") or {}
        print(f"{name}: {folder}  (update {m.get('update')}, accuracy {m.get('accuracy', float('nan')):.3f}, "
              f"code perplexity {m.get('code_perplexity', float('nan')):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
