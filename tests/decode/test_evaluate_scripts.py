"""Evaluation of transcripts in many scripts: symbols the model spells in another Unicode form, `<unk>` outputs under
--normalize-text, and the WER of scripts written without spaces."""

import unicodedata
from types import SimpleNamespace as Utt

from xlsr.decode.evaluate import References
from xlsr.text.metrics import EditCounts
from xlsr.text.vocab import Vocabulary


def _model(tokens, kind="chars"):
    return Utt(vocab=Vocabulary(["<blank>", "<unk>", "|", *tokens], kind=kind), source="model")


def _refs(texts, lang="xx"):
    return [Utt(id=str(k), audio=f"/x/{k}.wav", lang=lang, text=t, phones=None) for k, t in enumerate(texts)]


def test_symbols_the_model_spells_in_another_unicode_form_are_not_outside_its_vocabulary():
    nfd = unicodedata.normalize("NFD", "café tiếng")
    decomposed = _model(sorted(set(nfd.replace(" ", ""))))  # e, combining acute, circumflex, ...
    assert References.of(decomposed, _refs(["café tiếng"]), "chars", False).oov == {}
    composed = _model(list("cafétiếng"))
    assert References.of(composed, _refs([nfd]), "chars", False).oov == {}
    partly = _model(list("ctiêng\u0301"))  # ế typed as ê and an acute, as Vietnamese keyboards do
    assert References.of(partly, _refs(["tiếng"]), "chars", False).oov == {}
    # a letter no run of tokens spells is still reported, under its NFC form
    assert References.of(composed, _refs(["z\u0301 é"]), "chars", False).oov == {"\u017a": 1}
    phones = Vocabulary(["<blank>", "<unk>", unicodedata.normalize("NFD", "ã"), "t"], kind="phones")
    utts = [Utt(id="1", audio="/x/1.wav", lang="xx", phones="t ã a\u0303\u0301", text=None)]
    assert References.of(Utt(vocab=phones, source="m"), utts, "phones", False).oov == {"\u00e3\u0301": 1}


def test_an_unk_output_stays_one_character_under_normalize_text():
    utts = _refs(["Ab cd."])
    raw = References("m", _refs(["ab cd"]), "chars", scored=[0], missing=[], oov={}, normalize=False)
    norm = References("m", utts, "chars", scored=[0], missing=[], oov={}, normalize=True)
    for refs, hyp in ((raw, "a<unk> cd"), (norm, "A<unk> CD!")):
        report = refs.score({"/x/0.wav": hyp}, [])
        assert report.total["char"] == EditCounts(1, 0, 0, 4) and report.total["word"] == EditCounts(1, 0, 0, 2)
    assert norm.score({"/x/0.wav": "A<unk> CD!"}, []).hypotheses[0]["hyp"] == "a<unk> cd"


def test_the_wer_of_a_script_written_without_spaces_is_flagged_beside_the_table():
    utts = _refs(["今日は良い天気", "你好世界"], "ja") + _refs(["hello world"], "en")
    utts[1].lang, utts[2].audio = "zh", "/x/2.wav"
    refs = References("m", utts, "chars", scored=[0, 1, 2], missing=[], oov={}, normalize=False)
    report = refs.score({"/x/0.wav": "今日は良い天気", "/x/1.wav": "你好世介", "/x/2.wav": "hello world"}, [])
    assert report.counts["zh"]["word"].rate == 1.0 and report.counts["zh"]["char"].rate == 0.25
    assert sorted(report.unspaced) == ["ja", "zh"]
    assert report.table().splitlines()[-1] == ("WER of ja, zh: written without spaces between words, so its words "
                                               "are whole phrases; CER is the rate to compare")
    spaced = References("m", utts[2:], "chars", scored=[0], missing=[], oov={}, normalize=False)
    assert "WER of" not in spaced.score({"/x/2.wav": "hello"}, []).table()


def test_half_width_katakana_is_a_script_without_spaces_and_the_json_names_the_phrase_level_wer():
    utts = _refs(["ｺﾝﾆﾁﾊ ｾｶｲ", "hello world"], "ja")
    utts[1].lang = "en"
    refs = References("m", utts, "chars", scored=[0, 1], missing=[], oov={}, normalize=False)
    report = refs.score({"/x/0.wav": "ｺﾝﾆﾁﾊ ｾｶｲ", "/x/1.wav": "hello world"}, [])
    assert report.unspaced == ["ja"] and report.to_dict()["unspaced"] == ["ja"]
    assert report.table().splitlines()[-1].startswith("WER of ja: written without spaces")
