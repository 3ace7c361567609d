"""One character model over several languages at once (French typed NFC and NFD, capitals, digits, punctuation,
Russian, Japanese): its vocabulary, the greedy transcript's text, and CER/WER per language against counts made by
hand and against a plain edit distance written here."""

import json
import unicodedata
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from _constant_ctc import constant_model

from xlsr.cli.main import main
from xlsr.data.manifest import Utterance
from xlsr.decode.evaluate import References, normalize_hypothesis
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.transcribe import load_ctc_model
from xlsr.text.labels import build_vocabulary
from xlsr.text.metrics import EditCounts
from xlsr.text.normalize import normalize_text
from xlsr.text.vocab import Vocabulary


def nfd(text):
    return unicodedata.normalize("NFD", text)


def distance(ref, hyp):
    """Levenshtein distance of two sequences, the textbook table."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row = row, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[-1]


def chars(text):
    """The characters CER counts: NFC code points, spaces left out, `<unk>` one symbol."""
    return [c for c in unicodedata.normalize("NFC", text.replace("<unk>", "\ufdd0")).replace(" ", "")]


def words(text):
    return unicodedata.normalize("NFC", text).split()


# (lang, reference, hypothesis): hypotheses as a model trained on lower-case text might write them
PAIRS = [
    ("fr", nfd("été à Paris"), "ete a paris"),  # the reference typed decomposed
    ("fr", "Où 12 élèves ?", "ou 12 élèves"),
    ("ru", "Привет, мир!", "привет мир"),
    ("ja", "東京へ行く", "東京<unk>行く"),  # the only Japanese utterance; a script without spaces
]
UNSCORED = [("ru", ""), ("de", "   ")]  # no reference: skipped, and de has no row


def references(normalize):
    rows = PAIRS + [(lang, ref, None) for lang, ref in UNSCORED]
    utts = [Utterance(f"/x/{k}.wav", 16000, lang, text=ref, id=f"u{k}") for k, (lang, ref, _) in enumerate(rows)]
    vocab = Vocabulary.build([normalize_text(ref) for _, ref, _ in PAIRS], "chars")
    refs = References.of(SimpleNamespace(vocab=vocab, source="m"), utts, "chars", normalize)
    return refs, {f"/x/{k}.wav": hyp for k, (_, _, hyp) in enumerate(PAIRS)}


@pytest.mark.parametrize("normalize, want", [
    (False, {"fr": {"char": EditCounts(6, 1, 0, 20), "word": EditCounts(4, 1, 0, 7)},
             "ru": {"char": EditCounts(1, 2, 0, 11), "word": EditCounts(2, 0, 0, 2)},
             "ja": {"char": EditCounts(1, 0, 0, 5), "word": EditCounts(1, 0, 0, 1)}}),
    (True, {"fr": {"char": EditCounts(4, 0, 0, 19), "word": EditCounts(3, 0, 0, 6)},
            "ru": {"char": EditCounts(0, 0, 0, 9), "word": EditCounts(0, 0, 0, 2)},
            "ja": {"char": EditCounts(1, 0, 0, 5), "word": EditCounts(1, 0, 0, 1)}}),
])
def test_counts_per_language_are_those_made_by_hand(normalize, want):
    refs, hyps = references(normalize)
    report = refs.score(hyps, [])
    assert report.counts == want
    assert report.utterances == {"fr": 2, "ru": 1, "ja": 1} and report.no_reference == ["u4", "u5"]
    assert report.total["char"] == sum((w["char"] for w in want.values()), EditCounts())
    assert report.rate("ja", "char") == pytest.approx(1 / 5) and report.unspaced == ["ja"]
    # each utterance's errors are the plain edit distance of its characters and of its words
    for lang in want:
        pairs = [(r, h) for la, r, h in PAIRS if la == lang]
        if normalize:
            pairs = [(normalize_text(r, lang), normalize_hypothesis(h, lang)) for r, h in pairs]
        assert report.counts[lang]["char"].errors == sum(distance(chars(r), chars(h)) for r, h in pairs)
        assert report.counts[lang]["word"].errors == sum(distance(words(r), words(h)) for r, h in pairs)
    # the hypotheses file holds what was scored: NFC, the decomposed reference composed
    assert report.hypotheses[0]["ref"] == ("été à paris" if normalize else "été à Paris")


def test_a_vocabulary_of_three_languages_and_the_greedy_text_of_its_tokens():
    fr = [Utterance("/x/a.wav", 16000, "fr", text="L'été 2024, à Paris.")]
    ru = [Utterance("/x/b.wav", 16000, "ru", text="Ёж и ёж")]
    ja = [Utterance("/x/c.wav", 16000, "ja", text="東京へ")]
    vocab = build_vocabulary({"fr.jsonl": fr, "ru.jsonl": ru, "ja.jsonl": ja}, "chars")
    assert vocab.tokens[:3] == ["<blank>", "<unk>", "|"] and vocab.kind == "chars"
    assert set(vocab.tokens[3:]) == set("L'été2024,àParis.Ёжиё東京へ") - {" "}
    # e and a combining acute from the model read as é, a word boundary as a space, repeats collapsed
    loose = Vocabulary([*vocab.tokens, "e", "\u0301"], "chars")
    spec = ["e", "\u0301", "t", "e", "e", "\u0301", "|", "|", "ё", "ж", "<unk>"]
    logits = torch.full((len(spec), len(loose)), -20.0)
    for t, token in enumerate(spec):
        logits[t, loose.index(token)] = 0.0
    hyp = greedy_decode(logits[None], vocab=loose)[0].text
    assert hyp == nfd("été") + " ёж<unk>"
    report = References("m", [Utterance("/x/a.wav", 16000, "ru", text="été ёжик", id="a")], "chars", [0], [], {},
                        False).score({"/x/a.wav": hyp}, [])
    assert report.counts["ru"] == {"char": EditCounts(1, 1, 0, 7), "word": EditCounts(1, 0, 0, 2)}


def test_evaluate_transcribe_and_export_read_the_vocabulary_the_checkpoint_holds(tmp_path, capsys, one_thread):
    vocab = Vocabulary.build(["été Noël", nfd("crème"), "ёж", "東京"], "chars")  # é and a loose grave: both
    ckpt = constant_model(tmp_path / "model", vocab.tokens, "é", "chars")  # every frame says é
    assert load_ctc_model(ckpt).vocab == vocab
    rows = [("fr", nfd("éte")), ("fr", "Noël"), ("ru", "ёж"), ("ja", "東京"), ("de", "")]
    lines = []
    for k, (lang, text) in enumerate(rows):
        sf.write(tmp_path / f"u{k}.wav", 0.1 * np.sin(np.arange(8000) / 5.0).astype(np.float32), 16000)
        lines.append(json.dumps({"id": f"u{k}", "audio": f"u{k}.wav", "num_samples": 8000, "lang": lang,
                                 "text": text}, ensure_ascii=False))
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, hyps = tmp_path / "report.json", tmp_path / "hyps.jsonl"
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(manifest), "--json", str(out),
                 "--hyps", str(hyps), "--no-progress", "--decode-workers", "0"]) == 0
    assert "1 utterance(s) without a reference were skipped (e.g. u4)" in capsys.readouterr().err
    data = json.loads(out.read_text(encoding="utf-8"))

    def sdi(c):
        return c["substitutions"], c["deletions"], c["insertions"], c["ref_len"]

    # fr: éte against é (2 deletions) and Noël against é (1 substitution, 3 deletions); ru, ja: one each of both
    got = {lang: (sdi(v["cer"]), sdi(v["wer"])) for lang, v in data["languages"].items()}
    assert got == {"fr": ((1, 5, 0, 7), (2, 0, 0, 2)), "ru": ((1, 1, 0, 2), (1, 0, 0, 1)),
                   "ja": ((1, 1, 0, 2), (1, 0, 0, 1))}
    assert sdi(data["total"]["cer"]) == (3, 7, 0, 11) and data["total"]["utterances"] == 4
    scored = [json.loads(line) for line in hyps.read_text(encoding="utf-8").splitlines()]
    assert scored[0] == {"id": "u0", "lang": "fr", "ref": "éte", "hyp": "é"}  # NFC
    # transcribe gives the same text
    listing = tmp_path / "out.jsonl"
    assert main(["transcribe", "--model", str(ckpt), str(tmp_path / "u0.wav"), "--out", str(listing),
                 "--no-progress", "--decode-workers", "0"]) == 0
    assert json.loads(listing.read_text(encoding="utf-8"))["text"] == "é"
    # transformers' vocab.json: the same tokens at the same ids, the blank as its <pad>
    assert main(["convert", str(ckpt), str(tmp_path / "hf"), "--to", "hf"]) == 0
    exported = json.loads((tmp_path / "hf" / "vocab.json").read_text(encoding="utf-8"))
    assert exported == {("<pad>" if t == "<blank>" else t): i for i, t in enumerate(vocab.tokens)}


def test_an_apostrophe_beside_unk_stays_in_the_word_as_beside_the_letter_in_the_reference():
    assert normalize_hypothesis("L’<unk>ALBERO <unk>'", "it") == "l'<unk>albero <unk>"
    utts = [Utterance("/x/a.wav", 16000, "it", text="L’ẞALBERO", id="a")]  # ẞ: outside the model's vocabulary
    report = References("m", utts, "chars", [0], [], {}, True).score({"/x/a.wav": "l'<unk>albero"}, [])
    assert report.counts["it"] == {"char": EditCounts(1, 0, 0, 9), "word": EditCounts(1, 0, 0, 1)}
