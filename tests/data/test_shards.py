"""Sharded corpora: writing (atomic, resumable), reading back exactly, α mixing, resume, bad shards, the CLI."""

import json
import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from data_fixtures import write_tone

from xlsr.cli.main import main
from xlsr.data import shard_stream
from xlsr.data import shards as shards_mod
from xlsr.data.audio import load_audio
from xlsr.data.manifest import Utterance, read_manifest, read_split, write_manifest
from xlsr.data.sampling import language_weights
from xlsr.data.shard_index import check_shards, read_index
from xlsr.data.shard_loader import ShardLoader, shard_pretrain_loader
from xlsr.data.shard_stream import ConsumerStream, StreamSpec, assigned_shard
from xlsr.data.shards import encode_utterance, write_shards
from xlsr.errors import XlsrError

SR = 16000
SIZES = {"aa": 14, "bb": 5}  # utterances per language in train; 2 each in dev
SHARD_SIZE = 40_000  # bytes: aa in ~5 shards, bb in ~2


def write_corpus(root: Path) -> Path:
    """DIR/<lang>/<split>.jsonl of short tones (0.4-1.2 s, 16-bit wav: FLAC keeps them exactly)."""
    rng = np.random.default_rng(0)
    for lang, n in SIZES.items():
        for split, count in (("train", n), ("dev", 2)):
            utts = []
            for i in range(count):
                path = root / lang / "wav" / f"{split}{i:02d}.wav"
                utts.append(Utterance(str(path), write_tone(path, rng), lang, speaker="s",
                                      phones="a b" if i % 2 else "b c", text="ab", id=f"{lang}-{split}{i:02d}"))
            write_manifest(root / lang / f"{split}.jsonl", utts)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = write_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("shards")
    write_shards(root, out, shard_size=SHARD_SIZE, show_progress=False)
    return root, out


def _spec(out, **kw) -> StreamSpec:
    index = read_index(out)
    base = dict(max_tokens=40_000, pretrain=False, labeler=lambda meta: [1], shuffle_buffer=8, window_batches=2)
    base.update(kw)
    return StreamSpec(index.root, tuple(index.of_split("train")), **base)


def test_index_lists_every_utterance_once_per_language_shard(corpus):
    root, out = corpus
    index = read_index(out)
    for lang, n in SIZES.items():
        train = [s for s in index.shards if s.split == "train" and s.lang == lang]
        assert sum(s.utterances for s in train) == n and len(train) >= 2
        assert [s.path for s in train] == [f"train/{lang}-{i:06d}.tar" for i in range(len(train))]
        utts = read_split(root, "train", [lang])
        assert sum(s.num_samples for s in train) == sum(u.num_samples for u in utts)
        assert all((out / s.path).stat().st_size == s.bytes for s in train)
    assert {s.split for s in index.shards} == {"train", "dev"}
    assert index.shards[0].symbols["phones"] == ["a", "b", "c"]


def _odd_manifest(root: Path) -> Path:
    """cc/train.jsonl with every optional form: relative and absolute audio, no id, no speaker, no labels, a blank
    line, non-ASCII paths and labels."""
    rng = np.random.default_rng(1)
    (root / "cc" / "clips").mkdir(parents=True)
    lines = []
    for i in range(9):
        path = root / "cc" / "clips" / f"ü{i}.flac"
        sf.write(path, 0.2 * np.sin(np.arange(int(rng.integers(5000, 12000))) * 0.05), SR)
        record = {"audio": f"clips/{path.name}" if i % 2 else str(path), "num_samples": 10, "lang": "cc"}
        record.update({"id": f"cc-{i}"} if i % 3 else {})
        record.update({"speaker": f"sp{i}"} if i % 4 else {})
        record.update({"text": "ñandú ab"} if i % 2 else {})
        record.update({"phones": "ɲ a"} if i % 5 == 1 else {})
        lines.append(json.dumps(record, ensure_ascii=False))
    manifest = root / "cc" / "train.jsonl"
    manifest.write_text("\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:]) + "\n", encoding="utf-8")
    return manifest


def test_shards_hold_exactly_what_the_manifest_lines_encode_to(tmp_path):
    manifest = _odd_manifest(tmp_path / "corpus")
    out = tmp_path / "shards"
    index = write_shards(tmp_path / "corpus", out, shard_size=25_000, show_progress=False).index
    assert len(index.shards) >= 2
    members = {}
    for s in index.shards:
        with tarfile.open(out / s.path) as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    expected = {}
    for line, u in enumerate(read_manifest(manifest)):  # the utterance objects the writer used to read
        sample, _ = encode_utterance(u, f"cc-{line:09d}")
        expected.update({f"{sample['__key__']}.{k}": sample[k] for k in ("flac", "json")})
    assert members == expected and len(members) == 18


def test_a_bad_manifest_line_refuses_the_corpus_before_a_shard_is_written(tmp_path):
    manifest = _odd_manifest(tmp_path / "corpus")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join(lines[:6] + ['{"audio": "x.flac", "lang": "cc"}'] + lines[6:]) + "\n",
                        encoding="utf-8")
    with pytest.raises(XlsrError, match=r"cc/train.jsonl:7: missing field\(s\) num_samples") as exc:
        write_shards(tmp_path / "corpus", tmp_path / "shards", shard_size=60_000, show_progress=False)
    assert "\n" not in str(exc.value) and not (tmp_path / "shards").exists()  # not even an empty folder


