"""Tests for behaviour of the session-33 changes that no test held (a second mutation pass, review s33): each fails on
a small change of the code it names (a bound moved, a condition dropped, a message word lost) that every earlier test
passed."""

from __future__ import annotations

import json
import logging

import matplotlib
import pytest
import torch
from analysis.test_probe_memory import _meminfo
from analysis.test_probe_memory import setup as probe_setup  # noqa: F401 (a fixture)
from cli.test_config_resolution import trained  # noqa: F401 (a fixture)
from test_memory_journey_s33 import _config, _with_uncut_recording, tones  # noqa: F401 (a fixture)
from train._audio import TINY_MODEL, make_corpus
from train._toy import ToyTask

from xlsr.analysis.probe import ProbeSettings, probe
from xlsr.analysis.probe_features import read_labeled
from xlsr.cli.main import main
from xlsr.config import load_config, save_config
from xlsr.data.audio import files_under
from xlsr.data.sampling import trained_table
from xlsr.errors import XlsrError
from xlsr.text import bootstrap
from xlsr.text.bootstrap import rate_interval
from xlsr.train import checkpoint as ckpt
from xlsr.train.curves import LEGEND_LANGUAGES, draw_training_curves, plot_training_curves
from xlsr.train.distributed import DistInfo
from xlsr.train.finetune import FinetuneTask
from xlsr.train.pretrain import PretrainConfig, PretrainTask
from xlsr.train.recipes import recipe_path
from xlsr.train.run_folder import check_config_file
from xlsr.train.trainer import Trainer, TrainerConfig

matplotlib.use("Agg")


# ---- the audio trained on per language (pretrain.py, trainer.py, trainer_checkpoints.py, curves.py, sampling.py)

class _Counting(ToyTask):
    counted_logs = ("trained_s.aa",)
    summed_logs = ("sample_size", *counted_logs)

    def train_step(self, model, batch):
        loss, logs = super().train_step(model, batch)
        return loss, {**logs, "trained_s.aa": 1.0}

    def closing_report(self, totals, since):
        return f"closing report: {totals['trained_s.aa']:g} s since {since}"


def _toy_cfg(out, **kw):
    return TrainerConfig(**{**dict(out=str(out), max_updates=2, lr=1e-2, warmup_updates=0, device="cpu", log_every=1,
                                   valid_every=0, save_every=0, tensorboard=False), **kw})


@pytest.mark.parametrize("progress", [True, False])
def test_the_closing_report_is_printed_with_the_bar_only(tmp_path, capsys, progress):
    """(without the bar the caller reports the run itself: the demo prints its own table)"""
    Trainer(_toy_cfg(tmp_path / "run", progress=progress), _Counting()).fit()
    assert ("closing report: 2 s since 0" in capsys.readouterr().err) is progress


def test_the_update_counted_from_survives_a_second_resume(tmp_path):
    run = tmp_path / "run"
    Trainer(_toy_cfg(run, progress=False), _Counting()).fit()
    last = run / "checkpoints" / "last"
    state = ckpt.load_trainer_state(last)
    del state["run_totals"], state["run_totals_since"]  # a checkpoint of a version that kept no totals
    torch.save(state, last.resolve() / ckpt.TRAINER_FILE)
    Trainer(_toy_cfg(run, progress=False, max_updates=4), _Counting()).fit()
    again = Trainer(_toy_cfg(run, progress=False, max_updates=6), _Counting())
    again.fit()
    assert (again.run_totals, again.run_totals_since) == ({"trained_s.aa": 4.0}, 2)
    assert ckpt.load_trainer_state(last)["run_totals_since"] == 2


def test_pretraining_s_closing_report_says_the_update_its_totals_count_from(tmp_path):
    data = make_corpus(tmp_path / "tones", langs=("aa",), per_lang=2, splits=("train",))
    task = PretrainTask(PretrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", model=dict(TINY_MODEL),
                                       num_workers=0, device="cpu", min_sample_size=8000))
    task.setup(DistInfo())
    head = "by language (crops, as drawn; p is the share sampling aims at):"
    assert task.closing_report({"trained_s.aa": 36.0}, 5).splitlines()[0] == f"audio trained on since update 5, {head}"
    assert task.closing_report({"trained_s.aa": 36.0}, 0).splitlines()[0] == f"audio trained on, {head}"


