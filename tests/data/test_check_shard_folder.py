"""`xlsr data check` of a shard folder (data/check_shard_folder.py): every tar read as training reads it (hashed
against the index, each FLAC member decoded and its length judged against its .json), each problem one finding; a
decoder that crashes or hangs costs its utterance, not the check; a stopped check goes on where it stopped."""

import hashlib
import json

import _shard_check_helpers as fakes
import pytest
from _shard_check_helpers import entries, member_key, rewrite_member, rewrite_raw_member, write_shard_folder

from xlsr.data.check_audio import CheckStopped
from xlsr.data.check_shard_folder import check_shard_folder, file_identity
from xlsr.errors import XlsrError

NAMES = {("es", "train"): ["a", "b", "c", "d", "e", "f"], ("it", "train"): ["g", "h", "i"], ("es", "dev"): ["j"]}


def report(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rels(shards, split: str, lang: str) -> list[str]:
    return sorted(rel for rel, e in entries(shards).items() if e["split"] == split and e["lang"] == lang)


@pytest.fixture
def shards(tmp_path):
    folder = write_shard_folder(tmp_path, NAMES)
    assert len(rels(folder, "train", "es")) >= 2  # several tars per language: the work is spread by shard
    return folder


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sound_folder_is_read_whole_and_passes(shards, tmp_path, workers):
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=workers, show_progress=False)
    assert not result.any_bad and report(tmp_path / "r.jsonl") == []
    assert {(g.split, g.lang): (g.read, g.shards, g.utterances) for g in result.groups} == {
        ("dev", "es"): (1, 1, 1), ("train", "es"): (len(rels(shards, "train", "es")),) * 2 + (6,),
        ("train", "it"): (len(rels(shards, "train", "it")),) * 2 + (3,)}
    assert result.lines()[-1].startswith(f"read {len(entries(shards))} of {len(entries(shards))} shard(s) of {shards} "
                                         f"(10 utterances, ")
    assert not (tmp_path / "r.jsonl.partial").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_each_damage_is_one_finding_in_trainings_words(shards, tmp_path, workers):
    cut, garbled = rels(shards, "train", "es")[:2]
    (shards / cut).write_bytes((shards / cut).read_bytes()[:5000])  # inside its second utterance's FLAC
    data = bytearray((shards / garbled).read_bytes())
    data[1000:1500] = bytes(500)  # zeros over its first utterance's FLAC: damaged in place, the same size
    (shards / garbled).write_bytes(bytes(data))
    it = rels(shards, "train", "it")[0]
    h = member_key(shards, it, "h")
    listed = json.loads(__import__("tarfile").open(shards / it).extractfile(f"{h}.json").read())["num_samples"]
    rewrite_member(shards, it, h, lambda meta: {**meta, "num_samples": meta["num_samples"] + 1000})
    (shards / "dev" / "es-000000.tar").unlink()
    (shards / "train" / "zz-000000.tar").write_bytes(bytes(10240))

    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=workers, show_progress=False)
    found = {(f["shard"], f["id"], f["kind"], f["count"]): f["message"] for f in report(tmp_path / "r.jsonl")}
    n_cut = entries(shards)[cut]["utterances"]
    assert set(found) == {
        ("dev/es-000000.tar", None, "index", 1),
        ("train/zz-000000.tar", None, "index", 0),
        (cut, None, "damaged", n_cut - 1),
        (garbled, "d", "unreadable", 1),
        (garbled, None, "damaged", 0),
        (it, "h", "wrong_length", 1),
    }, sorted(found)
    index = shards / "index.json"
    assert found["dev/es-000000.tar", None, "index", 1] == (
        f"{index}: lists dev/es-000000.tar, which does not exist; the index and the tars disagree (re-run `xlsr data "
        f"shard`)")
    assert found[cut, None, "damaged", n_cut - 1].startswith(f"{shards / cut}: damaged after 1 of {n_cut} utterances (")
    assert found[it, "h", "wrong_length", 1] == (f"{shards / it}: utterance h: decoded {listed} samples, its .json "
                                                 f"says {listed + 1000}")
    assert found[garbled, "d", "unreadable", 1].startswith(f"{shards / garbled}: utterance d: ")
    assert found[garbled, None, "damaged", 0] == (f"{shards / garbled}: its sha256 differs from the index's (damaged "
                                                  f"in place); its utterances that decode are used, the others "
                                                  f"skipped as bad files")
    assert result.any_bad and result.unlisted == {"train": 1}
    es = next(g for g in result.groups if (g.split, g.lang) == ("train", "es"))
    assert es.bad == {"damaged": n_cut - 1, "unreadable": 1} and es.shard_problems == 1
    assert es.utterances == 6 - (n_cut - 1)  # read: the garbled one was read, then found not to decode


