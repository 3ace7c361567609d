"""MMS per-language adapters: a language's adapters, head and vocabulary from an HF MMS directory or a fairseq file.

The HF fixture is laid out as facebook/mms-1b-all is: base weights (with English adapters and head) in
model.safetensors, adapter.<lang>.safetensors for another language, vocab.json keyed by language.
transformers' load_adapter(lang) is the reference.
"""

from __future__ import annotations

import json

import pytest
import torch
from fairseq_fixtures import fairseq_model_cfg, fairseq_state
from hf_fixtures import make_hf, padded_batch
from mms_fixtures import ADAPTER_DIM, ENG, FRA, adapter_weights, hf_order, transformers, write_mms_dir
from safetensors.torch import save_file

from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.interop.adapters import hf_languages
from xlsr.interop.init_model import checkpoint_languages, load_init
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint


@pytest.fixture
def mms_dir(tmp_path):
    return write_mms_dir(tmp_path / "mms-1b-all", seed=60)


@pytest.mark.parametrize("lang, tokens", [("fra", FRA), ("eng", ENG)])
def test_logits_equal_transformers_after_load_adapter(mms_dir, lang, tokens):
    ref = transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir).eval()
    if lang != "eng":
        ref.load_adapter(lang)
    loaded = load_pretrained(mms_dir, target_lang=lang)
    assert loaded.config.adapter_attn_dim == ADAPTER_DIM and loaded.metadata["target_lang"] == lang
    order = hf_order(tokens)
    assert loaded.vocab == ["<blank>"] + [tokens[i] for i in order[1:]]
    x, lengths, attention_mask = padded_batch(seed=60)
    with torch.no_grad():
        want = ref(x, attention_mask=attention_mask).logits[..., order]
        out = loaded.model(x, lengths)
    valid = torch.arange(want.shape[1])[None, :, None] < out.frame_lengths[:, None, None]
    torch.testing.assert_close(out.logits * valid, want * valid, atol=1e-4, rtol=0)
    assert (out.logits * valid).abs().max() > 0.1


def test_init_for_training_a_language_the_directory_has_or_a_new_one(mms_dir):
    assert checkpoint_languages(mms_dir) == checkpoint_languages(mms_dir / "config.json") == ["eng", "fra"]
    known = load_init(str(mms_dir), "tiny", "fra", allow_new_language=True)
    assert known.language == "fra" and not known.new_language and known.vocab_tokens == load_pretrained(
        mms_dir, target_lang="fra").vocab
    new = load_init(str(mms_dir), "tiny", "xyz", allow_new_language=True)
    assert new.language == "eng" and new.new_language and new.vocab_tokens is None and new.labels is None
    with pytest.raises(CheckpointError, match=r"no language 'xyz'; available: eng, fra$"):
        load_init(str(mms_dir), "tiny", "xyz")  # fine-tuning the whole model: only the languages it has


def test_language_required_and_listed(mms_dir):
    for lang in (None, "deu"):
        with pytest.raises(CheckpointError) as exc:
            load_pretrained(mms_dir, target_lang=lang)
        msg = str(exc.value)
        assert "vocab.json" in msg and "eng, fra" in msg and "\n" not in msg
        assert ("target_lang" in msg) if lang is None else ("'deu'" in msg)


def test_adapter_file_contradicting_the_base_is_one_line(mms_dir):
    hf = make_hf("Wav2Vec2ForCTC", "xlsr_like", seed=62, adapter_attn_dim=ADAPTER_DIM * 2)
    save_file(adapter_weights(hf, len(FRA), seed=63), str(mms_dir / "adapter.fra.safetensors"))
    with pytest.raises(CheckpointError, match=r"adapter\.fra\.safetensors: shapes contradict the base model: "
                                              r".*adapter_layer\.linear_1\.bias \(16,\) vs base \(8,\)"):
        load_pretrained(mms_dir, target_lang="fra")


def test_vocab_without_the_language_of_an_adapter_file(mms_dir):
    save_file(adapter_weights(make_hf("Wav2Vec2ForCTC", "xlsr_like", adapter_attn_dim=ADAPTER_DIM), 5, 64),
              str(mms_dir / "adapter.deu.safetensors"))
    with pytest.raises(CheckpointError, match=r"vocab\.json: no language 'deu'; available: eng, fra$"):
        load_pretrained(mms_dir, target_lang="deu")


