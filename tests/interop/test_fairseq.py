"""fairseq `.pt` fixtures built here from transformers models by the documented key map load to the same model."""

from __future__ import annotations

import argparse

import pytest
import torch
from fairseq_fixtures import Wrap, fairseq_model_cfg, fairseq_state
from hf_fixtures import HF_CONFIGS, make_hf, padded_batch, transformers

from xlsr.errors import CheckpointError
from xlsr.interop.fairseq import parse_conv_feature_layers, read_fairseq_dictionary
from xlsr.interop.huggingface import export_hf
from xlsr.interop.load import load_pretrained
from xlsr.text.vocab import Vocabulary


@pytest.mark.parametrize("config_name", list(HF_CONFIGS))
def test_pretrained_fixture_loads_to_same_weights_and_outputs(config_name, tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", config_name, seed=10)
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"args": None, "cfg": {"model": fairseq_model_cfg(config_name), "task": {"normalize": True},
                                      "criterion": {"loss_weights": [0.1, 10.0]}},
                "model": fairseq_state(hf, config_name, finetuned=False), "optimizer_history": []}, path)  # fmt: skip
    loaded = load_pretrained(path)
    assert loaded.source_format == "fairseq" and type(loaded.model).__name__ == "Wav2Vec2ForPreTraining"
    cfg = loaded.config
    assert cfg.normalize_waveform is True and cfg.latent_temp == (2.0, 0.1, 0.999995)
    assert cfg.feature_grad_mult == 0.1 and cfg.feature_penalty_weight == 10.0
    ours = loaded.model.state_dict()
    assert torch.equal(ours["quantizer.codevectors"], hf.quantizer.codevectors)
    assert torch.equal(ours["final_proj.weight"], hf.project_hid.weight)
    assert torch.equal(ours["wav2vec2.feature_norm.weight"], hf.wav2vec2.feature_projection.layer_norm.weight)
    x, _, _ = padded_batch(seed=10)
    with torch.no_grad():
        ref = hf.wav2vec2(x)
        out = loaded.model.wav2vec2(x)
        torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=1e-4, rtol=0)
        codes, _ = loaded.model.quantize(x)
        ref_logits = hf.quantizer.weight_proj(ref.extract_features)
        G = cfg.num_codevector_groups
        assert torch.equal(codes, ref_logits.view(*codes.shape[:2], G, -1).argmax(-1))


def test_finetuned_fixture_with_dictionary(tmp_path):
    config_name = "xlsr_like"
    hf = make_hf("Wav2Vec2ForCTC", config_name, seed=11)
    letters = list("|etaoinh")  # 4 fairseq specials + 7 letters = 11 rows = hf_fixtures.VOCAB_SIZE
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{c} {100 - i}\n" for i, c in enumerate(letters[:7])))
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_path": "/nowhere/xlsr_53_56k.pt", "final_dropout": 0.1,
                     "mask_prob": 0.75, "mask_channel_prob": 0.25, "mask_channel_length": 64, "layerdrop": 0.1,
                     "normalize": True,
                     "w2v_args": {"model": fairseq_model_cfg(config_name), "task": {"normalize": True}}},
           "task": {"_name": "audio_finetuning", "labels": "ltr", "normalize": True}}  # fmt: skip
    path = tmp_path / "finetuned.pt"
    torch.save({"cfg": cfg, "model": fairseq_state(hf, config_name, finetuned=True)}, path)
    loaded = load_pretrained(path)  # dict.ltr.txt beside it is found
    assert type(loaded.model).__name__ == "Wav2Vec2ForCTC"
    # fairseq's <s>, <pad>, </s>, <unk> first; ours: <blank> (= <s>) and <unk> first, rows moved along.
    assert loaded.vocab == ["<blank>", "<unk>", "<pad>", "</s>"] + letters[:7]
    Vocabulary.from_dict(loaded.vocab)  # the text layer accepts it
    assert loaded.config.mask_prob == 0.75 and loaded.config.final_dropout == 0.1
    assert loaded.config.mask_channel_length == 64
    x, lengths, attention_mask = padded_batch(seed=11)
    with torch.no_grad():
        ref = hf(x, attention_mask=attention_mask).logits
        out = loaded.model(x, lengths)
    valid = torch.arange(out.logits.shape[1])[None, :, None] < out.frame_lengths[:, None, None]
    order = [0, 3, 1, 2] + list(range(4, 11))
    torch.testing.assert_close(out.logits * valid, ref[..., order] * valid, atol=1e-4, rtol=0)

    # And on to transformers: the blank is its pad token, at id 0 (named [PAD]: fairseq has its own <pad>).
    export_hf(loaded.model, tmp_path / "hf", vocab=loaded.vocab)
    reloaded = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "hf").eval()
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == 0 and tok.unk_token_id == 1 and len(tok) == 11
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x, attention_mask=attention_mask).logits * valid, out.logits * valid,
                                   atol=1e-4, rtol=0)

    # A dictionary of the wrong size names both files.
    (tmp_path / "dict.ltr.txt").write_text("a 1\n")
    with pytest.raises(CheckpointError, match=r"dict\.ltr\.txt: dictionary gives 5 tokens but .*finetuned\.pt has 11"):
        load_pretrained(path)