def test_a_bad_manifest_line_under_the_share_is_reported_and_left_out(tmp_path, caplog):
    manifest = _odd_manifest(tmp_path / "corpus")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join(lines[:6] + ['{"audio": "x.flac", "lang": "cc"}'] + lines[6:]) + "\n",
                        encoding="utf-8")
    write_shards(tmp_path / "corpus", tmp_path / "shards", shard_size=60_000, max_bad_share=0.2, show_progress=False)
    assert sum(s.utterances for s in read_index(tmp_path / "shards").of_split("train")) == 9
    assert "skipping 1 of 10 lines that are not valid utterances" in caplog.text


def test_rerun_keeps_complete_shards_and_an_interrupted_run_resumes(corpus, tmp_path, monkeypatch):
    root, straight = corpus
    report = write_shards(root, straight, shard_size=SHARD_SIZE, show_progress=False)
    assert report.written == 0 and report.kept == len(report.index.shards)

    encode, calls = shards_mod.encode_utterance, {"n": 0}

    def dies_at_the_tenth(u, key):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return encode(u, key)

    monkeypatch.setattr(shards_mod, "encode_utterance", dies_at_the_tenth)
    with pytest.raises(KeyboardInterrupt):
        write_shards(root, tmp_path, shard_size=SHARD_SIZE, show_progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "index.json").exists() and not list(tmp_path.rglob("*.tmp"))
    done = len(list(tmp_path.rglob("*.tar")))
    assert done >= 1
    report = write_shards(root, tmp_path, shard_size=SHARD_SIZE, show_progress=False)
    assert report.kept == done and report.written == len(report.index.shards) - done
    for s in read_index(straight).shards:  # byte for byte what the uninterrupted run wrote
        assert (tmp_path / s.path).read_bytes() == (straight / s.path).read_bytes()


def _noise_corpus(root: Path, n: int, *, unreadable=(), text="a", first: int = 0) -> Path:
    """DIR/en/train.jsonl of n equal-length noise clips (their shards have equal sizes); `unreadable` lines are not
    audio; `text` changes the labels only (another manifest, shards of the same sizes)."""
    rng = np.random.default_rng(0)
    utts = []
    for i in range(first, first + n):
        path = root / "wav" / f"u{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in unreadable:
            path.write_bytes(b"not audio")
        elif not path.exists():
            sf.write(path, (0.1 * rng.standard_normal(3200)).astype(np.float32), SR)
        utts.append(Utterance(str(path), 3200, "en", text=text, id=f"u{i:02d}"))
    write_manifest(root / "data" / "en" / "train.jsonl", utts)
    return root / "data"


def _interrupted(monkeypatch, at: str, run) -> None:
    """`run()` stopped by Ctrl-C as it encodes the utterance whose key ends in `at`."""
    encode = shards_mod.encode_utterance

    def stops(u, key):
        if key.endswith(at):
            raise KeyboardInterrupt
        return encode(u, key)

    monkeypatch.setattr(shards_mod, "encode_utterance", stops)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.undo()


