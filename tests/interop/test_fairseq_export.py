"""export_fairseq and `xlsr convert --to fairseq`: what the file holds, a round trip through our fairseq loader,
and what fairseq's wav2vec 2.0 cannot hold refused in one line. (fairseq itself reads the exports in
test_fairseq_reference.py.)"""

from __future__ import annotations

import pytest
import torch

from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.interop.fairseq import load_fairseq, parse_conv_feature_layers
from xlsr.interop.fairseq_export import export_fairseq
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import build_model, save_checkpoint
from xlsr.model import Wav2Vec2Config
from xlsr.text.vocab import Vocabulary


def small_config(**overrides) -> Wav2Vec2Config:
    fields = dict(conv_layers=[(32, 10, 5), (32, 3, 2), (32, 2, 2)], hidden_size=48, num_layers=2, num_heads=4,
                  ffn_dim=96, conv_pos=8, conv_pos_groups=4, final_dim=24, codevector_dim=24,
                  num_codevectors_per_group=10)  # fmt: skip
    fields.update(overrides)
    return Wav2Vec2Config(**fields)


FAMILIES = {"base": {}, "xlsr": dict(extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True,
                                     normalize_waveform=True, dropout=0.05, mask_prob=0.5)}


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pretraining_model_round_trips_exactly(tmp_path, family):
    cfg = small_config(**FAMILIES[family])
    model = randomized(build_model("Wav2Vec2ForPreTraining", cfg), seed=1)
    folder = export_fairseq(model, tmp_path / "fs")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt"]
    back = load_fairseq(folder / "checkpoint.pt")
    assert type(back.model).__name__ == "Wav2Vec2ForPreTraining"
    for name in ("conv_layers", "extractor_mode", "conv_bias", "layer_norm_first", "hidden_size", "num_layers",
                 "ffn_dim", "final_dim", "codevector_dim", "num_codevectors_per_group", "latent_temp",
                 "normalize_waveform", "dropout", "mask_prob", "diversity_weight", "feature_penalty_weight"):
        assert getattr(back.config, name) == getattr(cfg, name), name
    ours, theirs = model.state_dict(), back.model.state_dict()
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_file_is_plain_data_in_fairseq_names(tmp_path):
    cfg = small_config(**FAMILIES["xlsr"])
    folder = export_fairseq(randomized(build_model("Wav2Vec2ForPreTraining", cfg), seed=2), tmp_path / "fs")
    saved = torch.load(folder / "checkpoint.pt", weights_only=True)  # no pickled classes at all
    model_cfg, task = saved["cfg"]["model"], saved["cfg"]["task"]
    assert model_cfg["_name"] == "wav2vec2" and task["_name"] == "audio_pretraining" and task["normalize"] is True
    assert parse_conv_feature_layers(model_cfg["conv_feature_layers"]) == cfg.conv_layers
    assert (model_cfg["extractor_mode"], model_cfg["encoder_embed_dim"], model_cfg["latent_dim"]) == ("layer_norm", 48, 24)
    keys = set(saved["model"])
    assert {"mask_emb", "feature_extractor.conv_layers.1.2.1.weight", "post_extract_proj.weight",
            "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v", "encoder.layers.0.self_attn.q_proj.bias",
            "encoder.layers.1.final_layer_norm.weight", "quantizer.vars", "project_q.weight",
            "final_proj.bias"} <= keys  # fmt: skip
    assert saved["optimizer_history"][-1]["num_updates"] == 0  # what fairseq's upgrade step reads


@pytest.mark.parametrize("kind,labels", [("chars", "ltr"), ("phones", "phn")])
def test_ctc_model_gets_fairseq_head_order_and_dictionary(tmp_path, kind, labels):
    vocab = Vocabulary.build(["ab ba", "b a"] if kind == "chars" else ["a ʃ", "ʃ a"], kind=kind)
    cfg = small_config(**FAMILIES["base"])
    model = randomized(build_model("Wav2Vec2ForCTC", cfg, len(vocab)), seed=3)
    folder = export_fairseq(model, tmp_path / "fs", vocab=vocab)
    symbols = [line.split()[0] for line in (folder / f"dict.{labels}.txt").read_text().splitlines()]
    assert symbols == vocab.tokens[2:]
    saved = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert saved["cfg"]["model"]["_name"] == "wav2vec_ctc" and saved["cfg"]["task"]["labels"] == labels
    assert saved["cfg"]["model"]["w2v_args"]["model"]["_name"] == "wav2vec2"
    head = saved["model"]["w2v_encoder.proj.weight"]
    ours = model.lm_head.weight.detach()
    # fairseq's rows: <s> (its blank) = our row 0, <pad>, </s> (new, never predicted), <unk> = our row 1, symbols
    assert torch.equal(head[0], ours[0]) and torch.equal(head[3], ours[1]) and torch.equal(head[4:], ours[2:])
    assert (saved["model"]["w2v_encoder.proj.bias"][1:3] < -1000).all()
    assert not any(k.startswith(("quantizer", "project_q", "final_proj")) for k in saved["model"])

    back = load_fairseq(folder / "checkpoint.pt")
    assert back.vocab == ["<blank>", "<unk>", "<pad>", "</s>", *vocab.tokens[2:]]
    assert load_pretrained(folder).vocab == back.vocab  # the folder itself names its checkpoint.pt
    assert back.metadata["labels"] == kind
    waveforms = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = torch.log_softmax(model(waveforms).logits, -1)
        after = torch.log_softmax(back.model.eval()(waveforms).logits, -1)
    rows = [back.vocab.index(t) for t in vocab.tokens]
    assert torch.allclose(after[..., rows], before, atol=1e-5)
    # and again: the <pad> and </s> rows it now carries go back to their places, nothing is added twice
    again = export_fairseq(back.model, tmp_path / "again", vocab=back.vocab, kind=back.metadata["labels"])
    assert (again / f"dict.{labels}.txt").read_text() == (folder / f"dict.{labels}.txt").read_text()
    resaved = torch.load(again / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(resaved[k], v) for k, v in saved["model"].items())


