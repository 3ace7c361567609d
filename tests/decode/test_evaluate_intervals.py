"""`xlsr evaluate` gives each rate a 95% bootstrap interval (table column `95%-CI`, JSON `interval_95`): over the
utterances of its language, and for the total each language resampled within itself; none for one utterance. A
15-utterance test set moved a PER by several points between runs of the demo (docs/demo/investigation.md)."""

import json

from xlsr.data.manifest import Utterance
from xlsr.decode.evaluate import References
from xlsr.text.bootstrap import rate_interval
from xlsr.text.metrics import utterance_counts

ROWS = [("e1", "en", "the cat sat", "the cat sad"), ("e2", "en", "on a mat", "on mat"),
        ("e3", "en", "a dog ran", "a dog ran"), ("d1", "de", "der hund", "der hunt"), ("d2", "de", "die katze", "die"),
        ("x1", "fr", "le chat", "le chat")]


def _report():
    utts = [Utterance(audio=f"/data/{uid}.wav", num_samples=16000, lang=lang, text=text, id=uid)
            for uid, lang, text, _ in ROWS]
    refs = References("m", utts, "chars", list(range(len(utts))), [], {}, False)
    return refs.score({f"/data/{uid}.wav": hyp for uid, _, _, hyp in ROWS}, [])


def test_each_rate_has_the_bootstrap_interval_of_its_own_utterances_and_the_total_of_each_language_within_itself():
    report = _report()
    data = json.loads(json.dumps(report.to_dict()))
    for unit, key in (("char", "cer"), ("word", "wer")):
        counts = [(lang, utterance_counts(ref, hyp, unit)) for _, lang, ref, hyp in ROWS]
        en = [c for lang, c in counts if lang == "en"]
        assert data["languages"]["en"][key]["interval_95"] == \
            [round(v, 6) for v in rate_interval([c.errors for c in en], [c.ref_len for c in en])]
        assert data["total"][key]["interval_95"] == [round(v, 6) for v in rate_interval(
            [c.errors for _, c in counts], [c.ref_len for _, c in counts], [lang for lang, _ in counts])]
        assert data["languages"]["fr"][key]["interval_95"] is None  # one utterance: no spread to measure
    low, high = data["total"]["cer"]["interval_95"]
    assert low <= data["total"]["cer"]["rate"] <= high and low < high


def test_the_table_shows_each_interval_beside_its_rate():
    report = _report()
    rows = {line.split()[0]: line.split() for line in report.table().splitlines() if not line.startswith("-")}
    assert rows["language"][:5] == ["language", "utts", "CER", "%", "95%-CI"]
    low, high = report.interval("en", "char")
    assert rows["en"][3] == f"{100 * low:.1f}-{100 * high:.1f}" and rows["fr"][3] == "-"
