"""Choosing the LM weight and word score on a dev set: the model runs once, beam search once per setting.

fairseq and flashlight users tune `--lm-weight` and `--word-score` by a grid search, each point a full decoding run
(the acoustic model's forward pass included). Here every utterance's logits are computed once and kept (for a
dev set, a few MB: frames × vocabulary), then each (lm_weight, word_score) pair decodes them again with the LM and
lexicon loaded once. Pick the setting on a dev set, report the test set with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import torch

from xlsr.decode.beam import BeamSearchDecoder
from xlsr.decode.evaluate import METRIC_NAMES, METRICS, EvalReport, References, fixed_width
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.transcribe import CTCModel, transcribe_files
from xlsr.errors import XlsrError


def sweep_lm_settings(ctc: CTCModel, utts: Sequence, beam: BeamSearchDecoder, lm_weights: Sequence[float],
                      word_scores: Sequence[float], *, labels: str | None = None, normalize: bool = False,
                      show_progress: bool = True, **batching) -> list[tuple[float, float, EvalReport]]:
    """(lm_weight, word_score, report) for every pair, best first (`rank_settings`: WER, then CER for characters)."""
    refs = References.of(ctc, utts, labels, normalize)
    kept: dict[int, torch.Tensor] = {}

    def keep_logits(logits, frame_lengths, *, timestamps=False):
        hyps = greedy_decode(logits, frame_lengths, ctc.vocab)  # a stand-in: only the logits are wanted here
        for row, hyp in enumerate(hyps):
            kept[id(hyp)] = logits[row, : int(frame_lengths[row])].clone()
        return hyps

    results, failures = transcribe_files(ctc, refs.audio(), decoder=keep_logits, show_progress=show_progress,
                                         **batching)
    logits = {r.audio: kept[id(r.hypothesis)] for r in results}
    if not logits:
        raise XlsrError(f"no utterance could be transcribed (the first failure: {failures[0].error})")
    rows = []
    for lm_weight, word_score in product(lm_weights, word_scores):
        beam.reconfigure(lm_weight=lm_weight, word_score=word_score)
        texts = {audio: beam.decode(x[None], torch.tensor([x.shape[0]]))[0].text for audio, x in logits.items()}
        rows.append((lm_weight, word_score, refs.score(texts, failures)))
    return rank_settings(rows)


def rank_settings(rows: list[tuple[float, float, EvalReport]]) -> list[tuple[float, float, EvalReport]]:
    """Best first by every metric over all languages, the primary one first (characters: WER, then CER on a tie;
    phones: PER); equal rows keep their grid order."""
    return sorted(rows, key=lambda row: tuple(row[2].rate(None, u) for u in reversed(METRICS[row[2].labels])))


def sweep_table(rows: list[tuple[float, float, EvalReport]]) -> str:
    """One line per setting, best first: the weights and every metric's rate over all languages."""
    units = METRICS[rows[0][2].labels]
    cells = [["lm_weight", "word_score", *(METRIC_NAMES[u] + " %" for u in units)]]
    for lm_weight, word_score, report in rows:
        rates = (report.rate(None, u) for u in units)  # NaN: nothing scored, no rate (as in the report's table)
        cells.append([f"{lm_weight:g}", f"{word_score:g}", *("-" if math.isnan(r) else f"{100 * r:.2f}" for r in rates)])
    head, *lines = fixed_width(cells, [9, 10] + [7] * len(units), left=0)
    lines = [head, "-" * len(head), *lines]
    return "\n".join(lines)
