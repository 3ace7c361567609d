"""Bad language model and lexicon files, and beam options: one XlsrError line naming the file, never a crash.

KenLM trusts a model's header: some corrupt ones crash or hang the process inside C++, where no `except` reaches,
so those cases run in a child process and are judged by its exit status and output."""

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from decode_fixtures import AB_WORD_ARPA, needs_kenlm

from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder, decoder_for_lm, read_lexicon
from xlsr.decode.lm import build_lm
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary

CHAR_TEXT = ["a b c", "ab ba c", "c a b a", "ab c ba"]
# A child process builds a decoder with each LM file given and prints one line per file: OK or the error.
_LOAD_EACH = """
import sys
from xlsr.decode.beam import BeamSearchDecoder
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary
vocab = Vocabulary.build(["a b c"], kind="chars")
for path in sys.argv[1:]:
    try:
        BeamSearchDecoder(vocab, lm=path)
        print("OK", flush=True)
    except XlsrError as exc:
        print("ERROR", exc, flush=True)
"""


def _load_each_in_a_child(paths: list[Path]) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _LOAD_EACH, *map(str, paths)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"the process died (status {proc.returncode}) after: {proc.stdout}"
    assert "Traceback" not in proc.stderr
    return proc.stdout.splitlines()


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory) -> tuple[Path, Path]:
    """A chars LM as `xlsr lm build` writes it: (KenLM probing binary, ARPA text), each with its sidecar."""
    folder = tmp_path_factory.mktemp("lm")
    text = folder / "text.txt"
    text.write_text("\n".join(CHAR_TEXT) + "\n")
    return (build_lm(text, 3, folder / "chars.bin", units="chars"),
            build_lm(text, 3, folder / "chars.arpa", units="chars"))


def _edited(source: Path, out: Path, at: int, fmt: str, value) -> Path:
    data = bytearray(source.read_bytes())
    struct.pack_into(fmt, data, at, value)
    out.write_bytes(bytes(data))
    return out


# -- language model files -------------------------------------------------------------------------
@needs_kenlm
def test_corrupt_lm_headers_are_one_line_not_a_crash_or_hang(char_lm, tmp_path):
    binary, arpa = char_lm
    text = arpa.read_text()
    counts = text.split("\\1-grams:")[0]
    cases = {}
    for name, header in (("negative-unigrams", counts.replace("ngram 1=", "ngram 1=-")),  # was a segfault
                         ("negative-trigrams", counts.replace("ngram 3=", "ngram 3=-")),  # was a hang
                         ("inflated", counts.replace("ngram 3=", "ngram 3=99999999"))):
        cases[name] = tmp_path / f"{name}.arpa"
        cases[name].write_text(text.replace(counts, header))
    # the vocabulary's hash table: after the header, 3 counts (at a multiple of 8) and its own 8 bytes, entries of
    # a word's hash (8 bytes, 0 where empty) and its unigram row (4 bytes)
    data, entry = binary.read_bytes(), (108 + 8 * 3 + 7) // 8 * 8 + 8
    while struct.unpack_from("<Q", data, entry)[0] == 0:
        entry += 12
    for name, at, fmt, value in (("order-0", 88, "<B", 0),  # was a segfault
                                 ("nan-multiplier", 92, "<f", math.nan),  # was SIGFPE
                                 ("huge-count", 108, "<Q", 2**63),  # was SIGFPE
                                 ("few-unigrams", 108, "<Q", 3),  # was a hang (a full hash table)
                                 ("word-past-unigrams", entry + 8, "<I", 2**30)):  # was a segfault
        cases[name] = _edited(binary, tmp_path / f"{name}.bin", at, fmt, value)
    lines = _load_each_in_a_child(list(cases.values()))
    assert len(lines) == len(cases)
    for (name, path), line in zip(cases.items(), lines):
        assert line.startswith(f"ERROR {path}: "), (name, line)
    said = dict(zip(cases, lines))
    assert "negative n-gram count (ngram 1=-" in said["negative-unigrams"]
    assert "more n-grams" in said["inflated"] and "truncated or its counts are wrong" in said["inflated"]
    assert "order 0" in said["order-0"] and "multiplier of nan" in said["nan-multiplier"]
    assert "counts do not match its tables" in said["few-unigrams"]
    assert "points past its" in said["word-past-unigrams"]


@needs_kenlm
def test_every_binary_xlsr_builds_passes_the_header_checks(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"{w} {w}{w} a{w}" for w in "bcdefghijklmnopqrstuvwxyz") + "\n")
    vocab = Vocabulary.build([text.read_text()], kind="chars")
    for order in (2, 4, 6):
        lm = build_lm(text, order, tmp_path / f"{order}.bin", units="chars")
        assert BeamSearchDecoder(vocab, lm=lm).decode(torch.randn(1, 6, len(vocab)))[0] is not None


@needs_kenlm
def test_a_truncated_binary_is_called_truncated(char_lm, tmp_path):
    binary, _ = char_lm
    data = binary.read_bytes()
    for cut in (40, 200):  # inside the header (KenLM took it for ARPA text); inside the tables
        short = tmp_path / f"cut{cut}.bin"
        short.write_bytes(data[:cut])
        with pytest.raises(XlsrError, match=rf"cut{cut}\.bin: a truncated KenLM binary") as info:
            BeamSearchDecoder(Vocabulary.build(CHAR_TEXT, kind="chars"), lm=short)
        assert "\n" not in str(info.value)


