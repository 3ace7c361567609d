"""α language sampling (XLSR §6.3): p_l ∝ (n_l / N)^α, multinomial resampling each epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from xlsr.data.manifest import Utterance
from xlsr.data.utterance_index import UtteranceIndex, as_index
from xlsr.errors import XlsrError
from xlsr.rates import SAMPLE_RATE


def language_weights(hours: dict[str, float], alpha: float) -> dict[str, float]:
    """Sampling probability per language: (n_l/N)^α normalised to sum to 1 (α=1 natural, α=0 uniform)."""
    if not hours:
        raise XlsrError("language sampling: no languages given")
    if not 0.0 <= alpha <= 1.0:
        raise XlsrError(f"alpha: must be in [0, 1], got {alpha}")
    bad = [lang for lang, h in hours.items() if not h > 0]
    if bad:
        raise XlsrError(f"language sampling: language(s) {', '.join(bad)} have no audio")
    total = sum(hours.values())
    scores = {lang: (h / total) ** alpha for lang, h in hours.items()}
    norm = sum(scores.values())
    return {lang: s / norm for lang, s in scores.items()}


def utterance_weights(hours: dict[str, float], utterances: dict[str, int], alpha: float,
                      drawable_hours: dict[str, float] | None = None) -> dict[str, float]:
    """The probability that the next utterance drawn is of language l, such that each language's share of the
    *audio* drawn is its `language_weights` p_l: q_l ∝ p_l / (mean length a draw of l gives).

    p_l is a share of hours (n_l is a language's hours, XLSR §6.3); drawing utterances with p_l itself would give
    a language of long utterances more than its share (10-s utterances against 1-s ones at equal hours: 91% of
    the audio instead of 50%) and make α = 1 other than natural. With q_l, α = 1 draws every utterance of the
    corpus equally often, whatever its language, when every utterance fits in a crop.
    `drawable_hours`: per language, the audio its draws can give, each utterance counted up to the longest crop
    (max_sample_size; default: `hours`, no cap). A batch takes at most that much of an utterance, so a language of
    recordings longer than the crop is drawn more often, a random window each time: 10-minute files against 3-s
    clips at equal hours get half the audio trained on, not 2% of it (15.6-s crops)."""
    p = language_weights(hours, alpha)
    drawable = hours if drawable_hours is None else drawable_hours
    scores = {lang: p[lang] * utterances[lang] / drawable[lang] for lang in p}
    norm = sum(scores.values())
    return {lang: s / norm for lang, s in scores.items()}


def language_hours(utts: UtteranceIndex | Sequence[Utterance], sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Hours of audio per language (from num_samples), sorted by language code."""
    return as_index(utts).hours(sample_rate)


def weights_table(hours: dict[str, float], alpha: float) -> str:
    """A printable table: language, hours, natural share, sampling probability at α."""
    probs = language_weights(hours, alpha)
    total = sum(hours.values())
    lines = [f"{'lang':<8}{'hours':>10}{'natural':>10}{f'p(α={alpha:g})':>12}"]
    for lang, h in hours.items():
        lines.append(f"{lang:<8}{h:>10.3f}{h / total:>10.1%}{probs[lang]:>12.1%}")
    return "\n".join(lines)


def trained_table(hours: dict[str, float], alpha: float, trained_seconds: dict[str, float]) -> str:
    """A printable table: language, hours of audio trained on (its crops, each time drawn), their share of all it
    trained on, and the share p_l that sampling at α aims at (weights_table's last column). Languages trained on but
    no longer in `hours` (a resume on other data) are listed with no p_l."""
    probs = language_weights(hours, alpha)
    total = sum(trained_seconds.values()) or 1.0
    lines = [f"{'lang':<8}{'trained h':>11}{'share':>9}{f'p(α={alpha:g})':>12}"]
    for lang in [*hours, *(lang for lang in trained_seconds if lang not in hours)]:
        seconds = trained_seconds.get(lang, 0.0)
        p = f"{probs[lang]:>12.1%}" if lang in probs else f"{'-':>12}"
        lines.append(f"{lang:<8}{seconds / 3600:>11.3f}{seconds / total:>9.1%}{p}")
    return "\n".join(lines)


class LanguageSampler:
    """Draws each epoch's utterances: language counts ~ Multinomial(epoch_size, q), then utterances, where q
    (`utterance_weights`) makes each language's expected share of the epoch's audio its p_l (`weights`): of the
    audio a batch takes, each utterance counted up to `max_sample_size` samples (None: whole).

    Within a language, utterances are taken from a fresh random permutation, cycled, so a language
    that is upsampled repeats all of its utterances before any twice (the fairseq recipe duplicated
    manifest lines instead). Every rank computes the same draw from (seed, epoch); iterating yields
    this rank's disjoint share.
    """

    def __init__(self, utts: UtteranceIndex | Sequence[Utterance], *, alpha: float = 0.5, seed: int = 0, rank: int = 0,
                 world_size: int = 1, epoch_size: int | None = None, max_sample_size: int | None = None) -> None:
        if not len(utts):
            raise XlsrError("language sampling: no utterances")
        if not 0 <= rank < world_size:
            raise XlsrError(f"rank {rank} is outside world_size {world_size}")
        self.alpha, self.seed, self.rank, self.world_size = alpha, seed, rank, world_size
        index = as_index(utts)
        self.hours = index.hours()
        self.langs = list(self.hours)
        # index.langs may name languages none of the selected rows has; self.langs only those with audio
        position = np.array([self.langs.index(lang) if lang in self.hours else -1 for lang in index.langs])
        lang_of = position[index.lang_codes] if len(position) else index.lang_codes
        self.members = [np.flatnonzero(lang_of == i) for i in range(len(self.langs))]
        drawable = np.minimum(index.num_samples, max_sample_size) if max_sample_size else index.num_samples
        self.drawable_hours = {lang: float(drawable[m].sum()) / SAMPLE_RATE / 3600
                               for lang, m in zip(self.langs, self.members)}
        self.whole_lengths = False  # drawn as an earlier xlsr drew (`draw_whole_lengths`)
        self._set_weights()
        self.epoch_size = len(utts) if epoch_size is None else int(epoch_size)
        self.epoch = 0

    def _set_weights(self) -> None:
        """`weights`: each language's share of the audio (p_l); `draw_weights`: of the utterances drawn."""
        self.weights = language_weights(self.hours, self.alpha)
        counts = {lang: len(m) for lang, m in zip(self.langs, self.members)}
        self.draw_weights = utterance_weights(self.hours, counts, self.alpha, self.drawable_hours)

    def draw_whole_lengths(self) -> None:
        """Draw as xlsr did before 2026-12-07, each utterance's whole length counted (no crop cap): for a run an
        earlier xlsr started, which resumes with the draws it started with."""
        self.drawable_hours = dict(self.hours)
        self.whole_lengths = True
        self._set_weights()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next iteration yields."""
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int | None = None) -> np.ndarray:
        """All ranks' utterance indices for `epoch` (default: the current one), in random order."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        counts = rng.multinomial(self.epoch_size, [self.draw_weights[lang] for lang in self.langs])
        drawn = []
        for members, count in zip(self.members, counts):
            reps = -(-count // len(members))  # ceil
            cycle = np.concatenate([rng.permutation(members) for _ in range(max(reps, 1))])
            drawn.append(cycle[:count])
        out = np.concatenate(drawn)
        return out[rng.permutation(len(out))]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.epoch_size, self.world_size))