CRASHY = {("es", "train"): ["a", "b_segv", "c", "d", "e_hang", "f"], ("it", "train"): ["g", "h_oom", "i"]}


def test_a_decoder_that_crashes_or_hangs_costs_its_utterance_and_the_rest_is_judged(tmp_path, monkeypatch, caplog):
    shards = write_shard_folder(tmp_path, CRASHY)
    monkeypatch.setenv("SHARD_CHECK_LOG", str(tmp_path / "decoded.log"))
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=2, decode=fakes.crashing, decode_timeout=2,
                                show_progress=False)
    found = {f["id"]: (f["shard"], f["kind"], f["message"]) for f in report(tmp_path / "r.jsonl")}
    b_tar, e_tar, h_tar = (next(rel for rel in entries(shards) if member_key_of(shards, rel, uid))
                           for uid in ("b_segv", "e_hang", "h_oom"))
    assert found == {
        "b_segv": (b_tar, "crashed", f"{shards / b_tar}: utterance b_segv: decoder crashed (killed by SIGSEGV)"),
        "e_hang": (e_tar, "crashed", f"{shards / e_tar}: utterance e_hang: decoder hung (no answer in 2 s; its "
                                     f"worker was stopped)"),
        "h_oom": (h_tar, "crashed", f"{shards / h_tar}: utterance h_oom: decoder failed (MemoryError: cannot "
                                    f"allocate 9 EiB)"),
    }
    # every other utterance judged (those of a crashed shard's task again, one by one), none of them lost
    assert set(fakes.decoded(tmp_path / "decoded.log")) == {"a", "c", "d", "f", "g", "i"}
    assert sum(g.utterances for g in result.groups) == 9
    crashed_tasks = [r.getMessage() for r in caplog.records if "checked one by one" in r.getMessage()]
    assert any(f"{shards / b_tar}: decoder crashed (killed by SIGSEGV)" in m for m in crashed_tasks)
    assert any(f"{shards / e_tar}: decoder hung" in m for m in crashed_tasks)


def member_key_of(shards, rel, uid) -> bool:
    try:
        member_key(shards, rel, uid)
    except KeyError:
        return False
    return True


def test_a_stopped_check_goes_on_without_reading_a_judged_shard_again(tmp_path, monkeypatch):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c", "d_stop", "e", "f"]})
    log = tmp_path / "decoded.log"
    monkeypatch.setenv("SHARD_CHECK_LOG", str(log))
    with pytest.raises(CheckStopped, match=r"^1 of 3 shards checked, kept in .*r\.jsonl\.partial; the same command "
                                           r"goes on from there$"):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    assert fakes.decoded(log) == ["a", "b", "c"] and not (tmp_path / "r.jsonl").exists()
    log.unlink()
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=2, decode=fakes.interrupting,
                                show_progress=False)
    assert sorted(fakes.decoded(log)) == ["d_stop", "e", "f"]  # the first shard's verdict was kept
    assert not result.any_bad and sum(g.utterances for g in result.groups) == 6
    assert not (tmp_path / "r.jsonl.partial").exists()


def test_a_crashed_shards_utterances_judged_before_a_stop_are_not_decoded_again(tmp_path, monkeypatch):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b_segv", "c"]})
    rel = next(iter(entries(shards)))
    keys = {uid: member_key(shards, rel, uid) for uid in ("a", "b_segv", "c")}
    partial = tmp_path / "r.jsonl.partial"
    kept = [{"shard": rel, "crashed": f"{shards / rel}: decoder crashed (killed by SIGSEGV)",
             "file": file_identity(shards / rel)},
            {"shard": rel, "member": keys["a"], "bad": None},
            {"shard": rel, "member": keys["b_segv"], "bad": {"id": "b_segv", "kind": "crashed", "message": "m"}}]
    first = {"settings": {"index_sha256": hashlib.sha256((shards / "index.json").read_bytes()).hexdigest(),
                          "splits": ["train"], "min_sample_size": 0}}
    partial.write_text("".join(json.dumps(r) + "\n" for r in [first, *kept]) + '{"shard": "torn')
    monkeypatch.setenv("SHARD_CHECK_LOG", str(tmp_path / "decoded.log"))
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=2, decode=fakes.crashing, show_progress=False)
    assert fakes.decoded(tmp_path / "decoded.log") == ["c"]  # only the one not judged before the stop
    assert [(f["id"], f["kind"], f["message"]) for f in report(tmp_path / "r.jsonl")] == [("b_segv", "crashed", "m")]
    assert result.groups[0].utterances == 3