def test_a_folder_given_as_lm_or_lexicon_is_called_a_folder(tmp_path):
    vocab = Vocabulary.build(CHAR_TEXT, kind="chars")
    with pytest.raises(XlsrError, match="is a folder, not a language model file"):
        BeamSearchDecoder(vocab, lm=tmp_path)
    with pytest.raises(XlsrError, match="is a folder, not a lexicon file"):
        read_lexicon(tmp_path, vocab)


def test_a_units_lm_of_another_alphabet_is_refused(tmp_path):
    # built (so its sidecar says) from another language's labels: it knows `|` and none of the model's letters
    lm = tmp_path / "cyrillic.arpa"
    lm.write_text("\\data\\\nngram 1=6\nngram 2=2\n\n\\1-grams:\n-1\t<unk>\t0\n-99\t<s>\t-0.3\n-0.7\t</s>\t0\n"
                  "-0.5\tд\t-0.2\n-0.6\tм\t-0.2\n-0.8\t|\t-0.2\n\n\\2-grams:\n-0.2\t<s> д\n-0.3\tд м\n\n\\end\\\n",
                  encoding="utf-8")
    (tmp_path / "cyrillic.arpa.json").write_text(json.dumps({"units": "chars", "order": 2, "words": None}))
    vocab = Vocabulary.build(CHAR_TEXT, kind="chars")
    with pytest.raises(XlsrError, match=r"cyrillic\.arpa: this chars LM knows none of the model's tokens but `\|`"):
        decoder_for_lm(vocab, lm)


def test_a_word_lm_that_knows_none_of_the_lexicon_is_refused(tmp_path):
    lm = tmp_path / "ab.arpa"
    lm.write_text(AB_WORD_ARPA)  # the words a, b, ab, ba
    vocab = Vocabulary.build(["cd dc"], kind="chars")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("cd\ndc\n")
    with pytest.raises(XlsrError, match=r"ab\.arpa: none of the 2 words of lexicon .*lexicon\.txt is a word of "
                                        r"this LM") as info:
        BeamSearchDecoder(vocab, lm=lm, lexicon=lexicon)
    assert "\n" not in str(info.value)
    known = BeamSearchDecoder(Vocabulary.build(["ab ba"], kind="chars"), lm=lm, lexicon=["ab", "zz", "ba"])
    assert set(known.lexicon) == {"ab", "ba"}  # one word the LM knows is enough ('zz' cannot be spelled)


# -- lexicon files --------------------------------------------------------------------------------
def test_a_lexicon_with_a_byte_order_mark_and_crlf_reads_its_first_word(tmp_path):
    vocab = Vocabulary.build(["ab ba"], kind="chars")
    path = tmp_path / "lexicon.txt"
    path.write_bytes(b"\xef\xbb\xbfab a b |\r\nba\r\n")
    assert read_lexicon(path, vocab) == {"ab": [["a", "b", "|"]], "ba": [["b", "a", "|"]]}


def test_a_repeated_spelling_is_one_path_to_its_word(tmp_path):
    vocab = Vocabulary.build(["ab ba"], kind="chars")
    path = tmp_path / "lexicon.txt"
    path.write_text("ab a b |\nab a b |\nab a b\nba b a |\n")
    config = BeamSearchConfig(log_add=True, beam_size=20, nbest=3)
    twice = BeamSearchDecoder(vocab, lexicon=path, config=config)
    assert twice.lexicon == {"ab": [["a", "b", "|"]], "ba": [["b", "a", "|"]]}
    once = BeamSearchDecoder(vocab, lexicon={"ab": [["a", "b", "|"]], "ba": [["b", "a", "|"]]}, config=config)
    logits = torch.randn(1, 12, len(vocab), generator=torch.Generator().manual_seed(0))
    # with log_add a repeated spelling was counted twice: another best hypothesis and scores
    assert [(h.text, h.score) for h in twice.decode_nbest(logits)[0]] == \
        [(h.text, h.score) for h in once.decode_nbest(logits)[0]]


def test_lexicon_errors_name_the_file_and_line(tmp_path):
    phones = Vocabulary.build(["h e l o"], kind="phones")
    path = tmp_path / "lexicon.txt"
    path.write_text("hello h e l o\nhelo\n")
    with pytest.raises(XlsrError, match=r"lexicon\.txt: line 2: 'helo' has no spelling, and words can only be "
                                        r"spelled automatically with a character vocabulary"):
        read_lexicon(path, phones)
    path.write_text("qq q q\n")
    with pytest.raises(XlsrError, match=r"lexicon\.txt: none of its 1 words can be spelled"):
        BeamSearchDecoder(phones, lexicon=path)


# -- beam options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, words", [
    ({"beam_size": 10**9}, "beam size: must be at most 10,000"),  # flashlight's memory grows with it
    ({"beam_size": 10_001}, "beam size: must be at most 10,000"),
    ({"beam_size_token": 2**31}, "beam_size_token: must be between 1 and 2147483647"),  # was a TypeError
    ({"unk_score": math.inf}, "unk_score: must be a number or -inf, got inf"),
    ({"lm_weight": math.nan}, "lm_weight: must be a finite number"),
    ({"word_score": -math.inf}, "word_score: must be a finite number"),
])
def test_out_of_range_beam_settings_are_one_line(settings, words):
    with pytest.raises(XlsrError, match=words):
        BeamSearchConfig(**settings)
