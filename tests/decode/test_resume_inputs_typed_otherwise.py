"""A stopped `xlsr transcribe` resumed with the same recordings named otherwise (relative or absolute, `dir/` or
`dir/../dir`, through a link, from another folder) transcribes only the files not done yet, and its OUT names every
file as this run typed it: byte for byte the OUT of a run from scratch typed so. The same relative names typed in
another folder are other recordings: nothing of the earlier run is taken for them."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint

from xlsr.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_ctc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", VOCAB)


def _recordings(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(3):
        sf.write(folder / f"u{k}.wav", tone_utterance(no_repeats(3 + k, rng), rng), 16000)
    return folder


def _transcribe(ckpt: Path, inputs: list[str], out: Path, monkeypatch, *, stop_after: int | None = None):
    """`xlsr transcribe INPUTS --out OUT` a batch per file, stopped by Ctrl-C in batch `stop_after` + 1; the exit
    code and the number of batches decoded."""
    from xlsr.decode import transcribe as transcribe_module

    real, decoded = transcribe_module._decode_batch, []

    def counted(*a, **kw):
        if stop_after is not None and len(decoded) == stop_after:
            raise KeyboardInterrupt
        decoded.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(transcribe_module, "_decode_batch", counted)
    code = main(["transcribe", "--model", str(ckpt), *inputs, "--out", str(out), "--no-progress",
                 "--batch-seconds", "1", "--decode-workers", "0"])
    monkeypatch.setattr(transcribe_module, "_decode_batch", real)
    return code, len(decoded)


def _fresh(ckpt: Path, inputs: list[str], out: Path, monkeypatch) -> bytes:
    assert _transcribe(ckpt, inputs, out, monkeypatch) == (0, 3)
    return out.read_bytes()


@pytest.mark.parametrize("first, again", [
    (["audio"], ["{abs}"]),
    (["{abs}/"], ["audio"]),
    (["./audio/"], ["audio/../audio"]),
    (["audio"], ["link"]),
    (["./audio/u0.wav", "audio/u1.wav", "{abs}/u2.wav"], ["{abs}/u0.wav", "audio/u1.wav", "./audio/u2.wav"]),
])
def test_the_same_files_typed_otherwise_resume_and_are_named_as_typed_now(tiny_ckpt, tmp_path, monkeypatch, capsys,
                                                                         first, again):
    monkeypatch.chdir(tmp_path)
    audio = _recordings(tmp_path / "audio", seed=0)
    (tmp_path / "link").symlink_to(audio)
    first, again = ([a.format(abs=audio) for a in typed] for typed in (first, again))
    out = tmp_path / "o.jsonl"
    assert _transcribe(tiny_ckpt, first, out, monkeypatch, stop_after=1) == (130, 1)
    capsys.readouterr()
    assert _transcribe(tiny_ckpt, again, out, monkeypatch) == (0, 2)  # only the two files not done yet
    assert "resuming: 1 of 3 file(s) already in" in capsys.readouterr().err
    assert out.read_bytes() == _fresh(tiny_ckpt, again, tmp_path / "fresh.jsonl", monkeypatch)
    assert not out.with_name("o.jsonl.partial").exists()


def test_a_stopped_job_resumes_from_another_folder(tiny_ckpt, tmp_path, monkeypatch, capsys):
    audio = _recordings(tmp_path / "one" / "audio", seed=0)
    (tmp_path / "two").mkdir()
    out = tmp_path / "o.jsonl"
    monkeypatch.chdir(tmp_path / "one")
    assert _transcribe(tiny_ckpt, ["audio"], out, monkeypatch, stop_after=2)[0] == 130
    monkeypatch.chdir(tmp_path / "two")  # the same recordings, from here
    assert _transcribe(tiny_ckpt, ["../one/audio"], out, monkeypatch) == (0, 1)
    assert "resuming: 2 of 3 file(s)" in capsys.readouterr().err
    assert out.read_bytes() == _fresh(tiny_ckpt, ["../one/audio"], tmp_path / "fresh.jsonl", monkeypatch)
    assert audio.is_dir()


def test_the_same_relative_names_in_another_folder_are_other_recordings(tiny_ckpt, tmp_path, monkeypatch, capsys):
    _recordings(tmp_path / "one" / "audio", seed=0)
    _recordings(tmp_path / "two" / "audio", seed=1)  # the same names, other sounds
    out = tmp_path / "o.jsonl"
    monkeypatch.chdir(tmp_path / "one")
    assert _transcribe(tiny_ckpt, ["audio"], out, monkeypatch, stop_after=2)[0] == 130
    monkeypatch.chdir(tmp_path / "two")
    capsys.readouterr()
    assert _transcribe(tiny_ckpt, ["audio"], out, monkeypatch) == (0, 3)  # none of one/'s results is taken
    assert "resuming" not in capsys.readouterr().err
    assert out.read_bytes() == _fresh(tiny_ckpt, ["audio"], tmp_path / "fresh.jsonl", monkeypatch)
    assert os.path.isdir(tmp_path / "one" / "audio")


def test_each_runs_relative_names_are_read_against_its_own_folder(tmp_path, monkeypatch):
    from xlsr.decode.partial_results import PartialResults

    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    out, settings = tmp_path / "o.jsonl", {"model": "M"}
    monkeypatch.chdir(tmp_path / "a")
    kept = PartialResults(out, settings, by_file=True)
    kept.append({"audio": "x.wav", "text": "X"})
    kept.close()
    monkeypatch.chdir(tmp_path / "b")  # a rerun started elsewhere appends its own relative names
    again = PartialResults(out, settings, by_file=True)
    again.append({"audio": "y.wav", "text": "Y"})
    again.close()
    monkeypatch.chdir(tmp_path / "c")
    third = PartialResults(out, settings, by_file=True)
    real = Path(os.path.realpath(tmp_path))
    assert third.done() == {str(real / "a" / "x.wav"), str(real / "b" / "y.wav")}
    assert third.finish(["../a/x.wav", str(tmp_path / "b" / "y.wav"), "x.wav"]) == ["../a/x.wav",
                                                                                  str(tmp_path / "b" / "y.wav")]
    assert out.read_text() == (f'{{"audio": "../a/x.wav", "text": "X"}}\n'
                               f'{{"audio": "{tmp_path / "b" / "y.wav"}", "text": "Y"}}\n')
    assert third.path.is_file()  # c/x.wav has no result: kept for a rerun
