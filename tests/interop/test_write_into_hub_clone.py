"""A checkpoint written into a Hugging Face hub clone (`git clone https://huggingface.co/USER/MODEL`, then `xlsr convert
... --to hf --out CLONE`, then git add/commit/push): its files go in beside .git, the model card and the rest, which
stay byte for byte; the earlier model's files that the new one does not write are removed; a write killed midway is
finished by the next one, and meanwhile no reader takes the folder for a checkpoint it is not."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from hf_fixtures import make_hf, transformers
from safetensors.torch import load_file

from xlsr.cli.main import main
from xlsr.errors import CheckpointError
from xlsr.interop import native
from xlsr.interop.huggingface import export_hf
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint, write_atomic_dir
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model

TOKENS = ["<blank>", "<unk>", "|", "a", "b"]
TOKENIZER_FILES = {"vocab.json", "tokenizer_config.json", "special_tokens_map.json"}


def _config() -> Wav2Vec2Config:
    return Wav2Vec2Config(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2,
                          ffn_dim=32, conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8,
                          num_codevectors_per_group=5)


def _ctc(seed: int = 0) -> Wav2Vec2ForCTC:
    torch.manual_seed(seed)
    return Wav2Vec2ForCTC(_config(), len(TOKENS)).eval()


def _tree(folder) -> dict[str, bytes]:
    """Every file under `folder` (relative path: contents)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hub_clone(folder) -> dict[str, bytes]:
    """What a clone of a hub model repo holds besides the model (a small .git, card, attributes, licence, an image),
    as _tree gives it."""
    (folder / ".git" / "objects" / "ab").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "objects" / "ab" / "cdef0123").write_bytes(b"x\x9c\x00blob")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# my model\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    (folder / "LICENSE").write_text("Apache License 2.0\n")
    (folder / "images").mkdir()
    (folder / "images" / "wer.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return _tree(folder)


def _others(folder) -> dict[str, bytes]:
    """_tree without the checkpoint's files at the top."""
    return {name: data for name, data in _tree(folder).items()
            if "/" in name or not native._CHECKPOINT_FILES["hf"].fullmatch(name)}


def test_convert_into_a_hub_clone_keeps_its_files_and_leaves_nothing_of_the_old_model(tmp_path, capsys):
    clone = tmp_path / "clone"
    clone.mkdir()
    furniture = _hub_clone(clone)
    old = make_hf("Wav2Vec2ForCTC", "base_like", seed=3)  # pushed before, as transformers once saved it
    old.config.save_pretrained(clone)
    torch.save(old.state_dict(), clone / "pytorch_model.bin")
    (clone / "added_tokens.json").write_text("{}\n")
    model = _ctc(seed=1)
    save_checkpoint(tmp_path / "ours", model, vocab=TOKENS)

    assert main(["convert", str(tmp_path / "ours"), str(clone), "--to", "hf"]) == 0
    capsys.readouterr()
    assert _others(clone) == furniture
    assert {p.name for p in clone.iterdir()} - set(furniture) - {".git", "images"} == {
        "config.json", "model.safetensors", "preprocessor_config.json", *TOKENIZER_FILES}
    loaded = load_pretrained(clone)
    assert loaded.vocab == TOKENS
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in model.state_dict().items())
    theirs = transformers.Wav2Vec2ForCTC.from_pretrained(clone)
    assert theirs.config.hidden_size == 24
    assert torch.equal(theirs.lm_head.weight, load_file(clone / "model.safetensors")["lm_head.weight"])

    # the next model has no CTC head: the tokenizer files would pair it with the old vocabulary
    torch.manual_seed(2)
    export_hf(Wav2Vec2Model(_config()), clone)
    assert _others(clone) == furniture
    assert {p.name for p in clone.iterdir()} - set(furniture) - {".git", "images"} == {
        "config.json", "model.safetensors", "preprocessor_config.json"}
    assert type(load_pretrained(clone).model) is Wav2Vec2Model
    transformers.Wav2Vec2Model.from_pretrained(clone)