def test_a_table_of_nothing_trained_yet_has_zero_shares():
    assert trained_table({"aa": 1.0}, 0.5, {"aa": 0.0}).splitlines()[1] == "aa            0.000     0.0%      100.0%"


def _records(langs, updates=(1, 2)):
    return [{"split": "train", "update": u, "loss": 1.0, **{f"trained_s.{lang}": float(u + i) for i, lang in
                                                            enumerate(langs)}} for u in updates]


def _share_axes(fig):
    return next(a for a in fig.axes if a.get_title().startswith("share of audio trained on"))


def test_the_share_panel_is_drawn_with_its_axes_and_titled_for_what_it_has():
    ax = _share_axes(draw_training_curves(_records(["aa", "bb"]), "run", aimed_shares={"aa": 0.6, "bb": 0.4}))
    assert ax.axison and ax.get_title() == "share of audio trained on (%, dashed: p_l)"
    ax = _share_axes(draw_training_curves(_records(["aa", "bb"]), "run"))
    assert ax.axison and ax.get_title() == "share of audio trained on (%)"


@pytest.mark.parametrize("count", [LEGEND_LANGUAGES, LEGEND_LANGUAGES + 1])
def test_each_language_has_a_legend_entry_up_to_the_legend_s_limit(count):
    langs = [f"l{i:02d}" for i in range(count)]
    legend = _share_axes(draw_training_curves(_records(langs), "run")).get_legend()
    if count <= LEGEND_LANGUAGES:
        assert sorted(t.get_text() for t in legend.get_texts()) == langs
    else:
        assert legend is None


def test_a_sampling_report_not_as_written_is_passed_over_by_the_plot(tmp_path):
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(["aa", "bb"])))
    (tmp_path / "sampling.json").write_text(json.dumps({"languages": ["aa", "bb"]}))  # a list, not a mapping
    out = plot_training_curves(tmp_path)
    assert out.is_file() and out.stat().st_size > 0


def test_the_advice_names_the_newest_checkpoint_before_the_damaged_one(tmp_path):
    root = tmp_path / "checkpoints"
    for update in (1, 2, 3):
        (root / ckpt.update_dir_name(update)).mkdir(parents=True)
        (root / ckpt.update_dir_name(update) / ckpt.TRAINER_FILE).write_bytes(b"x")
    newest = root / ckpt.update_dir_name(3)
    assert ckpt.earlier_checkpoint_advice(root, newest) == (
        f"move {newest} out of {root} (or restore it from a good copy) to resume from {ckpt.update_dir_name(2)}, "
        f"the checkpoint before it")


# ---- the command line (cli/main.py, cli/__init__.py, config.py, run_folder.py)

def test_a_stray_local_rank_outside_torchrun_still_says_its_error(monkeypatch, capsys, tmp_path):
    """(LOCAL_RANK left in a shell by a job script: one process, WORLD_SIZE unset or 1, must say why it stops)"""
    monkeypatch.setenv("LOCAL_RANK", "1")
    for world in (None, "1"):
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                     "--config", str(tmp_path / "no.yaml")]) == 2
        assert capsys.readouterr().err == f"xlsr: error: {tmp_path / 'no.yaml'}: config file not found\n"


def test_a_mistyped_option_given_with_its_value_gets_the_option_meant(capsys):
    with pytest.raises(SystemExit) as ended:
        main(["pretrain", "--lrr=0.001"])
    assert ended.value.code == 2
    assert capsys.readouterr().err == ("xlsr pretrain: error: unrecognized arguments: --lrr=0.001; did you mean --lr? "
                                       "(see `xlsr pretrain --help`)\n")


