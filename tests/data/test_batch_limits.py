"""What the manifest loaders promise about bad files, lengths and speed perturbation (data/batching.py):
a bad file is charged once per epoch, batches keep max_tokens and max_sample_size with augmentation, nothing is
dropped without a warning, and audio that is not the length its manifest entry says is a bad file."""

import logging
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from data_fixtures import PhoneVocab

import xlsr.data.batch_plan as batch_plan
import xlsr.data.batching as batching
from xlsr.data.audio import checked_length
from xlsr.data.augment import (
    EffectDraw,
    augmented_length,
    augmented_lengths,
    draw_effect_table,
    effect_draw,
    parse_augment,
)
from xlsr.data.batch_plan import without_indices
from xlsr.data.batching import finetune_loader, pretrain_loader
from xlsr.data.manifest import Utterance
from xlsr.errors import AudioError, XlsrError


def _write(folder, lengths, lang="es", audio_lengths=None):
    """One noise file per length (the file holds `audio_lengths[k]` samples if given: a replaced recording)."""
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for k, n in enumerate(lengths):
        path = folder / f"{lang}{k}.wav"
        m = n if audio_lengths is None else audio_lengths[k]
        sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(m)).astype(np.float32), 16000, subtype="FLOAT")
        utts.append(Utterance(audio=str(path), num_samples=n, lang=lang, id=f"{lang}{k}", phones="a b", text="ab"))
    return utts


def _count_reads(monkeypatch):
    """Paths the loader decodes, in order."""
    reads, real = [], batching.load_audio
    monkeypatch.setattr(batching, "load_audio", lambda path, **kw: reads.append(str(path)) or real(path, **kw))
    return reads


