"""Which checkpoint a demo run scores, and how the report treats runs without a held-out score."""

from xlsr.demo.finetuning import best_checkpoint


def test_best_checkpoint_is_scored_when_validation_saved_one(tmp_path):
    (tmp_path / "checkpoints" / "last").mkdir(parents=True)
    assert best_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last"  # no validation picked one
    (tmp_path / "checkpoints" / "best").mkdir()
    assert best_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last"  # an empty folder is no checkpoint
    (tmp_path / "checkpoints" / "best" / "config.json").write_text("{}")
    assert best_checkpoint(tmp_path) == tmp_path / "checkpoints" / "best"


def _result(name, seed, test_per, eval_per):
    from xlsr.demo.finetuning import FinetuneResult

    counts = {"substitutions": 1, "deletions": 0, "insertions": 0, "ref_len": 10}
    return FinetuneResult(name=name, init=name, seed=seed, run_dir="r", test_per=test_per, dev_per=0.3, counts=counts,
                          seconds=1.0, eval_per=eval_per, eval_counts=counts if eval_per is not None else None)


def test_the_table_leads_with_the_held_out_set_only_when_every_run_was_scored_on_it():
    from xlsr.demo.report import lead_key, per_table

    every = [_result("multilingual", 0, 0.2, 0.25), _result("monolingual", 0, 0.4, 0.45)]
    assert lead_key(every) == "eval_per" and "held-out test PER" in per_table(every)
    some = [_result("multilingual", 0, 0.2, 0.25), _result("monolingual", 0, 0.4, None)]
    assert lead_key(some) == "test_per" and lead_key([]) == "test_per"
    table = per_table(some)
    assert "held-out" not in table and "| monolingual | 40.0" in table and "| multilingual | 20.0" in table


def test_an_initialisation_with_a_run_missing_its_held_out_score_has_no_held_out_mean():
    from xlsr.demo.finetuning import summarize

    s = summarize([_result("multilingual", 0, 0.2, 0.25), _result("multilingual", 1, 0.4, None),
                   _result("monolingual", 0, 0.5, 0.55), _result("monolingual", 1, 0.7, 0.65)])
    assert (s["multilingual"]["eval_per"], s["multilingual"]["eval_per_mean"], s["multilingual"]["eval_per_sd"]) == \
        (None, None, None)  # not the mean of the one run that has it
    assert abs(s["multilingual"]["test_per_mean"] - 0.3) < 1e-12
    assert s["monolingual"]["eval_per"] == [0.55, 0.65] and abs(s["monolingual"]["eval_per_mean"] - 0.6) < 1e-12
