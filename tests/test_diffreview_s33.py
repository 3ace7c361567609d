"""Defects found in a review of session 33's changes (config.yaml's working-folder note, the CLI's refusals)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from xlsr.config import save_config
from xlsr.errors import XlsrError
from xlsr.train.run_folder import check_config_file, recorded_start, started_in_note, working_folder


def test_a_run_started_in_a_folder_whose_name_is_not_utf8_writes_its_config(tmp_path, monkeypatch):
    # Trainer._write_run_files writes config.yaml so; the note above it made it a UnicodeEncodeError traceback
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    try:
        os.mkdir(folder)
    except OSError:
        pytest.skip("this filesystem takes only UTF-8 names")
    monkeypatch.chdir(os.fsdecode(folder))
    save_config({"out": "run", "data": "data"}, "config.yaml", header=started_in_note(working_folder()))
    assert yaml.safe_load(Path("config.yaml").read_text(encoding="utf-8")) == {"out": "run", "data": "data"}
    assert recorded_start(Path("config.yaml")) is None  # relative paths read from the resume's folder, as before


def test_a_working_folder_with_a_line_break_is_not_recorded_in_part(tmp_path, monkeypatch):
    folder = tmp_path / "a\nb"
    folder.mkdir()
    monkeypatch.chdir(folder)
    save_config({"out": "run"}, "config.yaml", header=started_in_note(working_folder()))
    assert recorded_start(Path("config.yaml")) is None  # not `.../a`, another folder
    assert yaml.safe_load(Path("config.yaml").read_text(encoding="utf-8")) == {"out": "run"}


def test_the_advice_to_resume_gives_a_preset_as_it_is_whatever_files_the_first_folder_holds(tmp_path, monkeypatch):
    # a run folder named as its preset (--preset tiny --out tiny) is common; the preset is no path to re-spell
    (tmp_path / "tiny").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    save_config({"out": "run", "preset": "tiny", "init": None}, tmp_path / "config.yaml",
                header=started_in_note(working_folder()))
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(XlsrError) as err:
        check_config_file(tmp_path, {"out": "..", "preset": "base", "init": None})
    assert "give --preset tiny to resume it" in str(err.value)


@pytest.mark.parametrize(("typed", "hint"), [("--bogsu", None), ("--bogus", None), ("--max-updats", "--max-updates"),
                                             ("--outt", "--out")])
def test_a_mistyped_option_is_offered_only_an_option_near_it(typed, hint):
    from xlsr.cli.main import _nearest_option, _Parser

    parser = _Parser(prog="xlsr x")
    for option in ("--out", "--text", "--order", "--max-updates"):
        parser.add_argument(option)
    said = _nearest_option(parser, f"unrecognized arguments: {typed} 3")
    assert said == (f"; did you mean {hint}?" if hint else "")


def test_a_total_over_languages_of_one_utterance_each_has_no_interval_rather_than_one_of_no_width():
    from xlsr.text.bootstrap import rate_interval

    assert rate_interval([1, 3], [10, 10], ["en", "fr"]) is None  # was (0.2, 0.2): "20.0-20.0", certainty it lacks
    low, high = rate_interval([1, 3, 0], [10, 10, 10], ["en", "fr", "fr"])  # a stratum of two: a spread
    assert low < 4 / 30 < high


def test_a_loop_of_links_under_a_name_with_an_apostrophe_is_one_line(tmp_path, capsys):
    # Python 3.11-3.12's RuntimeError quotes a name holding ' in double quotes: the traceback came back
    from xlsr.cli.main import main

    folder = tmp_path / "it's"
    folder.mkdir()
    (folder / "loopA").symlink_to(folder / "loopB")
    (folder / "loopB").symlink_to(folder / "loopA")
    code = main(["synth", "--out", str(folder / "loopA" / "x"), "--langs", "es", "--utts-per-lang", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"xlsr: error: {folder / 'loopA'}") and "too many levels of symbolic links" in err


def test_a_run_whose_working_folder_is_removed_while_it_trains_still_saves_its_checkpoints(tmp_path, monkeypatch):
    # trainer.pt records the folder the run's relative paths start in: os.getcwd() at each save raised
    # FileNotFoundError once that folder was gone (a job started from a scratch folder that was cleaned up)
    import torch
    import torch._dynamo  # noqa: F401 (imported by a run's first steps; its import reads the working folder)

    from tests.train._toy import ToyTask
    from xlsr.train import checkpoint as ckpt
    from xlsr.train.trainer import Trainer, TrainerConfig

    started = tmp_path / "scratch"
    started.mkdir()
    monkeypatch.chdir(started)
    cfg = TrainerConfig(out=str(tmp_path / "run"), max_updates=2, lr=1e-2, warmup_updates=0, device="cpu",
                        log_every=1, valid_every=0, save_every=1, progress=False, tensorboard=False)
    trainer = Trainer(cfg, ToyTask())
    started.rmdir()
    torch.set_num_threads(1)
    trainer.fit()
    state = ckpt.load_trainer_state(tmp_path / "run" / "checkpoints" / "last")
    assert state["update"] == 2 and state["cwd"] == str(started)
