"""`xlsr data check --data SHARDS`: every shard of a shard folder read, and every utterance decoded and judged, as
training reads them, before a long run.

Training finds a damaged shard or a bad utterance only when it reaches it (data/shard_reader.py, shard_stream.py),
perhaps days in, after α upsampling has read the other languages' shards many times. This check reads each shard of
the chosen splits once, with the reader training uses (the tar parsed and hashed against the index's sha256), decodes
each FLAC member as training does (`decode_audio`, then the length its .json lists, `length_mismatch`), and reports
one finding per problem, of these kinds:

- `index`: the folder and its index disagree where training refuses to start or stops: a listed tar missing or
  larger than listed, a tar the index does not list, a tar holding more utterances than listed or an utterance of
  another language;
- `damaged`: a tar cut short (`count`: its utterances after the cut), or one whose every utterance is there but
  whose bytes differ from the index's (another sha256, or fewer bytes: `count` 0; its utterances are judged one
  by one as below, as training uses those that decode);
- per utterance, the kinds of `xlsr data check` of manifests (data/check_audio.py's `judge`): `unreadable` (no
  .flac or no readable .json member, a `num_samples` that is not a positive integer, audio that does not decode),
  `wrong_length`, `too_short` (with `min_sample_size` > 0: pretraining skips it; judged by the length its .json
  lists, as the shard stream filters), `crashed` (the decoder killed its process, hung, or raised something other
  than an AudioError).

The work is spread by shard: each task of a `DecoderPool` worker (data/decoder_pool.py) is a whole tar, read,
hashed and decoded in that worker, so that the workers share the hashing too. A decoder that kills its worker, or
hangs, costs that shard's task, not the check: the shard is then read again in this process (the tar parsed and
hashed here, no audio decoded here) and its utterances are decoded one per task by the workers, so that the crash
is charged to the utterance that causes it and the others are judged. A shard's task may take `decode_timeout`
plus a hundredth of the audio's duration of the longest shard (the pool has one timeout; FLAC decodes at thousands
of times real time here, 2500 per worker with two on two cores): a task that takes longer only costs the time of
checking that shard again one utterance at a time, where the timeout is `decode_timeout`.

Kept as it goes, as the manifest check keeps its verdicts: REPORT.partial gets a line per shard once it is judged
(and one per utterance of a shard judged one by one), flushed; its first line records the index's sha256, the
splits and `min_sample_size`. The same command after a stop reads it and goes on with the shards not judged yet; a
line torn by a kill is cut off; one made with another index or other settings is refused in one line; a tar
that changed since it was read (another size, modification time or inode: copied again) is read again. Once every
shard is judged, REPORT is written atomically (one JSON line per finding, in index order, the folder's own
findings first) and REPORT.partial is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xlsr.atomic import json_line, write_jsonl
from xlsr.data.audio import decode_audio
from xlsr.data.check_audio import KINDS as UTTERANCE_KINDS
from xlsr.data.check_audio import (
    Bad,
    CheckStopped,
    Decoded,
    check_report_out,
    ctrl_c_held,
    judge,
    open_results,
)
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, DecoderPool, decoder_failed
from xlsr.data.shard_index import PARTIAL_NAME, ShardIndex, ShardInfo, read_index
from xlsr.errors import AudioError, XlsrError, listing
from xlsr.jsonl import json_object, torn_settings_line
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE

if TYPE_CHECKING:
    from xlsr.data.shard_reader import ShardEnd, ShardSample

log = logging.getLogger(__name__)

KINDS = ("index", "damaged", *UTTERANCE_KINDS)
DISAGREE = "; the index and the tars disagree (re-run `xlsr data shard`)"  # as training's refusal ends (shard_index.py)
SHARD_SECONDS_PER_AUDIO_SECOND = 0.01  # a shard's task may take decode_timeout plus this much per second of audio
Decode = Callable[[bytes, str], np.ndarray]


def finding(shard: str, kind: str, message: str, *, count: int, utterance: str | None = None,
            id: str | None = None) -> dict:
    """One line of REPORT: the shard (its path in the folder), the utterance's member key and id where one is meant,
    the kind, the message, and how many utterances training loses to it (0: none, the shard as a whole)."""
    return {"shard": shard, "utterance": utterance, "id": id, "kind": kind, "message": message, "count": count}


# --- judging an utterance, and a shard's reading: pure but for the decoder ----------------------------------------

def member_name(sample: ShardSample) -> str:
    """How training names an utterance in its lines: 'SHARDS/train/aa-000000.tar: utterance aa07'."""
    return f"{sample.shard}: utterance {sample.meta.get('id', sample.key)}"


def judge_member(flac: bytes, listed: int, name: str, decode: Decode, min_sample_size: int = 0) -> Bad | None:
    """The verdict training reaches on a FLAC member whose .json lists `listed` samples (None: good)."""
    try:
        decoded = Decoded(samples=len(decode(flac, name)))
    except AudioError as exc:
        decoded = Decoded(failure=Bad("unreadable", str(exc)))
    except Exception as exc:  # noqa: BLE001 - anything else ends a training run's worker: reported, not raised
        decoded = Decoded(failure=Bad("crashed", decoder_failed(name, exc)))
    bad = judge(decoded, listed, name, listed_by="its .json")
    # the shard stream filters by the length the .json lists, before decoding, and not again after (shard_stream.py
    # `_keep`): an utterance that decodes a little shorter, within length_tolerance, is used all the same
    if bad is None and listed < min_sample_size:
        return Bad("too_short", f"{name}: {listed} samples ({listed / SAMPLE_RATE:.2f} s) as its .json lists, fewer "
                                f"than --min-sample-size {min_sample_size}: pretraining skips it")
    return bad


def file_identity(path: Path) -> list[int] | None:
    """What tells a file from another copied over it: size, modification time, inode (None: no such file)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def reading_findings(rel: str, path: str, end: ShardEnd) -> list[dict]:
    """What the reader's verdict on the shard `rel` (read from `path`) says, as findings: its utterances without a
    usable .json or .flac member, a cut or another sha256, a disagreement with the index."""
    found = []
    for bad in end.bad:
        if bad.key == path:  # the shard as a whole (the reader keys an utterance's Bad by 'PATH:KEY')
            found.append(finding(rel, "damaged", bad.message, count=bad.count))
        else:
            found.append(finding(rel, "unreadable", bad.message, count=bad.count, utterance=bad.key[len(path) + 1:]))
    if end.fatal is not None:
        found.append(finding(rel, "index", end.fatal, count=0))
    return found


