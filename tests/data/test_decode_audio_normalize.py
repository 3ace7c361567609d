"""Encoded bytes (a shard's FLAC member) decode to what the file gives, normalised when the model asks for it."""

import io

import numpy as np
import soundfile as sf

from xlsr.data.audio import decode_audio, load_audio


def test_decoded_bytes_are_normalised_as_the_file_is_loaded(tmp_path):
    x = 0.2 + 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    path = tmp_path / "a.flac"
    sf.write(path, x, 16000, subtype="PCM_16")
    data = path.read_bytes()
    plain, normed = decode_audio(data, "a"), decode_audio(data, "a", normalize=True)
    np.testing.assert_array_equal(plain, load_audio(path))
    np.testing.assert_array_equal(normed, load_audio(path, normalize=True))
    assert abs(float(normed.mean())) < 1e-4 and abs(float(normed.std()) - 1) < 1e-3
    assert abs(float(plain.mean()) - 0.2) < 1e-3  # the offset kept without normalisation
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV")
    np.testing.assert_allclose(decode_audio(buf.getvalue(), "w", normalize=True), normed, atol=1e-3)
