"""`xlsr transcribe` as a job over many files: names that are not UTF-8, resuming with the model it was begun
with (not another checkpoint of the same run folder), choosing what to resume, too short a window; and the
streaming API's refusal of multi-channel blocks."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint

from xlsr.cli.main import main
from xlsr.data.audio import audio_num_samples, load_audio
from xlsr.decode.partial_results import PartialResults
from xlsr.decode.streaming import StreamingTranscriber
from xlsr.decode.transcribe import load_ctc_model, transcribe_files
from xlsr.errors import AudioError, XlsrError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _save(where: Path, seed: int) -> Path:
    return tiny_ctc_checkpoint(where, VOCAB, seed)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", seed=0)


def _write(path, n_phones: int, seed: int):
    rng = np.random.default_rng(seed)
    sf.write(path, tone_utterance(no_repeats(n_phones, rng), rng), 16000)
    return path


def _non_utf8_name(folder: Path) -> Path:
    """A wav in `folder` whose name's bytes are latin-1 "café.wav" (as from an old archive), not UTF-8."""
    path = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.wav"))  # Python holds the byte as a lone surrogate
    _write(folder / "tmp.wav", 3, seed=7)
    try:
        os.replace(folder / "tmp.wav", os.fsencode(path))  # the name's own bytes
    except OSError:
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    return path


