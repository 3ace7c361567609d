import json
import shutil

import pytest
import torch
from decode_fixtures import needs_kenlm

from xlsr.cli.main import main
from xlsr.decode.beam import BeamSearchConfig, BeamSearchDecoder, decoder_for_lm
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.lm import build_lm, find_kenlm_tool, lm_corpus_lines, sidecar_path, words_path
from xlsr.decode.lm_file import kenlm_binary_unigram_count
from xlsr.errors import XlsrError
from xlsr.text.vocab import Vocabulary


def test_corpus_lines_per_units():
    lines = ["hello  world", "", "h ə | l oʊ"]
    assert list(lm_corpus_lines(lines, "words")) == ["hello world", "h ə l oʊ"]
    assert list(lm_corpus_lines(["ab c"], "chars")) == ["a b | c"]
    assert list(lm_corpus_lines(["h ə | l oʊ"], "phones")) == ["h ə | l oʊ"]
    with pytest.raises(XlsrError, match="units"):
        list(lm_corpus_lines(lines, "bytes"))


def test_missing_tool_error_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setattr("xlsr.decode.lm.kenlm_search_dirs", lambda: [tmp_path])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(XlsrError, match="build_kenlm.sh"):
        find_kenlm_tool("lmplz")


def test_an_lm_output_that_is_a_folder_is_one_line_before_any_work(tmp_path):
    (tmp_path / "text.txt").write_text("ab ab\n")
    with pytest.raises(XlsrError, match=r"is a folder; give the language model's file name \(e.g. .*lm.bin\)"):
        build_lm(tmp_path / "text.txt", 2, tmp_path)
    for memory in ("abc", "-5", "0", "5X"):
        with pytest.raises(XlsrError, match=f"--memory: lmplz's sort memory is a size such as 500M, 2G or 50%, got "
                                            f"'{memory}'"):
            build_lm(tmp_path / "text.txt", 2, tmp_path / "lm.bin", memory=memory)


