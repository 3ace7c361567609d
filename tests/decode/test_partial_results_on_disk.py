"""OUT.partial as another process (or the same command after a kill) sees it while the run goes on."""

import json

from xlsr.decode.partial_results import PartialResults

SETTINGS = {"model": "A", "beam": None}


def _result(name: str) -> dict:
    return {"audio": name, "text": name.upper()}


def test_each_result_is_on_disk_as_soon_as_it_is_kept(tmp_path):
    # a kill -9 runs no close(): what Python still buffers is lost, so each result is flushed at once
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, SETTINGS)
    kept.append(_result("a.wav"))
    lines = kept.path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"settings": SETTINGS}, _result("a.wav")]
    kept.append(_result("b.wav"))
    assert PartialResults(out, SETTINGS).done() == {"a.wav", "b.wav"}  # what a rerun after a kill would find
    kept.close()


def test_settings_that_json_reads_back_otherwise_still_match_on_a_rerun(tmp_path):
    # a tuple reads back from the file as a list: the same settings must not be taken for other ones
    out = tmp_path / "o.jsonl"
    settings = {"model": "A", "lm_weight": (0.5, 1.0)}
    kept = PartialResults(out, settings)
    kept.append(_result("a.wav"))
    kept.close()
    assert PartialResults(out, dict(settings)).done() == {"a.wav"}


def test_a_run_that_kept_no_result_still_writes_out_in_a_folder_not_made_yet(tmp_path):
    # every file failed: OUT is written (empty) and the failures listed, as when its folder exists
    out = tmp_path / "new" / "o.jsonl"
    assert PartialResults(out, SETTINGS).finish(["a.wav"]) == []
    assert out.read_text() == ""
