"""`xlsr transcribe` and `xlsr evaluate` never write an output over one of their inputs, into the model, over
another of their outputs or over a file that is not an earlier output of theirs; a rerun still replaces its own."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A training run folder as `xlsr finetune` leaves it: checkpoints/update_N, and best and last linking to it."""
    run = tmp_path_factory.mktemp("runs") / "ft"
    torch.manual_seed(0)
    save_checkpoint(run / "checkpoints" / "update_0000005", Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), len(VOCAB)),
                    vocab=VOCAB, metadata={"labels": "phones"})
    for name in ("best", "last"):
        (run / "checkpoints" / name).symlink_to("update_0000005")
    (run / "config.yaml").write_text("task: finetune\n")
    return run


def _wav(path, seconds=0.5):
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, int(16000 * seconds)).astype(np.float32), 16000)
    return path


def _manifest(folder):
    wav = _wav(folder / "u0.wav")
    manifest = folder / "dev.jsonl"
    manifest.write_text(json.dumps({"id": "u0", "audio": wav.name, "num_samples": 8000, "lang": "xx",
                                    "phones": "a i"}) + "\n")
    return manifest


def _refused(argv, capsys, *said):
    """Run `xlsr argv`, which must end with one error line holding every string of `said`."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: ") and err.count("\n") == 1, err
    for words in said:
        assert words in err, err
    return err


def test_transcribe_refuses_an_out_that_is_one_of_its_audio_files(run_folder, tmp_path, capsys):
    wav = _wav(tmp_path / "victim.wav")
    link = tmp_path / "link.wav"
    link.symlink_to(wav)
    before = wav.read_bytes()
    for out in (wav, link):
        _refused(["transcribe", "--model", run_folder, wav, "--out", out, "--no-progress"], capsys,
                 f"--out {out}: is the input {wav}")
    assert wav.read_bytes() == before and not (tmp_path / "victim.wav.partial").exists()


def test_transcribe_refuses_an_out_inside_the_model(run_folder, tmp_path, capsys):
    wav = _wav(tmp_path / "a.wav")
    config = run_folder / "checkpoints" / "best" / "config.json"
    before = config.read_bytes()
    for model, out in ((run_folder, config), (run_folder, run_folder / "checkpoints" / "update_0000005" / "new.jsonl"),
                       (run_folder / "checkpoints" / "best", run_folder / "checkpoints" / "best" / "new.jsonl")):
        _refused(["transcribe", "--model", model, wav, "--out", out, "--no-progress"], capsys,
                 f"--out {out}: is inside the model")
    assert config.read_bytes() == before
    assert sorted(os.listdir(run_folder / "checkpoints" / "update_0000005")) == ["config.json", "model.safetensors"]


def test_transcribe_refuses_an_out_that_is_its_lexicon_or_an_lm_side_file(run_folder, tmp_path, capsys):
    wav = _wav(tmp_path / "a.wav")
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ai a i\n")
    _refused(["transcribe", "--model", run_folder, wav, "--lexicon", lexicon, "--out", lexicon], capsys,
             f"--out {lexicon}: is the input {lexicon}")
    side = tmp_path / "lm.bin.words.txt"
    side.write_text("ai\n")
    _refused(["transcribe", "--model", run_folder, wav, "--lm", tmp_path / "lm.bin", "--out", side], capsys,
             f"--out {side}: is the input {side}")
    assert lexicon.read_text() == "ai a i\n" and side.read_text() == "ai\n"


@pytest.mark.parametrize("name, content", [("dev.jsonl", '{"audio": "a.wav", "text": "a", "num_samples": 5}\n'),
                                           ("notes.txt", "my notes\n"), ("config.yaml", "{a: 1}\n")])
def test_transcribe_refuses_an_existing_file_it_did_not_write(run_folder, tmp_path, capsys, name, content):
    wav = _wav(tmp_path / "a.wav")
    theirs = tmp_path / name
    theirs.write_text(content)
    _refused(["transcribe", "--model", run_folder, wav, "--out", theirs, "--no-progress"], capsys,
             f"--out {theirs}: exists and is not a results file of xlsr transcribe", "move it away")
    assert theirs.read_text() == content


def test_transcribe_refuses_an_out_that_is_no_regular_file(run_folder, tmp_path, capsys):
    wav = _wav(tmp_path / "a.wav")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _refused(["transcribe", "--model", run_folder, wav, "--out", fifo, "--no-progress"], capsys,
             f"--out {fifo}: is not a regular file")
    assert fifo.is_fifo()


def test_transcribe_run_again_replaces_its_own_out(run_folder, tmp_path):
    wav = _wav(tmp_path / "a.wav")
    out = tmp_path / "out.jsonl"
    out.write_text("")  # an earlier run whose every file failed
    argv = ["transcribe", "--model", str(run_folder), str(wav), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    first = out.read_text()
    assert json.loads(first)["audio"] == str(wav)
    assert main(argv + ["--timestamps"]) == 0  # another setting: a new OUT over the old
    assert "timestamps" in json.loads(out.read_text()) and not out.with_name("out.jsonl.partial").exists()


def test_evaluate_refuses_outputs_over_its_manifest_and_over_each_other(run_folder, tmp_path, capsys):
    manifest = _manifest(tmp_path)
    before = manifest.read_text()
    base = ["evaluate", "--model", run_folder, "--manifest", manifest, "--no-progress"]
    for option in ("--json", "--hyps"):
        _refused([*base, option, manifest], capsys, f"{option} {manifest}: is the input {manifest}")
    assert manifest.read_text() == before
    both = tmp_path / "o.jsonl"
    _refused([*base, "--hyps", both, "--json", both], capsys, f"--hyps {both}: is also the file of --json")
    assert not both.exists()
    checkpoint = run_folder / "checkpoints" / "last" / "config.json"
    _refused([*base, "--json", checkpoint], capsys, f"--json {checkpoint}: is inside the model")
    config = run_folder / "config.yaml"  # beside the checkpoints: training's files are not reports
    _refused([*base, "--hyps", config], capsys, f"--hyps {config}: exists and is not a hypotheses file")
    assert config.read_text() == "task: finetune\n"


def test_evaluate_run_again_replaces_its_own_report_and_hypotheses_but_no_other_file(run_folder, tmp_path, capsys):
    manifest = _manifest(tmp_path)
    report, hyps = tmp_path / "report.json", tmp_path / "hyps.jsonl"
    argv = ["evaluate", "--model", str(run_folder), "--manifest", str(manifest), "--json", str(report),
            "--hyps", str(hyps), "--no-progress"]
    assert main(argv) == 0 and main(argv) == 0
    assert json.loads(report.read_text())["total"]["utterances"] == 1
    assert json.loads(hyps.read_text())["id"] == "u0"
    capsys.readouterr()
    kept = report.read_text()
    _refused(argv[:-5] + ["--json", str(hyps), "--no-progress"], capsys,
             f"--json {hyps}: exists and is not a report of xlsr evaluate --json")
    _refused(argv[:-5] + ["--hyps", str(report), "--no-progress"], capsys,
             f"--hyps {report}: exists and is not a hypotheses file of xlsr evaluate --hyps")
    assert report.read_text() == kept
