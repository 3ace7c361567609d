"""A Hugging Face CTC folder whose added tokens are named only by tokenizer_config.json's `added_tokens_decoder` (no
added_tokens.json, as a tokenizer may be saved): read by id, as transformers reads them; a gap or clash refused."""

from __future__ import annotations

import json

import pytest
from hf_fixtures import make_hf

from xlsr.errors import CheckpointError
from xlsr.interop.hf_tokenizer import read_hf_vocab
from xlsr.interop.huggingface import import_hf

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_added_tokens_of_the_decoder_alone_are_read_as_transformers_reads_them(tmp_path):
    (tmp_path / "vocab_in.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4, "c": 5}))
    tok = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab_in.json"))  # adds <s>, </s> at 6, 7
    tok.add_tokens(["xx", transformers.AddedToken("<noise>", special=True)])
    folder = tmp_path / "ctc"
    make_hf("Wav2Vec2ForCTC", "base_like", seed=6, pad_token_id=0, vocab_size=len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "added_tokens.json").unlink()
    assert "added_tokens_decoder" in json.loads((folder / "tokenizer_config.json").read_text())
    reloaded = transformers.Wav2Vec2CTCTokenizer.from_pretrained(folder)
    by_id = reloaded.convert_ids_to_tokens(list(range(len(reloaded))))
    assert by_id == ["<pad>", "<unk>", "|", "a", "b", "c", "<s>", "</s>", "xx", "<noise>"]
    assert reloaded.convert_tokens_to_ids(["xx", "<noise>"]) == [8, 9]

    assert read_hf_vocab(folder, len(reloaded)) == (by_id, 1)
    assert import_hf(folder).vocab == ["<blank>", *by_id[1:]]
    # a head without the rows of the last added tokens: those are left out, as with added_tokens.json
    assert read_hf_vocab(folder, 8) == (by_id[:8], 1)


def _folder(path, decoder: dict):
    (path / "vocab.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4}))
    entries = {i: {"content": t, "special": False} for i, t in decoder.items()}
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                            "added_tokens_decoder": entries}))
    return path


@pytest.mark.parametrize("decoder, size, message", [
    ({"4": "zz"}, 5, "added token 'zz' has id 4, but so has 'b'"),
    ({"5": "b"}, 6, "added token 'b' has id 5, but also id 4"),
    ({"5": "yy", "6": "yy"}, 7, "added token 'yy' has id 6, but also id 5"),
    ({"6": "yy"}, 7, "vocab.json with tokenizer_config.json: no token has id 5; token ids are not 0..5 without gaps"),
    ({"x": "yy"}, 6, "added_tokens_decoder entry 'x': {'content': 'yy', 'special': False}, expected an id -> "),
    ({"5": 7}, 6, "added_tokens_decoder entry '5': {'content': 7, 'special': False}, expected an id -> "),
])
def test_a_gap_or_clash_in_the_ids_is_one_line(tmp_path, decoder, size, message):
    folder = _folder(tmp_path, decoder)
    with pytest.raises(CheckpointError) as err:
        read_hf_vocab(folder, size)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(folder))


def test_tokens_the_decoder_repeats_at_their_own_ids_are_taken_once(tmp_path):
    folder = _folder(tmp_path, {"0": "<pad>", "1": "<unk>", "2": "|", "5": "yy"})
    assert read_hf_vocab(folder, 6) == (["<pad>", "<unk>", "|", "a", "b", "yy"], 1)


def test_an_mms_decoder_of_another_language_is_not_read(tmp_path):
    # saved for language aaa, its decoder lists aaa's "ch" at 4 and <s>, </s> past aaa's table: ids bbb gives its own
    vocab = {"aaa": {"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "ch": 4},
             "bbb": {"<pad>": 0, "<unk>": 1, "|": 2, "sh": 3, "b": 4, "c": 5}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    decoder = {"4": {"content": "ch"}, "5": {"content": "<s>"}, "6": {"content": "</s>"}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"target_lang": "aaa",
                                                                "added_tokens_decoder": decoder}))
    assert read_hf_vocab(tmp_path, 6, "bbb") == (["<pad>", "<unk>", "|", "sh", "b", "c"], 1)
