"""`xlsr transcribe`, `evaluate` and `stream` hand their options to the model loader, the decoder and the batching
unchanged, with the defaults their help shows, and record every decoding setting in OUT.partial (a rerun with
another setting is refused, not appended). The model, decoder and decoding are stand-ins: nothing is loaded."""

import json
import types

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli import MAX_SECONDS, check_seconds
from xlsr.cli.main import main
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S
from xlsr.errors import XlsrError


class Called(Exception):
    """Raised by the stand-in for the step that would decode, holding what it was given."""


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    """The decode library with recording stand-ins: `seen[name]` is the keywords each stand-in got."""
    import xlsr.decode.beam
    import xlsr.decode.evaluate
    import xlsr.decode.transcribe as transcribe

    seen = {}
    ctc = types.SimpleNamespace(vocab=types.SimpleNamespace(kind="phones"))

    def load(path, **kwargs):
        seen["load"] = {"path": str(path), **kwargs}
        return ctc

    def decoder(model, **kwargs):
        assert model is ctc
        seen["decoder"] = kwargs
        return "the decoder"

    def record(name):
        def stop(*args, **kwargs):
            seen[name] = kwargs
            raise Called(name)
        return stop

    monkeypatch.setattr(transcribe, "load_ctc_model", load)
    monkeypatch.setattr(transcribe, "make_decoder", decoder)
    monkeypatch.setattr(transcribe, "resolve_checkpoint", lambda path: (tmp_path / "ckpt", "fingerprint"))
    monkeypatch.setattr(transcribe, "transcribe_files", record("transcribe_files"))
    monkeypatch.setattr(xlsr.decode.evaluate, "read_manifests", lambda paths: ["utt"])
    monkeypatch.setattr(xlsr.decode.evaluate, "evaluate", record("evaluate"))
    monkeypatch.setattr(xlsr.decode.beam, "decoder_for_lm", record("decoder_for_lm"))
    return seen


def _run(argv):
    with pytest.raises(Called):
        main([str(a) for a in argv])


def _wav(path):
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    return path


def test_transcribe_passes_model_decoder_and_batching_options(stand_ins, tmp_path):
    wav = _wav(tmp_path / "a.wav")
    _run(["transcribe", "--model", "m", wav, "--out", tmp_path / "o.jsonl", "--target-lang", "fra", "--precision",
          "bf16", "--device", "meta", "--lm", "lm.arpa", "--lexicon", "lex.txt", "--beam", "7", "--lm-weight", "0.7",
          "--word-score", "-1.5", "--timestamps", "--chunk-seconds", "12", "--chunk-stride", "1.5",
          "--batch-seconds", "33", "--no-progress"])
    assert stand_ins["load"] == {"path": str(tmp_path / "ckpt"), "device": "meta", "target_lang": "fra",
                                 "precision": "bf16"}
    assert stand_ins["decoder"] == {"lm": "lm.arpa", "lexicon": "lex.txt", "beam": 7, "lm_weight": 0.7,
                                    "word_score": -1.5}
    kwargs = stand_ins["transcribe_files"]
    assert kwargs.pop("on_result") is not None and kwargs.pop("decoder") == "the decoder"
    assert kwargs == {"timestamps": True, "chunk_seconds": 12.0, "chunk_stride": 1.5, "max_batch_seconds": 33.0,
                      "show_progress": False, "decode_workers": 1,
                      "decode_timeout": DEFAULT_TIMEOUT_S}


def test_transcribe_defaults_are_the_documented_ones(stand_ins, tmp_path):
    _run(["transcribe", "--model", "m", _wav(tmp_path / "a.wav"), "--out", tmp_path / "o.jsonl"])
    assert stand_ins["load"] == {"path": str(tmp_path / "ckpt"), "device": "auto", "target_lang": None,
                                 "precision": "fp32"}
    assert stand_ins["decoder"] == dict.fromkeys(("lm", "lexicon", "beam", "lm_weight", "word_score"))  # greedy
    kwargs = stand_ins["transcribe_files"]
    assert (kwargs["timestamps"], kwargs["chunk_seconds"], kwargs["chunk_stride"], kwargs["max_batch_seconds"],
            kwargs["show_progress"]) == (False, 30.0, 2.0, 60.0, True)
    _run(["transcribe", "--model", "m", _wav(tmp_path / "a.wav"), "--out", tmp_path / "o.jsonl",
          "--chunk-seconds", "0"])
    assert stand_ins["transcribe_files"]["chunk_seconds"] is None  # 0: never chunk


