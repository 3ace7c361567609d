"""`run_demo`: the stages in order into one folder, one log line per stage, demo.json at the end."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from xlsr.analysis import format_summary
from xlsr.atomic import write_text
from xlsr.config import config_to_dict
from xlsr.cores import available_cores
from xlsr.data.synth.espeak import require_espeak
from xlsr.demo.finetuning import (
    finetune_config,
    finetune_inits,
    peak_rates,
    random_init,
    shared_protocol,
    summarize,
)
from xlsr.demo.report import DemoResult, duration, lead_key, number, rate, write_report
from xlsr.demo.settings import DEMO_MARKER, OUTPUTS, STAGES, DemoSettings, choose_releases, require_held_out
from xlsr.demo.stages import eval_set_summary, live_pretrain, run_analysis, synthesize, synthesize_eval
from xlsr.devices import pick_device
from xlsr.errors import XlsrError
from xlsr.folder_lock import LOCK_FILE, folder_lock
from xlsr.released.build import recreate_released
from xlsr.released.recipes import release_recipes, require_released
from xlsr.train.monitor import finite_or_null


class StageLog:
    """One line per stage, on stdout and in DIR/demo.log, with its wall time."""

    def __init__(self, out_dir: Path, total: int, quiet: bool = False):
        self.path = out_dir / DEMO_MARKER
        self.total = total
        self.quiet = quiet
        self.index = 0
        self.path.write_text("")

    def begin(self, what: str) -> float:
        """Announce a stage; returns its start time."""
        self.index += 1
        if not self.quiet:
            print(f"[{self.index}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        return time.perf_counter()

    def note(self, message: str) -> None:
        """A line within the current stage (stderr only)."""
        if not self.quiet:
            print(f"    {message}", file=sys.stderr, flush=True)

    def done(self, stage: str, t0: float, message: str) -> float:
        """The stage's one line; returns its seconds."""
        seconds = time.perf_counter() - t0
        line = f"[{self.index}/{self.total}] {stage}: {message} ({duration(seconds)})"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if not self.quiet:
            print(line, flush=True)
        return seconds


_STAGE_LINE = re.compile(r"\[\d+/\d+\] ")  # StageLog's: "[2/5] finetune: ..."
_STAGE_LINE_START = re.compile(r"\[(\d+(/(\d+(\]( .*)?)?)?)?)?")  # one cut anywhere: "[", "[2/", "[2/5] fine"


def _demo_log(path: Path) -> bool:
    """Whether `path` is a demo's log: empty (a demo stopped in its first stage) or stage lines only, so that a file
    of the user's own that happens to be called demo.log does not let the demo remove folders beside it."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:  # missing, a folder, unreadable
        return False
    try:
        lines = head.decode("utf-8", errors="strict" if len(head) < 1 << 16 else "ignore").splitlines()
    except UnicodeDecodeError:
        return False
    if lines and (len(head) == 1 << 16 or not head.endswith(b"\n")):  # read in part, or the demo killed mid-line:
        if not _STAGE_LINE_START.fullmatch(lines.pop()):  # the last line may be cut, but only a stage line's start
            return False  # (a one-line file of the user's own, without a newline, is not the demo's)
    return all(_STAGE_LINE.match(line) for line in lines)


def check_out_dir(out_dir: str | Path, *, locked: bool = False) -> Path:
    """DIR when it is new, empty or holds an earlier demo; anything else is an XlsrError. Called before the demo takes
    DIR's lock (a folder of the user's own is refused untouched, a `.lock` of theirs too) and again once it holds it
    (`locked`: its own lock file is then no content)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise XlsrError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(not (locked and p.name == LOCK_FILE) for p in out.iterdir()) \
            and not _demo_log(out / DEMO_MARKER):
        raise XlsrError(f"--out {out}: folder is not empty and holds no earlier demo ({DEMO_MARKER} as the demo "
                        f"writes it); choose a new or empty folder")
    return out


