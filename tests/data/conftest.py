"""A tiny synthesized corpus shared by the data tests (three languages, a few short utterances)."""

import pytest

from xlsr.data.synth import synthesize_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize_corpus(out, ["es", "de", "zh"], 6, seed=3, workers=1, speakers_per_lang=3,
                                words_per_utt=(2, 4), show_progress=False)
    return out, summary
