"""KenLM trie binaries (`build_binary trie`, with -q quantization and -a compressed pointers): corrupt or cut short,
they are one XlsrError line or KenLM's own error, never a crash, hang or huge allocation of the process.

KenLM follows a trie's pointers unchecked, so the corrupt files are loaded in a child process, judged by its exit
status and what it prints. Where each part lies is worked out here from KenLM's source (lm/search_trie.hh,
lm/trie.cc, lm/bhiksha.cc, lm/quantize.hh) for the 3-gram model the tests build."""

import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from decode_fixtures import needs_kenlm

from xlsr.decode.beam import BeamSearchDecoder
from xlsr.decode.lm import build_lm, find_kenlm_tool
from xlsr.decode.lm_file import check_lm_file
from xlsr.text.vocab import Vocabulary

TEXT = ["a b c", "ab ba c", "c a b a", "ab c ba", "a a b c c", "b c a b"]
# build_binary's arguments for the four tries (data structures 2 to 5)
TRIE_KINDS = {"trie": [], "quant": ["-q", "8", "-b", "8"], "array": ["-a", "22"],
              "quant-array": ["-q", "8", "-b", "8", "-a", "22"]}

# A child checks each file, loads it as the decoder does and scores every sequence of up to 3 tokens; it prints one
# line per file: OK, ERROR and the XlsrError, or KENLM and the last line of KenLM's error.
_SCORE_EACH = """
import itertools, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a huge allocation fails instead of swapping
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary
from xlsr.decode.lm_file import check_lm_file
from xlsr.errors import XlsrError
tokens = ["a", "b", "c", "|", "<unk>", "x"]
sequences = [s for n in (1, 2, 3) for s in itertools.product(range(len(tokens)), repeat=n)]
for path in sys.argv[1:]:
    try:
        check_lm_file(path)
        lm = KenLM(path, Dictionary(tokens))
        for sequence in sequences:
            state = lm.start(False)
            for token in sequence:
                state, _ = lm.score(state, token)
            lm.finish(state)
        print("OK", flush=True)
    except XlsrError as exc:
        print("ERROR", exc, flush=True)
    except RuntimeError as exc:
        print("KENLM", str(exc).strip().splitlines()[-1], flush=True)
"""
# The decoder itself, built and run once on each file.
_DECODE_EACH = """
import sys
import torch
from xlsr.decode.beam import BeamSearchDecoder
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary
vocab = Vocabulary.build(["a b c"], kind="chars")
logits = torch.randn(1, 12, len(vocab), generator=torch.Generator().manual_seed(0))
for path in sys.argv[1:]:
    try:
        BeamSearchDecoder(vocab, lm=path).decode(logits)
        print("OK", flush=True)
    except XlsrError as exc:
        print("ERROR", exc, flush=True)
"""


def _run_each_in_a_child(script: str, paths: list[Path]) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True,
                          timeout=120)
    done = len(proc.stdout.splitlines())
    assert proc.returncode == 0, f"the process died (status {proc.returncode}) after {done} files"
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths)  # one line each: no error message of several lines
    return lines