@needs_kenlm
def test_build_word_lm_binary_and_decode_with_it(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("ab ab ab\nab ab\nab ac\nab ab ab ab\n")
    out = build_lm(text, 3, tmp_path / "lm.bin")
    assert out.read_bytes().startswith(b"mmap lm http://kheafield.com/code")
    info = json.loads((tmp_path / "lm.bin.json").read_text())
    assert info["units"] == "words" and info["order"] == 3
    assert (tmp_path / "lm.bin.words.txt").read_text().split() == ["ab", "ac"]

    # the trained LM prefers "ab" and fixes a greedy error through the lexicon decoder
    vocab = Vocabulary.build(["ab ac"], kind="chars")
    logits = torch.full((1, 4, len(vocab)), -20.0)
    for t, tok in enumerate(["a", None, "|", "<blank>"]):
        if tok is None:
            logits[0, t, vocab.index("c")] = -0.6
            logits[0, t, vocab.index("b")] = -0.9
        else:
            logits[0, t, vocab.index(tok)] = 0.0
    assert greedy_decode(logits, None, vocab)[0].text == "ac"
    decoder = decoder_for_lm(vocab, out, config=BeamSearchConfig(lm_weight=2.0))
    assert decoder.uses_lexicon and decoder.decode(logits)[0].text == "ab"


@needs_kenlm
def test_build_units_lm_arpa(tmp_path):
    text = tmp_path / "phones.txt"
    text.write_text("h ə | l oʊ\nl oʊ | h ə\n", encoding="utf-8")
    out = build_lm(text, 2, tmp_path / "phones.arpa", units="phones")
    arpa = out.read_text(encoding="utf-8")
    assert arpa.startswith("\\data\\") and "\toʊ" in arpa and "\t|" in arpa
    assert not (tmp_path / "phones.arpa.words.txt").exists()
    vocab = Vocabulary.build(["h ə | l oʊ"], kind="phones")
    decoder = decoder_for_lm(vocab, out)
    assert not decoder.uses_lexicon


@needs_kenlm
def test_cli_lm_build(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("a b c\nb c a\n")
    assert main(["lm", "build", "--text", str(text), "--order", "2", "--out", str(tmp_path / "x.arpa")]) == 0
    assert "x.arpa" in capsys.readouterr().out
    assert (tmp_path / "x.arpa").read_text().startswith("\\data\\")


def test_build_lm_bad_inputs(tmp_path, capsys):
    with pytest.raises(XlsrError, match="order"):
        build_lm(tmp_path / "t.txt", 9, tmp_path / "lm.bin")
    with pytest.raises(XlsrError, match="order: must be between 2 and 6"):  # KenLM cannot load a unigram LM
        build_lm(tmp_path / "t.txt", 1, tmp_path / "lm.bin")
    with pytest.raises(XlsrError, match="t.txt: no such"):
        build_lm(tmp_path / "t.txt", 3, tmp_path / "lm.bin")
    assert main(["lm", "build", "--text", str(tmp_path / "t.txt"), "--out", str(tmp_path / "lm")]) == 2
    assert "t.txt: no such text file" in capsys.readouterr().err


@needs_kenlm
def test_build_lm_empty_text(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(XlsrError, match="empty.txt: no text"):
        build_lm(empty, 3, tmp_path / "lm.bin")


@needs_kenlm
def test_binary_word_lm_without_sidecar_is_refused_as_its_arpa_is(tmp_path):
    # a downloaded word LM (no sidecar) without a lexicon: every character would be <unk> to it
    text = tmp_path / "text.txt"
    text.write_text("the cat sat\nthe dog sat\na cat ran\n")
    vocab = Vocabulary.build(["the cat sat", "a dog ran"], kind="chars")
    for name in ("word.arpa", "word.bin"):
        lm = build_lm(text, 3, tmp_path / name)
        sidecar_path(lm).unlink()
        words_path(lm).unlink()
        with pytest.raises(XlsrError, match=f"{name}: only 1 of this LM's 6 words are tokens of the model's "
                                            "vocabulary, so it is not a units LM") as info:
            decoder_for_lm(vocab, lm)
        assert "\n" not in str(info.value)
    assert kenlm_binary_unigram_count(tmp_path / "word.bin") == 6 + 3  # and <s>, </s>, <unk>
    assert BeamSearchDecoder(vocab, lm=tmp_path / "word.bin", lexicon=["the", "cat", "sat"]).uses_lexicon


@needs_kenlm
def test_binary_units_lm_without_sidecar_may_cover_part_of_the_vocabulary(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("ab ba\nba ab ab\n")
    lm = build_lm(text, 2, tmp_path / "chars.bin", units="chars")
    sidecar_path(lm).unlink()
    vocab = Vocabulary.union([Vocabulary.build(["ab"], kind="chars"), Vocabulary.build(["пр ив ет как"], kind="chars")])
    assert not BeamSearchDecoder(vocab, lm=lm).uses_lexicon


def test_jsonl_manifest_as_lm_text_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("xlsr.decode.lm.find_kenlm_tool", lambda name: tmp_path / name)  # refused before running
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "ciao mondo", "phones": "tʃ a o"}\n\n'
                        '{"audio": "b.wav", "text": "buon giorno"}\n', encoding="utf-8")
    for units, field in (("words", "text"), ("chars", "text"), ("phones", "phones")):
        with pytest.raises(XlsrError, match=f"train.jsonl: is a JSONL manifest, not text; .* one sentence per line: "
                                            f"write its `{field}` labels one per line") as info:
            build_lm(manifest, 2, tmp_path / "lm.arpa", units=units)
        assert "\n" not in str(info.value)
    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(XlsrError, match="other.jsonl: holds JSON objects, one per line, not text"):
        build_lm(other, 2, tmp_path / "lm.arpa")


@needs_kenlm
def test_lm_text_with_a_byte_order_mark(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat\nthe dog sat\n", encoding="utf-8-sig")  # as Windows editors save it
    lm = build_lm(text, 2, tmp_path / "lm.arpa")
    assert words_path(lm).read_text(encoding="utf-8").split() == ["cat", "dog", "sat", "the"]
    chars = build_lm(text, 2, tmp_path / "chars.arpa", units="chars").read_text(encoding="utf-8")
    assert "\ufeff" not in chars
