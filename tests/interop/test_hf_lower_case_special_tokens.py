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
