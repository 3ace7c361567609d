"""`xlsr data check` of a shard folder (data/check_shard_folder.py) in the cases its first tests leave open: a tar
larger than listed, the time a shard's task may take, what a stopped check keeps of a crashed shard and of a torn
last line, the order of the findings, how a missing tar is summed up, the bounds of too_short, the hours read."""

import hashlib
import json
import os
import tarfile

import _shard_check_helpers as fakes
import pytest
from _shard_check_helpers import entries, member_key, rewrite_member, write_shard_folder

from xlsr.data import check_shard_folder as csf
from xlsr.data.check_audio import CheckStopped
from xlsr.data.check_shard_folder import check_shard_folder, file_identity

SIX = {("es", "train"): ["a", "b", "c", "d", "e", "f"]}  # 4000 + 160 k samples; in tars of 3, 2 and 1 utterances
DISAGREE = "; the index and the tars disagree (re-run `xlsr data shard`)"


def report(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tars(shards) -> list[str]:
    return sorted(entries(shards))


def ids_of(shards, rel: str) -> list[str]:
    """The ids of the utterances of the tar `rel`, in its order."""
    with tarfile.open(shards / rel) as tf:
        return [json.loads(tf.extractfile(m).read())["id"] for m in tf.getmembers() if m.name.endswith(".json")]


def partial_of(shards, *records: dict, last_newline: bool = True) -> str:
    """The text of REPORT.partial an earlier check of every split of `shards` kept: its settings line, `records`."""
    settings = {"settings": {"index_sha256": hashlib.sha256((shards / "index.json").read_bytes()).hexdigest(),
                             "splits": ["train"], "min_sample_size": 0}}
    text = "".join(json.dumps(r) + "\n" for r in [settings, *records])
    return text if last_newline else text[:-1]


@pytest.fixture
def log(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARD_CHECK_LOG", str(tmp_path / "decoded.log"))
    return tmp_path / "decoded.log"


def test_a_tar_larger_than_listed_is_an_index_finding_and_is_not_read(tmp_path, log):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c"]})
    (rel,) = tars(shards)
    listed = (shards / rel).stat().st_size
    with open(shards / rel, "ab") as f:
        f.write(bytes(10240))  # training refuses the split before reading a tar larger than its index lists
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.logged, show_progress=False)
    assert report(tmp_path / "r.jsonl") == [{
        "shard": rel, "utterance": None, "id": None, "kind": "index", "count": 3,
        "message": f"{shards / rel}: {listed + 10240} bytes, but {shards / 'index.json'} lists {listed}{DISAGREE}"}]
    assert fakes.decoded(log) == [] and [(g.read, g.shards) for g in result.groups] == [(0, 1)]


def test_a_shards_task_may_take_the_decode_timeout_and_a_hundredth_of_the_longest_shards_audio(tmp_path, monkeypatch):
    shards = write_shard_folder(tmp_path, SIX)
    lengths = sorted(e["num_samples"] for e in entries(shards).values())
    assert lengths[0] < lengths[-1]
    timeouts, pool = [], csf.DecoderPool

    def recorded(*args, **kwargs):
        timeouts.append(kwargs["timeout"])
        return pool(*args, **kwargs)

    monkeypatch.setattr(csf, "DecoderPool", recorded)
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=1, decode_timeout=5, show_progress=False)
    assert timeouts == [pytest.approx(5 + 0.01 * lengths[-1] / 16000)]  # one pool: no shard's task crashed


