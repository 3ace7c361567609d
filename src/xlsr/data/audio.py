"""The one audio loader: any file soundfile reads (wav, flac, ogg, mp3) -> 16 kHz mono float32."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from xlsr.errors import AudioError
from xlsr.rates import SAMPLE_RATE

# What a folder of recordings is searched for: the suffixes of the formats libsndfile reads (NIST SPHERE: LDC's .sph)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".au", ".caf", ".w64", ".rf64",
                  ".sph")
# Recordings it does not read (phones' and browsers' AAC, WMA, AMR, WebM, ...): in a folder each is named, not passed
# over in silence
UNREADABLE_AUDIO_SUFFIXES = (".m4a", ".aac", ".wma", ".amr", ".3gp", ".webm", ".mp4", ".mka", ".wv", ".ape")


def unreadable_format(path: Path) -> str:
    """The line for a recording in a format xlsr does not read (UNREADABLE_AUDIO_SUFFIXES)."""
    return f"{path}: {path.suffix.lower()} audio is not a format xlsr reads; convert it first (e.g. ffmpeg -i IN -ac 1 " \
           f"-ar 16000 OUT.flac)"


def files_under(folder: Path) -> list[Path]:
    """Every entry under `folder` that is no folder (files, links to files, broken links: each a recording
    to read or to name as unreadable, none passed over in silence), sorted, named through `folder`. A
    subfolder reached through a link is searched too (a corpus laid out as links into a store), once: not
    one whose target lies inside `folder` (its files are found under their own names) or holds it (a loop),
    nor a folder already searched."""
    top = os.path.realpath(folder)
    searched: set[str] = set()  # real folders: one reached by two links (or a link and its own name) is read once
    found: list[Path] = []

    def search(at: str) -> None:
        if (real := os.path.realpath(at)) in searched:
            return
        searched.add(real)
        try:
            with os.scandir(at) as entries:
                entries = sorted(entries, key=lambda e: e.name)
        except PermissionError:  # a subfolder one may not read: passed over, as Path.rglob does
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                search(entry.path)
            elif entry.is_symlink() and os.path.isdir(entry.path):
                target = os.path.realpath(entry.path)
                inside = target.startswith(top + os.sep)
                holds = (top + os.sep).startswith(target.rstrip(os.sep) + os.sep)
                if not (inside or holds):
                    search(entry.path)
            else:
                found.append(Path(entry.path))

    search(os.fspath(folder))
    return sorted(found)


def normalize_waveform(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-utterance zero mean, unit variance (what F.layer_norm(x, x.shape) does, as fairseq)."""
    x = x.astype(np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + eps)).astype(np.float32)


