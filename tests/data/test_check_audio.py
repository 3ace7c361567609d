"""`xlsr data check`'s library (data/check_audio.py): the verdicts are training's (load_audio, checked_length), a
decoder that kills its worker is named and the check goes on, a stopped check resumes without decoding a file
twice, and the clean copies leave out the bad utterances with their audio paths still valid."""

import json
import os
import signal
from pathlib import Path

import _check_audio_helpers as fakes
import numpy as np
import pytest
from _check_audio_helpers import damage, write_corpus

from xlsr.data.audio import checked_length, load_audio
from xlsr.data.check_audio import (
    CLEAN_MARK,
    Bad,
    CheckStopped,
    Decoded,
    _Kept,
    check_audio,
    judge,
)
from xlsr.data.decoder_pool import crash_reason
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import read_manifest
from xlsr.errors import AudioError, ManifestError, XlsrError


def report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- judging: training's rule -----------------------------------------------------------------------------------

@pytest.mark.parametrize("samples, listed", [(16000, 16000), (16160, 16000), (15840, 16000), (1016, 1000)])
def test_a_length_within_trainings_tolerance_is_good(samples, listed):
    assert judge(Decoded(samples), listed, "a.wav") is None


@pytest.mark.parametrize("samples, listed", [(16161, 16000), (15839, 16000), (1017, 1000), (983, 1000)])
def test_a_length_beyond_it_is_wrong_in_checked_lengths_words(samples, listed):
    with pytest.raises(AudioError) as training:
        checked_length(np.zeros(samples, np.float32), listed, "a.wav")
    assert judge(Decoded(samples), listed, "a.wav") == Bad("wrong_length", str(training.value))


def test_too_short_is_judged_on_the_length_training_keeps():
    assert judge(Decoded(16000), 16000, "a.wav", min_sample_size=16000) is None
    assert judge(Decoded(15990), 16000, "a.wav", min_sample_size=16000) == Bad(
        "too_short", "a.wav: 15990 samples (1.00 s) once decoded, fewer than --min-sample-size 16000: pretraining "
                     "skips it")
    # longer than listed (within tolerance): cut to the manifest's length, as checked_length cuts it
    assert judge(Decoded(16010), 16000, "a.wav", min_sample_size=16005).kind == "too_short"


def test_a_failed_decode_is_its_own_verdict():
    failure = Bad("unreadable", "a.wav: no such audio file")
    assert judge(Decoded(failure=failure), 16000, "a.wav", min_sample_size=10**9) == failure


def test_crash_reason_names_the_signal_or_the_status():
    assert crash_reason(-11) == "killed by SIGSEGV"
    assert crash_reason(-6) == "killed by SIGABRT"
    assert crash_reason(3) == "exited with status 3"


# --- the check -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_the_report_lists_each_bad_utterance_with_its_kind(tmp_path, workers):
    manifest = write_corpus(tmp_path / "data", ["a", "garbled", "b", "wrong", "gone", "c"])
    expected = damage(manifest)
    result = check_audio([manifest], tmp_path / "r.jsonl", workers=workers, show_progress=False)

    lines = report(tmp_path / "r.jsonl")
    assert [(r["id"], r["line"], r["kind"]) for r in lines] == [("garbled", 2, "unreadable"),
                                                                 ("wrong", 4, "wrong_length"),
                                                                 ("gone", 5, "unreadable")]
    for r in lines:
        kind, message = expected[r["id"]]
        assert r["message"].startswith(message), r
        assert r["manifest"] == str(manifest)
        assert r["audio"] == str(manifest.parent.resolve() / "wav" / f"{r['id']}.flac")
    (summary,) = result.manifests
    assert (summary.files, dict(summary.bad), result.any_bad) == (6, {"unreadable": 2, "wrong_length": 1}, True)
    assert summary.line().endswith("checked; 3 bad (2 unreadable, 1 wrong_length)")
    assert not (tmp_path / "r.jsonl.partial").exists()


def test_too_short_only_when_asked(tmp_path):
    manifest = write_corpus(tmp_path / "data", ["a", "b", "c"])  # 4000, 4160, 4320 samples
    assert report_kinds(check_audio([manifest], tmp_path / "r.jsonl", workers=0, show_progress=False)) == {}
    result = check_audio([manifest], tmp_path / "r.jsonl", workers=0, min_sample_size=4200, show_progress=False)
    assert report_kinds(result) == {"too_short": 2}
    assert [r["id"] for r in report(tmp_path / "r.jsonl")] == ["a", "b"]


def report_kinds(result) -> dict[str, int]:
    return {k: n for m in result.manifests for k, n in m.bad.items()}