def test_a_check_stopped_among_crashed_shards_goes_on_without_judging_one_again(tmp_path, monkeypatch, log, caplog):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b_segv", "c", "d", "e_segv", "f"]})
    by_utterance, judged = csf._judge_by_utterance, []

    def stopped_at_the_second(root, info, *args, **kwargs):  # Ctrl-C while the second crashed shard is judged
        judged.append(info.path)
        if len(judged) == 2:
            raise KeyboardInterrupt
        by_utterance(root, info, *args, **kwargs)

    crashing = [rel for rel in tars(shards) if any("segv" in uid for uid in ids_of(shards, rel))]
    assert len(crashing) == 2 and len(tars(shards)) == 3  # and one sound tar
    with monkeypatch.context() as m:
        m.setattr(csf, "_judge_by_utterance", stopped_at_the_second)
        with pytest.raises(CheckStopped, match=r"^2 of 3 shards checked"):
            check_shard_folder(shards, tmp_path / "r.jsonl", workers=1, decode=fakes.crashing, show_progress=False)
    assert judged == crashing
    log.unlink()
    caplog.clear()
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=1, decode=fakes.crashing, show_progress=False)
    # the first crashed shard kept as judged, the second's task not sent again: its utterances one by one
    assert sorted(fakes.decoded(log)) == sorted(set(ids_of(shards, crashing[1])) - {"e_segv"})
    assert not [r for r in caplog.records if "checked one by one" in r.getMessage()]
    assert [(f["id"], f["kind"]) for f in report(tmp_path / "r.jsonl")] == [("b_segv", "crashed"), ("e_segv", "crashed")]


def test_findings_of_a_shard_judged_one_by_one_are_in_its_order_whenever_judged(tmp_path, log):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a_oom", "b", "c_oom"]})
    (rel,) = tars(shards)
    (tmp_path / "r.jsonl.partial").write_text(partial_of(
        shards, {"shard": rel, "crashed": "its task crashed", "file": file_identity(shards / rel)},
        {"shard": rel, "member": member_key(shards, rel, "c_oom"),
         "bad": {"id": "c_oom", "kind": "crashed", "message": "judged before the stop"}}))
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.crashing, show_progress=False)
    assert [(f["id"], f["message"]) for f in report(tmp_path / "r.jsonl")] == [
        ("a_oom", f"{shards / rel}: utterance a_oom: decoder failed (MemoryError: cannot allocate 9 EiB)"),
        ("c_oom", "judged before the stop")]


def test_a_crashed_shard_copied_again_during_a_stop_is_judged_anew(tmp_path, log):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b_oom", "c"]})
    (rel,) = tars(shards)
    tar = shards / rel
    (tmp_path / "r.jsonl.partial").write_text(partial_of(
        shards, {"shard": rel, "crashed": "its task crashed", "file": file_identity(tar)},
        {"shard": rel, "member": member_key(shards, rel, "a"), "bad": None},
        {"shard": rel, "member": member_key(shards, rel, "b_oom"),
         "bad": {"id": "b_oom", "kind": "crashed", "message": "judged before the stop"}}))
    data, st = tar.read_bytes(), tar.stat()
    tar.unlink()  # copied again while the check was stopped (the same bytes, another file)
    tar.write_bytes(data)
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.crashing, show_progress=False)
    assert fakes.decoded(log) == ["a", "c"]
    assert [(f["id"], f["message"]) for f in report(tmp_path / "r.jsonl")] == [
        ("b_oom", f"{shards / rel}: utterance b_oom: decoder failed (MemoryError: cannot allocate 9 EiB)")]


def test_a_last_line_without_its_newline_is_torn_and_its_shard_judged_again(tmp_path, log):
    shards = write_shard_folder(tmp_path, SIX)
    first = tars(shards)[0]
    (tmp_path / "r.jsonl.partial").write_text(partial_of(
        shards, {"shard": first, "read": 3, "samples": 12480, "findings": [], "file": file_identity(shards / first)},
        last_newline=False))  # a kill cut the write just before its newline
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.logged, show_progress=False)
    assert sorted(fakes.decoded(log)) == ["a", "b", "c", "d", "e", "f"]
    assert not result.any_bad and result.groups[0].utterances == 6