def folder_findings(index: ShardIndex, shards: Sequence[ShardInfo],
                    tar_folders: Sequence[str]) -> tuple[list[dict], set[str]]:
    """The folder against its index, by names and sizes (no tar read): findings for a listed tar that is missing or
    larger than listed (training refuses the split; such a tar is not read) and for a tar in one of the split folders
    `tar_folders` that the index does not list; and the listed tars that can be read (the others' paths left out)."""
    found, readable = [], set()
    for s in shards:
        file = index.root / s.path
        if not file.is_file():
            found.append(finding(s.path, "index", f"{index.path}: lists {s.path}, which does not exist{DISAGREE}",
                                 count=s.utterances))
        elif (size := file.stat().st_size) > s.bytes:
            found.append(finding(s.path, "index", f"{file}: {size} bytes, but {index.path} lists {s.bytes}{DISAGREE}",
                                 count=s.utterances))
        else:
            readable.add(s.path)
    listed = {s.path for s in index.shards}
    for split in tar_folders:
        for tar in sorted((index.root / split).glob("*.tar")):
            rel = tar.relative_to(index.root).as_posix()
            if rel not in listed:
                found.append(finding(rel, "index", f"{tar}: not in {index.path}{DISAGREE}", count=0))
    return found, readable


# --- the tasks a worker is sent ----------------------------------------------------------------------------------

class ShardTask(str):
    """A shard to check, as a worker is sent it: its path (the pool's lines name it) with the shard folder and its
    index entry."""

    def __new__(cls, root: str, entry: dict) -> ShardTask:
        task = super().__new__(cls, str(Path(root) / entry["path"]))
        task.root, task.entry = root, entry
        return task

    def __reduce__(self):
        return ShardTask, (self.root, self.entry)


class MemberTask(str):
    """One utterance of a shard to decode, as a worker is sent it: training's name for it, with its FLAC bytes and
    the length its .json lists."""

    def __new__(cls, name: str, flac: bytes, listed: int) -> MemberTask:
        task = super().__new__(cls, name)
        task.flac, task.listed = flac, listed
        return task

    def __reduce__(self):
        return MemberTask, (str(self), self.flac, self.listed)