def test_a_crashing_decoder_names_its_file_and_the_check_goes_on(tmp_path, monkeypatch):
    names = ["a", "b", "x_segv", "c", "d", "y_exit", "e", "z_oom", "f", "g"]
    manifest = write_corpus(tmp_path / "data", names)
    monkeypatch.setenv("CHECK_AUDIO_LOG", str(tmp_path / "decoded.log"))
    result = check_audio([manifest], tmp_path / "r.jsonl", workers=2, decode=fakes.crashing, show_progress=False)

    audio = {name: str(manifest.parent.resolve() / "wav" / f"{name}.flac") for name in names}
    assert {r["id"]: (r["kind"], r["message"]) for r in report(tmp_path / "r.jsonl")} == {
        "x_segv": ("crashed", f"{audio['x_segv']}: decoder crashed (killed by SIGSEGV)"),
        "y_exit": ("crashed", f"{audio['y_exit']}: decoder crashed (exited with status 3)"),
        "z_oom": ("crashed", f"{audio['z_oom']}: decoder failed (MemoryError: cannot allocate 9 EiB)"),
    }
    # every other file judged, each decoded once (those sent to a dying worker after its crash went to a fresh one)
    decoded = (tmp_path / "decoded.log").read_text().splitlines()
    assert sorted(decoded) == sorted(audio[n] for n in names if n not in ("x_segv", "y_exit", "z_oom"))
    assert result.manifests[0].files == len(names)


def test_a_stopped_check_resumes_without_decoding_a_file_twice(tmp_path, monkeypatch):
    names = ["a", "garbled", "b", "stop", "wrong", "gone", "c"]
    manifest = write_corpus(tmp_path / "data", names)
    damage(manifest)
    monkeypatch.setenv("CHECK_AUDIO_LOG", str(tmp_path / "decoded.log"))
    out = tmp_path / "r.jsonl"
    with pytest.raises(CheckStopped) as stopped:
        check_audio([manifest], out, workers=0, decode=fakes.interrupting, show_progress=False)
    assert str(stopped.value) == f"3 of 7 files checked, kept in {out}.partial; the same command goes on from there"
    assert not out.exists()
    first = (tmp_path / "decoded.log").read_text().splitlines()

    resumed = check_audio([manifest], out, workers=0, decode=fakes.interrupting, show_progress=False)
    decoded = (tmp_path / "decoded.log").read_text().splitlines()
    assert len(decoded) == len(set(decoded)) and decoded[:len(first)] == first
    assert len(decoded) == 5  # a, b, stop, wrong, c: garbled and gone raise before the log
    uninterrupted = check_audio([manifest], tmp_path / "whole.jsonl", workers=0, show_progress=False)
    assert out.read_text() == (tmp_path / "whole.jsonl").read_text()
    assert resumed.lines()[0] == uninterrupted.lines()[0]
    assert not Path(f"{out}.partial").exists()


def test_ctrl_c_while_a_verdict_is_kept_leaves_it_on_disk_and_counted(tmp_path, monkeypatch, ctrl_c):
    manifest = write_corpus(tmp_path / "data", ["a", "b", "c"])
    keep = _Kept._keep

    def interrupted(self, key, bad):  # Ctrl-C after b's line is written, before it is counted
        if key == (0, 1):
            os.kill(os.getpid(), signal.SIGINT)
        keep(self, key, bad)

    monkeypatch.setattr(_Kept, "_keep", interrupted)
    with pytest.raises(CheckStopped, match="^2 of 3 files checked"):
        check_audio([manifest], tmp_path / "r.jsonl", workers=0, show_progress=False)
    assert len((tmp_path / "r.jsonl.partial").read_text().splitlines()) == 1 + 2  # the settings, a, b


def test_a_line_torn_by_a_kill_is_cut_off_and_its_file_checked_again(tmp_path, monkeypatch):
    manifest = write_corpus(tmp_path / "data", ["a", "garbled", "stop", "b"])
    damage_garbled_only(manifest)
    monkeypatch.setenv("CHECK_AUDIO_LOG", str(tmp_path / "decoded.log"))
    out = tmp_path / "r.jsonl"
    with pytest.raises(CheckStopped):
        check_audio([manifest], out, workers=0, decode=fakes.interrupting, show_progress=False)
    partial = Path(f"{out}.partial")
    lines = partial.read_bytes().splitlines(keepends=True)
    partial.write_bytes(b"".join(lines[:-1]) + lines[-1][:9])  # the last verdict (garbled's) torn by a kill
    check_audio([manifest], out, workers=0, decode=fakes.interrupting, show_progress=False)
    assert [(r["id"], r["kind"]) for r in report(out)] == [("garbled", "unreadable")]


def damage_garbled_only(manifest: Path) -> None:
    (manifest.parent / "wav" / "garbled.flac").write_bytes(b"\0" * 300)


def _stopped_check(tmp_path, monkeypatch, manifests, **kw) -> Path:
    monkeypatch.setenv("CHECK_AUDIO_LOG", str(tmp_path / "decoded.log"))
    with pytest.raises(CheckStopped):
        check_audio(manifests, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False, **kw)
    return tmp_path / "r.jsonl.partial"


