"""Evaluation's pairing of hypotheses and references (normalized alike, found under the path transcription gives
each file, symbols outside the vocabulary counted only for the model's own labels) and its transcription settings."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace as Utt

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.decode.evaluate import References, evaluate, read_manifests
from xlsr.decode.transcribe import load_ctc_model, transcribe_files
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC
from xlsr.text.metrics import EditCounts
from xlsr.text.vocab import Vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import no_repeats, tone_utterance  # noqa: E402

VOCAB = ["<blank>", "<unk>", "a", "i", "u"]


def test_normalize_text_applies_to_the_hypothesis_as_to_the_reference():
    # a model whose vocabulary has capitals and punctuation (many released English ones: "HELLO WORLD'S")
    utts = [Utt(id="1", audio="/x/1.wav", lang="en", text="hello, world's end", phones=None)]
    refs = References("m", utts, "chars", scored=[0], missing=[], oov={}, normalize=True)
    report = refs.score({"/x/1.wav": "HELLO WORLD'S END."}, [])
    assert report.hypotheses == [{"id": "1", "lang": "en", "ref": "hello world's end", "hyp": "hello world's end"}]
    assert report.total["char"].errors == 0 and report.total["word"] == EditCounts(0, 0, 0, 3)
    raw = References("m", utts, "chars", scored=[0], missing=[], oov={}, normalize=False)
    assert raw.score({"/x/1.wav": "HELLO WORLD'S END."}, []).total["word"].errors == 3


def test_an_utterance_is_scored_under_the_path_transcription_gives_its_file():
    # transcribe_files names each result str(Path(audio)): "./a.wav" is "a.wav", "/x//b.wav" is "/x/b.wav"
    utts = [Utt(id="a", audio="./a.wav", lang="xx", phones="a b", text=None),
            Utt(id="b", audio="/x//b.wav", lang="xx", phones="a", text=None)]
    refs = References("m", utts, "phones", scored=[0, 1], missing=[], oov={}, normalize=False)
    assert [str(p) for p in refs.audio()] == ["a.wav", "/x/b.wav"]
    report = refs.score({"a.wav": "a b", "/x/b.wav": "b"}, [])
    assert report.utterances == {"xx": 2} and report.total["phone"] == EditCounts(1, 0, 0, 3)


def test_labels_of_another_kind_than_the_model_list_no_symbols_outside_its_vocabulary():
    # a phone model scored on character labels (--labels chars): its vocabulary says nothing of the text's symbols
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b"], kind="phones")
    utts = [Utt(id="1", audio="/x/1.wav", lang="xx", phones="a b", text="a cab")]
    assert References.of(Utt(vocab=vocab, source="model"), utts, "chars", False).oov == {}
    assert References.of(Utt(vocab=vocab, source="model"), utts, "phones", False).oov == {}
    utts[0].phones = "a c"
    assert References.of(Utt(vocab=vocab, source="model"), utts, "phones", False).oov == {"c": 1}


@pytest.mark.usefixtures("one_thread")
def test_the_chunk_stride_given_is_the_one_long_files_are_transcribed_with(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny-ctc", Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), len(VOCAB)),
                           vocab=VOCAB, metadata={"labels": "phones"})
    ctc = load_ctc_model(ckpt)
    rng = np.random.default_rng(0)
    phones = no_repeats(15, rng)  # ~3 s: three windows of 1 s
    wav = tmp_path / "u.wav"
    sf.write(wav, tone_utterance(phones, rng), 16000)
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text(json.dumps({"id": "u", "audio": wav.name, "num_samples": sf.info(wav).frames, "lang": "xx",
                                    "phones": " ".join(phones)}) + "\n")
    utts = read_manifests([manifest])
    (alone,), _ = transcribe_files(ctc, [wav], chunk_seconds=1.0, chunk_stride=0.0, show_progress=False)
    hyps = [evaluate(ctc, utts, chunk_seconds=1.0, chunk_stride=stride, show_progress=False).hypotheses[0]["hyp"]
            for stride in (0.0, 0.25)]
    assert hyps[0] == alone.hypothesis.text and hyps[1] != hyps[0]  # the stride matters on this file


def test_the_hypotheses_file_holds_the_texts_as_scored_in_nfc():
    # a reference typed decomposed (e + combining acute), a model that writes its accents decomposed: equal as scored,
    # and the file says so, so that a scorer of its own (jiwer) counts no error either
    decomposed = "cafe\u0301 ole\u0301"
    utts = [Utt(id="1", audio="/x/1.wav", lang="fr", text=decomposed, phones=None)]
    refs = References("m", utts, "chars", scored=[0], missing=[], oov={}, normalize=False)
    report = refs.score({"/x/1.wav": "café ole\u0301"}, [])
    assert report.total["char"].errors == 0
    assert report.hypotheses == [{"id": "1", "lang": "fr", "ref": "café olé", "hyp": "café olé"}]
    assert all(len(h["ref"]) == 8 for h in report.hypotheses)  # composed: one code point per accented letter