def _tars(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.tar"))}


@pytest.mark.parametrize("change", ["grown corpus", "other shard size"])
def test_a_stopped_rerun_leaves_no_index_describing_other_tars(tmp_path, monkeypatch, change):
    data, out = _noise_corpus(tmp_path, 40), tmp_path / "shards"
    write_shards(data, out, shard_size=75_000, splits=["train"], show_progress=False)
    size = 75_000
    if change == "grown corpus":
        write_manifest(data / "en" / "train.jsonl", read_manifest(_noise_corpus(tmp_path / "new", 5, first=40) / "en" /
                                                                  "train.jsonl") + read_manifest(data / "en" / "train.jsonl"))
    else:
        size = 60_000
    _interrupted(monkeypatch, "000000025", lambda: write_shards(data, out, shard_size=size, splits=["train"],
                                                                 show_progress=False))
    with pytest.raises(XlsrError, match="no shard index: the `xlsr data shard` run writing .* did not finish") as exc:
        read_index(out)  # not the old index beside new tars
    assert "\n" not in str(exc.value)
    report = write_shards(data, out, shard_size=size, splits=["train"], show_progress=False)
    assert report.kept >= 1
    straight = tmp_path / "straight"
    write_shards(data, straight, shard_size=size, splits=["train"], show_progress=False)
    assert _tars(out) == _tars(straight) and read_index(out).shards == read_index(straight).shards


def test_an_entry_of_a_rewritten_tar_is_not_kept_for_a_later_run(tmp_path, monkeypatch):
    # the same manifest again after a run of another one was stopped: its first tar, of the same size, holds
    # the other manifest's labels now, and is written again
    data, out = _noise_corpus(tmp_path, 40), tmp_path / "shards"
    run = lambda: write_shards(data, out, shard_size=75_000, splits=["train"], show_progress=False)  # noqa: E731
    _interrupted(monkeypatch, "000000015", run)
    _noise_corpus(tmp_path, 40, text="b")
    _interrupted(monkeypatch, "000000015", run)
    _noise_corpus(tmp_path, 40)
    report = run()
    straight = tmp_path / "straight"
    write_shards(data, straight, shard_size=75_000, splits=["train"], show_progress=False)
    assert report.kept == 0 and _tars(out) == _tars(straight)


def test_an_unreadable_first_line_does_not_stop_a_rerun_keeping_its_shards(tmp_path, monkeypatch):
    data, out = _noise_corpus(tmp_path, 40, unreadable={0}), tmp_path / "shards"
    run = lambda: write_shards(data, out, shard_size=50_000, splits=["train"], show_progress=False)  # noqa: E731
    _interrupted(monkeypatch, "000000035", run)
    done = len(list(out.rglob("*.tar")))
    report = run()
    shards = report.index.shards
    assert report.kept == done and shards[0].lines[0] == 0
    assert [s.lines[0] for s in shards[1:]] == [s.lines[1] for s in shards[:-1]] and shards[-1].lines[1] == 40
    again = run()
    assert again.written == 0 and again.kept == len(shards)


def test_unreadable_audio_is_counted_over_kept_shards_and_written_to_the_index(tmp_path, capsys):
    data, out = _noise_corpus(tmp_path, 10, unreadable={3, 7}), tmp_path / "shards"
    for _ in range(2):  # refused, and again: the complete shards the first run kept hold the same gap
        with pytest.raises(XlsrError, match=r"train.jsonl: 2 of 10 audio files are unreadable, more than "
                                            r"max_bad_share=0.05") as exc:
            write_shards(data, out, splits=["train"], show_progress=False)
        assert not (out / "index.json").exists() and "\n" not in str(exc.value)
    report = write_shards(data, out, splits=["train"], max_bad_share=0.2, show_progress=False)
    assert report.unreadable == 2 and read_index(out).sources["train/en"]["skipped"] == 2
    again = write_shards(data, out, splits=["train"], max_bad_share=0.2, show_progress=False)
    assert again.written == 0 and again.skipped == [] and again.unreadable == 2
    assert read_index(out).sources["train/en"]["skipped"] == 2
    capsys.readouterr()
    assert main(["data", "shard", "--data", str(data), "--out", str(out), "--splits", "train",
                 "--max-bad-share", "0.2"]) == 0
    assert "skipped 2 unreadable audio files (reported by the run that wrote their shards)" in capsys.readouterr().out


def test_a_rerun_refused_before_touching_a_tar_leaves_the_index_as_it_was(tmp_path):
    data, out = _noise_corpus(tmp_path, 20, unreadable={3}), tmp_path / "shards"
    write_shards(data, out, splits=["train"], max_bad_share=0.1, show_progress=False)
    before, tars = (out / "index.json").read_bytes(), _tars(out)
    with pytest.raises(XlsrError, match=r"1 of 20 audio files are unreadable, more than max_bad_share=0 "):
        write_shards(data, out, splits=["train"], max_bad_share=0.0, show_progress=False)
    assert (out / "index.json").read_bytes() == before and _tars(out) == tars
    assert not (out / "index.partial.jsonl").exists() and read_index(out).sources["train/en"]["skipped"] == 1


def test_a_rerun_that_changes_no_tar_leaves_a_readable_index_throughout(tmp_path, monkeypatch):
    data, out = _noise_corpus(tmp_path, 20), tmp_path / "shards"
    write_shards(data, out, splits=["train"], shard_size=75_000, show_progress=False)
    before, seen = (out / "index.json").read_bytes(), []

    def reads_meanwhile(name):
        original = getattr(shards_mod, name)

        def wrapped(*args, **kwargs):
            index = read_index(out)  # a run starting now is not refused
            check_shards(index, "train")
            seen.append(name)
            return original(*args, **kwargs)
        monkeypatch.setattr(shards_mod, name, wrapped)

    for name in ("_kept_shards", "_remove_stale", "write_json"):
        reads_meanwhile(name)
    report = write_shards(data, out, splits=["train"], shard_size=75_000, show_progress=False)
    assert report.written == 0 and report.kept == 2 and seen == ["_kept_shards", "_remove_stale", "write_json"]
    assert (out / "index.json").read_bytes() == before and not (out / "index.partial.jsonl").exists()


def test_every_utterance_read_once_per_pass_across_two_ranks_and_two_workers(corpus):
    root, out = corpus
    spec = _spec(out, passes=1)
    ids = Counter()
    for rank in range(2):
        for batch in ShardLoader(spec, rank=rank, world_size=2, num_workers=2):
            ids.update(batch.ids)
            for wave, length, uid in zip(batch.waveforms, batch.lengths, batch.ids):
                lang, name = uid.split("-")
                original = load_audio(root / lang / "wav" / f"{name}.wav")
                np.testing.assert_array_equal(wave[:length].numpy(), original)
    expected = {f"{lang}-train{i:02d}" for lang, n in SIZES.items() for i in range(n)}
    assert set(ids) == expected and set(ids.values()) == {1}


def test_endless_passes_deal_each_shard_to_exactly_one_consumer():
    n, consumers = 5, 4
    for p in range(3):
        dealt = Counter(assigned_shard(k, n, seed=1, lang="aa") for k in range(p * n, (p + 1) * n))
        assert sorted(dealt) == list(range(n)) and set(dealt.values()) == {1}
    # a language with fewer shards than consumers still reaches every consumer
    first_pass_owner = {k % consumers for k in range(0, 8 * 2)}
    assert first_pass_owner == set(range(consumers))


def test_languages_are_drawn_with_alpha_weights(corpus):
    _, out = corpus
    spec = _spec(out, alpha=0.3, shuffle_buffer=0)
    stream = ConsumerStream(spec, 0, 1)
    audio = Counter()
    for item, _ in zip(stream.items(), range(3000)):
        audio[item.lang] += item.sample.meta["num_samples"]
    want = language_weights(spec.hours(), 0.3)  # each language's share of the audio heard
    for lang, p in want.items():
        assert abs(audio[lang] / sum(audio.values()) - p) < 0.03, (audio, want)
    assert abs(want["aa"] - want["bb"]) < abs(spec.hours()["aa"] - spec.hours()["bb"]) / sum(spec.hours().values())


def test_resume_starts_each_language_at_its_first_unfinished_shard(corpus, monkeypatch):
    _, out = corpus
    spec = _spec(out)
    first = ConsumerStream(spec, 1, 2)
    seen: list[str] = []
    for produced in first.batches():
        seen += produced.batch.ids if produced.batch is not None else []
        if min(produced.state["done"].values()) >= 2:
            state = produced.state
            break
    # nothing lost: every utterance of a finished shard was in a batch handed over before the checkpoint
    by_lang = spec.by_lang()
    for lang, done in state["done"].items():
        for ordinal in range(done):
            shard = by_lang[lang][assigned_shard(1 + ordinal * 2, len(by_lang[lang]), spec.seed, lang)]
            lines = range(*shard.lines)
            assert {f"{lang}-train{i:02d}" for i in lines} <= set(seen)

    opened = []
    read = shard_stream.read_shard
    monkeypatch.setattr(shard_stream, "read_shard", lambda root, info: opened.append(info.path) or read(root, info))
    resumed = ConsumerStream(spec, 1, 2, state)
    a = [p.batch.ids for p, _ in zip(resumed.batches(), range(6)) if p.batch is not None]
    for lang, done in state["done"].items():
        want = by_lang[lang][assigned_shard(1 + done * 2, len(by_lang[lang]), spec.seed, lang)].path
        assert next(p for p in opened if Path(p).name.startswith(lang)) == want
    again = ConsumerStream(spec, 1, 2, state)
    assert [p.batch.ids for p, _ in zip(again.batches(), range(6)) if p.batch is not None] == a


def test_the_stream_caps_utterances_per_batch_as_the_manifest_loader(corpus):
    _, out = corpus
    free = shard_pretrain_loader(out, max_tokens=40_000, min_sample_size=1, max_sample_size=4000, shuffle_buffer=4)
    capped = shard_pretrain_loader(out, max_tokens=40_000, min_sample_size=1, max_sample_size=4000,
                                   shuffle_buffer=4, max_utterances=2)
    assert max(len(b.waveforms) for _, b in zip(range(6), free)) > 2
    assert max(len(b.waveforms) for _, b in zip(range(6), capped)) == 2
    assert capped.epoch_batches > free.epoch_batches  # an epoch still covers the split


def test_loader_state_round_trip_continues_the_streams(corpus):
    _, out = corpus
    loader = shard_pretrain_loader(out, max_tokens=40_000, min_sample_size=1, max_sample_size=16000, num_workers=2,
                                   shuffle_buffer=4)
    batches = [b for _, b in zip(range(5), loader)]
    state = loader.state_dict()
    assert set(state["consumers"]) == {0, 1} and state["position"] == len(batches)
    resumed = [shard_pretrain_loader(out, max_tokens=40_000, min_sample_size=1, max_sample_size=16000,
                                     num_workers=2, shuffle_buffer=4) for _ in range(2)]
    for r in resumed:
        r.load_state_dict(state)
    x, y = [[b.waveforms for _, b in zip(range(3), r)] for r in resumed]
    for p, q in zip(x, y):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def _copy(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "shards"
    shutil.copytree(out, dst)
    return dst


def test_a_truncated_shard_is_reported_and_skipped_under_the_cap(corpus, tmp_path, caplog):
    _, out = corpus
    dst = _copy(out, tmp_path)
    victim = dst / "train" / "aa-000001.tar"
    victim.write_bytes(victim.read_bytes()[:7000])
    loader = ShardLoader(_spec(dst, passes=1), max_bad_share=0.5)
    ids = [i for b in loader for i in b.ids]
    assert loader.bad_files >= 1 and len(ids) == sum(SIZES.values()) - loader.bad_files
    assert any("aa-000001.tar: damaged after" in r.getMessage() for r in caplog.records)
    with pytest.raises(XlsrError, match="more than max_bad_share=0.*aa-000001.tar: damaged") as exc:
        list(ShardLoader(_spec(dst, passes=1), max_bad_share=0.0))
    assert "\n" not in str(exc.value)


def _member(tar: Path, suffix: str, index: int) -> tarfile.TarInfo:
    with tarfile.open(tar) as t:
        return [m for m in t.getmembers() if m.name.endswith(suffix)][index]


def _flip(tar: Path, start: int, n: int) -> None:
    data = bytearray(tar.read_bytes())
    for i in range(start, start + n):
        data[i] ^= 0xFF
    tar.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, bad_files, words", [
    ("flac", 1, "its sha256 differs from the index's"),  # frames of one FLAC member: it does not decode
    ("json", 1, "its sha256 differs from the index's"),  # one JSON member unreadable
    ("padding", 0, "cut after its last member"),  # a copy cut in the end-of-archive padding: every member intact
])
def test_content_damage_in_an_intact_tar_skips_what_is_unreadable_and_goes_on(corpus, tmp_path, caplog, damage,
                                                                               bad_files, words):
    _, out = corpus
    dst = _copy(out, tmp_path)
    victim = dst / "train" / "aa-000000.tar"
    if damage == "flac":
        _flip(victim, _member(victim, ".flac", 1).offset_data + 200, 64)
    elif damage == "json":
        _flip(victim, _member(victim, ".json", 1).offset_data, 1)
    else:
        victim.write_bytes(victim.read_bytes()[:-512])
    loader = ShardLoader(_spec(dst, passes=1), max_bad_share=0.1)
    ids = [i for b in loader for i in b.ids]
    assert loader.bad_files == bad_files and len(ids) == sum(SIZES.values()) - bad_files
    assert any("aa-000000.tar: " in r.getMessage() and words in r.getMessage() for r in caplog.records)


