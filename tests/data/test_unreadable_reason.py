"""An unreadable file's line names it once, with libsndfile's reason alone: not the reason prefixed by the path's
bytes repr ("Error opening b'rec/x.wav': ...")."""

import pytest

from xlsr.data.audio import load_audio
from xlsr.errors import AudioError


def test_the_reason_is_libsndfiles_alone(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all, but a longer text than any header\n" * 4)
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert str(exc.value) == f"{path}: not a readable audio file (Format not recognised.)"