def test_too_short_only_when_asked(shards, tmp_path):
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, min_sample_size=4200, show_progress=False)
    short = sorted((f["id"], f["kind"]) for f in report(tmp_path / "r.jsonl"))
    # lengths 4000 + 160 k: a and b of es/train, g and h of it/train, j of es/dev are under 4200
    assert short == [(uid, "too_short") for uid in ("a", "b", "g", "h", "j")]
    assert result.any_bad


def test_an_earlier_checks_results_of_another_index_or_setting_are_refused_and_kept(shards, tmp_path, monkeypatch):
    log = tmp_path / "decoded.log"
    monkeypatch.setenv("SHARD_CHECK_LOG", str(log))
    names = {("es", "train"): ["a", "b", "c", "d_stop"]}
    folder = write_shard_folder(tmp_path / "other", names)
    with pytest.raises(CheckStopped):
        check_shard_folder(folder, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    partial = tmp_path / "r.jsonl.partial"
    before = partial.read_bytes()
    with pytest.raises(XlsrError, match=r"r\.jsonl\.partial: the results of an earlier check made with another "
                                        r"index\.json; run that check again to finish it, or delete the file"):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, show_progress=False)
    with pytest.raises(XlsrError, match=r"the results of an earlier check of splits train with --min-sample-size 0;"):
        check_shard_folder(folder, tmp_path / "r.jsonl", workers=0, min_sample_size=100, show_progress=False)
    assert partial.read_bytes() == before


def test_splits_choose_and_unknown_ones_are_refused(shards, tmp_path):
    result = check_shard_folder(shards, tmp_path / "r.jsonl", splits=["dev"], workers=0, show_progress=False)
    assert [(g.split, g.lang, g.utterances) for g in result.groups] == [("dev", "es", 1)]
    with pytest.raises(XlsrError, match=r"index\.json: no shards of split\(s\) test \(splits: dev, train\)$"):
        check_shard_folder(shards, tmp_path / "r.jsonl", splits=["test"], workers=0, show_progress=False)



def test_a_shard_judged_before_a_stop_and_gone_since_is_reported_missing_not_read(tmp_path, monkeypatch):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c", "d_stop", "e", "f"]})
    monkeypatch.setenv("SHARD_CHECK_LOG", str(tmp_path / "decoded.log"))
    with pytest.raises(CheckStopped):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    first = rels(shards, "train", "es")[0]
    (shards / first).unlink()  # judged sound before the stop, lost since
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, show_progress=False)
    assert [(f["shard"], f["kind"], f["count"]) for f in report(tmp_path / "r.jsonl")] == [(first, "index", 3)]
    assert [(g.read, g.shards, g.utterances) for g in result.groups] == [(2, 3, 3)]


@pytest.mark.parametrize("target", ["index.json", "train/es-000000.tar", "train/report.tar"])
def test_out_on_a_file_training_reads_is_refused_and_the_folder_left_as_it_is(shards, target):
    before = {p: p.read_bytes() for p in shards.rglob("*") if p.is_file()}
    with pytest.raises(XlsrError, match=rf"^--out {shards / target}: a file of the shard folder {shards} that "
                                        rf"training reads \(its index or a tar\); give another file name"):
        check_shard_folder(shards, shards / target, workers=0, show_progress=False)
    assert {p: p.read_bytes() for p in shards.rglob("*") if p.is_file()} == before


def test_the_longest_decode_timeout_the_cli_takes_is_taken(tmp_path):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a"]})
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=1, decode_timeout=1e6, show_progress=False)
    assert not result.any_bad and result.groups[0].utterances == 1


def test_a_second_stop_counts_only_the_shards_of_this_check(tmp_path, monkeypatch):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c", "d_stop", "e", "f"]})
    log = tmp_path / "decoded.log"
    monkeypatch.setenv("SHARD_CHECK_LOG", str(log))
    with pytest.raises(CheckStopped, match=r"^1 of 3 shards checked"):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    (shards / rels(shards, "train", "es")[0]).unlink()  # judged before the stop, lost since
    (tmp_path / "decoded.log.stopped").unlink()  # stopped again at d_stop
    with pytest.raises(CheckStopped, match=r"^0 of 2 shards checked"):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)


