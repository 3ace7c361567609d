"""A path the system cannot even ask about (a name too long here; EIO on a flaky mount, EACCES in a folder one may
not enter) is an AudioError, the one-line answer of every bad file, for each way xlsr opens audio."""

import pytest

from xlsr.data.audio import audio_blocks, audio_num_samples, load_audio
from xlsr.errors import AudioError


@pytest.mark.parametrize("read", [load_audio, audio_num_samples, lambda p: audio_blocks(p, 1.0)])
def test_an_os_error_of_asking_for_the_file_is_an_audio_error(tmp_path, read):
    path = tmp_path / ("x" * 300 + ".wav")  # stat() fails with ENAMETOOLONG, which Path.is_file passes on
    with pytest.raises(AudioError, match=r"x{300}\.wav: not a readable audio file \(File name too long\)"):
        read(path)
