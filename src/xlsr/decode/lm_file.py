"""KenLM model files as the decoder is handed them: what kind a file is, and the checks of its header that keep a
corrupt or truncated model from crashing or hanging the process inside KenLM's C++ reader (which trusts the header)."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import NamedTuple

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
# The tries: 2 plain, 3 with quantized weights, 4 with array-compressed pointers, 5 with both (build_binary -q, -a).
_TRIE_QUANTIZED, _TRIE_ARRAY_POINTERS = (3, 5), (4, 5)
_QUANT_VERSION, _MAX_QUANT_BITS, _ARRAY_POINTERS_VERSION = 2, 25, 0
# Unquantized, a middle order's weights take 63 bits (a probability's 31, its sign implied, and a backoff's 32) and
# the highest order's 31.
_MIDDLE_WEIGHT_BITS, _LONGEST_WEIGHT_BITS = 63, 31
_TRIE_UNIGRAM = np.dtype([("weights", "<f4", 2), ("index", "<u8")])  # probability, backoff; its first bigram
_POINTER_TABLE_ENTRY = np.dtype([("index", "<u8")])  # the first entry whose pointer has these high bits
# build_binary's default (-a 22) writes tables of at most 2^22 + 1 entries (32 MiB); a larger one is checked at its ends
_MAX_POINTER_TABLE = (1 << 22) + 1
# An ARPA header's `ngram N=count` lines come within its first lines (at most MAX_ORDER of them, and blank lines).
_ARPA_HEADER_LINES = 32
_VOCAB_ENTRIES_PER_READ = 1 << 20  # 12 MiB at a time


def check_lm_file(path: str | Path) -> Path:
    """Raise a one-line XlsrError unless `path` looks like a KenLM ARPA or binary model whose header KenLM can act on.

    KenLM trusts a model's header: a negative or inflated n-gram count, an order of 0 or counts that do not match the
    tables crash or hang the process, or make it allocate memory for n-grams the file does not hold; so do some of a
    binary's tables (its vocabulary, a trie's pointers). The header and those are checked here first, reading a part
    of the file that grows with the vocabulary, not with the n-grams (a model may be gigabytes); the rest is left to
    KenLM, which raises."""
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
    on, or whose counts do not match the layout of its tables (the probing structure `xlsr lm build` writes, and the
    tries of `build_binary trie`)."""
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
        _check_trie_tables(path, size, tables_at, counts, structure, has_words)


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


class _TrieMiddle(NamedTuple):
    """Where a KenLM trie's middle order (its n-grams for 1 < n < order) lies in the file: a bit-packed array of
    entries (word, weights, pointer to the first of its children in the next order), one more entry holding the
    end of the last one's children, and for array-compressed pointers a table of their high bits before it."""
    table_at: int      # the table of pointers' high bits (uint64 each); with `table_entries` 0, pointers are whole
    table_entries: int
    entries_at: int
    entry_bits: int    # word, weights and pointer (its low bits)
    pointer_at: int    # the pointer's first bit in its entry
    pointer_bits: int  # the bits it keeps in the entry
    end: int


def _check_trie_tables(path: Path, size: int, tables_at: int, counts: tuple[int, ...], structure: int,
                       has_words: bool) -> None:
    """Refuse a KenLM trie binary whose tables, as its header sizes them, do not end where its words start, or whose
    pointers (unigram to bigrams, n-gram to (n+1)-grams) do not start at 0, run in order and end at the count of the
    order they point into: KenLM follows them unchecked, and one out of order sends its search through memory that
    is not there.

    The tables: the sorted vocabulary (its number of words, then 8 bytes a word), the quantization bins (-q), the
    unigrams (16 bytes each, and two more), then a bit-packed array per higher order. Read: a few bytes of each
    array, the unigrams' pointers and the compressed pointers' tables (a small part of the model); the pointers
    inside a bit-packed array, but for its first and last, are not (that would read all the n-grams)."""
    order, quantized = len(counts), structure in _TRIE_QUANTIZED
    vocab_at = tables_at
    quant_at = vocab_at + 8 + 8 * counts[0]
    middle_weight_bits, longest_weight_bits, quant_size = _MIDDLE_WEIGHT_BITS, _LONGEST_WEIGHT_BITS, 0
    if quantized:
        quant = _read_at(path, quant_at, 3)
        if len(quant) < 3:
            raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes, its tables missing); build it again")
        version, prob_bits, backoff_bits = quant
        if version != _QUANT_VERSION or not (1 <= prob_bits <= _MAX_QUANT_BITS and
                                             1 <= backoff_bits <= _MAX_QUANT_BITS):
            raise XlsrError(f"{path}: a corrupt KenLM binary (its quantization header gives version {version}, "
                            f"{prob_bits} probability and {backoff_bits} backoff bits; KenLM writes version "
                            f"{_QUANT_VERSION} and 1 to {_MAX_QUANT_BITS} bits); build it again")
        middle_weight_bits, longest_weight_bits = prob_bits + backoff_bits, prob_bits
        quant_size = (order - 2) * (4 << backoff_bits) + (order - 1) * (4 << prob_bits) + 8
    unigrams_at = quant_at + quant_size
    at = unigrams_at + _TRIE_UNIGRAM.itemsize * (counts[0] + 2)  # one more for <unk>, one for the end of the last
    chop_limit = None  # pointers kept whole
    if structure in _TRIE_ARRAY_POINTERS and order > 2:  # KenLM reads the first middle order's header
        header = _read_at(path, at, 2)
        if len(header) < 2:
            raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes, its tables missing); build it again")
        version, chop_limit = header
        if version != _ARRAY_POINTERS_VERSION:
            raise XlsrError(f"{path}: a corrupt KenLM binary (its pointer compression header gives version "
                            f"{version}; KenLM writes {_ARRAY_POINTERS_VERSION}); build it again")
    middles = []
    for n in range(2, order):
        middles.append(_trie_middle(at, counts[n - 1], counts[0], counts[n], middle_weight_bits, chop_limit))
        at = middles[-1].end
    end = at + ((counts[-1] + 1) * (counts[0].bit_length() + longest_weight_bits) + 7) // 8 + 8
    if size < end:
        raise XlsrError(f"{path}: a truncated KenLM binary ({size:,} bytes; its header says its tables take "
                        f"{end:,}); build it again")
    # the vocabulary starts with its number of words (all but <unk>, which the header's unigrams count)
    words = struct.unpack("<Q", _read_at(path, vocab_at, 8))[0]
    if words >= counts[0] or (has_words and _read_at(path, end, 6) != b"<unk>\0"):
        raise XlsrError(f"{path}: a corrupt KenLM binary (its header's n-gram counts do not match its tables); "
                        "build it again")
    pointers = _nondecreasing_ends(path, unigrams_at, counts[0] + 1, _TRIE_UNIGRAM)
    if pointers != (0, counts[1]):
        raise XlsrError(f"{path}: a corrupt KenLM binary (its unigrams' pointers do not run in order through its "
                        f"{counts[1]:,} bigrams); build it again")
    for n, middle in enumerate(middles, start=2):
        if not _middle_pointers_span_children(path, middle, counts[n - 1], counts[n]):
            raise XlsrError(f"{path}: a corrupt KenLM binary (its {n}-grams' pointers do not run in order through "
                            f"its {counts[n]:,} {n + 1}-grams); build it again")


