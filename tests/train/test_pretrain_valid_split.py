"""Which validation a pretraining run gets: never silently none when a split was asked for or is broken."""

import pytest

from xlsr.errors import XlsrError
from xlsr.train.distributed import DistInfo
from xlsr.train.pretrain import PretrainConfig, PretrainTask

from ._audio import TINY_MODEL, make_corpus


def _task(data, tmp_path, **kw):
    return PretrainTask(PretrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", model=dict(TINY_MODEL),
                                       max_tokens=64000, min_sample_size=8000, max_sample_size=16000, num_workers=0,
                                       progress=False, tensorboard=False, device="cpu", **kw))


def test_a_split_asked_for_by_name_must_exist(tmp_path):
    data = make_corpus(tmp_path / "tones", per_lang=2)  # train and dev
    with pytest.raises(XlsrError, match=r"valid_split: .* has no valid\.jsonl for any of aa, bb"):
        _task(data, tmp_path, valid_split="valid")
    assert sorted(_task(data, tmp_path).valid_utts.by_language()) == ["aa", "bb"]


def test_without_the_default_split_the_run_says_it_trains_without_validation(tmp_path, caplog):
    data = make_corpus(tmp_path / "tones", per_lang=2, splits=("train",))
    task = _task(data, tmp_path)
    assert not task.has_valid
    assert "has no dev manifests: training without validation" in caplog.text


def test_a_language_without_the_split_is_named_and_the_others_are_validated(tmp_path, caplog):
    data = make_corpus(tmp_path / "tones", per_lang=2)
    (data / "bb" / "dev.jsonl").unlink()
    task = _task(data, tmp_path, langs=["aa", "bb"])
    assert sorted(task.valid_utts.by_language()) == ["aa"]
    assert "no dev.jsonl for bb; validation covers aa only" in caplog.text


def test_a_broken_validation_manifest_is_an_error_not_a_run_without_validation(tmp_path):
    data = make_corpus(tmp_path / "tones", per_lang=2)
    (data / "bb" / "dev.jsonl").write_bytes(b"\xff\xfe not a manifest\n")
    with pytest.raises(XlsrError, match="dev.jsonl"):
        _task(data, tmp_path)


def _break_one_dev_file(data):
    import json
    line = json.loads((data / "aa" / "dev.jsonl").read_text().splitlines()[0])
    audio = data / "aa" / line["audio"] if not line["audio"].startswith("/") else line["audio"]
    open(audio, "wb").write(b"not audio")


def test_a_bad_dev_file_counts_against_the_runs_own_max_bad_share_and_the_error_names_the_dev_set(tmp_path):
    data = make_corpus(tmp_path / "tones", per_lang=2)  # aa's dev set: 2 files, one made unreadable
    _break_one_dev_file(data)
    lenient = _task(data, tmp_path, max_bad_share=0.5)  # one of two: at the cap, validated on the other
    lenient.setup(DistInfo())
    assert sum(len(b.waveforms) for b in lenient.valid_sets()["aa"]) == 1
    strict = _task(data, tmp_path, max_bad_share=0.2)
    strict.setup(DistInfo())
    with pytest.raises(XlsrError, match=r"^validation set 'aa' \(dev split of .*tones\): 1 of 2 audio files .*"
                                        r"more than max_bad_share=0\.2"):
        list(strict.valid_sets()["aa"])
