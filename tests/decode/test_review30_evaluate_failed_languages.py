"""`xlsr evaluate` per language when recordings fail: a language whose every recording failed keeps its row (0
utterances, no rate) instead of vanishing from the table and the JSON, and a rate over nothing scored is no rate,
not 0 %."""

import json
import math

import jiwer

from xlsr.data.manifest import Utterance
from xlsr.decode.evaluate import References
from xlsr.decode.transcribe import Failure


def _refs(rows: list[tuple[str, str, str]]) -> References:
    utts = [Utterance(audio=f"/data/{uid}.wav", num_samples=16000, lang=lang, text=text, id=uid)
            for uid, lang, text in rows]
    return References("m", utts, "chars", list(range(len(utts))), [], {}, False)


ROWS = [("e1", "en", "the cat sat"), ("d1", "de", "der hund"), ("e2", "en", "on a mat"), ("d2", "de", "die katze")]


def test_a_language_whose_recordings_all_failed_keeps_its_row_without_a_rate():
    hyps = {"/data/e1.wav": "the cat sad", "/data/e2.wav": "on mat"}
    failures = [Failure(f"/data/{uid}.wav", f"/data/{uid}.wav: not a readable audio file") for uid in ("d1", "d2")]
    report = _refs(ROWS).score(hyps, failures)

    assert report.utterances == {"en": 2, "de": 0}
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data["languages"]) == ["en", "de"]  # in the manifest's order, the failed one too
    assert data["languages"]["de"]["utterances"] == 0
    assert data["languages"]["de"]["wer"]["rate"] is None and data["languages"]["de"]["cer"]["rate"] is None
    assert math.isnan(report.rate("de", "word"))
    rows = {line.split()[0]: line.split() for line in report.table().splitlines()[2:] if not line.startswith("-")}
    assert rows["de"][:4] == ["de", "0", "-", "-"] and rows["de"][8:10] == ["-", "-"]  # no rate, no interval
    # the scored language and the total are what jiwer counts over the scored utterances
    words = jiwer.process_words(["the cat sat", "on a mat"], ["the cat sad", "on mat"])
    assert report.rate("en", "word") == report.rate(None, "word") == words.wer
    assert data["total"]["wer"]["rate"] == words.wer and data["total"]["utterances"] == 2
    assert rows["total"][:2] == ["total", "2"] and rows["total"][8] == f"{100 * words.wer:.2f}"  # the WER column


def test_nothing_scored_is_no_rate_rather_than_zero_percent():
    failures = [Failure(f"/data/{uid}.wav", "unreadable") for uid, _, _ in ROWS]
    report = _refs(ROWS).score({}, failures)

    data = report.to_dict()
    assert data["total"]["utterances"] == 0
    assert data["total"]["cer"]["rate"] is None and data["total"]["wer"]["rate"] is None
    assert math.isnan(report.rate(None, "char"))
    total = report.table().splitlines()[-1].split()
    assert total[:3] == ["total", "0", "-"] and "0.00" not in total
