"""Audio decoded in worker processes for transcription (data/decoder_pool.py): a decoder that kills its process
costs its file, listed as failed, and transcription goes on; the results are those of decoding in-process; a
rerun after such a crash does not die again; a stop leaves no worker behind."""

import json
import multiprocessing
import sys
import types
from pathlib import Path

import _crashing_decoders as decoders
import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint

import xlsr.decode.transcribe as transcribe_module
from xlsr.cli.main import main
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S, DecoderPool
from xlsr.decode.evaluate import evaluate, read_manifests
from xlsr.decode.transcribe import Failure, load_ctc_model, transcribe_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "|", "a", "i", "u"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_ctc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", VOCAB)


def _tones(path: Path, n_phones: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, tone_utterance(no_repeats(n_phones, rng), rng), 16000)
    return path


def _audio(folder: Path) -> list[Path]:
    """Tone files of several lengths (one long enough to be chunked), one whose decoder will crash, one with NaN
    samples (its header is fine: unreadable only once decoded) and one shorter than a frame."""
    folder.mkdir()
    files = [_tones(folder / f"u{k}.wav", 3 + 4 * k, seed=k) for k in range(4)]
    files.insert(2, _tones(folder / "x_segv.wav", 4, seed=9))
    nan = np.full(4000, 0.1, dtype=np.float32)
    nan[100] = np.nan
    sf.write(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(folder / "short.wav", np.zeros(100, dtype=np.float32), 16000)
    return files + [folder / "nan.wav", folder / "short.wav"]


def test_a_crashing_decoder_costs_its_file_and_the_rest_is_as_decoded_in_process(tiny_ckpt, tmp_path, monkeypatch):
    files = _audio(tmp_path / "audio")
    segv = str(tmp_path / "audio" / "x_segv.wav")
    ctc = load_ctc_model(tiny_ckpt)
    options = dict(timestamps=True, chunk_seconds=2.0, chunk_stride=0.5, max_batch_seconds=2.0, show_progress=False)

    def as_dicts(run):
        results, failures = run
        return [r.to_dict() for r in results], failures

    here = as_dicts(transcribe_files(ctc, files, decode_workers=0, **options))
    assert as_dicts(transcribe_files(ctc, files, decode_workers=2, **options)) == here
    assert any(r.get("chunked") for r in here[0])  # the windowed path was taken too
    assert [Path(f.audio).name for f in here[1]] == ["nan.wav", "short.wav"]

    # the same batches as a run without the crashing file: the same results, bit for bit
    here, here_failed = as_dicts(transcribe_files(ctc, [f for f in files if str(f) != segv], decode_workers=0,
                                                  **options))
    monkeypatch.setattr(transcribe_module, "waveform_or_reason", decoders.segv_on_marked)
    pooled, pooled_failed = as_dicts(transcribe_files(ctc, files, decode_workers=2, **options))
    assert pooled == here and len(pooled) == len(files) - 3
    assert pooled_failed == [Failure(segv, f"{segv}: decoder crashed (killed by SIGSEGV)"), *here_failed]


def test_a_rerun_after_a_crash_lists_the_file_as_failed_again_and_does_not_die(tiny_ckpt, tmp_path, capsys,
                                                                               monkeypatch):
    files = _audio(tmp_path / "audio")[:5]
    out, log = tmp_path / "out.jsonl", tmp_path / "decoded.log"
    monkeypatch.setenv("DECODED_LOG", str(log))
    monkeypatch.setattr(transcribe_module, "waveform_or_reason", decoders.segv_on_marked)
    argv = ["transcribe", "--model", str(tiny_ckpt), *map(str, files), "--out", str(out), "--no-progress",
            "--decode-workers", "1"]
    segv = str(tmp_path / "audio" / "x_segv.wav")
    crashed = f"  {segv}: decoder crashed (killed by SIGSEGV)"

    assert main(argv) == 1
    assert crashed in capsys.readouterr().err.splitlines()
    written = [json.loads(line)["audio"] for line in out.read_text().splitlines()]
    assert written == [str(f) for f in files if str(f) != segv]
    first = log.read_text().splitlines()

    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert any("resuming: 4 of 5 file(s) already in" in line for line in err) and crashed in err
    assert log.read_text().splitlines()[len(first):] == [segv]  # only the crashed file was tried again
    assert [json.loads(line)["audio"] for line in out.read_text().splitlines()] == written


def test_a_transcription_stopped_from_inside_leaves_no_worker_alive(tiny_ckpt, tmp_path):
    files = _audio(tmp_path / "audio")[:4]
    seen = []

    def stop(result):
        seen.extend(multiprocessing.active_children())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        transcribe_files(load_ctc_model(tiny_ckpt), files, decode_workers=2, max_batch_seconds=1.0,
                         show_progress=False, on_result=stop)
    assert seen  # the workers were there while it ran
    assert not [p for p in seen if p.is_alive()]


def test_evaluate_lists_a_crashed_utterance_as_failed_and_scores_the_others(tiny_ckpt, tmp_path, monkeypatch):
    files = _audio(tmp_path / "audio")[:5]
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"id": f.stem, "audio": str(f), "num_samples": sf.info(f).frames,
                                            "lang": "xx", "phones": "a i u"}) + "\n" for f in files))
    ctc = load_ctc_model(tiny_ckpt)
    here = evaluate(ctc, read_manifests([manifest]), decode_workers=0, show_progress=False)
    monkeypatch.setattr(transcribe_module, "waveform_or_reason", decoders.segv_on_marked)
    pooled = evaluate(ctc, read_manifests([manifest]), decode_workers=1, show_progress=False)

    segv = str(tmp_path / "audio" / "x_segv.wav")
    assert [(f.audio, f.error) for f in pooled.failures] == [(segv, f"{segv}: decoder crashed (killed by SIGSEGV)")]
    assert pooled.hypotheses == [h for h in here.hypotheses if h["id"] != "x_segv"]
    assert pooled.utterances == {"xx": 4}


