"""The demo: XLSR's two findings reproduced on the embedded corpus, from the same library calls a user makes.

    synthesize (target + pretraining languages) → fine-tune three tiny models on the target's labeled
    phones (from the released multilingual checkpoint, the released monolingual one, from random weights),
    each with several seeds under one fine-tuning configuration but for each one's peak rate, chosen on dev
    → PER on the target's test set (mean ± sample sd (n−1) over the seeds) → shared-units analysis of the multilingual
    checkpoint → a short live pretraining run → DIR/report.md (+ demo.json, demo.log)

`run_demo(out_dir)` is `xlsr demo --out DIR`; `DemoSettings.quick()` is `--quick` (seconds, for tests);
`DemoSettings(target=LANG)` is `--target LANG`; `full=True` first re-creates the released checkpoints from
scratch (xlsr.released.build) into DIR/released, without the target. Every figure in the report is what this
run measured.

    settings.py    what the demo runs with, and which released checkpoints a target uses
    stages.py      synthesis, the analysis, the live pretraining run
    finetuning.py  the fine-tuning runs (inits x seeds, one configuration), their PER and summary
    report.py      report.md: the tables and sentences
    pipeline.py    run_demo: the stages in order, DIR's layout, the stage log
"""

from xlsr.demo.finetuning import FinetuneResult, evaluate_per, random_init, summarize
from xlsr.demo.pipeline import DemoResult, prepare_out_dir, run_demo
from xlsr.demo.report import comparison, per_table, write_report
from xlsr.demo.settings import DEMO_MARKER, MONOLINGUAL, MULTILINGUAL, DemoSettings, choose_releases
from xlsr.demo.stages import synthesize

__all__ = ["DEMO_MARKER", "MONOLINGUAL", "MULTILINGUAL", "DemoResult", "DemoSettings", "FinetuneResult",
           "choose_releases", "comparison", "evaluate_per", "per_table", "prepare_out_dir", "random_init",
           "run_demo", "summarize", "synthesize", "write_report"]
