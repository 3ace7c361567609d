"""A run resumed from another working folder, its paths spelled from there (`../data` from a subfolder, a SLURM
script that starts elsewhere), is the same run: config.yaml records the folder its relative paths start in. It was
refused ("holds a run with init ...", advising a path that did not exist from there) or took its data for changed and
chose `best` anew, dropping the best so far."""

from pathlib import Path

import pytest
import yaml

from xlsr.config import save_config
from xlsr.errors import XlsrError
from xlsr.train.pretrain import PretrainConfig, pretrain
from xlsr.train.run_folder import check_config_file, recorded_start, same_setting

from ._audio import TINY_MODEL, make_corpus


def test_a_path_recorded_in_one_folder_is_the_same_path_spelled_from_another(tmp_path, monkeypatch):
    (tmp_path / "My Data").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert same_setting("data", "My Data", "../My Data", start=str(tmp_path))
    assert not same_setting("data", "My Data", "../My Data")  # (without the record: resolved from here)
    assert same_setting("data", "../My Data", "../My Data", start="/a/project/moved/away")  # a project moved whole
    assert not same_setting("data", "My Data", "../other", start=str(tmp_path))
    assert same_setting("dev", ["My Data/a.jsonl"], ["../My Data/a.jsonl"], start=str(tmp_path))


def test_the_config_file_says_where_its_paths_start_and_a_wrong_init_is_advised_as_typed_from_here(tmp_path,
                                                                                                     monkeypatch):
    (tmp_path / "runs é" / "pt 1").mkdir(parents=True)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs é" / "ft"
    run.mkdir()
    recorded = {"init": "runs é/pt 1", "data": "d"}
    save_config(recorded, run / "config.yaml", header=f"relative paths below start in the folder the run was "
                                                     f"started from: {tmp_path}")
    assert recorded_start(run / "config.yaml") == str(tmp_path)
    assert yaml.safe_load((run / "config.yaml").read_text()) == recorded  # a comment: the file is still --config's
    monkeypatch.chdir(tmp_path / "sub")
    assert check_config_file(run, {"init": "../runs é/pt 1", "data": "../d"}) == []
    with pytest.raises(XlsrError) as refused:
        check_config_file(run, {"init": "../elsewhere", "data": "../d"})
    assert "give --init '../runs é/pt 1' to resume it" in str(refused.value)


def test_a_pretraining_run_resumed_from_a_subfolder_keeps_its_data_and_its_best(tmp_path, monkeypatch, capsys):
    make_corpus(tmp_path / "tones")
    (tmp_path / "sub").mkdir()

    def cfg(data, out, updates):
        return PretrainConfig(data=data, out=out, preset="tiny", model=dict(TINY_MODEL), max_updates=updates, lr=2e-3,
                              warmup_updates=1, max_tokens=64000, min_sample_size=8000, max_sample_size=16000,
                              num_workers=0, log_every=1, valid_every=2, save_every=2, progress=False,
                              tensorboard=False, device="cpu", feature_health_frames=0)

    monkeypatch.chdir(tmp_path)
    pretrain(cfg("tones", "run", 2))
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "sub")
    pretrain(cfg("../tones", "../run", 4))
    said = capsys.readouterr().err
    assert "chosen anew" not in said and "data tones -> ../tones" not in said, said
    assert recorded_start(Path(tmp_path / "run" / "config.yaml")) == str(tmp_path / "sub")  # as the resume wrote it
