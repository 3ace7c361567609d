"""A stopped `xlsr evaluate` resumes as `xlsr transcribe` does: its transcripts are kept in the .partial of --hyps
(else --json) as they are made, and the same command transcribes only the rest, then writes what an uninterrupted
run writes. A rerun whose transcripts would be made otherwise is refused in one line and the file left as it was;
scoring options may change (the kept transcripts are scored anew); without --hyps or --json nothing is kept."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint, units_arpa

from xlsr.cli.main import main
from xlsr.decode import transcribe as transcribe_module
from xlsr.decode.evaluate import evaluate, read_manifests
from xlsr.decode.partial_results import PartialResults
from xlsr.decode.transcribe import load_ctc_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
RECORDINGS = 4
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_ctc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", VOCAB)


def _corpus(folder: Path, extra: list[dict] = ()) -> Path:
    """RECORDINGS tone recordings in two languages, the first listed twice (another id, the same audio), + `extra`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(RECORDINGS):
        rng = np.random.default_rng(k)
        phones = no_repeats(2 + k % 3, rng)
        audio = tone_utterance(phones, rng)
        sf.write(folder / f"u{k}.wav", audio, 16000)
        rows.append({"id": f"u{k}", "audio": f"u{k}.wav", "num_samples": len(audio), "lang": "xx" if k % 2 else "yy",
                     "phones": " ".join(phones), "text": "".join(phones)})
    rows.append({**rows[0], "id": "again"})
    manifest = folder / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *extra]))
    read_manifests([manifest])  # its index built now: every run reads it, none writes it
    return manifest


class CountedModel:
    """_decode_batch counting the recordings the model runs on, and raising KeyboardInterrupt (Ctrl-C) once
    `stop_after` of them are done."""

    def __init__(self, monkeypatch):
        self.rows, self.stop_after = 0, None
        real = transcribe_module._decode_batch

        def counted(ctc, waves, decoder, timestamps):
            if self.stop_after is not None and self.rows >= self.stop_after:
                raise KeyboardInterrupt
            self.rows += len(waves)
            return real(ctc, waves, decoder, timestamps)

        monkeypatch.setattr(transcribe_module, "_decode_batch", counted)

    def reset(self, stop_after=None):
        self.rows, self.stop_after = 0, stop_after


def _args(ckpt: Path, manifest: Path, out: Path | None, *more: str) -> list[str]:
    outputs = ["--json", str(out / "report.json"), "--hyps", str(out / "hyps.jsonl")] if out else []
    # a batch per recording, decoded in this process: a stop falls between two recordings
    return ["evaluate", "--model", str(ckpt), "--manifest", str(manifest), *outputs, "--batch-seconds", "0.1",
            "--decode-workers", "0", "--no-progress", *more]


def _outputs(out: Path) -> tuple[dict, list[dict]]:
    return (json.loads((out / "report.json").read_text()),
            [json.loads(line) for line in (out / "hyps.jsonl").read_text().splitlines()])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_stopped_evaluation_resumes_and_writes_what_an_uninterrupted_one_writes(ckpt, tmp_path, monkeypatch,
                                                                                  capsys):
    manifest = _corpus(tmp_path / "data")
    model = CountedModel(monkeypatch)
    assert main(_args(ckpt, manifest, tmp_path / "whole")) == 0
    whole_table = capsys.readouterr().out
    assert model.rows == RECORDINGS  # the recording listed twice is transcribed once
    assert not (tmp_path / "whole" / "hyps.jsonl.partial").exists()  # all done: removed

    out = tmp_path / "run"
    args, partial = _args(ckpt, manifest, out), out / "hyps.jsonl.partial"
    model.reset(stop_after=2)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"xlsr: 2 of {RECORDINGS} recording(s) transcribed and kept in {partial}; the same command resumes" in err
    assert not (out / "report.json").exists() and not (out / "hyps.jsonl").exists()
    assert len(partial.read_text().splitlines()) == 1 + 2  # the settings line, then a line per transcript

    model.reset()
    assert main(args) == 0
    table, err = capsys.readouterr()
    assert model.rows == RECORDINGS - 2  # only the rest
    assert f"xlsr: resuming: 2 of {RECORDINGS} recording(s) already in {partial}" in err
    assert table == whole_table
    assert _outputs(out) == _outputs(tmp_path / "whole")
    assert not partial.exists()


def test_the_library_keeps_what_it_would_have_scored(ckpt, tmp_path):
    manifest = _corpus(tmp_path / "data")
    ctc, utts = load_ctc_model(ckpt), read_manifests([manifest])
    plain = evaluate(ctc, utts, show_progress=False)
    kept = PartialResults(tmp_path / "hyps.jsonl", {"model": "tiny"}, by_file=True)
    resumable = evaluate(ctc, utts, show_progress=False, kept=kept)
    assert resumable.to_dict() == plain.to_dict() and resumable.hypotheses == plain.hypotheses
    assert len(kept.path.read_text().splitlines()) == 1 + RECORDINGS


@pytest.fixture
def stopped(ckpt, tmp_path, monkeypatch, capsys):
    """An evaluation with an LM stopped after two recordings: its args, model counter and partial file."""
    manifest = _corpus(tmp_path / "data")
    lm = tmp_path / "units.arpa"
    lm.write_text(units_arpa())
    args = _args(ckpt, manifest, tmp_path / "run", "--lm", str(lm), "--beam", "4", "--lm-weight", "1")
    model = CountedModel(monkeypatch)
    model.reset(stop_after=2)
    assert main(args) == 130
    capsys.readouterr()
    model.reset()
    return args, model, tmp_path / "run" / "hyps.jsonl.partial"


