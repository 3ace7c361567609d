"""A damaged header is one bad file, not the end of a run: every reader refuses it with an AudioError, before a
length it declares sizes an allocation (a MemoryError is no AudioError: it ends the DataLoader worker's batch and the
run) or a manifest's num_samples. The files are small valid ones written here, with one header field changed."""

import io
import struct

import numpy as np
import pytest
import soundfile as sf

import xlsr.data.audio as audio
from xlsr.data.audio import audio_blocks, audio_num_samples, decode_audio, load_audio
from xlsr.errors import AudioError

READERS = {
    "load_audio": load_audio,
    "audio_num_samples": audio_num_samples,
    "audio_blocks": lambda path: sum(len(b) for b in audio_blocks(path, 0.1)),
    "decode_audio": lambda path: decode_audio(path.read_bytes(), str(path)),
}


def _encoded(fmt, subtype, rate=16000, seconds=0.5, channels=1, wave=None):
    if wave is None:
        t = np.arange(int(rate * seconds)) / rate
        wave = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * channels, 1)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _flac_with_total_samples(total):
    """A FLAC whose STREAMINFO gives `total` frames (36 bits after rate, channels and bits per sample)."""
    data = _encoded("FLAC", "PCM_16")
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, as the format requires
    fields = int.from_bytes(data[18:26], "big")
    return data[:18] + ((fields & ~(2**36 - 1)) | total).to_bytes(8, "big") + data[26:]


def _mp3_with_xing_frames(frames):
    """An mp3 whose Xing/Info frame (which LAME writes first) counts `frames` MPEG frames."""
    data = _encoded("MP3", "MPEG_LAYER_III")
    tag = max(data.find(b"Xing"), data.find(b"Info"))
    assert tag > 0 and struct.unpack_from(">I", data, tag + 4)[0] & 1  # its frame count is present
    return data[:tag + 8] + struct.pack(">I", frames) + data[tag + 12:]


def _ogg_crc(page):
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _opus_with_last_granule(granule):
    """An Ogg Opus file whose last page puts its end at `granule` (CRC made right, so that libogg takes the page)."""
    data = bytearray(_encoded("OGG", "OPUS", rate=48000, seconds=3.0))  # several pages: libsndfile reads the last
    last = data.rfind(b"OggS")
    struct.pack_into("<Q", data, last + 6, granule)
    struct.pack_into("<I", data, last + 22, 0)
    struct.pack_into("<I", data, last + 22, _ogg_crc(bytes(data[last:])))
    return bytes(data)


def _wav_with_rate(rate):
    data = _encoded("WAV", "PCM_16")
    assert data[12:16] == b"fmt "
    return data[:24] + struct.pack("<I", rate) + data[28:]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name, data, declared", [
    ("flac_36_bit.flac", lambda: _flac_with_total_samples(2**36 - 1), 2**36 - 1),
    ("xing_4g.mp3", lambda: _mp3_with_xing_frames(0xFFFFFFFF), None),
    ("granule_2_40.opus", lambda: _opus_with_last_granule(2**40), None),
])
def test_a_length_beyond_what_the_bytes_hold_is_refused_by_every_reader(tmp_path, reader, name, data, declared):
    """Before: audio_num_samples listed the header's length (2**36 frames, 2.5e12 for the mp3); load_audio and
    decode_audio asked numpy for an array of that length (256 GiB to 9 TiB) and raised MemoryError."""
    path = tmp_path / name
    path.write_bytes(data())
    size = path.stat().st_size
    frames = str(declared) if declared else r"\d+"
    with pytest.raises(AudioError, match=rf"{name}: not a readable audio file \(its header declares {frames} frames, "
                                         rf"more than {size} bytes can hold\)$"):
        READERS[reader](path)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("rate", [1, 2_000_000])
def test_a_sample_rate_no_recording_has_is_refused_by_every_reader(tmp_path, reader, rate):
    """Before: 0.5 s at a header's 1 Hz read as 8000 s at 16 kHz (128 million samples from a 16 kB file); at 2 MHz
    as 64 samples (at 2 GHz, a damaged Vorbis header's, soxr took 2.6 s to make 1 sample of a 3 s file)."""
    path = tmp_path / "odd_rate.wav"
    path.write_bytes(_wav_with_rate(rate))
    with pytest.raises(AudioError, match=rf"odd_rate\.wav: not a readable audio file \(its header gives a sample rate "
                                         rf"of {rate} Hz, outside 1000 to 1000000 Hz\)$"):
        READERS[reader](path)


def test_a_flac_without_a_length_is_not_listed_at_libsndfiles_stand_in(tmp_path):
    """STREAMINFO's 0 ("unknown") reads as 2**63 - 1 frames, which audio_num_samples listed (the other readers
    refused it in numpy's and soundfile's words: "array is too big", "Internal psf_fseek() failed.")."""
    path = tmp_path / "streamed.flac"
    path.write_bytes(_flac_with_total_samples(0))
    for read in READERS.values():
        with pytest.raises(AudioError, match=r"streamed\.flac: not a readable audio file \(its header gives no "
                                             r"length\)$"):
            read(path)


