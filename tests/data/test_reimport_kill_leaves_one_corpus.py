"""A re-import killed at any step leaves the old corpus or the new one, each whole (manifest and the audio it
lists), never the old manifest over the new audio; the next import into the folder finishes or removes what the
killed one left."""

import os
import shutil

import pytest
from _reimport_kills import corpus, hidden, import_audio, run_killed_at

OLD = {f"clip_{i}": (4000, 4000) for i in range(3)}  # id: (num_samples listed, samples in the file it lists)
NEW = {f"clip_{i}": (8000, 8000) for i in range(2)}


def test_a_reimport_killed_at_any_step_leaves_the_old_or_the_new_corpus_whole(tmp_path, monkeypatch):
    outcomes = []
    for step in range(1, 40):
        out = tmp_path / f"kill-{step}"
        import_audio(out)
        killed, steps = run_killed_at(monkeypatch, step, import_audio, out, 2, seconds=0.5)
        found = corpus(out)
        assert found in (OLD, NEW), f"killed before step {step} (after {steps}): {found}"
        outcomes.append("old" if found == OLD else "new")
        import_audio(out, 1, split="dev")  # the next import, into another split, clears what the killed one left
        assert corpus(out) == found, f"killed before step {step}: the next import changed the corpus"
        assert hidden(out) == [], f"killed before step {step}: left {hidden(out)}"
        if not killed:  # the import ended before reaching this step: every step was tried
            break
    else:
        pytest.fail("the re-import took more steps than the test tries")
    # kills before the commit leave the old corpus, kills after it the new
    assert outcomes == sorted(outcomes, reverse=True) and outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes.count("new") >= 3  # at least: the step after the commit, the audio's re-placing and the end


@pytest.mark.parametrize("renamed", [1, 2])
def test_a_swap_an_earlier_version_left_half_done_is_finished_by_the_next_import(tmp_path, renamed):
    # earlier versions swapped a split in by renaming audio/<split> to .<split>.replaced, audio/.<split>.importing
    # to audio/<split>, then .<split>.jsonl.ready over <split>.jsonl; a kill after `renamed` of those renames left
    # the old manifest over no audio (1) or over the new audio (2)
    old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "out"
    import_audio(old)
    import_audio(new, 2, seconds=0.5)
    audio = out / "en" / "audio"
    shutil.copytree(old / "en" / "audio" / "train", audio / ".train.replaced")
    shutil.copytree(new / "en" / "audio" / "train", audio / ("train" if renamed == 2 else ".train.importing"))
    shutil.copy(old / "en" / "train.jsonl", out / "en" / "train.jsonl")
    shutil.copy(new / "en" / "train.jsonl", out / "en" / ".train.jsonl.ready")
    import_audio(out, 1, split="dev")
    assert corpus(out) == NEW  # the earlier import had its whole manifest ready: its swap is completed
    assert hidden(out) == []


def test_a_copy_stands_in_for_hard_links_where_the_filesystem_has_none(tmp_path, monkeypatch):
    import_audio(tmp_path)

    def no_links(src, dst, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted", str(src))
    monkeypatch.setattr(os, "link", no_links)
    import_audio(tmp_path, 2, seconds=0.5)
    assert corpus(tmp_path) == NEW and hidden(tmp_path) == []
    assert '"audio": "audio/train/0000/clip_0.flac"' in (tmp_path / "en" / "train.jsonl").read_text()


def test_the_new_corpus_keeps_its_audio_under_the_split_name_after_a_reimport(tmp_path):
    import_audio(tmp_path)
    import_audio(tmp_path, 2, seconds=0.5)
    lines = (tmp_path / "en" / "train.jsonl").read_text().splitlines()
    assert [line.split('"audio": ')[1].split(",")[0] for line in lines] == \
        ['"audio/train/0000/clip_0.flac"', '"audio/train/0000/clip_1.flac"']
    assert sorted(p.name for p in (tmp_path / "en" / "audio").iterdir()) == ["train"]


def test_a_first_import_renames_its_audio_into_place_without_links(tmp_path, monkeypatch):
    # nothing to protect: no hard link per file, no manifest rewritten
    def no_links(src, dst, *args, **kwargs):
        raise AssertionError(f"a first import linked {src}")
    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(shutil, "copyfile", no_links)
    import_audio(tmp_path)
    assert corpus(tmp_path) == OLD and hidden(tmp_path) == []
    assert '"audio": "audio/train/0000/clip_0.flac"' in (tmp_path / "en" / "train.jsonl").read_text()


def test_a_first_import_killed_at_any_step_leaves_no_corpus_or_the_whole_one(tmp_path, monkeypatch):
    outcomes = []
    for step in range(1, 20):
        out = tmp_path / f"kill-{step}"
        killed, _ = run_killed_at(monkeypatch, step, import_audio, out)
        found = corpus(out)
        assert found == OLD or found.startswith("unreadable"), f"killed before step {step}: {found}"
        outcomes.append("new" if found == OLD else "none")
        import_audio(out, 2, seconds=0.5)  # the next import (of the same split) takes the folder whatever the kill left
        assert corpus(out) == NEW and hidden(out) == [], f"killed before step {step}: {hidden(out)}"
        assert sorted(p.name for p in (out / "en" / "audio").iterdir()) == ["train"]
        if not killed:
            break
    else:
        pytest.fail("the first import took more steps than the test tries")
    # kills before the manifest's rename leave none, kills after it the whole corpus
    first_new = outcomes.index("new")
    assert first_new > 0 and outcomes[first_new:] == ["new"] * (len(outcomes) - first_new)
    assert set(outcomes[:first_new]) == {"none"}


def test_a_reimport_with_audio_on_another_disk_killed_at_any_step_leaves_one_corpus(tmp_path, monkeypatch):
    # DIR/<lang>/audio a link to another disk: the manifest lists the audio by absolute paths there
    for step in range(1, 40):
        out, disk = tmp_path / f"kill-{step}", tmp_path / f"disk-{step}"
        (out / "en").mkdir(parents=True)
        disk.mkdir()
        os.symlink(disk, out / "en" / "audio")
        import_audio(out)
        assert str(disk) in (out / "en" / "train.jsonl").read_text()
        killed, _ = run_killed_at(monkeypatch, step, import_audio, out, 2, seconds=0.5)
        found = corpus(out)
        assert found in (OLD, NEW), f"killed before step {step}: {found}"
        import_audio(out, 1, split="dev")  # settles what the kill left
        assert corpus(out) == found, f"killed before step {step}: the next import changed the corpus"
        assert sorted(p.name for p in disk.iterdir()) == ["dev", "train"], f"killed before step {step}"
        if not killed:
            assert found == NEW
            break
    else:
        pytest.fail("the re-import took more steps than the test tries")
