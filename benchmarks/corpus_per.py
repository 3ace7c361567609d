"""From-scratch PER on the demo's target, clean corpus vs realistic corpus (docs/synth.md).

For each corpus, exactly as the demo builds its target and its scratch run (xlsr.demo: DemoSettings' target,
utterances, seed, fine-tuning updates and settings; the released multilingual checkpoint's architecture with
random weights): synthesize the target language, fine-tune from scratch on its train split (best checkpoint
by dev PER), then test PER with greedy decoding on each corpus's test split. One run each, nothing tuned.

    .venv/bin/python benchmarks/corpus_per.py --out /tmp/corpus_per [--updates 800]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from xlsr.data.augment import DEFAULT_AUGMENT
from xlsr.data.synth import synthesize_corpus
from xlsr.data.synth.corpus import SPEAKERS_PER_LANG
from xlsr.demo import DemoSettings, evaluate_per, random_init
from xlsr.demo.finetuning import finetune_one
from xlsr.devices import pick_device
from xlsr.released.recipes import CLEAN_SYNTH, released_path

CORPORA = {"clean": dict(CLEAN_SYNTH),
           "realistic": {"augment": DEFAULT_AUGMENT, "voices": "varied", "speakers_per_lang": SPEAKERS_PER_LANG}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--updates", type=int, default=None, help="fine-tuning updates (default: the demo's)")
    parser.add_argument("--corpora", default="clean,realistic")
    args = parser.parse_args()
    settings = DemoSettings()
    settings = replace(settings, device=str(pick_device(settings.device)))  # as run_demo
    if args.updates:
        settings = replace(settings, finetune_updates=args.updates)
    out = Path(args.out)
    init = random_init(released_path("tiny-multilingual"), out / "random-init", seed=0)
    results = {}
    for name in args.corpora.split(","):
        corpus = out / name / "corpus"
        summary = synthesize_corpus(corpus, [settings.target], settings.target_utts, seed=settings.seed,
                                    workers=settings.synth_workers, show_progress=False, **CORPORA[name])
        # random weights under the demo's one fine-tuning protocol (CNN frozen, as for every init)
        run = finetune_one("random", str(init), settings.finetune_seeds[0], settings, corpus, out / name / "random", {})
        results[name] = {"corpus": CORPORA[name], "minutes": {k: round(v / 60, 2) for k, v in
                                                              summary.seconds[settings.target].items()},
                         "speakers": summary.speaker_counts(), "effects": summary.effects,
                         "dev_per": run.dev_per, "test_per": run.test_per, "counts": run.counts,
                         "minutes_training": round(run.seconds / 60, 1), "run": run.run_dir}
        print(f"{name}: test PER {100 * run.test_per:.1f}% (best dev {100 * (run.dev_per or float('nan')):.1f}%), "
              f"{run.counts}, {run.seconds / 60:.1f} min", flush=True)
    if len(results) == 2:  # each model on the other corpus's test set too
        for name in results:
            other = next(o for o in results if o != name)
            best = Path(results[name]["run"]) / "checkpoints" / "best"
            per = evaluate_per(best, out / other / "corpus" / settings.target / "test.jsonl", settings.device)
            results[name][f"test_per_on_{other}"] = per["per"]
            print(f"{name} model on the {other} test set: PER {100 * per['per']:.1f}%")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
