"""Every published checkpoint family, as its files are laid out, converts with `xlsr convert` and computes the same.

Each family gets a fixture in its era's form (legacy or zip torch format, argparse Namespace, omegaconf
2.0 DictConfig or plain-dict cfg, dictionary beside it), converted to a Hugging Face directory through the
CLI with no --dict; transformers then loads the result and must compute what the original model computes.
An exception anywhere in interop/ would escape `main` and fail the test.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from fairseq_fixtures import (
    fairseq_model_cfg,
    fairseq_state,
    fake_fairseq,  # noqa: F401 (a fixture)
    finetuned_dictconfig,
    omegaconf_2_0,
    pretraining_dictconfig,
    write_dictionary,
)
from hf_fixtures import make_hf, padded_batch, transformers

from xlsr.cli.main import main
from xlsr.interop.load import load_pretrained

LETTERS = list("|etaoin")  # 4 fairseq specials + 7 = hf_fixtures.VOCAB_SIZE rows
# Row i of our head (and of the exported HF head) is fairseq's row ORDER[i]: <s>, <unk>, <pad>, </s>, letters.
ORDER = [0, 3, 1, 2] + list(range(4, 11))


def _argparse_args(config_name: str) -> dict:
    """A 2020 pretraining run's flat Namespace: strings where fairseq's argparse kept strings."""
    args = fairseq_model_cfg(config_name)
    del args["_name"]
    args.update(arch="wav2vec2", task="audio_pretraining", criterion="wav2vec", normalize=False,
                latent_temp="(2,0.1,0.999995)", loss_weights="[0.1, 10]", data="/data/librispeech",
                optimizer="adam", adam_betas="(0.9,0.98)", lr=[0.0005], max_update=400000)  # fmt: skip
    return args


def wav2vec_small(tmp_path, modules):
    """wav2vec_small.pt (2020): legacy torch format, argparse Namespace, no cfg."""
    hf = make_hf("Wav2Vec2ForPreTraining", "base_like", seed=40)
    path = tmp_path / "wav2vec_small.pt"
    torch.save({"args": argparse.Namespace(**_argparse_args("base_like")), "model": fairseq_state(hf, "base_like", False),
                "optimizer_history": [{"num_updates": 400000}], "extra_state": {"epoch": 3}},
               path, _use_new_zipfile_serialization=False)  # fmt: skip
    return path, hf, None


def _finetuned_argparse(tmp_path, labels: str):
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=41)
    w2v_args = argparse.Namespace(**_argparse_args("base_like"))
    args = argparse.Namespace(arch="wav2vec_ctc", task="audio_pretraining", criterion="ctc", labels=labels,
                              w2v_path="/models/wav2vec_small.pt", w2v_args=w2v_args, normalize=False,
                              final_dropout=0.0, mask_prob=0.5, mask_channel_prob=0.1, mask_channel_length=64,
                              layerdrop=0.1, feature_grad_mult=0.0, data="/data/ltr")  # fmt: skip
    path = tmp_path / "wav2vec_small_960h.pt"
    torch.save({"args": args, "model": fairseq_state(hf, "base_like", finetuned=True)}, path,
               _use_new_zipfile_serialization=False)
    write_dictionary(tmp_path / f"dict.{labels}.txt", LETTERS)
    return path, hf, LETTERS


def wav2vec_small_960h(tmp_path, modules):
    """wav2vec_small_960h.pt (2020): argparse Namespace whose `task` is a name; dict.ltr.txt beside it."""
    return _finetuned_argparse(tmp_path, "ltr")


def finetuned_other_labels(tmp_path, modules):
    """A 2020 fine-tuned file whose labels are not ltr: its dict.<labels>.txt is the one used."""
    (tmp_path / "dict.ltr.txt").write_text("x 1\n")  # a decoy of the wrong size
    return _finetuned_argparse(tmp_path, "chr")


def xlsr_53_56k(tmp_path, modules):
    """xlsr_53_56k.pt (Dec 2020): zip, protocol 2, cfg an omegaconf 2.0 DictConfig, args None."""
    omegaconf_2_0()
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=42)
    path = tmp_path / "xlsr_53_56k.pt"
    torch.save({"args": None, "cfg": pretraining_dictconfig(modules, "xlsr_like", normalize=True),
                "model": fairseq_state(hf, "xlsr_like", False)}, path)  # fmt: skip
    return path, hf, None


def finetuned_2021_dictconfig(tmp_path, modules):
    """Early-2021 fine-tuned files: DictConfig cfg with the pretraining DictConfig in model.w2v_args."""
    omegaconf_2_0()
    hf = make_hf("Wav2Vec2ForCTC", "xlsr_like", seed=43)
    path = tmp_path / "xlsr_53_ft.pt"
    torch.save({"args": None, "cfg": finetuned_dictconfig(modules, "xlsr_like", normalize=True),
                "model": fairseq_state(hf, "xlsr_like", True)}, path)  # fmt: skip
    write_dictionary(tmp_path / "dict.ltr.txt", LETTERS)
    return path, hf, LETTERS


def xls_r_plain_cfg(tmp_path, modules):
    """XLS-R 300M/1B/2B and MMS pretrained (late 2021 on): zip, cfg a plain dict (to_container)."""
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=44)
    path = tmp_path / "xlsr2_300m.pt"
    cfg = {"common": {"fp16": True}, "model": fairseq_model_cfg("xlsr_like"),
           "task": {"_name": "audio_pretraining", "normalize": True}, "criterion": {"loss_weights": [0.1, 0.0]}}
    torch.save({"args": None, "cfg": cfg, "model": fairseq_state(hf, "xlsr_like", False)}, path)
    return path, hf, None


def hf_directory(tmp_path, modules):
    """Hugging Face directories (facebook/wav2vec2-base-960h and the like): weights, config, tokenizer."""
    hf = make_hf("Wav2Vec2ForCTC", "base_like", seed=45, pad_token_id=0)
    hf.save_pretrained(tmp_path / "hf_src")
    return tmp_path / "hf_src", hf, None


FAMILIES = [wav2vec_small, wav2vec_small_960h, finetuned_other_labels, xlsr_53_56k, finetuned_2021_dictconfig,
            xls_r_plain_cfg, hf_directory]  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__)
def test_family_converts_and_computes_the_same(family, tmp_path, fake_fairseq, capsys):  # noqa: F811
    src, ref, letters = family(tmp_path, fake_fairseq)
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf"]) == 0
    assert "->" in capsys.readouterr().out
    out = getattr(transformers, type(ref).__name__).from_pretrained(tmp_path / "out").eval()
    x, _, _ = padded_batch(seed=7, lengths=(1600, 1600))
    with torch.no_grad():
        if isinstance(ref, transformers.Wav2Vec2ForCTC):
            want = ref(x).logits
            got = out(x).logits
            if letters is not None:  # fairseq rows move to our convention (<blank>, <unk> first)
                want = want[..., ORDER]
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        else:
            torch.testing.assert_close(out.wav2vec2(x).last_hidden_state, ref.wav2vec2(x).last_hidden_state,
                                       atol=1e-4, rtol=0)
    if letters is not None:
        tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "out")
        assert tokenizer.convert_ids_to_tokens(list(range(4, 11))) == letters
        assert load_pretrained(src).vocab[4:] == letters
