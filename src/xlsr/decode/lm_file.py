"""KenLM model files as the decoder is handed them: what kind a file is, and the checks of its header that keep a
corrupt or truncated model from crashing or hanging the process inside KenLM's C++ reader (which trusts the header)."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np

from xlsr.decode.lm import MAX_ORDER
from xlsr.errors import XlsrError

# KenLM binary files start with this magic; ARPA files with a \data\ line.
_KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"
# A KenLM binary's header (format version 5): the magic padded to 56 bytes, then the floats 0, 1 and -0.5 that
# check the writer's byte order, ...; at byte 88 the order (uint8), at 92 the probing tables' space multiplier
# (float32), at 96 the data structure (int32: 0 probing, 1 probing with rest costs, 2 to 5 tries), at 100 whether the
# words follow the tables (bool); the n-gram counts (uint64, unigrams first) start at byte 108. The tables start at the
# next multiple of 8 after the counts.
_KENLM_SANITY = (56, struct.pack("<fff", 0.0, 1.0, -0.5))
_KENLM_PARAMS = (88, "<B3xfi?")  # order, probing multiplier, data structure, has words
_KENLM_COUNTS_AT = 108
_KENLM_PROBING, _KENLM_PROBING_KINDS, _KENLM_TRIES = 0, (0, 1), range(2, 6)
# An ARPA header's `ngram N=count` lines come within its first lines (at most MAX_ORDER of them, and blank lines).
_ARPA_HEADER_LINES = 32
_VOCAB_ENTRIES_PER_READ = 1 << 20  # 12 MiB at a time


def check_lm_file(path: str | Path) -> Path:
    """Raise a one-line XlsrError unless `path` looks like a KenLM ARPA or binary model whose header KenLM can act on.

    KenLM trusts a model's header: a negative or inflated n-gram count, an order of 0 or counts that do not match the
    tables crash or hang the process, or make it allocate memory for n-grams the file does not hold. The header is
    checked here first (a few bytes: a model may be gigabytes); the rest is left to KenLM, which raises."""
    path = Path(path)
    if path.is_dir():
        raise XlsrError(f"{path}: is a folder, not a language model file")
    if not path.is_file():
        raise XlsrError(f"{path}: no such language model file")
    if is_kenlm_binary(path):
        _check_kenlm_binary_header(path)
        return path
    with open(path, "rb") as f:
        text = f.read(4096).decode("utf-8", errors="replace").lstrip()
    if not text.startswith("\\data\\"):
        first = text.splitlines()[0][:40] if text else "<empty>"
        raise XlsrError(f"{path}: not a KenLM ARPA or binary language model (starts with {first!r})")
    _check_arpa_counts(path)
    return path


def _check_arpa_counts(path: Path) -> None:
    """Refuse an ARPA header with a negative `ngram N=count` (KenLM crashes on it) or with more n-grams than the file
    can hold (KenLM allocates memory for all of them before reading one): an n-gram line takes at least 2N + 2 bytes,
    a one-character log-probability, N one-character words, their separators and the newline."""
    counts: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for _ in range(_ARPA_HEADER_LINES):
            line = f.readline(256).strip()  # bounded: a file of one huge line is no ARPA header
            if line.startswith("\\1-grams:"):
                break
            count = re.fullmatch(r"ngram\s+(\d+)\s*=\s*([-+]?\d+)", line)
            if count:
                counts[int(count[1])] = int(count[2])
    header = ", ".join(f"ngram {n}={c}" for n, c in counts.items())
    if any(c < 0 for c in counts.values()):
        raise XlsrError(f"{path}: its header gives a negative n-gram count ({header})")
    size = path.stat().st_size
    if sum(c * (2 * n + 2) for n, c in counts.items()) > size:
        raise XlsrError(f"{path}: its header counts more n-grams ({header}) than its {size:,} bytes can hold: the file "
                        "is truncated or its counts are wrong")


def _check_kenlm_binary_header(path: Path) -> None:
    """Refuse a KenLM binary whose header is cut short, or whose order, counts or multiplier KenLM would crash or hang
    on, or (for the probing structure `xlsr lm build` writes) whose counts do not match the layout of its tables."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_KENLM_COUNTS_AT + 8 * MAX_ORDER)
    at, sanity = _KENLM_SANITY
    if len(head) < _KENLM_COUNTS_AT:
        raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes, less than its header); build it again")
    if head[at: at + len(sanity)] != sanity:
        return  # written on a machine of another byte order or by another KenLM version: KenLM's message says so
    order, multiplier, structure, has_words = struct.unpack_from(_KENLM_PARAMS[1], head, _KENLM_PARAMS[0])
    if not 2 <= order <= MAX_ORDER:
        raise XlsrError(f"{path}: its header gives order {order}; the decoder reads KenLM binaries of order 2 to "
                        f"{MAX_ORDER} (build it again with xlsr lm build)")
    tables_at = _align8(_KENLM_COUNTS_AT + 8 * order)
    if size < tables_at:
        raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes, less than its header); build it again")
    counts = struct.unpack_from(f"<{order}Q", head, _KENLM_COUNTS_AT)
    # every n-gram takes at least a bit in any of KenLM's structures; larger counts also overflow its size arithmetic
    if counts[0] == 0 or sum(counts) > 8 * size:
        raise XlsrError(f"{path}: a corrupt KenLM binary (its header's n-gram counts {', '.join(map(str, counts))} "
                        f"do not fit in its {size:,} bytes); build it again")
    if structure in _KENLM_PROBING_KINDS and not (math.isfinite(multiplier) and multiplier >= 1.0):
        raise XlsrError(f"{path}: a corrupt KenLM binary (its header gives a hash table multiplier of {multiplier}, "
                        "not a number >= 1); build it again")
    if structure == _KENLM_PROBING:
        _check_probing_tables(path, size, tables_at, counts, multiplier, has_words)
    elif structure in _KENLM_TRIES:
        # the sorted vocabulary starts with its number of words (all but <unk>), which KenLM reads as is
        words = _read_at(path, tables_at, 8)
        if len(words) < 8:
            raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes, its tables missing); build it again")
        if struct.unpack("<Q", words)[0] > counts[0]:
            raise XlsrError(f"{path}: a corrupt KenLM binary (its vocabulary holds more words than its header's "
                            f"{counts[0]:,} unigrams); build it again")


