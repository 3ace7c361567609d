"""Fine-tuning says when the dev languages are not the training languages: a training language without dev utterances
is left out of the dev error rate that picks checkpoints/best, and a dev language never trained on counts in it."""

import json
import logging

import pytest

from xlsr.train.finetune import FinetuneConfig, FinetuneTask

from ._tones import write_tone_corpus

SMALL = {"conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, "hidden_size": 32,
         "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "conv_pos": 8, "conv_pos_groups": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def two_languages(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones2")
    return {(lang, split): write_tone_corpus(root, split, 3, seed=k, lang=lang)
            for k, (lang, split) in enumerate([("aa", "train"), ("aa", "dev"), ("bb", "train"), ("bb", "dev")])}


def _task(tmp_path, train, dev):
    return FinetuneTask(FinetuneConfig(train=[str(p) for p in train], dev=[str(p) for p in dev],
                                       out=str(tmp_path / "run"), init="none", model=SMALL))


def _dev_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("dev:")]


def test_a_training_language_without_dev_utterances_is_said(two_languages, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="xlsr")
    task = _task(tmp_path, [two_languages["aa", "train"], two_languages["bb", "train"]], [two_languages["aa", "dev"]])
    assert sorted(task.data.dev_utts) == ["aa"]
    (line,) = _dev_warnings(caplog)
    assert "no dev utterance of training language(s) 'bb'" in line and "checkpoints/best" in line
    assert "\n" not in line
    report = task.data.report()
    assert report["dev_languages"] == {"trained_not_validated": ["bb"], "validated_not_trained": []}
    json.dumps(report)  # what data_report.json is written from


def test_a_dev_language_not_trained_on_is_said(two_languages, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="xlsr")
    task = _task(tmp_path, [two_languages["aa", "train"]], [two_languages["aa", "dev"], two_languages["bb", "dev"]])
    assert sorted(task.data.dev_utts) == ["aa", "bb"]
    (line,) = _dev_warnings(caplog)
    assert "language(s) 'bb' have dev utterances but no training utterance" in line and "PER" in line
    assert task.data.report()["dev_languages"] == {"trained_not_validated": [], "validated_not_trained": ["bb"]}


def test_matching_languages_or_no_dev_say_nothing(two_languages, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="xlsr")
    task = _task(tmp_path, [two_languages["aa", "train"], two_languages["bb", "train"]],
                 [two_languages["aa", "dev"], two_languages["bb", "dev"]])
    assert _dev_warnings(caplog) == [] and "dev_languages" not in task.data.report()
    task = _task(tmp_path, [two_languages["aa", "train"], two_languages["bb", "train"]], [])
    assert _dev_warnings(caplog) == [] and "dev_languages" not in task.data.report()
