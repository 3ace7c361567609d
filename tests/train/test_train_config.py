from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from xlsr.config import config_to_dict, load_config, parse_override_args, save_config
from xlsr.errors import XlsrError


@dataclass
class Inner:
    depth: int = 2
    rate: float = 0.1


@dataclass
class Cfg:
    lr: float = 1e-3
    steps: int = 10
    name: str = "a"
    flag: bool = False
    betas: tuple[float, float] = (0.9, 0.98)
    mode: Literal["fp32", "bf16"] = "fp32"
    init: str | None = None
    inner: Inner = field(default_factory=Inner)
    model: dict = field(default_factory=dict)


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("lr: 5e-4\nsteps: 20\ninner:\n  depth: 3\nmodel:\n  mask_prob: 0.5\n")
    cfg = load_config(Cfg, p, {"steps": "30", "inner.rate": "0.2", "model.num_negatives": "50",
                               "betas": "0.8,0.9", "flag": "true", "mode": "bf16"})
    assert cfg.lr == 5e-4 and isinstance(cfg.lr, float)  # YAML 1.1 reads 5e-4 as a string
    assert cfg.steps == 30
    assert cfg.inner == Inner(depth=3, rate=0.2)
    assert cfg.model == {"mask_prob": 0.5, "num_negatives": 50}
    assert cfg.betas == (0.8, 0.9) and cfg.flag is True and cfg.mode == "bf16"


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(Cfg, None, {"lr": "2e-3", "init": "ckpt", "model.x": "1"})
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["betas"] == [0.9, 0.98]
    again = load_config(Cfg, tmp_path / "config.yaml", {})
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("overrides, words", [
    ({"nope": "1"}, "unknown config key 'nope'"),
    ({"inner.nope": "1"}, "unknown config key 'inner.nope'"),
    ({"steps": "1.5"}, "steps"),
    ({"mode": "fp8"}, "mode"),
    ({"lr": "null"}, "lr"),
    ({"lr": "nan"}, "lr: cannot use 'nan' as float"),
    ({"init": "none"}, None),  # Python's word for null, where a setting may be unset
])
def test_bad_keys_and_values_are_one_line_errors(overrides, words):
    if words is None:
        assert load_config(Cfg, None, overrides).init is None
        return
    with pytest.raises(XlsrError) as err:
        load_config(Cfg, None, overrides)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("settings, words", [
    ({"num_workers": "-1"}, "num_workers: must be at least 0, got -1"),
    ({"warmup_ratio": "2"}, "warmup_ratio: must be between 0 and 1, got 2"),
    ({"max_sample_size": "-5"}, "max_sample_size: must be at least 400, got -5"),
    ({"epoch_size": "0"}, "epoch_size: must be at least 1, got 0"),
    ({"max_bad_share": "2"}, "max_bad_share: must be between 0 and 1, got 2"),
    ({"max_tokens": "0"}, "max_tokens: must be at least 1, got 0"),
    ({"seed": "-1"}, "seed: must be at least 0, got -1"),
    ({"max_utterances": "0"}, "max_utterances: must be at least 1, got 0"),
    # Adam's and the schedule's settings: torch would refuse the first two only after the run folder is written,
    # and the others make the rate climb (lr_power -1: 184 at the last update of a 400k run)
    ({"adam_betas": "0.9,1.5"}, r"adam_betas: each must be in \[0, 1\), got 0.9, 1.5"),
    ({"adam_eps": "-1"}, "adam_eps: must be at least 0, got -1"),
    ({"weight_decay": "-0.5"}, "weight_decay: must be at least 0, got -0.5"),
    ({"lr_power": "-1"}, "lr_power: must be positive, got -1"),
    ({"lr_power": "0"}, "lr_power: must be positive, got 0"),
    ({"warmup_updates": "-5"}, "warmup_updates: must be at least 0, got -5"),
    # the decay's targets and phases: final_lr_scale 0 failed in log(0) at the first decay update, long after the
    # run folder was written; 20 made the rate climb 20-fold, and so did end_lr above lr
    ({"final_lr_scale": "0"}, r"final_lr_scale: must be in \(0, 1\] \(the decay ends at lr x this\), got 0"),
    ({"final_lr_scale": "20"}, r"final_lr_scale: must be in \(0, 1\] .*, got 20"),
    ({"init_lr_scale": "-0.01"}, "init_lr_scale: must be between 0 and 1 .*, got -0.01"),
    ({"phase_ratio": "-0.5,0.5,1"}, "phase_ratio: each share must be at least 0 and together at most 1, got -0.5, 0.5, 1"),
    ({"phase_ratio": "0.5,0.5,0.5"}, "phase_ratio: each share must be at least 0 and together at most 1, got 0.5, 0.5"),
    ({"end_lr": "-1e-5"}, r"end_lr: must be between 0 and lr \(0.0005\), got -1e-05"),
    ({"end_lr": "0.001", "lr": "0.0005"}, r"end_lr: must be between 0 and lr \(0.0005\), got 0.001"),
])
def test_training_settings_out_of_range_are_one_line_naming_the_setting(settings, words):
    from xlsr.train.finetune_config import FinetuneConfig
    from xlsr.train.pretrain import PretrainConfig

    for cls in (PretrainConfig, FinetuneConfig):
        if cls is FinetuneConfig and ("epoch_size" in settings or "max_utterances" in settings):
            continue  # fine-tuning has neither an epoch size nor an utterance cap
        with pytest.raises(XlsrError, match=words):
            load_config(cls, None, settings)


def test_schedule_shares_written_as_decimals_that_sum_to_1_are_accepted():
    from xlsr.train.trainer_config import TrainerConfig

    assert sum((0.34, 0.56, 0.1)) > 1  # in floats
    assert TrainerConfig(phase_ratio=(0.34, 0.56, 0.1), final_lr_scale=1.0, init_lr_scale=0.0, end_lr=5e-4, lr=5e-4)


def test_a_section_given_a_plain_value_names_the_file_and_key(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("model: 5\n")
    with pytest.raises(XlsrError, match=r"run.yaml: model: expected a section of settings \(key: value lines\), "
                                        r"got 5"):
        load_config(Cfg, p, {})


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("lrr: 1\n")
    with pytest.raises(XlsrError, match=r"bad.yaml: unknown config key 'lrr'"):
        load_config(Cfg, p, {})
    p.write_text("- just\n- a list\n")
    with pytest.raises(XlsrError, match="expected a mapping"):
        load_config(Cfg, p, {})


def test_parse_override_args():
    assert parse_override_args(["--lr", "1e-3", "--model.mask-prob=0.5", "--end", "-1"]) == \
        {"lr": "1e-3", "model.mask_prob": "0.5", "end": "-1"}
    with pytest.raises(XlsrError, match="--lr: missing value"):
        parse_override_args(["--lr"])


def test_binary_file_as_yaml_is_one_line_error(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"PK\x03\x04\x80\xff\xfe binary")
    with pytest.raises(XlsrError, match=r"model.pt: not a YAML text file"):
        load_config(Cfg, p, {})
