"""build_lm's outputs: which file names become KenLM binaries, and text holding KenLM's reserved words."""

import json

import pytest
from decode_fixtures import needs_kenlm

from xlsr.decode.lm import build_lm, lm_corpus_lines, sidecar_path, words_path
from xlsr.decode.lm_file import is_kenlm_binary
from xlsr.errors import XlsrError


@needs_kenlm
@pytest.mark.parametrize("name, binary", [("lm.klm", True), ("lm", True), ("lm.bin", True), ("lm.arpa", False)])
def test_every_name_but_arpa_becomes_a_kenlm_binary(tmp_path, name, binary):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat\nthe dog sat\n")
    out = build_lm(text, 2, tmp_path / name)
    assert is_kenlm_binary(out) == binary
    assert json.loads(sidecar_path(out).read_text())["format"] == ("binary" if binary else "arpa")


def test_kenlm_reserved_words_are_left_out_of_the_lm_text():
    # transcripts often mark unintelligible words <unk>; lmplz refuses <s>, </s> and <unk> in its text
    lines = ["the <unk> sat", "<s> a cat </s>", "<unk>"]
    assert list(lm_corpus_lines(lines, "words")) == ["the sat", "a cat"]


@needs_kenlm
def test_a_text_with_unk_words_trains_an_lm_whose_word_list_lacks_them(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the <unk> sat\nthe dog sat\n<unk>\n")
    lm = build_lm(text, 2, tmp_path / "lm.arpa")
    assert words_path(lm).read_text().split() == ["dog", "sat", "the"]


def test_a_word_lm_sidecar_without_a_word_list_is_a_one_line_error(tmp_path):
    from xlsr.decode.beam import decoder_for_lm
    from xlsr.text.vocab import Vocabulary

    lm = tmp_path / "words.arpa"
    lm.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<unk>\t0\n-99\t<s>\t0\n-1\t</s>\t0\n\n\\end\\\n")
    sidecar_path(lm).write_text('{"units": "words", "order": 2}')  # written by hand: no "words" at all
    with pytest.raises(XlsrError, match=r"words\.arpa\.json: a word LM needs its word list \('words'\)") as info:
        decoder_for_lm(Vocabulary.build(["ab"], kind="chars"), lm)
    assert "\n" not in str(info.value)
