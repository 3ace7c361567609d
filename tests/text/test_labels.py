"""CTC labels: the field per label kind, the vocabulary over several manifests, the utterance filter."""

import numpy as np
import pytest

from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError
from xlsr.model.config import cnn_frames, standard_conv_layers
from xlsr.text.labels import build_vocabulary, ctc_min_frames, filter_utterances, label_of, learnable


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


def _learnable_one_by_one(utts, vocab, labels, num_frames):
    """The filter as it was: an Utterance and a num_frames call per utterance (the reference)."""
    keep, dropped = [], {"empty": [], "long": []}
    for u in utts:
        ids = vocab.encode(label_of(u, labels)) if label_of(u, labels) else []
        reason = "empty" if not ids else "long" if ctc_min_frames(ids) > num_frames(u.num_samples) else None
        if reason:
            dropped[reason].append(u.id or u.audio)
        keep.append(reason is None)
    return keep, dropped


def test_filter_over_an_index_keeps_what_the_per_utterance_filter_keeps(tmp_path):
    rng = np.random.default_rng(0)
    words = ["a", "b", "a a", "c b a", "a a a a b b", "", " ", None]
    utts = [Utterance(audio=str(tmp_path / f"u{i}.flac"), num_samples=int(rng.choice([400, 720, 1040, 1360, 3000])),
                      lang="xx", phones=words[int(rng.integers(len(words)))], id="" if i % 9 == 0 else f"u{i}")
            for i in range(300)]
    write_manifest(tmp_path / "xx" / "train.jsonl", utts[:200])
    write_manifest(tmp_path / "yy" / "train.jsonl", utts[200:])
    index = UtteranceIndex.concat([open_manifest(tmp_path / "yy" / "train.jsonl"),
                                   open_manifest(tmp_path / "xx" / "train.jsonl")]).subset(rng.permutation(300)[:250])
    vocab = build_vocabulary({"m": index}, "phones")
    conv = [(8, 40, 20), (8, 3, 2), (8, 2, 2)]  # 400 samples: 4 frames, 3000: 37
    calls = []

    def frames(n):
        calls.append(n)
        return cnn_frames(n, conv)

    keep, report = learnable(index, vocab, "phones", frames)
    ref_keep, ref_dropped = _learnable_one_by_one(list(index), vocab, "phones", lambda n: cnn_frames(n, conv))
    assert keep.tolist() == ref_keep and 0 < sum(ref_keep) < len(ref_keep)
    assert report.empty_label == ref_dropped["empty"] and report.label_too_long == ref_dropped["long"]
    assert report.label_too_long and report.total == 250
    assert sorted(calls) == sorted(set(index.num_samples.tolist()))  # once per distinct length
    kept, _ = filter_utterances(list(index), vocab, "phones", lambda n: cnn_frames(n, standard_conv_layers()))
    ref_keep, _ = _learnable_one_by_one(list(index), vocab, "phones", lambda n: cnn_frames(n, standard_conv_layers()))
    assert kept == [u for u, k in zip(index, ref_keep) if k]


def test_a_reserved_token_written_in_a_label_is_found():
    from xlsr.text.labels import reserved_symbol

    utts = [utt("u1", 100, phones="a i", text="a <b"), utt("u2", 100, phones="a<blank> i"),
            utt("u3", 100, phones="a <unk> i <blank>", text="<unk>")]
    assert reserved_symbol(utts, "phones") == (2, "<unk>")  # a whole symbol only, the first one of the first label
    assert reserved_symbol(utts[:2], "phones") is None
    assert reserved_symbol(utts, "chars") is None  # characters: '<', 'u', ... are ordinary symbols
