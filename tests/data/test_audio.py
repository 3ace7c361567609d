import numpy as np
import pytest
import soundfile as sf

from xlsr.data.audio import audio_num_samples, decode_audio, load_audio, normalize_waveform
from xlsr.errors import AudioError


def _tone(rate, seconds=0.5, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def test_stereo_int16_44k_becomes_mono_float_16k(tmp_path):
    left, right = _tone(44100), _tone(44100) * 0.0
    path = tmp_path / "a.wav"
    sf.write(path, np.stack([left, right], 1), 44100, subtype="PCM_16")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) <= 1
    # mono = mean of channels: half the amplitude of the left channel
    assert np.max(np.abs(x)) == pytest.approx(0.25, abs=0.01)
    assert audio_num_samples(path) == 8000



def test_a_missing_file_is_named_as_missing_by_both_readers(tmp_path):
    for read in (load_audio, audio_num_samples):
        with pytest.raises(AudioError, match=r"nope.flac: no such audio file"):
            read(tmp_path / "nope.flac")


@pytest.mark.parametrize("fmt,ext", [("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_compressed_formats_load(tmp_path, fmt, ext):
    path = tmp_path / f"a.{ext}"
    kwargs = {"subtype": "VORBIS"} if fmt == "OGG" else {"subtype": "MPEG_LAYER_III"} if fmt == "MP3" else {}
    sf.write(path, _tone(48000), 48000, format=fmt, **kwargs)
    x = load_audio(path)
    assert abs(len(x) - 8000) < 1200  # mp3 adds encoder delay/padding
    assert 0.3 < np.max(np.abs(x)) < 0.7


def test_normalize_gives_zero_mean_unit_variance(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _tone(16000) * 0.1 + 0.05, 16000)
    x = load_audio(path, normalize=True)
    raw = load_audio(path).astype(np.float64)
    assert abs(float(x.mean())) < 1e-4
    assert float(x.std()) == pytest.approx(raw.std() / np.sqrt(raw.var() + 1e-5), abs=1e-4)  # layer_norm's eps
    y = normalize_waveform(np.array([1.0, 2.0, 3.0], np.float32))
    assert np.allclose(y, np.array([-1, 0, 1]) / np.sqrt(2 / 3 + 1e-5), atol=1e-5)


def test_bad_files_raise_audio_error_naming_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav: no such"):
        load_audio(missing)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    data = _tone(16000)
    data[100] = np.nan
    sf.write(nan, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf"):
        load_audio(nan)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_one_sample_that_resamples_to_nothing_is_empty_audio(tmp_path, rate):
    path = tmp_path / "one.wav"
    sf.write(path, np.full(1, 0.5), rate)
    with pytest.raises(AudioError, match="one.wav: empty audio"):
        load_audio(path)
    with pytest.raises(AudioError, match="one.wav: empty audio"):
        audio_num_samples(path)
    with pytest.raises(AudioError, match="clip: empty audio"):
        decode_audio(path.read_bytes(), "clip")


def test_truncated_flac_is_an_audio_error_or_shorter(tmp_path):
    path = tmp_path / "t.flac"
    sf.write(path, _tone(16000, seconds=2.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    try:
        x = load_audio(path)
    except AudioError as exc:
        assert "t.flac" in str(exc)
    else:
        assert len(x) < 32000
    head = tmp_path / "h.flac"
    head.write_bytes(data[:20])  # header cut inside the STREAMINFO block
    with pytest.raises(AudioError, match="h.flac"):
        load_audio(head)


def test_decoded_bytes_equal_the_loaded_file_and_bad_bytes_name_the_place(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, np.stack([_tone(48000), _tone(48000, freq=200.0)], 1), 48000)
    x = decode_audio(path.read_bytes(), "rows.parquet:row 3")
    assert np.array_equal(x, load_audio(path)) and len(x) == 8000
    with pytest.raises(AudioError, match=r"^rows.parquet:row 4: not a readable audio file"):
        decode_audio(b"RIFF but nothing else", "rows.parquet:row 4")
