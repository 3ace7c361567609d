"""A checkpoint written over an existing folder replaces only an earlier checkpoint, never what else the user keeps
there; a config.json of ours or Hugging Face's whose fields have the wrong type is one line naming the file and field."""

from __future__ import annotations

import json
import re

import pytest
import torch

from xlsr.errors import CheckpointError
from xlsr.interop.huggingface import export_hf
from xlsr.interop.load import load_pretrained, read_checkpoint_config
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

TOKENS = ["<blank>", "<unk>", "|", "a", "b"]


def _model() -> Wav2Vec2ForCTC:
    cfg = Wav2Vec2Config(conv_layers=[(16, 10, 5), (16, 3, 2)], hidden_size=24, num_layers=1, num_heads=2, ffn_dim=32,
                         conv_pos=8, conv_pos_groups=2, final_dim=12, codevector_dim=8, num_codevectors_per_group=5)
    torch.manual_seed(0)
    return Wav2Vec2ForCTC(cfg, len(TOKENS))


def _tree(folder) -> dict[str, bytes]:
    """Every file under `folder` (relative path: contents), to show that nothing in it changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


WRITERS = {"xlsr": lambda dst: save_checkpoint(dst, _model(), vocab=TOKENS),
           "hf": lambda dst: export_hf(_model(), dst, vocab=TOKENS)}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_project_folder_with_a_config_json_is_never_replaced(tmp_path, writer):
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text('{"editor": "vim"}\n')
    (project / "src" / "main.py").write_text("print(1)\n")
    (project / "NOTES.md").write_text("notes\n")
    before = _tree(project)
    message = (f"{project}: exists and is not a checkpoint folder (its config.json is neither an xlsr checkpoint's nor "
               f"a Hugging Face wav2vec2 model's); not replacing it (choose another path)")
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        WRITERS[writer](project)
    assert _tree(project) == before
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no temporary folder left beside it


# Written into instead (test_write_into_hub_clone.py): a checkpoint folder holding the user's other things. Not
# written into: one holding training state, which a resume would pair with the new weights, or a file the new
# checkpoint writes that is not the old checkpoint's (vocab.json beside an xlsr checkpoint is the user's).
@pytest.mark.parametrize("kind, extra, writers", [("xlsr", "trainer.pt", ["xlsr", "hf"]),
                                                  ("hf", "trainer.pt", ["xlsr", "hf"]),
                                                  ("hf", "optimizer.pt", ["xlsr", "hf"]),
                                                  ("xlsr", "vocab.json", ["hf"]),  # export_hf writes one
                                                  ("xlsr", "pytorch_model.bin", ["hf"])])  # it would read it
def test_a_checkpoint_folder_holding_training_state_or_a_file_in_the_way_is_never_written_to(tmp_path, kind, extra,
                                                                                              writers):
    dst = tmp_path / "ckpt"
    WRITERS[kind](dst)
    (dst / extra).write_text("the user's\n")
    (dst / "README.md").write_text("the user's\n")
    before, names = _tree(dst), sorted(p.name for p in dst.iterdir())
    for writer in writers:
        with pytest.raises(CheckpointError, match=f"^{re.escape(str(dst))}: exists and is not a checkpoint folder "
                                                  rf"\(besides the checkpoint it holds {re.escape(extra)}: "
                                                  r"move them out\); "
                                                  r"not replacing it"):
            WRITERS[writer](dst)
    assert _tree(dst) == before and sorted(p.name for p in dst.iterdir()) == names  # no staged folder left


@pytest.mark.parametrize("kind, extra", [("xlsr", "vocab.json"), ("xlsr", "pytorch_model.bin"), ("xlsr", "runs/"),
                                         ("hf", "README.md"), ("hf", "runs/"), ("hf", ".git/"),
                                         ("hf", "training_args.bin")])
def test_a_checkpoint_folder_holding_other_things_too_is_written_into_and_they_are_kept(tmp_path, kind, extra):
    dst = tmp_path / "ckpt"
    WRITERS[kind](dst)
    if extra.endswith("/"):
        (dst / extra / "events").mkdir(parents=True)
        (dst / extra / "events" / "log.txt").write_text("the user's\n")
    else:
        (dst / extra).write_text("the user's\n")
    theirs = {name: data for name, data in _tree(dst).items() if name.startswith(extra)}
    for writer in ("xlsr",) if kind == "xlsr" and extra.endswith((".json", ".bin")) else ("xlsr", "hf"):  # see above
        WRITERS[writer](dst)
        assert load_pretrained(dst).source_format == writer
        assert {name: data for name, data in _tree(dst).items() if name.startswith(extra)} == theirs
        assert sorted(p.name for p in dst.iterdir() if p.name.startswith(".")) == (  # no staged folder left
            [".git"] if extra == ".git/" else [])


def test_the_refusal_stays_one_line_for_a_name_with_a_newline(tmp_path):
    dst = tmp_path / "ckpt"
    dst.mkdir()  # no config.json and no .git: not written into
    (dst / "a\nb.txt").write_text("the user's\n")
    with pytest.raises(CheckpointError) as raised:
        WRITERS["xlsr"](dst)
    assert "\n" not in str(raised.value) and "'a\\nb.txt'" in str(raised.value)
    assert (dst / "a\nb.txt").read_text() == "the user's\n"


# A Hugging Face folder as transformers and the hub hold it: model, processor, tokenizer, weights whole and sharded
# in each framework's format, MMS adapters. Such a folder, and one of ours, is replaced by either kind of checkpoint.
HF_FILES = ["preprocessor_config.json", "feature_extractor_config.json", "processor_config.json", "vocab.json",
            "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
            "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.safetensors.index.json",
            "model-00001-of-00002.safetensors", "pytorch_model.bin.index.json", "pytorch_model-00002-of-00002.bin",
            "adapter.eng.safetensors", "adapter.cmn-script_simplified.bin"]


@pytest.mark.parametrize("old, new", [("hf", "xlsr"), ("hf", "hf"), ("xlsr", "hf"), ("xlsr", "xlsr")])
def test_an_earlier_checkpoint_of_either_kind_is_replaced(tmp_path, old, new):
    dst = tmp_path / "ckpt"
    WRITERS[old](dst)
    if old == "hf":
        for name in HF_FILES:
            if not (dst / name).exists():
                (dst / name).write_bytes(b"old")
    WRITERS[new](dst)
    loaded = load_pretrained(dst)
    assert loaded.source_format == new and loaded.vocab == TOKENS
    expected = {"config.json", "model.safetensors"} | (
        {"preprocessor_config.json", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"}
        if new == "hf" else set())
    assert {p.name for p in dst.iterdir()} == expected


# ---------------------------------------------------------------------------- config.json fields of the wrong type
@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    dst = tmp_path_factory.mktemp("ours") / "ckpt"
    return WRITERS["xlsr"](dst)


def _edited(src, tmp_path, edit) -> tuple:
    """A copy of the checkpoint folder `src` whose config.json went through `edit`; (folder, its config.json)."""
    dst = tmp_path / "edited"
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst, dst / "config.json"


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(vocab=5), "vocab=5, expected null or a list of token strings"),
    (lambda c: c.update(vocab=["<blank>", "<unk>", "|", "a", 7]),
     "vocab=['<blank>', '<unk>', '|', 'a', 7], expected null or a list of token strings"),
    (lambda c: c.update(metadata="abc"), "metadata='abc', expected an object"),
    (lambda c: c.update(metadata=[["task", "finetune"]]), "metadata=[['task', 'finetune']], expected an object"),
    (lambda c: c.pop("model"), "no 'model' field (the model config that rebuilds the network)"),
    (lambda c: c.update(model="abc"), "model='abc', expected an object (the model config)"),
    (lambda c: c.update(model=None), "model=None, expected an object (the model config)"),
])
def test_our_config_fields_of_the_wrong_type_are_one_line_naming_file_and_field(ours, tmp_path, edit, words):
    folder, config = _edited(ours, tmp_path, edit)
    with pytest.raises(CheckpointError, match=f"^{re.escape(f'{config}: {words}')}$"):
        load_pretrained(folder)
    with pytest.raises(CheckpointError, match=f"^{re.escape(f'{config}: {words}')}$"):
        read_checkpoint_config(folder)  # what resuming a run and describing an init read, weights unread


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    dst = tmp_path_factory.mktemp("theirs") / "ckpt"
    return WRITERS["hf"](dst)


@pytest.mark.parametrize("value", ["abc", 5, [["hidden_size", 24]], True])
def test_an_hf_xlsr_config_that_is_not_an_object_is_one_line_naming_file_and_field(theirs, tmp_path, value):
    folder, config = _edited(theirs, tmp_path, lambda c: c.update(xlsr_config=value))
    words = f"xlsr_config={value!r}, expected an object (xlsr's model config)"
    with pytest.raises(CheckpointError, match=f"^{re.escape(f'{config}: {words}')}$"):
        load_pretrained(folder)


def test_what_file_browsers_leave_does_not_stop_a_replace(tmp_path):
    dst = tmp_path / "ckpt"
    WRITERS["xlsr"](dst)
    for clutter in (".DS_Store", "._config.json", "Thumbs.db", "desktop.ini"):
        (dst / clutter).write_text("")
    WRITERS["hf"](dst)  # replaced, clutter and all
    assert (dst / "config.json").is_file() and not (dst / ".DS_Store").exists()
