"""A small CTC model whose every frame says one token: its transcript of any audio is exactly that token, so the
decoding and scoring tests know what it says (tests/decode, tests/text)."""

from pathlib import Path

import torch

from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

SMALL = dict(conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2, hidden_size=32, num_layers=1,
             num_heads=2, ffn_dim=64, conv_pos=16, conv_pos_groups=2)


def constant_model(where: Path, vocab: list[str], token: str, labels: str) -> Path:
    """The model saved as an xlsr checkpoint at `where`, its vocabulary `vocab` of `labels` ("phones"/"chars")."""
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    model = Wav2Vec2ForCTC(cfg, len(vocab))
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(-10.0)
        model.lm_head.bias[vocab.index(token)] = 10.0
    return save_checkpoint(where, model, vocab=vocab, metadata={"labels": labels})
