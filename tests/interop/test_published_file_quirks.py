"""What published checkpoints do that the tidy fixtures do not: a Hugging Face CTC head with a `<s>` row, weights
saved through torch.compile or DDP, a path to a shard or index inside a folder, a folder holding a fairseq `.pt`,
a fine-tuned `.pt` without its dictionary beside it."""

from __future__ import annotations

import json

import pytest
import torch
from fairseq_fixtures import fairseq_model_cfg, fairseq_state, write_dictionary
from hf_fixtures import VOCAB_SIZE, make_hf
from safetensors.torch import load_file, save_file

from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.interop.fairseq_export import export_fairseq, fairseq_head
from xlsr.interop.load import load_pretrained

# facebook/wav2vec2-base-960h's tokenizer layout: fairseq's specials renamed as transformers' converter names them
HF_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "e", "t", "a", "o", "i", "n"]
assert len(HF_VOCAB) == VOCAB_SIZE


def _hf_ctc_folder(path, seed: int):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=seed, pad_token_id=0)
    hf.save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(HF_VOCAB)}))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                            "unk_token": "<unk>", "pad_token": "<pad>"}))
    return hf


def test_a_hugging_face_bos_row_takes_fairseqs_pad_place_in_a_fairseq_export(tmp_path):
    # transformers' converter pairs fairseq's <s>, <pad>, </s>, <unk> with its <pad>, <s>, </s>, <unk>: the export
    # back to fairseq keeps every row of the head where fairseq has it, none replaced by a never-predicted one
    hf = _hf_ctc_folder(tmp_path / "hf", seed=60)
    loaded = load_pretrained(tmp_path / "hf")
    assert loaded.vocab[:4] == ["<blank>", "<unk>", "<s>", "</s>"]
    export_fairseq(loaded.model, tmp_path / "fs", vocab=loaded.vocab, kind="chars")
    state = torch.load(tmp_path / "fs" / "checkpoint.pt", weights_only=True)["model"]
    assert torch.equal(state["w2v_encoder.proj.weight"], hf.lm_head.weight.detach())
    assert torch.equal(state["w2v_encoder.proj.bias"], hf.lm_head.bias.detach())
    assert (tmp_path / "fs" / "dict.ltr.txt").read_text().split()[::2] == HF_VOCAB[4:]


def test_a_vocabulary_with_both_pad_and_bos_rows_is_refused_naming_them():
    tokens = ["<blank>", "<unk>", "<pad>", "<s>", "a"]
    with pytest.raises(CheckpointError, match=r"both '<pad>' \(row 2\) and '<s>' \(row 3\)"):
        fairseq_head(torch.randn(5, 4), torch.randn(5), tokens)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_hugging_face_weights_saved_through_a_wrapper_load_as_the_model(prefix, tmp_path):
    make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=61).save_pretrained(tmp_path / "hf")
    plain = load_pretrained(tmp_path / "hf").model.state_dict()
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    save_file({prefix + k: v for k, v in weights.items()}, tmp_path / "hf" / "model.safetensors")
    wrapped = load_pretrained(tmp_path / "hf").model.state_dict()
    assert wrapped.keys() == plain.keys() and all(torch.equal(wrapped[k], plain[k]) for k in plain)


def test_a_fairseq_state_dict_saved_through_torch_compile_loads_as_the_model(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=62)
    state = fairseq_state(hf, "xlsr_like", finetuned=False)
    cfg = {"model": fairseq_model_cfg("xlsr_like"), "task": {"_name": "audio_pretraining", "normalize": True}}
    torch.save({"args": None, "cfg": cfg, "model": state}, tmp_path / "plain.pt")
    torch.save({"args": None, "cfg": cfg, "model": {"_orig_mod." + k: v for k, v in state.items()}},
               tmp_path / "compiled.pt")
    plain = load_pretrained(tmp_path / "plain.pt").model.state_dict()
    compiled = load_pretrained(tmp_path / "compiled.pt").model.state_dict()
    assert all(torch.equal(compiled[k], plain[k]) for k in plain)
    # a prefix on some keys only is no wrapper's: those keys are named
    torch.save({"args": None, "cfg": cfg, "model": {("_orig_mod." if k == "mask_emb" else "") + k: v
                                                     for k, v in state.items()}}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys .*_orig_mod\.mask_emb"):
        load_pretrained(tmp_path / "mixed.pt")


def test_a_shard_or_index_inside_a_hugging_face_folder_means_the_folder(tmp_path):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=63, pad_token_id=0)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    shards = sorted((tmp_path / "hf").glob("model-*-of-*.safetensors"))
    assert len(shards) > 1
    whole = load_pretrained(tmp_path / "hf").model.state_dict()
    for path in (tmp_path / "hf" / "model.safetensors.index.json", shards[0]):
        state = load_pretrained(path).model.state_dict()
        assert all(torch.equal(state[k], whole[k]) for k in whole), path