def test_an_identity_projection_is_left_out_and_a_trained_one_refused(tmp_path):
    cfg = small_config(hidden_size=32, conv_pos_groups=4)  # the CNN's width: fairseq has no post_extract_proj
    model = randomized(build_model("Wav2Vec2ForPreTraining", cfg), seed=4)
    with pytest.raises(CheckpointError, match=r"no feature projection.*--to hf"):
        export_fairseq(model, tmp_path / "trained")
    assert not (tmp_path / "trained").exists()
    with torch.no_grad():
        model.wav2vec2.feature_projection.weight.copy_(torch.eye(32))
        model.wav2vec2.feature_projection.bias.zero_()
    folder = export_fairseq(model, tmp_path / "identity")
    assert not any(k.startswith("post_extract_proj") for k in torch.load(folder / "checkpoint.pt")["model"])
    back = load_fairseq(folder / "checkpoint.pt")
    assert torch.equal(back.model.wav2vec2.feature_projection.weight, torch.eye(32))


@pytest.mark.parametrize("what,build,match", [
    ("adapters", lambda: build_model("Wav2Vec2ForCTC", small_config(adapter_attn_dim=8, layer_norm_first=True), 5),
     "MMS adapters"),
    ("eps", lambda: build_model("Wav2Vec2ForPreTraining", small_config(layer_norm_eps=1e-6)), "1e-5 only"),
    ("bare", lambda: build_model("Wav2Vec2Model", small_config()), "this is a Wav2Vec2Model"),
    ("no vocab", lambda: build_model("Wav2Vec2ForCTC", small_config(), 5), "needs its vocabulary"),
], ids=["adapters", "eps", "bare", "no-vocab"])
def test_what_fairseq_cannot_hold_is_refused(tmp_path, what, build, match):
    vocab = ["<blank>", "<unk>", "|", "a", "b"] if what == "adapters" else None
    with pytest.raises(CheckpointError, match=match):
        export_fairseq(build(), tmp_path / "out", vocab=vocab)
    assert not (tmp_path / "out").exists()


def test_a_folder_of_something_else_is_not_replaced(tmp_path):
    model = build_model("Wav2Vec2ForPreTraining", small_config())
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not an earlier fairseq export"):
        export_fairseq(model, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    export_fairseq(model, tmp_path / "fs")
    export_fairseq(model, tmp_path / "fs")  # an earlier export is replaced


def test_convert_to_fairseq_through_the_cli(tmp_path, capsys):
    vocab = Vocabulary.build(["ab ba"], kind="chars")
    model = randomized(build_model("Wav2Vec2ForCTC", small_config(), len(vocab)), seed=5)
    save_checkpoint(tmp_path / "ours", model, vocab=vocab)
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "fs"), "--to", "fairseq"]) == 0
    assert "-> " + str(tmp_path / "fs") + " (fairseq)" in capsys.readouterr().out
    assert (tmp_path / "fs" / "dict.ltr.txt").read_text() == "|\t1\n".replace("\t", " ") + "a 1\nb 1\n"
    # a model fairseq cannot hold: one line, nothing written
    tied = build_model("Wav2Vec2ForPreTraining", small_config(hidden_size=32))
    save_checkpoint(tmp_path / "tied", randomized(tied, seed=6))
    assert main(["convert", str(tmp_path / "tied"), str(tmp_path / "fs2"), "--to", "fairseq"]) == 2
    err = capsys.readouterr().err
    assert "no feature projection" in err and err.count("\n") == 1 and not (tmp_path / "fs2").exists()
