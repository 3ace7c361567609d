"""A tiny synthesized corpus shared by the data tests (three languages, a few short utterances)."""

import pytest

from xlsr.data.synth import synthesize_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize_corpus(out, ["es", "de", "zh"], 6, seed=3, workers=1, speakers_per_lang=3,
                                words_per_utt=(2, 4), show_progress=False)
    return out, summary


class PhoneVocab:
    """A minimal stand-in for text.vocab.Vocabulary: blank 0, <unk> 1, then the phones seen."""

    def __init__(self, labels):
        self.tokens = ["<blank>", "<unk>"] + sorted({p for label in labels for p in label.split()})
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, label):
        return [self.index.get(p, 1) for p in label.split()]

    def oov_report(self, labels):
        report = {}
        for label in labels:
            for p in label.split():
                if p not in self.index:
                    report[p] = report.get(p, 0) + 1
        return report
