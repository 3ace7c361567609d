"""Where a shard stream stands: the finished-shard counts a checkpoint stores (exact, not lagging), a shard with an
undecodable utterance still finishing, the position after a change of layout, the fine-tuning length limit, and a
language none of whose shards can be read."""

import math
import tarfile
from pathlib import Path

import pytest
from data_fixtures import TONE_SIZES, tone_shards, tone_spec

from xlsr.data import shard_stream
from xlsr.data.shard_index import read_index
from xlsr.data.shard_loader import ShardLoader
from xlsr.data.shard_reader import ShardEnd, ShardSample, read_shard
from xlsr.data.shard_stream import ConsumerStream, StreamSpec, assigned_shard
from xlsr.errors import XlsrError


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return tone_shards(tmp_path_factory)


def _ids(info) -> set[str]:
    return {f"{info.lang}-{i:02d}" for i in range(*info.lines)}


def _shard(spec: StreamSpec, lang: str, position: int):
    shards = spec.by_lang()[lang]
    return shards[assigned_shard(position, len(shards), spec.seed, lang)]


def test_the_state_counts_every_shard_whose_utterances_have_all_left(shards, monkeypatch):
    """A checkpoint's `done` is exactly the leading shards that ended and whose every utterance was handed over in a
    batch: one that lags re-reads whole shards after a resume."""
    spec = tone_spec(shards)
    ended: set[str] = set()
    read = shard_stream.read_shard

    def watched(root, info):
        for got in read(root, info):
            if isinstance(got, ShardEnd):
                ended.add(info.path)
            yield got

    monkeypatch.setattr(shard_stream, "read_shard", watched)
    handed: set[str] = set()
    checked = 0
    for produced, _ in zip(ConsumerStream(spec, 0, 1).batches(), range(60)):
        handed |= set(produced.batch.ids)
        for lang, shards_ in spec.by_lang().items():
            if {s.path for s in shards_} <= ended:
                continue  # into its second pass: a shard would then count for two positions
            j = 0
            while (s := _shard(spec, lang, j)).path in ended and _ids(s) <= handed:
                j += 1
            assert produced.state["done"][lang] == j, (lang, produced.batch.ids, sorted(ended))
            checked += lang == "aa"
    assert checked >= 5


def _flip_audio(tar: Path, member: int) -> None:
    """Damage the FLAC frames of one member in place (the tar stays intact: that utterance does not decode)."""
    with tarfile.open(tar) as t:
        info = [m for m in t.getmembers() if m.name.endswith(".flac")][member]
    data = bytearray(tar.read_bytes())
    for i in range(info.offset_data + 200, info.offset_data + 264):
        data[i] ^= 0xFF
    tar.write_bytes(bytes(data))


def test_a_shard_with_an_undecodable_utterance_still_finishes(shards, tmp_path):
    """The utterance that does not decode leaves (as a bad file) like the others: its shard is finished, and a
    checkpoint does not stay before it for ever."""
    import shutil

    dst = tmp_path / "shards"
    shutil.copytree(shards, dst)
    spec = tone_spec(dst)
    first = _shard(spec, "aa", 0)  # consumer 0 of 1 reads position 0 first
    assert first.utterances >= 2
    _flip_audio(dst / first.path, 0)
    bad, done = [], 0
    for produced, _ in zip(ConsumerStream(spec, 0, 1).batches(), range(30)):
        bad += produced.bad
        done = max(done, produced.state["done"]["aa"])
    assert [b.count for b in bad] and all(b.count == 1 for b in bad if b.count)
    assert any(first.path.split("/")[-1] in b.key for b in bad)
    assert done >= 2  # past the damaged shard (and the next)


@pytest.mark.parametrize("layout", [[2, 1], [1, 2]])  # ranks x workers before
def test_another_layout_starts_exactly_after_what_every_old_consumer_finished(shards, layout):
    """2 consumers before (2 ranks or 2 workers), 3 now: the positions every old consumer had passed are not read
    again, and the new consumers together start at the first position one of them had not finished, leaving none
    out."""
    spec = tone_spec(shards, window_batches=1)
    old, new = layout[0] * layout[1], 3
    states = {}
    for c in range(old):
        for produced, _ in zip(ConsumerStream(spec, c, old).batches(), range(40)):
            states[c] = produced.state
            if min(produced.state["done"].values()) >= 3:
                break
    start = {lang: min(c + states[c]["done"][lang] * old for c in range(old)) for lang in spec.langs()}
    assert min(start.values()) >= 4  # well into the streams, so that a restart from 0 differs
    saved = {"epoch": 0, "position": 7, "bad_files": 0, "epoch_bad_files": 0, "consumers": states,
             "layout": layout}
    loader = ShardLoader(spec, rank=0, world_size=1, num_workers=new)
    loader.load_state_dict(saved)
    resume = loader.dataset.resume
    assert sorted(resume) == list(range(new))
    for lang, k in start.items():
        firsts = sorted(c + resume[c]["done"][lang] * new for c in range(new))
        assert firsts == list(range(k, k + new)), (lang, k, firsts)