def check_shard(task: ShardTask, *, read: Callable, decode: Decode = decode_audio, min_sample_size: int = 0) -> dict:
    """A worker's task: read the whole shard with `read` (shard_reader.read_shard), judge each utterance; {"read":
    utterances read, "samples": their lengths as listed, "findings": [...]}.

    The reader comes as an argument, not an import of this module: a worker is sent `check_shard` with it, and
    so imports the reader (webdataset, and with it torch: ~1.7 s) as it starts, not within its first task's time
    limit; a worker sent `check_member` imports neither."""
    from xlsr.data.shard_reader import ShardEnd  # loaded with `read`'s module by now

    info = ShardInfo.from_dict(task.entry, str(task))
    found, samples, file = [], 0, file_identity(Path(task))
    for item in read(Path(task.root), info):
        if isinstance(item, ShardEnd):
            return {"read": item.read, "samples": samples, "file": file,
                    "findings": found + reading_findings(info.path, str(task), item)}
        samples += item.meta["num_samples"]
        name = member_name(item)
        bad = judge_member(item.flac, item.meta["num_samples"], name, decode, min_sample_size)
        if bad is not None:
            found.append(finding(info.path, bad.kind, bad.message, count=1, utterance=item.key,
                                 id=str(item.meta.get("id", item.key))))
    raise AssertionError("the reader ends with a ShardEnd")  # pragma: no cover


def check_member(task: MemberTask, *, decode: Decode = decode_audio, min_sample_size: int = 0) -> Bad | None:
    """A worker's task after its shard's task crashed: one utterance's verdict."""
    return judge_member(task.flac, task.listed, str(task), decode, min_sample_size)


# --- what is kept as it goes -------------------------------------------------------------------------------------

class _Kept:
    """REPORT.partial: the settings line, then per shard judged {"shard", "read", "samples", "findings", "file"}, per
    shard whose task crashed {"shard", "crashed", "file"}, and per utterance of such a shard {"shard", "member",
    "bad"}; "file" is the tar's file_identity when it was read, so that a tar copied again since is read again."""

    def __init__(self, out: Path, settings: dict) -> None:
        self.path = out.with_name(out.name + ".partial")
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.done: dict[str, dict] = {}  # shard -> {"read", "samples", "findings"}
        self.crashed: dict[str, str] = {}  # shard -> the line of its task's end
        self.members: dict[str, dict[str, dict | None]] = {}  # shard -> member key -> its verdict (None: good)
        self.files: dict[str, list[int] | None] = {}  # shard -> its tar's file_identity when it was read
        self._file = open_results(out, self.path, self.settings, self._read)

    def _read(self) -> int:
        with open(self.path, "rb") as f:
            first = f.readline()
            if torn_settings_line(first):
                return 0  # torn in its first line, before any record: started anew
            settings = json_object(first).get("settings")
            if not isinstance(settings, dict) or "index_sha256" not in settings:
                raise XlsrError(f"{self.path}: not a file of results kept by xlsr data check of a shard folder (its "
                                f"first line records no index); it is left as it is: move it away or give another --out")
            if settings != self.settings:
                why = ("made with another index.json" if settings.get("index_sha256") != self.settings["index_sha256"]
                       else f"of splits {listing(settings.get('splits') or [], 5)} with --min-sample-size "
                            f"{settings.get('min_sample_size')}")
                raise XlsrError(f"{self.path}: the results of an earlier check {why}; run that check again to "
                                f"finish it, or delete the file to start over")
            end = len(first)
            for line in f:
                record = json_object(line) if line.endswith(b"\n") else {}
                if "shard" not in record:
                    break  # torn by a kill: cut off here
                self._keep(record)
                end += len(line)
        return end

    def _write(self, record: dict) -> None:
        with ctrl_c_held():  # on disk and counted, or neither
            self._file.write(json_line(record).encode("utf-8"))
            self._file.flush()
            self._keep(record)

    def _keep(self, record: dict) -> None:
        shard = record["shard"]
        if "crashed" in record:
            self.crashed[shard] = record["crashed"]
            self.files[shard] = record.get("file")
        elif "member" in record:
            self.members.setdefault(shard, {})[record["member"]] = record["bad"]
        else:
            self.done[shard] = {"read": record["read"], "samples": record["samples"], "findings": record["findings"]}
            self.files[shard] = record.get("file")
            self.members.pop(shard, None)

    def shard_done(self, shard: str, result: dict) -> None:
        self._write({"shard": shard, "read": result["read"], "samples": result["samples"],
                     "findings": result["findings"], "file": result["file"]})

    def forget(self, shard: str) -> None:
        """Drop what an earlier run kept of `shard` (its tar changed since): it is judged again."""
        for kept in (self.done, self.crashed, self.members, self.files):
            kept.pop(shard, None)

    def shard_crashed(self, shard: str, line: str, file: list[int] | None) -> None:
        self._write({"shard": shard, "crashed": line, "file": file})

    def member(self, shard: str, key: str, id: str, bad: Bad | None) -> None:
        self._write({"shard": shard, "member": key,
                     "bad": None if bad is None else {"id": id, "kind": bad.kind, "message": bad.message}})

    def close(self) -> None:
        self._file.close()


