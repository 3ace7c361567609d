"""`xlsr stream -` reads raw PCM: a WAV, FLAC, Ogg or MP3 file piped to it is refused in one line saying what to do,
not heard as PCM (its header a click, its audio at the wrong rate); raw PCM, even arriving a byte at a time, is read."""

import io
import sys

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli import stream
from xlsr.errors import XlsrError


class _Stdin:
    def __init__(self, data: bytes, chunk: int | None = None):
        self.buffer = _Chunks(data, chunk)


class _Chunks(io.BytesIO):
    def __init__(self, data: bytes, chunk: int | None):
        super().__init__(data)
        self.chunk = chunk

    def read1(self, size=-1):
        return super().read1(min(size, self.chunk) if self.chunk else size)


@pytest.mark.parametrize("fmt, what", [("WAV", "a WAV file"), ("FLAC", "a FLAC file"), ("OGG", "an Ogg file")])
def test_an_encoded_file_on_stdin_is_refused(monkeypatch, fmt, what):
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, dtype=np.float32), 16000, format=fmt)
    monkeypatch.setattr(sys, "stdin", _Stdin(buf.getvalue(), chunk=1))  # the header a byte at a time
    with pytest.raises(XlsrError, match=rf"^stdin: {what}, not raw PCM; give its path instead of -"):
        list(stream._stdin_pieces(0.1))


def test_raw_pcm_arriving_a_byte_at_a_time_is_read_whole(monkeypatch):
    pcm = (np.arange(-800, 800, dtype=np.int16) * 20).tobytes()
    monkeypatch.setattr(sys, "stdin", _Stdin(pcm, chunk=1))
    got = np.concatenate(list(stream._stdin_pieces(0.01)))
    assert np.array_equal(got, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0)