def test_a_folder_holding_a_fairseq_checkpoint_is_refused_naming_the_file_to_give(tmp_path):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=64)
    (tmp_path / "xlsr53").mkdir()
    cfg = {"model": fairseq_model_cfg("xlsr_like"), "task": {"_name": "audio_pretraining", "normalize": True}}
    torch.save({"args": None, "cfg": cfg, "model": fairseq_state(hf, "xlsr_like", False)},
               tmp_path / "xlsr53" / "xlsr_53_56k.pt")
    with pytest.raises(CheckpointError, match=r"xlsr53: a folder, not a checkpoint \(no config.json\); for a "
                                              r"fairseq checkpoint give its .pt file: .*xlsr53/xlsr_53_56k\.pt$"):
        load_pretrained(tmp_path / "xlsr53")
    load_pretrained(tmp_path / "xlsr53" / "xlsr_53_56k.pt")  # the file named loads
    # fairseq's hydra output folder keeps them in checkpoints/, where an xlsr run folder has best/ and last/
    (tmp_path / "outputs" / "checkpoints").mkdir(parents=True)
    (tmp_path / "xlsr53" / "xlsr_53_56k.pt").rename(tmp_path / "outputs" / "checkpoints" / "checkpoint_best.pt")
    with pytest.raises(CheckpointError, match=r"outputs: a fairseq run's folder, not a checkpoint; give one of its "
                                              r".pt files: .*outputs/checkpoints/checkpoint_best\.pt$"):
        load_pretrained(tmp_path / "outputs")


def test_a_fine_tuned_file_without_its_dictionary_is_said_and_refused_for_fairseq(tmp_path, capsys):
    hf = make_hf("Wav2Vec2ForCTC", "xlsr_like", seed=65)
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_args": {"model": fairseq_model_cfg("xlsr_like"),
                                                           "task": {"normalize": True}}},
           "task": {"_name": "audio_finetuning", "normalize": True, "labels": "ltr"}}
    (tmp_path / "ft").mkdir()
    src = tmp_path / "ft" / "checkpoint_best.pt"
    torch.save({"args": None, "cfg": cfg, "model": fairseq_state(hf, "xlsr_like", True)}, src)
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf"]) == 0
    out = capsys.readouterr().out
    assert (f"{tmp_path / 'hf'}: a CTC model written without its vocabulary (no fairseq dictionary such as "
            f"dict.ltr.txt beside it; --dict FILE gives it)") in out
    assert main(["convert", str(src), str(tmp_path / "fs"), "--to", "fairseq"]) == 2
    err = capsys.readouterr().err
    assert f"{src}: a CTC model without its vocabulary" in err and "--dict FILE gives it" in err
    assert err.count("\n") == 1 and not (tmp_path / "fs").exists()
    write_dictionary(tmp_path / "ft" / "dict.ltr.txt", list("|etaoin"))  # beside it: read, and nothing said
    assert main(["convert", str(src), str(tmp_path / "fs"), "--to", "fairseq"]) == 0
    assert "without its vocabulary" not in capsys.readouterr().out


POINTER = ("version https://git-lfs.github.com/spec/v1\n"
           "oid sha256:4e6a0e0a3f2c4b7f2d0a9f1f5e3c5b1b1c7d9e8f0a1b2c3d4e5f60718293a4b5\nsize 1269737156\n")


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "xlsr_53_56k.pt"])
def test_a_git_lfs_pointer_where_the_weights_should_be_is_named_with_the_fix(name, tmp_path):
    # a hub repo cloned without git-lfs: each weight file is a small text file naming the real one
    make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=66).save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    (tmp_path / "hf" / name).write_text(POINTER)
    src = tmp_path / "hf" / name if name.endswith(".pt") else tmp_path / "hf"
    if name.endswith(".pt"):
        (tmp_path / "hf" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=rf"{name}: a Git LFS pointer to the file of 1,269,737,156 bytes, not "
                                              rf"the file itself .*git lfs pull` in {tmp_path / 'hf'}$"):
        load_pretrained(src)


def test_a_refused_pytorch_model_bin_names_the_cause_not_torchs_advice_to_run_its_code(tmp_path):
    import argparse

    make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=67).save_pretrained(tmp_path / "hf")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save({**weights, "args": argparse.Namespace(lr=1.0)}, tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as caught:
        load_pretrained(tmp_path / "hf")
    message = str(caught.value)  # torch's own words for the cause, whatever its version
    assert message.startswith(f"{tmp_path / 'hf' / 'pytorch_model.bin'}: unreadable or unsafe torch weights (")
    assert "argparse.Namespace" in message and "weights_only" not in message and "\n" not in message


def test_a_hugging_face_cache_folder_is_refused_naming_its_snapshot(tmp_path):
    # huggingface_hub's cache: models--USER--MODEL/{blobs,refs,snapshots/<revision>/...}
    cache = tmp_path / "models--facebook--wav2vec2-xls-r-300m"
    snapshot = cache / "snapshots" / "1a640f32ac3e39899438a2931f9924c02f080a54"
    make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=68).save_pretrained(snapshot)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(snapshot.name)
    with pytest.raises(CheckpointError, match=rf"a Hugging Face cache folder, not a checkpoint \(no config.json\); "
                                              rf"give one of its snapshots: {snapshot}$"):
        load_pretrained(cache)
    load_pretrained(snapshot)  # the snapshot named loads
