"""In-process espeak-ng (the library bundled by espeakng-loader), driven through ctypes.

The library keeps global state and is not thread-safe: use one `Espeak` per process (`engine()`),
which is how the synthesis workers run. What it would carry from one utterance to the next is reset before
each one (`espeak_state`), so an utterance sounds the same whatever this process rendered before it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from xlsr.data.synth.espeak_state import carried_state
from xlsr.errors import XlsrError

ESPEAK_SAMPLE_RATE = 22050

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
_PHONEMES_IPA = 0x02
_SEPARATOR = "_"  # between phonemes of a word; words stay separated by spaces

# Voice variants we synthesize with: espeak's m1-m7 and f1-f5 without flutter, roughness, echo and breath. These
# keep state across utterances inside the library (same text, different samples on each call), which
# would make the corpus depend on how utterances were spread over workers.
VARIANTS = [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 6)]
VARIANT_PREFIX = "xlsr_"
# Further voices for many speakers: each variant with its formants scaled (a shorter or longer vocal tract,
# ±12%) and with espeak's Klatt synthesizer (mode 3) as well as
# its default one. Measured on a sustained /a/: F1-F3 move with the scale under both synthesizers.
TRACT_SCALES = (0.88, 0.94, 1.0, 1.06, 1.12)
SYNTHESIZERS = ("formant", "klatt")


def variant_name(variant: str, tract: float | None = None, synthesizer: str = "formant") -> str:
    """Our variant file for an espeak variant, optionally with scaled formants and/or the Klatt synthesizer."""
    if tract is None:
        return f"{VARIANT_PREFIX}{variant}"  # the original 12 voices (corpora made before the varied voices)
    return f"{VARIANT_PREFIX}{variant}_t{round(tract * 100):03d}" + ("_k" if synthesizer == "klatt" else "")


def _variant_text(lines: list[str], tract: float | None, synthesizer: str) -> str:
    """A variant file without the stateful effects; formant frequencies × `tract`; Klatt mode 3 if asked."""
    stateful = ("flutter", "roughness", "echo", "breath", "breathw")
    kept = [line for line in lines if not line.split() or line.split()[0] not in stateful]
    if tract is not None:
        scaled, seen = [], set()
        for line in kept:
            words = line.split()
            if words and words[0] == "formant" and len(words) >= 3:  # formant N freq% height% width%
                seen.add(words[1])
                words[2] = str(round(int(words[2]) * tract))
                line = " ".join(words)
            scaled.append(line)
        kept = scaled + [f"formant {n} {round(100 * tract)} 100 100" for n in range(9) if str(n) not in seen]
        if synthesizer == "klatt":
            kept.append("klatt 3")
    return "\n".join(kept + ["flutter 0", "roughness 0", "echo 0 0", ""])

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


STALE_DAYS = 30


def prune_stale_overlays(cache: Path, days: float = STALE_DAYS) -> list[Path]:
    """Remove the overlays no process has used for `days` (another espeak-ng or xlsr version's; each is kept while
    any environment sharing the cache still uses it, since every use touches its stamp) and build folders left
    by a killed build. A removed overlay that is wanted again is simply rebuilt. Returns what was removed."""
    cutoff, removed = time.time() - days * 86400, []
    for folder in cache.glob("espeak-ng-data[-.]*"):
        marker = folder / "xlsr.stamp" if (folder / "xlsr.stamp").is_file() else folder
        try:
            stale = marker.stat().st_mtime < cutoff
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def deterministic_data_dir(data: str) -> str:
    """espeak-ng's data folder with our stateless variants instead of its own: a cached overlay of symlinks + files."""
    cache = Path(os.environ.get("XLSR_CACHE", Path.home() / ".cache" / "xlsr"))
    source = Path(data)
    stamp = f"{source.resolve()}:{sorted(VARIANTS)}:{TRACT_SCALES}:{SYNTHESIZERS}:ours only:flutter,roughness,echo,breath"
    # One folder per stamp, never replaced: a process of another version or another environment (a second venv
    # sharing the cache) may be reading its own folder at this moment, and the first build of a stamp may race
    # with another process's (two `xlsr synth` started together): each builds aside, the first rename wins.
    target = cache / f"espeak-ng-data-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"
    if (target / "xlsr.stamp").is_file() and (target / "xlsr.stamp").read_text() == stamp:
        os.utime(target / "xlsr.stamp")  # in use: see prune_stale_overlays
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    prune_stale_overlays(cache)
    build = Path(tempfile.mkdtemp(prefix="espeak-ng-data.", dir=cache))
    for entry in source.iterdir():
        if entry.name != "voices":
            (build / entry.name).symlink_to(entry.resolve())
    (build / "voices" / "!v").mkdir(parents=True)
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            (build / "voices" / entry.name).symlink_to(entry.resolve())
    # Only our variants in voices/!v: espeak-ng lists at most 350 voices (N_VOICES_LIST), and its 141 languages
    # plus its own 104 variants plus our 132 would push languages (e.g. 'hi') off that list.
    for name in VARIANTS:
        lines = (source / "voices" / "!v" / name).read_text(encoding="utf-8").splitlines()
        voices = [(None, "formant")] + [(t, synth) for t in TRACT_SCALES for synth in SYNTHESIZERS]
        for tract, synth in voices:
            (build / "voices" / "!v" / variant_name(name, tract, synth)).write_text(
                _variant_text(lines, tract, synth), encoding="utf-8")
    (build / "xlsr.stamp").write_text(stamp)
    try:
        build.rename(target)  # atomic; fails when the folder exists (another process won the race)
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
        if not (target / "xlsr.stamp").is_file() or (target / "xlsr.stamp").read_text() != stamp:
            raise XlsrError(f"{target}: not an espeak-ng data folder of this version; remove it and retry") from None
    return str(target)