def test_too_short_goes_by_the_length_the_json_lists_as_the_shard_stream_filters(shards, tmp_path):
    rel = next(rel for rel in rels(shards, "train", "es") if member_key_of(shards, rel, "d"))
    # d decodes to 4480 samples; its .json made to say 4520, within length_tolerance: training keeps it (4520 >=
    # 4500) and uses what decodes
    rewrite_member(shards, rel, member_key(shards, rel, "d"), lambda meta: {**meta, "num_samples": 4520})
    check_shard_folder(shards, tmp_path / "r.jsonl", splits=["train"], workers=0, min_sample_size=4500,
                       show_progress=False)
    short = {f["id"]: (f["kind"], f["message"]) for f in report(tmp_path / "r.jsonl")}
    assert sorted(short) == ["a", "b", "c", "g", "h", "i"]  # 4000 + 160 k samples, k < 3 in each language
    c = next(rel for rel in rels(shards, "train", "es") if member_key_of(shards, rel, "c"))
    assert short["c"] == ("too_short", f"{shards / c}: utterance c: 4320 samples (0.27 s) as its .json lists, fewer "
                                       f"than --min-sample-size 4500: pretraining skips it")


def test_a_shard_the_index_describes_otherwise_is_summed_up_as_where_training_stops(shards, tmp_path):
    rel = rels(shards, "train", "it")[0]
    rewrite_member(shards, rel, member_key(shards, rel, "g"), lambda meta: {**meta, "lang": "es"})
    result = check_shard_folder(shards, tmp_path / "r.jsonl", splits=["train"], workers=0, show_progress=False)
    assert [(f["shard"], f["kind"], f["count"]) for f in report(tmp_path / "r.jsonl")] == [(rel, "index", 0)]
    it = next(g for g in result.groups if g.lang == "it")
    assert it.line(shards).endswith("none bad; training stops at 1 shard(s); the index and the tars disagree (re-run "
                                    "`xlsr data shard`)")


def test_tars_in_a_split_folder_the_index_does_not_name_are_found_when_every_split_is_checked(shards, tmp_path):
    (shards / "test").mkdir()
    (shards / "test" / "es-000000.tar").write_bytes((shards / "dev" / "es-000000.tar").read_bytes())
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, show_progress=False)
    assert [(f["shard"], f["kind"], f["count"]) for f in report(tmp_path / "r.jsonl")] == [
        ("test/es-000000.tar", "index", 0)]
    assert result.unlisted == {"test": 1} and result.any_bad
    chosen = check_shard_folder(shards, tmp_path / "r2.jsonl", splits=["train", "dev"], workers=0, show_progress=False)
    assert not chosen.any_bad  # the splits asked for are sound


def test_a_json_member_nested_too_deep_for_the_parser_is_an_unreadable_utterance(shards, tmp_path):
    it = rels(shards, "train", "it")[0]
    h = member_key(shards, it, "h")
    rewrite_raw_member(shards, it, f"{h}.json", b"[" * 200_000)  # nested deeper than any JSON parser goes
    result = check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, show_progress=False)
    found = [(f["shard"], f["utterance"], f["kind"]) for f in report(tmp_path / "r.jsonl")]
    assert found == [(it, h, "unreadable")]  # the reader, as training reads it, takes it for a bad file
    assert sum(g.utterances for g in result.groups) == 9


def test_a_tar_copied_again_after_it_was_judged_is_read_again_by_the_resumed_check(tmp_path, monkeypatch):
    shards = write_shard_folder(tmp_path, {("es", "train"): ["a", "b", "c", "d_stop", "e", "f"]})
    log = tmp_path / "decoded.log"
    monkeypatch.setenv("SHARD_CHECK_LOG", str(log))
    with pytest.raises(CheckStopped):
        check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    assert fakes.decoded(log) == ["a", "b", "c"]
    first = shards / rels(shards, "train", "es")[0]
    data = bytearray(first.read_bytes())
    data[1000:1500] = bytes(500)  # damaged while the check was stopped: a copy made again, gone wrong
    first.unlink()
    first.write_bytes(bytes(data))
    log.unlink()
    check_shard_folder(shards, tmp_path / "r.jsonl", workers=0, decode=fakes.interrupting, show_progress=False)
    assert sorted(fakes.decoded(log)) == ["b", "c", "d_stop", "e", "f"]  # the first tar read again ("a" is damaged)
    assert [(f["id"], f["kind"]) for f in report(tmp_path / "r.jsonl")] == [("a", "unreadable"), (None, "damaged")]