# --- the check ---------------------------------------------------------------------------------------------------

@dataclass
class GroupSummary:
    """The check of one language of one split: its shards, what was read of them, what was found."""

    split: str
    lang: str
    shards: int = 0
    read: int = 0  # shards read
    utterances: int = 0  # utterances read
    samples: int = 0  # of the utterances read (their .json's lengths)
    bad: Counter = field(default_factory=Counter)  # utterances lost, by kind
    shard_problems: int = 0  # findings that cost no utterance (another sha256, bytes cut from the padding)
    stops: int = 0  # shards read that the index describes otherwise (more utterances, another language): training stops

    def line(self, root: Path) -> str:
        lost = sum(self.bad.values())
        kinds = ", ".join(f"{self.bad[k]} {k}" for k in KINDS if self.bad[k])
        shards = f"{self.shards} shard(s)" if self.read == self.shards else f"{self.read} of {self.shards} shard(s)"
        text = (f"{root / self.split} {self.lang}: {shards}, {self.utterances} utterances, "
                f"{self.samples / SAMPLE_RATE / 3600:.3f} h read; "
                + (f"{lost} utterance(s) bad or lost ({kinds})" if lost else "none bad"))
        if self.shard_problems:
            text += f"; {self.shard_problems} shard(s) damaged without losing an utterance"
        if self.stops:
            text += f"; training stops at {self.stops} shard(s){DISAGREE}"
        return text


@dataclass
class ShardCheckReport:
    """What a finished check of a shard folder found, per language and split, and where it wrote it."""

    root: Path
    out: Path
    groups: list[GroupSummary]
    findings: list[dict]
    unlisted: Counter = field(default_factory=Counter)  # per split, its tars the index does not list

    @property
    def any_bad(self) -> bool:
        return bool(self.findings)

    def lines(self) -> list[str]:
        shards, read = sum(g.shards for g in self.groups), sum(g.read for g in self.groups)
        utterances = sum(g.utterances for g in self.groups)
        hours = sum(g.samples for g in self.groups) / SAMPLE_RATE / 3600
        lost = sum(f["count"] for f in self.findings)
        return [g.line(self.root) for g in self.groups] + [
            f"{self.root / split}: {n} tar(s) the index does not list{DISAGREE}" for split, n in sorted(self.unlisted.items())
        ] + [f"read {read} of {shards} shard(s) of {self.root} ({utterances} utterances, {hours:.3f} h): "
             f"{len(self.findings)} finding(s), {lost} utterance(s) bad or lost, listed in {self.out}"]


