"""Where a run's model comes from: --init (a checkpoint or a run folder) or a preset, plus `model` overrides."""

from __future__ import annotations

import pytest
import torch

from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop.init_model import apply_overrides, load_encoder, load_init
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model

CFG = dict(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2, ffn_dim=32,
           conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)  # fmt: skip


def test_none_is_the_preset_with_random_weights():
    init = load_init("none", "tiny")
    assert not init.pretrained and init.encoder is None and init.ctc_head is None and init.source == "none"
    assert init.config.to_dict() == Wav2Vec2Config.preset("tiny").to_dict()
    assert load_init(None, "base").config.hidden_size == 768


def test_a_run_folder_gives_its_checkpoint_encoder_head_and_vocabulary(tmp_path):
    torch.manual_seed(0)
    ctc = Wav2Vec2ForCTC(Wav2Vec2Config(**CFG), 4)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "update_0000003", ctc, vocab=["<blank>", "<unk>", "a", "b"],
                    metadata={"labels": "phones"})
    (tmp_path / "run" / "checkpoints" / "best").symlink_to("update_0000003")
    init = load_init(str(tmp_path / "run"), "tiny")
    assert init.pretrained and init.source == str(tmp_path / "run" / "checkpoints" / "best")
    assert init.vocab_tokens == ["<blank>", "<unk>", "a", "b"] and init.labels == "phones"
    assert init.config.hidden_size == 24 and torch.equal(init.ctc_head.weight, ctc.lm_head.weight)
    fresh = Wav2Vec2ForPreTraining(init.config)
    load_encoder(fresh.wav2vec2, init)
    for k, v in ctc.wav2vec2.state_dict().items():
        assert torch.equal(fresh.wav2vec2.state_dict()[k], v)
    with pytest.raises(CheckpointError, match=r"checkpoints/best: .*shapes contradict the config"):
        load_encoder(Wav2Vec2Model(Wav2Vec2Config(**{**CFG, "ffn_dim": 48})), init)


def test_overrides_are_typed_validated_and_unknown_keys_named():
    base = Wav2Vec2Config(**CFG)
    out = apply_overrides(base, {"mask_prob": "0.25", "layerdrop": 0.1})
    assert out.mask_prob == 0.25 and out.layerdrop == 0.1 and base.mask_prob != 0.25  # a copy
    with pytest.raises(XlsrError, match="model.nope: unknown Wav2Vec2Config field; allowed: "):
        apply_overrides(base, {"nope": 1})
    with pytest.raises(XlsrError, match="model.num_layers"):
        apply_overrides(base, {"num_layers": "many"})
    # a value of the right type that cannot build a model is named as the command line and config.yaml name it
    with pytest.raises(XlsrError, match=r"^model.latent_temp=\(0.5, 2.0, 1.0\): must be \(max, min, decay\)"):
        apply_overrides(base, {"latent_temp": "0.5,2,1"})
    with pytest.raises(XlsrError, match=r"^model.num_heads=5: must divide hidden_size=24"):
        apply_overrides(base, {"num_heads": 5})
