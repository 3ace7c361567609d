import json

import pytest

from xlsr.errors import XlsrError
from xlsr.text.vocab import BLANK, UNK, Vocabulary, union


def test_phone_vocab_layout_and_roundtrip():
    labels = ["h ə l oʊ | w ɜː l d", "oʊ l ə"]
    v = Vocabulary.build(labels, kind="phones")
    assert v.tokens[:3] == [BLANK, UNK, "|"]
    assert v.blank_id == 0 and v.unk_id == 1 and v.word_boundary_id == 2
    assert set(v.tokens[3:]) == {"h", "ə", "l", "oʊ", "w", "ɜː", "d"}
    ids = v.encode(labels[0])
    assert len(ids) == 9 and v.unk_id not in ids
    assert v.decode(ids) == labels[0]
    # blanks are dropped on decode
    assert v.decode([0, *ids, 0]) == labels[0]


def test_phones_without_boundary_have_no_pipe():
    v = Vocabulary.build(["a b", "c"], kind="phones")
    assert v.word_boundary_id is None and "|" not in v


def test_char_vocab_maps_spaces_to_boundary():
    v = Vocabulary.build(["hello  world", " ok"], kind="chars")
    assert v.tokenize("hello  world") == list("hello|world")
    assert v.tokenize(" ok ") == ["o", "k"]
    assert v.word_boundary_id == 2
    assert v.decode(v.encode("hello world")) == "hello world"


def test_unknown_symbols_map_to_unk_and_strict_raises_with_counts():
    v = Vocabulary.build(["a b c"], kind="phones")
    assert v.encode("a x b x") == [v.index("a"), 1, v.index("b"), 1]
    with pytest.raises(XlsrError, match=r"train\.jsonl.*'x'×2"):
        v.encode("a x b x", strict=True, source="train.jsonl")


def test_oov_report_counts_and_check_labels():
    v = Vocabulary.build(["abc"], kind="chars")
    labels = ["abz", "zzq", "a b"]
    assert v.oov_report(labels) == {"z": 3, "q": 1}
    with pytest.raises(XlsrError, match=r"dev\.jsonl: 4 occurrences of 2 symbols.*'z'×3, 'q'×1"):
        v.check_labels(labels, source="dev.jsonl")
    v.check_labels(["cab ba"])  # all known: no error


def test_union_holds_every_token_once():
    a = Vocabulary.build(["a b |"], kind="phones")
    b = Vocabulary.build(["b c"], kind="phones")
    u = union([a, b])
    assert u.tokens == [BLANK, UNK, "|", "a", "b", "c"]
    assert Vocabulary.union([b, a]) == u  # order of the inputs does not matter
    with pytest.raises(XlsrError, match="mix kinds"):
        union([a, Vocabulary.build(["x"], kind="chars")])


def test_json_roundtrip_and_bad_files(tmp_path):
    v = Vocabulary.build(["ʃ iː", "t ʃ"], kind="phones")
    path = tmp_path / "vocab.json"
    v.to_json(path)
    assert Vocabulary.from_json(path) == v
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"] == v.tokens
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(XlsrError, match="bad.json"):
        Vocabulary.from_json(bad)
    with pytest.raises(XlsrError, match="missing.json"):
        Vocabulary.from_json(tmp_path / "missing.json")
    # a bare token list (as stored in a checkpoint's config.json) loads too
    assert Vocabulary.from_dict([BLANK, UNK, "|", "a", "b"]).kind == "chars"


def test_a_bare_list_with_any_multi_letter_symbol_is_read_as_phones():
    v = Vocabulary.from_dict([BLANK, UNK, "a", "aː", "b", "tʃ"])  # one-letter phones among them
    assert v.kind == "phones"
    assert v.encode("a aː tʃ") == [2, 3, 5] and v.decode([2, 3, 4, 5]) == "a aː b tʃ"
    assert Vocabulary.from_dict([BLANK, UNK, "aː", "tʃ"]).kind == "phones"
    assert Vocabulary.from_dict([BLANK, UNK, "a", "b"]).kind == "chars"


def test_invalid_token_lists_are_rejected():
    with pytest.raises(XlsrError, match="must start with"):
        Vocabulary(["a", BLANK, UNK])
    with pytest.raises(XlsrError, match="duplicate"):
        Vocabulary([BLANK, UNK, "a", "a"])
    with pytest.raises(XlsrError, match="kind"):
        Vocabulary([BLANK, UNK], kind="words")


@pytest.mark.parametrize("content, message", [
    ({"tokens": [BLANK, UNK, "a", 5]}, "tokens must be strings; got 5"),
    ({"kind": "phones", "tokens": [BLANK, UNK, "a", None]}, "tokens must be strings; got None"),
    ([BLANK, UNK, ["a"]], r"tokens must be strings; got \['a'\]"),
    (["a", "b"], r"must start with '<blank>', '<unk>'; got \['a', 'b'\]"),
    ([BLANK, UNK, "a", "a"], r"duplicate tokens \['a'\]"),
    ({"tokens": [BLANK, UNK, "a b"]}, "tokens may not be empty or contain whitespace"),
    ({"kind": "words", "tokens": [BLANK, UNK, "a"]}, "kind 'words' is not one of phones, chars"),
])
def test_a_malformed_vocabulary_file_is_one_error_naming_it(tmp_path, content, message):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(content))
    with pytest.raises(XlsrError, match=rf"^{path}: {message}"):
        Vocabulary.from_json(path, kind="phones")
