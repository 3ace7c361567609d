"""The shipped fine-tuning recipes: each resolves to fairseq's published settings (spec section 7.2), and the
command line still overrides them."""

import re

import pytest

from xlsr.cli.main import main
from xlsr.config import load_config
from xlsr.errors import XlsrError
from xlsr.train.finetune_config import FinetuneConfig, transformer_freeze_updates
from xlsr.train.recipes import recipe_names, recipe_path

# fairseq's examples/wav2vec/config/finetuning/vox_*.yaml and examples/wav2vec/xlsr/config/finetune.yaml:
# (max_update, lr, mask_prob, mask_channel_prob); every one with 4 GPUs x update_freq 5 x max_tokens 1.28M
FAIRSEQ = {"vox-10m": (13000, 1e-4, 0.65, 0.25), "vox-1h": (13000, 3e-4, 0.75, 0.25),
           "vox-10h": (20000, 1e-4, 0.75, 0.25), "vox-100h": (80000, 3e-5, 0.5, 0.5),
           "xls-r-commonvoice": (13000, 3e-4, 0.75, 0.25)}


def test_every_shipped_recipe_is_listed():
    assert recipe_names("finetune") == sorted(FAIRSEQ)
    assert "tiny-demo" in recipe_names("pretrain") and "vox-10h" not in recipe_names("pretrain")


@pytest.mark.parametrize("name", sorted(FAIRSEQ))
def test_recipe_resolves_to_fairseqs_settings(name):
    cfg = load_config(FinetuneConfig, [recipe_path(name, "finetune")], {"recipe": name})
    updates, lr, mask_prob, channel_prob = FAIRSEQ[name]
    assert (cfg.max_updates, cfg.lr, cfg.model["mask_prob"], cfg.model["mask_channel_prob"]) == \
        (updates, lr, mask_prob, channel_prob)
    assert cfg.max_tokens * cfg.update_freq == 1_280_000 * 4 * 5  # fairseq's effective batch in one process
    assert transformer_freeze_updates(cfg) == 10000 and cfg.freeze_feature_encoder
    assert (cfg.lr_schedule, tuple(cfg.phase_ratio), cfg.init_lr_scale, cfg.final_lr_scale) == \
        ("tri_stage", (0.1, 0.4, 0.5), 0.01, 0.05)
    assert (tuple(cfg.adam_betas), cfg.adam_eps, cfg.weight_decay, cfg.clip_norm) == ((0.9, 0.98), 1e-8, 0.0, 0.0)
    model = cfg.model
    assert (model["mask_length"], model["mask_channel_length"], model["layerdrop"], model["activation_dropout"]) == \
        (10, 64, 0.1, 0.1)
    assert model["dropout"] == model["attention_dropout"] == model["final_dropout"] == 0.0
    assert cfg.blank_bias == 0.0
    assert cfg.ctc_loss == "sentence"  # every one sets optimization.sentence_avg: true


def test_command_line_overrides_a_recipe_and_an_unknown_one_is_one_line(tmp_path, capsys):
    assert main(["finetune", "--recipe", "nope", "--train", str(tmp_path / "t.jsonl"), "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: --recipe nope: no such finetune recipe (available: vox-100h, vox-10h, vox-10m")
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()
    cfg = load_config(FinetuneConfig, [recipe_path("vox-10h", "finetune")], {"update_freq": "5", "lr": "2e-4"})
    assert (cfg.update_freq, cfg.lr, cfg.max_updates) == (5, 2e-4, 20000)
    with pytest.raises(XlsrError, match="no such pretrain recipe"):
        recipe_path("vox-10h")


def test_ctc_loss_is_mean_unless_asked_and_a_bad_value_is_one_line(tmp_path, capsys):
    assert FinetuneConfig().ctc_loss == "mean"  # every run without a recipe, the demo's included
    cfg = load_config(FinetuneConfig, [recipe_path("vox-10h", "finetune")], {"ctc_loss": "mean"})
    assert cfg.ctc_loss == "mean"
    assert main(["finetune", "--ctc-loss", "token", "--train", "t.jsonl", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == "xlsr: error: command line: ctc_loss: cannot use 'token' as 'mean' | 'sentence'\n"
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("ctc_loss: token\n")
    bad = re.escape(f"{yaml_file}: ctc_loss: cannot use 'token' as 'mean' | 'sentence'")
    with pytest.raises(XlsrError, match=f"^{bad}$"):
        load_config(FinetuneConfig, [yaml_file])
    assert not (tmp_path / "r").exists()


def _resolved(argv):
    from xlsr.cli.finetune import finetune_config
    from xlsr.cli.main import build_parser

    return finetune_config(build_parser(argv).parse_args(argv))


def test_a_ratio_on_the_command_line_replaces_the_recipes_freeze_count(tmp_path):
    base = ["finetune", "--recipe", "vox-10m", "--train", "t.jsonl", "--out", str(tmp_path / "r")]
    assert _resolved(base).freeze_updates == 10000
    cfg = _resolved([*base, "--freeze-ratio", "0.3", "--max-updates", "2000"])
    assert (cfg.freeze_updates, cfg.freeze_ratio, cfg.max_updates) == (None, 0.3, 2000)
    assert _resolved([*base, "--freeze-updates", "none"]).freeze_updates is None  # Python's word for null
    with pytest.raises(XlsrError, match="freeze_updates: 10000 is more than max_updates 2000, so the Transformer "
                                        "would never train"):
        _resolved([*base, "--max-updates", "2000"])


def test_a_recipe_named_in_a_config_file_is_applied_and_an_unknown_one_is_one_line(tmp_path, capsys):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("recipe: vox-1h\nlr: 2.0e-5\n")
    cfg = _resolved(["finetune", "--config", str(yaml_file), "--train", "t.jsonl", "--out", str(tmp_path / "r")])
    assert (cfg.recipe, cfg.max_updates, cfg.freeze_updates, cfg.lr) == ("vox-1h", 13000, 10000, 2e-5)  # YAML > recipe
    yaml_file.write_text("recipe: no-such\n")
    assert main(["finetune", "--config", str(yaml_file), "--train", "t.jsonl", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xlsr: error: {yaml_file}: recipe no-such: no such finetune recipe") and err.count("\n") == 1


def test_a_typo_in_a_model_section_is_one_line_when_the_config_is_read(tmp_path):
    from xlsr.train.pretrain import PretrainConfig

    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("model:\n  mask_prb: 0.5\n")
    for cls in (FinetuneConfig, PretrainConfig):
        with pytest.raises(XlsrError, match=r"^model.mask_prb: unknown Wav2Vec2Config field; allowed: "):
            load_config(cls, [yaml_file])
