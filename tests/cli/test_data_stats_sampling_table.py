"""`xlsr data stats --alpha A`: the sampling table is over the train split only, and α 0 (uniform over languages)
is a value like any other, not "no table"."""

import json

from xlsr.cli.main import main


def _manifest(path, lang: str, seconds: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"audio": f"{lang}{i}.flac", "num_samples": int(s * 16000), "lang": lang,
                                        "speaker": "s"}) + "\n" for i, s in enumerate(seconds)))


def _table(out: str) -> dict[str, list[str]]:
    """{lang: [hours, natural, p]} of the sampling table (the lines after the blank one)."""
    rows = out.split("\n\n", 1)[1].strip().splitlines()
    assert rows[0].split()[:3] == ["lang", "hours", "natural"]
    return {r.split()[0]: r.split()[1:] for r in rows[1:]}


def test_alpha_table_counts_the_train_split_only(tmp_path, capsys):
    _manifest(tmp_path / "es" / "train.jsonl", "es", [36.0] * 30)  # 0.3 h
    _manifest(tmp_path / "it" / "train.jsonl", "it", [36.0] * 10)  # 0.1 h
    _manifest(tmp_path / "it" / "dev.jsonl", "it", [36.0] * 20)  # would make it 0.3 h as well
    _manifest(tmp_path / "es" / "test.jsonl", "es", [36.0] * 5)
    assert main(["data", "stats", str(tmp_path), "--alpha", "1"]) == 0
    table = _table(capsys.readouterr().out)
    assert table == {"es": ["0.300", "75.0%", "75.0%"], "it": ["0.100", "25.0%", "25.0%"]}


def test_alpha_zero_prints_uniform_weights(tmp_path, capsys):
    _manifest(tmp_path / "es" / "train.jsonl", "es", [36.0] * 30)
    _manifest(tmp_path / "it" / "train.jsonl", "it", [36.0] * 10)
    assert main(["data", "stats", str(tmp_path), "--alpha", "0"]) == 0
    out = capsys.readouterr().out
    assert "p(α=0)" in out
    assert {lang: row[2] for lang, row in _table(out).items()} == {"es": "50.0%", "it": "50.0%"}
    assert main(["data", "stats", str(tmp_path)]) == 0  # no --alpha: no table
    assert "p(α" not in capsys.readouterr().out


def test_empty_train_manifests_get_the_stats_and_a_line_instead_of_the_table(tmp_path, capsys):
    _manifest(tmp_path / "es" / "train.jsonl", "es", [])
    _manifest(tmp_path / "es" / "dev.jsonl", "es", [36.0] * 2)
    assert main(["data", "stats", str(tmp_path), "--alpha", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n\n", 1)[1] == "no α table: the train manifests hold no utterances\n"
