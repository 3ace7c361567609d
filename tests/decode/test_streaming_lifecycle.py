"""A stream's life: settings refused when it is made, and an end that comes once."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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
def ctc(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-ctc"
    save_checkpoint(path, Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), len(VOCAB)), vocab=VOCAB,
                    metadata={"labels": "phones"})
    return load_ctc_model(path)


def test_a_second_finish_adds_nothing(ctc):
    rng = np.random.default_rng(0)
    wave = tone_utterance(no_repeats(12, rng), rng).astype(np.float32)  # ~2.4 s: two windows of 1.5 s and more
    stream = StreamingTranscriber(ctc, chunk_s=1.5, stride_s=0.25, keep_logits=True)
    stream.feed(wave)
    last = stream.finish()
    tokens, starts, logits = list(stream.tokens), list(stream.starts), stream.logits.clone()
    assert tokens and last == tokens[len(tokens) - len(last):]
    assert stream.finish() == []
    assert stream.tokens == tokens and stream.starts == starts and torch.equal(stream.logits, logits)


@pytest.mark.parametrize("chunk_s, stride_s", [(4.0, -1.0), (0.0, 1.0), (-2.0, 0.0)])
def test_a_window_or_stride_out_of_range_is_refused_when_the_stream_is_made(ctc, chunk_s, stride_s):
    with pytest.raises(XlsrError, match="streaming: the window must be longer than 0 s and the stride at least 0 s"):
        StreamingTranscriber(ctc, chunk_s=chunk_s, stride_s=stride_s)
