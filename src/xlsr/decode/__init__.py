"""CTC decoding: greedy, beam search with KenLM (flashlight-text), n-gram LM building, long audio.

Names are re-exported lazily so that importing `xlsr.decode.lm` (the CLI) does not load torch.
"""

import importlib

_EXPORTS = {
    "Hypothesis": "xlsr.decode.hypothesis",
    "FRAME_STRIDE_S": "xlsr.rates",
    "greedy_decode": "xlsr.decode.greedy",
    "ctc_collapse": "xlsr.model.ctc",
    "BeamSearchConfig": "xlsr.decode.beam",
    "BeamSearchDecoder": "xlsr.decode.beam",
    "beam_search_decode": "xlsr.decode.beam",
    "decoder_for_lm": "xlsr.decode.beam",
    "read_lexicon": "xlsr.decode.beam",
    "build_lm": "xlsr.decode.lm",
    "find_kenlm_tool": "xlsr.decode.lm",
    "read_lm_info": "xlsr.decode.lm",
    "chunked_logits": "xlsr.decode.chunking",
    "plan_windows": "xlsr.decode.chunking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xlsr.decode' has no attribute {name!r}")
