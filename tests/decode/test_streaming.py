"""Streaming transcription: the windows of chunked transcription, run as the audio arrives."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xlsr.data.audio import load_audio
from xlsr.decode.chunking import chunked_logits, window_context
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.streaming import StreamingTranscriber
from xlsr.decode.transcribe import load_ctc_model
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A model that takes the waveform as it is (Base's layout) and one that normalizes it (XLSR's)."""
    out = {}
    for normalize in (False, True):
        fields = {**Wav2Vec2Config.preset("tiny").to_dict(), "extractor_mode": "group_norm", "conv_bias": False,
                  "layer_norm_first": False, "normalize_waveform": normalize}
        torch.manual_seed(1)
        path = tmp_path_factory.mktemp("ckpt") / f"ctc-{normalize}"
        save_checkpoint(path, Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(fields), len(VOCAB)), vocab=VOCAB,
                        metadata={"labels": "phones"})
        out[normalize] = path
    return out


def _wave(seconds_of_phones: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return tone_utterance(no_repeats(seconds_of_phones, rng), rng).astype(np.float32)


def test_streamed_logits_and_tokens_equal_chunked_transcription(ckpts):
    ctc = load_ctc_model(ckpts[False])
    wave = _wave(60, seed=0)  # ~12 s
    stream = StreamingTranscriber(ctc, chunk_s=4.0, stride_s=1.0, keep_logits=True)
    rng, fed, early = np.random.default_rng(0), 0, []
    while fed < len(wave):
        n = int(rng.integers(800, 9000))  # pieces of 50-560 ms, as a sound card delivers them
        early += stream.feed(wave[fed:fed + n])
        fed += n
        assert len(stream._audio) < 4.1 * 16000 + 9000  # only what later windows read is kept: one window or less
        if fed < len(wave) // 2:
            final_at_half = len(stream.tokens)
    assert final_at_half > 0  # text became final long before the stream ended
    rest = stream.finish()
    assert stream.tokens == early + rest
    offline = chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=4.0, stride_s=1.0)
    torch.testing.assert_close(stream.logits, offline, rtol=0, atol=1e-4)
    (hyp,) = greedy_decode(offline[None], torch.tensor([offline.shape[0]]), ctc.vocab, timestamps=True)
    assert stream.tokens == hyp.tokens and stream.starts == hyp.timestamps and stream.text == hyp.text
    with pytest.raises(XlsrError, match="the stream has ended"):
        stream.feed(wave[:100])


@pytest.mark.parametrize("chunk_s, stride_s, samples", [
    (4.0, 1.5, 8 * 16000),  # a stride over a quarter of the window: transcribe's cap, the same windows
    (1.0, 0.0, 16321),  # no context, and a tail after the first window too short for a frame of its own
])
def test_the_stream_cuts_the_windows_transcribe_cuts(ckpts, chunk_s, stride_s, samples):
    ctc = load_ctc_model(ckpts[False])
    wave = np.resize(_wave(50, seed=4), samples)
    stream = StreamingTranscriber(ctc, chunk_s=chunk_s, stride_s=stride_s, keep_logits=True)
    for i in range(0, samples, 4000):
        stream.feed(wave[i:i + 4000])
    stream.finish()
    offline = chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=chunk_s,
                             stride_s=window_context(chunk_s, stride_s))
    assert offline.shape[0] == (samples - 400) // 320 + 1
    torch.testing.assert_close(stream.logits, offline, rtol=0, atol=1e-4)


def test_a_short_stream_is_one_window_and_silence_is_nothing(ckpts):
    ctc = load_ctc_model(ckpts[False])
    wave = _wave(5, seed=1)  # ~1 s, shorter than one window
    stream = StreamingTranscriber(ctc, chunk_s=4.0, stride_s=1.0)
    assert stream.feed(wave) == []  # nothing final before the end: the window could still grow
    stream.finish()
    (hyp,) = greedy_decode(*ctc.logits(torch.from_numpy(wave)[None], torch.tensor([len(wave)])), ctc.vocab)
    assert stream.tokens == hyp.tokens
    empty = StreamingTranscriber(ctc)
    assert empty.feed(np.zeros(100, dtype=np.float32)) == [] and empty.finish() == [] and empty.text == ""


def test_a_normalizing_model_sees_each_window_normalized(ckpts):
    ctc = load_ctc_model(ckpts[True])
    wave = _wave(5, seed=2) * 0.01  # quiet: normalisation matters
    stream = StreamingTranscriber(ctc, chunk_s=4.0, stride_s=1.0, keep_logits=True)
    stream.feed(wave)
    stream.finish()
    whole = torch.from_numpy(load_audio_like(wave))
    want, _ = ctc.logits(whole[None], torch.tensor([len(wave)]))
    torch.testing.assert_close(stream.logits, want[0], rtol=0, atol=1e-5)  # one window: the whole utterance's norm


def load_audio_like(wave: np.ndarray) -> np.ndarray:
    """The z-norm `load_audio(normalize=True)` applies to a file."""
    import tempfile

    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        sf.write(f.name, wave, 16000, subtype="FLOAT")
        return load_audio(f.name, normalize=True)


def test_stream_command_from_a_file_and_from_stdin(ckpts, tmp_path, capsys, monkeypatch):
    import io
    import json

    import soundfile as sf

    from xlsr.cli.main import main

    wave = _wave(40, seed=3)  # ~8 s
    wav = tmp_path / "a.wav"
    sf.write(wav, wave, 16000, subtype="PCM_16")
    pcm = (np.clip(sf.read(wav, dtype="float32")[0], -1, 1) * 32768).astype("<i2").tobytes()
    ctc = load_ctc_model(ckpts[False])
    want = StreamingTranscriber(ctc, chunk_s=3.0, stride_s=0.5)
    want.feed(sf.read(wav, dtype="float32")[0])
    want.finish()
    common = ["--model", str(ckpts[False]), "--chunk-seconds", "3", "--stride-seconds", "0.5"]
    assert main(["stream", str(wav), *common, "--jsonl"]) == 0
    steps = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(steps) > 1  # several steps: text came as the audio did
    assert "".join(s["text"] for s in steps) == want.text  # each step's line holds the text it adds, not all so far
    assert [t for s in steps for t in s["tokens"]] == want.tokens
    assert [s["heard"] for s in steps] == sorted(s["heard"] for s in steps) and steps[0]["heard"] < 8
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm)))
    assert main(["stream", "-", *common]) == 0
    assert capsys.readouterr().out.strip() == want.text  # stdin PCM: the same text, printed as it came
    assert main(["stream", str(wav), "--model", str(ckpts[False]), "--chunk-seconds", "0"]) == 2
    err = capsys.readouterr().err
    assert "--chunk-seconds and --piece-seconds must be > 0" in err and err.count("\n") == 1
