"""Helpers shared by the data tests (a module of its own: `conftest` is not importable by name)."""


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
