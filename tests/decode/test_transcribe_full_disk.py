"""`xlsr transcribe` whose final OUT cannot be written (a full disk): one line naming OUT and where the results
are kept, and the same command writes OUT from them once there is room."""

import errno
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_full_disk_at_the_final_out_says_where_the_results_stay(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "ckpt", Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), len(VOCAB)),
                            vocab=VOCAB, metadata={"labels": "phones"})
    rng = np.random.default_rng(0)
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_utterance(no_repeats(3, rng), rng), 16000)
    out = tmp_path / "o.jsonl"
    real = Path.open

    class NoRoom:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):  # fails as write() does on a full disk, naming no file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full(self, mode="r", *args, **kwargs):
        file = real(self, mode, *args, **kwargs)
        return NoRoom(file) if self.name.startswith(f".{out.name}.") and "w" in mode else file  # OUT's temporary

    command = ["transcribe", "--model", str(model), str(wav), "--out", str(out), "--no-progress"]
    monkeypatch.setattr(Path, "open", full)
    assert main(command) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"xlsr: error: {out}: no space left on device; the 1 result(s) stay in {out}.partial: the same "
                    f"command, once that is mended, writes {out} from them")
    monkeypatch.undo()
    assert main(command) == 0  # room again
    assert [json.loads(line)["audio"] for line in out.read_text().splitlines()] == [str(wav)]
    assert not Path(f"{out}.partial").exists()
