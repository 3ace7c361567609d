"""Our checkpoint directory: exact round trip from the file alone, atomic replacement, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from xlsr.errors import CheckpointError
from xlsr.interop import native
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import load_checkpoint, save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model

CFG = dict(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2, ffn_dim=32,
           conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)  # fmt: skip


def _models():
    cfg = Wav2Vec2Config(**CFG, extractor_mode="layer_norm", layer_norm_first=True, normalize_waveform=True)
    torch.manual_seed(0)
    return [Wav2Vec2Model(cfg), Wav2Vec2ForPreTraining(cfg), Wav2Vec2ForCTC(cfg, 5)]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_round_trip_is_exact(index, tmp_path):
    model = _models()[index].eval()
    vocab = ["<blank>", "<unk>", "|", "a", "b"] if index == 2 else None
    save_checkpoint(tmp_path / "ckpt", model, vocab=vocab, metadata={"step": 7})
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.source_format == "xlsr" and type(loaded.model) is type(model)
    assert loaded.config == model.config and loaded.vocab == vocab and loaded.metadata == {"step": 7}
    a, b = model.state_dict(), loaded.model.state_dict()
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["format"] == "xlsr" and config["version"] == 1 and config["architecture"] == type(model).__name__
    x, lengths = torch.randn(2, 800), torch.tensor([800, 600])
    torch.testing.assert_close(_output(loaded.model, x, lengths), _output(model, x, lengths), atol=0, rtol=0)


def _output(model, x, lengths) -> torch.Tensor:
    """The tensor each architecture is used for: hidden states, CTC logits, or quantizer codes."""
    with torch.no_grad():
        if isinstance(model, Wav2Vec2ForPreTraining):
            return model.quantize(x, lengths)[0]
        out = model(x, lengths)
        return out.logits if isinstance(model, Wav2Vec2ForCTC) else out.last_hidden_state


def test_existing_checkpoint_is_replaced_only_when_complete(tmp_path, monkeypatch):
    first, second = _models()[0], _models()[0]
    with torch.no_grad():
        second.mask_embedding.add_(1.0)
    save_checkpoint(tmp_path / "ckpt", first)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("xlsr.interop.native.write_safetensors", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt", second)
    monkeypatch.undo()
    kept = load_checkpoint(tmp_path / "ckpt").model
    assert torch.equal(kept.mask_embedding, first.mask_embedding)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dirs left behind
    save_checkpoint(tmp_path / "ckpt", second)
    assert torch.equal(load_checkpoint(tmp_path / "ckpt").model.mask_embedding, second.mask_embedding)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_vocab_size_must_match_head(tmp_path):
    with pytest.raises(CheckpointError, match="vocabulary has 3 tokens but lm_head has 5 rows"):
        save_checkpoint(tmp_path / "ckpt", _models()[2], vocab=["<blank>", "<unk>", "a"])


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _models()[1])
    weights = tmp_path / "ckpt" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 3])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable safetensors file"):
        load_checkpoint(tmp_path / "ckpt")

    weights.write_bytes(good)
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["ffn_dim"] = 33
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shapes contradict the config: .*fc1\.bias \(32,\) vs config \(33,\)"):
        load_checkpoint(tmp_path / "ckpt")

    config["model"]["ffn_dim"] = 32
    config["model"]["hidden_sise"] = 3
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: bad model config .*hidden_sise"):
        load_checkpoint(tmp_path / "ckpt")

    config_path.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_pretrained(tmp_path / "ckpt")

    state = load_file(weights)
    state.pop("project_q.weight")
    state["extra.weight"] = torch.zeros(1)
    config["model"].pop("hidden_sise")
    config_path.write_text(json.dumps(config))
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"missing keys: project_q\.weight; unexpected keys: extra\.weight"):
        load_checkpoint(tmp_path / "ckpt")


def test_directory_without_config_or_of_other_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: not a checkpoint directory"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a wav2vec2 checkpoint .*'bert'"):
        load_pretrained(tmp_path / "bert")


def test_path_to_file_inside_checkpoint_means_its_directory(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _models()[0])
    assert native.is_native_checkpoint(tmp_path / "ckpt")
    assert type(load_pretrained(tmp_path / "ckpt" / "model.safetensors").model) is Wav2Vec2Model


def test_run_folder_means_its_best_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="run folder without a complete checkpoint"):
        load_pretrained(run)
    encoder, pretraining, _ = _models()
    save_checkpoint(run / "checkpoints" / "update_0000002", encoder)
    save_checkpoint(run / "checkpoints" / "update_0000004", pretraining)
    (run / "checkpoints" / "last").symlink_to("update_0000004")
    assert type(load_pretrained(run).model) is Wav2Vec2ForPreTraining  # no best yet: last
    (run / "checkpoints" / "best").symlink_to("update_0000002")
    assert type(load_pretrained(run).model) is Wav2Vec2Model


def test_file_or_foreign_folder_at_destination_is_never_replaced(tmp_path):
    model = _models()[0]
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    for dst in ("notes.txt", "photos"):
        with pytest.raises(CheckpointError, match=f"{dst}: exists and is not a checkpoint folder"):
            save_checkpoint(tmp_path / dst, model)
    assert (tmp_path / "notes.txt").read_text() == "keep me" and (tmp_path / "photos" / "cat.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photos"]  # no temp folders left
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", model)  # an empty folder, or an earlier checkpoint, is replaced
    save_checkpoint(tmp_path / "empty", model)
    assert type(load_pretrained(tmp_path / "empty").model) is Wav2Vec2Model
