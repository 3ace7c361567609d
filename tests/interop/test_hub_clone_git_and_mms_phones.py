"""Two edges of writing a model for the hub: a write into a hub clone killed midway leaves nothing that the clone's
`git add .` takes (the staged weights stay out of the commit), and an MMS export of a phone vocabulary whose labels
nothing names (a phone RUN/adapter/ read back) gets no character tokenizer, as the flat layout's guess has it."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import pytest
import torch

from xlsr.cli.main import main
from xlsr.interop import native
from xlsr.interop.huggingface import export_hf
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

TOKENS = ["<blank>", "<unk>", "|", "a", "b"]
PHONES = ["<blank>", "<unk>", "aː", "tʃ", "ə", "k"]  # multi-character symbols: a phone inventory


def _config(**overrides) -> Wav2Vec2Config:
    return Wav2Vec2Config(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2,
                          ffn_dim=32, conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8,
                          num_codevectors_per_group=5, **overrides)


def _ctc(rows: int, seed: int = 0, **overrides) -> Wav2Vec2ForCTC:
    torch.manual_seed(seed)
    return Wav2Vec2ForCTC(_config(**overrides), rows).eval()


class _Killed(BaseException):
    """Stands for a kill: nothing after it runs, no handler of Exception sees it."""


def _git(clone, *args) -> str:
    return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True, text=True).stdout


def _added_by_git(clone) -> set[str]:
    """The paths the clone's `git add -A` stages (what a commit would hold)."""
    _git(clone, "add", "-A")
    return set(_git(clone, "diff", "--cached", "--name-only", "-z").split("\0")) - {""}


@pytest.fixture
def clone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    folder = tmp_path / "clone"
    folder.mkdir()
    _git(folder, "init", "-q")
    (folder / "README.md").write_text("# my model\n")
    return folder


def test_git_adds_nothing_staged_by_a_write_killed_while_staging(clone, monkeypatch):
    export_hf(_ctc(len(TOKENS), seed=1), clone, vocab=TOKENS)
    seen = {}
    real = native.write_safetensors

    def killed_after_the_weights(path, *args, **kwargs):  # the weights half written: what a kill -9 leaves
        real(path, *args, **kwargs)
        seen["added"] = _added_by_git(clone)
        raise _Killed

    monkeypatch.setattr(native, "write_safetensors", killed_after_the_weights)
    with pytest.raises(_Killed):
        save_checkpoint(clone, _ctc(len(TOKENS), seed=2), vocab=TOKENS)
    assert seen["added"] == {"README.md", "config.json", "model.safetensors", "preprocessor_config.json",
                             "special_tokens_map.json", "tokenizer_config.json", "vocab.json"}


def test_git_adds_nothing_staged_by_a_write_killed_before_moving_in(clone, monkeypatch):
    export_hf(_ctc(len(TOKENS), seed=1), clone, vocab=TOKENS)

    def killed(dst, staged):
        raise _Killed

    monkeypatch.setattr(native, "_move_in", killed)
    with pytest.raises(_Killed):
        save_checkpoint(clone, _ctc(len(TOKENS), seed=2), vocab=TOKENS)
    monkeypatch.undo()
    assert (clone / ".xlsr-staged-checkpoint" / "model.safetensors").is_file()
    assert not any(name.startswith(".xlsr-staged-checkpoint") for name in _added_by_git(clone))

    second = _ctc(len(TOKENS), seed=3)
    save_checkpoint(clone, second, vocab=TOKENS)  # finishes the killed write, then does its own; nothing left over
    assert sorted(p.name for p in clone.iterdir()) == [".git", "README.md", "config.json", "model.safetensors"]
    assert torch.equal(load_pretrained(clone).model.lm_head.weight, second.lm_head.weight)


def test_a_staged_folder_killed_as_it_was_removed_is_removed_by_the_next_write(clone):
    staged = clone / ".xlsr-staged-checkpoint"
    staged.mkdir()
    (staged / ".gitignore").write_text("*\n")  # its plan gone, its .gitignore not yet
    save_checkpoint(clone, _ctc(len(TOKENS)), vocab=TOKENS)
    assert sorted(p.name for p in clone.iterdir()) == [".git", "README.md", "config.json", "model.safetensors"]


def _tokenizer_class(folder) -> str | None:
    path = folder / "tokenizer_config.json"
    return json.loads(path.read_text())["tokenizer_class"] if path.is_file() else None


def test_an_mms_phone_vocabulary_whose_labels_nothing_names_gets_no_character_tokenizer(tmp_path, caplog):
    model = _ctc(len(PHONES), adapter_attn_dim=4, layer_norm_first=True)
    flat = export_hf(model, tmp_path / "flat", vocab=PHONES)  # the reference: the flat layout guesses phones
    assert _tokenizer_class(flat) == "Wav2Vec2PhonemeCTCTokenizer"

    # A phone adapter run's RUN/adapter/ (no tokenizer files), read back and written again for the hub: nothing
    # names its labels now.
    run = tmp_path / "run"
    save_checkpoint(run, model, vocab=PHONES, metadata={"target_lang": "xyz", "labels": "phones"})
    assert main(["convert", str(run), str(tmp_path / "adapter"), "--to", "hf"]) == 0
    assert load_pretrained(tmp_path / "adapter", target_lang="xyz").metadata.get("labels") is None
    with caplog.at_level(logging.WARNING):
        assert main(["convert", str(tmp_path / "adapter"), str(tmp_path / "hub"), "--to", "hf",
                     "--target-lang", "xyz"]) == 0
    hub = tmp_path / "hub"
    assert _tokenizer_class(hub) is None and not (hub / "special_tokens_map.json").exists()
    assert json.loads((hub / "vocab.json").read_text()) == {"xyz": {"<pad>": 0, **{t: i for i, t in
                                                                                     enumerate(PHONES) if i}}}
    assert any(f"{hub}: phone labels: the adapter and vocab.json are written, no tokenizer files" in r.getMessage()
               for r in caplog.records)


def test_an_mms_character_vocabulary_whose_labels_nothing_names_keeps_its_tokenizer(tmp_path):
    model = _ctc(len(TOKENS), adapter_attn_dim=4, layer_norm_first=True)
    out = export_hf(model, tmp_path / "hf", vocab=TOKENS, target_lang="xyz")
    assert _tokenizer_class(out) == "Wav2Vec2CTCTokenizer"
    assert json.loads((out / "tokenizer_config.json").read_text())["target_lang"] == "xyz"
