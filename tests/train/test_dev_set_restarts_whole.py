"""Under FSDP, `Trainer._validate_set` stops a dev set at the batch count of the rank with the fewest
(`_every_rank_has_a_batch`), leaving the other ranks' fine-tuning dev loaders part-way through: the next validation
still reads each set whole, from its first batch (rank 0's figure picks `best`)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from xlsr.data.batching import finetune_loader
from xlsr.data.index_cache import open_manifest
from xlsr.text.vocab import Vocabulary
from xlsr.train.finetune import FinetuneTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tones import write_tone_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_dev_set_stopped_early_is_validated_whole_at_the_next_validation(tmp_path):
    manifest = write_tone_corpus(tmp_path, "dev", 6, seed=1)
    loader = finetune_loader(open_manifest(manifest), Vocabulary.build(["a i u"], "phones"), max_tokens=16000,
                             shuffle=False, keep_long=True)
    task = object.__new__(FinetuneTask)  # only what valid_sets reads
    task._dev_loaders = {"xx": loader}
    task.data = SimpleNamespace(dev_manifests={"xx": [str(manifest)]})
    whole = len(list(task.valid_sets()["xx"]))
    assert whole >= 4
    # as _validate_set under FSDP when another rank had only 2 batches: a third fetched, then the set abandoned
    batches = task.valid_sets()["xx"]
    for _ in range(3):
        next(batches)
    del batches
    assert len(list(task.valid_sets()["xx"])) == whole
