"""Helpers shared by the re-import tests: an import that writes its audio, what a reader finds after it, and a
re-import killed at its step-th rename, link or folder removal (a module of its own: `conftest` is not importable
by name)."""

import os
import shutil
from pathlib import Path

import numpy as np

from xlsr.data.audio import load_audio
from xlsr.data.import_writer import ImportWriter
from xlsr.data.manifest import Utterance, read_manifest
from xlsr.errors import XlsrError


class Killed(BaseException):
    """The process ending at this step: no handler of the writer runs (its flock goes with it)."""


def import_audio(out, count: int = 3, split: str = "train", seconds: float = 0.25):
    """An import that writes its audio (lhotse segments, Hugging Face rows): `count` clips clip_<i> of `seconds`."""
    with ImportWriter(out, source="src", unit="rows") as writer:
        for i in range(count):
            x = np.random.default_rng(i).uniform(-0.4, 0.4, int(seconds * 16000)).astype(np.float32)
            utt_id = writer.unique_id(f"clip_{i}", "en", split)
            path = writer.write_audio(x, utt_id, "en", split)
            writer.add(Utterance(audio=str(path), num_samples=len(x), lang="en", id=utt_id), split)
        return writer.finish()


def corpus(out, split: str = "train") -> dict | str:
    """What a reader finds: {id: (num_samples, samples in its file)}, or why it cannot read it."""
    try:
        return {u.id: (u.num_samples, len(load_audio(u.audio))) for u in read_manifest(out / "en" / f"{split}.jsonl")}
    except XlsrError as exc:
        return f"unreadable: {exc}"


def hidden(out) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in Path(out).rglob(".*"))


def killed_at(monkeypatch, step: int) -> list[str]:
    """Make the step-th rename, link or folder removal from here on end the process; the steps taken so far."""
    steps: list[str] = []

    def counted(name, real):
        def call(*args, **kwargs):
            if len(steps) + 1 == step:
                raise Killed
            steps.append(f"{name} {Path(args[0]).name}")
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "replace", counted("replace", os.replace))
    monkeypatch.setattr(os, "link", counted("link", os.link))
    monkeypatch.setattr(shutil, "rmtree", counted("rmtree", shutil.rmtree))
    # a kill runs no cleanup: only the lock goes, as the kernel drops a dead process's flock
    monkeypatch.setattr(ImportWriter, "__exit__", lambda self, *exc: self._lock.__exit__(None, None, None))
    return steps


def run_killed_at(monkeypatch, step: int, run, *args, **kwargs) -> tuple[bool, list[str]]:
    """`run(*args, **kwargs)` killed before its step-th step (see `killed_at`), then every patch of `monkeypatch`
    undone: whether the kill came (False: `run` ended before that step) and the steps it took."""
    steps = killed_at(monkeypatch, step)
    killed = False
    try:
        run(*args, **kwargs)
    except Killed:
        killed = True
    monkeypatch.undo()
    return killed, steps
