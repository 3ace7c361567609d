"""α language sampling on a user's own folders (review s32): each language's share of the audio a run trains on is
its p_l = (n_l/N)^α / Σ (n_l: hours), measured on the planned batches, also where a folder holds recordings longer
than a batch's crop (`xlsr data import folder` keeps whole files)."""

import numpy as np
import pytest

from xlsr.data.batching import pretrain_loader
from xlsr.data.manifest import Utterance
from xlsr.data.sampling import LanguageSampler

SR = 16000


def _utts(spec: dict[str, tuple[int, float]]) -> list[Utterance]:
    """{lang: (count, seconds)}: utterances of that many seconds (no audio: batches are only planned)."""
    return [Utterance(f"/{lang}/{i}.wav", int(seconds * SR), lang, id=f"{lang}{i}")
            for lang, (count, seconds) in spec.items() for i in range(count)]


def _trained_share(loader, utts: list[Utterance], epochs: int) -> dict[str, float]:
    """Each language's share of the samples the planned batches feed the model: every member of a batch is cropped
    to the batch's shortest, at most max_sample_size (pretrain_loader's crop_batch)."""
    lengths = np.array([u.num_samples for u in utts])
    langs = np.array([u.lang for u in utts])
    fed = dict.fromkeys(sorted(set(langs)), 0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for plan in loader.plans():
            members = np.array(plan.indices)
            crop = min(int(lengths[members].min()), loader.dataset.max_sample_size)
            for lang in langs[members]:
                fed[lang] += crop
    total = sum(fed.values())
    return {lang: n / total for lang, n in fed.items()}


def _p(amounts: dict[str, float], alpha: float) -> dict[str, float]:
    """The spec's p_l (§6.3), written out here rather than taken from sampling.py."""
    total = sum(amounts.values())
    scores = {lang: (n / total) ** alpha for lang, n in amounts.items()}
    return {lang: s / sum(scores.values()) for lang, s in scores.items()}


@pytest.mark.parametrize("alpha", [0.5, 0.3, 1.0, 0.0])
def test_batches_follow_p_l_for_amounts_1_10_100(alpha):
    # 1, 10 and 100 utterances of 3 s: hours 1:10:100, and a language of a single utterance
    spec = {"a": (1, 3.0), "b": (10, 3.0), "c": (100, 3.0)}
    utts = _utts(spec)
    loader = pretrain_loader(utts, max_tokens=480_000, max_sample_size=250_000, alpha=alpha, seed=5,
                             epoch_size=6000)
    expected = _p({lang: n * s for lang, (n, s) in spec.items()}, alpha)
    assert loader.sampler.weights == pytest.approx(expected)  # the table the run prints
    share = _trained_share(loader, utts, epochs=2)
    for lang in spec:
        assert share[lang] == pytest.approx(expected[lang], abs=0.012), (lang, share)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_recordings_longer_than_the_crop_get_their_p_l_of_the_audio_trained_on(alpha):
    # an hour per language: 6 recordings of 10 minutes against 1200 clips of 3 s. A batch takes at most 15.6 s of a
    # recording; drawing the recordings as if all of each were trained on gave their language 1.6% of the audio
    # the model saw, where the table said 50%.
    utts = _utts({"ll": (6, 600.0), "ss": (1200, 3.0)})
    loader = pretrain_loader(utts, max_tokens=1_400_000, max_sample_size=250_000, alpha=alpha, seed=0)
    assert loader.sampler.weights == pytest.approx({"ll": 0.5, "ss": 0.5})
    share = _trained_share(loader, utts, epochs=3)
    assert share["ll"] == pytest.approx(0.5, abs=0.03), share


def test_draw_weights_count_each_utterance_up_to_the_crop():
    utts = _utts({"ll": (6, 600.0), "ss": (1200, 3.0)})
    # equal hours, so p = 1/2 each; a draw of ll gives 250000 samples (15.625 s), one of ss 3 s:
    # q_ll = (1/15.625) / (1/15.625 + 1/3)
    sampler = LanguageSampler(utts, alpha=0.5, seed=0, max_sample_size=250_000)
    assert sampler.draw_weights["ll"] == pytest.approx(3 / (3 + 15.625))
    # no cap: every draw gives the whole utterance, q_ll = (1/600) / (1/600 + 1/3)
    whole = LanguageSampler(utts, alpha=0.5, seed=0)
    assert whole.draw_weights["ll"] == pytest.approx(3 / (3 + 600))


def test_short_utterances_leave_the_denominator_and_one_language_is_all_of_it():
    # b's 1-s utterances are skipped (min_sample_size 2 s): its hours are those of its 4-s ones
    utts = _utts({"a": (10, 4.0), "b": (10, 4.0)}) + _utts({"b": (30, 1.0)})
    loader = pretrain_loader(utts, max_tokens=480_000, min_sample_size=32_000, alpha=0.5, seed=0)
    assert loader.sampler.hours == pytest.approx({"a": 40 / 3600, "b": 40 / 3600})
    assert loader.sampler.weights == pytest.approx({"a": 0.5, "b": 0.5})
    alone = pretrain_loader(_utts({"a": (3, 4.0)}), max_tokens=480_000, alpha=0.3, seed=0, epoch_size=10)
    assert alone.sampler.weights == {"a": 1.0}
    assert sum(len(p.indices) for p in alone.plans()) == 10


def test_a_run_an_earlier_xlsr_started_resumes_with_the_draws_it_started_with():
    # its loader state has no "draws": its epochs were drawn by whole lengths, and so are the rest of them
    utts = _utts({"ll": (6, 600.0), "ss": (1200, 3.0)})
    kw = dict(max_tokens=480_000, max_sample_size=250_000, alpha=0.5, seed=5, epoch_size=400)
    state = pretrain_loader(utts, **kw).state_dict()
    assert state["draws"] == "cropped"
    resumed_new, resumed_old = pretrain_loader(utts, **kw), pretrain_loader(utts, **kw)
    resumed_new.load_state_dict(state)
    resumed_old.load_state_dict({k: v for k, v in state.items() if k != "draws"})
    whole = LanguageSampler(pretrain_loader(utts, **kw).dataset.utts, alpha=0.5, seed=5, epoch_size=400)
    assert resumed_old.sampler.draw_weights == pytest.approx(whole.draw_weights)
    assert resumed_new.sampler.draw_weights != pytest.approx(whole.draw_weights)
    assert resumed_old.sampler.weights == resumed_new.sampler.weights  # p_l itself is the same either way


def test_a_run_an_earlier_xlsr_started_keeps_its_draws_through_every_later_resume():
    # resumed once by this xlsr, it saves its loader state again: the next resume must still draw by whole lengths
    utts = _utts({"ll": (6, 600.0), "ss": (1200, 3.0)})
    kw = dict(max_tokens=480_000, max_sample_size=250_000, alpha=0.5, seed=5, epoch_size=400)
    earlier = {k: v for k, v in pretrain_loader(utts, **kw).state_dict().items() if k != "draws"}
    first = pretrain_loader(utts, **kw)
    first.load_state_dict(earlier)
    second = pretrain_loader(utts, **kw)
    second.load_state_dict(first.state_dict())
    assert second.sampler.draw_weights == pytest.approx(first.sampler.draw_weights)
    assert [list(p.indices) for p in second.plans()] == [list(p.indices) for p in first.plans()]
