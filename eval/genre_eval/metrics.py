"""Ranking metrics as pure functions, per user, plus list-level aggregates.

Conventions shared by every function:
- ``ranked`` is the system's ordered list of item ids (best first); ``relevant`` the set of
  held-out ids. Only the first ``k`` entries count ("document cutoff" at k).
- A failed request is scored with ``ranked = []``: every metric is then 0, and the user stays
  in the mean (users are never dropped).
- Ties: systems that produce scores are turned into lists by descending score, ties broken by
  item id ascending (see ``order_by_scores``); the metrics never see scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations


def order_by_scores(scores: Mapping[str, float]) -> list[str]:
    """Ids by descending score; ties by id ascending (deterministic, label-blind)."""
    return sorted(scores, key=lambda i: (-scores[i], i))


def dcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """DCG@k = sum_{r=1..k} rel_r / log2(r + 1), binary rel_r."""
    return sum(1.0 / math.log2(r + 1) for r, i in enumerate(ranked[:k], start=1) if i in relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """NDCG@k = DCG@k / IDCG@k, IDCG@k = sum_{r=1..min(k,|R|)} 1 / log2(r + 1); 0 if R empty."""
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(k, len(relevant)) + 1))
    return dcg_at_k(ranked, relevant, k) / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Recall@k = |top_k ∩ R| / |R|. With one held-out item this is HR@k."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def hit_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """HR@k = 1 if top_k ∩ R is non-empty else 0."""
    return 1.0 if set(ranked[:k]) & relevant else 0.0


def precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """P@k = |top_k ∩ R| / k (the denominator is k even if fewer were returned)."""
    return len(set(ranked[:k]) & relevant) / k


def f1_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """F1@k = 2 P@k R@k / (P@k + R@k), 0 when both are 0."""
    p, r = precision_at_k(ranked, relevant, k), recall_at_k(ranked, relevant, k)
    return 2 * p * r / (p + r) if p + r else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """MRR@k = 1 / rank of the first relevant item within the top k, else 0."""
    for r, i in enumerate(ranked[:k], start=1):
        if i in relevant:
            return 1.0 / r
    return 0.0


def auc(ranked: Sequence[str], relevant: set[str], candidates: Sequence[str]) -> float:
    """Sampled AUC = (1/(|R||N|)) sum_{p in R} sum_{n in N} [rank(p) < rank(n)].

    ``N`` = candidates not in R. Items missing from a non-empty ``ranked`` share the worst
    rank, and a tie counts 1/2. A failed request (empty ``ranked``) scores 0, not 0.5.
    """
    if not ranked:
        return 0.0
    negatives = [c for c in candidates if c not in relevant]
    positives = [c for c in candidates if c in relevant]
    if not negatives or not positives:
        return 0.0
    worst = len(ranked) + 1
    pos = {i: r for r, i in enumerate(ranked, start=1)}
    total = 0.0
    for p in positives:
        rp = pos.get(p, worst)
        for n in negatives:
            rn = pos.get(n, worst)
            total += 1.0 if rp < rn else 0.5 if rp == rn else 0.0
    return total / (len(positives) * len(negatives))


# The cut-off metrics every result line carries, by name (``ndcg`` -> ``ndcg@10`` ...). A new
# metric is one entry here (and a test against pytrec_eval or ranx where one has it).
METRICS_AT_K: dict[str, Callable[[Sequence[str], set[str], int], float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "hr": hit_at_k,
    "precision": precision_at_k,
    "f1": f1_at_k,
    "mrr": mrr_at_k,
}


def user_metrics(
    ranked: Sequence[str], relevant: set[str], candidates: Sequence[str], ks: Sequence[int]
) -> dict[str, float]:
    """All per-user metrics, named ``ndcg@10`` etc., plus ``auc`` over the candidates."""
    out: dict[str, float] = {}
    for k in ks:
        for name, fn in METRICS_AT_K.items():
            out[f"{name}@{k}"] = fn(ranked, relevant, k)
    out["auc"] = auc(ranked, relevant, candidates)
    return out


def coverage(lists: Sequence[Sequence[str]], catalog_size: int, k: int) -> float:
    """Catalog coverage@k = |union of top_k lists| / |catalog|."""
    if catalog_size <= 0:
        return 0.0
    return len({i for lst in lists for i in lst[:k]}) / catalog_size


def average_popularity(
    lists: Sequence[Sequence[str]], popularity: Mapping[str, float], k: int
) -> float:
    """Mean over recommended items (top_k of every list) of their training popularity."""
    values = [popularity.get(i, 0.0) for lst in lists for i in lst[:k]]
    return sum(values) / len(values) if values else 0.0


def jaccard_distance(a: set[str], b: set[str]) -> float:
    """1 - |a ∩ b| / |a ∪ b|; two empty sets are at distance 0."""
    union = a | b
    return 1.0 - len(a & b) / len(union) if union else 0.0


def intra_list_diversity(ranked: Sequence[str], features: Mapping[str, set[str]], k: int) -> float:
    """ILD@k = mean pairwise Jaccard distance of item features (genres) in the top k."""
    top = [features.get(i, set()) for i in ranked[:k]]
    pairs = list(combinations(top, 2))
    return sum(jaccard_distance(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
