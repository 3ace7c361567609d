"""A manifest whose lines name another language than its folder (DIR/<lang>/<split>.jsonl: a manifest copied into
another language's folder, an import given the wrong --lang) is said: `--langs fi` would otherwise bring in `en`."""

import json
import logging

from xlsr.data.index_cache import open_split


def _manifest(path, lang: str, n: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"audio": f"/nowhere/{i}.wav", "num_samples": 32000, "lang": lang}) + "\n"
                            for i in range(n)))


def test_lines_of_another_language_than_the_folder_are_said(tmp_path, caplog):
    _manifest(tmp_path / "fi" / "train.jsonl", "en")
    _manifest(tmp_path / "sw" / "train.jsonl", "sw")
    with caplog.at_level(logging.WARNING):
        utts = open_split(tmp_path, "train", ["fi", "sw"])
    assert utts.langs == ("en", "sw")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'fi' / 'train.jsonl'}: its lines say language en, not fi (its folder's name): they are trained, "
        "sampled and scored as en"]


def test_lines_of_the_folders_language_say_nothing(tmp_path, caplog):
    _manifest(tmp_path / "fi" / "train.jsonl", "fi")
    with caplog.at_level(logging.WARNING):
        open_split(tmp_path, "train")
    assert not caplog.records