def test_old_namespace_args_and_identity_projection(tmp_path):
    # Old (pre-hydra) checkpoints keep a flat argparse Namespace; with 512 == D there is no post_extract_proj.
    config_name = "odd"
    c = HF_CONFIGS[config_name]
    hf = make_hf("Wav2Vec2Model", config_name, seed=12, conv_dim=(20, c["hidden_size"]))
    with torch.no_grad():
        hf.feature_projection.projection.weight.copy_(torch.eye(c["hidden_size"]))
        hf.feature_projection.projection.bias.zero_()
    state = {("wav2vec2." + k): v for k, v in hf.state_dict().items()}
    state = {k: v for k, v in fairseq_state(Wrap(state), config_name, finetuned=False).items()
             if not k.startswith("post_extract_proj.")}
    args = fairseq_model_cfg(config_name)
    args["conv_feature_layers"] = args["conv_feature_layers"].replace("(28,", f"({c['hidden_size']},")
    args.update(arch="wav2vec2", normalize=False, quantize_targets=False)
    path = tmp_path / "old.pt"
    torch.save({"args": argparse.Namespace(**args), "model": state}, path)
    loaded = load_pretrained(path)
    assert type(loaded.model).__name__ == "Wav2Vec2Model"
    assert loaded.metadata["identity_filled"] == ["feature_projection"]
    x, _, _ = padded_batch(seed=12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).last_hidden_state, hf(x).last_hidden_state, atol=1e-4, rtol=0)


def test_unknown_and_missing_fairseq_keys_are_listed(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "base_like", seed=13)
    state = fairseq_state(hf, "base_like", finetuned=False)
    state["encoder.layers.0.adapter_layer.W_a"] = torch.zeros(2, 2)
    state["target_glu.0.weight"] = torch.zeros(2, 2)
    ckpt = {"cfg": {"model": fairseq_model_cfg("base_like"), "task": {}}, "model": state}
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"extra\.pt: unexpected keys .*adapter_layer\.W_a, target_glu\.0\.weight"):
        load_pretrained(tmp_path / "extra.pt")
    del state["encoder.layers.0.adapter_layer.W_a"], state["target_glu.0.weight"], state["encoder.layers.1.fc2.bias"]
    torch.save(ckpt, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match=r"short\.pt: missing keys: wav2vec2\.encoder\.layers\.1\.feed_forward\.fc2\.bias"):
        load_pretrained(tmp_path / "short.pt")


