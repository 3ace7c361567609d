"""MMS adapter fine-tuning: a new language's adapters and head on a frozen base, exported for transformers."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from xlsr.cli.main import main
from xlsr.interop.adapters import adapter_parameters
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC
from xlsr.train.finetune import FinetuneConfig, FinetuneTask
from xlsr.train.monitor import read_log

from ._tones import write_tone_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from hf_fixtures import padded_batch  # noqa: E402
from mms_fixtures import FRA, hf_order, transformers, write_mms_dir  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = ["--progress", "false", "--tensorboard", "false"]
STEADY = ["--model.mask_prob", "0", "--model.mask_channel_prob", "0", "--model.layerdrop", "0"]


@pytest.fixture(scope="module")
def mms(tmp_path_factory):
    return write_mms_dir(tmp_path_factory.mktemp("mms") / "mms-1b-all")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return (write_tone_corpus(root, "train", 6, seed=1, phones_per_utt=(2, 3)),
            write_tone_corpus(root, "dev", 2, seed=2, phones_per_utt=(2, 3)))


def _is_base(name: str) -> bool:
    return ".adapter." not in name and not name.startswith("lm_head.")


def test_new_language_trains_adapters_only_and_exports_what_transformers_loads(mms, tones, tmp_path, capsys):
    train, dev = tones
    run = tmp_path / "run"
    assert main(["finetune", "--init", str(mms), "--target-lang", "new", "--train-only", "adapters",
                 "--train", str(train), "--dev", str(dev), "--labels", "chars", "--out", str(run),
                 "--max-updates", "12", "--lr", "1e-2", "--lr-schedule", "constant", "--warmup-updates", "0",
                 "--valid-every", "0", "--log-every", "1", "--seed", "1", *QUIET, *STEADY]) == 0
    tuned = load_pretrained(run, target_lang="new")
    model = tuned.model.eval()
    assert tuned.vocab == ["<blank>", "<unk>", "|", "a", "i", "u"]  # the new language's characters, not eng's
    trainable = sum(p.numel() for p in adapter_parameters(model))
    total = sum(p.numel() for p in model.parameters())
    assert (f"training only the adapters and CTC head of 'new' (a new language): {trainable:,} of {total:,} "
            f"parameters") in capsys.readouterr().err

    losses = [r["loss"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
    # Past the all-blank stage (updates 4-6) the loss still falls: symbols are being learned.
    assert len(losses) == 12 and losses[-1] < 0.1 * losses[0] and losses[-1] < min(losses[3:6])
    base = load_pretrained(mms, target_lang="eng").model.state_dict()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items() if _is_base(k))  # the base never moved
    assert not torch.equal(after["wav2vec2.encoder.layers.0.adapter.down.weight"],
                           base["wav2vec2.encoder.layers.0.adapter.down.weight"])

    # The user's MMS directory gains the language: the adapter file and its vocab.json entry.
    exported = run / "adapter"
    users = shutil.copytree(mms, tmp_path / "users-mms")
    shutil.copy(exported / "adapter.new.safetensors", users)
    by_language = json.loads((users / "vocab.json").read_text())
    by_language["new"] = json.loads((exported / "vocab.json").read_text())["new"]
    (users / "vocab.json").write_text(json.dumps(by_language))
    x, _, _ = padded_batch(seed=70, lengths=(1600, 1600))
    with torch.no_grad():
        ours = model(x).logits
        for path in (users, exported):
            ref = transformers.Wav2Vec2ForCTC.from_pretrained(path).eval()
            ref.load_adapter("new")
            torch.testing.assert_close(ref(x).logits, ours, atol=1e-4, rtol=0)
        ref = transformers.Wav2Vec2ForCTC.from_pretrained(exported, target_lang="new").eval()
        torch.testing.assert_close(ref(x).logits, ours, atol=1e-4, rtol=0)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(exported)  # target_lang from tokenizer_config.json
    assert tok.convert_ids_to_tokens(list(range(1, 6))) == tuned.vocab[1:] and tok.pad_token_id == 0


def test_a_language_the_init_has_continues_its_adapters(mms, tones, tmp_path):
    train, _ = tones
    cfg = FinetuneConfig(train=[str(train)], labels="chars", out=str(tmp_path / "r"), init=str(mms),
                         target_lang="fra", train_only="adapters", new_head=True)
    task = FinetuneTask(cfg)
    model = task.build_model()
    fra = load_pretrained(mms, target_lang="fra").model.state_dict()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in fra.items() if not k.startswith("lm_head."))  # fra's adapters
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if not _is_base(n)}
    task.on_update_start(model, 0)  # the fine-tuning freeze schedule leaves the base alone
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if not _is_base(n)}
    assert task.freeze_updates == 0 and task.freeze_cnn and not task.init.new_language
    # Keeping fra's head: its vocabulary, whose characters these labels mostly lack.
    keep = dataclasses.replace(cfg, new_head=False, oov="unk")
    assert FinetuneTask(keep).vocab.tokens == ["<blank>", *[FRA[i] for i in hf_order(FRA)[1:]]]


def test_bad_adapter_runs_are_one_line_and_write_nothing(mms, tones, tmp_path, capsys):
    train, _ = tones
    plain = tmp_path / "plain"
    cfg = Wav2Vec2Config(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2,
                         ffn_dim=32, conv_pos=8, conv_pos_groups=2)
    save_checkpoint(plain, Wav2Vec2ForCTC(cfg, 5), vocab=["<blank>", "<unk>", "a", "i", "u"])
    unnamed = save_checkpoint(tmp_path / "unnamed", load_pretrained(mms, target_lang="eng").model)  # no language
    common = ["finetune", "--train", str(train), "--labels", "chars", *QUIET]
    cases = [
        (["--init", str(plain), "--target-lang", "new", "--train-only", "adapters"],
         "train_only: adapters needs an --init model with MMS adapters (adapter_attn_dim set); "),
        (["--init", "none", "--target-lang", "new", "--train-only", "adapters"], "has none"),
        (["--init", str(unnamed), "--train-only", "adapters"], "name it with target_lang (--target-lang)"),
        (["--init", str(mms), "--train-only", "adapters"], "holds 2 languages; choose one with target_lang"),
        (["--init", str(mms)], "holds 2 languages; choose one with target_lang (--target-lang): eng, fra"),
        (["--init", str(mms), "--target-lang", "deu"], "no language 'deu'; available: eng, fra"),
    ]
    for i, (args, expected) in enumerate(cases):
        out = tmp_path / f"run{i}"
        assert main([*common, *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and not out.exists(), (args, err)


def test_a_phone_run_exports_its_adapter_without_a_character_tokenizer(mms, tones, tmp_path, caplog):
    """transformers' tokenizer of a vocab.json keyed by language reads characters: for phone labels it would encode
    "i u" with <unk> for the space and decode phones joined, so no tokenizer files are written for them."""
    import logging

    train, dev = tones
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="xlsr.train.language_adapters"):
        assert main(["finetune", "--init", str(mms), "--target-lang", "new", "--train-only", "adapters",
                     "--train", str(train), "--labels", "phones", "--out", str(run), "--max-updates", "2",
                     "--valid-every", "0", *QUIET, *STEADY]) == 0
    adapter = run / "adapter"
    assert (adapter / "adapter.new.safetensors").is_file() and (adapter / "vocab.json").is_file()
    assert not (adapter / "tokenizer_config.json").exists() and not (adapter / "special_tokens_map.json").exists()
    assert "no tokenizer files" in caplog.text
