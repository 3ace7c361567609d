"""`xlsr data shard --workers`: the audio is decoded and encoded in worker processes (data/decoder_pool.py) and the
tars are written here in manifest order, the same bytes as in one process; a decoder that kills its worker costs its
file, an unreadable file like the others; a stop leaves no worker behind and what a run in one process leaves."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import _shard_helpers as fakes
import pytest
from _check_audio_helpers import write_corpus

from xlsr.cli.data import SHARD_WORKERS
from xlsr.cli.main import main
from xlsr.cores import available_cores
from xlsr.data import shards as shards_mod
from xlsr.data.shard_index import INDEX_NAME, PARTIAL_NAME, read_index
from xlsr.data.shards import write_shards
from xlsr.errors import XlsrError

SHARD_SIZE = 10_000  # 3 of the helpers' short tones per shard


def _corpus(data: Path, es_train: list[str]) -> Path:
    """es/train (`es_train`), it/train and es/dev manifests of short FLAC tones; `garbled` is not audio, `gone` is
    missing."""
    write_corpus(data, es_train, lang="es")
    write_corpus(data, [f"it{k}" for k in range(7)], lang="it")
    write_corpus(data, [f"dev{k}" for k in range(4)], lang="es", split="dev")
    for name in es_train:
        if "garbled" in name:
            (data / "es" / "wav" / f"{name}.flac").write_bytes(b"RIFF not really audio" * 20)
        if "gone" in name:
            (data / "es" / "wav" / f"{name}.flac").unlink()
    return data


def _audio(data: Path, name: str, lang: str = "es") -> str:
    return str(data.resolve() / lang / "wav" / f"{name}.flac")


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _ids(out: Path) -> list[str]:
    """The utterance ids the shards hold, in index and tar order."""
    import webdataset as wds

    return [json.loads(s["json"])["id"] for info in read_index(out).shards
            for s in wds.WebDataset(str(out / info.path), shardshuffle=False)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _workers_in_group(pgid: int) -> list[str]:
    """The decoding workers (multiprocessing's spawned children) of process group `pgid` still running, by pid
    (Linux /proc). Not multiprocessing's resource tracker: that one ends by itself, a moment after the process that
    started it has."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat, command = (proc / "stat").read_text(), (proc / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        state, _, group = stat[stat.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z" and b"spawn_main" in command:
            found.append(proc.name)
    return found


def test_workers_write_the_same_bytes_and_say_the_same_as_one_process(tmp_path, monkeypatch, caplog):
    data = _corpus(tmp_path / "data", ["a", "b", "garbled", "c", "d", "gone", "e", "f", "g", "h", "i", "j"])
    append, written = shards_mod._PartialIndex.append, {}

    def recorded(self, record):  # index.partial.jsonl is removed at the end: its lines are kept here
        written.setdefault(self.out.name, []).append(record)
        append(self, record)

    monkeypatch.setattr(shards_mod._PartialIndex, "append", recorded)
    runs = {}
    for workers in (0, 2):
        caplog.clear()
        report = write_shards(data, tmp_path / f"w{workers}", shard_size=SHARD_SIZE, max_bad_share=0.2,
                              workers=workers, show_progress=False)
        said = [r.getMessage() for r in caplog.records if r.name == shards_mod.__name__]
        runs[workers] = (_files(tmp_path / f"w{workers}"), report.skipped, report.unreadable, said)

    files, skipped, unreadable, said = runs[0]
    assert len([f for f in files if f.endswith(".tar")]) >= 5  # several shards per manifest: their boundaries too
    assert skipped[0].startswith(f"{_audio(data, 'garbled')}: not a readable audio file (")
    assert skipped[1:] == [f"{_audio(data, 'gone')}: no such audio file"] and unreadable == 2
    assert said == [f"skipping unreadable audio: {line}" for line in skipped]
    assert runs[2] == runs[0]  # every tar and index.json byte for byte, and the same messages
    assert written["w2"] == written["w0"]


def test_a_decoder_that_kills_its_worker_costs_its_file_and_the_run_goes_on(tmp_path, caplog):
    names = ["a", "b", "c", "x_segv", "d", "e", "f", "g", "h", "i"]
    data = _corpus(tmp_path / "data", names)
    report = write_shards(data, tmp_path / "crashed", shard_size=SHARD_SIZE, max_bad_share=0.1, workers=2,
                          encode=fakes.crashing, show_progress=False)

    crash = f"{_audio(data, 'x_segv')}: decoder crashed (killed by SIGSEGV)"
    assert report.skipped == [crash] and f"skipping unreadable audio: {crash}" in caplog.text
    assert report.index.sources["train/es"]["skipped"] == 1
    assert [i for i in _ids(tmp_path / "crashed") if i in names] == [n for n in names if n != "x_segv"]
    # what one process writes when that file is simply unreadable, byte for byte
    Path(_audio(data, "x_segv")).write_bytes(b"not audio")
    write_shards(data, tmp_path / "garbled", shard_size=SHARD_SIZE, max_bad_share=0.1, show_progress=False)
    assert _files(tmp_path / "crashed") == _files(tmp_path / "garbled")


def test_crashed_decoders_count_against_max_bad_share(tmp_path):
    data = _corpus(tmp_path / "data", ["a", "x_segv", "b", "c", "d", "e", "f", "y_segv", "g", "h"])
    with pytest.raises(XlsrError) as refused:
        write_shards(data, tmp_path / "out", shard_size=SHARD_SIZE, max_bad_share=0.1, workers=2,
                     encode=fakes.crashing, show_progress=False)
    manifest = data / "es" / "train.jsonl"
    assert str(refused.value).startswith(
        f"{manifest}: 2 of 10 audio files are unreadable, more than max_bad_share=0.1 (last: "
        f"{_audio(data, 'y_segv')}: decoder crashed (killed by SIGSEGV))")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_decoder_that_raises_costs_its_file_in_a_worker_and_in_this_process_alike(tmp_path, workers):
    data = _corpus(tmp_path / "data", ["a", "b", "z_oom", "c"])
    report = write_shards(data, tmp_path / "out", shard_size=SHARD_SIZE, max_bad_share=0.5, workers=workers,
                          encode=fakes.crashing, show_progress=False)
    assert report.skipped == [f"{_audio(data, 'z_oom')}: decoder failed (MemoryError: cannot allocate 9 EiB)"]
    assert report.index.sources["train/es"]["skipped"] == 1


def test_a_stop_in_the_writer_ends_the_workers_and_the_same_command_goes_on(tmp_path, monkeypatch):
    data = _corpus(tmp_path / "data", [f"u{k:02d}" for k in range(12)])
    straight, out = tmp_path / "straight", tmp_path / "out"
    write_shards(data, straight, shard_size=SHARD_SIZE, show_progress=False)
    monkeypatch.setenv("SHARD_WORKER_LOG", str(tmp_path / "pids"))
    add, calls = shards_mod._OpenShard.add, []

    def stopped_at_the_ninth(self, *args):  # Ctrl-C in the writer, with the workers busy ahead of it
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        add(self, *args)

    monkeypatch.setattr(shards_mod._OpenShard, "add", stopped_at_the_ninth)
    with pytest.raises(KeyboardInterrupt):
        write_shards(data, out, shard_size=SHARD_SIZE, workers=2, encode=fakes.crashing, show_progress=False)
    monkeypatch.undo()

    pids = {int(p) for p in (tmp_path / "pids").read_text().split()}
    assert pids and not [p for p in pids if _alive(p)] and not multiprocessing.active_children()
    assert not (out / INDEX_NAME).exists() and not list(out.rglob("*.tmp"))
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tar"))
    listed = [json.loads(line) for line in (out / PARTIAL_NAME).read_text().splitlines()]
    assert done and sorted(r["path"] for r in listed if not r.get("retired")) == done
    report = write_shards(data, out, shard_size=SHARD_SIZE, workers=2, show_progress=False)
    assert report.kept == len(done) and report.written == len(report.index.shards) - len(done)
    assert _files(out) == _files(straight)


SCRIPT = """
import signal
import sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, even if started ignored

import _shard_helpers
from xlsr.data.shards import write_shards

try:
    write_shards(sys.argv[1], sys.argv[2], shard_size=int(sys.argv[3]), workers=2,
                 encode=_shard_helpers.ctrl_c_on_stop, show_progress=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_to_the_process_group_ends_the_run_and_its_workers(tmp_path):
    data = _corpus(tmp_path / "data", [f"u{k:02d}" for k in range(7)] + ["u_stop"] + [f"v{k}" for k in range(4)])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen([sys.executable, "-c", SCRIPT, str(data), str(out), str(SHARD_SIZE)], env=env,
                           start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail("the stopped run did not end (it waited on its workers)")
    assert run.returncode == 130 and stdout == "interrupted\n", stderr[-2000:]
    assert _workers_in_group(run.pid) == []  # none orphaned
    assert not (out / INDEX_NAME).exists() and not list(out.rglob("*.tmp"))
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tar"))
    if done:
        listed = [json.loads(line) for line in (out / PARTIAL_NAME).read_text().splitlines()]
        assert sorted(r["path"] for r in listed if not r.get("retired")) == done
    report = write_shards(data, out, shard_size=SHARD_SIZE, workers=2, show_progress=False)
    assert report.kept == len(done)
    write_shards(data, tmp_path / "straight", shard_size=SHARD_SIZE, show_progress=False)
    assert _files(out) == _files(tmp_path / "straight")


def test_the_shard_writer_imports_no_torch_so_its_workers_start_light():
    run = subprocess.run([sys.executable, "-c", "import sys, xlsr.data.shards; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "False", run.stderr[-2000:]


def test_the_command_decodes_in_as_many_workers_as_cores_up_to_its_cap_unless_told(monkeypatch):
    given = []

    def record(*args, **kwargs):
        given.append(kwargs["workers"])
        raise XlsrError("stand-in")

    monkeypatch.setattr(shards_mod, "write_shards", record)
    main(["data", "shard", "--data", "d", "--out", "s"])
    main(["data", "shard", "--data", "d", "--out", "s", "--workers", "0"])
    assert given == [min(available_cores(), SHARD_WORKERS), 0]


def test_a_negative_worker_count_is_refused_in_one_line(tmp_path):
    with pytest.raises(XlsrError, match=r"^--workers: must be 0 or more, got -1$"):
        write_shards(tmp_path, tmp_path / "out", workers=-1, show_progress=False)
