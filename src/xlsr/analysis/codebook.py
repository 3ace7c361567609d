"""Shared discrete units: per-language codeword statistics as pure functions on code counts (spec §9).

A frame's G group indices (i_1, …, i_G) name one codeword of the product codebook,
id = i_1·V^(G-1) + … + i_G (for G = 2: i_1·V + i_2, fairseq's `to_codebook_index`), so there are
V^G possible codewords (102,400 for XLSR-53). A language uses only a few of them, so counts are kept
over the union of codewords seen in any language: `CodewordCounts.counts` is (L, U) with U ≤ frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from xlsr.errors import XlsrError

# Jensen–Shannon distance is the primary similarity: bounded, symmetric, a metric (so it also drives the
# clustering), and defined on the zeros of sparse distributions; cosine similarity is reported beside it.
PRIMARY_SIMILARITY = "js_distance"


@dataclass
class CodewordCounts:
    """How often each language's frames fell on each codeword that any language used."""

    langs: list[str]
    codewords: np.ndarray  # (U,) int64, sorted codeword ids used by at least one language
    counts: np.ndarray  # (L, U) int64, counts[l, u] = frames of langs[l] on codewords[u]
    num_codewords: int  # V^G, the size of the product codebook

    @property
    def frames(self) -> np.ndarray:
        """Frames counted per language, (L,)."""
        return self.counts.sum(axis=1)


def codeword_ids(codes: np.ndarray, num_codevectors_per_group: int) -> np.ndarray:
    """Combine (N, G) group indices into (N,) codeword ids, the first group most significant."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (frames, groups), got shape {codes.shape}")
    V = int(num_codevectors_per_group)
    if codes.size and (codes.min() < 0 or codes.max() >= V):
        raise ValueError(f"code indices must lie in [0, {V}), got [{codes.min()}, {codes.max()}]")
    ids = np.zeros(codes.shape[0], dtype=np.int64)
    for g in range(codes.shape[1]):
        ids = ids * V + codes[:, g]  # Horner's rule: i_1·V^(G-1) + … + i_G
    return ids


def count_codewords(ids_per_lang: dict[str, np.ndarray], num_codewords: int) -> CodewordCounts:
    """Count codeword ids per language over the union of used codewords (languages keep dict order)."""
    return counts_from_tallies({lang: tally_codewords(ids) for lang, ids in ids_per_lang.items()}, num_codewords)


Tally = tuple[np.ndarray, np.ndarray]  # (sorted codeword ids, how many frames fell on each), both (K,) int64


def tally_codewords(ids: np.ndarray, tally: Tally | None = None) -> Tally:
    """How often each codeword id occurs in `ids`, added to an earlier `tally`: a language's audio is counted a
    part at a time, and its tally holds at most one entry per codeword, however many hours are counted."""
    used, counts = np.unique(np.asarray(ids, dtype=np.int64).ravel(), return_counts=True)
    if tally is None or tally[0].size == 0:
        return used, counts.astype(np.int64)
    used, where = np.unique(np.concatenate([tally[0], used]), return_inverse=True)
    total = np.zeros(used.size, dtype=np.int64)
    np.add.at(total, where, np.concatenate([tally[1], counts]))
    return used, total


def counts_from_tallies(tallies: dict[str, Tally], num_codewords: int) -> CodewordCounts:
    """CodewordCounts of each language's tally, over the union of used codewords (languages keep dict order)."""
    langs = list(tallies)
    used = np.unique(np.concatenate([tallies[lang][0] for lang in langs])) if langs else np.zeros(0, dtype=np.int64)
    if used.size and (used[0] < 0 or used[-1] >= num_codewords):
        raise ValueError(f"codeword ids must lie in [0, {num_codewords})")
    counts = np.zeros((len(langs), used.size), dtype=np.int64)
    for row, lang in enumerate(langs):
        ids, n = tallies[lang]
        counts[row, np.searchsorted(used, ids)] = n
    return CodewordCounts(langs=langs, codewords=used, counts=counts, num_codewords=int(num_codewords))


def distributions(counts: np.ndarray) -> np.ndarray:
    """Normalise (L, U) counts into per-language probability distributions (rows sum to 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError("every language needs at least one counted frame")
    return counts / totals


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row of (L, U) distributions, with 0·log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=-1)


def perplexity(p: np.ndarray) -> np.ndarray:
    """exp(entropy): the number of equally likely codewords with the same uncertainty, per row."""
    return np.exp(entropy(p))


def sharing_histogram(counts: np.ndarray) -> np.ndarray:
    """(L,) array whose entry k-1 is the number of codewords used by exactly k languages."""
    counts = np.asarray(counts)
    users = (counts > 0).sum(axis=0)  # (U,) languages using each codeword
    L = counts.shape[0]
    return np.bincount(users, minlength=L + 1)[1 : L + 1]


def language_specific(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per language: codewords no other language uses, and the frames that fall on them, each (L,)."""
    counts = np.asarray(counts)
    only_one = (counts > 0).sum(axis=0) == 1  # (U,)
    specific = (counts[:, only_one] > 0).sum(axis=1)
    specific_frames = counts[:, only_one].sum(axis=1)
    return specific, specific_frames