def check_shard_folder(root: str | Path, out: str | Path, *, splits: Sequence[str] | None = None, workers: int,
                       min_sample_size: int = 0, decode: Decode | None = None,
                       decode_timeout: float | None = DEFAULT_TIMEOUT_S, show_progress: bool = True) -> ShardCheckReport:
    """Read and judge every shard of `splits` (None: every split of the index) of the shard folder `root` (module
    docstring), in `workers` processes (0: in this one, with no crash isolation); REPORT `out`. `decode`:
    decode_audio unless given (tests). Ctrl-C raises CheckStopped."""
    if workers < 0:
        raise XlsrError(f"workers: must be 0 or more, got {workers}")
    if min_sample_size < 0:
        raise XlsrError(f"--min-sample-size: must be 0 or more, got {min_sample_size}")
    root = Path(root)
    index = read_index(root)
    chosen, splits = splits, _chosen_splits(index, splits)
    shards = [s for s in index.shards if s.split in splits]
    out = _checked_out(Path(out), index)
    # every split: the folders of tars too, also of a split the index does not name (training of it would refuse them)
    tar_folders = splits if chosen is not None else sorted({*splits, *(p.parent.name for p in root.glob("*/*.tar"))})
    folder, readable = folder_findings(index, shards, tar_folders)
    settings = {"index_sha256": hashlib.sha256(index.path.read_bytes()).hexdigest(), "splits": list(splits),
                "min_sample_size": min_sample_size}
    kept = _Kept(out, settings)
    todo = [s for s in shards if s.path in readable]
    try:
        _judge_all(index.root, todo, kept, workers=workers, decode=decode or decode_audio,
                   min_sample_size=min_sample_size, timeout=decode_timeout, show_progress=show_progress)
    except KeyboardInterrupt:
        checked = sum(s.path in kept.done for s in todo)  # not a shard judged by an earlier run and missing now
        raise CheckStopped(f"{checked} of {len(todo)} shards checked, kept in {kept.path}; the same command goes on "
                           f"from there") from None
    finally:
        kept.close()
    done = {s.path: kept.done[s.path] for s in todo}  # not a shard judged by an earlier run and missing now
    findings = folder + [f for result in done.values() for f in result["findings"]]
    write_jsonl(out, findings)
    kept.path.unlink(missing_ok=True)
    return ShardCheckReport(root, out, *_summaries(shards, done, findings))


def _checked_out(out: Path, index: ShardIndex) -> Path:
    """`out`, or XlsrError where it is a folder or a file training reads: the index, or a tar where the splits' tars
    are (listed or not: an unlisted one has training refuse its split)."""
    real = os.path.realpath(out)
    read = {os.path.realpath(index.path), os.path.realpath(index.root / PARTIAL_NAME),
            *(os.path.realpath(index.root / s.path) for s in index.shards)}
    split_folders = {os.path.realpath(index.root / split) for split in index.splits()}
    if real in read or (out.name.endswith(".tar") and os.path.dirname(real) in split_folders):
        raise XlsrError(f"--out {out}: a file of the shard folder {index.root} that training reads (its index or a "
                        f"tar); give another file name for the report")
    return check_report_out(out)


def _chosen_splits(index: ShardIndex, splits: Sequence[str] | None) -> list[str]:
    have = index.splits()
    if splits is None:
        return have
    if not splits:
        raise XlsrError("--splits: give at least one split name")
    missing = [s for s in splits if s not in have]
    if missing:
        raise XlsrError(f"{index.path}: no shards of split(s) {', '.join(missing)} (splits: {', '.join(have) or 'none'})")
    return [s for s in have if s in splits]


def _judge_all(root: Path, shards: list[ShardInfo], kept: _Kept, *, workers: int, decode: Decode,
               min_sample_size: int, timeout: float | None, show_progress: bool) -> None:
    """Judge every shard not in `kept` yet: whole shards in the workers, then, one utterance per task, those whose
    task crashed."""
    for s in shards:  # a tar copied again since an earlier run judged it (or began to): judged again
        if s.path in kept.files and kept.files[s.path] != file_identity(root / s.path):
            log.info("%s: changed since an earlier run of this check read it; read again", root / s.path)
            kept.forget(s.path)
    from xlsr.data.shard_reader import read_shard

    bar = progress(total=len(shards), initial=sum(s.path in kept.done for s in shards), desc="checking",
                   unit="shard", disable=not show_progress)
    try:
        whole = [s for s in shards if s.path not in kept.done and s.path not in kept.crashed]
        if workers == 0:
            for s in whole:
                kept.shard_done(s.path, check_shard(ShardTask(str(root), s.to_dict()), read=read_shard,
                                                    decode=decode, min_sample_size=min_sample_size))
                bar.update(1)
        elif whole:
            seconds = max(s.num_samples for s in whole) / SAMPLE_RATE
            # at most what the pool takes (MAX_TIMEOUT_S, the CLI's bound on --decode-timeout itself)
            shard_timeout = None if timeout is None else min(timeout + SHARD_SECONDS_PER_AUDIO_SECOND * seconds,
                                                             MAX_TIMEOUT_S)
            work = partial(check_shard, read=read_shard, decode=decode, min_sample_size=min_sample_size)
            with DecoderPool(min(workers, len(whole)), work, failed=lambda line: {"crashed": line},
                             timeout=shard_timeout) as pool:
                for rel, result in pool.map((s.path, ShardTask(str(root), s.to_dict())) for s in whole):
                    if "crashed" in result:
                        log.warning("%s; its utterances are checked one by one", result["crashed"])
                        kept.shard_crashed(rel, result["crashed"], file_identity(root / rel))
                    else:
                        kept.shard_done(rel, result)
                        bar.update(1)
        for s in shards:
            if s.path not in kept.done:  # its task crashed: its utterances one by one
                _judge_by_utterance(root, s, kept, workers=workers, decode=decode, min_sample_size=min_sample_size,
                                    timeout=timeout)
                bar.update(1)
    finally:
        bar.close()


