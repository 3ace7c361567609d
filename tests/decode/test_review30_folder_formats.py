"""What `xlsr transcribe FOLDER` takes from a folder of recordings: every format the audio loader reads (NIST SPHERE,
CAF, Wave64, RF64 among them), and a recording it cannot read (a phone's .m4a) listed as a failure naming it rather
than passed over in silence."""

import numpy as np
import soundfile as sf

from xlsr.data.audio import load_audio
from xlsr.decode.transcribe import find_audio


def test_every_format_the_loader_reads_is_found_and_the_others_are_failures(tmp_path):
    x = (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32)
    readable = {"a.sph": "NIST", "b.caf": "CAF", "c.w64": "W64", "d.rf64": "RF64", "e.wav": "WAV"}
    for name, fmt in readable.items():
        sf.write(tmp_path / name, x, 16000, format=fmt, subtype="PCM_16")
        assert load_audio(tmp_path / name).shape == (1600,)  # the loader reads it
    (tmp_path / "voice memo.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "call.AMR").write_bytes(b"#!AMR\n")
    (tmp_path / "notes.txt").write_text("not a recording")

    files, failures = find_audio([tmp_path])

    assert [f.name for f in files] == sorted(readable)
    assert [f.audio for f in failures] == [str(tmp_path / "sub" / "call.AMR"), str(tmp_path / "voice memo.m4a")]
    assert failures[1].error.startswith(f"{tmp_path / 'voice memo.m4a'}: .m4a audio is not a format xlsr reads; "
                                        f"convert it first")
    assert all("\n" not in f.error for f in failures)


def test_a_folder_of_unreadable_recordings_lists_each_not_an_empty_folder(tmp_path):
    (tmp_path / "a.m4a").write_bytes(b"x")
    (tmp_path / "b.wma").write_bytes(b"x")
    files, failures = find_audio([tmp_path])
    assert files == [] and [f.audio for f in failures] == [str(tmp_path / "a.m4a"), str(tmp_path / "b.wma")]


def test_a_manifest_given_as_audio_is_named_as_one(tmp_path):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text('{"audio": "a.wav", "num_samples": 16000, "lang": "en"}\n')
    files, failures = find_audio([manifest])
    assert files == [] and [f.error for f in failures] == [
        f"{manifest}: a manifest, not audio: give its recordings (files or folders), or score them with "
        f"`xlsr evaluate --manifest {manifest}`"]