def test_a_stopped_check_of_other_settings_is_refused_and_left_as_it_is(tmp_path, monkeypatch):
    es = write_corpus(tmp_path / "data", ["a", "stop", "b"])
    de = write_corpus(tmp_path / "data", ["c", "d"], lang="de")
    partial = _stopped_check(tmp_path, monkeypatch, [es])
    kept = partial.read_bytes()

    def refused(manifests, **kw) -> str:
        with pytest.raises(XlsrError) as exc:
            check_audio(manifests, tmp_path / "r.jsonl", workers=0, show_progress=False, **kw)
        assert partial.read_bytes() == kept
        return str(exc.value)

    assert refused([es, de]) == (f"{partial}: the results of an earlier check of other manifests ({es.resolve()}); "
                                 f"run that check again to finish it, or delete the file to start over")
    assert "made with --min-sample-size 0;" in refused([es], min_sample_size=100)
    es.write_text(es.read_text() + es.read_text().splitlines(keepends=True)[0])
    assert f"made before {es.resolve()} changed;" in refused([es])


def test_a_file_in_the_way_of_the_partial_results_is_left_as_it_is(tmp_path):
    manifest = write_corpus(tmp_path / "data", ["a"])
    (tmp_path / "r.jsonl.partial").write_text("my notes\n")
    with pytest.raises(XlsrError, match="r.jsonl.partial: not a file of results kept by xlsr data check"):
        check_audio([manifest], tmp_path / "r.jsonl", workers=0, show_progress=False)
    assert (tmp_path / "r.jsonl.partial").read_text() == "my notes\n"


def test_a_manifest_changed_during_the_check_is_refused_at_the_end(tmp_path):
    manifest = write_corpus(tmp_path / "data", ["a", "b"])
    first_line = manifest.read_text().splitlines(keepends=True)[0]

    def reimported(path):  # a re-import into the same folder while the check runs
        manifest.write_text(manifest.read_text() + first_line)
        return load_audio(path)

    with pytest.raises(XlsrError, match=r"train.jsonl: changed while it was being checked \(re-imported\?\); delete "
                                        r".*r.jsonl.partial and check it again"):
        check_audio([manifest], tmp_path / "r.jsonl", workers=0, decode=reimported, show_progress=False)
    assert not (tmp_path / "r.jsonl").exists()


# --- clean copies ----------------------------------------------------------------------------------------------

def test_clean_copies_leave_out_the_bad_and_keep_every_field_and_path_valid(tmp_path):
    manifest = write_corpus(tmp_path / "data", ["a", "garbled", "b", "wrong", "gone", "c"])
    damage(manifest)
    lines = manifest.read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "gender": "f"})  # a field xlsr does not read: kept
    lines.insert(2, "{not json")  # an invalid line: training skips it, the copy leaves it out
    manifest.write_text("\n".join(lines) + "\n")
    original = manifest.read_bytes()

    result = check_audio([manifest], tmp_path / "r.jsonl", workers=0, clean_dir=tmp_path / "clean",
                         data_dir=tmp_path / "data", show_progress=False)
    assert result.manifests[0].bad_lines == 1 and result.any_bad
    assert manifest.read_bytes() == original
    clean = tmp_path / "clean" / "es" / "train.jsonl"
    copied = [json.loads(line) for line in clean.read_text().splitlines()]
    assert [r["id"] for r in copied] == ["a", "b", "c"]
    assert copied[0]["gender"] == "f" and copied[1]["text"] == "hola b"
    # training's readers take the copy: the same utterances, the same audio files
    by_id = {u.id: u for u in _valid_utterances(manifest)}
    assert read_manifest(clean) == [by_id[i] for i in ("a", "b", "c")]
    index = open_manifest(clean)  # no bad line: a share of 0 refuses none
    assert [len(load_audio(index.audio(i))) for i in range(len(index))] == [by_id[i].num_samples for i in "abc"]


def _valid_utterances(manifest: Path):
    index = open_manifest(manifest, max_bad_share=1.0)
    return [index[i] for i in range(len(index))]


def test_clean_copies_replace_their_own_and_nothing_else(tmp_path):
    manifest = write_corpus(tmp_path / "data", ["a", "b"])
    data, clean = tmp_path / "data", tmp_path / "clean"

    def run(clean_dir, manifests=(manifest,), data_dir=data):
        return check_audio(list(manifests), tmp_path / "r.jsonl", workers=0, clean_dir=clean_dir, data_dir=data_dir,
                           show_progress=False)

    with pytest.raises(ManifestError, match="is the data folder itself; give another folder"):
        run(data)
    with pytest.raises(ManifestError, match=r"would be written over the manifest .*train.jsonl itself"):
        run(data, data_dir=None)  # the same folder, reached through --manifest alone
    run(clean)
    run(clean)  # a rerun replaces its own copy
    assert json.loads((clean / CLEAN_MARK).read_text())["copies"] == {"es/train.jsonl": str(manifest.resolve())}
    (clean / "de").mkdir()
    (clean / "de" / "train.jsonl").write_text("{}\n")
    with pytest.raises(ManifestError, match="already holds de/train.jsonl, a manifest xlsr data check did not write"):
        run(clean)
    assert (clean / "de" / "train.jsonl").read_text() == "{}\n"
    assert not (tmp_path / "r.jsonl.partial").exists()  # refused before any decoding
