"""Real-world data with a few uncut recordings (an hour-long file among clips): what bounds memory."""

import json
import logging
from pathlib import Path

import pytest
from train._tones import write_tone_corpus

from xlsr.errors import XlsrError
from xlsr.train.finetune import FinetuneConfig, FinetuneTask

SMALL = {"conv_layers": [[64, 10, 5]] + [[64, 3, 2]] * 4 + [[64, 2, 2]] * 2, "hidden_size": 64,
         "num_layers": 2, "num_heads": 2, "ffn_dim": 256, "conv_pos": 32, "conv_pos_groups": 4}
MAX_TOKENS = 160_000
DEV_LENGTH_FACTOR = 4  # finetune_data.DEV_LENGTH_FACTOR: dev utterances up to 4 × max_tokens are validated

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return write_tone_corpus(root, "train", 16, seed=1), write_tone_corpus(root, "dev", 4, seed=2)


def _with_uncut_recording(dev: Path, out: Path, num_samples: int, only: bool = False) -> Path:
    """`dev` (or, with `only`, none of its lines) plus a line for a recording of `num_samples` (its audio one of
    dev's short files: the length is never decoded before validation, and the test allocates nothing big)."""
    rows = [json.loads(x) for x in dev.read_text().splitlines()]
    rows = [{**r, "audio": str(dev.parent / r["audio"])} for r in rows]
    uncut = {**rows[0], "id": "uncut", "num_samples": num_samples, "phones": " ".join(["a i u"] * 10)}
    out.write_text("".join(json.dumps(r) + "\n" for r in [*([] if only else rows), uncut]))
    return out


def _config(train: Path, dev: Path, tmp_path: Path) -> FinetuneConfig:
    return FinetuneConfig(train=[str(train)], dev=[str(dev)], out=str(tmp_path / "run"), model=SMALL,
                          max_tokens=MAX_TOKENS, max_updates=1, progress=False, tensorboard=False)


def test_an_hour_long_dev_recording_is_left_out_of_validation_with_a_line_naming_it(tones, tmp_path, caplog):
    train, dev = tones
    hour = 3600 * 16000
    long_dev = _with_uncut_recording(dev, tmp_path / "dev.jsonl", hour)
    with caplog.at_level(logging.WARNING):
        task = FinetuneTask(_config(train, long_dev, tmp_path))
    # validated: the 4 clips, not the hour (one forward pass over it: tens of GB at base, CTC's lattice more)
    assert len(task.data.dev_utts["xx"]) == 4 and "uncut" not in [task.data.dev_utts["xx"].utterance_id(i) for i in range(4)]
    warned = [r.getMessage() for r in caplog.records if "left out of validation" in r.getMessage()]
    assert warned == [f"{long_dev}: 1 dev utterance(s) longer than {DEV_LENGTH_FACTOR * MAX_TOKENS} samples (40 s: "
                      f"4 × max_tokens) left out of validation, which takes an utterance whole in one forward pass "
                      f"(the longest: {long_dev}:5, 3600.0 s); cut such recordings into utterances, or raise "
                      f"--max-tokens"]
    report = task.data.report()["longer_than_limit"]
    assert report["dev_skipped"] == {str(long_dev): 1} and report["dev_validated"] == {}


def test_a_dev_utterance_a_few_times_max_tokens_is_still_validated_whole(tones, tmp_path, caplog):
    train, dev = tones
    long_dev = _with_uncut_recording(dev, tmp_path / "dev.jsonl", DEV_LENGTH_FACTOR * MAX_TOKENS)
    with caplog.at_level(logging.WARNING):
        task = FinetuneTask(_config(train, long_dev, tmp_path))
    assert len(task.data.dev_utts["xx"]) == 5
    assert not [r for r in caplog.records if "left out of validation" in r.getMessage()]
    report = task.data.report()["longer_than_limit"]
    assert report["dev_validated"] == {str(long_dev): 1} and "dev_skipped" not in report


def test_a_dev_set_of_only_an_uncut_recording_is_refused_before_training_saying_why(tones, tmp_path):
    train, dev = tones
    long_dev = _with_uncut_recording(dev, tmp_path / "dev.jsonl", 3600 * 16000, only=True)
    with pytest.raises(XlsrError, match=r"^dev: no utterance is left to validate on \(.*; 1 longer than "
                                        r"4 × max_tokens\)$"):
        FinetuneTask(_config(train, long_dev, tmp_path))


def test_the_probe_leaves_out_an_utterance_longer_than_one_forward_pass_holds(tones, tmp_path, caplog):
    """(`xlsr probe` ran an hour-long file whole: an 11.8 GB allocation at `tiny` and a traceback, which its memory
    estimate, bounding a batch by --max-batch-samples, said could not happen)"""
    from xlsr.analysis.probe_features import read_labeled

    _, dev = tones
    manifest = _with_uncut_recording(dev, tmp_path / "with_uncut.jsonl", 57_600_000)
    with caplog.at_level(logging.WARNING, logger="xlsr.analysis.probe_features"):
        data = read_labeled(manifest, "phones", min_samples=400, max_samples=960_000)
    assert "uncut" not in data.ids and len(data.ids) == 4 and data.skipped == 1
    assert "1 utterance(s) longer than --max-batch-samples (960000) left out" in caplog.text
    assert "(the longest: line 5, 3600.0 s)" in caplog.text
    with pytest.raises(XlsrError, match=r"none of its 1 utterances could be read \(.*, or longer than 960000\)"):
        read_labeled(_with_uncut_recording(dev, tmp_path / "only.jsonl", 57_600_000, only=True), "phones",
                     min_samples=400, max_samples=960_000)
