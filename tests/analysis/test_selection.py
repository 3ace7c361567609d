"""Equal audio per language: the sample budget, the default amount and the too-little-audio error."""

from dataclasses import dataclass

import numpy as np
import pytest

from xlsr.analysis.selection import available_seconds, seconds_per_language, select_clips
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.errors import XlsrError


@dataclass
class Utt:
    audio: str
    num_samples: int


def test_clips_add_up_to_the_budget_and_are_seeded():
    utts = [Utt(f"u{i}.wav", n) for i, n in enumerate([16000, 8000, 24000, 12000, 4000])]
    clips = select_clips(utts, 2.5, seed=3)
    assert sum(c.num_samples for c in clips) == 40000
    assert all(c.num_samples <= c.utterance.num_samples for c in clips)
    assert len({c.utterance.audio for c in clips}) == len(clips)
    again = select_clips(utts, 2.5, seed=3)
    assert [(c.utterance.audio, c.num_samples) for c in again] == [(c.utterance.audio, c.num_samples) for c in clips]
    other = [select_clips(utts, 2.5, seed=s)[0].utterance.audio for s in range(10)]
    assert len(set(other)) > 1  # the order depends on the seed


def test_an_index_gives_the_clips_a_list_of_utterances_gives(tmp_path):
    rng = np.random.default_rng(0)
    write_manifest(tmp_path / "train.jsonl", [Utterance(str(tmp_path / f"u{i}.wav"), int(rng.integers(300, 40000)),
                                                        "xx", id=f"u{i}") for i in range(200)])
    listed, index = read_manifest(tmp_path / "train.jsonl"), open_manifest(tmp_path / "train.jsonl")
    assert available_seconds(index) == available_seconds(listed) == sum(u.num_samples for u in listed) / 16000
    for seed in range(3):
        expected = [(c.utterance, c.num_samples) for c in select_clips(listed, 30.0, seed=seed)]
        assert [(c.utterance, c.num_samples) for c in select_clips(index, 30.0, seed=seed)] == expected


def test_leftover_below_receptive_field_is_dropped():
    utts = [Utt("a.wav", 16000), Utt("b.wav", 16000)]
    clips = select_clips(utts, 1.0 + 100 / 16000, seed=0, min_samples=400)
    assert [c.num_samples for c in clips] == [16000]


def test_default_amount_is_smallest_language_capped():
    assert seconds_per_language({"a": 30.0, "b": 12.5}, None, max_seconds=600) == 12.5
    assert seconds_per_language({"a": 3000.0, "b": 1200.0}, None, max_seconds=600) == 600
    assert seconds_per_language({"a": 30.0, "b": 12.5}, 10.0, max_seconds=600) == 10.0


def test_too_little_audio_is_one_clear_line():
    with pytest.raises(XlsrError) as info:
        seconds_per_language({"a": 30.0, "b": 12.5}, 20.0, max_seconds=600, manifests={"b": "data/b/train.jsonl"})
    message = str(info.value)
    assert "\n" not in message
    assert "data/b/train.jsonl" in message and "'b'" in message and "12.5 s" in message and "20.0 s" in message


def test_non_positive_amount_is_rejected():
    with pytest.raises(XlsrError, match="--seconds-per-lang"):
        seconds_per_language({"a": 30.0, "b": 12.5}, 0.0, max_seconds=600)



def test_a_language_without_audio_is_named_as_empty():
    with pytest.raises(XlsrError, match=r"data/b/train.jsonl: language 'b' has no audio \(no utterances\)"):
        seconds_per_language({"a": 30.0, "b": 0.0}, None, max_seconds=600, manifests={"b": "data/b/train.jsonl"})
