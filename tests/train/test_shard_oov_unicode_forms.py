"""Fine-tuning from shards finds the label symbols outside a given vocabulary as the vocabulary finds them in the
labels, and so as a manifest run does: a letter and its marks typed in another Unicode form than the vocabulary's
tokens (é as e and an acute beside a vocabulary of composed letters, ệ with its marks in either order, Hangul
jamo) are its tokens, whole. The index records the runs of the labels that NFC could join (`char_runs`); an index
written before it did still loads, judges each character alone as before, and says so."""

import json
import logging
import unicodedata

import pytest

from xlsr.data.shard_index import INDEX_NAME, read_index
from xlsr.errors import XlsrError
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.text.vocab import Vocabulary
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.finetune_data import read_finetune_data

from ._audio import text_shard_corpus

TEXTS = ["cafe\u0301",  # NFD café
         "the\u0301 noir x",  # x: outside every vocabulary below
         "e\u0301te\u0301",
         "vie\u0323\u0302t",  # NFD việt: the dot below before the circumflex
         "vi\u00ea\u0323t",  # việt as Vietnamese keyboards type it: ê, then the dot below
         "\u1112\u1161\u11ab a \u0301"]  # 한 as its jamo; an acute on nothing (after a space: NFC keeps it loose)
RUNS = {"e\u0301": 4, "e\u0323\u0302": 1, "\u00ea\u0323": 1, "\u1112\u1161\u11ab": 1, "|\u0301": 1}


def _symbols(form):
    return sorted(set("".join(unicodedata.normalize(form, t) for t in TEXTS)) - {" ", "x"})


COMPOSED = _symbols("NFC")  # é, ệ, 한 and the loose acute
DECOMPOSED = _symbols("NFD")  # e, the marks, the jamo
NO_ACUTE = [s for s in COMPOSED if s not in ("é", "\u0301")] + ["e"]  # e, but neither é nor an acute


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(manifest, shard folder) of TEXTS: one second of quiet audio each, one utterance per shard."""
    return text_shard_corpus(tmp_path_factory.mktemp("corpus"), "vi", TEXTS)


def _read(train, tmp_path, caplog, tokens, *, oov="warn", init_vocab=False):
    """(FinetuneData, the log's messages) of reading `train` for a character model with the vocabulary `tokens`,
    given as a --vocab file or as the CTC head of an --init."""
    config = Wav2Vec2Config.preset("tiny")
    tokens = ["<blank>", "<unk>", "|", *tokens]
    if init_vocab:
        cfg, init = FinetuneConfig(train=[str(train)], labels="chars", oov=oov), \
            InitModel(config, vocab_tokens=tokens, labels="chars", source="init.pt")
    else:
        Vocabulary(tokens, kind="chars").to_json(tmp_path / "vocab.json")
        cfg, init = FinetuneConfig(train=[str(train)], labels="chars", vocab=str(tmp_path / "vocab.json"), oov=oov), \
            InitModel(config)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xlsr.train.finetune_data"):
        data = read_finetune_data(cfg, init, config)
    return data, [r.getMessage() for r in caplog.records]


def test_the_index_records_the_runs_that_nfc_could_join_with_their_counts(corpus):
    _, shards = corpus
    entries = read_index(shards).of_split("train")
    summed = {}
    for entry in entries:
        for run, n in entry.char_runs.items():
            summed[run] = summed.get(run, 0) + n
    assert len(entries) == len(TEXTS) and summed == RUNS


@pytest.mark.parametrize("tokens, want", [(COMPOSED, {"x": 1}), (DECOMPOSED, {"x": 1}),
                                          (NO_ACUTE, {"é": 4, "\u0301": 1, "x": 1})],
                         ids=["composed", "decomposed", "no-acute"])
def test_symbols_outside_a_vocabulary_in_another_unicode_form_are_those_of_the_manifest(corpus, tmp_path, caplog,
                                                                                        tokens, want):
    manifest, shards = corpus
    by_manifest, _ = _read(manifest, tmp_path, caplog, tokens)
    by_shards, messages = _read(shards, tmp_path, caplog, tokens)
    assert by_manifest.oov == {str(manifest): want}  # the reference
    assert by_shards.oov == {str(shards): want}
    total = sum(want.values())
    assert any(m.startswith(f"{shards}: {total} label symbols are not in the vocabulary") for m in messages)


@pytest.mark.parametrize("init_vocab", [False, True], ids=["vocab", "init"])
def test_nfd_shards_pass_oov_error_against_a_composed_vocabulary_as_the_manifest_does(corpus, tmp_path, caplog,
                                                                                      init_vocab):
    manifest, shards = corpus
    tokens = [*COMPOSED, "x"]
    for train in (manifest, shards):
        data, _ = _read(train, tmp_path, caplog, tokens, oov="error", init_vocab=init_vocab)
        assert data.oov == {} and data.vocab.tokens == ["<blank>", "<unk>", "|", *tokens]


def test_an_index_without_runs_still_loads_judges_each_character_alone_and_says_so(corpus, tmp_path, caplog):
    _, shards = corpus
    old = tmp_path / "old"
    old.mkdir()
    (old / "train").symlink_to(shards / "train", target_is_directory=True)
    index = json.loads((shards / INDEX_NAME).read_text(encoding="utf-8"))
    for entry in index["shards"]:
        del entry["char_runs"]
    (old / INDEX_NAME).write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    data, messages = _read(old, tmp_path, caplog, COMPOSED)
    # each character alone, as before the runs were recorded: e, the marks the vocabulary's ệ holds, ê, the jamo
    alone = {"e": 5, "\u0323": 2, "\u0302": 1, "ê": 1, "\u1112": 1, "\u1161": 1, "\u11ab": 1, "x": 1}
    assert data.oov == {str(old): alone}
    assert any(m.startswith(f"{old}: 13 label symbols are not in the vocabulary") and
               "written before xlsr recorded the letters with their marks" in m for m in messages)


@pytest.mark.parametrize("runs, why", [({"e\u0301": 99}, "more often than symbol_counts"),
                                       ({"q\u0301": 1}, "not a symbol"), ({"e": 1}, "one character"),
                                       ({"e\u0301": 0}, "no count")])
def test_a_malformed_char_runs_is_refused_in_one_line(corpus, tmp_path, runs, why):
    _, shards = corpus
    index = json.loads((shards / INDEX_NAME).read_text(encoding="utf-8"))
    index["shards"][0]["char_runs"] = runs
    (tmp_path / INDEX_NAME).write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(XlsrError, match=r"index\.json: shards\[0\]: char_runs must give runs of two or more") as exc:
        read_index(tmp_path)
    assert "\n" not in str(exc.value), why
