"""`xlsr stream FILE` on a file damaged part way transcribes the audio before the damage (as a stop does), then says
the error in one line naming the file and where it broke; a folder is refused as one."""

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.cli.main import main
from xlsr.decode.streaming import StreamingTranscriber
from xlsr.decode.transcribe import load_ctc_model
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

VOCAB = ["<blank>", "<unk>", *(f"p{i}" for i in range(14))]
STREAM = ["--chunk-seconds", "3", "--stride-seconds", "0.5", "--piece-seconds", "0.5"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small random CTC model with the standard CNN strides (20 ms frames)."""
    conv = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    config = Wav2Vec2Config(conv_layers=conv, hidden_size=32, num_layers=1, num_heads=2, ffn_dim=64, final_dim=16,
                            codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=8, conv_pos=16,
                            conv_pos_groups=4, normalize_waveform=False)
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config, len(VOCAB))
    with torch.no_grad():  # mostly blank, as a trained model
        model.lm_head.bias[0] += 2.0
    path = tmp_path_factory.mktemp("ckpt") / "micro-ctc"
    save_checkpoint(path, model, vocab=VOCAB, metadata={"labels": "phones"})
    return path


def test_a_file_damaged_part_way_is_transcribed_up_to_the_damage(ckpt, tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = np.arange(10 * 16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(2 * np.pi * 0.3 * t)) * t)
            + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    wave[7 * 16000 + 100] = np.nan  # in the block of 0.5 s that starts at 7 s: the reader stops there
    path = tmp_path / "damaged.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")

    want = StreamingTranscriber(load_ctc_model(ckpt), chunk_s=3.0, stride_s=0.5)
    want.feed(wave[:7 * 16000])
    assert want.finish()  # the last window before the damage has text of its own: what was lost

    assert main(["stream", str(path), "--model", str(ckpt), *STREAM]) == 2
    out, err = capsys.readouterr()
    assert out == want.text + "\n"
    assert err.splitlines() == [f"xlsr: error: {path}: audio contains NaN or Inf samples; the 7.0 s of audio before "
                                f"it are transcribed above"]


def test_a_file_unreadable_from_the_start_is_one_line_as_before(ckpt, tmp_path, capsys):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    assert main(["stream", str(tmp_path / "empty.wav"), "--model", str(ckpt), *STREAM]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"xlsr: error: {tmp_path / 'empty.wav'}: empty audio (0 samples)"]


def test_a_folder_is_refused_as_a_folder(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"")
    assert main(["stream", str(tmp_path), "--model", str(tmp_path / "no-model")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"xlsr: error: {tmp_path}: a folder; xlsr stream reads one audio file, or - for "
                                f"stdin (xlsr transcribe takes folders)"]
