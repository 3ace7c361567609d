"""Bad input refused with one line naming the option, field or file, before any work or folder is written:
negative seeds, num_samples beyond int64, seconds beyond any recording, infinite float settings, empty strings,
architecture overrides of an --init checkpoint, a normalize-text --out holding another corpus, --langs of one."""

import json

import pytest
import torch

from xlsr.cli.main import main
from xlsr.config import load_config
from xlsr.data.manifest import record_problem
from xlsr.data.normalize_corpus import normalize_corpus
from xlsr.errors import XlsrError
from xlsr.interop.init_model import apply_overrides, load_init
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.pretrain import PretrainConfig

CFG = dict(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2, ffn_dim=32,
           conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)  # fmt: skip


def _refused(argv, capsys) -> str:
    """The one `xlsr: error:` line of a command refused with status 2 (by the parser or by the command)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's refusal
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1, err  # argparse's refusals too (cli/main.py: its usage ran to 47 lines)
    return err.strip()


def _line(audio: str, num_samples, lang: str = "es") -> str:
    return json.dumps({"id": audio, "audio": audio, "num_samples": num_samples, "lang": lang, "text": "Hola, Mundo!"})


# --- synth --seed -----------------------------------------------------------------------------------------

def test_synth_negative_seed_is_refused_by_the_parser(tmp_path, capsys):
    err = _refused(["synth", "--out", tmp_path / "s", "--langs", "es", "--utts-per-lang", 3, "--seed", -1], capsys)
    assert "--seed: '-1': give a whole number 0 or more" in err
    assert not (tmp_path / "s").exists()


# --- manifest num_samples beyond int64 ----------------------------------------------------------------------

def test_num_samples_beyond_int64_is_a_bad_manifest_line():
    assert record_problem(json.loads(_line("a.wav", 2**63 - 1))) is None
    assert record_problem(json.loads(_line("a.wav", 2**63))) == "num_samples must be below 2**63, got 9223372036854775808"


def test_data_stats_names_the_line_with_a_huge_num_samples(tmp_path, capsys):
    (tmp_path / "d" / "es").mkdir(parents=True)
    (tmp_path / "d" / "es" / "train.jsonl").write_text(_line("a.wav", 99999999999999999999999) + "\n")
    err = _refused(["data", "stats", tmp_path / "d"], capsys)
    assert "train.jsonl:1: num_samples must be below 2**63, got 99999999999999999999999" in err


# --- seconds options ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, option", [
    (["transcribe", "--model", "m", "a.wav", "--out", "o.jsonl", "--chunk-seconds", "1e308"], "--chunk-seconds"),
    (["transcribe", "--model", "m", "a.wav", "--out", "o.jsonl", "--batch-seconds", "1e308"], "--batch-seconds"),
    (["evaluate", "--model", "m", "--manifest", "m.jsonl", "--chunk-seconds", "1e308"], "--chunk-seconds"),
    (["stream", "a.wav", "--model", "m", "--chunk-seconds", "1e308"], "--chunk-seconds"),
    (["stream", "a.wav", "--model", "m", "--piece-seconds", "1e308"], "--piece-seconds"),
    (["stream", "a.wav", "--model", "m", "--stride-seconds", "1e7"], "--stride-seconds"),
])
def test_seconds_beyond_any_recording_are_refused_before_the_model_loads(argv, option, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.chdir(tmp_path)  # the model and audio do not exist: the option is checked first
    err = _refused(argv, capsys)
    assert err.startswith(f"xlsr: error: {option}: ") and "more than the most allowed, 1e+06 s" in err
    assert not (tmp_path / "o.jsonl").exists()


# --- float settings: finite only; model loss weights and eps ------------------------------------------------------

@pytest.mark.parametrize("key, value", [("lr", "inf"), ("weight_decay", "1e309"), ("adam_eps", "inf"),
                                        ("lr", "-inf"), ("lr", "1" + "0" * 400)])
def test_infinite_float_settings_are_refused_naming_the_field(key, value, tmp_path):
    with pytest.raises(XlsrError, match=rf"^command line: {key}: must be a finite number, got '{value}'$"):
        load_config(PretrainConfig, None, {key: value})
    (tmp_path / "x.yaml").write_text(f"{key}: .inf\n")  # YAML's own infinity arrives as a float, not as text
    with pytest.raises(XlsrError, match=rf"x.yaml: {key}: must be a finite number, got inf$"):
        load_config(PretrainConfig, tmp_path / "x.yaml")


def test_pretrain_with_infinite_lr_stops_before_its_run_folder(tmp_path, capsys):
    err = _refused(["pretrain", "--data", tmp_path, "--out", tmp_path / "run", "--lr", "inf"], capsys)
    assert err == "xlsr: error: command line: lr: must be a finite number, got 'inf'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, words", [
    ("layer_norm_eps", 0.0, "must be a finite number > 0"), ("layer_norm_eps", -1.0, "must be a finite number > 0"),
    ("diversity_weight", -1.0, "must be a finite number >= 0"),
    ("feature_penalty_weight", -0.5, "must be a finite number >= 0"),
    ("feature_grad_mult", float("inf"), "must be a finite number >= 0"),
    ("logit_temp", float("inf"), "must be a finite number > 0"),
])
def test_model_loss_weights_and_eps_out_of_range_are_refused(field, value, words):
    with pytest.raises(XlsrError, match=rf"Wav2Vec2Config.{field}=.*: {words}"):
        Wav2Vec2Config(**{field: value})


# --- empty strings ------------------------------------------------------------------------------------------------

def test_empty_out_says_empty_value_not_null(tmp_path, capsys):
    err = _refused(["pretrain", "--data", tmp_path, "--out", ""], capsys)
    assert err == "xlsr: error: command line: out: empty value (expected str)"


@pytest.mark.parametrize("key", ["vocab", "target_lang", "init", "augment"])
def test_empty_string_settings_are_refused_not_read_as_unset(key):
    with pytest.raises(XlsrError, match=rf"^command line: {key}: empty value"):
        load_config(FinetuneConfig, None, {key: ""})
    with pytest.raises(XlsrError, match=rf"^command line: {key}: empty value"):
        load_config(FinetuneConfig, None, {key: "  "})
    assert load_config(FinetuneConfig, None, {"vocab": "null"}).vocab is None  # YAML's null still unsets


# --- model overrides of an --init checkpoint -------------------------------------------------------------------

@pytest.fixture
def init_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "ckpt", Wav2Vec2ForPreTraining(Wav2Vec2Config(**CFG)))


def test_architecture_overrides_of_an_init_checkpoint_name_the_option(init_checkpoint):
    init = load_init(str(init_checkpoint), "tiny")
    with pytest.raises(XlsrError, match=r"^model.hidden_size: the --init checkpoint has 24, not 64; with --init "
                                        r"only feature_grad_mult, dropout, .*mask_prob.* can be overridden$"):
        apply_overrides(init.config, {"hidden_size": "64"}, from_checkpoint=init.pretrained)
    with pytest.raises(XlsrError, match=r"^model.extractor_mode: the --init checkpoint has 'group_norm'"):
        apply_overrides(init.config, {"extractor_mode": "layer_norm"}, from_checkpoint=init.pretrained)
    with pytest.raises(XlsrError, match=r"^model.conv_layers: the --init checkpoint has"):
        apply_overrides(init.config, {"conv_layers": [[16, 10, 5], [16, 3, 3]]}, from_checkpoint=init.pretrained)
    # the training settings, and the checkpoint's own architecture given again, are fine
    same = apply_overrides(init.config, {"hidden_size": 24, "conv_layers": [[16, 10, 5], [16, 3, 2]],
                                         "mask_prob": "0.3", "layerdrop": 0.1, "feature_grad_mult": 0.0},
                           from_checkpoint=init.pretrained)
    assert (same.hidden_size, same.mask_prob, same.layerdrop, same.feature_grad_mult) == (24, 0.3, 0.1, 0.0)
    # without --init the preset's architecture is the run's to choose
    preset = load_init("none", "tiny")
    assert not preset.pretrained
    assert apply_overrides(preset.config, {"hidden_size": 64, "ffn_dim": 64},
                           from_checkpoint=preset.pretrained).hidden_size == 64


def test_finetune_cli_blames_the_option_not_the_checkpoint(init_checkpoint, tmp_path, capsys):
    (tmp_path / "es").mkdir()
    (tmp_path / "es" / "train.jsonl").write_text(_line("a.wav", 16000) + "\n")
    err = _refused(["finetune", "--init", init_checkpoint, "--train", tmp_path / "es" / "train.jsonl", "--labels",
                    "chars", "--out", tmp_path / "ft", "--model.hidden-size", 64, "--device", "cpu"], capsys)
    assert err.startswith("xlsr: error: model.hidden_size: the --init checkpoint has 24, not 64")
    assert not (tmp_path / "ft").exists()


# --- normalize-text --out -----------------------------------------------------------------------------------------

def _corpus(folder, text_lang="es"):
    (folder / text_lang).mkdir(parents=True)
    (folder / text_lang / "train.jsonl").write_text(_line("/abs/a.wav", 16000, text_lang) + "\n")
    return folder


def test_normalize_text_refuses_an_out_holding_another_corpus(tmp_path, capsys):
    data = _corpus(tmp_path / "A")
    other = _corpus(tmp_path / "B", "it")
    before = (other / "it" / "train.jsonl").read_text()
    (other / "es").mkdir()
    (other / "es" / "train.jsonl").write_text(before.replace('"it"', '"es"'))
    theirs = (other / "es" / "train.jsonl").read_text()
    err = _refused(["data", "normalize-text", "--data", data, "--out", other], capsys)
    assert err == (f"xlsr: error: --out {other}: already holds manifests normalize-text did not write "
                   f"(e.g. es/train.jsonl); give a new or empty folder")
    assert (other / "es" / "train.jsonl").read_text() == theirs  # not overwritten
    assert not (other / "normalize-text.json").exists()


def test_normalize_text_writes_into_an_empty_folder_and_again_into_its_own_copy(tmp_path):
    data = _corpus(tmp_path / "A")
    out = tmp_path / "out"
    out.mkdir()  # empty: fine
    normalize_corpus(data, out)
    assert json.loads((out / "es" / "train.jsonl").read_text())["text"] == "hola mundo"
    (data / "es" / "train.jsonl").write_text(_line("/abs/a.wav", 16000).replace("Hola, Mundo!", "Otra, Vez") + "\n")
    assert normalize_corpus(data, out).utterances == 1  # a rerun on the same data replaces its own copy
    assert json.loads((out / "es" / "train.jsonl").read_text())["text"] == "otra vez"
    other = _corpus(tmp_path / "C", "it")
    with pytest.raises(XlsrError, match=rf"--out {out}: already holds the normalized copy of {data}"):
        normalize_corpus(other, out)  # its manifests would be mixed with A's


def test_normalize_text_writes_nothing_for_a_bad_line(tmp_path):
    data = _corpus(tmp_path / "A")
    (data / "es" / "train.jsonl").write_text('{"audio": "x.wav"}\n')
    with pytest.raises(XlsrError, match=r"train.jsonl:1: missing field"):
        normalize_corpus(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- analyze --langs ------------------------------------------------------------------------------------------

def test_analyze_langs_of_one_language_names_langs(tmp_path, capsys):
    for lang in ("es", "it"):
        _corpus(tmp_path / "d", lang)
    err = _refused(["analyze", "--model", tmp_path / "none", "--data", tmp_path / "d", "--out", tmp_path / "o",
                    "--langs", "es", "--no-plots"], capsys)
    assert err == "xlsr: error: --langs names 1 language (es); give at least 2 languages (the analysis compares them)"
    assert not (tmp_path / "o").exists()
