import numpy as np
import pytest

from xlsr.data.batch_plan import pack_batches


def _greedy(lengths, order, max_tokens, crop_to_shortest, max_sample_size=None, max_utterances=None):
    """The packing rule, one utterance at a time: a batch takes the next one while (B + 1) × its cost fits and it
    holds fewer than `max_utterances`."""
    cost = np.minimum(lengths, max_sample_size) if max_sample_size else lengths
    ranked = sorted(order, key=lambda i: -cost[i] if crop_to_shortest else cost[i])  # stable: ties keep `order`
    batches, current = [], []
    for i in ranked:
        if current and ((len(current) + 1) * cost[i] > max_tokens or len(current) == max_utterances):
            batches.append(current)
            current = []
        current.append(int(i))
    return batches + ([current] if current else [])


@pytest.mark.parametrize("crop_to_shortest,max_sample_size", [(True, 3000), (True, None), (False, None)])
def test_packing_matches_the_one_at_a_time_rule(crop_to_shortest, max_sample_size):
    rng = np.random.default_rng(5)
    for n, max_tokens in ((1, 5000), (7, 4000), (500, 9000), (3000, 200_000)):
        lengths = rng.integers(100, 4000, n)
        lengths[: n // 3] = 1500  # many ties
        order = rng.permutation(n)
        got = pack_batches(lengths, order, max_tokens, crop_to_shortest=crop_to_shortest,
                           max_sample_size=max_sample_size)
        assert got == _greedy(lengths, order, max_tokens, crop_to_shortest, max_sample_size)


@pytest.mark.parametrize("max_utterances", [1, 4])
def test_max_utterances_ends_a_batch_like_fairseqs_batch_size(max_utterances):
    rng = np.random.default_rng(6)
    for n, max_tokens in ((7, 4000), (500, 9000), (3000, 200_000)):
        lengths = rng.integers(100, 4000, n)
        order = rng.permutation(n)
        got = pack_batches(lengths, order, max_tokens, crop_to_shortest=True, max_sample_size=3000,
                           max_utterances=max_utterances)
        assert got == _greedy(lengths, order, max_tokens, True, 3000, max_utterances)
        uncapped = pack_batches(lengths, order, max_tokens, crop_to_shortest=True, max_sample_size=3000,
                                max_utterances=None)
        assert uncapped == _greedy(lengths, order, max_tokens, True, 3000)
        assert max(map(len, got)) == min(max_utterances, max(map(len, uncapped)))
