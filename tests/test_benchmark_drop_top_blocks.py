"""benchmarks/drop_top_blocks.py keeps every weight but those of the dropped blocks, as they were."""

import pytest
import torch
from _benchmark_scripts import load_benchmark

from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

CONFIG = dict(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=3, num_heads=2, ffn_dim=32,
              conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)


def test_the_first_blocks_and_everything_else_are_kept_as_they_were(tmp_path):
    drop = load_benchmark("drop_top_blocks")
    torch.manual_seed(0)
    whole = Wav2Vec2ForPreTraining(Wav2Vec2Config(**CONFIG))
    save_checkpoint(tmp_path / "whole", whole)
    drop.drop_top_blocks(tmp_path / "whole", tmp_path / "two", keep=2)
    kept = load_pretrained(tmp_path / "two")
    assert kept.config.num_layers == 2 and kept.metadata["kept_blocks"] == 2
    before, after = whole.state_dict(), kept.model.state_dict()
    assert set(before) - set(after) == {k for k in before if ".layers.2." in k} and set(after) <= set(before)
    assert all(torch.equal(before[k], after[k]) for k in after)
    with pytest.raises(XlsrError, match=r"--keep: between 1 and 2"):
        drop.drop_top_blocks(tmp_path / "whole", tmp_path / "none", keep=3)
    save_checkpoint(tmp_path / "ctc", Wav2Vec2ForCTC(Wav2Vec2Config(**CONFIG), vocab_size=4),
                    vocab=["<blank>", "<unk>", "a", "b"])
    with pytest.raises(XlsrError, match=r"a Wav2Vec2ForCTC, not a pretraining checkpoint"):
        drop.drop_top_blocks(tmp_path / "ctc", tmp_path / "x", keep=1)