def test_a_loop_of_links_is_named_without_quotes(tmp_path, capsys):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert main(["convert", "--to", "hf", str(tmp_path / "a"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xlsr: error: {tmp_path / 'a'}: ") and err.count("\n") == 1, err


def test_a_blank_config_name_is_an_empty_name(tmp_path, capsys):
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", "  "]) == 2
    assert capsys.readouterr().err == "xlsr: error: --config: an empty name; give one, or leave --config out\n"


def test_of_two_config_files_naming_recipes_the_later_one_s_recipe_is_applied(trained, tmp_path):  # noqa: F811
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("recipe: tiny-demo\n")
    second.write_text("recipe: wav2vec2-base\n")
    cfg = trained(["pretrain", "--data", tmp_path, "--out", tmp_path / "run", "--config", first, "--config", second])
    base = load_config(PretrainConfig, [recipe_path("wav2vec2-base", "pretrain")])
    demo = load_config(PretrainConfig, [recipe_path("tiny-demo", "pretrain")])
    assert base.warmup_updates != demo.warmup_updates
    assert (cfg.recipe, cfg.warmup_updates) == ("wav2vec2-base", base.warmup_updates)


def test_a_bad_recipe_is_named_in_the_file_that_names_it(tmp_path, capsys):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("recipe: no-such-recipe\n")
    second.write_text("lr: 0.002\n")
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--config", str(first), "--config", str(second)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xlsr: error: {first}: recipe") and str(second) not in err, err


def test_json_after_blank_lines_is_read_as_json(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('\n  {\n\t"lr": 0.002,\n\t"max_updates": 7\n}\n')
    cfg = load_config(PretrainConfig, [path])
    assert (cfg.lr, cfg.max_updates) == (0.002, 7)


def test_a_recorded_model_name_that_is_no_path_is_advised_as_recorded(tmp_path, monkeypatch):
    """(a hub name such as facebook/wav2vec2-xls-r-300m is not a path from the start folder: `../facebook/...` from a
    subfolder would name nothing)"""
    (tmp_path / "sub").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    save_config({"init": "facebook/wav2vec2-xls-r-300m", "data": "d"}, run / "config.yaml",
                header=f"relative paths below start in the folder the run was started from: {tmp_path}")
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(XlsrError) as refused:
        check_config_file(run, {"init": "facebook/other", "data": "../d"})
    assert "give --init facebook/wav2vec2-xls-r-300m to resume it" in str(refused.value)


# ---- the bootstrap interval (text/bootstrap.py)

def test_the_interval_is_the_2_5_and_97_5_percentiles_of_the_resampled_rates():
    # 8 utterances of one unit, 4 wrong: a resample's rate is Binomial(8, 1/2) / 8, whose 2.5 % point is 1/8
    # (P(0) = 0.004, P(<= 1) = 0.035) and 97.5 % point 7/8; a 90 % interval would be 2/8 .. 6/8
    assert rate_interval([1, 1, 1, 1, 0, 0, 0, 0], [1] * 8, resamples=20000) == (0.125, 0.875)


def test_each_stratum_draws_as_many_as_it_holds():
    # one utterance of `a` (all wrong) and nine of `b` (all right): every resample holds one `a` and nine `b`
    assert rate_interval([10] + [0] * 9, [10] * 10, ["a"] + ["b"] * 9) == (0.1, 0.1)


def test_a_resample_of_only_empty_references_has_no_rate():
    # an utterance with an empty reference and 5 insertions: drawn twice, the resample has no rate (not 5 / 1)
    assert rate_interval([0, 5], [2, 0]) == (0.0, 2.5)


def test_more_utterances_than_one_chunk_holds_are_drawn_a_row_at_a_time(monkeypatch):
    whole = rate_interval([0, 1, 2, 3, 4], [5] * 5)
    monkeypatch.setattr(bootstrap, "MAX_DRAWS", 3)  # fewer draws at once than one resample's 5
    low, high = rate_interval([0, 1, 2, 3, 4], [5] * 5)
    assert 0 <= low < 0.4 < high <= 0.8 and (low, high) == pytest.approx(whole, abs=0.05)


# ---- length bounds (finetune_data.py, probe_features.py)

def test_the_dev_warning_names_the_longest_of_the_recordings_left_out(tones, tmp_path, caplog):  # noqa: F811
    train, dev = tones
    rows = [json.loads(x) for x in _with_uncut_recording(dev, tmp_path / "one.jsonl", 3600 * 16000)
            .read_text().splitlines()]
    longer = {**rows[-1], "id": "longer", "num_samples": 7200 * 16000}
    long_dev = tmp_path / "dev.jsonl"
    long_dev.write_text("".join(json.dumps(r) + "\n" for r in [*rows, longer]))
    with caplog.at_level(logging.WARNING):
        FinetuneTask(_config(train, long_dev, tmp_path))
    warned = [r.getMessage() for r in caplog.records if "left out of validation" in r.getMessage()]
    assert len(warned) == 1 and "2 dev utterance(s) longer than" in warned[0]
    assert f"(the longest: {long_dev}:6, 7200.0 s)" in warned[0]


def test_the_probe_keeps_an_utterance_of_exactly_max_batch_samples(tones):  # noqa: F811
    _, dev = tones
    longest = max(json.loads(x)["num_samples"] for x in dev.read_text().splitlines())
    data = read_labeled(dev, "phones", min_samples=400, max_samples=longest)
    assert len(data.ids) == 4 and data.skipped == 0


def test_the_probe_s_warning_names_the_longest_left_out(tones, tmp_path, caplog):  # noqa: F811
    _, dev = tones
    rows = [json.loads(x) for x in _with_uncut_recording(dev, tmp_path / "one.jsonl", 57_600_000)
            .read_text().splitlines()]
    shorter = {**rows[-1], "id": "shorter", "num_samples": 1_600_000}
    manifest = tmp_path / "two.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [*rows, shorter]))
    with caplog.at_level(logging.WARNING, logger="xlsr.analysis.probe_features"):
        data = read_labeled(manifest, "phones", min_samples=400, max_samples=960_000)
    assert data.skipped == 2 and "(the longest: line 5, 3600.0 s)" in caplog.text


# ---- folders laid out as links (data/audio.py files_under)

def test_a_linked_folder_whose_name_extends_the_searched_one_is_searched(tmp_path):
    """(`corpus/more` -> `../corpus2`: outside `corpus`, though its path starts with `corpus`'s letters)"""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus2").mkdir()
    (tmp_path / "corpus2" / "x.flac").write_bytes(b"")
    (tmp_path / "corpus" / "more").symlink_to(tmp_path / "corpus2")
    assert files_under(tmp_path / "corpus") == [tmp_path / "corpus" / "more" / "x.flac"]


def test_a_linked_folder_whose_name_begins_the_searched_one_is_searched(tmp_path):
    """(`corpus_all/base` -> `../corpus`: `corpus_all` starts with its letters but does not lie inside it)"""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "x.flac").write_bytes(b"")
    (tmp_path / "corpus_all").mkdir()
    (tmp_path / "corpus_all" / "base").symlink_to(tmp_path / "corpus")
    assert files_under(tmp_path / "corpus_all") == [tmp_path / "corpus_all" / "base" / "x.flac"]


def test_the_probe_s_memory_estimate_leaves_out_what_it_will_not_read(probe_setup, tmp_path, monkeypatch):  # noqa: F811
    """(an uncut recording in the manifest is left out by read_labeled: counted in the estimate, a probe that fits was
    refused for the memory of a recording it never reads)"""
    root, train, test = probe_setup
    _meminfo(tmp_path, monkeypatch, available_kb=100_000)  # 100 MB: the hour's audio alone would take 230 MB
    with_uncut = _with_uncut_recording(train, tmp_path / "train.jsonl", 57_600_000)
    report = probe(root / "small", with_uncut, test, tmp_path / "out", layers="cnn", settings=ProbeSettings(epochs=1),
                   plot=False, show_progress=False)
    assert [r["layer"] for r in report.summary["layers"]] == ["cnn"]
