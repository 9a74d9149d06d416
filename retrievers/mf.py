"""Matrix-factorisation sources: implicit-feedback ALS and BPR (implicit, CPU).

Both are fitted on the stored interactions (``genre fit``) and keep only the item factors:
a request is scored from its own history, never from a stored user row, so a history given
inline, a user with new interactions since the fit, and the harness's held-out users are
all scored the same way. The history is *folded in*: a user vector is solved from the
history's item factors, then ``score(i) = user . item_factors[i]``.

- ALS (Hu, Koren, Volinsky 2008): confidence ``c = 1 + alpha * w`` for an interaction of
  weight ``w`` (1, or its rating with ``weighting = "rating"``), preference 1; every other
  item has confidence 1 and preference 0. The fold-in is the exact ALS user step
  ``u = (Y'Y + reg I + sum_h (c_h - 1) y_h y_h')^-1 sum_h c_h y_h`` over the history items
  ``h`` (what implicit's ``recalculate_user`` computes; tests check they agree), with each
  history item weighted by the mean training weight (a request's history has no ratings).
- BPR (Rendle et al. 2009): implicit appends an item bias to each item's factors (and a
  constant 1 to each user's). BPR has no closed-form user step, so the fold-in is ridge
  least squares: the user vector ``u`` that makes every history item score like an average
  training positive does, ``min_u sum_h (u . v_h + b_h - t)^2 + lam |u|^2`` with ``t`` the
  mean training score of observed (user, item) pairs and ``lam = fold_in_regularization``;
  ``score(i) = u . v_i + b_i``.

Fits are seeded (``seed``) and single-threaded, so the same rows and config give the same
factors (BPR's multi-threaded SGD is not deterministic).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from scipy.sparse import csr_matrix

from genre_agent.catalog.items import Item
from genre_agent.config import ALSConfig, BPRConfig
from genre_agent.errors import GenreError
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, ScoreIndex


def interaction_matrix(
    ids: Sequence[str], rows: Iterable[Interaction], weight: str = "binary"
) -> csr_matrix:
    """users x items, one entry per (user, item) pair: 1, or the rating (``weight =
    "rating"``; an interaction without a rating weighs 1). A repeated pair keeps its last
    weight. Rows for items outside ``ids`` are ignored."""
    pos = {i: n for n, i in enumerate(ids)}
    last: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.item_id in pos:
            w = 1.0 if weight == "binary" or r.rating is None else float(r.rating)
            last[(r.user_id, r.item_id)] = w
    users = sorted({u for u, _ in last})
    upos = {u: n for n, u in enumerate(users)}
    keys = list(last)
    return csr_matrix(
        (
            np.array([last[k] for k in keys], dtype=np.float32),
            ([upos[u] for u, _ in keys], [pos[i] for _, i in keys]),
        ),
        shape=(max(len(users), 1), len(ids)),
    )


def _fit_quietly(make: Callable[[], Any], mat: csr_matrix) -> Any:
    """Build and fit an implicit model with BLAS on one thread (implicit's own advice: its
    solvers parallelise by user, a threaded BLAS inside them only contends)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        # implicit's constructor checks the BLAS thread count before the limit is visible.
        warnings.simplefilter("ignore", RuntimeWarning)
        model = make()
        model.fit(mat, show_progress=False)
    return model