def test_every_decoding_setting_is_recorded_for_a_resume(stand_ins, tmp_path, monkeypatch):
    import xlsr.decode.transcribe as transcribe

    def one_result_then_stop(ctc, files, *, on_result, **kwargs):
        on_result(types.SimpleNamespace(to_dict=lambda: {"audio": str(files[0]), "text": "a"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(transcribe, "transcribe_files", one_result_then_stop)
    out = tmp_path / "o.jsonl"
    argv = ["transcribe", "--model", "m", _wav(tmp_path / "a.wav"), _wav(tmp_path / "b.wav"), "--out", out,
            "--lm", "lm.arpa", "--lm-weight", "0.7", "--word-score", "-1.5", "--beam", "7", "--chunk-stride", "1.5"]
    assert main([str(a) for a in argv]) == 130
    settings = json.loads(out.with_name("o.jsonl.partial").read_text().splitlines()[0])["settings"]
    assert {k: settings[k] for k in ("lm", "beam", "lm_weight", "word_score", "chunk_seconds", "chunk_stride",
                                     "precision", "target_lang", "timestamps")} == \
        {"lm": "lm.arpa", "beam": 7, "lm_weight": 0.7, "word_score": -1.5, "chunk_seconds": 30.0, "chunk_stride": 1.5,
         "precision": "fp32", "target_lang": None, "timestamps": False}
    for option, value in (("--word-score", "0"), ("--lm-weight", "2"), ("--chunk-stride", "1"), ("--beam", "8")):
        changed = [*argv]
        changed[changed.index(option) + 1] = value
        assert main([str(a) for a in changed]) == 2  # the kept results were made otherwise: refused, not mixed


def test_transcribe_refuses_a_negative_stride_and_a_window_too_short_before_loading(stand_ins, tmp_path, capsys):
    wav = _wav(tmp_path / "a.wav")
    for option, value in (("--chunk-stride", "-1"), ("--chunk-seconds", "0.001")):
        assert main(["transcribe", "--model", "m", str(wav), "--out", str(tmp_path / "o.jsonl"), option, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith("xlsr: error: ") and err.count("\n") == 1
        assert "load" not in stand_ins


def test_evaluate_passes_labels_normalization_decoder_and_batching(stand_ins, tmp_path):
    _run(["evaluate", "--model", "m", "--manifest", "a.jsonl", "--labels", "chars", "--normalize-text",
          "--lm", "lm.arpa", "--beam", "9", "--lm-weight", "0.5", "--word-score", "-2", "--chunk-seconds", "12",
          "--chunk-stride", "1", "--batch-seconds", "20", "--target-lang", "fra", "--precision", "bf16",
          "--no-progress"])
    assert stand_ins["load"] == {"path": "m", "device": "auto", "target_lang": "fra", "precision": "bf16"}
    assert stand_ins["decoder"] == {"lm": "lm.arpa", "lexicon": None, "beam": 9, "lm_weight": 0.5, "word_score": -2.0}
    kwargs = stand_ins["evaluate"]
    assert kwargs == {"labels": "chars", "decoder": "the decoder", "chunk_seconds": 12.0, "chunk_stride": 1.0,
                      "max_batch_seconds": 20.0, "normalize": True, "show_progress": False, "decode_workers": 1,
                      "decode_timeout": DEFAULT_TIMEOUT_S, "kept": None}  # no --hyps/--json: nothing kept


def test_evaluate_sweeps_when_either_option_has_several_values_with_the_beam_size_given(stand_ins, tmp_path):
    _run(["evaluate", "--model", "m", "--manifest", "a.jsonl", "--lm", "lm.arpa", "--beam", "9",
          "--lm-weight", "0.5", "1", "--word-score", "-2"])  # several weights, one score: still a sweep
    assert "evaluate" not in stand_ins and stand_ins["decoder_for_lm"]["config"].beam_size == 9
    stand_ins.clear()
    _run(["evaluate", "--model", "m", "--manifest", "a.jsonl", "--lm", "lm.arpa", "--word-score", "0", "1"])
    assert "evaluate" not in stand_ins and "decoder_for_lm" in stand_ins


def test_evaluate_json_names_the_best_pair_of_a_sweep(stand_ins, monkeypatch, tmp_path):
    import xlsr.decode.lm_sweep

    def report(rate):
        return types.SimpleNamespace(table=lambda: "table", oov={}, no_reference=[], failures=[], hypotheses=[],
                                     total={}, to_dict=lambda: {"total": {"rate": rate}})

    rows = [(0.5, -2.0, report(0.1)), (2.0, 1.0, report(0.3))]  # best first
    monkeypatch.setattr(xlsr.decode.beam, "decoder_for_lm", lambda *a, **kw: "beam")
    monkeypatch.setattr(xlsr.decode.lm_sweep, "sweep_lm_settings", lambda *a, **kw: rows)
    monkeypatch.setattr(xlsr.decode.lm_sweep, "sweep_table", lambda rows: "sweep table")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", "m", "--manifest", "a.jsonl", "--lm", "lm.arpa", "--lm-weight", "2", "0.5",
                 "--word-score", "1", "-2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert (data["lm_weight"], data["word_score"], data["total"]) == (0.5, -2.0, {"rate": 0.1})
    assert [(s["lm_weight"], s["word_score"]) for s in data["sweep"]] == [(0.5, -2.0), (2.0, 1.0)]


def test_stream_passes_window_stride_and_piece_size(monkeypatch, tmp_path, capsys):
    import xlsr.decode.streaming
    import xlsr.decode.transcribe

    seen = {"pieces": []}

    class Stream:
        def __init__(self, ctc, *, chunk_s, stride_s):
            seen.update(ctc=ctc, chunk_s=chunk_s, stride_s=stride_s)
            self.tokens, self.starts, self.text = [], [], ""

        def feed(self, piece):
            seen["pieces"].append(len(piece))
            return []

        def finish(self):
            return []

    monkeypatch.setattr(xlsr.decode.transcribe, "load_ctc_model",
                        lambda path, **kw: seen.update(load={"path": path, **kw}) or "ctc")
    monkeypatch.setattr(xlsr.decode.streaming, "StreamingTranscriber", Stream)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["stream", str(wav), "--model", "m", "--chunk-seconds", "6", "--stride-seconds", "1",
                 "--piece-seconds", "0.25", "--target-lang", "fra", "--device", "meta"]) == 0
    assert seen["load"] == {"path": "m", "device": "meta", "target_lang": "fra", "precision": "fp32"}
    assert (seen["ctc"], seen["chunk_s"], seen["stride_s"]) == ("ctc", 6.0, 1.0)
    assert seen["pieces"] == [4000] * 4
    seen["pieces"].clear()
    assert main(["stream", str(wav), "--model", "m"]) == 0  # the defaults: 10 s windows, 2 s stride, 0.5 s pieces
    assert (seen["chunk_s"], seen["stride_s"], seen["pieces"]) == (10.0, 2.0, [8000, 8000])
    assert main(["stream", str(wav), "--model", "m", "--stride-seconds", "-1"]) == 2
    assert "--stride-seconds >= 0" in capsys.readouterr().err


def test_seconds_up_to_the_bound_pass_and_beyond_it_are_refused():
    check_seconds(chunk_seconds=MAX_SECONDS)
    with pytest.raises(XlsrError, match="--chunk-seconds: 1.5e\\+06 s is more than the most allowed, 1e\\+06 s"):
        check_seconds(chunk_seconds=1.5 * MAX_SECONDS)
