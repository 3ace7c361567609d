"""What several decoding tests share: logits built frame by frame, the best path's score, a two-word LM and lexicon,
a random-weight tiny CTC checkpoint, and the mark of tests that need KenLM's tools."""

import math

import pytest
import torch

from xlsr.decode.lm import find_kenlm_tool
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC


def frames(vocab, spec):
    """Logits from a frame list: a token name (sure), or a dict {token: probability}, the rest to the blank."""
    logits = torch.full((len(spec), len(vocab)), -20.0)
    for t, frame in enumerate(spec):
        probs = {frame: 1.0} if isinstance(frame, str) else frame
        rest = 1.0 - sum(probs.values())
        for tok, p in probs.items():
            logits[t, vocab.index(tok)] = math.log(p)
        if rest > 0:  # what is left goes to the blank
            logits[t, vocab.blank_id] = math.log(rest)
    return logits[None]


def tiny_ctc_checkpoint(where, vocab, seed: int = 0):
    """A random-weight `tiny` CTC model over phone labels `vocab` (weights drawn with `seed`), saved at `where`."""
    torch.manual_seed(seed)
    return save_checkpoint(where, Wav2Vec2ForCTC(Wav2Vec2Config.preset("tiny"), len(vocab)), vocab=vocab,
                           metadata={"labels": "phones"})


def best_path_score(logits):
    return float(logits[0].log_softmax(-1).max(-1).values.sum())


# a word LM over the words a, b, ab, ba and their phone spellings
AB_WORD_ARPA = """\\data\\
ngram 1=7
ngram 2=4

\\1-grams:
-1.5\t<unk>\t0
-99\t<s>\t-0.2
-0.9\t</s>\t0
-0.6\ta\t-0.2
-0.8\tab\t-0.3
-1.1\tba\t-0.1
-0.7\tb\t-0.4

\\2-grams:
-0.2\t<s> ab
-0.3\tab ba
-0.4\tba </s>
-0.1\ta b

\\end\\
"""

# a units LM over the vocabulary's phones a, i, u (lexicon-free decoding)
UNITS_ARPA = """\\data\\
ngram 1=6
ngram 2=1

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t0
-1.0\t</s>\t0
{a}\ta\t0
-0.5\ti\t0
-0.5\tu\t0

\\2-grams:
-0.1\ta i

\\end\\
"""


def units_arpa(a: float = -0.5) -> str:
    """A units LM over the phones a, i, u (lexicon-free decoding); `a`: the log10 probability of "a" (another
    value: another LM under the same name, as `xlsr lm build` run again writes)."""
    return UNITS_ARPA.format(a=a)


PHONE_LEXICON = {"a": ["a"], "b": ["b"], "ab": ["a", "b"], "ba": ["b", "a"]}


def _have_lmplz():
    try:
        find_kenlm_tool("lmplz")
        find_kenlm_tool("build_binary")
        return True
    except XlsrError:
        return False


needs_kenlm = pytest.mark.skipif(not _have_lmplz(), reason="KenLM lmplz/build_binary not built "
                                 "(bash scripts/build_kenlm.sh)")
