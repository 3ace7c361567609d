"""`xlsr plot RUN` as a user meets it after `make demo`: RUN given as the demo's folder, the log file itself, a path
that is not there, or a log.jsonl that no xlsr run wrote; each a one-line answer, and a torn last line still plots."""

import json

import pytest

from xlsr.cli.main import main


def write_log(run, records, tail=""):
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


TRAIN = [{"update": u, "split": "train", "loss": 5.0 - u, "lr": 1e-3} for u in (1, 2, 3)]


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: ") and err.count("\n") == 1, err
    return err


def test_a_demo_folder_names_the_run_folders_in_it_nearest_first(tmp_path, capsys):
    demo = tmp_path / "demo_out"
    write_log(demo / "pretrain_live", TRAIN)
    for init in ("monolingual", "multilingual", "scratch"):
        for seed in (1, 2):
            write_log(demo / "finetune" / init / f"seed{seed}", TRAIN)
    (demo / "report.md").write_text("# xlsr demo\n")
    err = one_line_error(capsys, ["plot", str(demo)])
    assert err == (f"xlsr: error: {demo / 'log.jsonl'}: no training log; {demo} holds run folders: "
                   f"{demo / 'pretrain_live'}, {demo / 'finetune/monolingual/seed1'}, "
                   f"{demo / 'finetune/monolingual/seed2'} and 4 more; plot one of them\n")
    assert not (demo / "curves.png").exists()


def test_a_missing_folder_and_the_log_file_itself_are_named_as_what_they_are(tmp_path, capsys):
    err = one_line_error(capsys, ["plot", str(tmp_path / "runs" / "pt")])
    assert err == (f"xlsr: error: {tmp_path / 'runs/pt/log.jsonl'}: no training log; there is no folder "
                   f"{tmp_path / 'runs/pt'}\n")
    write_log(tmp_path / "runs" / "pt", TRAIN)
    err = one_line_error(capsys, ["plot", str(tmp_path / "runs" / "pt" / "log.jsonl")])
    assert err == (f"xlsr: error: {tmp_path / 'runs/pt/log.jsonl'}: a file, not a run folder (the folder that holds "
                   f"log.jsonl); give its folder, {tmp_path / 'runs/pt'}\n")


@pytest.mark.parametrize("record", [
    {"split": "train", "loss": 1.0},  # no update number (KeyError 'update' before)
    {"split": 3, "update": 1, "loss": 1.0},  # a split that is no name (AttributeError before)
    {"split": "train", "update": "1", "loss": 1.0},  # an update that is no number (drawn as a category before)
])
def test_a_log_no_xlsr_run_wrote_is_one_line_not_a_traceback(tmp_path, capsys, record):
    write_log(tmp_path / "run", [record, record])
    err = one_line_error(capsys, ["plot", str(tmp_path / "run")])
    assert err == (f"xlsr: error: {tmp_path / 'run/log.jsonl'}: none of its records has both a `split` name and an "
                   f"`update` number (is this a run's log.jsonl?)\n")
    assert not (tmp_path / "run" / "curves.png").exists()


def test_a_torn_last_line_is_left_out_and_the_image_path_printed(tmp_path, capsys):
    run = tmp_path / "run"
    write_log(run, TRAIN, tail='{"update": 4, "split": "train", "loss": 1.')  # killed while writing
    assert main(["plot", str(run)]) == 0
    assert capsys.readouterr().out == f"{run / 'curves.png'}\n"
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_image_into_a_folder_not_made_yet_is_drawn_there(tmp_path):
    """(refused with `no such file or directory`, where every other command makes its output's folder)"""
    from xlsr.train.curves import plot_training_curves

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"update": 1, "split": "train", "loss": 2.0}\n{"update": 2, "split": "train", '
                                   '"loss": 1.5}\n')
    out = plot_training_curves(run, tmp_path / "figures" / "new" / "curves.svg")
    assert out.read_text().lstrip().startswith("<?xml") and list(out.parent.iterdir()) == [out]  # no temporary left