def _refused(args: list[str], partial: Path, capsys) -> str:
    before = partial.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert partial.read_bytes() == before  # left as it was
    assert not (partial.parent / "report.json").exists()
    return err


def test_a_rerun_with_another_lm_weight_or_model_is_refused_and_the_kept_ones_left(stopped, tmp_path, capsys):
    args, model, partial = stopped
    other_weight = [*args[:-1], "2"]
    assert _refused(other_weight, partial, capsys) == (
        f"xlsr: error: {partial}: results of an earlier run with other settings (lm_weight); run that command "
        f"again to finish it, or delete the file to start over\n")
    other = tiny_ctc_checkpoint(tmp_path / "other-ctc", VOCAB, seed=1)
    other_model = [str(other) if a == args[args.index("--model") + 1] else a for a in args]
    assert "other settings (model, model_files)" in _refused(other_model, partial, capsys)
    assert model.rows == 0  # refused before any transcription
    assert main(args) == 0  # the same command finishes them
    assert model.rows == RECORDINGS - 2 and "resuming: 2 of" in capsys.readouterr().err


def test_scoring_options_may_change_between_the_stop_and_the_rerun(ckpt, tmp_path, monkeypatch, capsys):
    manifest = _corpus(tmp_path / "data")
    model = CountedModel(monkeypatch)
    scoring = ["--labels", "chars", "--normalize-text"]
    assert main(_args(ckpt, manifest, tmp_path / "whole", *scoring)) == 0
    whole_table = capsys.readouterr().out
    model.reset(stop_after=2)
    assert main(_args(ckpt, manifest, tmp_path / "run")) == 130  # stopped while scoring phones
    model.reset()
    assert main(_args(ckpt, manifest, tmp_path / "run", *scoring)) == 0
    table, err = capsys.readouterr()
    assert model.rows == RECORDINGS - 2 and "resuming: 2 of" in err
    assert table == whole_table and "CER" in table
    assert _outputs(tmp_path / "run") == _outputs(tmp_path / "whole")


def test_only_json_keeps_them_beside_the_report(ckpt, tmp_path, monkeypatch, capsys):
    manifest = _corpus(tmp_path / "data")
    model = CountedModel(monkeypatch)
    report = tmp_path / "out" / "report.json"
    args = [*_args(ckpt, manifest, None), "--json", str(report)]
    model.reset(stop_after=2)
    assert main(args) == 130
    assert report.with_name("report.json.partial").is_file()
    model.reset()
    assert main(args) == 0
    assert model.rows == RECORDINGS - 2 and "resuming: 2 of" in capsys.readouterr().err
    assert report.is_file() and not report.with_name("report.json.partial").exists()


def test_without_hyps_or_json_nothing_is_kept(ckpt, tmp_path, monkeypatch, capsys):
    manifest = _corpus(tmp_path / "data")
    before = _files(tmp_path)
    model = CountedModel(monkeypatch)
    model.reset(stop_after=2)
    assert main(_args(ckpt, manifest, None)) == 130
    assert _files(tmp_path) == before
    model.reset()
    assert main(_args(ckpt, manifest, None)) == 0
    # all of them again (the recording listed twice, twice: as before resuming was kept, nothing is looked up)
    assert model.rows == RECORDINGS + 1 and "resuming" not in capsys.readouterr().err
    assert _files(tmp_path) == before


def test_a_sweep_keeps_nothing(ckpt, tmp_path, monkeypatch):
    manifest = _corpus(tmp_path / "data")
    lm = tmp_path / "units.arpa"
    lm.write_text(units_arpa())
    before = _files(tmp_path)
    model = CountedModel(monkeypatch)
    model.reset(stop_after=2)
    args = _args(ckpt, manifest, tmp_path / "run", "--lm", str(lm), "--beam", "4", "--lm-weight", "0", "1")
    assert main(args) == 130
    assert _files(tmp_path) == before


def test_failed_recordings_keep_the_others_for_a_rerun_that_retries_only_them(ckpt, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "late.wav").write_bytes(b"")  # not audio (yet)
    manifest = _corpus(data, [{"id": "late", "audio": "late.wav", "num_samples": 8000, "lang": "xx", "phones": "a"}])
    model = CountedModel(monkeypatch)
    args, partial = _args(ckpt, manifest, tmp_path / "run"), tmp_path / "run" / "hyps.jsonl.partial"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "late.wav" in err and f"the other transcripts stay in {partial}" in err
    assert model.rows == RECORDINGS and partial.is_file()
    sf.write(data / "late.wav", tone_utterance(["a"], np.random.default_rng(9)), 16000)  # mended
    model.reset()
    assert main(args) == 0
    assert model.rows == 1 and f"resuming: {RECORDINGS} of {RECORDINGS + 1} recording(s)" in capsys.readouterr().err
    assert not partial.exists()
    assert "late" in [h["id"] for h in _outputs(tmp_path / "run")[1]]


def test_a_json_where_the_hyps_would_be_kept_is_refused(ckpt, tmp_path, capsys):
    manifest = _corpus(tmp_path / "data")
    before = _files(tmp_path)
    hyps = tmp_path / "hyps.jsonl"
    args = [*_args(ckpt, manifest, None), "--hyps", str(hyps), "--json", f"{hyps}.partial"]
    assert main(args) == 2
    assert capsys.readouterr().err == (f"xlsr: error: --hyps {hyps}: its transcripts would be kept in {hyps}.partial, "
                                       f"which is --json {hyps}.partial; give --hyps another file name\n")
    assert _files(tmp_path) == before