def test_a_damaged_shard_is_charged_once_per_epoch_however_often_it_is_read(corpus, tmp_path, monkeypatch):
    _, out = corpus
    dst = _copy(out, tmp_path)
    victim = dst / "train" / "bb-000000.tar"
    info = next(s for s in read_index(dst).shards if s.path == "train/bb-000000.tar")
    assert info.utterances >= 2
    first_json = _member(victim, ".json", 0)
    victim.write_bytes(victim.read_bytes()[:first_json.offset_data + first_json.size + 100])  # cut in the 2nd
    reads = []
    read = shard_stream.read_shard
    monkeypatch.setattr(shard_stream, "read_shard", lambda root, s: reads.append(s.path) or read(root, s))
    # α = 0: bb, 5 of 19 utterances, is half of what is heard, so its shards are read again and again
    loader = shard_pretrain_loader(dst, max_tokens=40_000, min_sample_size=1, max_sample_size=16000, alpha=0.0,
                                   epoch_size=300, shuffle_buffer=4, max_bad_share=1.0)
    list(loader)
    missing = info.utterances - 1
    assert reads.count("train/bb-000000.tar") >= 3 and loader.bad_files == missing
    state = loader.state_dict()
    loader.set_epoch(1)
    list(loader)
    assert loader.bad_files == 2 * missing and loader.epoch_bad_files == missing  # charged again in a new epoch
    resumed = shard_pretrain_loader(dst, max_tokens=40_000, min_sample_size=1, max_sample_size=16000, alpha=0.0,
                                    epoch_size=300, shuffle_buffer=4, max_bad_share=1.0)
    resumed.load_state_dict(state)  # a resume within an epoch does not charge its damaged shards again
    assert resumed.charged == {str(victim)}