def test_the_folders_own_findings_come_first_in_the_report(tmp_path):
    shards = write_shard_folder(tmp_path, SIX)
    first = tars(shards)[0]
    (shards / first).write_bytes((shards / first).read_bytes()[:5000])  # cut: damaged
    (shards / "train" / "zz-000000.tar").write_bytes(bytes(10240))  # a tar the index does not list
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, show_progress=False)
    assert [(f["shard"], f["kind"]) for f in report(tmp_path / "r.jsonl")] == [
        ("train/zz-000000.tar", "index"), (first, "damaged")]


def test_a_missing_tar_is_summed_up_as_its_utterances_lost(tmp_path):
    shards = write_shard_folder(tmp_path, SIX)
    gone = tars(shards)[1]
    lost = entries(shards)[gone]["utterances"]
    (shards / gone).unlink()
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, show_progress=False)
    (group,) = result.groups
    assert group.line(shards) == (f"{shards / 'train'} es: 2 of 3 shard(s), {6 - lost} utterances, 0.000 h read; "
                                  f"{lost} utterance(s) bad or lost ({lost} index)")


def test_an_utterance_as_long_as_the_min_sample_size_is_not_too_short(tmp_path):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c"]})
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, min_sample_size=4160, show_progress=False)
    assert [(f["id"], f["kind"]) for f in report(tmp_path / "r.jsonl")] == [("a", "too_short")]  # b: 4160, kept


def test_a_defect_of_the_file_is_reported_before_its_shortness_as_for_manifests(tmp_path):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c"]})
    (rel,) = tars(shards)
    rewrite_member(shards, rel, member_key(shards, rel, "a"), lambda meta: {**meta, "num_samples": 3000})
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, min_sample_size=4200, show_progress=False)
    assert [(f["id"], f["kind"]) for f in report(tmp_path / "r.jsonl")] == [("a", "wrong_length"), ("b", "too_short")]


@pytest.mark.parametrize("workers", [0, 1])
def test_the_samples_read_are_the_lengths_the_utterances_list(tmp_path, workers):
    shards = write_shard_folder(tmp_path, SIX)
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=workers, show_progress=False)
    assert [(g.utterances, g.samples) for g in result.groups] == [(6, sum(4000 + 160 * k for k in range(6)))]


def test_a_report_named_tar_outside_the_split_folders_is_taken(tmp_path):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a"]})
    result = check_shard_folder(shards, tmp_path / "report.tar", workers=0, show_progress=False)
    assert not result.any_bad and (tmp_path / "report.tar").read_text() == ""


def test_a_stopped_check_goes_on_with_its_splits_named_in_another_order(tmp_path, log):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c", "d_stop", "e", "f"], ("es", "dev"): ["j"]})
    with pytest.raises(CheckStopped):
        check_shard_folder(shards, tmp_path / "r.jsonl", splits=["train", "dev"], workers=0, decode=fakes.interrupting,
                           show_progress=False)
    log.unlink()
    result = check_shard_folder(shards, tmp_path / "r.jsonl", splits=["dev", "train"], workers=0,
                                decode=fakes.interrupting, show_progress=False)
    assert "a" not in fakes.decoded(log) and "d_stop" in fakes.decoded(log)  # went on where it stopped
    assert not result.any_bad and sum(g.utterances for g in result.groups) == 7


def test_a_tar_replaced_by_another_of_its_size_and_time_during_a_stop_is_read_again(tmp_path, log):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c", "d_stop", "e", "f"]})
    with pytest.raises(CheckStopped):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    tar = shards / tars(shards)[0]
    data, st = bytearray(tar.read_bytes()), tar.stat()
    data[1000:1500] = bytes(500)  # a damaged copy put in its place, its time kept (cp -p, rsync -a)
    (tmp_path / "copy.tar").write_bytes(bytes(data))
    os.replace(tmp_path / "copy.tar", tar)
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_identity(tar)[:2] == [st.st_size, st.st_mtime_ns]
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    assert [(f["id"], f["kind"]) for f in report(tmp_path / "r.jsonl")] == [("a", "unreadable"), (None, "damaged")]