def to_mono(data: np.ndarray, rate: int, where: str, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decoded samples (S, C) at `rate` -> mono float32 (S',) at `sample_rate`; AudioError naming `where` if unusable."""
    if data.shape[0] == 0:
        raise AudioError(f"{where}: empty audio (0 samples)")
    x = _mix(data, where)
    if rate != sample_rate:
        x = soxr.resample(x, rate, sample_rate).astype(np.float32, copy=False)
        if len(x) == 0:  # e.g. one sample at 44.1 kHz
            raise AudioError(f"{where}: empty audio ({data.shape[0]} sample(s) at {rate} Hz, none at {sample_rate} Hz)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _mix(data: np.ndarray, where: str) -> np.ndarray:
    """(S, C) samples -> their mean over the channels (S,); AudioError for NaN or Inf."""
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(x).all():
        raise AudioError(f"{where}: audio contains NaN or Inf samples")
    return x


# What soundfile raises for a file it cannot read: libsndfile's errors, and ValueError for what it refuses itself.
_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError)


def _os_path(path: Path) -> bytes | str:
    """`path` as soundfile should be given it. soundfile encodes a str name as strict UTF-8, which fails for a
    name that is not UTF-8 on disk (Python decodes its bytes to lone surrogates); the bytes os.fsencode gives
    back are the name as the filesystem has it. Windows keeps str: soundfile opens it with the wide-char API.
    A file named `-` is given as `./-`: libsndfile opens the name `-` as stdin (pathlib makes `./-` into `-`), which
    would read other audio, or wait for input, in place of the file."""
    name = os.path.join(os.curdir, "-") if str(path) == "-" else str(path)  # not Path: it drops the `./` again
    return name if os.name == "nt" else os.fsencode(name)


def _unreadable(where: str, exc: Exception) -> AudioError:
    # libsndfile's message starts with what it was given to open (a BytesIO's repr, a path's bytes: b'...'), already
    # named by `where`; its error_string is the reason alone
    reason = getattr(exc, "error_string", None)
    return AudioError(f"{where}: not a readable audio file ({reason or str(exc).splitlines()[0][:120]})")


def _check_file(path: Path) -> int:
    """The size of `path` in bytes; AudioError unless it is a file. An OSError of asking (a flaky mount's EIO, a name
    too long, a folder one may not enter) is one too: one file the system cannot open is a bad file like any other,
    not the end of a run."""
    try:
        st = path.stat()  # one call: the data loader asks this of every file it reads
    except (FileNotFoundError, NotADirectoryError):
        raise AudioError(f"{path}: no such audio file") from None
    except OSError as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(f"{path}: no such audio file")
    return st.st_size


# A header is believed only as far as a real file can go: a damaged one must size neither an allocation nor a
# manifest's length. No codec packs more frames into a byte than this: FLAC's densest frame (65536 frames of a
# constant in 12 bytes) holds about 5500, Ogg Vorbis and Opus at most 4096 (a packet's lacing byte), MPEG audio under
# 50, PCM and ADPCM WAV under 8. libsndfile bounds a WAV's length by the file's size itself; a FLAC's STREAMINFO, an
# mp3's Xing frame count and an Ogg page's granule position it takes as they are.
_MAX_FRAMES_PER_BYTE = 8192
# Nothing is recorded slower or faster (telephone speech is 8 kHz, the fastest converters 768 kHz): a header's 1 Hz
# makes 16000 samples of each one (a 1 MB file: 32 GB), its 2 GHz costs soxr 20 us a frame to make next to nothing.
_MIN_SAMPLE_RATE, _MAX_SAMPLE_RATE = 1000, 1_000_000
# load_audio and decode_audio read this many samples (frames x channels) at most at a time: soundfile's one-call
# read sizes its array from the header's frame count, which a damaged header puts at terabytes (a MemoryError).
_READ_SAMPLES = 1 << 24  # 64 MB of float32: 17 minutes at 16 kHz read at once, as before
_NO_LENGTH = 2**63 - 1  # libsndfile's SF_COUNT_MAX: the frames of a file whose header gives no length


def _check_header(frames: int, rate: int, size: int, where: str) -> None:
    """AudioError for a header not to be taken as it is: a sample rate no recording has, more frames than `size`
    bytes can hold, or no length at all (a FLAC streamed to a pipe): the length is what a manifest lists and what
    ends a read (a damaged Ogg Opus page made libsndfile stream hours of silence from an 8 kB file)."""
    if not _MIN_SAMPLE_RATE <= rate <= _MAX_SAMPLE_RATE:
        reason = f"its header gives a sample rate of {rate} Hz, outside {_MIN_SAMPLE_RATE} to {_MAX_SAMPLE_RATE} Hz"
    elif frames == _NO_LENGTH:
        reason = "its header gives no length"
    elif frames > _MAX_FRAMES_PER_BYTE * size:
        reason = f"its header declares {frames} frames, more than {size} bytes can hold"
    else:
        return
    raise AudioError(f"{where}: not a readable audio file ({reason})")


class _SoundFile(sf.SoundFile):
    """soundfile's SoundFile less the seek it makes after each read to where the read ended (where the file is):
    libsndfile hands that seek to mpg123, which lands elsewhere in a VBR mp3, so that an mp3 read in blocks jumped
    at every block's edge; and past the end of a FLAC whose header overstates its length it failed the read."""

    def seek(self, frames: int, whence: int = sf.SEEK_SET) -> int:
        if whence == sf.SEEK_SET and frames == self.tell():
            return frames
        return super().seek(frames, whence)


def _open(source, where: str, size: int) -> _SoundFile:
    """`source` open for reading from its start, its header checked (_check_header); AudioError naming `where`."""
    try:
        f = _SoundFile(source)
    except _SOUNDFILE_ERRORS as exc:
        raise _unreadable(where, exc) from None
    try:
        _check_header(f.frames, f.samplerate, size, where)
        if f.seekable():  # to the start for real, as sf.read does: after a seek mpg123 rounds some floats 1 ulp
            sf.SoundFile.seek(f, 0)  # apart, and load_audio keeps the bits it has always given
    except AudioError:
        f.close()
        raise
    except _SOUNDFILE_ERRORS as exc:
        f.close()
        raise _unreadable(where, exc) from None
    return f


def _read(source, where: str, size: int) -> tuple[np.ndarray, int]:
    """All of `source` as float32 (S, C) and its sample rate, bit for bit what sf.read gives where it reads the file,
    but read in blocks so that the memory taken follows what decodes, not what the header declares."""
    with _open(source, where, size) as f:
        frames = max(1, _READ_SAMPLES // f.channels)
        blocks: list[np.ndarray] = []
        # until a short read: the end, as sf.read's one read took it (mpg123 stops short at a damaged frame)
        while not blocks or len(blocks[-1]) == frames:
            try:
                blocks.append(f.read(frames, dtype="float32", always_2d=True))
            except _SOUNDFILE_ERRORS as exc:
                raise _unreadable(where, exc) from None
        return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), f.samplerate


def length_tolerance(num_samples: int) -> int:
    """How far a decoded length may be from the manifest's and still be the same recording: resampling rounds by a
    sample or two, and a compressed file's header may count its codec padding; a replaced file is further off."""
    return max(16, num_samples // 100)


def length_mismatch(decoded: int, listed: int, where: str, listed_by: str = "the manifest",
                    source: str | Path | None = None) -> str | None:
    """What is wrong with `decoded` samples from `where` whose entry (`listed_by`: "its .json" for a shard's member)
    lists `listed`: None within `length_tolerance`. On a mismatch `source`, the file decoded, is asked its rate and
    channels, to say which slip its entry made."""
    if abs(decoded - listed) > length_tolerance(listed):
        header = _rate_and_channels(source) if source is not None else None
        return f"{where}: decoded {decoded} samples, {listed_by} says {listed}{_length_hint(decoded, listed, header)}"
    return None


# rates recordings come at: a length counted at one of them instead of at SAMPLE_RATE is a common slip
_FILE_RATES = (8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000)


def _length_hint(decoded: int, listed: int, header: tuple[int, int] | None) -> str:
    """' (...)' when `listed` is the `decoded` length (mono, at SAMPLE_RATE) counted over all of a file's channels
    (frames x channels, at its rate or at SAMPLE_RATE: `header`, its (rate, channels), says), or at a usual file
    rate instead: a 16 kHz stereo file's length twice over is its two channels, not a count at 32 kHz."""
    def fits(rate: int, channels: int = 1) -> bool:
        return listed > 0 and abs(decoded * rate / SAMPLE_RATE * channels - listed) <= length_tolerance(listed)

    if header is not None and header[1] > 1:
        rate, channels = header
        # its frames at its own rate (channels not counted) before a count at SAMPLE_RATE times its channels: a
        # 32 kHz stereo file's frames are its length twice over too, and the frames are the likelier slip
        for counted_at, times in dict.fromkeys([(rate, channels), (rate, 1), (SAMPLE_RATE, channels)]):
            if fits(counted_at, times):
                if times == 1:
                    return f" (its length at {rate} Hz: num_samples counts samples at {SAMPLE_RATE} Hz)"
                at = "" if counted_at == SAMPLE_RATE else f" at {counted_at} Hz"
                return f" (its length{at} times its {channels} channels: num_samples counts samples of the mono " \
                       f"mix at {SAMPLE_RATE} Hz)"
    for rate in _FILE_RATES:
        if fits(rate):
            return f" (its length at {rate} Hz: num_samples counts samples at {SAMPLE_RATE} Hz)"
    return ""


def _rate_and_channels(source: str | Path) -> tuple[int, int] | None:
    """The sample rate and channel count `source`'s header declares; None if it cannot be read now."""
    try:
        with sf.SoundFile(_os_path(Path(source))) as f:
            return f.samplerate, f.channels
    except (*_SOUNDFILE_ERRORS, OSError):
        return None


def checked_length(x: np.ndarray, listed: int, where: str, listed_by: str = "the manifest",
                   source: str | Path | None = None) -> np.ndarray:
    """`x`, decoded from `where` (the file `source`, if given), if its length passes `length_mismatch`, cut to
    `listed` when longer (batches are packed, and filters judged, by that length: a batch stays within max_tokens);
    AudioError otherwise."""
    wrong = length_mismatch(len(x), listed, where, listed_by, source)
    if wrong is not None:
        raise AudioError(wrong)
    return x[:listed]


def load_audio(path: str | Path, *, sample_rate: int = SAMPLE_RATE, normalize: bool = False) -> np.ndarray:
    """Read `path`, mix to mono, resample to `sample_rate`: float32 (S,). AudioError if unusable."""
    path = Path(path)
    size = _check_file(path)
    x = to_mono(*_read(_os_path(path), str(path), size), str(path), sample_rate=sample_rate)
    return normalize_waveform(x) if normalize else x


def audio_blocks(path: str | Path, block_seconds: float, *, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """`path` as load_audio reads it, about `block_seconds` at a time: mono float32 (S,) blocks at `sample_rate`
    that join to load_audio's array bit for bit (soxr's streaming resampler gives what its one-shot call does).
    One block is held however long the file. The file is opened now (AudioError if missing or unreadable); a
    NaN, or nothing to read, is an AudioError when the reading reaches it."""
    path = Path(path)
    f = _open(_os_path(path), str(path), _check_file(path))
    return _blocks(f, str(path), max(1, round(block_seconds * f.samplerate)), sample_rate)


def _blocks(f: _SoundFile, where: str, frames: int, sample_rate: int) -> Iterator[np.ndarray]:
    rate = f.samplerate
    # soxr's resampler keeps its filter's history between calls; the last call flushes what it still holds
    resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
    read = made = 0
    with f:
        while True:
            try:
                data = f.read(frames, dtype="float32", always_2d=True)
            except _SOUNDFILE_ERRORS as exc:
                raise _unreadable(where, exc) from None
            if data.shape[0] == 0:
                break
            read += data.shape[0]
            x = _mix(data, where)
            if resampler is not None:
                x = resampler.resample_chunk(np.ascontiguousarray(x))
            made += len(x)
            if len(x):
                yield np.ascontiguousarray(x, dtype=np.float32)
    if read == 0:
        raise AudioError(f"{where}: empty audio (0 samples)")
    if resampler is not None:
        x = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        made += len(x)
        if len(x):
            yield x.astype(np.float32, copy=False)
    if made == 0:  # as to_mono: e.g. one sample at 44.1 kHz
        raise AudioError(f"{where}: empty audio ({read} sample(s) at {rate} Hz, none at {sample_rate} Hz)")


def decode_audio(data: bytes, where: str, *, sample_rate: int = SAMPLE_RATE, normalize: bool = False) -> np.ndarray:
    """An encoded file's bytes (wav, flac, ogg, mp3; e.g. a shard's FLAC member) -> mono float32 (S,) at
    `sample_rate`, zero mean and unit variance if `normalize`; AudioError naming `where`."""
    x = to_mono(*_read(io.BytesIO(data), where, len(data)), where, sample_rate=sample_rate)
    return normalize_waveform(x) if normalize else x


def audio_num_samples(path: str | Path, *, sample_rate: int = SAMPLE_RATE) -> int:
    """Length of `path` in samples at `sample_rate`, from the header (exact for wav/flac, close for mp3)."""
    path = Path(path)
    size = _check_file(path)
    try:
        info = sf.info(_os_path(path))
    except _SOUNDFILE_ERRORS as exc:  # the same as load_audio: a file one refuses, the other must not crash on
        raise _unreadable(str(path), exc) from None
    _check_header(info.frames, info.samplerate, size, str(path))  # nor list a damaged header's length
    n = int(round(info.frames * sample_rate / info.samplerate)) if info.frames > 0 else 0
    if n <= 0:
        raise AudioError(f"{path}: empty audio ({max(info.frames, 0)} sample(s) at {info.samplerate} Hz)")
    return n