def _trie_middle(at: int, entries: int, vocab: int, children: int, weight_bits: int,
                 chop_limit: int | None) -> _TrieMiddle:
    """The layout of a trie's middle order of `entries` n-grams at byte `at`, pointing into `children` (n+1)-grams;
    `chop_limit`: the header's limit on a pointer's bits moved to the table of high bits (None: not compressed).

    As KenLM sizes it (lm/bhiksha.cc): compression moves the `chop` high bits of every pointer that save the most
    (bits saved in every entry, less 64 bits a table entry) into a table with an entry (uint64) for each value of
    them and one more: the first entry whose pointer has that value. The table follows a header of 8 bytes, 8-byte
    aligned (7 bytes kept for that)."""
    required = children.bit_length()
    table_at = table_entries = table_size = chop = 0
    if chop_limit is not None:
        chop = min(range(min(required, chop_limit) + 1),
                   key=lambda c: ((children >> (required - c)) * 64 - (entries + 1) * c, c))
        table_entries = (children >> (required - chop)) + 1
        table_at, table_size = _align8(at) + 8, 8 * (1 + table_entries) + 7
    entries_at = at + table_size
    pointer_bits = required - chop
    word_bits = vocab.bit_length()
    entry_bits = word_bits + weight_bits + pointer_bits
    return _TrieMiddle(table_at, table_entries, entries_at, entry_bits, word_bits + weight_bits, pointer_bits,
                       entries_at + ((entries + 1) * entry_bits + 7) // 8 + 8)


def _middle_pointers_span_children(path: Path, middle: _TrieMiddle, entries: int, children: int) -> bool:
    """Whether a middle order's first entry points to child 0 and its last (the end of the one before) to `children`,
    and its table of pointers' high bits, if any, starts at entry 0 and runs in order to at most `entries`."""
    high_first = high_last = 0
    if middle.table_entries:
        table_at, n = middle.table_at, middle.table_entries
        if n <= _MAX_POINTER_TABLE:
            ends = _nondecreasing_ends(path, table_at, n, _POINTER_TABLE_ENTRY)
        else:
            ends = _read_u64(path, table_at), _read_u64(path, table_at + 8 * (n - 1))
        if ends is None or ends[0] != 0 or ends[1] > entries:
            return False
        # the high bits of entry p's pointer: the last place in the table that holds p or less
        high_first = 0 if n == 1 or _read_u64(path, table_at + 8) > 0 else 1
        high_last = n - 1
    first = high_first << middle.pointer_bits | _read_bits(path, middle.entries_at, middle.pointer_at,
                                                            middle.pointer_bits)
    last = high_last << middle.pointer_bits | _read_bits(path, middle.entries_at,
                                                          entries * middle.entry_bits + middle.pointer_at,
                                                          middle.pointer_bits)
    return first == 0 and last == children


def _nondecreasing_ends(path: Path, at: int, n: int, record: np.dtype) -> tuple[int, int] | None:
    """The first and last `index` of n records from byte `at` (read in parts), or None where they decrease."""
    first = previous = None
    with open(path, "rb") as f:
        f.seek(at)
        for start in range(0, n, _VOCAB_ENTRIES_PER_READ):
            values = np.frombuffer(f.read(record.itemsize * min(_VOCAB_ENTRIES_PER_READ, n - start)),
                                   dtype=record)["index"]
            if values.size == 0 or (previous is not None and values[0] < previous) or np.any(values[1:] < values[:-1]):
                return None
            first = int(values[0]) if first is None else first
            previous = values[-1]
    return None if first is None else (first, int(previous))


def _read_bits(path: Path, base: int, bit: int, length: int) -> int:
    """`length` (at most 57) bits at bit `bit` from byte `base`, packed as KenLM packs them (little-endian)."""
    return (_read_u64(path, base + bit // 8) >> (bit % 8)) & ((1 << length) - 1)


def _read_u64(path: Path, offset: int) -> int:
    return int.from_bytes(_read_at(path, offset, 8).ljust(8, b"\0"), "little")


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
