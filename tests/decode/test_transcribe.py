"""Transcription with a real (random-weight) tiny model: chunking, batching, failures, timestamps, CLI."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from decode_fixtures import tiny_ctc_checkpoint

from xlsr.cli.main import main
from xlsr.decode.chunking import chunked_logits
from xlsr.decode.transcribe import find_audio, load_ctc_model, transcribe_files, write_jsonl
from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.text.metrics import per

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_ctc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", VOCAB)


@pytest.fixture(scope="module")
def group_norm_ckpt(tmp_path_factory):
    """wav2vec 2.0 Base's layout at the tiny size: GroupNorm on CNN layer 0 only, no conv bias, post-LN."""
    fields = {**Wav2Vec2Config.preset("tiny").to_dict(), "extractor_mode": "group_norm", "conv_bias": False,
              "layer_norm_first": False, "normalize_waveform": False}
    torch.manual_seed(1)
    model = Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(fields), len(VOCAB))
    norm = model.wav2vec2.feature_encoder.conv_layers[0].norm
    with torch.no_grad():  # not the identity affine map, so that weight and bias mistakes show
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-gn-ctc"
    save_checkpoint(path, model, vocab=VOCAB, metadata={"labels": "phones"})
    return path


def _write(path: Path, n_phones: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, tone_utterance(no_repeats(n_phones, rng), rng), 16000)
    return path


def test_chunked_transcription_matches_unchunked(tiny_ckpt, tmp_path):
    wav = _write(tmp_path / "long.wav", 50, seed=0)  # ~10 s
    ctc = load_ctc_model(tiny_ckpt)
    full, _ = transcribe_files(ctc, [wav], chunk_seconds=None, show_progress=False)
    chunked, fails = transcribe_files(ctc, [wav], chunk_seconds=4.0, chunk_stride=1.0, show_progress=False)
    assert not fails and chunked[0].extra == {"chunked": True}
    a, b = full[0].hypothesis.text, chunked[0].hypothesis.text
    assert len(a.split()) > 20
    # Attention is global, so windows see less context: close, not identical.
    assert per(a, b) < 0.15
    from xlsr.data.audio import load_audio

    wave = torch.from_numpy(load_audio(wav, normalize=True))
    lf, _ = ctc.logits(wave[None], torch.tensor([wave.numel()]))
    lc = chunked_logits(wave, ctc.logits, chunk_s=4.0, stride_s=1.0)
    assert lc.shape == lf[0].shape
    assert (lf[0].argmax(-1) == lc.argmax(-1)).float().mean() > 0.95


