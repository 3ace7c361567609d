"""`xlsr data stats --alpha A` prints the table a pretraining run on the same folder prints (review s32): of the
utterances at least --min-sample-size long (pretraining's default, 32000 samples), as the run weighs them."""

from test_review30_stats_alpha_split import _manifest, _run  # a corpus of given lengths; a CLI call

from xlsr.data.batching import pretrain_loader
from xlsr.data.index_cache import open_manifest
from xlsr.data.sampling import weights_table
from xlsr.data.utterance_index import UtteranceIndex


def _after_stats(out: str) -> list[str]:
    """The lines after the corpus table (the α table and its notes)."""
    return out.split("\n\n", 1)[1].rstrip("\n").splitlines()


def _corpus(root) -> None:
    _manifest(root / "aa" / "train.jsonl", "aa", [3.0] * 2)
    _manifest(root / "bb" / "train.jsonl", "bb", [3.0] * 20 + [1.5] * 30)  # the 1.5-s clips: skipped by a run
    _manifest(root / "cc" / "train.jsonl", "cc", [3.0] * 200)


def test_the_alpha_table_is_the_one_the_run_prints(tmp_path, capsys):
    _corpus(tmp_path)
    rc, out, _ = _run(["data", "stats", tmp_path, "--alpha", "0.5"], capsys)
    assert rc == 0
    utts = UtteranceIndex.concat([open_manifest(tmp_path / lang / "train.jsonl") for lang in ("aa", "bb", "cc")])
    run = pretrain_loader(utts, max_tokens=1_400_000, min_sample_size=32000, alpha=0.5)  # the default run
    # hours 6 s : 60 s : 600 s, so p = (1, √10, 10) / (11 + √10): 7.1%, 22.3%, 70.6%
    assert _after_stats(out) == weights_table(run.sampler.hours, 0.5).splitlines() + [
        "left out: 30 of 252 utterances shorter than --min-sample-size=32000 samples (2 s), as a run skips them"]
    assert [line.split()[-1] for line in _after_stats(out)[1:4]] == ["7.1%", "22.3%", "70.6%"]


def test_min_sample_size_is_the_runs_setting(tmp_path, capsys):
    _corpus(tmp_path)
    rc, out, _ = _run(["data", "stats", tmp_path, "--alpha", "0.5", "--min-sample-size", "0"], capsys)
    assert rc == 0
    # every utterance weighed: bb has 60 s + 45 s
    assert [line.split()[1] for line in _after_stats(out)[1:]] == ["0.002", "0.029", "0.167"]
    rc, out, _ = _run(["data", "stats", tmp_path, "--alpha", "0.5", "--min-sample-size", "50000"], capsys)
    assert rc == 0
    assert _after_stats(out) == [
        "left out: 252 of 252 utterances shorter than --min-sample-size=50000 samples (3.125 s), as a run skips them",
        "aa, bb, cc: no utterance at least --min-sample-size=50000 samples (3.125 s) long: a run refuses them; lower "
        "--min-sample-size, or leave them out (--langs)"]
    rc, out, err = _run(["data", "stats", tmp_path, "--alpha", "0.5", "--min-sample-size", "-1"], capsys)
    assert (rc, out) == (2, "")
    assert err.strip().splitlines() == ["xlsr: error: --min-sample-size: must be at least 0, got -1"]


def test_a_language_with_no_utterance_long_enough_is_named(tmp_path, capsys):
    _manifest(tmp_path / "aa" / "train.jsonl", "aa", [3.0] * 4)
    _manifest(tmp_path / "bb" / "train.jsonl", "bb", [1.0] * 4)
    rc, out, _ = _run(["data", "stats", tmp_path, "--alpha", "1"], capsys)
    assert rc == 0
    lines = _after_stats(out)
    assert [line.split()[0] for line in lines[1:2]] == ["aa"] and lines[1].split()[-1] == "100.0%"
    assert lines[-1] == ("bb: no utterance at least --min-sample-size=32000 samples (2 s) long: a run refuses it; "
                         "lower --min-sample-size, or leave it out (--langs)")


def test_the_default_is_pretrainings():
    from xlsr.cli.data import PRETRAIN_MIN_SAMPLE_SIZE
    from xlsr.train.pretrain import PretrainConfig

    assert PRETRAIN_MIN_SAMPLE_SIZE == PretrainConfig.min_sample_size
