import numpy as np
import pytest
import soundfile as sf
import torch
from data_fixtures import PhoneVocab

from xlsr.data.augment import augmented_length, change_speed, parse_augment
from xlsr.data.batching import crop_batch, finetune_loader, length_limit, pack_batches, pretrain_loader
from xlsr.data.manifest import Utterance, read_split
from xlsr.errors import XlsrError


def test_pack_batches_respects_max_tokens():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1000, 9000, size=200)
    order = rng.permutation(200)
    for crop in (True, False):
        batches = pack_batches(lengths, order, 20000, crop_to_shortest=crop, max_sample_size=6000 if crop else None)
        assert sorted(i for b in batches for i in b) == list(range(200))
        for b in batches:
            cost = min(lengths[b].min(), 6000) if crop else lengths[b].max()
            assert len(b) == 1 or len(b) * cost <= 20000
    # length-sorted: padding waste is small
    batches = pack_batches(lengths, order, 20000, crop_to_shortest=False)
    waste = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches) / lengths.sum()
    assert waste < 0.2


def _write(tmp_path, n, lengths, lang="es"):
    utts = []
    for i, length in enumerate(lengths[:n]):
        path = tmp_path / f"{lang}{i}.wav"
        sf.write(path, np.full(length, (i + 1) / 100, np.float32) + np.linspace(0, 0.001, length), 16000,
                 subtype="FLOAT")
        utts.append(Utterance(audio=str(path), num_samples=length, lang=lang, id=f"{lang}{i}",
                              phones="a b" if i % 2 else "b c a", text="ab"))
    return utts


def test_pretrain_crops_to_shortest_caps_and_skips_short(tmp_path):
    utts = _write(tmp_path, 8, [3000, 5000, 7000, 9000, 11000, 13000, 500, 800])
    loader = pretrain_loader(utts, max_tokens=30000, min_sample_size=1000, max_sample_size=10000, alpha=1.0,
                             seed=0)
    seen = 0
    for batch in loader:
        b, s = batch.waveforms.shape
        assert s <= 10000 and b * s <= 30000 and torch.all(batch.lengths == s)
        seen += b
        # each row is a window of its own file (constant level (i+1)/100 plus a tiny ramp)
        levels = batch.waveforms[:, 0]
        assert torch.all(levels > 0.005)
    assert seen == 6  # the 500- and 800-sample files are skipped
    assert loader.files_in_epoch() == 6


def test_crop_batch_takes_a_window_no_longer_than_max_sample_size():
    """Two 100k-sample utterances with max_sample_size 32000: rows of 32000 consecutive samples of their own audio."""
    waves = [np.arange(100_000, dtype=np.float32), 1e6 + np.arange(100_000, dtype=np.float32)]
    batch = crop_batch(waves, ["es", "fr"], np.random.default_rng(0), max_sample_size=32_000)
    assert tuple(batch.waveforms.shape) == (2, 32_000) and batch.lengths.tolist() == [32_000, 32_000]
    for row, offset in zip(batch.waveforms, (0.0, 1e6)):
        start = float(row[0]) - offset
        assert 0 <= start <= 100_000 - 32_000 and torch.equal(row, torch.arange(32_000) + start + offset)
    assert crop_batch(waves[:1] + [np.zeros(5000, np.float32)], ["es", "es"], np.random.default_rng(0),
                      max_sample_size=32_000).waveforms.shape == (2, 5000)  # the shortest when it is shorter
    assert batch.langs == ["es", "fr"]


def test_finetuning_skips_utterances_longer_than_max_sample_size_below_max_tokens():
    assert length_limit(1_000_000, 250_000) == 250_000 and length_limit(200_000, 250_000) == 200_000
    assert length_limit(1_000_000, None) == 1_000_000
    utts = [Utterance(audio=f"/nonexistent/{i}.wav", num_samples=n, lang="xx", id=f"u{i}", phones="a b")
            for i, n in enumerate([100_000, 300_000, 500_000])]
    loader = finetune_loader(utts, PhoneVocab(["a b"]), max_tokens=1_000_000, max_sample_size=250_000, shuffle=False)
    kept = loader.dataset.utts
    assert [kept.utterance_id(i) for i in range(len(kept))] == ["u0"]
    assert [p.indices for p in loader.plans()] == [(0,)]


