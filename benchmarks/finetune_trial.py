"""Fine-tune a pretraining trial's checkpoint exactly as `make demo` fine-tunes the released multilingual model.

A probe of frozen layers can call a trial level with the release while fine-tuning puts it 7 points behind
(docs/pretrain_recipe.md, round 8), so a candidate recipe is fine-tuned before its second pretraining seed runs. This
runs the demo's protocol (its target corpus, updates, freezing, the multilingual model's peak rate unless `--lr`
says otherwise) for each checkpoint and fine-tuning seed, and prints best dev PER and test PER per run and their
mean ± sd per checkpoint.

    python benchmarks/finetune_trial.py --out /tmp/ft --model T14=T14/checkpoints/update_0001600
    python benchmarks/finetune_trial.py --out /tmp/ft --model release=src/xlsr/released/tiny-multilingual \
        --model T15=T15/checkpoints/update_0001600 --lr 1e-3 --seeds 1,2
    python benchmarks/finetune_trial.py --out /tmp/ft --model L3=L3/checkpoints/update_0003200 \
        --eval probe_eval/it/train.jsonl --eval probe_eval/it/dev.jsonl --eval probe_eval/it/test.jsonl
    python benchmarks/finetune_trial.py --out /tmp/ft --model multi=MULTI@2e-3 --model mono=MONO@1e-3  # own rates

The demo's test split holds 15 utterances (~800 phones): two recipes a few points apart are not ranked by it (round
9 of docs/pretrain_recipe.md: dev and test disagreed by 5.7 points). So every run's dev-selected checkpoint is also
scored, pooled, on the demo's larger held-out test set (300 utterances, `DemoSettings.eval_utts`), or on the labeled
manifests given with `--eval` instead, and that column is printed too.

Synthesizes the demo's target corpus into OUT/corpus and its held-out set into OUT/corpus_eval (each skipped when
it is there). One run took 2.2-7 min on one
thread of the 2-core CPU (7 when three jobs shared the two cores).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from xlsr.demo.finetuning import finetune_inits, summarize
from xlsr.demo.report import pm
from xlsr.demo.settings import DemoSettings
from xlsr.demo.stages import eval_manifests, synthesize, synthesize_eval
from xlsr.errors import XlsrError


def named(text: str) -> tuple[str, Path, float | None]:
    """NAME=CHECKPOINT, or NAME=CHECKPOINT@RATE for a peak rate of its own.

    The last @ starts a rate only where a peak rate (a number between 0 and 1) follows it and the whole of
    CHECKPOINT@RATE is no existing path; otherwise it is part of the path (a folder `run@2`, or an existing
    `lr@0.5`, whose own rate then goes after another @: `lr@0.5@1e-3`)."""
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT[@RATE], got {text!r}")
    path, _, rate = spec.rpartition("@")
    lr = _peak_rate(rate) if path and not Path(spec).exists() else None
    return (name, Path(path), lr) if lr is not None else (name, Path(spec), None)


def _peak_rate(text: str) -> float | None:
    """`text` as a peak rate, or None where it is no number between 0 and 1."""
    try:
        lr = float(text)
    except ValueError:
        return None
    return lr if 0 < lr < 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the corpus and every run")
    parser.add_argument("--model", action="append", type=named, required=True, help="NAME=CHECKPOINT[@RATE] (repeatable; RATE: that model's peak rate, default --lr)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak rate (default: the demo's rate for the released multilingual model)")
    parser.add_argument("--seeds", default="1,2,3", help="fine-tuning seeds (default 1,2,3, as the demo)")
    parser.add_argument("--target", default=DemoSettings().target, help="the demo's target language")
    parser.add_argument("--quick", action="store_true", help="the demo's seconds-long settings (a smoke test)")
    parser.add_argument("--eval", action="append", default=[], metavar="MANIFEST",
                        help="score every run's best checkpoint on this labeled manifest instead of the demo's held-out "
                             "set (repeatable; pooled)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        base = DemoSettings.quick(args.target) if args.quick else DemoSettings(target=args.target)
        seeds = tuple(int(s) for s in args.seeds.split(",") if s)
        lr = base.finetune_lr["multilingual"] if args.lr is None else args.lr
        settings = replace(base, device=args.device, finetune_seeds=seeds)
        settings.check()
        # each checkpoint's runs at its own rate or the one rate (DemoSettings names its rates by the demo's inits)
        settings = replace(settings, finetune_lr={name: own or lr for name, _, own in args.model})
        if missing := [str(path) for _, path, _ in args.model if not path.exists()]:
            rate = " (a rate after the last @ is a number between 0 and 1)" if any("@" in p for p in missing) else ""
            raise XlsrError(f"--model: no checkpoint at {', '.join(missing)}{rate}")
        if missing := [path for path in args.eval if not Path(path).is_file()]:
            raise XlsrError(f"--eval: no manifest at {', '.join(missing)}")
    except (XlsrError, ValueError) as err:
        sys.exit(f"error: {err}")

    out = Path(args.out)
    corpus = out / "corpus"
    if not (corpus / settings.target / "test.jsonl").is_file():
        synthesize(settings, corpus, target_only=True)
    held_out = [Path(m) for m in args.eval] or eval_manifests(settings, out / "corpus_eval")
    if not args.eval and held_out and not all(m.is_file() for m in held_out):
        synthesize_eval(settings, out / "corpus_eval")
    rates = ", ".join(f"{name} {rate:g}" for name, rate in settings.finetune_lr.items())
    print(f"{settings.target}, {settings.finetune_updates} updates, peak rate {rates}, seeds {args.seeds}; held-out "
          f"test set: {', '.join(map(str, held_out)) or 'none'}", flush=True)
    results = finetune_inits(settings, {name: path for name, path, _ in args.model}, corpus, out, eval_manifests=held_out,
                             on_run=lambda r: print(f"{r.name} seed {r.seed}: best dev PER {100 * r.dev_per:.1f}%, "
                                                    f"test PER {100 * r.test_per:.1f}%" + held_out_per(r.eval_per) +
                                                    f" ({r.seconds:.0f} s)", flush=True))
    print(f"\n{'model':14s} {'dev PER':>14s} {'test PER':>14s} {'held-out PER':>14s}  held-out per seed")
    for name, row in summarize(results).items():
        cells = [pm(row[key + "_mean"], row[key + "_sd"]) for key in ("dev_per", "test_per", "eval_per")]
        runs = ", ".join(f"{100 * p:.1f}" for p in row["eval_per"] or [])
        print(f"{name:14s} {cells[0]:>14s} {cells[1]:>14s} {cells[2]:>14s}  {runs}")


def held_out_per(per: float | None) -> str:
    return "" if per is None else f", held-out PER {100 * per:.1f}%"


if __name__ == "__main__":
    main()
