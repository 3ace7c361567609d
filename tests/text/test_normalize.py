"""Transcript normalisation: the rules, the vocabulary signs of raw transcripts, a normalized copy of a corpus."""

import json

import pytest

from xlsr.cli.main import main
from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.data.normalize_corpus import normalize_corpus
from xlsr.errors import XlsrError
from xlsr.text.normalize import normalize_text, unnormalized_signs


@pytest.mark.parametrize("raw, want", [
    ("Ciao, come stai?", "ciao come stai"),
    ("L’uomo e l'ALBERO!", "l'uomo e l'albero"),  # apostrophes inside words kept, as U+0027
    ("'quoted' words", "quoted words"),  # quotes at word edges are punctuation
    ("  Tab\tand\nnewline  ", "tab and newline"),
    ("Cafe\u0301 ÉTÉ", "café été"),  # NFC: e + combining acute is é
    ("Wait... 3 $100 #tags — ok", "wait 3 100 tags ok"),  # symbols go, digits stay
    ("Привет, МИР!", "привет мир"),
    ("?!", ""),
    ("l‘uomo l`albero", "l'uomo l'albero"),  # the quote and grave accent typed for an apostrophe
    ("hi\u200bthere\ufeff e\u00adco \u200fshalom", "hithere eco shalom"),  # invisible format characters deleted
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),  # Persian's ZWNJ kept
    ("ինչո՞ւ բարե՛վ։", "ինչու բարեվ"),  # Armenian question and emphasis marks on a vowel: one word each
    ("ג׳ירפה צה״ל", "ג׳ירפה צה״ל"),  # Hebrew geresh and gershayim spell the word: kept
    ("׳quoted׳", "quoted"),  # ... but not at a word's edges
    ("रामू'स", "रामू'स"),  # an apostrophe after a vowel sign is inside the word
])
def test_normalize_text(raw, want):
    assert normalize_text(raw) == want
    assert normalize_text(want) == want  # idempotent


def test_unnormalized_signs_name_capitals_with_twins_and_punctuation():
    assert unnormalized_signs(["<blank>", "<unk>", "|", "a", "b", "'"]) is None  # boundary and apostrophe are fine
    assert unnormalized_signs(["<blank>", "<unk>", "|", "a", "B"]) is None  # a capital without its twin: no sign
    signs = unnormalized_signs(["<blank>", "<unk>", "|", "a", "A", "e", "E", "b", ",", "?"])
    assert signs == "2 capital(s) beside their lower-case letters (A, E) and 2 punctuation mark(s) or symbol(s) (, ?)"
    assert unnormalized_signs(["<blank>", "a", "\u2019"]) == "1 punctuation mark(s) or symbol(s) (\u2019)"  # not yet U+0027


def _corpus(tmp_path):
    data = tmp_path / "data"
    (data / "wav").mkdir(parents=True)
    audio = data / "wav" / "a.wav"
    audio.write_bytes(b"")  # the copy never opens the audio; its path must stay valid
    write_manifest(data / "it" / "train.jsonl", [
        Utterance(str(audio), 16000, "it", text="Ciao, Mondo!", phones="tʃ a o", id="u1"),
        Utterance(str(audio), 16000, "it", text="...", id="u2"),
        Utterance(str(audio), 16000, "it", text="già fatto", id="u3"),
        Utterance(str(audio), 16000, "it", id="u4"),
    ])
    with open(data / "it" / "train.jsonl", "a") as f:  # a Common Voice line: fields xlsr does not read, no id
        f.write(json.dumps({"audio": "../wav/a.wav", "num_samples": 16000, "lang": "it", "text": "Sì!",
                            "gender": "female", "accent": "Sardinia", "up_votes": 2}) + "\n")
    return data, audio


def test_a_normalized_copy_keeps_the_original_audio_paths_and_phones(tmp_path):
    data, audio = _corpus(tmp_path)
    before = (data / "it" / "train.jsonl").read_text()
    out = tmp_path / "elsewhere" / "norm"
    summary = normalize_corpus(data, out)
    assert (data / "it" / "train.jsonl").read_text() == before  # the original is untouched
    utts = read_manifest(out / "it" / "train.jsonl")
    assert [u.text for u in utts] == ["ciao mondo", "", "già fatto", None, "sì"]
    assert [u.id for u in utts] == ["u1", "u2", "u3", "u4", "a"] and utts[0].phones == "tʃ a o"
    assert all(u.audio == str(audio.resolve()) for u in utts)  # valid from the new folder
    last = json.loads((out / "it" / "train.jsonl").read_text().splitlines()[-1])
    assert last == {"audio": audio.resolve().as_posix(), "num_samples": 16000, "lang": "it", "text": "sì",
                    "gender": "female", "accent": "Sardinia", "up_votes": 2}  # every field kept, nothing added
    assert (summary.utterances, summary.changed, summary.emptied) == (5, 3, ["u2"])
    assert summary.line(out).startswith(f"normalized 3 of 5 texts in 1 manifest(s) into {out}; distinct characters")


def test_normalize_text_cli_and_its_refusals(tmp_path, capsys):
    data, _ = _corpus(tmp_path)
    assert main(["data", "normalize-text", "--data", str(data), "--out", str(tmp_path / "n")]) == 0
    assert "normalized 3 of 5 texts" in capsys.readouterr().out
    for args, words in ((["--data", str(data), "--out", str(data)], "is the data folder itself"),
                        (["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "n2")], "no such data folder")):
        assert main(["data", "normalize-text", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("xlsr: error: ") and words in err and err.count("\n") == 1
    (data / "it" / "train.jsonl").write_text(json.dumps({"audio": "x.wav"}) + "\n")
    with pytest.raises(XlsrError, match=r"train.jsonl:1: missing field"):
        normalize_corpus(data, tmp_path / "n3")


def test_a_vocabulary_spelling_one_letter_two_ways_is_a_sign():
    from xlsr.text.vocab import Vocabulary

    mixed = Vocabulary.build(["caf\u00e9", "cafe\u0301 noir"], "chars")  # é precomposed and e + combining acute
    assert "\u0301" in mixed.tokens and "\u00e9" in mixed.tokens
    sign = unnormalized_signs(mixed.tokens)
    assert sign is not None and "mixing NFC and NFD" in sign
    assert unnormalized_signs(Vocabulary.build(["caf\u00e9 noir"], "chars").tokens) is None
    assert unnormalized_signs(Vocabulary.build(["cafe\u0301 noir"], "chars").tokens) is None  # NFD alone: consistent