def test_pretrain_max_utterances_caps_each_batch():
    utts = [Utterance(audio=f"/nonexistent/{i}.wav", num_samples=80_000, lang="xx", id=str(i)) for i in range(200)]
    kwargs = dict(max_tokens=1_200_000, min_sample_size=32_000, max_sample_size=320_000, seed=3)
    plans = {}
    for cap in (None, 4):
        loader = pretrain_loader(utts, **kwargs, max_utterances=cap)
        loader.set_epoch(0)
        plans[cap] = [p.indices for p in loader.plans()]
    assert {len(p) for p in plans[None]} >= {15}  # 5 s crops: max_tokens alone takes 15 per batch
    assert max(len(p) for p in plans[4]) == 4  # fairseq's dataset.batch_size on top of max_tokens
    assert sorted(i for p in plans[4] for i in p) == sorted(i for p in plans[None] for i in p)
    with pytest.raises(XlsrError, match="max_utterances: must be at least 1"):
        pretrain_loader(utts, **kwargs, max_utterances=0)


def test_pretrain_is_deterministic_and_resumes_exactly(tmp_path, corpus):
    utts = read_split(corpus[0], "train")
    kwargs = dict(max_tokens=60000, min_sample_size=4000, max_sample_size=24000, alpha=0.5, seed=7)
    a = pretrain_loader(utts, **kwargs)
    a.set_epoch(1)
    full = [b.waveforms for b in a]
    assert len(full) >= 3
    b = pretrain_loader(utts, **kwargs)
    b.set_epoch(1)
    it = iter(b)
    first = [next(it).waveforms for _ in range(2)]
    state = b.state_dict()
    assert state["epoch"] == 1 and state["position"] == 2
    c = pretrain_loader(utts, **kwargs, num_workers=2)
    c.load_state_dict(state)
    c.set_epoch(1)  # the trainer may call this again on resume: it must keep the position
    rest = [x.waveforms for x in c]
    assert len(first) + len(rest) == len(full)
    for x, y in zip(first + rest, full):
        assert torch.equal(x, y)
    c.set_epoch(2)
    assert len(c) > 0 and c.state_dict()["position"] == 0


def test_ddp_ranks_get_disjoint_equal_shares(corpus):
    utts = read_split(corpus[0], "train")
    kwargs = dict(max_tokens=40000, min_sample_size=4000, max_sample_size=16000, alpha=1.0, seed=2,
                  world_size=2)
    r0, r1 = (pretrain_loader(utts, rank=r, **kwargs) for r in (0, 1))
    p0, p1 = r0.plans(), r1.plans()
    assert len(p0) == len(p1) > 0
    assert not {p.seed for p in p0} & {p.seed for p in p1}
    with pytest.raises(XlsrError, match="rank 2"):
        pretrain_loader(utts, rank=2, **kwargs)


def test_bad_files_are_skipped_then_stop_the_run(tmp_path, caplog):
    utts = _write(tmp_path, 10, [4000] * 10)
    (tmp_path / "es3.wav").write_text("garbage")
    loader = pretrain_loader(utts, max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0,
                             alpha=1.0, max_bad_share=0.2)
    batches = list(loader)
    assert sum(b.waveforms.shape[0] for b in batches) == loader.files_in_epoch() - loader.epoch_bad_files
    assert loader.epoch_bad_files >= 1 and "es3.wav" in caplog.text
    for i in (4, 5):
        (tmp_path / f"es{i}.wav").unlink()
    loader = pretrain_loader(utts, max_tokens=8000, min_sample_size=1000, max_sample_size=4000, seed=0,
                             alpha=1.0, max_bad_share=0.2, epoch_size=10)
    with pytest.raises(XlsrError, match="max_bad_share=0.2"):
        list(loader)


def test_finetune_pads_and_encodes_labels(tmp_path):
    utts = _write(tmp_path, 6, [1000, 2000, 3000, 4000, 5000, 6000])
    vocab = PhoneVocab(u.phones for u in utts)
    loader = finetune_loader(utts, vocab, max_tokens=8000, shuffle=False, label_field="phones")
    got = {}
    for batch in loader:
        assert batch.waveforms.shape[0] * batch.waveforms.shape[1] <= 8000
        for row, uid in enumerate(batch.ids):
            n = int(batch.lengths[row])
            assert torch.all(batch.waveforms[row, n:] == 0)
            k = int(batch.label_lengths[row])
            got[uid] = (n, batch.labels[row, :k].tolist())
    assert set(got) == {u.id for u in utts}
    for u in utts:
        assert got[u.id] == (u.num_samples, vocab.encode(u.phones))