def _judge_by_utterance(root: Path, info: ShardInfo, kept: _Kept, *, workers: int, decode: Decode,
                        min_sample_size: int, timeout: float | None) -> None:
    """Read the shard here (parsed and hashed: no audio decoded in this process unless `workers` is 0) and decode
    each utterance not judged yet as a task of its own; then keep the shard's verdict."""
    from xlsr.data.shard_reader import ShardEnd, read_shard  # as in check_shard

    judged = kept.members.get(info.path, {})
    file = file_identity(root / info.path)
    ids: dict[str, str] = {}
    ends: list[ShardEnd] = []
    samples = [0]

    def tasks() -> Iterator[tuple[str, MemberTask]]:
        for item in read_shard(root, info):
            if isinstance(item, ShardEnd):
                ends.append(item)
                return
            ids[item.key] = str(item.meta.get("id", item.key))
            samples[0] += item.meta["num_samples"]
            if item.key not in judged:
                yield item.key, MemberTask(member_name(item), item.flac, item.meta["num_samples"])

    if workers == 0:
        for key, task in tasks():
            kept.member(info.path, key, ids[key], check_member(task, decode=decode, min_sample_size=min_sample_size))
    else:
        work = partial(check_member, decode=decode, min_sample_size=min_sample_size)
        with DecoderPool(workers, work, failed=lambda line: Bad("crashed", line), timeout=timeout) as pool:
            for key, bad in pool.map(tasks()):
                kept.member(info.path, key, ids[key], bad)
    judged = kept.members.get(info.path, {})
    found = [finding(info.path, bad["kind"], bad["message"], count=1, utterance=key, id=bad["id"])
             for key, bad in judged.items() if bad is not None and key in ids]
    order = {key: k for k, key in enumerate(ids)}
    found.sort(key=lambda f: order[f["utterance"]])  # in the shard's order, as a whole shard's task lists them
    found += reading_findings(info.path, str(root / info.path), ends[0])
    kept.shard_done(info.path, {"read": ends[0].read, "samples": samples[0], "findings": found, "file": file})


def _summaries(shards: list[ShardInfo], done: dict[str, dict], findings: list[dict]) -> tuple[list[GroupSummary],
                                                                                              list[dict], Counter]:
    """Per language and split, what was read and found; the findings; per split, its tars the index does not list."""
    groups: dict[tuple[str, str], GroupSummary] = {}
    of_shard = {s.path: s for s in shards}
    for s in shards:
        g = groups.setdefault((s.split, s.lang), GroupSummary(s.split, s.lang))
        g.shards += 1
        if s.path in done:
            g.read += 1
            g.utterances += done[s.path]["read"]
            g.samples += done[s.path]["samples"]
    unlisted: Counter = Counter()
    for f in findings:
        s = of_shard.get(f["shard"])
        if s is None:  # a tar the index does not list
            unlisted[f["shard"].split("/")[0]] += 1
        elif f["count"]:
            groups[s.split, s.lang].bad[f["kind"]] += f["count"]
        elif f["kind"] == "index":  # read, and found to be another shard than the index's (the reader's `fatal`)
            groups[s.split, s.lang].stops += 1
        else:
            groups[s.split, s.lang].shard_problems += 1
    return [groups[k] for k in sorted(groups)], findings, unlisted