def _check_probing_tables(path: Path, size: int, tables_at: int, counts: tuple[int, ...], multiplier: float,
                          has_words: bool) -> None:
    """Refuse a KenLM probing binary whose tables, as its header sizes them, do not end where its words start, or
    whose vocabulary maps a word past the unigrams (KenLM reads that row unchecked, out of its memory).

    The tables: the vocabulary's hash table (an 8-byte header, then 12-byte entries: word hash, unigram row), the
    unigrams (8 bytes each, and one for <unk>), the middle orders' hash tables (16-byte entries) and the highest
    order's (12-byte entries). Only the vocabulary's table is read: a small part of the model."""
    vocab_buckets = _probing_buckets(counts[0], multiplier)
    middle = sum(_probing_buckets(c, multiplier) * 16 for c in counts[1:-1])
    end = (tables_at + 8 + vocab_buckets * 12 + (counts[0] + 1) * 8 + middle
           + _probing_buckets(counts[-1], multiplier) * 12)
    if size < end:
        raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes; its header says its tables take "
                        f"{end:,}); build it again")
    # the words follow the tables, <unk> first (KenLM checks it too, but after a lookup that never ends in a table
    # too small for its words)
    if has_words and _read_at(path, end, 6) != b"<unk>\0":
        raise XlsrError(f"{path}: a corrupt KenLM binary (its header's n-gram counts do not match its tables); "
                        "build it again")
    entry = np.dtype([("hash", "<u8"), ("row", "<u4")])  # packed: 12 bytes
    with open(path, "rb") as f:
        f.seek(tables_at + 8)
        for start in range(0, vocab_buckets, _VOCAB_ENTRIES_PER_READ):
            rows = np.frombuffer(f.read(entry.itemsize * min(_VOCAB_ENTRIES_PER_READ, vocab_buckets - start)),
                                 dtype=entry)["row"]
            if rows.size and int(rows.max()) >= counts[0]:
                raise XlsrError(f"{path}: a corrupt KenLM binary (its vocabulary points past its {counts[0]:,} "
                                "unigrams); build it again")


def _probing_buckets(n: int, multiplier: float) -> int:
    """Buckets of a KenLM hash table of n entries: max(n + 1, multiplier x n), computed in float32 as KenLM does."""
    if multiplier * n >= 2.0**64:  # beyond float32 and KenLM's uint64 bucket count: larger than any file
        return 2**64
    return max(n + 1, int(_float32(_float32(multiplier) * _float32(float(n)))))


def _float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def _read_at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def is_kenlm_binary(path: str | Path) -> bool:
    """Whether `path` is a KenLM binary (else ARPA text)."""
    with open(path, "rb") as f:
        return f.read(len(_KENLM_BINARY_MAGIC)) == _KENLM_BINARY_MAGIC


def kenlm_binary_unigram_count(path: str | Path) -> int | None:
    """The number of words (1-grams) a KenLM binary's header gives; None where the header is not the layout
    (format version 5, little-endian) this reads."""
    with open(path, "rb") as f:
        head = f.read(_KENLM_COUNTS_AT + 8)
    at, sanity = _KENLM_SANITY
    if len(head) < _KENLM_COUNTS_AT + 8 or head[at: at + len(sanity)] != sanity:
        return None
    return struct.unpack_from("<Q", head, _KENLM_COUNTS_AT)[0]


def arpa_unigrams(path: str | Path) -> set[str] | None:
    """The words of an ARPA file's 1-gram section (None for a binary model)."""
    path = Path(path)
    if is_kenlm_binary(path):
        return None
    words: set[str] = set()
    in_unigrams = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams:
                if line.startswith("\\"):
                    break
                parts = line.split("\t") if "\t" in line else line.split()
                if len(parts) >= 2:
                    words.add(parts[1].strip())
    return words
