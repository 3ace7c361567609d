"""`xlsr demo --out DIR` as a user meets it: one demo at a time in DIR, and nothing outside a demo's outputs removed."""

import json

import pytest

import xlsr.demo.pipeline
from xlsr.cli.main import main
from xlsr.demo import DEMO_MARKER, MONOLINGUAL, MULTILINGUAL, prepare_out_dir
from xlsr.errors import XlsrError
from xlsr.folder_lock import LOCK_FILE, folder_lock
from xlsr.released import MULTILINGUAL_LANGS, TARGET


class NoWork(Exception):
    """Raised where the demo's first stage would begin: the test is about what happens before it."""


def stand_in_releases(root):
    """Release folders as the demo's checks see them (config, weights, recipe.json); no model is ever loaded."""
    for name, langs in ((MULTILINGUAL, MULTILINGUAL_LANGS), (MONOLINGUAL, (TARGET,))):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
        (root / name / "model.safetensors").write_bytes(b"")
        (root / name / "recipe.json").write_text(json.dumps({"corpus": {"langs": list(langs)}}))
    return root


def no_synthesis(monkeypatch, check=None):
    def stop(*args, **kwargs):
        if check is not None:
            check()
        raise NoWork

    monkeypatch.setattr(xlsr.demo.pipeline, "synthesize", stop)


def test_a_second_demo_into_a_folder_a_demo_is_writing_is_refused_and_removes_nothing(tmp_path, capsys, monkeypatch):
    """While one demo runs in DIR (it holds DIR/.lock), a second `xlsr demo --out DIR` (say with another option)
    stops in one line; before, it removed the running demo's corpus, runs and log under it and started its own."""
    no_synthesis(monkeypatch)
    out = tmp_path / "demo_out"
    (out / "corpus" / "it").mkdir(parents=True)
    (out / "corpus" / "it" / "train.jsonl").write_text("the running demo's manifest\n")
    (out / DEMO_MARKER).write_text("[1/5] synth: it: 6.8 min labeled train\n")
    released = stand_in_releases(tmp_path / "rel")
    with folder_lock(out, "the first demo"):
        code = main(["demo", "--out", str(out), "--quick", "--shared-lr", "5e-4", "--released", str(released)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"xlsr: error: {out}: another demo is writing into it; wait for it to end or choose "
                          f"another --out") and err.count("\n") == 1
    assert (out / "corpus" / "it" / "train.jsonl").read_text() == "the running demo's manifest\n"
    assert (out / DEMO_MARKER).read_text() == "[1/5] synth: it: 6.8 min labeled train\n"


def test_a_new_folder_is_locked_while_the_demo_writes_and_the_lock_is_gone_after(tmp_path, monkeypatch):
    """The demo holds DIR/.lock from before it removes anything until it ends; its own lock file does not make DIR
    'not empty', and a demo that stops leaves no lock behind."""
    out = tmp_path / "fresh"

    def held():
        with pytest.raises(XlsrError, match="another demo is writing into it"), folder_lock(out, "another demo is "
                                                                                             "writing into it"):
            pass

    no_synthesis(monkeypatch, held)
    with pytest.raises(NoWork):
        xlsr.demo.pipeline.run_demo(out, xlsr.demo.DemoSettings.quick(), released_dir=stand_in_releases(
            tmp_path / "rel"), quiet=True)
    assert (out / DEMO_MARKER).is_file() and not (out / LOCK_FILE).exists()


def test_a_lock_file_alone_is_no_content_and_a_foreign_folder_keeps_its_files(tmp_path):
    only_lock = tmp_path / "killed"
    only_lock.mkdir()
    (only_lock / LOCK_FILE).write_text("123\n")  # what a demo killed before its first line leaves
    assert prepare_out_dir(only_lock) == only_lock
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / LOCK_FILE).write_text("")
    (mine / "corpus").mkdir()
    (mine / "corpus" / "notes.txt").write_text("keep me")
    with pytest.raises(XlsrError, match="not empty and holds no earlier demo"):
        prepare_out_dir(mine)
    assert (mine / "corpus" / "notes.txt").read_text() == "keep me"


def test_a_lock_file_of_the_users_own_is_content_before_the_demo_locks_the_folder(tmp_path):
    from xlsr.demo.pipeline import check_out_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / LOCK_FILE).write_text("my notes")
    with pytest.raises(XlsrError, match="folder is not empty and holds no earlier demo"):
        check_out_dir(mine)
    assert (mine / LOCK_FILE).read_text() == "my notes"


def test_a_demo_log_whose_last_line_a_kill_cut_is_still_the_demos(tmp_path):
    out = tmp_path / "demo"
    (out / "finetune").mkdir(parents=True)
    (out / DEMO_MARKER).write_text("[1/5] synth: it: 6.8 min labeled train (41 s)\n[2/")  # killed mid-line
    prepare_out_dir(out)
    assert not (out / "finetune").exists()
