"""`xlsr data stats --alpha A`: the α table of the split a run trains on (--split, pretraining's --train-split),
an --alpha out of [0, 1] refused before the corpus is read, and an --alpha whose split the corpus lacks refused
in one line instead of printing no table."""

import json

from xlsr.cli.main import main


def _manifest(path, lang: str, seconds: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"audio": f"{lang}{i}.flac", "num_samples": int(s * 16000), "lang": lang,
                                        "speaker": "s"}) + "\n" for i, s in enumerate(seconds)))


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's refusal of an option it does not know
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_alpha_table_of_the_split_named_by_split(tmp_path, capsys):
    # an unlabeled corpus whose training split is not called `train` (xlsr pretrain --train-split unlab)
    _manifest(tmp_path / "en" / "unlab.jsonl", "en", [36.0] * 30)  # 0.3 h
    _manifest(tmp_path / "sw" / "unlab.jsonl", "sw", [36.0] * 10)  # 0.1 h
    _manifest(tmp_path / "sw" / "dev.jsonl", "sw", [36.0] * 20)
    rc, out, _ = _run(["data", "stats", tmp_path, "--alpha", "0.5", "--split", "unlab"], capsys)
    assert rc == 0
    rows = {r.split()[0]: r.split()[1:] for r in out.split("\n\n", 1)[1].strip().splitlines()[1:]}
    # (0.75^0.5, 0.25^0.5) / their sum = (0.634, 0.366)
    assert rows == {"en": ["0.300", "75.0%", "63.4%"], "sw": ["0.100", "25.0%", "36.6%"]}


def test_alpha_without_the_split_is_one_line_not_a_missing_table(tmp_path, capsys):
    _manifest(tmp_path / "en" / "unlab.jsonl", "en", [36.0] * 3)
    rc, out, err = _run(["data", "stats", tmp_path, "--alpha", "0.5"], capsys)
    assert rc == 2
    assert out == ""
    assert err.strip().splitlines() == [f"xlsr: error: --split: {tmp_path} has no train split for the α table "
                                         "(found: unlab); --split names the split a run trains on, its --train-split"]


def test_alpha_out_of_range_is_refused_before_the_corpus_is_read(tmp_path, capsys):
    _manifest(tmp_path / "en" / "train.jsonl", "en", [36.0] * 3)
    rc, out, err = _run(["data", "stats", tmp_path, "--alpha", "2"], capsys)
    assert rc == 2
    assert out == ""  # no stats table first: a large corpus would be read for nothing
    assert err.strip().splitlines() == ["xlsr: error: --alpha: must be in [0, 1], got 2"]