def test_a_stream_that_keeps_no_utterance_stops_in_one_line(corpus, monkeypatch):
    _, out = corpus
    reads = []
    read = shard_stream.read_shard

    def counted(root, info):
        reads.append(info.path)
        if len(reads) > 300:
            raise RuntimeError("still reading: the stream would not end")
        return read(root, info)

    monkeypatch.setattr(shard_stream, "read_shard", counted)
    loader = shard_pretrain_loader(out, max_tokens=400_000)  # min_sample_size 32000: every utterance is shorter
    with pytest.raises(XlsrError, match=r"train: no utterance is at least min_sample_size=32000 samples long") as exc:
        next(iter(loader))
    assert "\n" not in str(exc.value)


def test_a_language_that_keeps_no_utterance_is_left_out_with_one_warning(corpus, caplog):
    _, out = corpus
    spec = _spec(out, labeler=lambda meta: [1] if meta["lang"] == "aa" else None)  # bb has no labels
    loader = ShardLoader(spec, epoch_batches=20)
    ids = [i for b in loader for i in b.ids]
    assert len(ids) > 20 and {i.split("-")[0] for i in ids} == {"aa"}
    warnings = [r.getMessage() for r in caplog.records if "bb is left out" in r.getMessage()]
    assert len(warnings) == 1 and "no bb utterance is at most 40000 samples long" in warnings[0]


