"""`xlsr transcribe` over a million files: results go to OUT.partial and stay there, not in memory; OUT is copied
from their lines in input order."""

import gc
import json
import sys
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.decode.partial_results import PartialResults
from xlsr.decode.transcribe import load_ctc_model, transcribe_files
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

SETTINGS = {"model": "A", "beam": None}
VOCAB = ["<blank>", "<unk>", "a", "i", "u"]


def _result(i: int) -> dict:
    """A result with timestamps, as --timestamps writes for a 2 s utterance: some 20 kB in Python."""
    spans = [{"token": "a", "start": round(0.02 * k, 2), "end": round(0.02 * k + 0.02, 2)} for k in range(100)]
    return {"audio": f"/corpus/speaker{i // 10}/utterance{i}.wav", "text": "a" * 100, "timestamps": spans}


def _held_while(make) -> tuple[int, object]:
    """Bytes of Python objects still held after `make()` returns, and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, made
    finally:
        tracemalloc.stop()


def test_kept_results_are_on_disk_and_in_memory_only_their_place(tmp_path):
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, SETTINGS)

    def append_all():
        for i in range(200):
            kept.append(_result(i))

    held, _ = _held_while(append_all)
    assert held < 200 * 1000  # the file names and where their lines lie, not 200 results of ~20 kB
    kept.close()
    held, again = _held_while(lambda: PartialResults(out, SETTINGS))  # a resumed job reads none of them either
    assert held < 200 * 1000 and len(again.done()) == 200
    order = [_result(i)["audio"] for i in reversed(range(200))] + ["/corpus/failed.wav"]
    assert again.finish(order) == order[:-1]
    assert [json.loads(line) for line in out.read_text().splitlines()] == [_result(i) for i in reversed(range(200))]


def test_a_result_whose_text_holds_a_unicode_line_separator_is_found_again(tmp_path):
    out = tmp_path / "o.jsonl"
    kept = PartialResults(out, SETTINGS)
    odd = {"audio": "a.wav", "text": "one\u2028two\x85three"}  # json.dumps leaves them as they are: no line ends
    kept.append(odd)
    kept.append({"audio": "b.wav", "text": "b"})
    kept.close()
    again = PartialResults(out, SETTINGS)
    assert again.done() == {"a.wav", "b.wav"}  # not a.wav cut in three lines that are no JSON, done again
    assert again.finish(["a.wav", "b.wav"]) == ["a.wav", "b.wav"]
    assert json.loads(out.read_bytes().split(b"\n")[0]) == odd


@pytest.mark.usefixtures("one_thread")
def test_results_handed_to_on_result_are_not_also_held(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "ckpt", Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), len(VOCAB)),
                           vocab=VOCAB, metadata={"labels": "phones"})
    rng = np.random.default_rng(0)
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], tone_utterance(no_repeats(3 + i, rng), rng), 16000)
    handed = []
    results, failures = transcribe_files(load_ctc_model(ckpt), files, show_progress=False,
                                         on_result=lambda r: handed.append((r.audio, weakref.ref(r))))
    assert sorted(audio for audio, _ in handed) == sorted(str(f) for f in files) and failures == []
    gc.collect()
    assert [audio for audio, ref in handed if ref() is not None] == []  # the caller kept them (on disk): not held
    assert results == []
