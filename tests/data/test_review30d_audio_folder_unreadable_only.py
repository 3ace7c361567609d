"""`xlsr data import folder` without --transcripts, given a folder whose recordings are all in formats xlsr does not
read (a phone's .m4a), names them and the conversion instead of saying the folder holds no audio."""

import pytest

from xlsr.data.importers import import_audio_folder
from xlsr.errors import XlsrError


def test_a_folder_of_m4a_recordings_is_said_to_hold_them(tmp_path):
    src = tmp_path / "phone"
    (src / "day1").mkdir(parents=True)
    for name in ("day1/a.m4a", "b.M4A"):
        (src / name).write_bytes(b"\0\0\0\x18ftypM4A ")
    with pytest.raises(XlsrError) as exc:
        import_audio_folder(src, tmp_path / "corpus", lang="en")
    message = str(exc.value)
    assert "\n" not in message
    assert message.endswith(f"; 2 in formats xlsr does not read (first: {src / 'b.M4A'}: .m4a audio is not a format "
                            f"xlsr reads; convert it first (e.g. ffmpeg -i IN -ac 1 -ar 16000 OUT.flac))")
    assert not (tmp_path / "corpus").exists()