def test_another_layout_restarts_after_what_every_old_consumer_of_every_rank_finished(corpus):
    from xlsr.train.trainer_checkpoints import task_state

    _, out = corpus
    spec = _spec(out, shuffle_buffer=4, window_batches=1)
    for (ranks, workers), (ranks2, workers2), steps in (((2, 1), (1, 1), 4), ((2, 2), (2, 1), 3),
                                                         ((2, 2), (1, 2), 3)):
        old = ranks * workers
        done = {}  # old consumer -> its state after `steps` batches (DDP lockstep)
        for c in range(old):
            for produced, _ in zip(ConsumerStream(spec, c, old).batches(), range(steps)):
                done[c] = produced.state
        assert len({str(s["done"]) for s in done.values()}) > 1  # the consumers are at different places
        saved = [{"loader": {"epoch": 0, "position": steps, "bad_files": 0, "epoch_bad_files": 0,
                             "consumers": {c: done[c] for c in range(r * workers, (r + 1) * workers)},
                             "layout": [ranks, workers]}} for r in range(ranks)]
        new = ranks2 * workers2
        for r2 in range(ranks2):
            loader = ShardLoader(spec, rank=r2, world_size=ranks2, num_workers=workers2)
            loader.load_state_dict(task_state(saved, r2 if ranks2 == ranks else 0)["loader"])
            assert set(loader.dataset.resume) == set(range(r2 * workers2, (r2 + 1) * workers2))
            for c2, state in loader.dataset.resume.items():
                for lang in spec.langs():
                    # every position skipped by the new consumer was finished by the old consumer it was dealt to
                    for k in range(c2, c2 + state["done"][lang] * new, new):
                        assert k // old < done[k % old]["done"][lang], (ranks, workers, ranks2, workers2, c2, lang, k)


