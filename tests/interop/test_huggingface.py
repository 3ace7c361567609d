"""HF import/export: bit-identical round trips, files transformers can load, weight layouts, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from hf_fixtures import HF_CLASSES, HF_CONFIGS, VOCAB_SIZE, make_hf, padded_batch, transformers
from safetensors.torch import load_file, save_file

from xlsr.errors import CheckpointError
from xlsr.interop.hf_config import config_from_hf
from xlsr.interop.huggingface import export_hf, import_hf
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import load_checkpoint, save_checkpoint
from xlsr.text.vocab import Vocabulary

CHAR_TOKENS = ["<blank>", "<unk>", "|", "a", "b", "c", "d", "e", "f", "g", "h"]
assert len(CHAR_TOKENS) == VOCAB_SIZE


@pytest.mark.parametrize("cls_name", HF_CLASSES)
@pytest.mark.parametrize("config_name", ["base_like", "odd"])
def test_hf_to_xlsr_to_hf_is_bit_identical(cls_name, config_name, tmp_path):
    hf = make_hf(cls_name, config_name, seed=4)
    hf.save_pretrained(tmp_path / "hf")
    loaded = import_hf(tmp_path / "hf")
    save_checkpoint(tmp_path / "ours", loaded.model, vocab=loaded.vocab)
    again = load_checkpoint(tmp_path / "ours")
    export_hf(again.model, tmp_path / "back", vocab=again.vocab)
    before = load_file(tmp_path / "hf" / "model.safetensors")
    after = load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(before) == sorted(after)
    for key in before:
        assert before[key].dtype == after[key].dtype
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("config_name", list(HF_CONFIGS))
def test_export_loads_in_transformers_with_same_outputs(config_name, tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", config_name, seed=5)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf").model
    export_hf(ours, tmp_path / "out", vocab=CHAR_TOKENS)
    reloaded, info = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    x, _, _ = padded_batch(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(x).logits, ours(x).logits, atol=1e-4, rtol=0)


def test_exported_ctc_tokenizer_and_feature_extractor(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "xlsr_like")
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf").model
    export_hf(ours, tmp_path / "out", vocab=CHAR_TOKENS)
    processor = transformers.Wav2Vec2Processor.from_pretrained(tmp_path / "out")
    tok, fe = processor.tokenizer, processor.feature_extractor
    assert tok.pad_token_id == 0 and tok.pad_token == "<pad>"  # the CTC blank
    assert tok.unk_token_id == 1
    assert len(tok) == VOCAB_SIZE  # no extra bos/eos tokens appended past the head
    assert tok("ab cd").input_ids == [3, 4, 2, 5, 6]
    assert tok.decode([3, 3, 0, 4, 2, 5]) == "ab c"  # CTC collapse, blank dropped, | → space
    assert fe.do_normalize is True and fe.return_attention_mask is True  # layer-norm model
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["pad_token_id"] == 0 and config["vocab_size"] == VOCAB_SIZE
    # And back: the blank is ours again.
    back = import_hf(tmp_path / "out")
    assert back.vocab == CHAR_TOKENS and back.metadata["labels"] == "chars"


def test_group_norm_export_has_no_attention_mask_and_no_normalization(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    loaded = load_pretrained(tmp_path / "hf")
    assert loaded.config.normalize_waveform is False  # no preprocessor config: group norm → raw audio
    export_hf(loaded.model, tmp_path / "out", vocab=CHAR_TOKENS)
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path / "out")
    assert fe.do_normalize is False and fe.return_attention_mask is False


def test_phone_vocabulary_exports_phoneme_tokenizer(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "odd")
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf").model
    phones = ["<blank>", "<unk>", "|", "aː", "b", "tʃ", "d", "e", "f", "ŋ", "h"]
    export_hf(ours, tmp_path / "out", vocab=phones)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert type(tok).__name__ == "Wav2Vec2PhonemeCTCTokenizer"
    assert tok.pad_token_id == 0
    assert tok("aː b tʃ").input_ids == [3, 4, 5]
    assert tok.decode([3, 3, 0, 5]) == "aː tʃ"
    assert import_hf(tmp_path / "out").metadata["labels"] == "phones"


def test_preprocessor_do_normalize_is_read_back(tmp_path):
    hf = make_hf("Wav2Vec2Model", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / "hf")
    assert load_pretrained(tmp_path / "hf").config.normalize_waveform is True


def test_legacy_weight_norm_names_load(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=6)
    hf.save_pretrained(tmp_path / "hf")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    assert any(k.endswith("weight_g") for k in legacy)
    save_file(legacy, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    ours = load_pretrained(tmp_path / "hf").model
    x, _, _ = padded_batch(seed=6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-4, rtol=0)


def test_sharded_safetensors_and_pytorch_bin(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=7)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    a = load_pretrained(tmp_path / "sharded").model
    # pytorch_model.bin: a plain torch-saved state dict, read with weights_only=True.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "sharded" / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    b = load_pretrained(tmp_path / "bin").model
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(sa["quantizer.codevectors"], hf.state_dict()["quantizer.codevectors"])


@pytest.mark.parametrize("layout", ["pad_last", "fairseq_converted"])
def test_head_rows_follow_our_blank_unk_convention(layout, tmp_path):
    # Community CTC models often put [PAD] (the blank) last; fairseq conversions use <pad> <s> </s> <unk>.
    if layout == "pad_last":
        hf_tokens, pad, unk = ["[UNK]", "|"] + list("abcdefgh") + ["[PAD]"], VOCAB_SIZE - 1, "[UNK]"
        order = [VOCAB_SIZE - 1] + list(range(VOCAB_SIZE - 1))
        expected = ["<blank>", "<unk>", "|"] + list("abcdefgh")
    else:
        hf_tokens, pad, unk = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("etaoin"), 0, "<unk>"
        order = [0, 3, 1, 2] + list(range(4, VOCAB_SIZE))
        expected = ["<blank>", "<unk>", "<s>", "</s>", "|"] + list("etaoin")
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=8, pad_token_id=pad)
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(hf_tokens)}))
    (tmp_path / "hf" / "special_tokens_map.json").write_text(json.dumps({"unk_token": unk, "pad_token": hf_tokens[pad]}))
    loaded = load_pretrained(tmp_path / "hf")
    assert loaded.vocab == expected
    Vocabulary.from_dict(loaded.vocab)  # the text layer accepts it
    x, _, _ = padded_batch(seed=8)
    with torch.no_grad():
        ref = hf(x).logits
        out = loaded.model(x).logits
    torch.testing.assert_close(out, ref[..., order], atol=1e-4, rtol=0)


def test_missing_mask_embedding_is_filled_and_dropped_again(tmp_path):
    hf = make_hf("Wav2Vec2Model", "odd")  # mask_time_prob=0: transformers has no masked_spec_embed
    assert "masked_spec_embed" not in hf.state_dict()
    hf.save_pretrained(tmp_path / "hf")
    loaded = load_pretrained(tmp_path / "hf")
    assert loaded.metadata["initialized"] == ["mask_embedding"]
    export_hf(loaded.model, tmp_path / "back")
    assert "masked_spec_embed" not in load_file(tmp_path / "back" / "model.safetensors")


def test_unknown_keys_are_listed(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    state["wav2vec2.encoder.layers.0.adapter_layer.linear_1.weight"] = torch.zeros(2, 2)
    state["classifier.weight"] = torch.zeros(2, 2)
    save_file(state, str(tmp_path / "hf" / "model.safetensors"))
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(tmp_path / "hf")
    msg = str(exc.value)
    assert "model.safetensors" in msg and "classifier.weight" in msg and "adapter_layer.linear_1.weight" in msg
    assert "\n" not in msg


def test_missing_keys_are_listed(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    del state["project_q.bias"], state["wav2vec2.encoder.layers.1.final_layer_norm.weight"]
    save_file(state, str(tmp_path / "hf" / "model.safetensors"))
    # named as the file names them (its table row), not as our model does (final_norm)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing keys: project_q\.bias, "
                                              r"wav2vec2\.encoder\.layers\.1\.final_layer_norm\.weight$"):
        load_pretrained(tmp_path / "hf")


def test_config_contradicting_weights_is_one_line_error(tmp_path):
    hf = make_hf("Wav2Vec2Model", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["intermediate_size"] = 65
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(tmp_path / "hf")
    msg = str(exc.value)
    # the file's key names (intermediate_dense), not ours (fc1)
    assert msg.startswith(f"{tmp_path / 'hf' / 'model.safetensors'}: shapes contradict the config: "
                          "encoder.layers.0.feed_forward.intermediate_dense.bias (64,) vs config (65,), "
                          "encoder.layers.0.feed_forward.intermediate_dense.weight (64, 48) vs config (65, 48), ")
    assert "\n" not in msg


def test_truncated_weights_name_the_file(tmp_path):
    hf = make_hf("Wav2Vec2Model", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable safetensors file"):
        load_pretrained(tmp_path / "hf")


def test_unsupported_hf_options_are_refused(tmp_path):
    hf = make_hf("Wav2Vec2Model", "base_like")
    hf.save_pretrained(tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["hidden_act"] = "relu"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="config.json: hidden_act='relu' is not supported"):
        load_pretrained(tmp_path / "hf")


def test_an_unnamed_unk_is_transformers_default_and_its_row_moves(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=6, pad_token_id=0, vocab_size=11)
    hf.save_pretrained(tmp_path)
    # facebook/wav2vec2-base-960h's vocabulary; its tokenizer files need not name the unk token
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9, "I": 10}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer"}))
    assert transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path).unk_token_id == 3
    loaded = import_hf(tmp_path)
    assert loaded.vocab == ["<blank>", "<unk>", "<s>", "</s>", "|", "E", "T", "A", "O", "N", "I"]


def test_added_tokens_past_the_heads_rows_are_left_out(tmp_path):
    vocab = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5, "|": 6, "[UNK]": 7, "[PAD]": 8}
    (tmp_path / "v.json").write_text(json.dumps(vocab))
    tok = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "v.json"), unk_token="[UNK]", pad_token="[PAD]",
                                            word_delimiter_token="|")
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=6, vocab_size=len(vocab), pad_token_id=tok.pad_token_id)
    hf.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")  # writes added_tokens.json with <s>, </s> at ids 9, 10
    assert len(tok) > len(vocab)
    assert import_hf(tmp_path / "m").vocab == ["<blank>", "<unk>", "a", "b", "c", "d", "e", "f", "|"]


@pytest.mark.parametrize("config_name", list(HF_CONFIGS))
def test_a_layer_norm_eps_of_its_own_reaches_what_it_reaches_in_transformers(config_name, tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", config_name, seed=7, layer_norm_eps=1e-2).eval()  # the CNN's norms keep 1e-5
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf").model.eval()
    x = torch.randn(2, 3200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-4, rtol=0)


def test_a_tokenizers_own_word_delimiter_becomes_the_word_boundary(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=6, pad_token_id=0, vocab_size=6)
    hf.save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "_": 2, "a": 3, "b": 4, "c": 5}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                                "word_delimiter_token": "_"}))
    assert import_hf(tmp_path).vocab == ["<blank>", "<unk>", "|", "a", "b", "c"]


def test_a_vocabulary_without_any_unk_gets_a_row_that_is_never_predicted(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=6, pad_token_id=0, vocab_size=5).eval()
    hf.save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"[PAD]": 0, "|": 1, "a": 2, "b": 3, "c": 4}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                                "pad_token": "[PAD]", "unk_token": None}))
    loaded = import_hf(tmp_path)
    assert loaded.vocab == ["<blank>", "<unk>", "|", "a", "b", "c"]
    assert loaded.metadata["added_rows"] == ["<unk>"]
    Vocabulary.from_dict(loaded.vocab, kind="chars")  # usable: transcription and fine-tuning accept it
    x = torch.randn(2, 3200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = torch.log_softmax(hf(x).logits, -1)
        ours = torch.log_softmax(loaded.model.eval()(x).logits, -1)
    torch.testing.assert_close(ours[..., [0, 2, 3, 4, 5]], theirs, atol=1e-4, rtol=0)
    assert ours[..., 1].max() < -1000  # the added <unk> never wins


# The keys every wav2vec2 config.json has; the rest may be absent and then mean transformers' defaults.
_REQUIRED_HF = dict(conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2], hidden_size=48,
                    num_hidden_layers=2, num_attention_heads=3, intermediate_size=64)


def test_absent_hf_keys_read_as_transformers_defaults():
    ours = config_from_hf({"model_type": "wav2vec2", **_REQUIRED_HF}, "config.json", architecture="Wav2Vec2ForCTC")
    hf = transformers.Wav2Vec2Config(**_REQUIRED_HF)
    assert ours.extractor_mode == {"group": "group_norm", "layer": "layer_norm"}[hf.feat_extract_norm]
    pairs = {  # our field: transformers' attribute
        "conv_bias": "conv_bias", "layer_norm_first": "do_stable_layer_norm", "dropout": "hidden_dropout",
        "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
        "dropout_input": "feat_proj_dropout", "dropout_features": "feat_quantizer_dropout",
        "final_dropout": "final_dropout", "layerdrop": "layerdrop", "conv_pos": "num_conv_pos_embeddings",
        "conv_pos_groups": "num_conv_pos_embedding_groups", "layer_norm_eps": "layer_norm_eps",
        "final_dim": "proj_codevector_dim", "codevector_dim": "codevector_dim",
        "num_codevector_groups": "num_codevector_groups", "num_codevectors_per_group": "num_codevectors_per_group",
        "logit_temp": "contrastive_logits_temperature", "num_negatives": "num_negatives",
        "diversity_weight": "diversity_loss_weight", "mask_length": "mask_time_length",
        "min_masks": "mask_time_min_masks", "mask_channel_length": "mask_feature_length",
    }
    assert {f: getattr(ours, f) for f in pairs} == {f: getattr(hf, a) for f, a in pairs.items()}
    # transformers' CTC model masks while fine-tuning unless apply_spec_augment is false
    assert hf.apply_spec_augment and ours.mask_prob == hf.mask_time_prob > 0
    assert ours.mask_channel_prob == hf.mask_feature_prob


def test_each_hf_dropout_key_reaches_its_own_field():
    keys = dict(hidden_dropout=0.11, attention_dropout=0.12, activation_dropout=0.13, feat_proj_dropout=0.14,
                feat_quantizer_dropout=0.15, final_dropout=0.16, layerdrop=0.17)
    ours = config_from_hf({"model_type": "wav2vec2", **_REQUIRED_HF, **keys}, "config.json")
    assert (ours.dropout, ours.attention_dropout, ours.activation_dropout, ours.dropout_input, ours.dropout_features,
            ours.final_dropout, ours.layerdrop) == tuple(keys.values())
