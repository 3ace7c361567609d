"""Reproduce the demo's choice of a peak fine-tuning rate per initialisation (DemoSettings.finetune_lr, issue 13).

XLS-R chose each model's fine-tuning rate on the dev set; so does the demo, by one rule written down before the runs
(docs/demo/investigation.md, ninth round): every initialisation (the released multilingual and monolingual
checkpoints, the random-weight model the demo draws) is fine-tuned exactly as `make demo` does at each rate of the
grid, with fine-tuning seeds 1 and 2, and the rate with the lowest mean best-dev-PER wins (a tie within 0.5 points
keeps the lower rate). The test set plays no part: this script never prints a test PER.

    python benchmarks/finetune_lr.py --out /tmp/lr                                  # the shipped grid, all three
    python benchmarks/finetune_lr.py --out /tmp/lr --inits monolingual              # one init (split across cores)
    python benchmarks/finetune_lr.py --out /tmp/lr --grid 1e-3,2e-3 --seeds 1,2,3

Synthesizes the demo's target corpus into OUT/corpus (skipped when it is there), then prints one line per run and
the table of mean best dev PER (± sd over seeds) per initialisation and rate, the rate the rule picks, and the
table shipped in FINETUNE_LR_SWEEP beside it. The default grid is 3 inits × 5 rates × 2 seeds = 30 runs (the sweep
behind the shipped table took 2.0-3.1 min per run, one thread beside another); with OMP_NUM_THREADS=1, two calls
with different --inits run side by side on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from xlsr.demo.finetuning import finetune_inits, random_init
from xlsr.demo.settings import FINETUNE_LR_SWEEP, INITS, DemoSettings, choose_rate, choose_releases
from xlsr.demo.stages import synthesize
from xlsr.errors import XlsrError
from xlsr.released.recipes import require_released


def rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the corpus and every run")
    parser.add_argument("--grid", type=rates, default=sorted(next(iter(FINETUNE_LR_SWEEP.values()))),
                        help="comma-separated peak rates (default: the shipped grid)")
    parser.add_argument("--seeds", default="1,2", help="fine-tuning seeds (default 1,2)")
    parser.add_argument("--inits", default=",".join(INITS), help=f"which of {','.join(INITS)} (default: all)")
    parser.add_argument("--target", default=DemoSettings().target, help="the demo's target language")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        names = [n for n in args.inits.split(",") if n]
        if unknown := [n for n in names if n not in INITS]:
            raise XlsrError(f"--inits: unknown {','.join(unknown)}; choose from {','.join(INITS)}")
        seeds = tuple(int(s) for s in args.seeds.split(","))
        settings = DemoSettings(target=args.target, device=args.device, finetune_seeds=seeds)
        settings.check()
        multi, mono = require_released(list(choose_releases(settings.target))).values()
    except (XlsrError, ValueError) as err:
        sys.exit(f"error: {err}")

    out = Path(args.out)
    corpus = out / "corpus"
    if not (corpus / settings.target / "dev.jsonl").is_file():  # the demo's target split, as `make demo` makes it
        synthesize(settings, corpus, target_only=True)
    scratch = random_init(multi, out / "random_init", settings.random_init_seed)
    inits = {"multilingual": multi, "monolingual": mono, "scratch": scratch}

    dev: dict[str, dict[float, list[float]]] = {name: {} for name in names}
    for lr in args.grid:
        at_lr = replace(settings, finetune_lr={name: lr for name in names})
        for r in finetune_inits(at_lr, {n: inits[n] for n in names}, corpus, out / f"lr{lr:g}",
                                on_run=lambda r, lr=lr: print(f"lr {lr:g} {r.name} seed {r.seed}: best dev PER "
                                                              f"{100 * r.dev_per:.1f}% ({r.seconds:.0f} s)", flush=True)):
            dev[r.name].setdefault(lr, []).append(100 * r.dev_per)

    print(f"\nmean best dev PER (%) over seeds {','.join(map(str, seeds))}, {settings.target}, "
          f"{settings.finetune_updates} updates; shipped table (FINETUNE_LR_SWEEP) in brackets")
    print("init".ljust(14) + "".join(f"{lr:>18g}" for lr in args.grid) + "    chosen  (shipped)")
    for name in names:
        means = {lr: statistics.fmean(v) for lr, v in dev[name].items()}
        cells = []
        for lr in args.grid:
            v = dev[name][lr]
            sd = f"±{statistics.stdev(v):.1f}" if len(v) > 1 else ""
            shipped = FINETUNE_LR_SWEEP.get(name, {}).get(lr)
            cells.append(f"{means[lr]:.1f}{sd} [{'-' if shipped is None else f'{shipped:.1f}'}]".rjust(18))
        shipped_choice = choose_rate(FINETUNE_LR_SWEEP[name]) if name in FINETUNE_LR_SWEEP else None
        print(name.ljust(14) + "".join(cells) + f"    {choose_rate(means):g}  ({shipped_choice:g})")


if __name__ == "__main__":
    main()