def test_an_utterance_exactly_at_the_length_limit_is_fine_tuned_on(shards):
    """Fine-tuning drops utterances longer than max_tokens, not one exactly that long (as the manifest loader)."""
    index = read_index(shards)
    lengths = {got.meta["id"]: got.meta["num_samples"] for info in tone_spec(shards).shards
               for got in read_shard(index.root, info) if isinstance(got, ShardSample)}
    uid, n = max(lengths.items(), key=lambda kv: kv[1])
    ids = [i for b in ShardLoader(tone_spec(shards, passes=1, max_tokens=n)) for i in b.ids]
    assert sorted(ids) == sorted(lengths)  # the longest one included
    shorter = [i for b in ShardLoader(tone_spec(shards, passes=1, max_tokens=n - 1)) for i in b.ids]
    assert uid not in shorter


def test_a_language_none_of_whose_shards_can_be_read_stops_the_run_in_one_line(shards, tmp_path):
    """Every bb tar cut to a few bytes: not 'no bb utterance passes the filters' (bb left out, training going on
    without it), but one line saying that no bb shard holds a readable utterance."""
    import shutil

    dst = tmp_path / "shards"
    shutil.copytree(shards, dst)
    for tar in (dst / "train").glob("bb-*.tar"):
        tar.write_bytes(tar.read_bytes()[:100])
    loader = ShardLoader(tone_spec(dst, alpha=0.0), epoch_batches=40, max_bad_share=1.0)
    with pytest.raises(XlsrError, match="no readable utterance in any bb shard") as exc:
        list(loader)
    assert "\n" not in str(exc.value)


def test_a_resumed_epoch_yields_only_the_batches_left_in_it(shards):
    spec = tone_spec(shards)
    loader = ShardLoader(spec, epoch_batches=7)
    taken = [b for _, b in zip(range(3), loader)]
    state = loader.state_dict()
    resumed = ShardLoader(spec, epoch_batches=7)
    resumed.load_state_dict(state)
    assert len(taken) == 3 and len(list(resumed)) == 4 and resumed.position == 7


def test_the_bad_file_share_is_of_one_ranks_part_of_the_split(shards, tmp_path):
    """Two ranks read half the split each: the rank that meets a cut shard measures its bad files against its own
    half, so a share the whole split would stay under stops that rank."""
    import shutil

    dst = tmp_path / "shards"
    shutil.copytree(shards, dst)
    victim = next(s for s in read_index(dst).of_split("train") if s.lang == "aa" and s.utterances >= 3)
    tar = dst / victim.path
    with tarfile.open(tar) as t:
        first = [m for m in t.getmembers() if m.name.endswith(".json")][0]
    tar.write_bytes(tar.read_bytes()[:first.offset_data + first.size + 100])  # cut in its 2nd utterance
    missing = victim.utterances - 1
    total = sum(TONE_SIZES.values())
    share = 1.5 * missing / total  # under the split's share, over one half's
    stopped = []
    for rank in range(2):
        try:
            list(ShardLoader(tone_spec(dst, passes=1), rank=rank, world_size=2, max_bad_share=share))
        except XlsrError as exc:
            stopped.append((rank, str(exc)))
    assert len(stopped) == 1 and f"{missing} of about {total // 2} utterances" in stopped[0][1]


def test_an_epoch_is_the_splits_cropped_audio_shared_among_the_ranks(shards):
    """Pretraining crops each utterance to max_sample_size, so an epoch is the cropped audio at max_tokens per
    batch, split between the ranks (each rank its part, all equal)."""
    from xlsr.data.shard_loader import shard_pretrain_loader

    index = read_index(shards)
    train = index.of_split("train")
    utts = sum(s.utterances for s in train)
    assert sum(s.num_samples for s in train) / utts > 8000  # the mean utterance is longer than the crop
    kw = dict(max_tokens=40_000, min_sample_size=1, max_sample_size=8000)
    assert [len(shard_pretrain_loader(shards, world_size=w, rank=w - 1, **kw)) for w in (1, 2, 3)] == \
        [math.ceil(utts * 8000 / 40_000 / w) for w in (1, 2, 3)]


def test_each_languages_validation_loader_reads_that_language_alone_once(shards):
    from xlsr.data.shard_loader import shard_valid_loaders

    loaders = shard_valid_loaders(shards, "train", None, max_tokens=40_000, pretrain=False, labeler=lambda meta: [1])
    assert sorted(loaders) == sorted(TONE_SIZES)
    for lang, loader in loaders.items():
        ids = [i for b in loader for i in b.ids]
        assert sorted(ids) == [f"{lang}-{i:02d}" for i in range(TONE_SIZES[lang])]


def test_fine_tuning_streams_draw_languages_by_their_audio_and_drop_utterances_over_max_sample_size(shards):
    from xlsr.data.shard_loader import shard_finetune_loader

    loader = shard_finetune_loader(shards, "train", lambda meta: [1], max_tokens=40_000, max_sample_size=12_000,
                                   shuffle_buffer=4)
    assert loader.spec.alpha == 1.0  # fine-tuning keeps the corpus's language mix (no upsampling)
    lengths = [int(n) for _, b in zip(range(8), loader) for n in b.lengths]
    assert lengths and max(lengths) <= 12_000