def test_a_flac_that_overstates_its_length_within_reason_reads_as_its_frames(tmp_path):
    """Twice its 8000 frames in STREAMINFO: the readers give the frames there are, and the header's length is what
    audio_num_samples lists (batching's length check tells the two apart). Before: load_audio failed with "Internal
    psf_fseek() failed.", soundfile's seek after the read, past the real end."""
    whole = tmp_path / "whole.flac"
    whole.write_bytes(_encoded("FLAC", "PCM_16"))
    path = tmp_path / "overstated.flac"
    path.write_bytes(_flac_with_total_samples(16000))
    want = load_audio(whole)
    assert len(want) == 8000
    np.testing.assert_array_equal(load_audio(path), want)
    np.testing.assert_array_equal(decode_audio(path.read_bytes(), "o"), want)
    np.testing.assert_array_equal(np.concatenate(list(audio_blocks(path, 0.1))), want)
    assert audio_num_samples(path) == 16000


@pytest.mark.parametrize("fmt, subtype, rate, channels", [
    ("FLAC", "PCM_16", 48000, 2), ("FLAC", "PCM_S8", 8000, 1), ("OGG", "VORBIS", 8000, 1),
    ("OGG", "OPUS", 48000, 1), ("MP3", "MPEG_LAYER_III", 8000, 1)])
def test_digital_silence_the_densest_real_file_is_read(tmp_path, fmt, subtype, rate, channels):
    """The frames-per-byte bound leaves room for what encoders make of silence (FLAC's: ~280 frames a byte)."""
    path = tmp_path / f"silence.{fmt.lower()}"
    path.write_bytes(_encoded(fmt, subtype, rate, wave=np.zeros((rate * 10, channels))))
    x = load_audio(path)
    assert abs(len(x) - 160000) < 1200 and np.max(np.abs(x)) < 1e-3  # mp3 adds encoder delay and padding
    assert abs(audio_num_samples(path) - 160000) < 1200


@pytest.mark.parametrize("fmt, subtype, rate, channels", [
    ("WAV", "PCM_16", 44100, 2), ("FLAC", "PCM_24", 16000, 1), ("OGG", "VORBIS", 22050, 2),
    ("MP3", "MPEG_LAYER_III", 16000, 1)])
def test_reading_in_blocks_gives_what_one_read_gave(tmp_path, monkeypatch, fmt, subtype, rate, channels):
    """load_audio reads a block of samples at a time; joined, they are sf.read's array bit for bit (mp3 too, whose
    decoder rounds some floats 1 ulp apart unless the file is first sought to its start, as sf.read does)."""
    path = tmp_path / f"a.{fmt.lower()}"
    path.write_bytes(_encoded(fmt, subtype, rate, seconds=0.7, channels=channels))
    monkeypatch.setattr(audio, "_READ_SAMPLES", 1000)  # several blocks, one of them short
    data, got_rate = sf.read(path, dtype="float32", always_2d=True)
    want = audio.to_mono(data, got_rate, "a")
    np.testing.assert_array_equal(load_audio(path), want)
    np.testing.assert_array_equal(decode_audio(path.read_bytes(), "a"), want)


def test_mp3_blocks_join_to_load_audio_bit_for_bit(tmp_path):
    """audio_blocks reads from where it opened; without the seek to the start, mp3 samples came 1 ulp apart."""
    path = tmp_path / "a.mp3"
    path.write_bytes(_encoded("MP3", "MPEG_LAYER_III", 16000, seconds=1.0))
    np.testing.assert_array_equal(np.concatenate(list(audio_blocks(path, 0.25))), load_audio(path))


def _sweep_cases():
    """A few seconds of the fuzzing sweep: truncations and byte flips in the header region of small files."""
    originals = {"wav": _encoded("WAV", "PCM_16"), "flac": _encoded("FLAC", "PCM_16"),
                 "mp3": _encoded("MP3", "MPEG_LAYER_III"), "ogg": _encoded("OGG", "VORBIS"),
                 "opus": _encoded("OGG", "OPUS", rate=48000)}
    for ext, data in originals.items():
        for cut in range(0, len(data), max(1, len(data) // 25)):
            yield ext, data[:cut]
        for pos in range(min(len(data), 48)):  # the WAV header, STREAMINFO, the mp3 Xing frame, the first Ogg page
            for flip in (0xFF, 0x80):
                damaged = bytearray(data)
                damaged[pos] = flip if flip == 0xFF else damaged[pos] ^ flip
                yield ext, bytes(damaged)


def test_truncated_and_flipped_headers_give_audio_or_an_audio_error(tmp_path):
    """Before: STREAMINFO's and Xing's frame counts with a high bit flipped raised MemoryError from load_audio and
    decode_audio, and audio_num_samples listed billions of samples."""
    escaped = []
    for n, (ext, data) in enumerate(_sweep_cases()):
        path = tmp_path / f"{n}.{ext}"
        path.write_bytes(data)
        for name, read in READERS.items():
            try:
                got = read(path)
            except AudioError:
                continue
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                escaped.append(f"{path.name} {name}: {type(exc).__name__}")
                continue
            if name == "audio_num_samples" and got > 16000 * 3600:  # no file here, 10 kB at most, holds an hour
                escaped.append(f"{path.name} {name}: {got} samples from {len(data)} bytes")
    assert escaped == []
