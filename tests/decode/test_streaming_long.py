"""A stream that runs for hours: what the transcriber holds and plans stays about one window; a stop ends it whole."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import xlsr.decode.streaming as streaming
from xlsr.decode.chunking import chunked_logits, window_context
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.streaming import StreamingTranscriber
from xlsr.decode.transcribe import load_ctc_model
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", *(f"p{i}" for i in range(30))]  # 32 logits a frame, as a character model
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A model that takes the waveform as it is (Base's layout): streamed, the windows of `xlsr transcribe`."""
    fields = {**Wav2Vec2Config.preset("tiny").to_dict(), "extractor_mode": "group_norm", "conv_bias": False,
              "layer_norm_first": False, "normalize_waveform": False}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-ctc"
    save_checkpoint(path, Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(fields), len(VOCAB)), vocab=VOCAB,
                    metadata={"labels": "phones"})
    return path


def _wave(phones: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return tone_utterance(no_repeats(phones, rng), rng).astype(np.float32)  # ~0.2 s a phone


def _offline(ctc, wave: np.ndarray, chunk_s: float, stride_s: float):
    """What `xlsr transcribe` decodes from the whole recording in the same windows."""
    logits = chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=chunk_s,
                            stride_s=window_context(chunk_s, stride_s))
    (hyp,) = greedy_decode(logits[None], torch.tensor([logits.shape[0]]), ctc.vocab, timestamps=True)
    return hyp


def _numbers_held(stream: StreamingTranscriber) -> int:
    """Samples and logits the transcriber holds, the transcript (tokens, their starts) aside."""
    held = 0
    for name, value in vars(stream).items():
        if name in ("ctc", "tokens", "starts"):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, np.ndarray | torch.Tensor):
                held += item.size if isinstance(item, np.ndarray) else item.numel()
    return held


def test_a_long_stream_holds_and_plans_about_one_window_however_long_it_runs(ckpt, monkeypatch):
    ctc = load_ctc_model(ckpt)
    planned = []
    plan = streaming.plan_windows
    monkeypatch.setattr(streaming, "plan_windows", lambda n, **kw: planned.append(n) or plan(n, **kw))
    wave = _wave(75, seed=0)  # ~15 s: some 30 windows of 1 s
    # a window: 50 frames and the receptive field's extra frame; the one that waits for more audio may be up to a
    # receptive field longer (a tail too short for a frame of its own joins it)
    piece, window = 4000, (50 + 1) * 320 + 400
    stream = StreamingTranscriber(ctc, chunk_s=1.0, stride_s=0.25)
    held = []
    for i in range(0, len(wave), piece):
        stream.feed(wave[i:i + piece])
        held.append(_numbers_held(stream))
    stream.finish()
    assert len(wave) > 12 * 16000 and len(planned) > 50
    # neither grows with the stream: the audio that windows still to run read, and no logits unless asked for
    assert max(held) <= window + piece
    assert max(planned) <= window + piece  # each feed plans over the audio kept, not all the stream so far
    with pytest.raises(XlsrError, match=r"^streaming: the logits were not kept; make the StreamingTranscriber with "
                                        r"keep_logits=True$"):
        _ = stream.logits
    want = _offline(ctc, wave, 1.0, 0.25)  # planning from a later window's start cuts the same windows
    assert len(want.tokens) > 30 and stream.tokens == want.tokens and stream.starts == want.timestamps


def test_a_stop_in_the_middle_of_a_feed_repeats_and_loses_nothing(ckpt):
    ctc = load_ctc_model(ckpt)
    wave = _wave(30, seed=1)  # ~6 s
    stream = StreamingTranscriber(ctc, chunk_s=1.0, stride_s=0.25, keep_logits=True)
    stream.feed(wave[:8000])
    calls, model_logits = [], ctc.logits

    def stopped_at_the_fourth_window(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return model_logits(*args)

    ctc.logits = stopped_at_the_fourth_window  # the rest in one piece: several windows in one feed
    with pytest.raises(KeyboardInterrupt):
        stream.feed(wave[8000:])
    del ctc.logits
    assert len(stream.tokens) > 0  # three windows ran before the stop
    stream.finish()
    want = _offline(ctc, wave, 1.0, 0.25)
    assert stream.tokens == want.tokens and stream.starts == want.timestamps
    torch.testing.assert_close(stream.logits, chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=1.0,
                                                             stride_s=0.25), rtol=0, atol=1e-4)


def test_ctrl_c_on_the_stream_command_prints_the_text_of_all_it_heard(ckpt, capsys, monkeypatch):
    from xlsr.cli.main import main

    wave = np.clip(_wave(40, seed=3), -1, 1)  # ~8 s
    pcm = (wave * 32767).astype("<i2").tobytes()
    heard = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    want = StreamingTranscriber(load_ctc_model(ckpt), chunk_s=3.0, stride_s=0.5)
    want.feed(heard)
    assert want.finish()  # the last window has text of its own: the part a stop would lose
    chunks = [pcm[i:i + 8000] for i in range(0, len(pcm), 8000)]

    def read1(size):  # a microphone's pipe: then Ctrl-C
        if not chunks:
            raise KeyboardInterrupt
        return chunks.pop(0)

    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=types.SimpleNamespace(read1=read1)))
    assert main(["stream", "-", "--model", str(ckpt), "--chunk-seconds", "3", "--stride-seconds", "0.5"]) == 130
    out, err = capsys.readouterr()
    assert out == want.text + "\n"
    assert err == f"xlsr: interrupted: {len(heard) / 16000:.1f} s of audio heard and transcribed\n"