def test_a_file_name_that_is_not_utf8_is_read_and_its_json_line_round_trips(tiny_ckpt, tmp_path, capsys):
    d = tmp_path / "audio"
    d.mkdir()
    for name in ("a.wav", "z.wav"):
        _write(d / name, 4, seed=len(name))
    odd = _non_utf8_name(d)
    # the loader and the header reader agree on such a name (the job sizes files with one, decodes with the other)
    assert audio_num_samples(odd) == len(load_audio(odd)) > 0
    out = tmp_path / "out.jsonl"
    args = ["transcribe", "--model", str(tiny_ckpt), str(d), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert "transcribed 3 file(s)" in capsys.readouterr().err
    data = out.read_bytes()
    data.decode("utf-8")  # the output stays UTF-8 (no raw surrogate, which no UTF-8 file can hold)
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert [os.fsencode(r["audio"]) for r in records] == [os.fsencode(d / "a.wav"), os.fsencode(odd),
                                                          os.fsencode(d / "z.wav")]
    alone, _ = transcribe_files(load_ctc_model(tiny_ckpt), [odd], show_progress=False)
    assert records[1]["text"] == alone[0].hypothesis.text
    # only a line holding such a name is escaped; the others keep their text as it is
    from xlsr.atomic import json_line

    assert json_line({"audio": "é"}) == '{"audio": "é"}\n'
    assert json_line({"audio": odd.name}) == '{"audio": "caf\\udce9.wav"}\n'


def test_a_stopped_job_with_such_a_name_resumes_without_doing_it_again(tiny_ckpt, tmp_path, capsys, monkeypatch):

    d = tmp_path / "audio"
    d.mkdir()
    _write(d / "z.wav", 5, seed=1)
    odd = _non_utf8_name(d)
    out = tmp_path / "out.jsonl"
    args = ["transcribe", "--model", str(tiny_ckpt), str(d), "--out", str(out), "--no-progress",
            "--batch-seconds", "1"]  # a batch per file: the shorter (odd) first
    _stop_after_one_batch(monkeypatch, args)
    assert main(args) == 0
    assert "resuming: 1 of 2 file(s) already in" in capsys.readouterr().err  # the odd name was found again
    assert [os.fsencode(json.loads(line)["audio"]) for line in out.read_text().splitlines()] == [
        os.fsencode(odd), os.fsencode(d / "z.wav")]


def test_an_audio_file_soundfile_refuses_with_value_error_is_one_failure(tiny_ckpt, tmp_path, monkeypatch):
    import soundfile

    good, bad = _write(tmp_path / "good.wav", 3, seed=0), _write(tmp_path / "bad.wav", 3, seed=1)
    real_info = soundfile.info

    def refuses_bad(file, *a, **kw):
        if os.fsdecode(file).endswith("bad.wav"):
            raise ValueError("a reason soundfile gives itself")
        return real_info(file, *a, **kw)

    monkeypatch.setattr(soundfile, "info", refuses_bad)
    with pytest.raises(AudioError, match=r"bad.wav: not a readable audio file \(a reason soundfile gives itself\)"):
        audio_num_samples(bad)
    results, failures = transcribe_files(load_ctc_model(tiny_ckpt), [good, bad], show_progress=False)
    assert [r.audio for r in results] == [str(good)] and [f.audio for f in failures] == [str(bad)]


def _run_folder(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    run, audio = tmp_path / "run", tmp_path / "audio"
    audio.mkdir()
    for k in range(3):
        _write(audio / f"u{k}.wav", 3 + k, seed=k)
    _save(run / "checkpoints" / "last", seed=0)
    out = tmp_path / "out.jsonl"
    return run, out, ["transcribe", "--model", str(run), str(audio), "--out", str(out), "--no-progress",
                      "--batch-seconds", "1"]


def _stop_after_one_batch(monkeypatch, args) -> None:
    """`xlsr transcribe ARGS` stopped by Ctrl-C during its second batch (exit 130), then _decode_batch as it was."""
    from xlsr.decode import transcribe as transcribe_module

    real, calls = transcribe_module._decode_batch, []

    def dies_on_the_second_batch(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(transcribe_module, "_decode_batch", dies_on_the_second_batch)
    assert main(args) == 130
    monkeypatch.setattr(transcribe_module, "_decode_batch", real)


def test_a_run_folder_that_means_another_checkpoint_on_the_rerun_is_refused(tmp_path, capsys, monkeypatch):
    run, out, args = _run_folder(tmp_path)
    _stop_after_one_batch(monkeypatch, args)  # made with checkpoints/last
    assert "1 of 3 result(s) kept in" in capsys.readouterr().err
    _save(run / "checkpoints" / "best", seed=1)  # training went on: the run folder now means its best
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results of an earlier run with other settings (model, model_files)" in err
    assert f"made with the checkpoint {run / 'checkpoints' / 'last'}" in err
    assert f"now means {run / 'checkpoints' / 'best'}" in err
    assert not out.exists()
    # the checkpoint the results were made with finishes them: the same model throughout
    assert main([*args[:2], str(run / "checkpoints" / "last"), *args[3:]]) == 0
    assert "resuming: 1 of 3 file(s)" in capsys.readouterr().err


def test_a_checkpoint_saved_again_since_the_stop_is_refused(tmp_path, capsys, monkeypatch):
    run, out, args = _run_folder(tmp_path)
    _stop_after_one_batch(monkeypatch, args)
    assert "1 of 3 result(s) kept in" in capsys.readouterr().err
    _save(run / "checkpoints" / "last", seed=2)  # the same path, another model (training saved its last again)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings (model_files)" in err
    assert "was saved again since" in err and "delete the file to start over" in err and not out.exists()


def test_the_files_to_resume_are_chosen_with_one_look_at_the_done_set(tiny_ckpt, tmp_path, monkeypatch):
    # done() builds a set; built once per input file, choosing was quadratic (minutes for 100k files)
    d = tmp_path / "audio"
    d.mkdir()
    for k in range(4):
        _write(d / f"u{k}.wav", 3, seed=k)
    calls = []
    real = PartialResults.done

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(PartialResults, "done", counted)
    assert main(["transcribe", "--model", str(tiny_ckpt), str(d), "--out", str(tmp_path / "o.jsonl"),
                 "--no-progress"]) == 0
    assert len(calls) == 1


@pytest.mark.parametrize("command", ["transcribe", "stream"])
@pytest.mark.parametrize("seconds, frames", [("0.05", "2.5"), ("0.005", "0.25")])
def test_a_window_under_three_frames_is_refused_up_front_in_frames(tiny_ckpt, tmp_path, capsys, command, seconds,
                                                                    frames):
    wav = _write(tmp_path / "a.wav", 3, seed=0)
    target = [str(wav), "--out", str(tmp_path / "o.jsonl"), "--no-progress"] if command == "transcribe" else [str(wav)]
    assert main([command, "--model", str(tiny_ckpt), *target, "--chunk-seconds", seconds]) == 2
    err = capsys.readouterr().err
    assert err == (f"xlsr: error: --chunk-seconds: {seconds} s is {frames} frame(s) of 20 ms; a window must be at "
                   f"least 3 frames (0.06 s)\n")


def test_the_shortest_window_allowed_works_with_any_stride(tiny_ckpt, tmp_path):
    from xlsr.decode.chunking import MIN_CHUNK_FRAMES, plan_windows, window_context

    for chunk_s in np.arange(MIN_CHUNK_FRAMES * 0.02, 0.5, 0.001):
        for stride_s in (0.0, 0.01, 0.0125, 0.03, 2.0):
            plan = plan_windows(20000, chunk_s=float(chunk_s), stride_s=window_context(float(chunk_s), stride_s))
            assert plan[0].start == 0 and plan[-1].stop == 20000
    with pytest.raises(XlsrError, match=r"^chunking: a window of 0.05 s is 2 frame\(s\), and 1 frame\(s\) of "
                                        r"context on each side \(0.0125 s\) leave none to keep"):
        plan_windows(20000, chunk_s=0.05, stride_s=0.0125)
    with pytest.raises(XlsrError, match="streaming: the window: 0.04 s is 2 frame"):
        StreamingTranscriber(load_ctc_model(tiny_ckpt), chunk_s=0.04, stride_s=0.0)


def test_the_stream_refuses_a_block_of_several_channels(tiny_ckpt):
    stream = StreamingTranscriber(load_ctc_model(tiny_ckpt), chunk_s=4.0, stride_s=1.0, keep_logits=True)
    stereo = np.zeros((16000, 2), dtype=np.float32)  # what sf.read or a sound card gives for stereo
    with pytest.raises(XlsrError, match=r"expected mono samples of shape \(S,\), got \(16000, 2\)"):
        stream.feed(stereo)
    stream.feed(stereo.mean(axis=1))
    stream.finish()
    assert stream.logits.shape[0] == (16000 - 400) // 320 + 1  # 1 s heard, not 2 s of interleaved channels
