"""A do_lower_case tokenizer whose special tokens are written without brackets (`PAD`, `UNK`, `BOS`, a word
delimiter `WB`, as some community checkpoints have them): the tokens are lower-cased, the special ones keep the names
the tokenizer files give them, as transformers matches them by name, so the blank and unk are still found."""

from __future__ import annotations

import json

import pytest
from hf_fixtures import make_hf

from xlsr.interop.hf_tokenizer import read_hf_vocab
from xlsr.interop.huggingface import import_hf

VOCAB = {"PAD": 0, "UNK": 1, "|": 2, "E": 3, "H": 4, "BOS": 5, "EOS": 6, "L": 7}
pytestmark = pytest.mark.usefixtures("one_thread")
SPECIAL = {"pad_token": "PAD", "unk_token": "UNK", "bos_token": "BOS", "eos_token": "EOS"}


def _added_token(content: str) -> dict:
    """How older transformers wrote a special token in tokenizer_config.json."""
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def _tokenizer_folder(path, vocab: dict, config: dict, special_map: dict | None = None):
    """A hand-written tokenizer beside a tiny CTC head with a row per token (the blank its pad, id 0)."""
    make_hf("Wav2Vec2ForCTC", "base_like", seed=6, pad_token_id=0, vocab_size=len(vocab)).save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                            "do_lower_case": True, **config}))
    if special_map is not None:
        (path / "special_tokens_map.json").write_text(json.dumps(special_map))
    return path


@pytest.mark.parametrize("where", ["special_tokens_map", "tokenizer_config"])
def test_special_tokens_without_brackets_keep_their_names(tmp_path, where):
    if where == "special_tokens_map":
        folder = _tokenizer_folder(tmp_path, VOCAB, {}, SPECIAL)
    else:
        folder = _tokenizer_folder(tmp_path, VOCAB, {k: _added_token(v) for k, v in SPECIAL.items()})
    assert read_hf_vocab(folder, len(VOCAB)) == (["PAD", "UNK", "|", "e", "h", "BOS", "EOS", "l"], 1)
    loaded = import_hf(folder)
    assert loaded.vocab == ["<blank>", "<unk>", "|", "e", "h", "BOS", "EOS", "l"]
    assert "added_rows" not in loaded.metadata  # the tokenizer's UNK is the unk: no second, never-predicted row


def test_a_word_delimiter_without_brackets_keeps_its_name(tmp_path):
    # transformers turns the word delimiter into a space by its name before lower-casing a transcript; with a `|` of
    # the vocabulary's own it is not renamed `|`, and keeps the name the tokenizer files give it
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "WB": 4}
    folder = _tokenizer_folder(tmp_path, vocab, {"word_delimiter_token": "WB"})
    assert read_hf_vocab(folder, len(vocab)) == (["<pad>", "<unk>", "|", "a", "WB"], 1)


def test_added_and_extra_special_tokens_are_read_as_transformers_matches_them(tmp_path):
    # transformers matches a special token as written before it upper-cases the rest of a text: "NOISE" is that token,
    # "noise" the letters N O I S E. So a label names it as written, and our token keeps its name. (Its decode then
    # lower-cases the whole transcript, specials included: ours differ from it in case only, as for UNK above.)
    from transformers import AddedToken, Wav2Vec2CTCTokenizer

    (tmp_path / "vocab_in.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "NOISE": 5}))
    tok = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab_in.json"), do_lower_case=True, additional_special_tokens=["NOISE"])
    tok.add_tokens([AddedToken("LAUGH", special=True, normalized=False)], special_tokens=True)
    folder = tmp_path / "tokenizer"
    tok.save_pretrained(folder)  # transformers 5 lists NOISE and LAUGH as extra_special_tokens, 4 as additional ones
    tokens, unk = read_hf_vocab(folder, len(tok))
    for i, token in enumerate(tokens):
        if i != tok.pad_token_id:  # the blank, never in a label
            assert tok.convert_tokens_to_ids(tok.tokenize(token)) == [i], token
    assert {"a", "b", "NOISE", "LAUGH"} <= set(tokens) and unk == tok.unk_token_id


def test_special_tokens_listed_in_older_files_keep_their_names(tmp_path):
    # transformers 4's files: additional_special_tokens in special_tokens_map.json (as AddedToken dicts), and
    # tokenizer_config.json's added_tokens_decoder, whose `special` marks which added tokens are special
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "NOISE": 4, "LAUGH": 5, "ZZ": 6}
    decoder = {"5": {**_added_token("LAUGH"), "special": True}, "6": {**_added_token("ZZ"), "special": False}}
    folder = _tokenizer_folder(tmp_path, vocab, {"added_tokens_decoder": decoder},
                               {"pad_token": "<pad>", "additional_special_tokens": [_added_token("NOISE")]})
    assert read_hf_vocab(folder, len(vocab)) == (["<pad>", "<unk>", "|", "a", "NOISE", "LAUGH", "zz"], 1)