def test_config_contradicting_weights(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "base_like", seed=14)
    cfg = fairseq_model_cfg("base_like")
    cfg["encoder_ffn_embed_dim"] = 128
    torch.save({"cfg": {"model": cfg, "task": {}}, "model": fairseq_state(hf, "base_like", False)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"c\.pt: shapes contradict the config: .*fc1\.bias \(64,\) vs config \(128,\)"):
        load_pretrained(tmp_path / "c.pt")


def test_conv_spec_parser_is_safe():
    spec = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    assert parse_conv_feature_layers(spec) == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(ValueError):
        parse_conv_feature_layers("__import__('os').system('true')")


def test_binary_dictionary_is_one_line_error(tmp_path):
    p = tmp_path / "dict.ltr.txt"
    p.write_bytes(b"\x80\x04\x95\xff not text")
    with pytest.raises(CheckpointError, match=r"dict.ltr.txt: not a fairseq dictionary \(not UTF-8 text\)"):
        read_fairseq_dictionary(p)


@pytest.mark.parametrize("name, family", [("hubert", "HuBERT"), ("data2vec_audio", "data2vec"),
                                          ("hubert_ctc", "HuBERT")])
def test_another_fairseq_family_is_named(tmp_path, name, family):
    model_cfg = {**fairseq_model_cfg("xlsr_like"), "_name": name}
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_args": {"model": model_cfg, "task": {}}}} if name == "data2vec_audio" \
        else {"model": model_cfg, "task": {}}
    path = tmp_path / f"{name}.pt"
    torch.save({"cfg": cfg, "model": {"encoder.layer_norm.weight": torch.ones(4)}}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: a fairseq {family} checkpoint \(model '{name}'\); xlsr "
                                              r"reads the wav2vec 2.0 family"):
        load_pretrained(path)


def test_a_conformer_is_named(tmp_path):
    path = tmp_path / "conformer.pt"
    torch.save({"cfg": {"model": {**fairseq_model_cfg("xlsr_like"), "layer_type": "conformer"}, "task": {}},
                "model": {"encoder.layer_norm.weight": torch.ones(4)}}, path)
    with pytest.raises(CheckpointError, match=r"layer_type='conformer' \(wav2vec 2.0 conformer\) is not supported"):
        load_pretrained(path)


def test_a_conv_spec_that_builds_a_huge_list_is_refused_at_once(tmp_path):
    # 22 characters that would build 9 million elements (seconds, and quadratically more for larger numbers)
    with pytest.raises(ValueError, match=r"^conv_feature_layers='\[\[1\] \* 3000\] \* 3000': builds more than 1000 "):
        parse_conv_feature_layers("[[1] * 3000] * 3000")
    path = tmp_path / "huge_spec.pt"
    cfg = {**fairseq_model_cfg("base_like"), "conv_feature_layers": "[(1, 2)] * 5000"}
    torch.save({"cfg": {"model": cfg, "task": {}}, "model": {"encoder.layer_norm.weight": torch.ones(4)}}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: conv_feature_layers=.*: builds more than 1000 elements"):
        load_pretrained(path)


def _pretraining_file(path, **model_args):
    hf = make_hf("Wav2Vec2ForPreTraining", "base_like", seed=15)
    torch.save({"cfg": {"model": {**fairseq_model_cfg("base_like"), **model_args}, "task": {}},
                "model": fairseq_state(hf, "base_like", finetuned=False)}, path)
    return path


def test_crop_seq_to_multiple_is_refused(tmp_path):
    # fairseq drops the CNN's last frames down to a multiple of it: 196 frames where we would give 199.
    assert load_pretrained(_pretraining_file(tmp_path / "one.pt", crop_seq_to_multiple=1)).model is not None
    path = _pretraining_file(tmp_path / "four.pt", crop_seq_to_multiple=4)
    with pytest.raises(CheckpointError, match=rf"^{path}: crop_seq_to_multiple=4 is not supported \(only 1"):
        load_pretrained(path)


@pytest.mark.parametrize("setting", [{"negatives_from_everywhere": True}, {"codebook_negatives": 10}])
def test_loss_only_settings_we_do_not_read_are_named(tmp_path, caplog, setting):
    (name, value), = setting.items()
    with caplog.at_level("WARNING", logger="xlsr.interop.fairseq"):
        load_pretrained(_pretraining_file(tmp_path / "default.pt"))
    assert not caplog.records
    path = _pretraining_file(tmp_path / "set.pt", **setting)
    with caplog.at_level("WARNING", logger="xlsr.interop.fairseq"):
        loaded = load_pretrained(path)  # the weights and outputs are fairseq's: the file still loads
    assert type(loaded.model).__name__ == "Wav2Vec2ForPreTraining"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: {name}={value!r} is not read: xlsr's pretraining "
        + ("draws distractors from the masked frames only" if name == "negatives_from_everywhere"
           else "draws no distractors from the codebook")
        + ", so a continued pretraining run's loss differs from fairseq's (the weights and outputs do not)"]


# ---------------------------------------------------------------------------- dictionaries, as fairseq 0.12.2 reads them
SPECIALS = ["<blank>", "<pad>", "</s>", "<unk>"]


@pytest.mark.parametrize("symbol", ["\u2028", "\x85", "\x0c", "\x1c", "a\u2029b"])
def test_dictionary_lines_end_at_newline_only(tmp_path, symbol):
    # Dictionary.add_from_file reads text-mode lines: "\r\n" ends a line, U+2028 and friends do not.
    p = tmp_path / "dict.ltr.txt"
    p.write_bytes(f"| 10\r\ne 9\n{symbol} 3\nt 2\n".encode())
    assert read_fairseq_dictionary(p) == SPECIALS + ["|", "e", symbol, "t"]
    p.write_text(f"| 10\n{symbol} 3\nnot-a-count x\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"dict\.ltr\.txt:3: expected '<symbol> <count>'"):
        read_fairseq_dictionary(p)


def test_dictionary_counts_are_read_as_fairseq_reads_them(tmp_path):
    p = tmp_path / "dict.ltr.txt"
    p.write_text("a +5\nb 3\n", encoding="utf-8")  # int() takes "+5"
    assert read_fairseq_dictionary(p) == SPECIALS + ["a", "b"]
    p.write_text("a 5\nb \u00b2\n", encoding="utf-8")  # a superscript two is a digit to isdigit(), not to int()
    with pytest.raises(CheckpointError, match=r"dict\.ltr\.txt:2: expected '<symbol> <count>'"):
        read_fairseq_dictionary(p)


@pytest.mark.parametrize("text, line, symbol, row", [
    ("a 5\nb 3\na 1\n", 3, "a", 4),
    ("a 5\n<unk> 3\n", 2, "<unk>", 3),
])
def test_a_symbol_listed_twice_is_refused_as_fairseq_refuses_it(tmp_path, text, line, symbol, row):
    p = tmp_path / "dict.ltr.txt"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(CheckpointError, match=rf"dict\.ltr\.txt:{line}: symbol '{symbol}' is listed twice "
                                              rf"\(row {row} has it\); fairseq refuses this too"):
        read_fairseq_dictionary(p)


def test_fairseq_overwrite_flag(tmp_path):
    # fairseq 0.12.2: `<unk> 0 #fairseq:overwrite` appends a second <unk> row (index("<unk>") then names it,
    # unk_index stays 3); our vocabularies hold each token once, so that is refused. On a new symbol it is a no-op.
    p = tmp_path / "dict.ltr.txt"
    p.write_text("a 5\nb 3 #fairseq:overwrite\n", encoding="utf-8")
    assert read_fairseq_dictionary(p) == SPECIALS + ["a", "b"]
    p.write_text("a 5\n<unk> 0 #fairseq:overwrite\nb 3\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"dict\.ltr\.txt:2: '<unk>' with #fairseq:overwrite makes a second "
                                              r"output row for it \(row 3 has it\)"):
        read_fairseq_dictionary(p)
