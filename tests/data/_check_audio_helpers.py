"""Helpers of the `xlsr data check` tests: small corpora with damaged files, and decoders that misbehave on chosen
files. The decoders are module-level functions so that a spawned worker process finds them by name (a monkeypatch
does not reach it). A file is chosen by a word in its name; CHECK_AUDIO_LOG (inherited by the workers) names a file
that each path decoded to the end is appended to."""

import json
import os
import resource
import signal
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data.audio import load_audio

SR = 16000


def write_corpus(data: Path, names: list[str], *, lang: str = "es", split: str = "train") -> Path:
    """DATA/<lang>/<split>.jsonl of short FLAC tones named `names` (relative audio paths), lengths 4000, 4160, ..."""
    folder = data / lang
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, name in enumerate(names):
        n = 4000 + 160 * k
        sf.write(folder / "wav" / f"{name}.flac", 0.1 * np.sin(0.05 * np.arange(n)), SR)
        lines.append({"id": name, "audio": f"wav/{name}.flac", "num_samples": n, "lang": lang, "speaker": "s1",
                      "text": f"hola {name}"})
    manifest = folder / f"{split}.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return manifest


def damage(manifest: Path) -> dict[str, tuple[str, str]]:
    """Garble `garbled`, delete `gone`, list `wrong` 1000 samples too long; {id: (kind, message)} expected."""
    folder = manifest.parent
    (folder / "wav" / "garbled.flac").write_bytes(b"RIFF not really audio" * 20)
    (folder / "wav" / "gone.flac").unlink()
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    wrong = next(line for line in lines if line["id"] == "wrong")
    decoded, wrong["num_samples"] = wrong["num_samples"], wrong["num_samples"] + 1000
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    audio = {name: str(folder.resolve() / "wav" / f"{name}.flac") for name in ("garbled", "gone", "wrong")}
    return {"garbled": ("unreadable", f"{audio['garbled']}: not a readable audio file ("),
            "gone": ("unreadable", f"{audio['gone']}: no such audio file"),
            "wrong": ("wrong_length", f"{audio['wrong']}: decoded {decoded} samples, the manifest says "
                                      f"{decoded + 1000}")}


def logged(path: str):
    """load_audio, noting `path` in CHECK_AUDIO_LOG once it is decoded."""
    x = load_audio(path)
    log = os.environ.get("CHECK_AUDIO_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(path + "\n")
    return x


def crashing(path: str):
    """A decoder that dies of SIGSEGV on *segv* files, exits with status 3 on *exit* files and raises MemoryError on
    *oom* files."""
    name = Path(path).name
    if "segv" in name:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
        os.kill(os.getpid(), signal.SIGSEGV)
    if "exit" in name:
        os._exit(3)
    if "oom" in name:
        raise MemoryError("cannot allocate 9 EiB")
    return logged(path)


def _first_stop(path: str) -> bool:
    """True for a *stop* file the first time one is met (a flag file beside CHECK_AUDIO_LOG remembers it)."""
    flag = Path(os.environ["CHECK_AUDIO_LOG"] + ".stopped")
    if "stop" not in Path(path).name or flag.exists():
        return False
    flag.touch()
    return True


def interrupting(path: str):
    """Ctrl-C in this process (KeyboardInterrupt) on the first *stop* file, before decoding it."""
    if _first_stop(path):
        raise KeyboardInterrupt
    return logged(path)


def interrupting_parent(path: str):
    """Ctrl-C to the parent (SIGINT) on the first *stop* file, which is then decoded as usual."""
    if _first_stop(path):
        os.kill(os.getppid(), signal.SIGINT)
    return logged(path)


def hanging_on_marked(path: str):
    """load_audio, except that a *hang* file never returns (a decoder sent round a loop by a damaged file)."""
    if "hang" in Path(path).name:
        while True:
            time.sleep(1)
    return logged(path)
