"""A resume whose languages differ from the checkpoint's (one added, one left out with --langs) says so in those
words, not as manifests "changed since the checkpoint was written (re-imported?)"."""

import json
import logging

from xlsr.data.batching import pretrain_loader
from xlsr.data.index_cache import open_split


def _manifest(path, lang: str, n: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"audio": f"/nowhere/{lang}{i}.wav", "num_samples": 32000, "lang": lang})
                            + "\n" for i in range(n)))


def _loader(root, langs):
    return pretrain_loader(open_split(root, "train", langs), max_tokens=200_000, min_sample_size=16000,
                           max_sample_size=32000)


def test_a_language_added_and_one_left_out_are_named_as_such(tmp_path, caplog):
    for lang in ("en", "fi", "sw"):
        _manifest(tmp_path / lang / "train.jsonl", lang)
    state = _loader(tmp_path, ["en", "fi"]).state_dict()
    with caplog.at_level(logging.WARNING):
        _loader(tmp_path, ["en", "sw"]).load_state_dict(state)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (f"{tmp_path / 'sw' / 'train.jsonl'} added since the checkpoint; {tmp_path / 'fi' / 'train.jsonl'} "
                       "left out since the checkpoint: epoch 0 resumes at batch 0 in the order of the new data, its bad "
                       "files counted anew")
