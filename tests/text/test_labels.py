"""CTC labels: the field per label kind, the vocabulary over several manifests, the utterance filter."""

import pytest

from xlsr.data.manifest import Utterance
from xlsr.errors import XlsrError
from xlsr.text.labels import build_vocabulary, ctc_min_frames, filter_utterances, label_of


def utt(uid: str, samples: int, phones: str | None = None, text: str | None = None) -> Utterance:
    return Utterance(audio=f"/a/{uid}.wav", num_samples=samples, lang="xx", phones=phones, text=text, id=uid)


def test_label_field_per_kind_and_union_vocabulary():
    a = [utt("a1", 100, phones=" a b ", text="hi there")]
    b = [utt("b1", 100, phones="c"), utt("b2", 100)]
    assert label_of(a[0], "phones") == "a b" and label_of(a[0], "chars") == "hi there"
    assert label_of(b[1], "phones") == ""
    assert build_vocabulary({"a.jsonl": a, "b.jsonl": b}, "phones").tokens == ["<blank>", "<unk>", "a", "b", "c"]
    with pytest.raises(XlsrError, match=r"b.jsonl: no utterance has a 'text' label \(--labels chars\)"):
        build_vocabulary({"b.jsonl": b}, "chars")


def test_ctc_needs_a_blank_between_repeats():
    assert ctc_min_frames([2, 2, 3]) == 4 and ctc_min_frames([2, 3, 2]) == 3 and ctc_min_frames([]) == 0


def test_filter_drops_empty_and_too_long_labels_through_the_frame_function():
    # "a a b" needs 4 frames (a blank between the two a's)
    utts = [utt("ok", 200, phones="a a b"), utt("long", 150, phones="a a b"), utt("empty", 900, phones=" ")]
    vocab = build_vocabulary({"m": utts}, "phones")
    kept, report = filter_utterances(utts, vocab, "phones", num_frames=lambda samples: samples // 100)
    assert kept == [] and report.label_too_long == ["ok", "long"] and report.empty_label == ["empty"]
    kept, report = filter_utterances(utts, vocab, "phones", num_frames=lambda samples: samples // 50)
    assert [u.id for u in kept] == ["ok"] and report.label_too_long == ["long"]
    assert report.to_dict() == {"total": 3, "kept": 1, "empty_label": 1, "label_too_long": 1}
    assert report.summary("m.jsonl") == ("m.jsonl: skipped 1 with an empty label (e.g. empty) and 1 whose label "
                                         "is longer than their frames (e.g. long); 1 of 3 kept")
