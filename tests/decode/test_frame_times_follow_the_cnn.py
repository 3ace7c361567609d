"""Token times and chunk seams follow the model's own CNN: frame k hears samples [k × stride, k × stride + receptive
field) and is timed at k × stride / 16 kHz, whole, chunked or streamed. A fake CTC model makes the truth known: frame
k emits the token whose id is ten times the sample at its receptive field's centre."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xlsr.decode.chunking import chunked_logits
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.streaming import StreamingTranscriber
from xlsr.decode.transcribe import CTCModel
from xlsr.errors import XlsrError
from xlsr.model import Wav2Vec2Config
from xlsr.text.vocab import Vocabulary

VOCAB = ["<blank>", "<unk>", "a", "b", "c"]
STANDARD = None  # the 7-layer CNN: 320 samples between frames, 400 per frame
HALF_STRIDE = [(8, 10, 5), (8, 3, 2)] + [(8, 2, 2)] * 4  # 160 between frames, 170 per frame
WIDE_FIELD = [(8, 10, 5), (8, 5, 2)]  # 10 between frames, 30 per frame: more than two strides


class MarkerCTC(torch.nn.Module):
    """Frame k's token: round(10 × the sample at k × stride + receptive field // 2); nothing else is heard."""

    def __init__(self, conv_layers):
        super().__init__()
        self.config = Wav2Vec2Config(conv_layers=conv_layers) if conv_layers else Wav2Vec2Config()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # CTCModel.device

    def forward(self, waveforms, lengths):
        cfg = self.config
        centres = torch.arange(cfg.num_frames(waveforms.shape[1])) * cfg.total_stride + cfg.receptive_field // 2
        ids = (waveforms[:, centres] * 10).round().long().clamp(0, len(VOCAB) - 1)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(ids, len(VOCAB)).float() * 10,
                               frame_lengths=torch.tensor([cfg.num_frames(int(n)) for n in lengths]))


def _marked(conv_layers, frames_ids: dict[int, int], num_samples: int):
    """The fake model and audio whose frame k emits frames_ids[k] (the blank elsewhere)."""
    model = MarkerCTC(conv_layers)
    wave = np.zeros(num_samples, np.float32)
    for k, i in frames_ids.items():
        wave[k * model.config.total_stride + model.config.receptive_field // 2] = i / 10
    return CTCModel(model, Vocabulary(VOCAB, "phones"), False, "marker"), wave


def _stream(ctc, wave, chunk_s, stride_s, piece=777):
    stream = StreamingTranscriber(ctc, chunk_s=chunk_s, stride_s=stride_s)
    for i in range(0, len(wave), piece):
        stream.feed(wave[i:i + piece])
    stream.finish()
    return stream


def test_a_stream_times_its_tokens_by_the_models_frames():
    # frames 5, then 149-151 (around the seam of 1.5 s windows with 0.25 s of context), 400 and 402
    marks = {5: 2, 149: 3, 150: 4, 151: 2, 400: 3, 402: 4}
    ctc, wave = _marked(HALF_STRIDE, marks, 16000 * 5)
    stream = _stream(ctc, wave, chunk_s=1.5, stride_s=0.25)
    assert stream.tokens == [VOCAB[i] for i in marks.values()]
    assert stream.starts == [round(k * 0.01, 6) for k in marks]  # 160 samples a frame: 10 ms


@pytest.mark.parametrize("conv_layers", [STANDARD, HALF_STRIDE, WIDE_FIELD])
@pytest.mark.parametrize("num_samples", [4799, 4800, 4801, 16000 + 17])
def test_chunks_and_streams_merge_to_the_whole_recordings_frames(conv_layers, num_samples):
    cfg = MarkerCTC(conv_layers).config
    ids = np.random.default_rng(num_samples).integers(0, len(VOCAB), cfg.num_frames(num_samples))
    ctc, wave = _marked(conv_layers, dict(enumerate(ids.tolist())), num_samples)
    whole, frames = ctc.logits(torch.from_numpy(wave)[None], torch.tensor([num_samples]))
    (hyp,) = greedy_decode(whole, frames, ctc.vocab, timestamps=True, frame_stride_s=cfg.total_stride / 16000)
    # 0.3 s windows (0.28 s of them when the stride is 320 samples): audio shorter, about as long, and longer
    merged = chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=0.3, stride_s=0.06,
                            frame_samples=cfg.total_stride, receptive_field=cfg.receptive_field)
    assert torch.equal(merged, whole[0])
    stream = _stream(ctc, wave, chunk_s=0.3, stride_s=0.06)
    assert (stream.tokens, stream.starts) == (hyp.tokens, hyp.timestamps)


def test_chunking_refuses_frames_of_another_stride_than_it_was_given():
    ctc, wave = _marked(HALF_STRIDE, {}, 16000 * 2)
    with pytest.raises(XlsrError, match=r"chunking: the model gave 181 frames for 29120 samples where a CNN of "
                                        r"stride 320 and receptive field 400 samples gives 90"):
        chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=1.8, stride_s=0.2)


def test_a_token_at_a_seam_has_its_whole_file_time():
    # the standard CNN, 1.5 s windows with 0.25 s of context: seams at frames 62 and 112 (0.25 s + 1 s kept after 0)
    marks = {61: 2, 62: 3, 63: 4, 111: 2, 112: 3, 113: 4}
    ctc, wave = _marked(STANDARD, marks, 16000 * 4)
    merged = chunked_logits(torch.from_numpy(wave), ctc.logits, chunk_s=1.5, stride_s=0.25)
    (hyp,) = greedy_decode(merged[None], None, ctc.vocab, timestamps=True)
    expected = [round(k * 0.02, 6) for k in marks]
    assert hyp.tokens == [VOCAB[i] for i in marks.values()] and hyp.timestamps == expected
    assert hyp.end_timestamps == [round((k + 1) * 0.02, 6) for k in marks]
    assert _stream(ctc, wave, chunk_s=1.5, stride_s=0.25).starts == expected


@pytest.mark.parametrize("beam", [None, 4])
def test_transcribe_times_a_whole_file_and_its_chunks_by_the_models_frames(beam):
    from xlsr.decode.transcribe import _decode_chunked, make_decoder

    marks = {5: 2, 149: 3, 150: 4, 151: 2, 400: 3, 402: 4}
    ctc, wave = _marked(HALF_STRIDE, marks, 16000 * 5)  # 160 samples a frame: frame k at k x 10 ms
    decoder = make_decoder(ctc, beam=beam)
    logits, frames = ctc.logits(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    (whole,) = decoder(logits, frames, timestamps=True)
    assert whole.tokens == [VOCAB[i] for i in marks.values()]
    assert whole.timestamps == [round(k * 0.01, 6) for k in marks]
    chunked = _decode_chunked(ctc, torch.from_numpy(wave), decoder, timestamps=True, chunk_seconds=1.5,
                              chunk_stride=0.25, windows_per_batch=2)
    assert (chunked.tokens, chunked.timestamps) == (whole.tokens, whole.timestamps)