def test_convert_with_target_lang_gives_what_transformers_loads(mms_dir, tmp_path, capsys):
    out = tmp_path / "fra"
    assert main(["convert", str(mms_dir), str(out), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert "eng, fra" in err and not out.exists()
    assert main(["convert", str(mms_dir), str(out), "--to", "hf", "--target-lang", "fra"]) == 0
    ref = transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir).eval()
    ref.load_adapter("fra")
    converted = transformers.Wav2Vec2ForCTC.from_pretrained(out).eval()
    assert converted.config.adapter_attn_dim == ADAPTER_DIM
    x, _, _ = padded_batch(seed=65, lengths=(1600, 1600))
    with torch.no_grad():
        torch.testing.assert_close(converted(x).logits, ref(x).logits[..., hf_order(FRA)], atol=1e-4, rtol=0)
    # Our format keeps the language: asking for another one names it.
    save_checkpoint(tmp_path / "ours", load_pretrained(out).model, metadata={"target_lang": "fra"})
    with pytest.raises(CheckpointError, match=r"no language 'eng'; available: fra"):
        load_pretrained(tmp_path / "ours", target_lang="eng")


def _with_language(mms_dir, lang: str, tokens: list[str]) -> None:
    vocab = json.loads((mms_dir / "vocab.json").read_text())
    (mms_dir / "vocab.json").write_text(json.dumps({**vocab, lang: {t: i for i, t in enumerate(tokens)}}))


def test_an_adapter_bin_file_is_read_as_transformers_reads_it(mms_dir):
    # transformers' load_adapter falls back to adapter.<lang>.bin (a torch state dict) without a .safetensors.
    base = transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir)
    torch.save(adapter_weights(base, len(ENG), seed=70), mms_dir / "adapter.deu.bin")
    _with_language(mms_dir, "deu", ENG)  # as many rows as the base's head: only the weights tell them apart
    ref = transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir).eval()
    ref.load_adapter("deu")
    loaded = load_pretrained(mms_dir, target_lang="deu")
    x, _, _ = padded_batch(seed=70, lengths=(1600, 1600))
    with torch.no_grad():
        want = ref(x).logits[..., hf_order(ENG)]
        torch.testing.assert_close(loaded.model(x).logits, want, atol=1e-4, rtol=0)
        assert (want - base.eval()(x).logits[..., hf_order(ENG)]).abs().max() > 0.1  # not the base's English
    # Without a vocab.json keyed by language, the adapter files name the languages, .bin ones included.
    (mms_dir / "vocab.json").unlink()
    assert hf_languages(mms_dir)[0] == ["deu", "fra"]


def test_an_adapter_bin_file_is_read_without_running_code(mms_dir, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"lm_head.bias": Payload()}, mms_dir / "adapter.deu.bin")
    _with_language(mms_dir, "deu", ENG)
    with pytest.raises(CheckpointError, match=r"adapter\.deu\.bin: unreadable or unsafe torch weights"):
        load_pretrained(mms_dir, target_lang="deu")
    assert "ran" not in capsys.readouterr().out


def test_a_language_without_an_adapter_file_is_refused_unless_it_is_the_bases(mms_dir):
    # vocab.json offers deu but neither adapter file is there: transformers' load_adapter("deu") raises too.
    _with_language(mms_dir, "deu", ENG)
    with pytest.raises(OSError):
        transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir).load_adapter("deu")
    with pytest.raises(CheckpointError) as exc:
        load_pretrained(mms_dir, target_lang="deu")
    msg = str(exc.value)
    assert "adapter.deu.safetensors: file not found (nor adapter.deu.bin)" in msg and "'eng'" in msg
    assert "\n" not in msg
    # The base's language is tokenizer_config.json's target_lang, else transformers' default "eng".
    config = json.loads((mms_dir / "tokenizer_config.json").read_text())
    (mms_dir / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "target_lang"}))
    assert load_pretrained(mms_dir, target_lang="eng").metadata["target_lang"] == "eng"
    (mms_dir / "tokenizer_config.json").write_text(json.dumps({**config, "target_lang": "deu"}))
    ref = transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir).eval()  # no target_lang: the base's weights
    loaded = load_pretrained(mms_dir, target_lang="deu")
    x, _, _ = padded_batch(seed=71, lengths=(1600, 1600))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).logits, ref(x).logits[..., hf_order(ENG)], atol=1e-4, rtol=0)
    with pytest.raises(CheckpointError, match=r"adapter\.eng\.safetensors: file not found .* of 'deu', not 'eng'$"):
        load_pretrained(mms_dir, target_lang="eng")


def _stacked_fairseq_adapters(models) -> dict[str, torch.Tensor]:
    """fairseq's AdapterFast tensors: every language's adapter of a block stacked on a first axis."""
    names = {"linear_1.weight": "W_a", "linear_1.bias": "b_a", "linear_2.weight": "W_b", "linear_2.bias": "b_b",
             "norm.weight": "ln_W", "norm.bias": "ln_b"}  # fmt: skip
    out = {}
    for name in models[0].state_dict():
        if ".adapter_layer." in name:
            layer, param = name.split(".adapter_layer.")
            key = "w2v_encoder.w2v_model." + layer[len("wav2vec2."):] + ".adapter_layer." + names[param]
            out[key] = torch.stack([m.state_dict()[name] for m in models])
    return out


