"""A demo.log whose last line has no newline: a stage line a kill cut is the demo's; a line of the user's is not."""

import pytest

from xlsr.demo import DEMO_MARKER, prepare_out_dir
from xlsr.errors import XlsrError


@pytest.mark.parametrize("log", ["my notes on the demo", "[1/5] synth: it: 6.8 min labeled train (41 s)\nmy notes"])
def test_a_last_line_without_newline_that_no_stage_line_starts_so_is_the_users(tmp_path, log):
    out = tmp_path / "demo"
    (out / "finetune").mkdir(parents=True)
    (out / "report.md").write_text("mine")
    (out / DEMO_MARKER).write_text(log)
    with pytest.raises(XlsrError, match="holds no earlier demo"):
        prepare_out_dir(out)
    assert (out / "finetune").is_dir() and (out / "report.md").read_text() == "mine"


@pytest.mark.parametrize("cut", ["[", "[2", "[2/", "[2/5", "[2/5]", "[2/5] fine"])
def test_a_stage_line_cut_anywhere_is_still_the_demos(tmp_path, cut):
    out = tmp_path / "demo"
    (out / "finetune").mkdir(parents=True)
    (out / DEMO_MARKER).write_text("[1/5] synth: it: 6.8 min labeled train (41 s)\n" + cut)
    prepare_out_dir(out)
    assert not (out / "finetune").exists()