def test_each_finetuning_epoch_counts_its_own_bad_files(tmp_path):
    """One corrupt file in 100 stays one bad file in every epoch (5% allowed), and a resume inside an epoch keeps
    that epoch's count."""
    from xlsr.train.finetune import FinetuneTask

    utts = _write(tmp_path, [4000] * 100)
    (tmp_path / "es7.wav").write_text("garbage")
    vocab = PhoneVocab(u.phones for u in utts)
    loader = finetune_loader(utts, vocab, max_tokens=16000, seed=0)
    task = types.SimpleNamespace(_train_loader=loader, data=types.SimpleNamespace(shards=None), _loader_state=None)
    for epoch in range(8):  # the old loader failed in epoch 5: the earlier epochs' bad file carried over
        assert sum(len(b.ids) for b in FinetuneTask.train_batches(task, epoch)) == 99
        assert (loader.epoch, loader.epoch_bad_files, loader.bad_files) == (epoch, 1, epoch + 1)

    # a resume in the middle of epoch 8, after its bad file: the same count and no second reading of that file
    it = FinetuneTask.train_batches(task, 8)
    while not loader.epoch_bad_files:
        next(it)
    saved = loader.state_dict()
    assert saved["bad_indices"] == [7] and saved["epoch"] == 8
    resumed = finetune_loader(utts, vocab, max_tokens=16000, seed=0)
    task = types.SimpleNamespace(_train_loader=resumed, data=types.SimpleNamespace(shards=None), _loader_state=saved)
    rest = list(FinetuneTask.train_batches(task, 8, skip=3))
    assert resumed.position == len(resumed) and resumed.epoch_bad_files == 1 and resumed.bad_files == 9
    assert len(rest) == len(resumed) - saved["position"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_upsampled_bad_file_is_charged_and_read_once_per_epoch(tmp_path, monkeypatch, caplog, num_workers):
    """α = 0 draws the 10 utterances of a small language ~10x each: its one corrupt file is 1 of the epoch's ~110
    distinct files (under max_bad_share 5%, its ~10 draws are not), warned about once, not decoded again once known."""
    utts = _write(tmp_path, [4000] * 200, "es") + _write(tmp_path, [4000] * 10, "xx")
    (tmp_path / "xx9.wav").write_text("garbage")
    bad = len(utts) - 1
    kwargs = dict(max_tokens=16000, min_sample_size=1000, max_sample_size=4000, alpha=0.0, seed=0)
    loader = pretrain_loader(utts, **kwargs, num_workers=num_workers)
    assert sum(p.indices.count(bad) for p in loader.plans()) >= 5  # drawn many times
    reads = _count_reads(monkeypatch) if num_workers == 0 else []
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        rows = sum(b.waveforms.shape[0] for b in loader)
    assert (loader.epoch_bad_files, loader.bad_indices) == (1, {bad})
    assert sum("xx9.wav" in r.getMessage() for r in caplog.records) == 1
    if num_workers == 0:
        assert reads.count(str(tmp_path / "xx9.wav")) == 1
    drawn_bad = sum(p.indices.count(bad) for p in loader.plans())
    assert rows == loader.files_in_epoch() - drawn_bad  # every other draw is trained on
    distinct = {i for p in loader.plans() for i in p.indices}
    assert loader.distinct_files_in_epoch() == len(distinct) < loader.files_in_epoch() == len(utts)
    loader.set_epoch(1)
    assert (loader.epoch_bad_files, loader.bad_indices, loader.bad_files) == (0, set(), 1)


def test_the_bad_files_known_in_an_epoch_survive_a_resume(tmp_path, monkeypatch):
    """... and a batch is the same whether its bad file was known when it was handed out (left out, with its
    effects) or found when it was loaded."""
    utts = _write(tmp_path, [4000] * 20, "es") + _write(tmp_path, [4000] * 4, "xx")
    (tmp_path / "xx3.wav").write_text("garbage")
    kwargs = dict(max_tokens=16000, min_sample_size=1000, max_sample_size=4000, alpha=0.0, seed=1,
                  max_bad_share=0.1, augment=parse_augment("speed=0.5,noise=0.5"))
    full = [b.waveforms for b in pretrain_loader(utts, **kwargs)]
    a = pretrain_loader(utts, **kwargs)
    first = []
    for batch in a:
        first.append(batch.waveforms)
        if a.epoch_bad_files:
            break
    state = a.state_dict()
    assert state["bad_indices"] == [len(utts) - 1] and state["position"] < len(a)
    reads = _count_reads(monkeypatch)
    b = pretrain_loader(utts, **kwargs)
    b.load_state_dict(state)
    rest = [x.waveforms for x in b]
    assert str(tmp_path / "xx3.wav") not in reads and b.epoch_bad_files == 1
    assert len(first) + len(rest) == len(full) and all(torch.equal(x, y) for x, y in zip(first + rest, full))
    bad = len(utts) - 1
    plan = next(p for p in a.plans() if bad in p.indices and set(p.indices) != {bad})
    found, known = a.dataset[plan], a.dataset[without_indices(plan, {bad})]
    assert [i for i, _ in found.bad] == [bad] and not known.bad and plan.effects is not None
    assert torch.equal(found.batch.waveforms, known.batch.waveforms)


def test_too_many_distinct_bad_files_still_stop_the_run(tmp_path):
    utts = _write(tmp_path, [4000] * 20)
    for k in (2, 5):
        (tmp_path / f"es{k}.wav").write_text("garbage")
    loader = pretrain_loader(utts, max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0,
                             alpha=1.0, max_bad_share=0.05)
    with pytest.raises(XlsrError, match=r"2 of 20 audio files in epoch 0 are bad .* max_bad_share=0.05"):
        list(loader)


def test_finetuning_speed_perturbation_keeps_max_tokens_and_max_sample_size(tmp_path, caplog):
    """A slower speed lengthens an utterance by up to 1/speed: where that passes the batch limit it plays at speed 1."""
    utts = _write(tmp_path, [16000] * 20 + [8000] * 20)
    vocab = PhoneVocab(u.phones for u in utts)
    loader = finetune_loader(utts, vocab, max_tokens=16000, max_sample_size=16000, seed=0,
                             augment=parse_augment("speed=1.0:0.9-1.1"))
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        plans = loader.plans()
    speeds = {utts[i].id: d.speed if d else None for p in plans for i, d in zip(p.indices, p.effects)}
    assert all(speeds[f"es{k}"] is None or speeds[f"es{k}"] > 1 for k in range(20))  # none made longer
    assert any(s is not None and s < 1 for s in speeds.values())  # the short ones still slow down
    slowed = sum(1 for k in range(20) if speeds[f"es{k}"] is None)
    assert f"epoch 0: {slowed} of 40 utterances play at speed 1" in caplog.text and "longer than 16000" in caplog.text
    rows = 0
    for batch in loader:
        assert batch.waveforms.numel() <= 16000 and batch.waveforms.shape[1] <= 16000
        rows += batch.waveforms.shape[0]
    assert rows == 40


def test_pretraining_speed_perturbation_never_drops_an_utterance_below_min_sample_size(tmp_path, caplog):
    utts = _write(tmp_path, list(range(32000, 35000, 150)))
    loader = pretrain_loader(utts, max_tokens=200000, min_sample_size=32000, max_sample_size=64000, alpha=1.0,
                             seed=0, augment=parse_augment("speed=1.0:0.9-1.1"))
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        draws = [d for p in loader.plans() for d in p.effects]
        rows = sum(b.waveforms.shape[0] for b in loader)
    assert rows == loader.files_in_epoch() == 20 and loader.short_files == 0
    assert any(d is not None and d.speed > 1 for d in draws) and any(d is None for d in draws)
    assert "of 20 utterances play at speed 1: the drawn speed would make them shorter than min_sample_size=32000" \
        in caplog.text


def _planned_speeds(loader, utts):
    return {utts[i].id: (d.speed if d else None) for p in loader.plans() for i, d in zip(p.indices, p.effects)}


def test_a_faster_speed_stays_exactly_where_it_leaves_an_utterance_min_sample_size():
    """At speed 1.1, 35200 samples play as 32000 = min_sample_size (kept); 35199 as 31999 (speed 1 instead)."""
    utts = [Utterance(audio=f"/nonexistent/{n}.wav", num_samples=n, lang="es", id=str(n)) for n in (35200, 35199)]
    loader = pretrain_loader(utts, max_tokens=200000, min_sample_size=32000, max_sample_size=64000, alpha=1.0,
                             seed=0, augment=parse_augment("speed=1:1.1-1.1"))
    assert _planned_speeds(loader, utts) == {"35200": pytest.approx(1.1), "35199": None}


def test_a_faster_speed_stays_exactly_where_it_leaves_a_label_the_frames_it_needs():
    """A label of 10 distinct phones needs 10 frames (400-sample window, 320 hop: 3280 samples). At speed 1.1,
    3608 samples play as 3280 (kept); 3607 as 3279, 9 frames (speed 1 instead)."""
    label = "a b c d e f g h i j"
    utts = [Utterance(audio=f"/nonexistent/{n}.wav", num_samples=n, lang="es", id=str(n), phones=label)
            for n in (3608, 3607)]
    loader = finetune_loader(utts, PhoneVocab([label]), max_tokens=100_000, shuffle=False,
                             augment=parse_augment("speed=1:1.1-1.1"), num_frames=lambda n: (n - 400) // 320 + 1)
    assert _planned_speeds(loader, utts) == {"3608": pytest.approx(1.1), "3607": None}


def test_utterances_shorter_once_decoded_are_counted_in_one_warning_per_epoch(tmp_path, caplog):
    """Within the length tolerance a decoded file may fall below min_sample_size: skipped, and said, once."""
    utts = _write(tmp_path, [32000] * 6, audio_lengths=[31900, 31900, 31900, 32000, 32000, 32000])
    loader = pretrain_loader(utts, max_tokens=200000, min_sample_size=32000, max_sample_size=64000, alpha=1.0, seed=0)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
            rows = sum(b.waveforms.shape[0] for b in loader)
        lines = [r.getMessage() for r in caplog.records]
        assert lines == [f"epoch {epoch}: 3 of 6 planned utterances were skipped: shorter than "
                         f"min_sample_size=32000 samples once decoded and augmented"]
        assert rows == 3 and loader.epoch_short_files == 3 and loader.short_files == 3 * (epoch + 1)


def test_audio_of_another_length_than_its_manifest_entry_is_a_bad_file(tmp_path, caplog):
    """A file replaced by a 10x longer take after the manifest was written would blow past max_tokens."""
    utts = _write(tmp_path, [8000] * 16, audio_lengths=[8000] * 3 + [80000] + [8000] * 12)
    vocab = PhoneVocab(u.phones for u in utts)
    loader = finetune_loader(utts, vocab, max_tokens=32000, max_sample_size=16000, seed=0, max_bad_share=0.1)
    with caplog.at_level(logging.WARNING, logger="xlsr.data.batching"):
        batches = list(loader)
    assert all(b.waveforms.numel() <= 32000 for b in batches) and sum(len(b.ids) for b in batches) == 15
    assert loader.epoch_bad_files == 1
    assert f"skipping bad audio: {tmp_path / 'es3.wav'}: decoded 80000 samples, the manifest says 8000" in caplog.text
    with pytest.raises(XlsrError, match=r"1 of 16 audio files .*es3.wav: decoded 80000 samples, the manifest says"):
        list(finetune_loader(utts, vocab, max_tokens=32000, max_sample_size=16000, seed=0, max_bad_share=0.05))


def test_decoded_lengths_within_the_tolerance_pass_cut_to_the_manifest():
    x = np.zeros(8050, np.float32)
    assert len(checked_length(x, 8000, "a.wav")) == 8000  # resampling or codec rounding: cut, the packing holds
    assert len(checked_length(x[:7950], 8000, "a.wav")) == 7950
    assert len(checked_length(x[:1010], 1000, "a.wav")) == 1000  # at least 16 samples' slack
    with pytest.raises(AudioError, match=r"^a.wav: decoded 8100 samples, the manifest says 8000$"):
        checked_length(np.zeros(8100, np.float32), 8000, "a.wav")
    with pytest.raises(AudioError, match="decoded 7900 samples"):
        checked_length(x[:7900], 8000, "a.wav")


def test_an_epochs_effects_are_drawn_as_a_table_by_the_rules_of_draw_effects():
    spec = parse_augment("reverb=0.5,noise=0.5:5-30,speed=0.5:0.9-1.1,bandlimit=0.5")
    table = draw_effect_table(spec, (7, 3, 0xA6), 2000)
    assert table.tobytes() == draw_effect_table(spec, (7, 3, 0xA6), 2000).tobytes()  # the same for the same key
    assert table.tobytes() != draw_effect_table(spec, (7, 4, 0xA6), 2000).tobytes()  # another epoch
    # item k's effects depend on (key, k) only, not on how many items the epoch has
    assert table[:300].tobytes() == draw_effect_table(spec, (7, 3, 0xA6), 300).tobytes()
    for column in ("speed", "snr_db", "band_hz"):
        assert 0.45 < np.mean(~np.isnan(table[column])) < 0.55, column
    assert 0.45 < np.mean(table["room"] >= 0) < 0.55 and set(table["room"].tolist()) == set(range(-1, 32))
    assert set(table["noise_kind"].tolist()) == {-1, 0, 1, 2, 3}
    assert np.array_equal(np.isnan(table["snr_db"]), table["noise_kind"] < 0)
    speeds = table["speed"][~np.isnan(table["speed"])]
    snrs = table["snr_db"][~np.isnan(table["snr_db"])]
    assert 0.9 <= speeds.min() < speeds.max() <= 1.1 and 5 <= snrs.min() < snrs.max() <= 30
    # switching speed off leaves the other effects' draws as they were
    others = draw_effect_table(parse_augment("reverb=0.5,noise=0.5:5-30,bandlimit=0.5"), (7, 3, 0xA6), 2000)
    assert np.isnan(others["speed"]).all()
    for column in ("room", "snr_db", "noise_kind", "band_hz"):
        assert np.array_equal(others[column], table[column], equal_nan=True), column
    # a row reads as the EffectDraw apply_effects takes
    draws = [effect_draw(spec, row, (7, 3, 0xA6), room_seed=7) for row in table[:200]]
    for row, draw in zip(table[:200], draws):
        applied = [not np.isnan(row["speed"]), row["room"] >= 0, row["noise_kind"] >= 0, not np.isnan(row["band_hz"])]
        if not any(applied):
            assert draw is None
            continue
        assert draw.key == (7, 3, 0xA6, int(row["item"]))
        assert (draw.speed is not None, draw.room is not None, draw.noise_kind is not None,
                draw.band_hz is not None) == tuple(applied)
        if draw.room is not None:
            assert 0.2 <= draw.room.rt60 <= 0.8


def test_augmented_lengths_are_those_of_augmented_length():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 400_000, 5000)
    speed = np.where(rng.random(5000) < 0.5, rng.uniform(0.5, 2.0, 5000), np.nan)
    speed[:4], n[:4] = [0.5, 2.0, 2.0, 1.6], [1, 5, 7, 4]  # halves: round half to even, as round()
    expected = [augmented_length(int(k), None if np.isnan(s) else EffectDraw(key=(0,), speed=float(s)))
                for k, s in zip(n, speed)]
    assert augmented_lengths(n, speed).tolist() == expected


def test_planning_an_augmented_epoch_builds_no_object_per_utterance(monkeypatch):
    """The epoch's effects as arrays: planning 20k utterances holds about what it holds without augmentation (the
    old plan held an EffectDraw per utterance, ~460 bytes, and drew 4 generators for each)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    utts = [Utterance(audio=f"/a/{i}.wav", num_samples=int(n), lang="es", id=str(i), phones="a")
            for i, n in enumerate(rng.integers(32000, 240000, 20_000))]
    held = {}
    for spec in ("none", "default"):
        loader = pretrain_loader(utts, max_tokens=1_400_000, augment=parse_augment(spec))
        loader.plans()  # warm: imports, the sampler
        loader._plans = None
        tracemalloc.start()
        plans = loader.plans()
        held[spec] = tracemalloc.get_traced_memory()[0] / len(utts)
        tracemalloc.stop()
        del plans
    assert held["default"] < held["none"] + 100, held
    built = []
    monkeypatch.setattr(batch_plan, "effect_draw", lambda *a: built.append(a))
    loader = finetune_loader(utts[:2000], PhoneVocab(["a"]), max_tokens=1_400_000, augment=parse_augment("default"))
    assert len(loader.plans()) and not built  # an item's EffectDraw is built in the worker that loads it


def test_augmented_finetuning_is_the_same_with_workers_and_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    utts = _write(tmp_path, [4000 + 300 * k for k in range(16)])
    vocab = PhoneVocab(u.phones for u in utts)
    kwargs = dict(max_tokens=20000, seed=5, augment=parse_augment("speed=0.5,reverb=0.5:0.2-0.3,noise=0.5,"
                                                                   "bandlimit=0.5"))
    plain = finetune_loader(utts, vocab, **kwargs)
    plain.set_epoch(1)
    full = [b.waveforms for b in plain]
    a = finetune_loader(utts, vocab, **kwargs)
    a.set_epoch(1)
    it = iter(a)
    first = [next(it).waveforms for _ in range(2)]
    b = finetune_loader(utts, vocab, **kwargs, num_workers=2)
    b.load_state_dict(a.state_dict())
    rest = [x.waveforms for x in b]
    assert len(first) + len(rest) == len(full) and all(torch.equal(x, y) for x, y in zip(first + rest, full))
