"""`xlsr data normalize-text`'s summary: "N became empty" counts only texts that normalisation emptied."""

import json

from xlsr.data.normalize_corpus import normalize_corpus


def test_only_texts_emptied_by_normalisation_are_reported_as_emptied(tmp_path):
    data = tmp_path / "data"
    (data / "es").mkdir(parents=True)
    texts = {"u1": "¡¿...!?", "u2": "", "u3": "Hola.", "u4": "   "}
    (data / "es" / "train.jsonl").write_text("".join(
        json.dumps({"id": uid, "audio": "/abs/a.wav", "num_samples": 16000, "lang": "es", "text": text}) + "\n"
        for uid, text in texts.items()))
    summary = normalize_corpus(data, tmp_path / "out")
    assert summary.emptied == ["u1"]  # u2 and u4 had no words before: nothing was lost
    assert summary.changed == 3 and summary.utterances == 4
    assert "1 became empty (e.g. u1" in summary.line(tmp_path / "out")
