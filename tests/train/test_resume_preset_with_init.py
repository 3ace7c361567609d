"""The preset is a run's model source only without --init: a resume of a run from --init given another --preset (which
builds nothing there) goes on, and says nothing of it; without --init another preset is still refused."""

import os

import pytest
import yaml

from xlsr.errors import XlsrError
from xlsr.train.finetune import FinetuneConfig, finetune
from xlsr.train.run_folder import check_config_file

from .test_resume_shared_feature_cache import tones  # noqa: F401 (a fixture: the tone corpus)
from .test_resume_without_init import QUIET, write_init

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_fine_tuning_run_from_init_resumes_with_another_preset(tones, tmp_path, capsys):  # noqa: F811
    init = write_init("xlsr ctc", tmp_path / "init")

    def cfg(max_updates, preset):
        return FinetuneConfig(train=[str(tones / "xx" / "train.jsonl")], init=str(init), out=str(tmp_path / "run"),
                              max_updates=max_updates, save_every=1, freeze_updates=0, max_tokens=64000,
                              preset=preset, **QUIET)

    finetune(cfg(1, "tiny"))
    capsys.readouterr()
    finetune(cfg(2, "base"))  # was: "run: holds a run with preset 'tiny' (config.yaml), not 'base'"
    assert os.readlink(tmp_path / "run" / "checkpoints" / "last") == "update_0000002"
    assert "preset" not in capsys.readouterr().err  # no "in effect from here on: preset tiny -> base"


@pytest.mark.parametrize("init", [None, "none"])
def test_without_init_another_preset_is_refused(tmp_path, init):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"preset": "tiny", "init": init}))
    with pytest.raises(XlsrError, match=r"holds a run with preset 'tiny' \(config.yaml\), not 'base'; give --preset "
                                        r"tiny to resume it, or choose another --out$"):
        check_config_file(tmp_path, {"preset": "base", "init": init})


def test_another_init_is_named_before_the_preset(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"preset": "tiny", "init": "none"}))
    with pytest.raises(XlsrError, match=r"holds a run with init 'none' \(config.yaml\), not '/x/ckpt'"):
        check_config_file(tmp_path, {"preset": "base", "init": "/x/ckpt"})


@pytest.mark.parametrize(("recorded", "given", "hint"), [
    ("/x/released", None, "give --init /x/released to resume it"),  # the recorded --init left out on the rerun
    (None, "/x/released", "leave --init out to resume it"),  # a run started from scratch, rerun with an --init
])
def test_another_init_says_how_to_resume(tmp_path, recorded, given, hint):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"preset": "tiny", "init": recorded}))
    with pytest.raises(XlsrError, match=rf"holds a run with init .* \(config.yaml\), not .*; {hint}, or choose "
                                        rf"another --out$"):
        check_config_file(tmp_path, {"preset": "tiny", "init": given})
