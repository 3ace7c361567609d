"""`--init` for pretraining: a pretraining checkpoint gives all its weights (quantizer included), a CTC one its encoder."""

from __future__ import annotations

import torch

from xlsr.interop.init_model import load_init, load_pretraining_weights
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

CFG = dict(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2, ffn_dim=32,
           conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)  # fmt: skip


def test_a_pretraining_checkpoint_gives_its_quantizer_and_projections(tmp_path):
    torch.manual_seed(0)
    saved = Wav2Vec2ForPreTraining(Wav2Vec2Config(**CFG))
    save_checkpoint(tmp_path / "ckpt", saved)
    init = load_init(str(tmp_path / "ckpt"), "tiny")
    torch.manual_seed(1)
    fresh = Wav2Vec2ForPreTraining(init.config)
    assert load_pretraining_weights(fresh, init) is True
    state = fresh.state_dict()
    assert state.keys() == saved.state_dict().keys()
    for k, v in saved.state_dict().items():
        assert torch.equal(state[k], v), k


def test_a_ctc_checkpoint_gives_its_encoder_and_says_the_quantizer_is_fresh(tmp_path):
    torch.manual_seed(0)
    ctc = Wav2Vec2ForCTC(Wav2Vec2Config(**CFG), 4)
    save_checkpoint(tmp_path / "ckpt", ctc, vocab=["<blank>", "<unk>", "a", "b"])
    init = load_init(str(tmp_path / "ckpt"), "tiny")
    torch.manual_seed(1)
    fresh = Wav2Vec2ForPreTraining(init.config)
    before = {k: v.clone() for k, v in fresh.state_dict().items() if not k.startswith("wav2vec2.")}
    assert load_pretraining_weights(fresh, init) is False
    for k, v in ctc.wav2vec2.state_dict().items():
        assert torch.equal(fresh.wav2vec2.state_dict()[k], v), k
    for k, v in before.items():
        assert torch.equal(fresh.state_dict()[k], v), k
