"""A shard re-run refused for unreadable audio after it replaced tars: both refusals name the way out, and it works."""

import pytest
from test_shards import _noise_corpus

from xlsr.data.shard_index import read_index
from xlsr.data.shards import write_shards
from xlsr.errors import XlsrError


def test_a_rerun_refused_after_replacing_tars_says_how_to_finish_and_finishing_works(tmp_path):
    data, out = _noise_corpus(tmp_path, 20, unreadable={3}), tmp_path / "shards"
    write_shards(data, out, splits=["train"], shard_size=75_000, max_bad_share=0.1, show_progress=False)
    # another shard size replaces tars before the unreadable file is counted against the stricter share
    with pytest.raises(XlsrError, match=r"more than max_bad_share=0 .*shards completed so far stay, listed in "
                                        r"index.partial.jsonl: fix or drop those files, or raise --max-bad-share"):
        write_shards(data, out, splits=["train"], shard_size=60_000, max_bad_share=0.0, show_progress=False)
    with pytest.raises(XlsrError, match=r"run it again to complete the shards \(if it was refused for unreadable "
                                        r"audio, fix or drop those files, or raise --max-bad-share\)"):
        read_index(out)
    write_shards(data, out, splits=["train"], shard_size=60_000, max_bad_share=0.1, show_progress=False)
    index = read_index(out)
    assert index.sources["train/en"]["skipped"] == 1
    assert sum(s.utterances for s in index.shards) == 19


def test_a_rerun_refused_before_touching_a_tar_does_not_talk_of_kept_shards(tmp_path):
    data, out = _noise_corpus(tmp_path, 20, unreadable={3}), tmp_path / "shards"
    write_shards(data, out, splits=["train"], max_bad_share=0.1, show_progress=False)
    with pytest.raises(XlsrError) as exc:
        write_shards(data, out, splits=["train"], max_bad_share=0.0, show_progress=False)
    assert "index.partial.jsonl" not in str(exc.value)
