"""The shared-unit statistics on hand-built code arrays, checked against independent references."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from xlsr.analysis import codebook as cb
from xlsr.errors import XlsrError


def test_codeword_ids_match_row_major_index():
    rng = np.random.default_rng(0)
    for G, V in [(1, 7), (2, 320), (3, 5)]:
        codes = rng.integers(0, V, size=(50, G))
        expected = np.ravel_multi_index(codes.T, (V,) * G)  # i_1·V^(G-1) + … + i_G
        np.testing.assert_array_equal(cb.codeword_ids(codes, V), expected)
    assert cb.codeword_ids(np.array([[1, 2]]), 320)[0] == 1 * 320 + 2  # spec §3: i1·V + i2


def test_codeword_ids_reject_out_of_range():
    with pytest.raises(ValueError, match="code indices"):
        cb.codeword_ids(np.array([[0, 5]]), 5)


def _constructed():
    # a uses {0,1,2}, b uses {1,2,3}, c uses {2,4}: 0,3,4 by one language, 1 by two, 2 by all three.
    ids = {
        "a": np.array([0, 0, 1, 2, 2, 2]),
        "b": np.array([1, 2, 3, 3]),
        "c": np.array([2, 4, 4, 4, 4]),
    }
    return cb.count_codewords(ids, num_codewords=9)


def test_counts_and_distributions():
    counts = _constructed()
    assert counts.langs == ["a", "b", "c"]
    np.testing.assert_array_equal(counts.codewords, [0, 1, 2, 3, 4])
    for row, lang in enumerate(counts.langs):
        ref = np.bincount({"a": [0, 0, 1, 2, 2, 2], "b": [1, 2, 3, 3], "c": [2, 4, 4, 4, 4]}[lang], minlength=5)
        np.testing.assert_array_equal(counts.counts[row], ref)
    np.testing.assert_array_equal(counts.frames, [6, 4, 5])
    p = cb.distributions(counts.counts)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [2 / 6, 1 / 6, 3 / 6, 0, 0])


def test_sharing_histogram_and_language_specific_on_constructed_case():
    counts = _constructed()
    np.testing.assert_array_equal(cb.sharing_histogram(counts.counts), [3, 1, 1])
    specific, frames = cb.language_specific(counts.counts)
    np.testing.assert_array_equal(specific, [1, 1, 1])  # a: {0}, b: {3}, c: {4}
    np.testing.assert_array_equal(frames, [2, 2, 4])


def test_perplexity_of_uniform_and_one_hot():
    p = np.array([[0.25, 0.25, 0.25, 0.25, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(cb.perplexity(p), [4.0, 1.0])


def test_js_divergence_matches_scipy_and_bounds():
    rng = np.random.default_rng(1)
    p = cb.distributions(rng.integers(0, 5, size=(4, 30)) + (rng.random((4, 30)) < 0.5))
    jsd = cb.js_divergence(p)
    for i in range(4):
        for j in range(4):
            assert jsd[i, j] == pytest.approx(jensenshannon(p[i], p[j], base=2) ** 2, abs=1e-12)
    disjoint = np.array([[0.5, 0.5, 0, 0], [0, 0, 0.3, 0.7]])
    assert cb.js_divergence(disjoint)[0, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(cb.js_distance(p), np.sqrt(jsd))


def test_a_language_is_most_similar_to_itself():
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 20, size=(5, 60))
    counts = np.vstack([counts, counts[2] * 3])  # row 5 is language 2 again, with three times the audio
    p = cb.distributions(counts)
    jsd, cos = cb.js_divergence(p), cb.cosine_similarity(p)
    for i in range(p.shape[0]):
        assert jsd[i, i] == pytest.approx(0.0)
        assert cos[i, i] == pytest.approx(1.0)
        assert jsd[i].argmin() == i or jsd[i, jsd[i].argmin()] == pytest.approx(0.0)
        assert cos[i].max() == pytest.approx(cos[i, i])
    assert cb.nearest(cb.js_distance(p), larger_is_closer=False)[5] == 2
    assert cb.nearest(cos, larger_is_closer=True)[2] == 5


def test_pca_matches_covariance_eigenvectors():
    rng = np.random.default_rng(3)
    p = cb.distributions(rng.integers(1, 10, size=(6, 12)))
    coords, explained = cb.pca_2d(p)
    x = p - p.mean(axis=0)
    evals, evecs = np.linalg.eigh(x.T @ x)
    order = np.argsort(evals)[::-1]
    for k in range(2):
        ref = x @ evecs[:, order[k]]
        assert abs(np.dot(coords[:, k], ref)) == pytest.approx(np.dot(ref, ref))  # same axis, up to sign
    np.testing.assert_allclose(explained, evals[order[:2]] / evals.sum())
    coords2, _ = cb.pca_2d(p)
    np.testing.assert_array_equal(coords, coords2)


def test_average_linkage_merges_closest_pair_first():
    d = np.array([[0.0, 0.1, 0.8], [0.1, 0.0, 0.6], [0.8, 0.6, 0.0]])
    z = cb.average_linkage(d)
    assert sorted(z[0, :2].astype(int).tolist()) == [0, 1]
    assert z[0, 2] == pytest.approx(0.1)
    assert z[1, 2] == pytest.approx((0.8 + 0.6) / 2)  # average linkage (UPGMA)


def test_statistics_on_constructed_case():
    s = cb.statistics(_constructed())
    assert s["sharing"]["histogram"] == {"1": 3, "2": 1, "3": 1}
    assert s["sharing"]["used_by_all"] == 1
    assert s["sharing"]["shared_codeword_share"] == pytest.approx(2 / 5)
    assert s["sharing"]["shared_frame_share"] == pytest.approx((15 - 8) / 15)
    a = s["per_language"]["a"]
    assert a["distinct_codewords"] == 3
    assert a["specific_frame_share"] == pytest.approx(2 / 6)
    assert a["perplexity"] == pytest.approx(np.exp(-sum(q * np.log(q) for q in (2 / 6, 1 / 6, 3 / 6))))
    jsd = np.array(s["similarity"]["js_distance"])
    np.testing.assert_allclose(np.diag(jsd), 0.0)
    assert np.array(s["clustering"]["linkage"]).shape == (2, 4)
    assert sorted(s["clustering"]["leaves"]) == ["a", "b", "c"]
    shares = s["sharing"]["frame_share_by_languages"]
    assert shares == pytest.approx({"1": 8 / 15, "2": 2 / 15, "3": 5 / 15})
    # a uses 3 of the 9 codewords of the codebook (not of the 5 used); 1 of its 3 ({0}) is its own
    assert a["codebook_usage"] == pytest.approx(3 / 9)
    assert a["specific_codeword_share"] == pytest.approx(1 / 3)
    # JS distances (bits) from the hand-normalised counts over codewords 0..4:
    # d(a,b) = 0.6733 < d(a,c) = 0.8354 < d(b,c) = 0.8815
    pa, pb, pc = [2 / 6, 1 / 6, 3 / 6, 0, 0], [0, 1 / 4, 1 / 4, 2 / 4, 0], [0, 0, 1 / 5, 0, 4 / 5]
    d_ab, d_ac, d_bc = (jensenshannon(x, y, base=2) for x, y in [(pa, pb), (pa, pc), (pb, pc)])
    assert [s["per_language"][lang]["nearest"] for lang in "abc"] == ["b", "a", "a"]
    assert a["nearest_js_distance"] == pytest.approx(d_ab) and d_ab == pytest.approx(0.6733, abs=1e-4)
    assert s["per_language"]["c"]["nearest_js_distance"] == pytest.approx(d_ac)
    # average linkage on the distance (not the divergence): a+b at d(a,b), then c at the mean of its two distances
    np.testing.assert_allclose(s["clustering"]["linkage"], [[0, 1, d_ab, 2], [2, 3, (d_ac + d_bc) / 2, 3]])


def test_statistics_needs_two_languages():
    one = cb.count_codewords({"a": np.array([1, 2])}, num_codewords=4)
    with pytest.raises(XlsrError, match="at least 2"):
        cb.statistics(one)
