"""Which files `xlsr transcribe` finds and accepts, the order its failures are listed in, where it writes, and
the labels a model is loaded with."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from decode_fixtures import tiny_ctc_checkpoint

from xlsr.decode.transcribe import find_audio, load_ctc_model, transcribe_files, write_jsonl

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_ctc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-ctc", VOCAB)


def _noise(path: Path, samples: int) -> Path:
    sf.write(path, 0.1 * np.random.default_rng(samples).standard_normal(samples).astype(np.float32), 16000)
    return path


def test_audio_files_with_upper_case_suffixes_are_found_in_folders(tmp_path):
    # recorders and Windows tools often name files NAME.WAV
    for name in ("a.WAV", "b.Flac", "c.wav"):
        _noise(tmp_path / name, 800)
    (tmp_path / "notes.TXT").write_text("not audio")
    files, failures = find_audio([tmp_path])
    assert [f.name for f in files] == ["a.WAV", "b.Flac", "c.wav"] and not failures


def test_a_file_of_exactly_one_frame_is_transcribed_and_a_sample_less_is_a_failure(tiny_ckpt, tmp_path):
    ctc = load_ctc_model(tiny_ckpt)
    need = ctc.model.config.receptive_field  # 400 samples: one frame
    one = _noise(tmp_path / "one.wav", need)
    less = _noise(tmp_path / "less.wav", need - 1)
    results, failures = transcribe_files(ctc, [one, less], show_progress=False)
    assert [Path(r.audio).name for r in results] == ["one.wav"]
    assert [Path(f.audio).name for f in failures] == ["less.wav"] and "shorter than one frame" in failures[0].error


def test_failures_are_listed_in_input_order(tiny_ckpt, tmp_path):
    # an unreadable file fails when the files are sized, a too short one when it is loaded (shortest first)
    ctc = load_ctc_model(tiny_ckpt)
    short = _noise(tmp_path / "short.wav", 100)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....not audio at all")
    good = _noise(tmp_path / "good.wav", 4000)
    for files in ([short, good, broken], [broken, good, short]):
        results, failures = transcribe_files(ctc, files, show_progress=False)
        assert [Path(f.audio) for f in failures] == [f for f in files if f != good]
        assert [Path(r.audio) for r in results] == [good]


def test_the_labels_asked_for_override_the_checkpoints(tiny_ckpt):
    assert load_ctc_model(tiny_ckpt).vocab.kind == "phones"  # as the checkpoint says
    assert load_ctc_model(tiny_ckpt, labels="chars").vocab.kind == "chars"


def test_jsonl_output_in_a_folder_not_made_yet(tmp_path):
    out = tmp_path / "new" / "deeper" / "hyps.jsonl"  # as `xlsr evaluate --hyps` may be given
    write_jsonl(out, [{"id": "u1", "hyp": "a b"}])
    assert out.read_text() == '{"id": "u1", "hyp": "a b"}\n'
