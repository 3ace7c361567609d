"""Normalisation in the utterance's language: Turkish and Azerbaijani I is ı, on the copy of a corpus and in scoring
alike; and the fine-tuning warning's NFC/NFD sign, decided by the label texts."""

import logging
import unicodedata
from types import SimpleNamespace as Utt

import pytest

from xlsr.cli.main import main
from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.data.normalize_corpus import normalize_corpus
from xlsr.decode.evaluate import References, normalize_hypothesis
from xlsr.interop.init_model import InitModel
from xlsr.model import Wav2Vec2Config
from xlsr.text.normalize import normalize_text, unnormalized_signs
from xlsr.text.vocab import Vocabulary
from xlsr.train.finetune_config import FinetuneConfig
from xlsr.train.finetune_data import read_finetune_data


@pytest.mark.parametrize("raw, lang, want", [
    ("IRMAK", "tr", "ırmak"),
    ("İSTANBUL'DA IŞIK, İZMİR!", "tr", "istanbul'da ışık izmir"),
    ("I\u0307zmir", "tr", "izmir"),  # İ typed as I and a combining dot above
    ("ırmak kıyısı", "tr", "ırmak kıyısı"),  # lower case stays as it is
    ("IRMAK", "tr-TR", "ırmak"),  # a region tag, any casing or separator, a 639-3 code
    ("IRMAK", "TR_tr", "ırmak"),
    ("IRMAK", "tur", "ırmak"),
    ("İLHAM ŞAİR", "az", "ilham şair"),
    ("QIZ", "az-Latn", "qız"),
    ("QIZ", "aze", "qız"),
    # every other language, and no language: I is i, İ is i
    ("IRMAK", None, "irmak"),
    ("IRMAK", "en", "irmak"),
    ("İSTANBUL", "en", "istanbul"),
    ("Ich BIN", "de", "ich bin"),
    ("IRIS", "fr", "iris"),
    ("TIRANË", "sq", "tiranë"),
    ("ΟΔΟΣ", "el", "οδος"),
])
def test_casing_follows_the_language(raw, lang, want):
    assert normalize_text(raw, lang) == want
    assert normalize_text(want, lang) == want and unicodedata.is_normalized("NFC", want)  # idempotent, NFC


def test_a_normalized_copy_lower_cases_each_line_in_its_language(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "wav").mkdir(parents=True)
    audio = data / "wav" / "a.wav"
    audio.write_bytes(b"")
    write_manifest(data / "tr" / "train.jsonl", [Utterance(str(audio), 16000, "tr", text="IRMAK kenarı", id="t1")])
    write_manifest(data / "en" / "train.jsonl", [Utterance(str(audio), 16000, "en", text="IRMAK is a name", id="e1")])
    assert main(["data", "normalize-text", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert [u.text for u in read_manifest(tmp_path / "out" / "tr" / "train.jsonl")] == ["ırmak kenarı"]
    assert [u.text for u in read_manifest(tmp_path / "out" / "en" / "train.jsonl")] == ["irmak is a name"]
    summary = normalize_corpus(data, tmp_path / "out")  # the library the command calls: the same rule
    assert summary.symbols_after == set("ırmakenisname")


def test_scoring_lower_cases_reference_and_hypothesis_in_the_utterance_language():
    utts = [Utt(id="1", audio="/x/1.wav", lang="tr", text="IRMAK kenarı", phones=None),
            Utt(id="2", audio="/x/2.wav", lang="en", text="IRMAK", phones=None)]
    refs = References("m", utts, "chars", scored=[0, 1], missing=[], oov={}, normalize=True)
    report = refs.score({"/x/1.wav": "ırmak KENARI", "/x/2.wav": "irmak"}, [])
    assert [(h["ref"], h["hyp"]) for h in report.hypotheses] == [("ırmak kenarı", "ırmak kenarı"),
                                                                  ("irmak", "irmak")]
    assert report.total["char"].errors == 0
    assert normalize_hypothesis("IRMAK<unk>", "tr") == "ırmak<unk>"


def test_a_turkish_reference_is_spellable_by_a_lower_case_turkish_vocabulary():
    vocab = Vocabulary(["<blank>", "<unk>", "|", "ı", "r", "m", "a", "k"], kind="chars")
    utts = [Utt(id="1", audio="/x/1.wav", lang="tr", text="IRMAK", phones=None)]
    assert References.of(Utt(vocab=vocab, source="model"), utts, "chars", True).oov == {}
    utts[0].lang = "en"
    assert References.of(Utt(vocab=vocab, source="model"), utts, "chars", True).oov == {"i": 1}


YORUBA = unicodedata.normalize("NFC", "ọ\u0301mọ dé ilé ẹ\u0301")  # NFC: ọ́ and ẹ́ keep a loose acute beside é


def test_an_nfc_yoruba_vocabulary_with_a_loose_acute_is_no_sign():
    tokens = Vocabulary.build([YORUBA], "chars").tokens
    assert "\u0301" in tokens and "é" in tokens
    assert unnormalized_signs(tokens, [YORUBA]) is None
    nfd = "ile\u0301"  # one label typed decomposed: two spellings of é
    sign = unnormalized_signs(Vocabulary.build([YORUBA, nfd], "chars").tokens, [YORUBA, nfd])
    assert sign == ("1 combining mark(s) or jamo that its letters also hold precomposed ('\u0301'): transcripts "
                    "mixing NFC and NFD spellings")


@pytest.mark.parametrize("one, other", [
    ("tiếng", unicodedata.normalize("NFD", "tiếng")),
    ("한국어", unicodedata.normalize("NFD", "한국어")),
    ("আ\u09df", "আ\u09af\u09bc"),  # য় as its own code point (NFC decomposes it) beside য and a nukta
])
def test_labels_spelled_two_ways_are_still_a_sign_given_the_texts(one, other):
    tokens = Vocabulary.build([one, other], "chars").tokens
    assert "mixing NFC and NFD" in (unnormalized_signs(tokens, [one, other]) or "")
    assert unnormalized_signs(Vocabulary.build([one], "chars").tokens, [one]) is None


def _finetune_warnings(tmp_path, texts, caplog):
    tmp_path.mkdir()
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    manifest = tmp_path / "yo" / "train.jsonl"
    write_manifest(manifest, [Utterance(str(audio), 16000, "yo", text=t, id=f"u{k}") for k, t in enumerate(texts)])
    config = Wav2Vec2Config.preset("tiny")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xlsr.train.finetune_data"):
        read_finetune_data(FinetuneConfig(train=[str(manifest)], labels="chars"), InitModel(config), config)
    return [r.getMessage() for r in caplog.records if "character vocabulary" in r.getMessage()]


def test_fine_tuning_reads_the_labels_to_tell_a_loose_accent_from_an_nfd_spelling(tmp_path, caplog):
    assert _finetune_warnings(tmp_path / "nfc", [YORUBA, "ọjà"], caplog) == []
    warned = _finetune_warnings(tmp_path / "mixed", [YORUBA, "ile\u0301"], caplog)
    assert len(warned) == 1 and "transcripts mixing NFC and NFD spellings" in warned[0]