def test_fairseq_mms_file_picks_the_language_by_corpus_key(tmp_path):
    eng = make_hf("Wav2Vec2ForCTC", "xlsr_like", seed=66, adapter_attn_dim=ADAPTER_DIM)
    fra = make_hf("Wav2Vec2ForCTC", "xlsr_like", seed=66, adapter_attn_dim=ADAPTER_DIM)
    with torch.no_grad():
        for name, p in fra.named_parameters():
            if ".adapter_layer." in name:
                p.add_(torch.randn(p.shape) * 0.3)
    state = {k: v for k, v in fairseq_state(eng, "xlsr_like", finetuned=True).items() if ".adapter_layer." not in k}
    state.update(_stacked_fairseq_adapters([eng, fra]))
    model_cfg = {**fairseq_model_cfg("xlsr_like"), "layer_type": "trf_adp", "adp_num": 2, "adp_dim": ADAPTER_DIM,
                 "adp_act_fn": "relu", "adp_trf_idx": "all"}  # fmt: skip
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_args": {"model": model_cfg, "task": {"normalize": True}}},
           "task": {"_name": "audio_finetuning", "normalize": True, "multi_corpus_keys": "eng,fra"}}  # fmt: skip
    path = tmp_path / "mms1b_all.pt"
    torch.save({"cfg": cfg, "model": state}, path)
    x, lengths, attention_mask = padded_batch(seed=66)
    for lang, ref in (("fra", fra), ("eng", eng)):
        loaded = load_pretrained(path, target_lang=lang)
        with torch.no_grad():
            want = ref(x, attention_mask=attention_mask).logits
            out = loaded.model(x, lengths).logits
        valid = torch.arange(want.shape[1])[None, :, None] < loaded.model.wav2vec2.frame_lengths(lengths)[:, None, None]
        # No dictionary beside the file: the head's rows stay in fairseq's order.
        torch.testing.assert_close(out * valid, want * valid, atol=1e-4, rtol=0)
        assert loaded.metadata["target_lang"] == lang and loaded.vocab is None
    with pytest.raises(CheckpointError, match=r"mms1b_all\.pt: holds 2 languages; choose one .*: eng, fra$"):
        load_pretrained(path)
    # A new language to train (xlsr finetune --train-only adapters) starts from the first listed one's base.
    assert checkpoint_languages(path) == ["eng", "fra"]
    init = load_init(str(path), "tiny", "xyz", allow_new_language=True)
    assert init.language == "eng" and init.new_language and init.vocab_tokens is None
    cfg["task"].pop("multi_corpus_keys")
    torch.save({"cfg": cfg, "model": state}, path)
    with pytest.raises(CheckpointError, match=r"mms1b_all\.pt: holds 2 adapters per block but its task names no"):
        load_pretrained(path, target_lang="fra")


def test_new_language_adapters_train_alone_and_export_for_transformers(mms_dir):
    from xlsr.interop.adapter_export import export_adapter
    from xlsr.interop.adapters import adapter_parameters, init_language

    model = load_pretrained(mms_dir, target_lang="eng").model.train()
    base = {k: v.clone() for k, v in model.state_dict().items() if ".adapter." not in k and "lm_head" not in k}
    tokens = ["<blank>", "<unk>", "|", "k", "w", "m"]  # a new language's characters
    init_language(model, len(tokens), generator=torch.Generator().manual_seed(0))
    trained = adapter_parameters(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if any(p is q for q in trained)}
    x, lengths, _ = padded_batch(seed=67)
    labels = torch.tensor([[3, 4, 2, 5], [5, 3, 0, 0], [4, 0, 0, 0]])
    label_lengths = torch.tensor([4, 2, 1])
    opt = torch.optim.Adam(trained, lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(x, lengths, labels=labels, label_lengths=label_lengths).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # the base never moved

    model.eval()
    export_adapter(model, mms_dir, "xyz", tokens)
    assert sorted(json.loads((mms_dir / "vocab.json").read_text())) == ["eng", "fra", "xyz"]
    ref = transformers.Wav2Vec2ForCTC.from_pretrained(mms_dir).eval()
    ref.load_adapter("xyz")
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(mms_dir, target_lang="xyz")
    assert tok.convert_ids_to_tokens(list(range(1, 6))) == tokens[1:] and tok.pad_token_id == 0
    x1, _, _ = padded_batch(seed=68, lengths=(1600, 1600))
    with torch.no_grad():
        torch.testing.assert_close(ref(x1).logits, model(x1).logits, atol=1e-4, rtol=0)
        reloaded = load_pretrained(mms_dir, target_lang="xyz")
        assert reloaded.vocab == tokens
        torch.testing.assert_close(reloaded.model(x1).logits, model(x1).logits, atol=1e-4, rtol=0)