def prepare_out_dir(out_dir: str | Path) -> Path:
    """DIR, empty or holding an earlier demo (whose outputs are removed), with the demo's lock on it; anything else is
    an XlsrError."""
    out = check_out_dir(out_dir, locked=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # only what an earlier demo wrote; released/ and release_work/ (--full) are kept
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return out


# One piece (58 lines): the demo's stages in order, each a visible line with its log entry, as the training loop is.
def run_demo(out_dir: str | Path, settings: DemoSettings | None = None, *, released_dir: str | Path | None = None,
             full: bool = False, quick_release: bool = False, release_work: str | Path | None = None,
             show_progress: bool = True, quiet: bool = False) -> DemoResult:
    """The whole demo into `out_dir`; `full` first re-creates the released checkpoints (without the target)."""
    settings = settings or DemoSettings()
    if full and released_dir is not None:
        raise XlsrError(f"--released {released_dir}: --full re-creates the releases into DIR/released and uses "
                        f"those; leave out one of the two")
    settings.check()
    settings = replace(settings, device=str(pick_device(settings.device)))  # one line for a bad --device
    settings = replace(settings, finetune_workers=settings.workers())  # demo.json records how many ran at a time
    # Every refusal comes before any work (and before an earlier demo's outputs are removed): a target the multilingual
    # release was pretrained on (by its name, then by what its recipe.json records), a missing release, no espeak-ng.
    names = choose_releases(settings.target, released_dir, full)
    if not full:
        released = require_released(list(names), released_dir)
        langs = require_held_out(settings.target, released[names[0]])
    require_espeak()  # the synthesis (--full: the releases' too) needs it
    # The one fine-tuning configuration (a bad finetune_settings key fails here, before anything is written).
    shared = shared_protocol(finetune_config(settings, Path(out_dir) / "corpus", "none", 0, Path(out_dir)))
    check_out_dir(out_dir)  # a folder of the user's own is refused before a lock file is written into it
    # One demo at a time in DIR: a second one's prepare_out_dir would remove the first one's outputs under it.
    with folder_lock(out_dir, "another demo is writing into it; wait for it to end or choose another --out"):
        out = prepare_out_dir(out_dir)
        log = StageLog(out, total=len(STAGES) + int(full), quiet=quiet)
        result = DemoResult(out_dir=out, settings=config_to_dict(settings), finetune_config=shared,
                            finetune_lr=peak_rates(settings, out / "corpus"))

        if full:
            t0 = log.begin(f"re-creating the released checkpoints from scratch without `{settings.target}` "
                           f"(xlsr synth + pretrain + plot)")
            recipes = list(release_recipes(settings.target).values())
            released = recreate_released(out / "released", release_work or out / "release_work", recipes=recipes,
                                         quick=quick_release, parallel=True, machine={"device": settings.device},
                                         synth_workers=max(1, available_cores() // len(recipes)))  # 1 each on 2 cores
            result.seconds["release"] = log.done("release", t0,
                                                 ", ".join(f"{n} → {p}" for n, p in released.items()))
            langs = require_held_out(settings.target, released[names[0]])
        result.released = {name: str(released[name]) for name in names}
        result.release_langs = langs

        corpus = out / "corpus"
        t0 = log.begin(f"synthesizing {1 + len(settings.pretrain_langs)} languages")
        result.corpus = synthesize(settings, corpus, show_progress)
        held_out = synthesize_eval(settings, out / "corpus_eval", show_progress)
        result.eval_set = eval_set_summary(held_out)
        tgt = result.corpus[settings.target]
        others = sum(sum(v.values()) for lang, v in result.corpus.items() if lang != settings.target)
        result.seconds["synth"] = log.done(
            "synth", t0, f"{settings.target}: {tgt['train']:.1f} min labeled train, {tgt['dev']:.1f} dev, "
            f"{tgt['test']:.1f} test" + (f", {result.eval_set['minutes']:.1f} held-out test" if held_out else "") +
            f"; {len(settings.pretrain_langs)} other languages: {others:.1f} min")

        result.seconds["finetune"] = finetune_stage(settings, released[names[0]], released[names[1]], corpus, out,
                                                    log, result, held_out)

        result.seconds["analysis"] = analysis_stage(settings, released[names[0]], corpus, out, log, result,
                                                    show_progress)

        t0 = log.begin(f"live pretraining run ({settings.pretrain_recipe}, {settings.pretrain_updates} updates)")
        result.pretrain = live_pretrain(settings, corpus, out / "pretrain_live", out / "pretrain_curve.png")
        first, last = result.pretrain["first"], result.pretrain["last"]
        result.seconds["pretrain"] = log.done(
            "pretrain", t0, f"loss {number(first.get('loss'))} → {number(last.get('loss'))} bits, accuracy "
            f"{number(first.get('accuracy'), 3)} → {number(last.get('accuracy'), 3)} "
            f"(updates {first.get('update')}–{last.get('update')})")

        t0 = log.begin("writing the report")
        result.report = write_report(result)
        result.seconds["report"] = log.done("report", t0, str(result.report))
        write_text(out / "demo.json", demo_json(result))
    return result


def demo_json(result: DemoResult) -> str:
    """demo.json's text: all of `result`, a non-finite figure (an inf or NaN PER) as null, since JSON has no inf."""
    return json.dumps(finite_or_null(config_to_dict(result)), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def finetune_stage(settings: DemoSettings, multilingual: Path, monolingual: Path, corpus: Path, out: Path,
                   log: StageLog, result: DemoResult, held_out: list[Path] = ()) -> float:
    """Stage 2: every init × every seed under one configuration, each scored on the test split and the held-out
    set; fills result.finetune*; returns its seconds."""
    runs = len(settings.finetune_seeds)
    workers = settings.workers()
    t0 = log.begin(f"fine-tuning three tiny models on {settings.target} phones, {runs} seeds each "
                   f"({settings.finetune_updates} updates per run" +
                   (f"; {workers} runs at a time)" if workers > 1 else ")"))
    scratch = random_init(multilingual, out / "finetune" / "random_init", settings.random_init_seed)
    inits = {"multilingual": multilingual, "monolingual": monolingual, "scratch": scratch}
    result.finetune = finetune_inits(
        settings, inits, corpus, out / "finetune", eval_manifests=held_out,
        on_run=lambda r: log.note(f"{r.name} seed {r.seed}: test PER {100 * r.test_per:.1f}%" +
                                  ("" if r.eval_per is None else f", held-out {100 * r.eval_per:.1f}%") +
                                  f" ({duration(r.seconds)})"),
        on_trained=lambda r: log.note(f"{r.name} seed {r.seed}: trained" +
                                      ("" if r.dev_per is None else f", best dev PER {100 * r.dev_per:.1f}%") +
                                      f" ({duration(r.seconds)}); scored once every run has trained"))
    result.finetune_summary = summarize(result.finetune)
    key = lead_key(result.finetune)
    return log.done("finetune", t0, ("held-out test PER " if key == "eval_per" else "test PER ") + ", ".join(
        f"{name} {rate(s, key)}" for name, s in result.finetune_summary.items()))


def analysis_stage(settings: DemoSettings, checkpoint: Path, corpus: Path, out: Path, log: StageLog,
                   result: DemoResult, show_progress: bool) -> float:
    """Stage 3: the shared-units analysis of the multilingual checkpoint; fills result.analysis; returns its seconds."""
    t0 = log.begin(f"analysing the quantizer's units of {checkpoint.name}")
    report = run_analysis(settings, checkpoint, corpus, out / "analysis", show_progress)
    sharing = report.summary["sharing"]
    result.analysis = {"summary_table": format_summary(report.summary), "files": report.summary.get("files", {}),
                       "codewords_used": report.summary["codewords_used"],
                       "num_codewords": report.summary["num_codewords"],
                       "shared_codeword_share": sharing["shared_codeword_share"],
                       "shared_frame_share": sharing["shared_frame_share"],
                       "nearest": {lang: s["nearest"] for lang, s in report.summary["per_language"].items()}}
    return log.done("analysis", t0, f"{report.summary['codewords_used']} codewords used, "
                    f"{100 * sharing['shared_codeword_share']:.0f}% of them shared by ≥ 2 languages "
                    f"({100 * sharing['shared_frame_share']:.0f}% of frames)")