class MFRetriever:
    """Scores ``user . item_factors`` with the user folded in from the request's history.

    Subclasses set ``name`` and ``_user_vector``. ``params`` holds what the fold-in needs
    (saved with the factors).
    """

    name = "mf"
    FILE: ClassVar[str] = "mf.npz"

    def __init__(
        self,
        items: Mapping[str, Item],
        ids: Sequence[str],
        factors: np.ndarray,
        params: Mapping[str, float],
    ) -> None:
        if factors.shape[0] != len(ids):
            raise GenreError(
                f"{self.name}: {factors.shape[0]} item factor rows for {len(ids)} item ids"
            )
        self.items = items
        self.ids = list(ids)
        self.pos = {i: n for n, i in enumerate(self.ids)}
        # Stored as float32 (implicit's dtype); computed in float64. A fitted model and its
        # saved copy therefore score identically.
        self.factors = np.asarray(factors, dtype=np.float32).astype(np.float64)
        self.params = dict(params)
        self._rank = ScoreIndex(items, self.ids)

    def _user_vector(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _all_scores(self, history_ids: Sequence[str]) -> np.ndarray | None:
        """Every item's score, or None when no history item is known to the model."""
        idx = np.array(sorted({self.pos[h] for h in history_ids if h in self.pos}), dtype=int)
        if not idx.size:
            return None
        return self.factors @ self._user_vector(idx)

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        scores = self._all_scores([h.id for h in query.history])
        if scores is None:
            return [0.0] * len(candidate_ids)
        return [float(scores[self.pos[c]]) if c in self.pos else 0.0 for c in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """Top-k of the catalog; nothing when no history item is known (no evidence)."""
        scores = self._all_scores([h.id for h in query.history])
        if scores is None:
            return []
        return self._rank.search(scores, query, k, self.name)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "ids": np.array(self.ids, dtype=str),
            "factors": self.factors.astype(np.float32),
            **{f"param_{k}": np.float64(v) for k, v in self.params.items()},
        }
        np.savez(folder / self.FILE, **arrays)

    @classmethod
    def load(cls, folder: Path, items: Mapping[str, Item]) -> Self:
        with np.load(folder / cls.FILE, allow_pickle=False) as data:
            params = {
                k[len("param_") :]: float(data[k]) for k in data.files if k.startswith("param_")
            }
            return cls(items, [str(i) for i in data["ids"]], data["factors"], params)


class ALSRetriever(MFRetriever):
    """Implicit-feedback ALS; the history is folded in by the exact ALS user step."""

    name = "als"
    FILE: ClassVar[str] = "als.npz"

    @cached_property
    def _yty(self) -> np.ndarray:
        """Y'Y + lambda I, the part of the ALS user step that does not depend on the user."""
        y = self.factors
        return y.T @ y + self.params["regularization"] * np.eye(y.shape[1])

    @classmethod
    def fit(
        cls, items: Mapping[str, Item], rows: Iterable[Interaction], cfg: ALSConfig
    ) -> ALSRetriever:
        from implicit.cpu.als import AlternatingLeastSquares

        ids = sorted(items)
        mat = interaction_matrix(ids, rows, cfg.weighting)
        fold_weight = float(mat.data.mean()) if mat.nnz else 1.0
        mat.data = 1.0 + cfg.alpha * mat.data  # the confidence; implicit's alpha stays 1
        model = _fit_quietly(
            lambda: AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=1.0,
                iterations=cfg.iterations,
                random_state=cfg.seed,
                num_threads=1,
            ),
            mat,
        )
        params = {
            "regularization": cfg.regularization,
            "alpha": cfg.alpha,
            "fold_weight": fold_weight,
        }
        return cls(items, ids, np.asarray(model.item_factors), params)

    def confidence(self) -> float:
        """The confidence a history item gets in the fold-in."""
        return 1.0 + self.params["alpha"] * self.params["fold_weight"]

    def _user_vector(self, idx: np.ndarray) -> np.ndarray:
        yh = self.factors[idx]
        c = self.confidence()
        a = self._yty + (c - 1.0) * (yh.T @ yh)
        b = c * yh.sum(axis=0)
        return np.linalg.solve(a, b)


class BPRRetriever(MFRetriever):
    """BPR; the history is folded in by ridge least squares (module docstring)."""

    name = "bpr"
    FILE: ClassVar[str] = "bpr.npz"

    @classmethod
    def fit(
        cls, items: Mapping[str, Item], rows: Iterable[Interaction], cfg: BPRConfig
    ) -> BPRRetriever:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        ids = sorted(items)
        mat = interaction_matrix(ids, rows)
        model = _fit_quietly(
            lambda: BayesianPersonalizedRanking(
                factors=cfg.factors,
                learning_rate=cfg.learning_rate,
                regularization=cfg.regularization,
                iterations=cfg.iterations,
                random_state=cfg.seed,
                num_threads=1,
            ),
            mat,
        )
        items_f = np.asarray(model.item_factors, dtype=np.float64)
        users_f = np.asarray(model.user_factors, dtype=np.float64)
        coo = mat.tocoo()
        seen = np.einsum("ij,ij->i", users_f[coo.row], items_f[coo.col]) if mat.nnz else [1.0]
        params = {
            "fold_in_regularization": cfg.fold_in_regularization,
            "target": float(np.mean(seen)),
        }
        return cls(items, ids, items_f, params)

    def _user_vector(self, idx: np.ndarray) -> np.ndarray:
        vh, bh = self.factors[idx, :-1], self.factors[idx, -1]
        lam = self.params["fold_in_regularization"]
        a = vh.T @ vh + lam * np.eye(vh.shape[1])
        u = np.linalg.solve(a, vh.T @ (self.params["target"] - bh))
        return np.append(u, 1.0)  # the bias column counts once, as in training
