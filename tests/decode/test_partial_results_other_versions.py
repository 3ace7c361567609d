"""OUT.partial that this version did not write: one kept by an earlier version of xlsr transcribe (which recorded
--model as typed, not the checkpoint it meant nor its files' fingerprint) cannot be checked against this run, and a
file whose first line is no settings line is not ours. Both are refused in one line and left exactly as they were."""

import json

import pytest

from xlsr.cli.main import main
from xlsr.decode.partial_results import PartialResults
from xlsr.errors import XlsrError

# The settings line as xlsr transcribe wrote it before it recorded the resolved checkpoint and its fingerprint
EARLIER = {"model": "runs/ft", "target_lang": None, "precision": "fp32", "lm": None, "lexicon": None, "beam": None,
           "lm_weight": None, "word_score": None, "timestamps": False, "chunk_seconds": 30.0, "chunk_stride": 2.0}


def _result(name: str) -> dict:
    return {"audio": name, "text": name.upper()}


def test_an_earlier_versions_results_are_refused_in_one_line_and_kept(tmp_path, capsys):
    out, audio = tmp_path / "o.jsonl", tmp_path / "a.wav"
    partial = out.with_name("o.jsonl.partial")
    lines = [{"settings": EARLIER}, _result(str(audio))]
    partial.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"audio": "b.wa')  # and a torn last line
    before = partial.read_bytes()
    code = main(["transcribe", "--model", str(tmp_path / "ckpt"), str(audio), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"xlsr: error: {partial}: results of an earlier run with other settings (model, "
                          f"model_files), kept by another version of xlsr transcribe, which records other settings "
                          f"(model_files not recorded), so they cannot be checked against this run; they are left as "
                          f"they are: finish them with that version, or move the file away")
    assert "give --model" not in err  # the same --model again would be refused again
    assert partial.read_bytes() == before and not out.exists()  # nothing of the user's cut off or removed


def test_settings_this_version_does_not_know_are_named(tmp_path):
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, {"model": "A", "beam": None, "speed": 2})  # a later version's settings line
    kept.append(_result("a.wav"))
    kept.close()
    with pytest.raises(XlsrError, match=r"earlier run with other settings \(speed\), kept by another version of "
                                        r"xlsr transcribe, which records other settings \(lm not recorded, speed "
                                        r"unknown here\)"):
        PartialResults(out, {"model": "A", "beam": None, "lm": None})
    with pytest.raises(XlsrError, match=r"o\.jsonl\.partial: results of an earlier run, kept by another version of "
                                        r"xlsr transcribe, which records other settings \(lm not recorded\)"):
        PartialResults(out, {"model": "A", "beam": None, "speed": 2, "lm": None})  # the same, and one more: None
    assert PartialResults(out, {"model": "A", "beam": None, "speed": 2}).done() == {"a.wav"}  # still whole


@pytest.mark.parametrize("first", ['{"audio": "a.wav", "text": "A"}\n', "results of monday\n", '{"settings": 3}\n'])
def test_a_file_whose_first_line_is_no_settings_line_is_refused_and_kept(tmp_path, first):
    out = tmp_path / "o.jsonl"
    partial = out.with_name("o.jsonl.partial")
    partial.write_text(first + '{"audio": "b.wav", "text": "B"}\n')
    before = partial.read_bytes()
    with pytest.raises(XlsrError) as caught:
        PartialResults(out, {"model": "A"})
    assert str(caught.value) == (f"{partial}: not a file of results kept by xlsr transcribe (its first line records "
                                 f"no settings); it is left as it is: move it away or give another OUT")
    assert partial.read_bytes() == before


@pytest.mark.parametrize("torn", ['{"sett', '{"settings": {"model": "A"', ""])
def test_a_settings_line_torn_anywhere_starts_over(tmp_path, torn):
    out = tmp_path / "o.jsonl"
    out.with_name("o.jsonl.partial").write_text(torn)
    kept = PartialResults(out, {"model": "B"})
    assert kept.done() == set() and not kept.path.exists()