@pytest.mark.parametrize("edit, words", [
    (lambda d, s: s.update(lines=5), "shards[0]: lines must be [first, end]"),
    (lambda d, s: s.update(lines=[3]), "shards[0]: lines must be [first, end]"),
    (lambda d, s: s.update(lines=[4, 2]), "shards[0]: lines must be [first, end]"),
    (lambda d, s: s.update(symbols=["a"]), "shards[0]: symbols must be an object of symbol lists"),
    (lambda d, s: s.update(symbols={"phones": "a b"}), "shards[0]: symbols must be an object of symbol lists"),
    (lambda d, s: s.update(utterances=0), "shards[0]: utterances must be positive"),
    (lambda d, s: s.update(path="/etc/hostname"), "shards[0]: path '/etc/hostname' must be relative"),
    (lambda d, s: d.update(shard_size="1GB"), "shard_size must be a non-negative integer"),
    (lambda d, s: d.update(sources=["x"]), "sources must be an object"),
])
def test_a_malformed_index_field_is_one_line_naming_the_index_and_field(corpus, tmp_path, edit, words):
    _, out = corpus
    index = json.loads((out / "index.json").read_text())
    edit(index, index["shards"][0])
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(XlsrError) as exc:
        read_index(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / 'index.json'}: ") and words in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_rerun_writes_again_the_shards_of_malformed_index_entries(corpus, tmp_path, caplog):
    root, out = corpus
    dst = _copy(out, tmp_path)
    index = json.loads((dst / "index.json").read_text())
    index["shards"][1]["lines"] = 5
    (dst / "index.json").write_text(json.dumps(index))
    report = write_shards(root, dst, shard_size=SHARD_SIZE, show_progress=False)
    assert report.written >= 1 and report.kept == len(report.index.shards) - report.written
    assert "index.json: shards[1]: lines must be [first, end]" in caplog.text
    assert read_index(dst).shards == read_index(out).shards  # the same shards, the same bytes


def test_languages_whose_shard_names_would_collide_are_refused_before_anything_is_written(tmp_path):
    for lang in ("sr.latn", "sr_latn"):
        wav = tmp_path / "corpus" / lang / "a.wav"
        wav.parent.mkdir(parents=True)
        sf.write(wav, np.zeros(8000), SR)
        write_manifest(wav.parent / "train.jsonl", [Utterance(str(wav), 8000, lang, id=f"{lang}-a")])
    with pytest.raises(XlsrError, match=r"languages 'sr.latn' and 'sr_latn' would both write "
                                        r"train/sr_latn-NNNNNN.tar") as exc:
        write_shards(tmp_path / "corpus", tmp_path / "shards", show_progress=False)
    assert "\n" not in str(exc.value) and not (tmp_path / "shards").exists()


def test_an_index_that_disagrees_with_its_tars_is_refused_in_one_line(corpus, tmp_path):
    _, out = corpus
    dst = _copy(out, tmp_path)
    kw = dict(max_tokens=40_000, min_sample_size=1, max_sample_size=16000)
    shutil.copy(dst / "train" / "aa-000000.tar", dst / "train" / "aa-000099.tar")
    with pytest.raises(XlsrError, match=r"tar\(s\) not in .*index.json \(e.g. train/aa-000099.tar\)") as exc:
        shard_pretrain_loader(dst, **kw)
    assert "\n" not in str(exc.value)
    (dst / "train" / "aa-000099.tar").unlink()

    index = json.loads((dst / "index.json").read_text())
    a = next(s for s in index["shards"] if s["path"] == "train/aa-000000.tar")
    for field, value, words in (("utterances", a["utterances"] - 1, "holds more than the"),
                                ("lang", "bb", "is in language 'aa', the index lists the shard as 'bb'")):
        (dst / "index.json").write_text(json.dumps({**index, "shards": [
            {**s, field: value} if s is a else s for s in index["shards"]]}))  # the index describes another shard
        with pytest.raises(XlsrError, match=f"aa-000000.tar: .*{words}") as exc:
            list(ShardLoader(_spec(dst, passes=1)))
        assert "\n" not in str(exc.value)
    (dst / "index.json").write_text(json.dumps(index))

    (dst / "train" / "bb-000000.tar").unlink()
    with pytest.raises(XlsrError, match="lists train/bb-000000.tar, which does not exist"):
        shard_pretrain_loader(dst, **kw)