def test_a_new_hub_repo_without_a_model_yet_is_written_into(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    furniture = _hub_clone(clone)
    model = _ctc()
    save_checkpoint(clone, model, vocab=TOKENS)
    assert _others(clone) == furniture
    assert set(os.listdir(clone)) == {
        ".git", "README.md", ".gitattributes", "LICENSE", "images", "config.json", "model.safetensors"}
    assert torch.equal(load_pretrained(clone).model.lm_head.weight, model.lm_head.weight)


def test_a_language_model_decoders_files_are_kept_and_said(tmp_path, caplog):
    # pyctcdecode's alphabet and n-gram LM, saved by Wav2Vec2ProcessorWithLM beside the earlier model: the user's, and
    # made for that model's vocabulary
    clone = tmp_path / "clone"
    clone.mkdir()
    _hub_clone(clone)
    (clone / "alphabet.json").write_text('{"labels": ["", "a", "b"]}')
    (clone / "language_model").mkdir()
    (clone / "language_model" / "5gram.bin").write_bytes(b"kenlm")
    save_checkpoint(clone, _ctc(), vocab=TOKENS)
    assert (clone / "alphabet.json").read_text() == '{"labels": ["", "a", "b"]}'
    assert (clone / "language_model" / "5gram.bin").read_bytes() == b"kenlm"
    said = [r.getMessage() for r in caplog.records if "alphabet.json" in r.getMessage()]
    assert said == [f"{clone}: kept the files of a language-model decoder (Wav2Vec2ProcessorWithLM: alphabet.json, "
                    f"language_model), made for the earlier model's vocabulary; build them again if the vocabulary "
                    f"changed"]


def _bert_clone(folder):
    _hub_clone(folder)
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 24}\n')
    (folder / "model.safetensors").write_bytes(b"the bert weights")
    return "its config.json is neither an xlsr checkpoint's nor a Hugging Face wav2vec2 model's"


def _clone_with_weights_and_no_config(folder):
    _hub_clone(folder)
    (folder / "pytorch_model.bin").write_bytes(b"whose?")
    return "it holds pytorch_model.bin and no config.json"


def _run_folder(folder):  # no clone: a checkpoint at its top would be loaded instead of the run's best
    (folder / "checkpoints" / "update_0000001").mkdir(parents=True)
    (folder / "checkpoints" / "update_0000001" / "trainer.pt").write_bytes(b"state")
    (folder / "train.log").write_text("update 1\n")
    return "it holds checkpoints/, train.log and no config.json"


@pytest.mark.parametrize("make", [_bert_clone, _clone_with_weights_and_no_config, _run_folder])
@pytest.mark.parametrize("writer", ["xlsr", "hf"])
def test_a_folder_of_another_model_or_of_no_clone_is_refused_and_left_as_it_was(tmp_path, make, writer):
    folder = tmp_path / "out"
    folder.mkdir()
    why = make(folder)
    before, names = _tree(folder), sorted(os.listdir(folder))
    message = f"{folder}: exists and is not a checkpoint folder ({why}); not replacing it (choose another path)"
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        if writer == "xlsr":
            save_checkpoint(folder, _ctc(), vocab=TOKENS)
        else:
            export_hf(_ctc(), folder, vocab=TOKENS)
    assert _tree(folder) == before and sorted(os.listdir(folder)) == names


class _Killed(BaseException):
    """Stands for a kill: nothing after it runs, no handler of Exception sees it."""


def _kill_after_staging(monkeypatch):
    def killed(dst, staged):
        raise _Killed

    monkeypatch.setattr(native, "_move_in", killed)


def _kill_at_fsync(n):
    def kill(monkeypatch):
        real, calls = native.fsync, []

        def fsync(path):
            calls.append(path)
            if len(calls) == n:
                raise _Killed
            real(path)

        monkeypatch.setattr(native, "fsync", fsync)

    return kill


_kill_before_config_moves_in = _kill_at_fsync(2)  # the old checkpoint's files removed, the new tokenizer's moved in
_kill_before_weights_move_in = _kill_at_fsync(3)  # and the new config.json
KILLS = [_kill_after_staging, _kill_before_config_moves_in, _kill_before_weights_move_in]