# --- the pool itself ---------------------------------------------------------------------------------------------

def test_files_come_back_in_order_and_are_decoded_at_most_one_ahead_of_the_caller(tmp_path, monkeypatch):
    log = tmp_path / "decoded.log"
    monkeypatch.setenv("DECODED_LOG", str(log))
    paths = [f"f{k}" for k in range(8)]
    paths[3] = "f3_segv"
    got = []
    with DecoderPool(2, decoders.name_or_segv, failed=str) as pool:
        # every file counts 10, and 10 may be decoded and not yet taken: one file beyond the one held
        for k, result in enumerate(pool.map_in_order(paths, [10] * 8, ahead=10)):
            assert set(log.read_text().splitlines()) <= set(paths[:k + 2])
            got.append(result)
    assert got == [*paths[:3], "f3_segv: decoder crashed (killed by SIGSEGV)", *paths[4:]]


def test_a_decoder_that_raises_fails_its_file_in_one_line_and_the_worker_goes_on():
    with DecoderPool(1, decoders.raising, failed=str) as pool:
        got = list(pool.map_in_order(["a", "b_oom", "c"], [1, 1, 1], ahead=3))
    assert got == ["a", "b_oom: decoder failed (MemoryError: cannot allocate 9 EiB)", "c"]


def test_the_decoding_workers_do_not_import_torch():
    with DecoderPool(1, decoders.torch_loaded, failed=str) as pool:
        assert list(pool.map_in_order(["a"], [1], ahead=1)) == [False]


# --- the option ----------------------------------------------------------------------------------------------------

class _Called(Exception):
    pass


@pytest.mark.parametrize("command", ["transcribe", "evaluate", "evaluate-sweep"])
def test_decode_workers_reaches_the_library(command, tmp_path, monkeypatch, capsys):
    import xlsr.decode.beam
    import xlsr.decode.evaluate
    import xlsr.decode.lm_sweep

    seen = []

    def called(*args, **kwargs):
        seen.append((kwargs.get("decode_workers", "not given"), kwargs.get("decode_timeout", "not given")))
        raise _Called

    ctc = types.SimpleNamespace(vocab=types.SimpleNamespace(kind="phones"))
    monkeypatch.setattr(transcribe_module, "load_ctc_model", lambda *a, **kw: ctc)
    monkeypatch.setattr(transcribe_module, "make_decoder", lambda *a, **kw: "decoder")
    monkeypatch.setattr(transcribe_module, "resolve_checkpoint", lambda path: (tmp_path / "ckpt", "fingerprint"))
    monkeypatch.setattr(transcribe_module, "transcribe_files", called)
    monkeypatch.setattr(xlsr.decode.evaluate, "read_manifests", lambda paths: ["utt"])
    monkeypatch.setattr(xlsr.decode.evaluate, "evaluate", called)
    monkeypatch.setattr(xlsr.decode.beam, "decoder_for_lm", lambda *a, **kw: "beam")
    monkeypatch.setattr(xlsr.decode.lm_sweep, "sweep_lm_settings", called)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000)
    argv = {"transcribe": ["transcribe", "--model", "m", str(wav), "--out", str(tmp_path / "o.jsonl")],
            "evaluate": ["evaluate", "--model", "m", "--manifest", "a.jsonl"],
            "evaluate-sweep": ["evaluate", "--model", "m", "--manifest", "a.jsonl", "--lm", "lm.arpa",
                               "--lm-weight", "0.5", "1"]}[command]
    for given in ([], ["--decode-workers", "0"], ["--decode-workers", "3", "--decode-timeout", "2.5"],
                  ["--decode-timeout", "0"]):
        with pytest.raises(_Called):
            main([*argv, *given])
    assert seen == [(1, DEFAULT_TIMEOUT_S), (0, DEFAULT_TIMEOUT_S), (3, 2.5), (1, None)]  # 0: no limit
    for option, value, said in [("--decode-workers", "-1", "give a whole number 0 or more"),
                                ("--decode-timeout", "-1", "give seconds, 0 or more"),
                                ("--decode-timeout", "nan", "give a finite number")]:
        with pytest.raises(SystemExit):
            main([*argv, option, value])
        assert f"argument {option}: '{value}': {said}" in capsys.readouterr().err


def test_a_header_that_crashes_its_reader_costs_its_file(tiny_ckpt, tmp_path, monkeypatch):
    """Sorting by length reads every header first: parsing one is the decoder's work too, done in the workers."""
    files = _audio(tmp_path / "audio")
    segv = str(tmp_path / "audio" / "x_segv.wav")
    ctc = load_ctc_model(tiny_ckpt)
    here, here_failed = transcribe_files(ctc, [f for f in files if str(f) != segv], decode_workers=0,
                                         show_progress=False)
    monkeypatch.setattr(transcribe_module, "length_or_reason", decoders.length_or_segv)
    pooled, pooled_failed = transcribe_files(ctc, files, decode_workers=1, show_progress=False)
    assert [r.to_dict() for r in pooled] == [r.to_dict() for r in here]
    assert pooled_failed == [Failure(segv, f"{segv}: decoder crashed (killed by SIGSEGV)"), *here_failed]