def test_a_shard_is_hashed_once_while_unchanged_and_again_after_a_change(corpus, tmp_path, monkeypatch):
    from dataclasses import replace

    from xlsr.data import shard_reader

    _, out = corpus
    dst = _copy(out, tmp_path)
    info = next(s for s in read_index(dst).shards if s.path == "train/aa-000000.tar")
    hashed = []
    real_sha256 = shard_reader.hashlib.sha256

    class Counting:
        def __init__(self):
            self.h = real_sha256()

        def update(self, data):
            hashed.append(len(data))
            self.h.update(data)

        def hexdigest(self):
            return self.h.hexdigest()

    monkeypatch.setattr(shard_reader.hashlib, "sha256", Counting)

    def read(entry):
        hashed.clear()
        got = list(shard_reader.read_shard(dst, entry))
        return got[-1], sum(hashed)

    end, first = read(info)
    assert end.fatal is None and end.read == info.utterances and first == info.bytes
    end, again = read(info)
    assert end.fatal is None and end.read == info.utterances and again == 0  # unchanged: not hashed twice
    end, _ = read(replace(info, sha256="0" * 64))  # another hash for the same members: damaged content, read on
    assert end.fatal is None and end.read == info.utterances and end.bad_count == 0
    assert "its sha256 differs from the index's" in end.bad[0].message
    tar = dst / info.path
    data = bytearray(tar.read_bytes())
    flac = data.index(b"fLaC")
    data[flac + 2000] ^= 0xFF  # one byte of audio changed in place: same size, same members
    tar.write_bytes(bytes(data))
    os.utime(tar, ns=(tar.stat().st_atime_ns, tar.stat().st_mtime_ns + 10**9))
    end, rehashed = read(info)
    assert rehashed == info.bytes and "its sha256 differs from the index's" in end.bad[0].message
    assert end.fatal is None and end.read == info.utterances
    end, again = read(info)
    assert again == info.bytes  # a damaged shard is not marked verified: hashed at every read


def test_cli_shards_a_corpus_and_pretrains_from_it(corpus, tmp_path, capsys):
    root, _ = corpus
    shards = tmp_path / "shards"
    assert main(["data", "shard", "--data", str(root), "--out", str(shards), "--shard-size", "40KB"]) == 0
    assert "utterances" in capsys.readouterr().out
    model = {"conv_layers": [[16, 10, 5], [16, 3, 2], [16, 2, 2]], "hidden_size": 16, "num_layers": 1,
             "num_heads": 2, "ffn_dim": 32, "final_dim": 8, "codevector_dim": 8, "num_codevectors_per_group": 4,
             "num_negatives": 3, "mask_prob": 0.5, "mask_length": 2, "conv_pos": 4, "conv_pos_groups": 2}
    run = tmp_path / "run"
    args = ["pretrain", "--data", str(shards), "--out", str(run), "--max-updates", "2", "--max-tokens", "40000",
            "--min-sample-size", "4000", "--max-sample-size", "8000", "--num-workers", "2", "--shuffle-buffer", "8",
            "--progress", "false", "--tensorboard", "false", "--device", "cpu", "--save-every", "1", "--log-every", "1"]
    args += [f"--model.{k}={json.dumps(v)}" for k, v in model.items()]
    assert main([*args, "--max-utterances", "2"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in log if r.get("split") == "train"] == [1, 2]
    assert {r["split"] for r in log} >= {"valid_aa", "valid_bb"}
    assert main([*args, "--max-updates", "3"]) == 0  # resumes with the stream states saved in trainer.pt
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in log if r.get("split") == "train"] == [1, 2, 3]
    (shards / "train" / "bb-000000.tar").unlink()
    capsys.readouterr()
    assert main([*args, "--max-updates", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bb-000000.tar, which does not exist" in err and err.count("\n") == 0


@pytest.mark.parametrize("share", [-1.0, 1.5])
def test_a_bad_share_setting_is_one_line_before_any_work(tmp_path, share):
    with pytest.raises(XlsrError, match=r"--max-bad-share must be in \[0, 1\]"):
        write_shards(tmp_path / "nowhere", tmp_path / "out", max_bad_share=share)
    assert not (tmp_path / "out").exists()


def test_a_full_disk_while_writing_a_shard_names_the_shard(tmp_path, monkeypatch, capsys):
    root = write_corpus(tmp_path / "corpus")
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(28, "No space left on device")  # as a real write() raises it: no file named

        def __getattr__(self, name):
            return getattr(self.f, name)

    def opening(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullDisk(f) if str(file).endswith(".tar.tmp") else f

    monkeypatch.setattr(shards_mod, "open", opening, raising=False)
    assert main(["data", "shard", "--data", str(root), "--out", str(tmp_path / "shards")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"xlsr: error: {tmp_path / 'shards'}/") and err[-1].endswith(
        ".tar: no space left on device"), err
