import json

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli.main import main


def test_data_stats_prints_per_language_split(corpus, capsys):
    out, _ = corpus
    assert main(["data", "stats", str(out), "--alpha", "0.5", "--min-sample-size", "0"]) == 0  # clips under 2 s
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()]
    assert ["zh", "train", "4"] == rows[[r[:2] for r in rows].index(["zh", "train"])][:3]
    assert ["total", "18"] == [r for r in rows if r and r[0] == "total"][0][:2]
    assert "p(α=0.5)" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--langs", "es,xx", "--utts-per-lang", "3"]) == 2
    assert capsys.readouterr().err.strip() == ("xlsr: error: --langs: unknown language code 'xx'; known: "
                                              + ",".join(__import__("xlsr.data.synth", fromlist=["LANGUAGES"])
                                                         .LANGUAGES))
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "no manifests" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().endswith("nowhere: no such data folder")
    assert main(["synth", "--out", str(tmp_path), "--langs", "it", "--utts-per-lang", "2"]) == 2
    assert "at least 3" in capsys.readouterr().err


@pytest.mark.parametrize("names, words", [
    (["--lang", "../../x"], "language code '../../x': must be a plain name"),
    (["--lang", ""], "language code '': must be a plain name"),
    (["--lang", "it", "--split", "../x"], "split '../x': must be a plain name"),
])
def test_import_names_that_would_write_outside_out_are_one_line(tmp_path, capsys, names, words):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "t.txt").write_text("a hello\n")
    assert main(["data", "import", "folder", str(tmp_path / "wavs"), "--transcripts", str(tmp_path / "t.txt"),
                 "--out", str(tmp_path / "out"), *names]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


def test_synth_command_writes_splits(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--langs", "fi", "--utts-per-lang", "3",
                 "--speakers-per-lang", "3", "--words-per-utt", "1-2"]) == 0
    assert all((tmp_path / "fi" / f"{s}.jsonl").is_file() for s in ("train", "dev", "test"))
    assert "wrote 3 utterances" in capsys.readouterr().out


def test_synth_reports_speakers_and_effects_and_clean_is_the_old_corpus(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "r"), "--langs", "fi", "--utts-per-lang", "10",
                 "--words-per-utt", "1-2"]) == 0
    out = capsys.readouterr().out
    assert "speakers: 10 (train 8, dev 1, test 1; disjoint across splits)" in out and "effects: " in out
    record = json.loads((tmp_path / "r" / "synth.json").read_text())
    assert (record["augment"], record["voices"], record["speakers_per_lang"]) == (
        "speed=0.3:0.9-1.1,reverb=0.3:0.2-0.8,noise=0.5:5-30,bandlimit=0.2:3000-6000", "varied", 40)
    assert main(["synth", "--out", str(tmp_path / "c"), "--langs", "fi", "--utts-per-lang", "3", "--clean",
                 "--words-per-utt", "1-2"]) == 0
    record = json.loads((tmp_path / "c" / "synth.json").read_text())
    assert (record["augment"], record["voices"], record["speakers_per_lang"]) == ("none", "basic", 10)
    assert "effects: none 3 utterances" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--augment", "noise=0.5:40-5"], "xlsr: error: augment 'noise=0.5:40-5': the SNR in dB range 40-5 has its "
                                      "low end above its high end"),
    (["--augment", "speed=0.3:0.2-1.1"], "xlsr: error: augment 'speed=0.3:0.2-1.1': the speed factor range "
                                         "0.2-1.1 is outside 0.5-2"),
    (["--clean", "--augment", "default"], "xlsr: error: --augment: --clean means --augment none; leave out one "
                                          "of the two"),
    (["--clean", "--speakers-per-lang", "40"], "xlsr: error: --speakers-per-lang: --clean means "
                                               "--speakers-per-lang 10; leave out one of the two"),
])
def test_synth_bad_corpus_options_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "corpus"
    assert main(["synth", "--out", str(out), "--langs", "fi", "--utts-per-lang", "3", *args]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not out.exists()


def test_data_stats_skips_a_bad_line_among_many_and_refuses_a_bad_manifest(tmp_path, capsys, caplog):
    good = '{"audio": "a.flac", "num_samples": 16000, "lang": "es", "speaker": "s%d"}\n'
    (tmp_path / "es").mkdir()
    manifest = tmp_path / "es" / "train.jsonl"
    manifest.write_text("".join(good % (i % 3) for i in range(40)) + '{"audio": "b.flac", "lang": "es"}\n')
    assert main(["data", "stats", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert ["es", "train", "40", "0.011", "3"] == captured.out.splitlines()[1].split()
    assert f"{manifest}:41: missing field(s) num_samples" in caplog.text  # a warning (stderr outside pytest)
    manifest.write_text(good % 0 + "not json\n")  # 1 of 2 lines bad: over the training default of 5%
    assert main(["data", "stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xlsr: error: {manifest}:2: not valid JSON") and len(err.strip().splitlines()) == 1


def test_import_folder_and_fairseq_skip_bad_lines_up_to_max_bad_share(tmp_path, capsys):
    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "wavs" / "a.wav", np.zeros(1600), 16000)
    (tmp_path / "t.txt").write_text("a hello\nb missing\n")
    folder = ["data", "import", "folder", str(tmp_path / "wavs"), "--transcripts", str(tmp_path / "t.txt"),
              "--lang", "it", "--out", str(tmp_path / "out")]
    assert main(folder) == 2
    err = capsys.readouterr().err
    # the first skipped line, said as it is met, then the refusal: one line each
    warning, error = err.splitlines()
    assert warning.startswith(f"xlsr: warning: skipping {tmp_path / 't.txt'}:2: no audio file 'b'")
    assert error.startswith("xlsr: error: ") and "1 of 2 utterances (50.0%) could not be imported" in error
    assert main([*folder, "--max-bad-share", "0.6"]) == 0
    assert capsys.readouterr().out == (f"imported 1 utterances from {tmp_path / 't.txt'} into {tmp_path / 'out'}: "
                                       f"it/train 1 (0.1 s); 1 skipped (listed in {tmp_path / 'out'}/import_skipped.txt)\n")
    # several fairseq manifests: one import, one line
    for split in ("train", "valid"):
        (tmp_path / f"{split}.tsv").write_text(f"{tmp_path / 'wavs'}\na.wav\t1600\n")
    assert main(["data", "import", "fairseq", str(tmp_path / "train.tsv"), str(tmp_path / "valid.tsv"),
                 "--lang", "it", "--out", str(tmp_path / "fs")]) == 0
    assert "it/dev 1 (0.1 s), it/train 1 (0.1 s)" in capsys.readouterr().out