def espeak_library() -> tuple[ctypes.CDLL, str, str]:
    """The espeak-ng library espeakng-loader bundles, loaded but not initialised: (library, its path, its data
    folder); one XlsrError line when it is missing or does not load."""
    try:  # here, not at the top: a missing library is then one XlsrError line, not an import error of xlsr
        import espeakng_loader
    except ImportError as exc:  # a declared dependency, but an environment can lack it
        raise XlsrError("espeakng-loader is not installed: pip install espeakng-loader") from exc
    path = espeakng_loader.get_library_path()
    try:
        data = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(path)
    except (OSError, RuntimeError) as exc:
        raise XlsrError(f"espeak-ng (espeakng-loader) is not usable: {exc}; reinstall it: "
                        f"pip install --force-reinstall espeakng-loader") from exc
    return lib, path, data


def require_espeak() -> None:
    """One XlsrError line unless espeak-ng can be loaded: a check in milliseconds, for callers (the demo) that must
    refuse before they remove or write anything, not when synthesis starts."""
    espeak_library()


class Espeak:
    """One espeak-ng instance: choose a voice, synthesize 22.05 kHz int16 audio, phonemize text."""

    def __init__(self) -> None:
        lib, path, data_path = espeak_library()
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        data = deterministic_data_dir(data_path)
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), _INITIALIZE_DONT_EXIT)
        if rate != ESPEAK_SAMPLE_RATE:
            raise XlsrError(f"espeak-ng: initialisation failed (sample rate {rate}, data {data})")
        self._lib = lib
        self._state = carried_state(lib, path)
        self._chunks: list[bytes] = []
        # Keep a reference to the ctypes callback: if it were collected, espeak would call freed memory.
        self._callback = _CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _collect(self, wav, num_samples, events) -> int:
        # ~60 calls an utterance: raw bytes, one array at the end (np.ctypeslib.as_array per call cost ~15%
        # of the synthesis)
        if num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * ctypes.sizeof(ctypes.c_short)))
        return 0  # 0 = go on

    def set_voice(self, name: str) -> None:
        """Select a voice such as `de` or `de+f2`; raises XlsrError if espeak-ng does not know it."""
        if name != self._voice:
            if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise XlsrError(f"espeak-ng: unknown voice {name!r}")
            self._voice = name

    def set_prosody(self, *, rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> None:
        """Words per minute (80-450), base pitch and pitch range (0-100)."""
        for key, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range)):
            self._lib.espeak_SetParameter(_PARAM[key], int(value), 0)

    def synthesize(self, text: str, seed: int = 0) -> np.ndarray:
        """Speak `text` with the current voice: int16 samples at 22.05 kHz, the same for the same seed."""
        self._chunks = []
        self._state.reset()  # as in a fresh library, whatever this process rendered before
        self._lib.espeak_ng_SetRandSeed(seed)  # in case a voice draws noise from rand()
        data = text.encode()
        err = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise XlsrError(f"espeak-ng: synthesis failed with code {err} for text {text[:40]!r}")
        chunks, self._chunks = self._chunks, []
        return np.frombuffer(b"".join(chunks), dtype=np.int16).copy()  # writable, as callers may expect

    def phonemize(self, text: str, *, ipa: bool = True) -> str:
        """espeak's phonemes for `text` with the current voice: phonemes joined by `_`, words by spaces."""
        if self._voice is None:
            raise XlsrError("espeak-ng: set a voice before phonemizing")  # espeak crashes otherwise
        mode = (_PHONEMES_IPA if ipa else 0) | (ord(_SEPARATOR) << 8)
        pointer = ctypes.c_char_p(text.encode())
        clauses = []
        # espeak phonemizes one clause per call and advances the pointer; NULL at the end.
        while pointer.value:
            out = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, mode)
            if out:
                clauses.append(out.decode())
        return " ".join(clauses)


_ENGINE: Espeak | None = None


def engine() -> Espeak:
    """This process's espeak-ng instance, created on first use."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    return _ENGINE
