"""Helpers of the `xlsr data check --data SHARDS` tests: a small shard folder, ways to damage it, and decoders that
misbehave on chosen utterances. The decoders are module-level functions so that a spawned worker finds them by name
(a monkeypatch does not reach it). An utterance is chosen by a word in its id; SHARD_CHECK_LOG (inherited by the
workers) names a file that each utterance decoded to the end is appended to."""

import hashlib
import io
import json
import os
import resource
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.data.audio import decode_audio
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.shards import write_shards

SR = 16000


def write_shard_folder(tmp: Path, names: dict[tuple[str, str], list[str]], *, per_shard: int = 3) -> Path:
    """TMP/shards from a corpus of short tones: {(lang, split): utterance ids}; about `per_shard` utterances a tar."""
    for (lang, split), ids in names.items():
        utts = []
        for k, uid in enumerate(ids):
            path = tmp / "corpus" / lang / f"{uid}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            n = 4000 + 160 * k
            sf.write(path, 0.1 * np.sin(0.05 * np.arange(n) * (1 + k / 7)), SR)
            utts.append(Utterance(str(path), n, lang, id=uid))
        write_manifest(tmp / "corpus" / lang / f"{split}.jsonl", utts)
    splits = sorted({split for _, split in names})
    # a tar sample of one of these tones is 3 KiB (two 512-byte headers, ~1.5 KB of FLAC, the JSON, block padding)
    write_shards(tmp / "corpus", tmp / "shards", shard_size=per_shard * 3100 + 512, splits=splits,
                 show_progress=False)
    return tmp / "shards"


def entries(shards: Path) -> dict[str, dict]:
    return {e["path"]: e for e in json.loads((shards / "index.json").read_text())["shards"]}


def rewrite_member(shards: Path, rel: str, key: str, change, *, reindex: bool = True) -> None:
    """Rewrite the tar `rel` with member `key.json`'s fields passed through `change` (a dict -> dict), and (with
    `reindex`) its index entry's bytes and sha256 made the new file's, so that only the change is found."""
    tar = shards / rel
    out = io.BytesIO()
    with tarfile.open(tar) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == f"{key}.json":
                data = json.dumps(change(json.loads(data))).encode()
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    tar.write_bytes(out.getvalue())
    if reindex:
        index = json.loads((shards / "index.json").read_text())
        for e in index["shards"]:
            if e["path"] == rel:
                e["bytes"], e["sha256"] = len(out.getvalue()), hashlib.sha256(out.getvalue()).hexdigest()
        (shards / "index.json").write_text(json.dumps(index))


def member_key(shards: Path, rel: str, uid: str) -> str:
    """The member key of the utterance `uid` in the tar `rel`."""
    with tarfile.open(shards / rel) as tf:
        for m in tf.getmembers():
            if m.name.endswith(".json") and json.loads(tf.extractfile(m).read())["id"] == uid:
                return m.name[:-len(".json")]
    raise KeyError(uid)


def _id(name: str) -> str:
    """The utterance's id in the name training gives it ('SHARDS/train/es-000000.tar: utterance b_segv')."""
    return name.rsplit(": utterance ", 1)[1]


def _logged(flac: bytes, name: str):
    x = decode_audio(flac, name)
    log = os.environ.get("SHARD_CHECK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(_id(name) + "\n")
    return x


def decoded(log: Path) -> list[str]:
    """The ids of the utterances decoded to the end, in the order logged."""
    return log.read_text().split() if log.exists() else []


def crashing(flac: bytes, name: str):
    """Dies of SIGSEGV on *segv* utterances; never returns on *hang* ones; raises MemoryError on *oom* ones."""
    uid = _id(name)
    if "segv" in uid:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in uid:
        while True:
            time.sleep(1)
    if "oom" in uid:
        raise MemoryError("cannot allocate 9 EiB")
    return _logged(flac, name)


def interrupting(flac: bytes, name: str):
    """Ctrl-C in this process (KeyboardInterrupt) on the first *stop* utterance, before decoding it."""
    flag = Path(os.environ["SHARD_CHECK_LOG"] + ".stopped")
    if "stop" in _id(name) and not flag.exists():
        flag.touch()
        raise KeyboardInterrupt
    return _logged(flac, name)


def logged(flac: bytes, name: str):
    return _logged(flac, name)


def rewrite_raw_member(shards: Path, rel: str, name: str, data: bytes) -> None:
    """Rewrite the tar `rel` with member `name` holding `data`, and its index entry's bytes and sha256 the new file's."""
    tar = shards / rel
    out = io.BytesIO()
    with tarfile.open(tar) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            content = src.extractfile(m).read()
            if m.name == name:
                content, m.size = data, len(data)
            dst.addfile(m, io.BytesIO(content))
    tar.write_bytes(out.getvalue())
    index = json.loads((shards / "index.json").read_text())
    for e in index["shards"]:
        if e["path"] == rel:
            e["bytes"], e["sha256"] = len(out.getvalue()), hashlib.sha256(out.getvalue()).hexdigest()
    (shards / "index.json").write_text(json.dumps(index))
