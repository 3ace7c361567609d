"""The state espeak-ng carries from one utterance to the next, and its reset to the values of a fresh library.

espeak-ng keeps a few static variables in its synthesizers that nothing resets between utterances (not even
`espeak_Initialize`), so an utterance could sound different after another one: in a corpus, the audio would
depend on which worker rendered which utterances. Found by comparing the library's static variables before an
utterance rendered alone and after others, and putting them back one at a time:

- `cycle_count` (wavegen.c, `Wavegen`): voiced cycles rendered since the library was loaded. Trills
  (modulation 5) lower the amplitude of every 4th cycle of this count, so a trill's pattern shifted with it.
- `wave_flag` (synthesize.c, `DoSpect2`): set when the last spectrum had a sound file mixed in (a voiced
  fricative). The next utterance's first spectrum was then queued as "stop the sound file" which the
  synthesizers do not recognise as a continuation, so the sequence before it ended differently (Klatt:
  64 samples more).
- `vlast` (klatt.c, `parwave`): the memory of the Klatt voicing source's spectral-tilt filter.
- `agc` (wavegen.c, `Wavegen`): the formant synthesizer's gain after an overflow, which recovers only while
  it voices; at espeak's default volume no utterance was found to end below unity (0 of 1230), at volume
  200 some do, and the next utterance then starts quieter.

They are static, not exported: we find them in the library's ELF symbol table, write their initial values
before every utterance (four stores, no measurable cost) and check at start-up that the addresses hold those
values. A library without a symbol table (stripped, or not ELF) cannot be reset: a warning says so.
"""

from __future__ import annotations

import ctypes
import re
import struct
import warnings
from pathlib import Path

# (name in the C source, type, value in a freshly loaded library)
CARRIED = (("cycle_count", ctypes.c_int, 0), ("wave_flag", ctypes.c_int, 0), ("vlast", ctypes.c_double, 0.0),
           ("agc", ctypes.c_int, 256))
_ANCHOR = "espeak_Synth"  # an exported function: its run-time address minus its symbol value is the load base
_SHT_SYMTAB = 2
_STT_OBJECT, _STT_FUNC = 1, 2


def elf_symbols(path: str | Path) -> dict[str, list[tuple[int, int, int]]]:
    """name -> [(type, value, size)] from the .symtab of a 64-bit little-endian ELF file; {} if none or unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return {}
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, list[tuple[int, int, int]]] = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != _SHT_SYMTAB or entsize != 24:
            continue
        strtab_offset = sections[link][4]
        for name_at, info, _, _, value, sym_size in struct.iter_unpack("<IBBHQQ", data[offset:offset + size]):
            end = data.index(b"\0", strtab_offset + name_at)
            out.setdefault(data[strtab_offset + name_at:end].decode(errors="replace"), []).append(
                (info & 0xF, value, sym_size))
    return out


def _find(symbols: dict[str, list[tuple[int, int, int]]], name: str, size: int) -> int | None:
    """The symbol value of static variable `name` of `size` bytes: `name`, or a function's local static as
    compilers name it (gcc `name.1234`, clang `Function.name`); None unless exactly one matches."""
    pattern = re.compile(rf"{name}(\.\d+)?|\w+\.{name}")
    hits = [value for sym, entries in symbols.items() if pattern.fullmatch(sym)
            for kind, value, sym_size in entries if kind == _STT_OBJECT and sym_size == size]
    return hits[0] if len(hits) == 1 else None


_STATES: dict[str, CarriedState] = {}


def carried_state(lib: ctypes.CDLL, path: str) -> CarriedState:
    """The `CarriedState` of the library at `path`, made once per process: its check holds only before use."""
    if path not in _STATES:
        _STATES[path] = CarriedState(lib, path)
    return _STATES[path]


class CarriedState:
    """Resets `CARRIED` in a loaded espeak-ng library; `available` is False where the library cannot be reset."""

    def __init__(self, lib: ctypes.CDLL, path: str | Path) -> None:
        self._cells: list[tuple[ctypes._SimpleCData, float]] = []
        self.available = False
        symbols = elf_symbols(path)
        anchor = [value for kind, value, _ in symbols.get(_ANCHOR, []) if kind == _STT_FUNC]
        if len(anchor) == 1:
            base = ctypes.cast(getattr(lib, _ANCHOR), ctypes.c_void_p).value - anchor[0]
            cells = []
            for name, ctype, value in CARRIED:
                offset = _find(symbols, name, ctypes.sizeof(ctype))
                if offset is None:
                    break
                cells.append((ctype.from_address(base + offset), value))
            else:
                # right after loading, each must hold its initial value: a check that these are the variables
                if all(cell.value == value for cell, value in cells):
                    self._cells, self.available = cells, True
        if not self.available:
            warnings.warn(f"espeak-ng: cannot reset the state the library keeps between utterances ({path}: no "
                          "symbol table or other variables); an utterance may then sound different after another, "
                          "and a corpus made with several workers is not reproducible", RuntimeWarning, stacklevel=3)

    def reset(self) -> None:
        """Put the carried variables back to the values of a freshly loaded library."""
        for cell, value in self._cells:
            cell.value = value