@pytest.mark.parametrize("kill", KILLS, ids=["after_staging", "before_config", "before_weights"])
def test_a_write_killed_midway_is_finished_by_the_next_and_readers_never_load_a_mix(tmp_path, monkeypatch, kill):
    clone = tmp_path / "clone"
    clone.mkdir()
    furniture = _hub_clone(clone)
    first, second, third = _ctc(1), _ctc(2), _ctc(3)
    export_hf(first, clone, vocab=TOKENS)
    kill(monkeypatch)
    with pytest.raises(_Killed):
        save_checkpoint(clone, second, vocab=TOKENS)
    monkeypatch.undo()
    staged = clone / ".xlsr-staged-checkpoint"
    checkpoint = set(os.listdir(clone)) - set(furniture) - {".git", "images", ".xlsr-staged-checkpoint"}
    if kill is _kill_after_staging:  # the earlier model as it was: readers do not look into the staged folder
        assert set(os.listdir(staged)) == {".gitignore", ".plan.json", "config.json", "model.safetensors"}
        loaded = load_pretrained(clone)
        assert loaded.source_format == "hf" and torch.equal(loaded.model.lm_head.weight, first.lm_head.weight)
    else:  # no weights: for ours and for transformers no model, rather than the new one with old files or no config
        assert "model.safetensors" not in checkpoint and (staged / "model.safetensors").is_file()
        if kill is _kill_before_config_moves_in:
            assert checkpoint == set()
            with pytest.raises(CheckpointError, match=f"^{re.escape(str(clone))}: not a checkpoint directory"):
                load_pretrained(clone)
        else:
            assert checkpoint == {"config.json"}
            with pytest.raises(CheckpointError, match=f"^{re.escape(str(clone / 'model.safetensors'))}: file not"):
                load_pretrained(clone)
        with pytest.raises(OSError):
            transformers.Wav2Vec2ForCTC.from_pretrained(clone)

    save_checkpoint(clone, second, vocab=TOKENS)  # finishes the killed write, then does its own
    assert not staged.exists() and _others(clone) == furniture
    assert {p.name for p in clone.iterdir()} - set(furniture) - {".git", "images"} == {
        "config.json", "model.safetensors"}
    loaded = load_pretrained(clone)
    assert loaded.source_format == "xlsr" and torch.equal(loaded.model.lm_head.weight, second.lm_head.weight)

    kill(monkeypatch)  # killed again, then a write of another kind finishes it
    with pytest.raises(_Killed):
        export_hf(third, clone, vocab=TOKENS)
    monkeypatch.undo()
    save_checkpoint(clone, third, vocab=TOKENS)
    assert not staged.exists() and _others(clone) == furniture
    assert {p.name for p in clone.iterdir()} - set(furniture) - {".git", "images"} == {
        "config.json", "model.safetensors"}  # export_hf's tokenizer files, moved in by the finished write, removed
    assert torch.equal(load_pretrained(clone).model.lm_head.weight, third.lm_head.weight)


def test_a_staged_folder_that_no_write_left_is_refused_not_removed(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    _hub_clone(clone)
    (clone / ".xlsr-staged-checkpoint").mkdir()
    (clone / ".xlsr-staged-checkpoint" / "notes.txt").write_text("mine\n")
    before = _tree(clone)
    with pytest.raises(CheckpointError, match=r"\.xlsr-staged-checkpoint: a folder without \.plan\.json, not one an "
                                              r"xlsr write left; move it out of "):
        save_checkpoint(clone, _ctc())
    assert _tree(clone) == before


def test_a_writer_holds_the_folder_locked_while_it_writes(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    clone = tmp_path / "clone"
    clone.mkdir()
    _hub_clone(clone)
    seen = []

    def write(folder):
        fd = os.open(clone, os.O_RDONLY)  # another open of the folder, as a second writer's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("locked")
        finally:
            os.close(fd)
        (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}) + "\n")

    write_atomic_dir(clone, write)
    assert seen == ["locked"]
    assert (clone / "config.json").is_file() and (clone / "README.md").is_file()
