"""A file that is no manifest given as one (an audio file, a folder's notes) is named in one line: binary data
before any index of its "lines" is built beside it (index_cache.open_manifest), and by `xlsr data check` a text
none of whose lines is an utterance."""

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli.main import main
from xlsr.data.index_cache import open_manifest
from xlsr.errors import ManifestError


def test_an_audio_file_given_as_a_manifest_is_refused_and_nothing_is_written_beside_it(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(ManifestError, match=rf"^{wav}: not a JSONL manifest \(it holds NUL bytes: audio, an archive, "
                                            rf"or text in UTF-16\?\)$"):
        open_manifest(wav, max_bad_share=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_data_check_of_a_text_that_holds_no_utterance_is_one_error(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("first thoughts\nsecond thoughts\n")
    assert main(["data", "check", "--manifest", str(notes), "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"xlsr: error: {notes}: none of its 2 line(s) is an utterance: not a JSONL manifest?")
    assert not (tmp_path / "r.jsonl").exists()
