"""`xlsr stream FILE` reads the file a block at a time (memory bounded however long it is, the text that of the
whole file fed in pieces); SIGTERM, a service manager's stop, ends a stream as Ctrl-C does."""

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.cli.main import main
from xlsr.data.audio import load_audio
from xlsr.decode.streaming import StreamingTranscriber
from xlsr.decode.transcribe import load_ctc_model
from xlsr.errors import AudioError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

VOCAB = ["<blank>", "<unk>", *(f"p{i}" for i in range(14))]
STREAM = ["--chunk-seconds", "3", "--stride-seconds", "0.5"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small random CTC model with the standard CNN strides (20 ms frames), quick over minutes of audio."""
    conv = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    config = Wav2Vec2Config(conv_layers=conv, hidden_size=32, num_layers=1, num_heads=2, ffn_dim=64, final_dim=16,
                            codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=8, conv_pos=16,
                            conv_pos_groups=4, normalize_waveform=False)
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config, len(VOCAB))
    with torch.no_grad():  # mostly blank, as a trained model: some 6 tokens a second, not 40
        model.lm_head.bias[0] += 2.0
    path = tmp_path_factory.mktemp("ckpt") / "micro-ctc"
    save_checkpoint(path, model, vocab=VOCAB, metadata={"labels": "phones"})
    return path


def _write(path: Path, seconds: float, rate: int, channels: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(2 * np.pi * 0.3 * t)) * t)  # a sliding tone: tokens vary
    wave = tone[:, None] + 0.05 * rng.standard_normal((n, channels))
    sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")
    return path


def _whole_file_text(ctc, path: Path, piece_seconds: float = 0.5) -> str:
    """What the command printed when it loaded the whole file and fed it in pieces of --piece-seconds."""
    audio = load_audio(path)
    stream = StreamingTranscriber(ctc, chunk_s=3.0, stride_s=0.5)
    step = round(piece_seconds * 16000)
    for i in range(0, len(audio), step):
        stream.feed(audio[i:i + step])
    stream.finish()
    return stream.text


@pytest.mark.parametrize("seconds, rate, channels", [(120, 16000, 1), (45, 44100, 2)])
def test_a_long_file_is_streamed_in_bounded_memory_with_the_whole_files_text(ckpt, tmp_path, capsys, monkeypatch,
                                                                           seconds, rate, channels):
    path = _write(tmp_path / "long.wav", seconds, rate, channels)
    ctc = load_ctc_model(ckpt)
    want = _whole_file_text(ctc, path)
    assert len(want) > 100
    # the model is loaded before the measurement: only what the stream holds of the audio is counted
    monkeypatch.setattr("xlsr.decode.transcribe.load_ctc_model", lambda *args, **kwargs: ctc)
    whole = seconds * rate * channels * 4  # the file decoded whole as float32: what loading it held at least
    tracemalloc.start()
    try:
        assert main(["stream", str(path), "--model", str(ckpt), *STREAM]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert capsys.readouterr().out == want + "\n"
    assert peak < 1_250_000 < whole / 5, peak  # about one window and one block, however long the file


@pytest.mark.parametrize("rate, channels, block_seconds", [(16000, 1, 0.5), (44100, 2, 0.37), (8000, 1, 1.0),
                                                            (22050, 1, 0.001)])
def test_blocks_join_to_the_whole_file_bit_for_bit(tmp_path, rate, channels, block_seconds):
    from xlsr.data.audio import audio_blocks

    path = _write(tmp_path / "a.flac", 2.3, rate, channels, seed=1)
    blocks = list(audio_blocks(path, block_seconds))
    assert len(blocks) > 1 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path))  # soxr's stream resampler is exact


def test_a_block_reader_refuses_what_load_audio_refuses(tmp_path):
    from xlsr.data.audio import audio_blocks

    with pytest.raises(AudioError, match=r"^.*missing\.wav: no such audio file$"):
        audio_blocks(tmp_path / "missing.wav", 0.5)  # at once, before any block is asked for
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match=r"junk\.wav: not a readable audio file"):
        audio_blocks(tmp_path / "junk.wav", 0.5)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: empty audio \(0 samples\)$"):
        list(audio_blocks(tmp_path / "empty.wav", 0.5))
    wave = np.zeros(16000, np.float32)
    wave[12000] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: audio contains NaN or Inf samples$"):
        list(audio_blocks(tmp_path / "nan.wav", 0.5))
    sf.write(tmp_path / "one.wav", np.full(1, 0.1, np.float32), 44100)
    with pytest.raises(AudioError, match=r"one\.wav: empty audio \(1 sample\(s\) at 44100 Hz, none at 16000 Hz\)$"):
        list(audio_blocks(tmp_path / "one.wav", 0.5))


def _main_thread_waits_on_stdin(pid: int) -> bool:
    """Whether the process's main thread is blocked reading fd 0 (Linux: /proc/PID/syscall; read is 0 on x86-64
    and 63 on arm64)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except PermissionError:  # ptrace restrictions (Yama) guard it on some systems
        pytest.skip("/proc/PID/syscall of a child is not readable here")
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in ("0", "63") and int(fields[1], 16) == 0


@pytest.mark.skipif(not Path("/proc/self/syscall").exists(), reason="needs Linux /proc/PID/syscall")
def test_sigterm_on_the_stream_command_prints_the_text_of_all_it_heard(ckpt, tmp_path):
    rng = np.random.default_rng(3)
    wave = np.clip(0.3 * np.sin(np.arange(8 * 16000) * 0.05) + 0.05 * rng.standard_normal(8 * 16000), -1, 1)
    pcm = (wave * 32767).astype("<i2").tobytes()
    want = StreamingTranscriber(load_ctc_model(ckpt), chunk_s=3.0, stride_s=0.5)
    want.feed(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0)
    assert want.finish()  # the last window has text of its own: the part a stop would lose
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "xlsr.cli.main", "stream", "-", "--model", str(ckpt), *STREAM],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        proc.stdin.write(pcm)
        proc.stdin.flush()  # the pipe stays open: a microphone that goes on
        deadline = time.monotonic() + 120
        # all the audio is read and fed once the main thread waits on stdin again with the pipe empty
        while not _main_thread_waits_on_stdin(proc.pid) or _pipe_holds(proc.stdin):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert out.decode() == want.text + "\n"
    heard = len(wave) / 16000
    assert err.decode().splitlines()[-1] == f"xlsr: terminated: {heard:.1f} s of audio heard and transcribed"


def _pipe_holds(stdin) -> int:
    """Bytes written to the pipe and not yet read (Linux FIONREAD)."""
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(stdin.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
