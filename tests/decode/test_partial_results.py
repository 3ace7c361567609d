"""OUT.partial: results kept as they are made; torn lines, torn settings and failed files on a restart."""

import json

import pytest

from xlsr.decode.partial_results import PartialResults
from xlsr.errors import XlsrError

SETTINGS = {"model": "A", "beam": None}


def _result(name: str) -> dict:
    return {"audio": name, "text": name.upper()}


def test_a_result_after_a_torn_line_is_on_a_line_of_its_own(tmp_path):
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, SETTINGS)
    kept.append(_result("a.wav"))
    kept.close()
    with open(kept.path, "a") as f:
        f.write('{"audio": "b.wav", "te')  # a kill in the middle of a line
    again = PartialResults(out, SETTINGS)
    assert again.done() == {"a.wav"}
    again.append(_result("b.wav"))
    again.append(_result("c.wav"))
    again.close()
    assert PartialResults(out, SETTINGS).done() == {"a.wav", "b.wav", "c.wav"}  # none lost on the next restart
    assert all(json.loads(line) for line in kept.path.read_text().splitlines())


def test_a_torn_settings_line_starts_over_and_records_the_new_settings(tmp_path):
    out = tmp_path / "o.jsonl"
    path = out.with_name("o.jsonl.partial")
    path.write_text('{"settings": {"model": "A"')  # the first write of a run, cut short
    other = {"model": "B", "beam": None}
    kept = PartialResults(out, other)
    assert kept.done() == set()
    kept.append(_result("a.wav"))
    kept.close()
    assert json.loads(path.read_text().splitlines()[0]) == {"settings": other}  # checked on the next restart
    assert PartialResults(out, other).done() == {"a.wav"}


def test_files_that_failed_keep_the_partial_file_so_a_rerun_retries_only_them(tmp_path):
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, SETTINGS)
    kept.append(_result("a.wav"))
    kept.append(_result("c.wav"))
    assert kept.finish(["a.wav", "b.wav", "c.wav"]) == ["a.wav", "c.wav"]  # b.wav failed
    assert kept.path.is_file()
    rerun = PartialResults(out, SETTINGS)
    assert rerun.done() == {"a.wav", "c.wav"}
    rerun.append(_result("b.wav"))
    assert rerun.finish(["a.wav", "b.wav", "c.wav"]) == ["a.wav", "b.wav", "c.wav"]
    assert not rerun.path.exists()
    assert [json.loads(line)["audio"] for line in out.read_text().splitlines()] == ["a.wav", "b.wav", "c.wav"]


def test_a_name_that_is_not_utf8_is_kept_and_found_again(tmp_path):
    # Python holds a file name's non-UTF-8 bytes as lone surrogates, which UTF-8 cannot encode
    out, name = tmp_path / "o.jsonl", "caf\udce9.wav"
    kept = PartialResults(out, SETTINGS)
    kept.append(_result(name))
    kept.append(_result("é.wav"))
    kept.close()
    assert PartialResults(out, SETTINGS).done() == {name, "é.wav"}
    assert "é.wav" in kept.path.read_text(encoding="utf-8")  # other lines keep their text as it is
    assert PartialResults(out, SETTINGS).finish([name, "é.wav"]) == [name, "é.wav"]
    assert [json.loads(line)["audio"] for line in out.read_text(encoding="utf-8").splitlines()] == [name, "é.wav"]


def test_advice_for_a_changed_setting_names_both_values_even_with_braces(tmp_path):
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, {"model": "/ckpt/{a}", "beam": None})
    kept.append(_result("a.wav"))
    kept.close()
    advice = {"model": "made with {was}, now {now}: give --model {was}"}
    with pytest.raises(XlsrError) as caught:
        PartialResults(out, {"model": "/ckpt/{b}", "beam": None}, advice=advice)
    assert str(caught.value) == (f"{kept.path}: results of an earlier run with other settings (model); made with "
                                 "/ckpt/{a}, now /ckpt/{b}: give --model /ckpt/{a}")
    with pytest.raises(XlsrError, match=r"\(beam\); run that command again to finish it, or delete the file"):
        PartialResults(out, {"model": "/ckpt/{a}", "beam": 5}, advice=advice)