def _build_binary(arpa: Path, out: Path, args: list[str]) -> Path:
    subprocess.run([str(find_kenlm_tool("build_binary")), *args, "trie", str(arpa), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="module")
def tries(tmp_path_factory) -> dict[str, Path]:
    """A chars 3-gram LM as each kind of trie."""
    folder = tmp_path_factory.mktemp("tries")
    text = folder / "text.txt"
    text.write_text("\n".join(TEXT) + "\n")
    arpa = build_lm(text, 3, folder / "chars.arpa", units="chars")
    return {kind: _build_binary(arpa, folder / f"{kind}.bin", args) for kind, args in TRIE_KINDS.items()}


class Layout:
    """Where a 3-gram trie's parts lie: the header (136 bytes), the vocabulary (its size, then a hash a word), the
    quantization bins (-q: version, probability and backoff bits, padding, then the bins), the unigrams (16 bytes:
    weights, then the first of its bigrams; two more than the count), then the bigrams, bit-packed: for -a, a 2-byte
    header and a table of the high bits of their pointers (8-byte aligned, after 8 bytes; one entry for this small
    model), then one entry more than the count (word, weights, pointer to the first of its trigrams), 8 bytes of
    padding; then the trigrams likewise (word, probability), and the words."""

    def __init__(self, data: bytes):
        assert data[88] == 3
        structure = struct.unpack_from("<i", data, 96)[0]
        self.vocab, self.bigrams, self.trigrams = struct.unpack_from("<3Q", data, 108)
        word_bits, self.pointer_bits = self.vocab.bit_length(), self.trigrams.bit_length()
        self.quant = 136 + 8 + 8 * self.vocab
        self.unigrams, prob_bits, backoff_bits = self.quant, 31, 32
        if structure in (3, 5):
            prob_bits, backoff_bits = data[self.quant + 1], data[self.quant + 2]
            self.unigrams += 8 + 4 * (2**backoff_bits + 2 * 2**prob_bits)
        self.middle = self.unigrams + 16 * (self.vocab + 2)
        self.table, self.entries = self.middle, self.middle
        if structure in (4, 5):
            assert self.bigrams + 1 < 64  # a pointer table saves too little here: one entry, the pointers whole
            self.table, self.entries = (self.middle + 7) // 8 * 8 + 8, self.middle + 8 * 2 + 7
        self.entry_bits = word_bits + prob_bits + backoff_bits + self.pointer_bits
        self.longest = self.entries + ((self.bigrams + 1) * self.entry_bits + 7) // 8 + 8
        self.words = self.longest + ((self.trigrams + 1) * (word_bits + prob_bits) + 7) // 8 + 8
        assert data[self.words: self.words + 6] == b"<unk>\0"

    def pointer_bit(self, entry: int) -> int:
        """The first bit (from the file's start) of a bigram's pointer to its trigrams."""
        return self.entries * 8 + (entry + 1) * self.entry_bits - self.pointer_bits

    def bytes_of_bigram(self, entry: int) -> range:
        """The bytes that hold only bits of one bigram entry (the last: the end of the one before's trigrams)."""
        start, end = self.entries * 8 + entry * self.entry_bits, self.entries * 8 + (entry + 1) * self.entry_bits
        return range((start + 7) // 8, end // 8)


def _with_bits(data: bytes, bit: int, length: int, value: int) -> bytes:
    """`data` with `length` bits at bit `bit` set to `value` (KenLM's little-endian bit packing)."""
    at, shift = bit // 8, bit % 8
    word = int.from_bytes(data[at: at + 8], "little")
    word = word & ~(((1 << length) - 1) << shift) | value << shift
    return data[:at] + word.to_bytes(8, "little") + data[at + 8:]


def _with_u64(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<Q", value) + data[at + 8:]


@needs_kenlm
def test_trie_pointers_out_of_order_are_one_line_not_a_crash(tries, tmp_path):
    cases = {}
    for kind, path in tries.items():
        data = path.read_bytes()
        at = Layout(data)
        unigram_pointer = [at.unigrams + 16 * i + 8 for i in range(at.vocab + 1)]
        edits = {"unigrams-start-late": _with_u64(data, unigram_pointer[0], 2**40),  # was a segfault
                 "unigrams-end-late": _with_u64(data, unigram_pointer[-1], 2**40),  # was a segfault
                 "unigrams-go-back": _with_u64(data, unigram_pointer[3], 2**33),  # was a segfault
                 # the last bigram's trigrams end before they start: was a segfault
                 "bigrams-end-early": _with_bits(data, at.pointer_bit(at.bigrams), at.pointer_bits, 0)}
        if kind in ("array", "quant-array"):
            edits["pointer-table-start"] = _with_u64(data, at.table, 5)  # was a segfault
        for name, edited in edits.items():
            cases[f"{kind}/{name}"] = tmp_path / f"{kind}-{name}.bin"
            cases[f"{kind}/{name}"].write_bytes(edited)
    lines = _run_each_in_a_child(_DECODE_EACH, list(cases.values()))
    for (name, path), line in zip(cases.items(), lines):
        assert line.startswith(f"ERROR {path}: a corrupt KenLM binary ("), (name, line)
        if "unigrams" in name:
            assert f"its unigrams' pointers do not run in order through its {at.bigrams} bigrams)" in line, name
        else:
            assert f"its 2-grams' pointers do not run in order through its {at.trigrams} 3-grams)" in line, name


@needs_kenlm
def test_byte_flips_and_cuts_of_a_trie_are_refused_or_kenlms_error_never_a_crash(tries, tmp_path):
    """Every byte of the header, the vocabulary, the quantization and pointer compression headers, the unigrams, the
    pointer tables, the first and last bigram entries and the words, flipped; the file cut at each boundary between
    them. (A pointer inside the bit-packed bigrams is not checked: that would read all the n-grams of a model.)"""
    cases = []
    for kind, path in tries.items():
        data = path.read_bytes()
        at = Layout(data)
        flipped = [*range(at.quant + (8 if kind.startswith("quant") else 0)), *range(at.unigrams, at.entries),
                   *at.bytes_of_bigram(0), *at.bytes_of_bigram(at.bigrams), *range(at.words, len(data))]
        for i in flipped:
            for mask in (0xFF, 0x01):
                cases.append(tmp_path / f"{kind}-flip{i}-{mask}.bin")
                cases[-1].write_bytes(data[:i] + bytes([data[i] ^ mask]) + data[i + 1:])
        for cut in (56, 100, 108, 135, 136, at.quant + 2, at.unigrams + 8, at.middle - 1, at.middle + 1, at.entries,
                    at.longest - 1, at.longest + 1, at.words - 1, at.words + 3):
            cases.append(tmp_path / f"{kind}-cut{cut}.bin")
            cases[-1].write_bytes(data[:cut])
    lines = _run_each_in_a_child(_SCORE_EACH, cases)
    for path, line in zip(cases, lines):
        assert line == "OK" or line.startswith(f"ERROR {path}: ") or line.startswith("KENLM "), (path.name, line)
    said = "\n".join(lines)
    assert f"unigrams' pointers do not run in order through its {at.bigrams} bigrams" in said
    assert f"2-grams' pointers do not run in order through its {at.trigrams} 3-grams" in said
    assert "a truncated KenLM binary" in said


@needs_kenlm
def test_tries_of_every_kind_and_order_pass_the_checks(tmp_path):
    # enough text for -a to compress pointers (tables of several entries from the 3-grams on)
    rng = random.Random(0)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 4)))
                                       for _ in range(rng.randint(3, 12))) for _ in range(400)) + "\n")
    vocab = Vocabulary.build(["abcdefgh"], kind="chars")
    logits = torch.randn(1, 8, len(vocab), generator=torch.Generator().manual_seed(0))
    for order in (2, 3, 5):
        arpa = build_lm(text, order, tmp_path / f"{order}.arpa", units="chars")
        for kind, args in {**TRIE_KINDS, "small-tables": ["-q", "4", "-b", "3", "-a", "2"]}.items():
            lm = _build_binary(arpa, tmp_path / f"{order}-{kind}.bin", args)
            (tmp_path / f"{order}-{kind}.bin.json").write_text((tmp_path / f"{order}.arpa.json").read_text())
            assert check_lm_file(lm) == lm
            assert BeamSearchDecoder(vocab, lm=lm).decode(logits)[0] is not None