def test_batched_equals_one_by_one_and_failures_are_listed(tiny_ckpt, tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    good = [_write(d / f"u{k}.wav", 3 + 2 * k, seed=k) for k in range(3)]
    (d / "broken.wav").write_bytes(b"RIFF....not audio at all")
    sf.write(d / "short.wav", np.zeros(100, dtype=np.float32), 16000)
    ctc = load_ctc_model(tiny_ckpt)
    files, missing = find_audio([d, tmp_path / "nope.wav"])
    assert len(files) == 5 and len(missing) == 1 and "nope.wav: no such file" in missing[0].error
    results, failures = transcribe_files(ctc, files, show_progress=False)
    assert [Path(r.audio).name for r in results] == ["u0.wav", "u1.wav", "u2.wav"]
    errors = {Path(f.audio).name: f.error for f in failures}
    assert set(errors) == {"broken.wav", "short.wav"}
    assert "broken.wav: not a readable audio file" in errors["broken.wav"]
    assert "shorter than one frame" in errors["short.wav"]
    assert all("\n" not in e for e in errors.values())
    for r, path in zip(results, good):
        alone, _ = transcribe_files(ctc, [path], show_progress=False)
        assert alone[0].hypothesis.text == r.hypothesis.text
        assert abs(alone[0].hypothesis.score - r.hypothesis.score) < 1e-2


def test_group_norm_model_is_batched_and_equals_one_at_a_time(group_norm_ckpt, tmp_path):
    files = [_write(tmp_path / f"u{k}.wav", 3 + 3 * k, seed=10 + k) for k in range(3)]  # three lengths
    ctc = load_ctc_model(group_norm_ckpt)
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    run = ctc.logits

    def recorded(waveforms, lengths):
        logits, frames = run(waveforms, lengths)
        calls.append((waveforms, lengths, logits, frames))
        return logits, frames

    ctc.logits = recorded
    results, failures = transcribe_files(ctc, files, show_progress=False)
    assert not failures and len(calls) == 1  # one padded batch of three, as for a layer-norm model
    waveforms, lengths, logits, frames = calls[0]
    assert len(set(lengths.tolist())) == 3
    for i, n in enumerate(lengths.tolist()):
        alone, alone_frames = run(waveforms[i : i + 1, :n], lengths[i : i + 1])
        assert int(frames[i]) == int(alone_frames[0])
        torch.testing.assert_close(logits[i, : int(frames[i])], alone[0], atol=1e-5, rtol=0)
    for r, path in zip(results, files):
        (single,), _ = transcribe_files(ctc, [path], show_progress=False)
        assert r.hypothesis.tokens and single.hypothesis.tokens == r.hypothesis.tokens
        assert single.hypothesis.text == r.hypothesis.text
        assert abs(single.hypothesis.score - r.hypothesis.score) < 1e-3
    assert len(calls) == 4  # and then one call per file alone


def test_timestamps_are_ordered_and_inside_the_audio(tiny_ckpt, tmp_path):
    wav = _write(tmp_path / "t.wav", 6, seed=5)
    ctc = load_ctc_model(tiny_ckpt)
    (r,), _ = transcribe_files(ctc, [wav], timestamps=True, show_progress=False)
    d = r.to_dict()
    stamps = d["timestamps"]
    assert [s["token"] for s in stamps] == d["tokens"]
    starts = [s["start"] for s in stamps]
    assert starts == sorted(starts) and all(0 <= s["start"] < s["end"] <= d["duration"] for s in stamps)
    assert all(a["end"] <= b["start"] for a, b in zip(stamps, stamps[1:]))  # a token ends where its run ends
    # the same spans from beam search without an LM (its best path is the argmax path)
    from xlsr.decode.transcribe import make_decoder

    (b,), _ = transcribe_files(ctc, [wav], decoder=make_decoder(ctc, beam=16), timestamps=True, show_progress=False)
    assert b.to_dict()["timestamps"] == stamps


def test_word_timestamps_span_their_tokens():
    from xlsr.decode.hypothesis import Hypothesis
    from xlsr.decode.transcribe import Transcription

    tokens = ["c", "i", "a", "o", "|", "t", "u"]
    hyp = Hypothesis(tokens, list(range(7)), "ciao tu", frames=[0, 2, 4, 6, 8, 10, 12],
                     timestamps=[0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24], end_frames=[1, 3, 5, 7, 9, 11, 13],
                     end_timestamps=[0.02, 0.06, 0.1, 0.14, 0.18, 0.22, 0.26])
    d = Transcription("a.wav", 0.3, hyp).to_dict()
    assert d["word_timestamps"] == [{"word": "ciao", "start": 0.0, "end": 0.14}, {"word": "tu", "start": 0.2,
                                                                                    "end": 0.26}]
    phones = Transcription("a.wav", 0.3, hyp, kind="phones").to_dict()["word_timestamps"]
    assert phones[0]["word"] == "c i a o"
    no_words = Hypothesis(["a", "i"], [0, 1], "ai", frames=[0, 3], timestamps=[0.0, 0.06])
    d = Transcription("a.wav", 0.1, no_words).to_dict()
    assert "word_timestamps" not in d and [s["end"] for s in d["timestamps"]] == [0.06, 0.1]  # up to the next start
    lexicon_words = Hypothesis(["h", "i", "y", "o", "u"], list(range(5)), "hi you", frames=[0, 1, 2, 3, 4],
                               timestamps=[0.0, 0.02, 0.04, 0.06, 0.08], words=["hi", "you"])
    assert "word_timestamps" not in Transcription("a.wav", 0.1, lexicon_words).to_dict()  # no `|`: no word edges
    one_word = Hypothesis(["h", "i"], [0, 1], "hi", frames=[0, 1], timestamps=[0.0, 0.02], words=["hi"])
    assert Transcription("a.wav", 0.1, one_word).to_dict()["word_timestamps"] == [{"word": "hi", "start": 0.0,
                                                                                   "end": 0.1}]


def test_cli_writes_jsonl_and_reports_failures(tiny_ckpt, tmp_path, capsys):
    wav = _write(tmp_path / "a.wav", 4, seed=1)
    out = tmp_path / "out.jsonl"
    code = main(["transcribe", "--model", str(tiny_ckpt), str(wav), str(tmp_path / "missing.flac"),
                 "--out", str(out), "--no-progress", "--timestamps"])
    assert code == 1
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["audio"] == str(wav) and "timestamps" in lines[0]
    err = capsys.readouterr().err
    assert "missing.flac: no such file or directory" in err and "transcribes only the failed ones" in err
    # the file mended, the same command decodes it alone and completes OUT in input order
    sf.write(tmp_path / "missing.flac", np.zeros(16000, dtype=np.float32), 16000)
    assert main(["transcribe", "--model", str(tiny_ckpt), str(wav), str(tmp_path / "missing.flac"),
                 "--out", str(out), "--no-progress", "--timestamps"]) == 0
    assert "resuming: 1 of 2 file(s) already in" in capsys.readouterr().err
    assert [json.loads(x)["audio"] for x in out.read_text().splitlines()] == [str(wav), str(tmp_path / "missing.flac")]
    assert not out.with_name("out.jsonl.partial").exists()


def test_model_without_ctc_head_is_a_clear_error(tmp_path, capsys):
    pre = save_checkpoint(tmp_path / "pre", Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny")))
    with pytest.raises(CheckpointError, match="has no CTC head; fine-tune it first"):
        load_ctc_model(pre)
    code = main(["transcribe", "--model", str(tmp_path / "nowhere"), "x.wav", "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("xlsr: error: ") and err.count("\n") == 1


ARPA = """\\data\\
ngram 1=6
ngram 2=1

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t0
-0.7\t</s>\t0
-0.2\ta\t0
-0.6\ti\t0
-0.6\tu\t0

\\2-grams:
-0.1\t<s> a

\\end\\
"""


def test_beam_search_without_lm_equals_greedy_and_lm_decoding_runs(tiny_ckpt, tmp_path):
    from xlsr.decode.transcribe import make_decoder

    wav = _write(tmp_path / "b.wav", 5, seed=3)
    ctc = load_ctc_model(tiny_ckpt)
    (greedy,), _ = transcribe_files(ctc, [wav], show_progress=False)
    (beam,), _ = transcribe_files(ctc, [wav], decoder=make_decoder(ctc, beam=16), show_progress=False)
    assert beam.hypothesis.text == greedy.hypothesis.text  # best path = argmax path without an LM
    lm = tmp_path / "units.arpa"
    lm.write_text(ARPA)
    (fused,), _ = transcribe_files(ctc, [wav], decoder=make_decoder(ctc, lm=lm, beam=16, lm_weight=5.0),
                                   show_progress=False)
    # A units LM that strongly prefers "a" can only move the transcript toward more "a"s.
    assert set(fused.hypothesis.tokens) <= {"a", "i", "u"}
    assert fused.hypothesis.tokens.count("a") / max(len(fused.hypothesis.tokens), 1) >= \
        greedy.hypothesis.tokens.count("a") / max(len(greedy.hypothesis.tokens), 1)


def test_lm_that_does_not_parse_is_one_line(tiny_ckpt, tmp_path, capsys):
    bad = tmp_path / "bad.arpa"
    bad.write_text("this is not an n-gram model\n")
    code = main(["transcribe", "--model", str(tiny_ckpt), str(tmp_path), "--lm", str(bad),
                 "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.arpa: not a KenLM ARPA or binary language model" in err and err.count("\n") == 1


def test_out_that_is_a_folder_is_refused_before_decoding(tiny_ckpt, tmp_path, capsys):
    wav = _write(tmp_path / "a.wav", 2, seed=1)
    taken = tmp_path / "results"
    taken.mkdir()
    with pytest.raises(XlsrError, match="results: is a folder"):
        write_jsonl(taken, [{"a": 1}])
    code = main(["transcribe", "--model", str(tiny_ckpt), str(wav), "--out", str(taken), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "results: is a folder" in err and err.count("\n") == 1


def test_bf16_precision_gives_fp32_logits_close_to_fp32(group_norm_ckpt, tmp_path):
    fp32 = load_ctc_model(group_norm_ckpt)
    bf16 = load_ctc_model(group_norm_ckpt, precision="bf16")
    wave = torch.from_numpy(sf.read(_write(tmp_path / "a.wav", 5, seed=3), dtype="float32")[0])[None]
    lengths = torch.tensor([wave.shape[1]])
    (a, frames_a), (b, frames_b) = fp32.logits(wave, lengths), bf16.logits(wave, lengths)
    assert b.dtype == torch.float32 and torch.equal(frames_a, frames_b)
    assert not torch.equal(a, b)  # bf16 really ran
    torch.testing.assert_close(b.log_softmax(-1), a.log_softmax(-1), rtol=0, atol=0.15)


def test_cli_bad_precision_is_one_line(tiny_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["transcribe", "--model", str(tiny_ckpt), str(tmp_path), "--out", str(tmp_path / "o.jsonl"),
              "--precision", "fp8"])
    assert exc.value.code == 2 and "--precision" in capsys.readouterr().err
    with pytest.raises(XlsrError, match="precision: 'fp8'"):
        load_ctc_model(tiny_ckpt, precision="fp8")


def _runs_out_of_memory(ctc, too_big):
    """ctc.logits raising torch.OutOfMemoryError on inputs for which too_big(batch) holds; the sizes it was given."""
    real, seen = ctc.logits, []

    def logits(batch, lengths):
        seen.append(tuple(batch.shape))
        if too_big(batch):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(batch, lengths)

    ctc.logits = logits
    return seen


def test_a_batch_out_of_memory_is_decoded_again_in_halves(tiny_ckpt, tmp_path):
    files = [_write(tmp_path / f"u{k}.wav", 3 + k, seed=k) for k in range(5)]
    ctc = load_ctc_model(tiny_ckpt)
    want, _ = transcribe_files(ctc, files, show_progress=False)
    seen = _runs_out_of_memory(ctc, lambda batch: len(batch) > 2)
    got, failures = transcribe_files(ctc, files, show_progress=False)
    assert not failures and [r.hypothesis.text for r in got] == [r.hypothesis.text for r in want]
    assert [b for b, _ in seen] == [5, 2, 3, 1, 2]  # all five, then halves until each fits


def test_a_file_too_long_for_memory_is_a_failure_with_advice_and_the_rest_is_decoded(tiny_ckpt, tmp_path):
    short = [_write(tmp_path / f"u{k}.wav", 3, seed=k) for k in range(2)]
    long = _write(tmp_path / "long.wav", 40, seed=9)  # ~8 s
    ctc = load_ctc_model(tiny_ckpt)
    _runs_out_of_memory(ctc, lambda batch: batch.shape[1] > 5 * 16000)
    results, failures = transcribe_files(ctc, [short[0], long, short[1]], chunk_seconds=None, show_progress=False)
    assert [Path(r.audio).name for r in results] == ["u0.wav", "u1.wav"]
    assert len(failures) == 1 and failures[0].audio == str(long)
    seconds = sf.info(long).duration
    assert failures[0].error == (f"{long}: out of cpu memory decoding {seconds:.1f} s of audio at once; lower "
                                 f"--chunk-seconds below {round(seconds, 1):g} (recordings longer than it are decoded in "
                                 f"windows)")
    # decoded in windows of 4 s it fits; windows of 6 s do not, and that is the failure's line
    fits, none = transcribe_files(ctc, [long], chunk_seconds=4.0, chunk_stride=1.0, show_progress=False)
    assert len(fits) == 1 and not none
    _, failures = transcribe_files(ctc, [long], chunk_seconds=6.0, chunk_stride=1.0, show_progress=False)
    assert "out of cpu memory decoding 6.0 s of audio at once; lower --chunk-seconds below 6" in failures[0].error


def test_a_long_file_sends_its_windows_within_the_batch_limit_and_fewer_on_out_of_memory(tiny_ckpt, tmp_path):
    long = _write(tmp_path / "long.wav", 40, seed=9)  # ~8 s: windows of 2 s, 1 s apart
    ctc = load_ctc_model(tiny_ckpt)
    (want,), _ = transcribe_files(ctc, [long], chunk_seconds=2.0, chunk_stride=0.5, show_progress=False)
    seen = _runs_out_of_memory(ctc, lambda batch: False)
    transcribe_files(ctc, [long], chunk_seconds=2.0, chunk_stride=0.5, max_batch_seconds=4.0, show_progress=False)
    assert max(b for b, _ in seen) == 2  # 4 s of audio at once: two windows of 2 s
    seen = _runs_out_of_memory(ctc, lambda batch: batch.shape[0] > 2)
    (got,), failures = transcribe_files(ctc, [long], chunk_seconds=2.0, chunk_stride=0.5, show_progress=False)
    assert not failures and got.hypothesis.text == want.hypothesis.text
    assert seen[0][0] > 2 and seen[-1][0] <= 2  # out of memory with many windows at once, then fewer


def test_other_runtime_errors_are_not_taken_for_out_of_memory(tiny_ckpt, tmp_path):
    ctc = load_ctc_model(tiny_ckpt)

    def broken(batch, lengths):
        raise RuntimeError("shape mismatch")

    ctc.logits = broken
    with pytest.raises(RuntimeError, match="shape mismatch"):
        transcribe_files(ctc, [_write(tmp_path / "a.wav", 3, seed=0)], show_progress=False)


@pytest.mark.parametrize("command", ["transcribe", "evaluate"])
@pytest.mark.parametrize("flag, value", [("--batch-seconds", "0"), ("--chunk-seconds", "-1"), ("--chunk-stride", "-2")])
def test_bad_batching_options_are_one_line(tiny_ckpt, tmp_path, capsys, command, flag, value):
    target = ["x.wav", "--out", str(tmp_path / "o.jsonl")] if command == "transcribe" else ["--manifest", "m.jsonl"]
    code = main([command, "--model", str(tiny_ckpt), *target, flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("xlsr: error: --chunk-seconds and --chunk-stride must be >= 0 and --batch-seconds > 0")


def test_lm_sweep_equals_one_evaluation_per_setting_and_ranks_them(tiny_ckpt, tmp_path, capsys):
    from xlsr.decode.beam import BeamSearchConfig, decoder_for_lm
    from xlsr.decode.evaluate import evaluate, read_manifests
    from xlsr.decode.lm_sweep import sweep_lm_settings
    from xlsr.decode.transcribe import make_decoder

    lm = tmp_path / "units.arpa"
    lm.write_text(ARPA)
    rows = []
    for k in range(3):
        rng = np.random.default_rng(k)
        phones = no_repeats(4 + k, rng)
        wav = tmp_path / f"u{k}.wav"
        sf.write(wav, tone_utterance(phones, rng), 16000)
        rows.append({"id": f"u{k}", "audio": wav.name, "num_samples": sf.info(wav).frames, "lang": "xx",
                     "phones": " ".join(phones)})
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ctc, utts = load_ctc_model(tiny_ckpt), read_manifests([manifest])
    beam = decoder_for_lm(ctc.vocab, lm, config=BeamSearchConfig(beam_size=16))
    swept = sweep_lm_settings(ctc, utts, beam, [0.0, 5.0], [0.0, -1.0], show_progress=False)
    assert len(swept) == 4
    rates = [report.rate(None, "phone") for _, _, report in swept]
    assert rates == sorted(rates) and rates[0] < rates[-1]  # best first; the LM weight changes the outcome
    for lm_weight, word_score, report in swept:  # each equals a whole evaluation at that setting
        alone = evaluate(ctc, utts, decoder=make_decoder(ctc, lm=lm, beam=16, lm_weight=lm_weight,
                                                         word_score=word_score), show_progress=False)
        assert report.hypotheses == alone.hypotheses
        assert report.total["phone"] == alone.total["phone"] and report.counts == alone.counts
    out = tmp_path / "sweep.json"
    code = main(["evaluate", "--model", str(tiny_ckpt), "--manifest", str(manifest), "--lm", str(lm), "--beam", "16",
                 "--lm-weight", "0", "5", "--word-score", "0", "-1", "--json", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and f"best: --lm-weight {swept[0][0]:g} --word-score {swept[0][1]:g}" in printed
    data = json.loads(out.read_text())
    assert [(r["lm_weight"], r["word_score"]) for r in data["sweep"]] == [(w, s) for w, s, _ in swept]
    assert (data["lm_weight"], data["word_score"]) == swept[0][:2]  # the report's own setting: the best
    assert data["sweep"][0]["per"] == data["total"]["per"]["rate"]  # the same names as the report
    assert main(["evaluate", "--model", str(tiny_ckpt), "--manifest", str(manifest), "--lm-weight", "0", "5"]) == 2
    assert "give --lm (or --lexicon) to sweep them" in capsys.readouterr().err


def test_a_stopped_transcription_resumes_with_the_files_not_done(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from xlsr.decode import transcribe as transcribe_module

    d = tmp_path / "audio"
    d.mkdir()
    for k in range(4):
        _write(d / f"u{k}.wav", 3 + k, seed=k)
    out = tmp_path / "out.jsonl"
    args = ["transcribe", "--model", str(tiny_ckpt), str(d), "--out", str(out), "--no-progress",
            "--batch-seconds", "2"]  # a batch per file or two
    assert main(args) == 0
    straight = out.read_text()
    out.unlink()
    real = transcribe_module._decode_batch
    calls = []

    def dies_on_the_third_batch(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) mid-run
        return real(*a, **kw)

    monkeypatch.setattr(transcribe_module, "_decode_batch", dies_on_the_third_batch)
    assert main(args) == 130  # "xlsr: interrupted"
    assert "result(s) kept in" in capsys.readouterr().err
    partial = out.with_name("out.jsonl.partial")
    assert not out.exists() and partial.is_file()
    done = len(partial.read_text().splitlines()) - 1  # after the settings line
    assert 0 < done < 4
    with partial.open("a") as f:
        f.write('{"audio": "torn')  # a line a kill cut short
    monkeypatch.setattr(transcribe_module, "_decode_batch", real)
    assert main(args) == 0
    assert f"resuming: {done} of 4 file(s) already in {partial}" in capsys.readouterr().err
    assert out.read_text() == straight and not partial.exists()  # the same lines, in input order
    # a restart with other settings is refused before any work
    with partial.open("w") as f:
        f.write(json.dumps({"settings": {"model": "another"}}) + "\n")
    assert main(args + ["--timestamps"]) == 2
    err = capsys.readouterr().err
    assert "results of an earlier run with other settings (" in err and "timestamps" in err and err.count("\n") == 1
