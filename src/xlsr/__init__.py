"""xlsr: cross-lingual self-supervised speech representation learning (XLSR / wav2vec 2.0)."""

from xlsr.errors import XlsrError
from xlsr.version import __version__

__all__ = [
    "Wav2Vec2Config",
    "Wav2Vec2Model",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForCTC",
    "load_pretrained",
    "XlsrError",
    "__version__",
]


def __getattr__(name):
    # Lazy, so that `import xlsr` (and the CLI's --help) stays fast and torch loads only when needed.
    if name in ("Wav2Vec2Config", "Wav2Vec2Model", "Wav2Vec2ForPreTraining", "Wav2Vec2ForCTC"):
        from xlsr import model

        return getattr(model, name)
    if name == "load_pretrained":
        from xlsr.interop.load import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'xlsr' has no attribute {name!r}")