def cosine_similarity(p: np.ndarray) -> np.ndarray:
    """(L, L) cosine similarity between the rows of (L, U) distributions."""
    p = np.asarray(p, dtype=np.float64)
    unit = p / np.linalg.norm(p, axis=1, keepdims=True)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def js_divergence(p: np.ndarray) -> np.ndarray:
    """(L, L) Jensen–Shannon divergence in bits (0 = identical, 1 = disjoint) between rows of (L, U)."""
    p = np.asarray(p, dtype=np.float64)
    L = p.shape[0]
    out = np.zeros((L, L))
    for i in range(L):
        for j in range(i + 1, L):
            m = 0.5 * (p[i] + p[j])
            out[i, j] = out[j, i] = 0.5 * _kl_bits(p[i], m) + 0.5 * _kl_bits(p[j], m)
    return np.clip(out, 0.0, 1.0)  # rounding can step a hair outside the bounds


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    # Only where p > 0; there q ≥ p/2 > 0 because q is a mixture containing p.
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / q[nz])))


def js_distance(p: np.ndarray) -> np.ndarray:
    """(L, L) Jensen–Shannon distance, sqrt of the divergence: a metric, so it suits clustering."""
    return np.sqrt(js_divergence(p))


def nearest(similarity: np.ndarray, *, larger_is_closer: bool) -> np.ndarray:
    """(L,) index of each row's closest other row under a similarity (or distance) matrix."""
    s = np.asarray(similarity, dtype=np.float64).copy()
    if s.shape[0] < 2:
        raise ValueError("nearest needs at least two languages")
    np.fill_diagonal(s, -np.inf if larger_is_closer else np.inf)
    return s.argmax(axis=1) if larger_is_closer else s.argmin(axis=1)


def pca_2d(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (L, U) rows onto their first two principal components: ((L, 2) coords, (2,) explained share)."""
    x = np.asarray(p, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    # SVD of the (L, U) matrix is cheap since L is small, even with U near V^G.
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(2, s.size)
    # Fix each component's sign (largest loading positive) so reruns draw the same picture.
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    signs[signs == 0] = 1.0
    coords = np.zeros((x.shape[0], 2))
    coords[:, :k] = u[:, :k] * s[:k] * signs
    variance = s**2
    explained = np.zeros(2)
    if variance.sum() > 0:
        explained[:k] = variance[:k] / variance.sum()
    return coords, explained


def average_linkage(distance: np.ndarray) -> np.ndarray:
    """scipy linkage matrix ((L-1, 4)) of average-linkage (UPGMA) clustering on a square distance matrix."""
    d = np.asarray(distance, dtype=np.float64)
    d = 0.5 * (d + d.T)  # exact symmetry, as squareform demands
    np.fill_diagonal(d, 0.0)
    return linkage(squareform(d, checks=False), method="average")


def statistics(counts: CodewordCounts) -> dict:
    """Every number of the analysis from the code counts alone (pure; JSON-ready)."""
    langs = counts.langs
    if len(langs) < 2:
        raise XlsrError(f"the analysis compares languages and needs at least 2, got {len(langs)}")
    p = distributions(counts.counts)
    jsd = js_divergence(p)
    jsdist = np.sqrt(jsd)
    coords, explained = pca_2d(p)
    tree = average_linkage(jsdist)
    return {
        "num_codewords": counts.num_codewords,
        "codewords_used": int(counts.codewords.size),
        "sharing": _sharing_statistics(counts),
        "per_language": _per_language_statistics(counts, p, jsdist),
        "similarity": {
            "primary": PRIMARY_SIMILARITY,
            "langs": list(langs),
            "js_distance": jsdist.tolist(),
            "js_divergence_bits": jsd.tolist(),
            "cosine": cosine_similarity(p).tolist(),
        },
        "pca": {
            "explained_variance_ratio": explained.tolist(),
            "coords": {lang: coords[i].tolist() for i, lang in enumerate(langs)},
        },
        "clustering": {
            "method": "average linkage on Jensen-Shannon distance",
            "linkage": tree.tolist(),
            "leaves": [langs[i] for i in leaves_list(tree)],  # left-to-right order of the dendrogram
        },
    }


def _sharing_statistics(counts: CodewordCounts) -> dict:
    """How codewords and frames spread over the number of languages that use each codeword."""
    histogram = sharing_histogram(counts.counts)
    users = (counts.counts > 0).sum(axis=0)
    total_frames = counts.frames.sum()
    return {
        # histogram[k] = codewords used by exactly k languages
        "histogram": {str(k + 1): int(n) for k, n in enumerate(histogram)},
        "used_by_one": int(histogram[0]),
        "used_by_all": int(histogram[-1]),
        "shared_codeword_share": float((users >= 2).mean()) if users.size else 0.0,
        "shared_frame_share": float(counts.counts[:, users >= 2].sum() / total_frames),
        # share of all frames falling on codewords used by exactly k languages
        "frame_share_by_languages": {
            str(k): float(counts.counts[:, users == k].sum() / total_frames) for k in range(1, len(counts.langs) + 1)
        },
    }


def _per_language_statistics(counts: CodewordCounts, p: np.ndarray, jsdist: np.ndarray) -> dict:
    """Usage, perplexity, language-specific codewords and nearest neighbour of each language."""
    langs = counts.langs
    frames = counts.frames
    distinct = (counts.counts > 0).sum(axis=1)
    ppl = perplexity(p)
    specific, specific_frames = language_specific(counts.counts)
    closest = nearest(jsdist, larger_is_closer=False)
    return {
        lang: {
            "frames": int(frames[i]),
            "distinct_codewords": int(distinct[i]),
            "codebook_usage": float(distinct[i] / counts.num_codewords),
            "perplexity": float(ppl[i]),
            "specific_codewords": int(specific[i]),
            "specific_codeword_share": float(specific[i] / distinct[i]),
            "specific_frame_share": float(specific_frames[i] / frames[i]),
            "nearest": langs[int(closest[i])],
            "nearest_js_distance": float(jsdist[i, closest[i]]),
        }
        for i, lang in enumerate(langs)
    }
