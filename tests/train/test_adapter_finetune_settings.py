"""MMS adapter fine-tuning: settings that cannot hold are refused before anything is loaded, trained or written, and
the run says where a language's adapters start."""

import sys
from pathlib import Path

import pytest

from xlsr.cli.main import main
from xlsr.errors import XlsrError
from xlsr.train.finetune import FinetuneConfig, FinetuneTask

from ._tones import write_tone_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from mms_fixtures import write_mms_dir  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = ["--progress", "false", "--tensorboard", "false"]


@pytest.fixture(scope="module")
def mms(tmp_path_factory):
    return write_mms_dir(tmp_path_factory.mktemp("mms") / "mms-1b-all")


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), "train", 2, seed=1, phones_per_utt=(2, 3))


@pytest.mark.parametrize("lang", ["a/b", "../up", "x\\y", "in\td", "en.US", "a b"])
def test_a_target_lang_that_cannot_name_the_adapter_file_is_refused_before_training(mms, train, tmp_path, capsys,
                                                                                  lang):
    # It names RUN/adapter/adapter.<lang>.safetensors: before, the whole run trained and then failed to write it.
    run = tmp_path / "run"
    assert main(["finetune", "--init", str(mms), "--target-lang", lang, "--train-only", "adapters",
                 "--train", str(train), "--labels", "chars", "--out", str(run), "--max-updates", "1", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err == (f"xlsr: error: target_lang: {lang!r} cannot name the adapter file adapter.<lang>.safetensors "
                   f"(letters, digits, '_' and '-' only); MMS names languages by ISO 639-3 codes, e.g. 'ind'\n")
    assert not run.exists()


def test_codes_mms_uses_are_taken():
    for lang in ("ind", "cmn-script_simplified", "azj-script_latin"):
        assert FinetuneConfig(train=["t.jsonl"], train_only="adapters", target_lang=lang).target_lang == lang


def test_a_cnn_asked_to_train_with_adapters_only_is_refused():
    # Before, the CNN stayed frozen while config.yaml said freeze_feature_encoder: false.
    with pytest.raises(XlsrError, match=r"^freeze_feature_encoder: false, but with train_only adapters only the "
                                        r"adapters and the CTC head train \(the CNN stays frozen\); leave "
                                        r"--freeze-feature-encoder out$"):
        FinetuneConfig(train=["t.jsonl"], train_only="adapters", target_lang="ind", freeze_feature_encoder=False)
    assert not FinetuneConfig(train=["t.jsonl"], freeze_feature_encoder=False).freeze_feature_encoder


def test_a_target_lang_for_a_model_without_adapters_is_refused(train, tmp_path):
    # Before, --init none took it and recorded a language for a model with no adapters in every checkpoint.
    cfg = FinetuneConfig(train=[str(train)], labels="chars", out=str(tmp_path / "r"), target_lang="ind")
    with pytest.raises(XlsrError, match=r"^target_lang: 'ind' picks a language of an MMS --init with per-language "
                                        r"adapters; --init none has none \(and model.adapter_attn_dim is not set\)$"):
        FinetuneTask(cfg)
    # A random model with adapters is that language's.
    task = FinetuneTask(FinetuneConfig(train=[str(train)], labels="chars", out=str(tmp_path / "r"), target_lang="ind",
                                       model={"adapter_attn_dim": 4}))
    assert task.model_config.adapter_attn_dim == 4


@pytest.mark.parametrize("lang, new_head, note", [
    ("fra", True, " (--init has this language: its adapters continue training; a new head)"),
    ("fra", False, " (--init has this language: its adapters and head continue training)"),
    ("xyz", False, " (a new language)"),
])
def test_the_run_says_whether_the_language_is_new_or_the_inits(mms, train, tmp_path, lang, new_head, note):
    # A language the checkpoint has is continued, not refused: its RUN/adapter/ replaces that language's.
    cfg = FinetuneConfig(train=[str(train)], labels="chars", out=str(tmp_path / "r"), init=str(mms), oov="unk",
                         target_lang=lang, train_only="adapters", new_head=new_head)
    task = FinetuneTask(cfg)
    task.build_model()
    assert task.describe().startswith(f"training only the adapters and CTC head of {lang!r}{note}: ")
