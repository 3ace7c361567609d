"""Bad audio files watched per language: α-resampling draws few files of a small language, so all of them can be
unreadable (a path or mount gone) while the epoch stays under max_bad_share. The run stops naming the language and
its manifest where its files are enough to tell (at least 1 / max_bad_share), else, and with max_bad_share=1, goes
on with one warning per epoch; a language that only loses more than
max_bad_share of its files is warned about once per epoch. An epoch whose every file is bad says so."""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.batching import pretrain_loader
from xlsr.data.index_cache import open_split
from xlsr.errors import XlsrError

LOADER = dict(max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0, alpha=1.0)


def _language(data, lang: str, count: int, bad: int = 0) -> None:
    """DIR/<lang>/train.jsonl listing `count` files of noise, the first `bad` of them not audio."""
    folder = data / lang / "wav"
    folder.mkdir(parents=True)
    lines = []
    for k in range(count):
        path = folder / f"{k}.wav"
        if k < bad:
            path.write_text("garbage")
        else:
            sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(4000)).astype(np.float32), 16000)
        lines.append(json.dumps({"audio": f"wav/{k}.wav", "num_samples": 4000, "lang": lang}))
    (data / lang / "train.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def lost_language(tmp_path):
    """100 good `es` files and the 10 files of `xx`, all unreadable: 10 of 110, under max_bad_share 20%."""
    _language(tmp_path, "es", 100)
    _language(tmp_path, "xx", 10, bad=10)
    return tmp_path


@pytest.fixture
def few_lost(tmp_path):
    """100 good `es` files and the 3 files of `xx`, all unreadable: 3 of 103, under max_bad_share 5%."""
    _language(tmp_path, "es", 100)
    _language(tmp_path, "xx", 3, bad=3)
    return tmp_path


def _language_warnings(caplog, lang: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"language {lang}:")]


def test_a_language_whose_files_are_all_bad_stops_the_run_naming_it_and_its_manifest(lost_language):
    manifest = str(lost_language / "xx" / "train.jsonl")
    loader = pretrain_loader(open_split(lost_language, "train"), **LOADER, max_bad_share=0.2)
    assert loader.distinct_files_in_epoch() > 100  # the epoch draws (nearly) all ten xx files: 9% of it
    with pytest.raises(XlsrError, match=r"^language xx: every one of (9|10) xx audio files in epoch 0 is bad .*the run "
                                        r"would go on without xx; check the audio paths of (\S+), or leave xx out") as e:
        list(loader)
    assert manifest in str(e.value) and "\n" not in str(e.value)


def test_under_ddp_the_language_stop_names_the_rank_whose_part_it_counts(lost_language):
    loader = pretrain_loader(open_split(lost_language, "train"), **LOADER, max_bad_share=0.2, rank=0, world_size=2)
    with pytest.raises(XlsrError, match=r"^language xx: every one of the [5-9] xx audio files rank 0 of 2 reads in "
                                        r"epoch 0 is bad"):
        list(loader)


def test_the_language_count_survives_a_resume(lost_language):
    """The stop comes at the last xx file, also when the first was found before the checkpoint."""
    utts = open_split(lost_language, "train")
    first = pretrain_loader(utts, **LOADER, max_bad_share=0.2)
    for _ in first:
        if first.epoch_bad_files:
            break
    state = first.state_dict()
    assert len(state["bad_indices"]) == 1 and state["position"] < len(first)
    resumed = pretrain_loader(utts, **LOADER, max_bad_share=0.2)
    resumed.load_state_dict(state)
    with pytest.raises(XlsrError, match=r"^language xx: every one of (9|10) xx audio files in epoch 0 is bad"):
        list(resumed)


def test_too_few_files_to_tell_a_lost_language_from_damaged_files_go_on_with_a_warning(few_lost, caplog):
    """3 xx files all bad at 5%: fewer than 1 / 0.05 = 20, which one rank may draw of a language with a few damaged
    files: the run goes on (3 of 103 files, under the cap) and says xx is missing from the mixture."""
    loader = pretrain_loader(open_split(few_lost, "train"), **LOADER, max_bad_share=0.05)
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        list(loader)
    assert loader.epoch_bad_files == 3
    manifest = few_lost / "xx" / "train.jsonl"
    assert _language_warnings(caplog, "xx") == [
        "language xx: 1 of 3 xx audio files in epoch 0 is bad, more than max_bad_share=0.05 of the language: its "
        f"share of the language mixture shrinks ({manifest})",
        f"language xx: 3 of 3 xx audio files in epoch 0 are bad: xx is missing from the epoch's language mixture "
        f"({manifest})"]


def test_max_bad_share_1_lets_a_lost_language_go_on_with_one_warning_per_epoch(few_lost, caplog):
    lost_language = few_lost
    utts = open_split(lost_language, "train")
    loader = pretrain_loader(utts, **LOADER, max_bad_share=1.0)
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            rows = sum(len(b.waveforms) for b in loader)
            es_draws = sum(utts.lang(i) == "es" for p in loader.plans() for i in p.indices)
            assert (rows, loader.epoch_bad_files) == (es_draws, 3)  # every es draw is trained on
    manifest = str(lost_language / "xx" / "train.jsonl")
    assert _language_warnings(caplog, "xx") == [
        f"language xx: 3 of 3 xx audio files in epoch {e} are bad: xx is missing from the epoch's language mixture "
        f"({manifest})" for e in (0, 1)]


def test_a_language_losing_more_than_max_bad_share_of_its_files_is_warned_about_once(tmp_path, caplog):
    """α = 0 draws the 10 xx files ~10 times each: 1 bad is 10% of xx (the run goes on: 1 of ~110 files)."""
    _language(tmp_path, "es", 100)
    _language(tmp_path, "xx", 10, bad=1)
    loader = pretrain_loader(open_split(tmp_path, "train"), **{**LOADER, "alpha": 0.0}, max_bad_share=0.05)
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        list(loader)
    assert loader.epoch_bad_files == 1
    assert _language_warnings(caplog, "xx") == [
        "language xx: 1 of 10 xx audio files in epoch 0 is bad, more than max_bad_share=0.05 of the language: its "
        f"share of the language mixture shrinks ({tmp_path / 'xx' / 'train.jsonl'})"]
    assert not _language_warnings(caplog, "es")


@pytest.mark.parametrize("rank, world_size, files", [(0, 1, "20 audio files"),
                                                     (1, 2, "the 10 audio files rank 1 of 2 reads")])
def test_an_epoch_whose_every_file_is_bad_says_so_not_that_it_made_too_few_batches(tmp_path, rank, world_size,
                                                                                     files):
    _language(tmp_path, "es", 20, bad=20)
    loader = pretrain_loader(open_split(tmp_path, "train"), **LOADER, max_bad_share=1.0, rank=rank,
                             world_size=world_size)
    manifest = tmp_path / "es" / "train.jsonl"
    with pytest.raises(XlsrError, match=rf"^every one of {files} in epoch 0 is bad \(unreadable, or not the length "
                                        rf"its manifest entry says\): nothing to train on; check the audio paths of "
                                        rf"\S*{manifest.parent.name}/train\.jsonl \(last: "):
        list(loader)
