"""espeak-ng speech corpus: languages table, text, pseudo-speakers, phones, corpus synthesis."""

from xlsr.data.synth.corpus import SynthSummary, synthesize_corpus
from xlsr.data.synth.languages import LANGUAGES, Language, get_language

__all__ = ["LANGUAGES", "Language", "SynthSummary", "get_language", "synthesize_corpus"]