def test_finetune_label_problems_are_errors(tmp_path):
    utts = _write(tmp_path, 2, [1000, 2000])
    vocab = PhoneVocab(["a b"])
    with pytest.raises(XlsrError, match="outside the vocabulary: 'c'"):
        finetune_loader(utts, vocab, max_tokens=8000)
    assert len(list(finetune_loader(utts, vocab, max_tokens=8000, oov="unk"))) >= 1
    utts[0].phones = None
    with pytest.raises(XlsrError, match="es0.*no 'phones' label"):
        finetune_loader(utts, PhoneVocab(["a b c"]), max_tokens=8000)


def test_augmented_pretraining_resumes_exactly_with_workers(corpus, tmp_path, monkeypatch):
    """Effects drawn from (seed, epoch, item) when the epoch is planned: a resumed loader with workers yields
    the very batches of an uninterrupted one; another epoch or seed draws other effects."""
    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    utts = read_split(corpus[0], "train")
    spec = parse_augment("speed=0.5,reverb=0.3:0.2-0.3,noise=0.6,bandlimit=0.3")
    kwargs = dict(max_tokens=60000, min_sample_size=4000, max_sample_size=24000, alpha=0.5, seed=7, augment=spec)
    a = pretrain_loader(utts, **kwargs)
    a.set_epoch(1)
    full = [x.waveforms for x in a]
    b = pretrain_loader(utts, **kwargs)
    b.set_epoch(1)
    it = iter(b)
    first = [next(it).waveforms for _ in range(2)]
    c = pretrain_loader(utts, **kwargs, num_workers=2)
    c.load_state_dict(b.state_dict())
    rest = [x.waveforms for x in c]
    assert len(first) + len(rest) == len(full)
    assert all(torch.equal(x, y) for x, y in zip(first + rest, full))
    plain = pretrain_loader(utts, **{**kwargs, "augment": None})
    plain.set_epoch(1)
    assert [p.indices for p in plain.plans()] != [p.indices for p in a.plans()] or \
        any(not torch.equal(x, y) for x, y in zip(full, [x.waveforms for x in plain]))
    draws = [d for p in a.plans() for d in p.effects]
    assert any(d is not None for d in draws)
    a.set_epoch(2)
    assert [d for p in a.plans() for d in p.effects] != draws


def test_augmented_finetuning_plans_with_the_perturbed_lengths_and_mixes_at_the_snr(tmp_path, monkeypatch):
    monkeypatch.setenv("XLSR_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    utts, clean = [], {}
    for i in range(12):
        x = (0.1 * rng.standard_normal(4000 + 500 * i)).astype(np.float32)
        sf.write(tmp_path / f"u{i}.wav", x, 16000, subtype="FLOAT")
        utts.append(Utterance(audio=str(tmp_path / f"u{i}.wav"), num_samples=len(x), lang="es", id=f"u{i}",
                              phones="a b" if i % 2 else "b c a", text="ab"))
        clean[f"u{i}"] = x.astype(np.float64)
    vocab = PhoneVocab(u.phones for u in utts)
    spec = parse_augment("speed=1:0.9-1.1,noise=1:10-20")
    loader = finetune_loader(utts, vocab, max_tokens=20000, seed=3, augment=spec)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        plans = {utts[i].id: d for p in loader.plans() for i, d in zip(p.indices, p.effects)}
        seen = set()
        for batch in loader:
            assert batch.waveforms.shape[0] * batch.waveforms.shape[1] <= 20000
            for row, uid in enumerate(batch.ids):
                draw, n = plans[uid], int(batch.lengths[row])
                assert n == augmented_length(len(clean[uid]), draw) != len(clean[uid])
                u = next(u for u in utts if u.id == uid)
                assert batch.labels[row, :int(batch.label_lengths[row])].tolist() == vocab.encode(u.phones)
                sped = change_speed(clean[uid], draw.speed)
                noise = batch.waveforms[row, :n].double().numpy() - sped
                snr = 10 * np.log10(np.mean(sped ** 2) / np.mean(noise ** 2))
                assert abs(snr - draw.snr_db) < 0.05, (uid, snr, draw)
                seen.add(uid)
        assert seen == {u.id for u in utts}
    plain = finetune_loader(utts, vocab, max_tokens=20000, seed=3, augment=parse_augment("none"))
    assert all(p.effects is None for p in plain.plans())
