"""Equal audio per language: the sample budget, the default amount and the too-little-audio error."""

import re
from dataclasses import dataclass

import numpy as np
import pytest

from xlsr.analysis.selection import (
    Clip,
    available_seconds,
    check_audio_read,
    seconds_per_language,
    select_clips,
)
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
    with pytest.raises(XlsrError, match=r"data/b/train.jsonl: language 'b' has no audio \(no utterances of at least"):
        seconds_per_language({"a": 30.0, "b": 0.0}, None, max_seconds=600, manifests={"b": "data/b/train.jsonl"})


def test_utterances_too_short_for_a_frame_are_not_available_audio(tmp_path):
    utts = [Utt("a.wav", 16000)] + [Utt(f"s{i}.wav", 320) for i in range(50)] + [Utt("b.wav", 400)]
    assert available_seconds(utts, min_samples=400) == 16400 / 16000
    write_manifest(tmp_path / "train.jsonl", [Utterance(str(tmp_path / u.audio), u.num_samples, "xx", id=u.audio)
                                              for u in utts])
    assert available_seconds(open_manifest(tmp_path / "train.jsonl"), min_samples=400) == 16400 / 16000
    # so the amount asked of the language is what select_clips can give it
    seconds = seconds_per_language({"a": 30.0, "de": available_seconds(utts, min_samples=400)}, None,
                                   max_seconds=600)
    assert sum(c.num_samples for c in select_clips(utts, seconds, seed=0, min_samples=400)) == 16400


def test_an_unreadable_utterance_is_replaced_by_the_next_in_the_seeded_order():
    utts = [Utt(f"u{i}.wav", n) for i, n in enumerate([16000, 8000, 24000, 12000, 4000, 16000])]
    plain = select_clips(utts, 2.5, seed=3)
    bad, short = plain[0].utterance.audio, plain[1].utterance.audio

    def read(clip):  # the first chosen file cannot be read, the second holds half the audio its manifest says
        if clip.utterance.audio == bad:
            return None
        n = clip.num_samples // 2 if clip.utterance.audio == short else clip.num_samples
        return Clip(clip.utterance, n, np.zeros(n))

    clips = select_clips(utts, 2.5, seed=3, read=read)
    assert bad not in [c.utterance.audio for c in clips]
    assert sum(c.num_samples for c in clips) == 40000  # the budget is still met
    assert all(c.audio.shape[0] == c.num_samples for c in clips)
    order = [c.utterance.audio for c in select_clips(utts, 99.0, seed=3)]  # the seeded order of all of them
    assert [c.utterance.audio for c in clips] == [a for a in order if a != bad][: len(clips)]


def test_audio_read_short_of_the_budget_by_more_than_a_receptive_field_is_one_line():
    check_audio_read({"a": 16000, "b": 16000 - 400}, 1.0, min_samples=400)  # a dropped leftover: fine
    with pytest.raises(XlsrError) as info:
        check_audio_read({"a": 16000, "b": 16000 - 401}, 1.0, min_samples=400, manifests={"b": "data/b/train.jsonl"})
    message = str(info.value)
    assert "\n" not in message and message.startswith("data/b/train.jsonl: language 'b'")
    assert "0.97 s" in message and "1.00 s" in message


def test_the_two_amounts_in_a_message_differ():
    for have, need in ((1.99, 2.0), (31999 / 16000, 2.0)):
        with pytest.raises(XlsrError) as info:
            seconds_per_language({"a": 5.0, "b": have}, need, max_seconds=600)
        shown = re.findall(r"([0-9.]+) s\b", str(info.value))
        assert len(shown) == 2 and shown[0] != shown[1], str(info.value)


def test_an_amount_below_the_receptive_field_is_rejected():
    with pytest.raises(XlsrError, match=r"^--seconds-per-lang: give at least 0.025 s .* got 0.02$"):
        seconds_per_language({"a": 30.0, "b": 12.5}, 0.02, max_seconds=600, min_samples=400)
