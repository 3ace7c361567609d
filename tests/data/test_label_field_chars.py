"""encode_labels reads the manifest field its label_field names: `chars` and `text` the transcript, `phones` the phones."""

from data_fixtures import PhoneVocab

from xlsr.data.label_ids import encode_labels
from xlsr.data.manifest import Utterance
from xlsr.data.utterance_index import as_index


class CharVocab:
    """Characters as tokens: blank 0, <unk> 1, then a-z and the space."""

    tokens = ["<blank>", "<unk>", " ", *"abcdefghijklmnopqrstuvwxyz"]

    def encode(self, label):
        return [self.tokens.index(c) if c in self.tokens else 1 for c in label]


def test_chars_and_text_encode_the_transcript_and_phones_the_phones():
    utts = as_index([Utterance("/nowhere/a.wav", 1000, "it", text="ciao", phones="tʃ a o", id="u0"),
                     Utterance("/nowhere/b.wav", 2000, "it", text="si", phones="s i", id="u1")])
    vocab = CharVocab()
    for field in ("chars", "text"):
        ids = encode_labels(utts, vocab, field, oov="unk")
        assert [ids[i].tolist() for i in range(len(ids))] == [vocab.encode("ciao"), vocab.encode("si")], field
    phones = PhoneVocab(["tʃ a o", "s i"])
    ids = encode_labels(utts, phones, "phones")
    assert [ids[i].tolist() for i in range(len(ids))] == [phones.encode("tʃ a o"), phones.encode("s i")]
