from xlsr.cli.main import main


def test_data_stats_prints_per_language_split(corpus, capsys):
    out, _ = corpus
    assert main(["data", "stats", str(out), "--alpha", "0.5"]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()]
    assert ["zh", "train", "4"] == rows[[r[:2] for r in rows].index(["zh", "train"])][:3]
    assert ["total", "18"] == [r for r in rows if r and r[0] == "total"][0][:2]
    assert "p(α=0.5)" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--langs", "es,xx", "--utts-per-lang", "3"]) == 2
    assert capsys.readouterr().err.strip() == ("xlsr: error: unknown language code 'xx'; known: "
                                              + ",".join(__import__("xlsr.data.synth", fromlist=["LANGUAGES"])
                                                         .LANGUAGES))
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "no manifests" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().endswith("nowhere: no such data folder")
    assert main(["synth", "--out", str(tmp_path), "--langs", "it", "--utts-per-lang", "2"]) == 2
    assert "at least 3" in capsys.readouterr().err


def test_synth_command_writes_splits(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--langs", "fi", "--utts-per-lang", "3",
                 "--speakers-per-lang", "3", "--words-per-utt", "1-2"]) == 0
    assert all((tmp_path / "fi" / f"{s}.jsonl").is_file() for s in ("train", "dev", "test"))
    assert "wrote 3 utterances" in capsys.readouterr().out
