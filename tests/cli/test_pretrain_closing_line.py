"""The line `xlsr pretrain` ends with names only what the run folder holds."""

from xlsr.cli.pretrain import closing_line


def test_the_closing_line_names_only_what_the_run_wrote(tmp_path):
    (tmp_path / "checkpoints" / "last").mkdir(parents=True)
    (tmp_path / "log.jsonl").write_text("")
    assert closing_line(tmp_path) == f"run folder: {tmp_path}  (checkpoints/last, log.jsonl, `xlsr plot {tmp_path}`)"
    (tmp_path / "checkpoints" / "best").mkdir()  # validated
    (tmp_path / "tb").mkdir()  # --tensorboard true
    assert closing_line(tmp_path) == (f"run folder: {tmp_path}  (checkpoints/last, checkpoints/best, log.jsonl, tb/, "
                                      f"`xlsr plot {tmp_path}`)")
