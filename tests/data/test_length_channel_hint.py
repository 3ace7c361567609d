"""A manifest that lists a multi-channel file's frames x channels (a common manifest-maker slip) is told so, not that
its length was counted at another rate: the line asks the file's header on a length mismatch."""

import json

import numpy as np
import pytest
import soundfile as sf

from xlsr.data.audio import length_mismatch
from xlsr.data.batch_plan import BatchPlan
from xlsr.data.batching import _BatchDataset
from xlsr.data.check_audio import check_audio
from xlsr.data.manifest import Utterance
from xlsr.data.utterance_index import UtteranceIndex

CHANNELS_HINT = "num_samples counts samples of the mono mix at 16000 Hz)"


def _tone(path, rate: int, channels: int, seconds: float = 1.0) -> str:
    frames = int(rate * seconds)
    sf.write(path, 0.1 * np.sin(0.05 * np.arange(frames * channels)).reshape(frames, channels), rate)
    return str(path)


@pytest.mark.parametrize("rate, channels, listed, hint", [
    # a 16 kHz stereo second listed as 32000: two channels, not a count at 32 kHz
    (16000, 2, 32000, f" (its length times its 2 channels: {CHANNELS_HINT}"),
    (16000, 4, 64000, f" (its length times its 4 channels: {CHANNELS_HINT}"),
    # a 44.1 kHz stereo second listed as its frames x channels at its own rate
    (44100, 2, 88200, f" (its length at 44100 Hz times its 2 channels: {CHANNELS_HINT}"),
    # the stereo file's frames at its own rate, channels not counted: the rate hint, as before
    (44100, 2, 44100, " (its length at 44100 Hz: num_samples counts samples at 16000 Hz)"),
    # a 32 kHz stereo file's frames are its 16 kHz length twice over, as two channels would be: the frames, the
    # likelier slip, are said
    (32000, 2, 32000, " (its length at 32000 Hz: num_samples counts samples at 16000 Hz)"),
    (48000, 3, 48000, " (its length at 48000 Hz: num_samples counts samples at 16000 Hz)"),
    # a mono 16 kHz file listed twice over: nothing says channels, the rate reading stands
    (16000, 1, 32000, " (its length at 32000 Hz: num_samples counts samples at 16000 Hz)"),
])
def test_the_hint_follows_the_files_channels(tmp_path, rate, channels, listed, hint):
    path = _tone(tmp_path / "a.wav", rate, channels)
    assert length_mismatch(16000, listed, "a.wav", source=path) == f"a.wav: decoded 16000 samples, the manifest says " \
                                                                    f"{listed}{hint}"


def test_a_header_that_cannot_be_read_again_leaves_the_rate_guess(tmp_path):
    assert length_mismatch(16000, 32000, "gone.wav", source=tmp_path / "gone.wav").endswith(
        "(its length at 32000 Hz: num_samples counts samples at 16000 Hz)")


def test_training_and_the_data_check_name_the_channels(tmp_path):
    path = _tone(tmp_path / "stereo.wav", 16000, 2)
    # training's loader: the file is bad, and its line says why
    utts = UtteranceIndex.from_utterances([Utterance(audio=path, num_samples=32000, lang="es", id="s")])
    loaded = _BatchDataset(utts, pretrain=False, normalize=False)[BatchPlan(indices=(0,), seed=(0,))]
    assert loaded.batch is None
    assert loaded.bad == [(0, f"{path}: decoded 16000 samples, the manifest says 32000 (its length times its 2 "
                              f"channels: {CHANNELS_HINT}")]
    # `xlsr data check`: the same line in its report
    manifest = tmp_path / "es" / "train.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"id": "s", "audio": path, "num_samples": 32000, "lang": "es"}) + "\n")
    out = check_audio([manifest], tmp_path / "report.jsonl", workers=0, show_progress=False).out
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (record["kind"], record["message"]) == ("wrong_length", loaded.bad[0][1])
