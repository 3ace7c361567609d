"""report.md as a user reads it: the sentence under the table names the initialisations as the table does."""

from xlsr.demo import MONOLINGUAL, MULTILINGUAL, DemoResult, DemoSettings, FinetuneResult, write_report
from xlsr.demo.finetuning import shared_protocol
from xlsr.train.finetune import FinetuneConfig


def test_random_weights_with_the_lowest_per_are_named_as_the_table_names_them(tmp_path):
    edits = {"substitutions": 5, "deletions": 3, "insertions": 1, "ref_len": 17}
    per = {"multilingual": 0.62, "monolingual": 0.65, "scratch": 0.58}  # as a short run (--quick) can end
    init = {"multilingual": f"rel/{MULTILINGUAL}", "monolingual": f"rel/{MONOLINGUAL}", "scratch": "random_init"}
    runs = [FinetuneResult(name, init[name], seed, f"r_{name}_{seed}", per[name] + seed / 100, None, edits, 10.0)
            for name in per for seed in (1, 2)]
    settings = {**DemoSettings.quick().__dict__}
    result = DemoResult(out_dir=tmp_path, settings=settings, finetune=runs,
                        finetune_config=shared_protocol(FinetuneConfig(max_updates=3)),
                        finetune_lr={"multilingual": 2e-3, "monolingual": 1e-3, "scratch": 5e-4},
                        corpus={settings["target"]: {"train": 0.6, "dev": 0.1, "test": 0.1}},
                        analysis={"summary_table": "TABLE"}, pretrain={"first": {}, "last": {}})
    text = write_report(result).read_text()
    assert "| random weights (the released architecture, drawn once; nothing pretrained) | 59.5% ± 0.7 |" in text
    assert "Lowest mean test PER: **random weights**." in text
