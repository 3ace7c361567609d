"""A pretraining batch limit (max_tokens) below the crop length (max_sample_size) is refused in one line that says
the way out, for manifests and shard folders alike."""

import pytest

from xlsr.data.batching import pretrain_loader
from xlsr.data.shard_loader import shard_pretrain_loader
from xlsr.errors import XlsrError

WAY_OUT = (r"^max_tokens \(128000\) is smaller than max_sample_size \(250000\): lower --max-sample-size to at most "
           r"128000, or raise --max-tokens to at least 250000$")


def test_manifest_pretraining_says_how_to_fit_the_crop_in_a_batch():
    with pytest.raises(XlsrError, match=WAY_OUT):
        pretrain_loader([], max_tokens=128_000, max_sample_size=250_000)


def test_shard_pretraining_says_how_to_fit_the_crop_in_a_batch(tmp_path):
    with pytest.raises(XlsrError, match=WAY_OUT):
        shard_pretrain_loader(tmp_path, max_tokens=128_000, max_sample_size=250_000)
