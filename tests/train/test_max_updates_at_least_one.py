"""--max-updates 0 is refused in one line before anything is read or written (it made a run that only validated and
saved its init); a resume with fewer updates than reached keeps its own message."""

import pytest

from xlsr.cli.main import main
from xlsr.errors import XlsrError
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.pretrain import PretrainConfig
from xlsr.train.trainer_config import TrainerConfig

from .test_resume_changed_settings import toy_run


@pytest.mark.parametrize("config", [TrainerConfig, PretrainConfig, FinetuneConfig])
@pytest.mark.parametrize("value", [0, -3])
def test_max_updates_below_one_is_refused(config, value):
    with pytest.raises(XlsrError) as exc:
        config(max_updates=value)
    assert str(exc.value) == f"max_updates: must be at least 1, got {value}"
    assert config(max_updates=1).max_updates == 1


@pytest.mark.parametrize("command", [["pretrain", "--data"], ["finetune", "--train"]])
def test_the_commands_refuse_it_before_the_run_folder(tmp_path, capsys, command):
    run = tmp_path / "run"
    assert main([*command, str(tmp_path / "data"), "--out", str(run), "--max-updates", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "xlsr: error: max_updates: must be at least 1, got 0"
    assert not run.exists()


def test_a_resume_below_the_update_reached_keeps_its_message(tmp_path):
    toy_run(tmp_path, max_updates=2)
    with pytest.raises(XlsrError, match=r"^\S+: holds a run at update 2 \(update_0000002\), past max_updates 1; give "
                                        r"--max-updates 2 or more to resume, or choose another --out$"):
        toy_run(tmp_path, max_updates=1)
