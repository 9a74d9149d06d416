"""The retrieval and ranking sections of the config (re-exported by genre_agent.config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RankingMode = Literal["listwise", "scoring", "retrieval", "learned"]
# Candidate sources (genre_agent.service.sources.SOURCES): each scores the catalog for a
# request. itemknn, als, bpr and sequential are fitted by `genre fit` (service.fit.FITTERS).
SourceKind = Literal[
    "embedding", "itemknn", "bm25", "popularity", "random", "als", "bpr", "sequential"
]


class FrozenConfig(BaseModel):
    """The base of every config section: frozen, and a key it does not know is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# The shipped default, chosen on ml-latest-small's validation split (full catalog, 610
# users; docs/eval.md, "Choosing the default"): the weights `genre eval search` found for
# item-kNN, BM25, embedding and popularity (30 TPE trials, rounded), plus ALS and the
# sequential model. Validation NDCG@10: 0.0350 without them, 0.0510 / 0.0554 / 0.0572 with
# sequential at 2 / 4 / 8 (ALS 1.0), 0.0566 at 8 without ALS; the sequential model alone
# scores 0.0596 but finds nothing for a request with only a query.
DEFAULT_SOURCES: dict[SourceKind, float] = {
    "sequential": 8.0,
    "itemknn": 1.25,
    "als": 1.0,
    "bm25": 0.99,
    "embedding": 0.79,
    "popularity": 0.09,
}


class ALSConfig(FrozenConfig):
    """Implicit-feedback ALS (implicit.als), fitted by `genre fit`.

    Defaults chosen on the validation split of ml-latest-small (full catalog, all 610 users,
    NDCG@10; `genre eval run eval/experiments/ml_small_default.toml --split valid --only als
    --set retrieval.als.KEY=VALUE`), one knob at a time from these values: 0.0365 here;
    alpha 0.5 / 5 / 20: 0.0348 / 0.0341 / 0.0212; factors 128: 0.0332;
    regularization 5: 0.0337; weighting "rating": 0.0345. The 95% CIs are about +-0.012
    wide: only alpha 20 is clearly worse.
    """

    factors: int = Field(64, ge=1, le=4096)
    regularization: float = Field(0.05, ge=0.0, le=1000.0)
    iterations: int = Field(15, ge=1, le=1000)
    # Confidence = 1 + alpha * interaction weight; the weight is 1 ("binary") or the
    # interaction's rating ("rating"; 1 without one).
    alpha: float = Field(1.0, gt=0.0, le=10_000.0)
    weighting: Literal["binary", "rating"] = "binary"
    seed: int = 0


class BPRConfig(FrozenConfig):
    """Bayesian personalised ranking (implicit.bpr), fitted by `genre fit`.

    Defaults chosen like ALSConfig's (validation split, `--only bpr`): 0.0279 here;
    learning_rate 0.05: 0.0156; fold_in_regularization 0.1 / 10: 0.0230 / 0.0253;
    factors 128: 0.0269 (only learning_rate 0.05 is clearly worse).
    """

    factors: int = Field(64, ge=1, le=4096)
    regularization: float = Field(0.01, ge=0.0, le=1000.0)
    iterations: int = Field(100, ge=1, le=10_000)
    learning_rate: float = Field(0.01, gt=0.0, le=10.0)
    # Ridge penalty of the fold-in that turns a request's history into a user vector
    # (retrievers.mf).
    fold_in_regularization: float = Field(1.0, gt=0.0, le=1e6)
    seed: int = 0


class SequentialConfig(FrozenConfig):
    """The self-attentive next-item model (SASRec-style, torch on CPU), fitted by `genre fit`
    (retrievers/sequential.py, retrievers/sequential_train.py).

    Defaults chosen on ml-latest-small's validation split (docs/architecture.md, "The
    sequential model"): sampled softmax over every max_len stretch of each history.
    """

    max_len: int = Field(50, ge=2, le=1000)
    hidden: int = Field(64, ge=8, le=1024)
    layers: int = Field(2, ge=1, le=12)
    heads: int = Field(1, ge=1, le=16)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    epochs: int = Field(100, ge=1, le=10_000)
    # 32 beat 128 on validation (full catalog NDCG@10 0.0596 against 0.0412, sampled-20
    # 73.0 against 72.0) at about 1.4x the training time.
    batch_size: int = Field(32, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    # Training-time budget (seconds, summed over resumed runs): training stops after the
    # epoch that crosses it, and provenance says so ("stopped_by": "time_budget").
    time_budget_s: float = Field(600.0, gt=0.0)
    # Training threads (None: every core this process may use). One by default: on a
    # 2-core machine shared with other work, two torch threads made an epoch up to 10x
    # slower (thread synchronisation), and a model this small gains little from two on an
    # idle one. Inference always uses one.
    threads: int | None = Field(1, ge=1, le=1024)
    seed: int = 0
    # "ce": cross-entropy over every catalog item (about 10x slower per epoch on CPU at
    # 10k items); "sampled": over the next item and `negatives` uniformly drawn items shared
    # by a batch.
    loss: Literal["ce", "sampled"] = "sampled"
    negatives: int = Field(256, ge=1, le=100_000)
    # Train on every max_len stretch of a long history, not only on its most recent one.
    all_windows: bool = True
    # Write a resumable checkpoint every this many epochs (models/sequential.ckpt/).
    checkpoint_every: int = Field(5, ge=1, le=10_000)


class RetrievalConfig(FrozenConfig):
    """How candidates are gathered before the LLM sees them.

    ``sources`` names each candidate source and its weight in the fusion; a source with
    weight 0 is not run. ``fusion = "rrf"`` is weighted reciprocal-rank fusion:
    ``score(i) = sum_s w_s / (rrf_c + rank_s(i))`` over each source's top ``depth`` items.
    """

    n_candidates: int = Field(50, ge=1, le=500)
    sources: dict[SourceKind, float] = Field(default_factory=lambda: dict(DEFAULT_SOURCES))
    fusion: Literal["rrf"] = "rrf"
    rrf_c: float = Field(60.0, gt=0.0, le=10_000.0)
    depth: int = Field(200, ge=1, le=10_000)
    # item-kNN: neighbours kept per item when `genre fit` builds the similarity.
    itemknn_neighbours: int = Field(100, ge=1, le=10_000)
    # Recent history items used by the text sources (BM25, embedding) and shown to the LLM.
    history_len: int = Field(20, ge=0, le=500)
    # Interactions with rating below this are not shown to the LLM as "liked" history
    # (they are still excluded from recommendations).
    min_liked_rating: float = 3.5
    exclude_history: bool = True
    seed: int = 0
    # A configured source with no fitted model (a new catalog without interactions) is
    # skipped with a note in the trace, and the others answer; true: it is an error.
    strict: bool = False
    als: ALSConfig = ALSConfig()
    bpr: BPRConfig = BPRConfig()
    sequential: SequentialConfig = SequentialConfig()

    @model_validator(mode="after")
    def _some_source(self) -> RetrievalConfig:
        bad = {k: w for k, w in self.sources.items() if not (w >= 0.0 and w < float("inf"))}
        if bad:
            raise ValueError(f"sources: weights must be finite and >= 0, got {bad}")
        if not any(w > 0 for w in self.sources.values()):
            raise ValueError(
                f"sources: at least one source needs a weight > 0, got {dict(self.sources)}"
            )
        return self


HistoryBucket = Literal["cold", "short", "long"]


def _no_llm_feature() -> dict[HistoryBucket, bool]:
    return {"cold": False, "short": False, "long": False}


class LearnedConfig(FrozenConfig):
    """``ranking.mode = "learned"``: a LightGBM lambdarank model over per-candidate features
    (genre_agent.ranking.learned), trained by `genre fit --ranker`."""

    # The LLM's label score (scoring mode) as a feature, per history-length bucket:
    # cold <= 5 liked items, short 6-20, long > 20. Off in a bucket: no LLM call there.
    llm_feature: dict[HistoryBucket, bool] = Field(default_factory=_no_llm_feature)
    # The sources whose score and within-list rank are features (any SourceKind, fitted or
    # not). None: the active retrieval.sources plus popularity.
    feature_sources: list[SourceKind] | None = None
    # Training: negatives per validation target drawn from the retrieved candidates (only
    # when the target itself is retrieved), plus random unseen catalog negatives.
    retrieved_negatives: int = Field(49, ge=1, le=1000)
    random_negatives: int = Field(20, ge=0, le=1000)
    # Train on at most this many users (a seeded sample; None: every user with a target).
    train_users: int | None = Field(None, ge=1)
    num_leaves: int = Field(31, ge=2, le=4096)
    n_estimators: int = Field(300, ge=1, le=100_000)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    seed: int = 0


class RankingConfig(FrozenConfig):
    """Who orders the candidates, and who explains them.

    The default orders by the fused retrieval score and uses the LLM for rationales only:
    measured on ml-latest-small, no LLM ranking mode of the default 0.5B model beats the
    order of its own candidates (README, "Quality"; docs/eval.md).
    """

    mode: RankingMode = "retrieval"
    template: str = "rerank_listwise"
    k: int = Field(10, ge=1, le=100)
    max_rationale_chars: int = Field(120, ge=30, le=1000)
    max_item_chars: int = Field(160, ge=20, le=4000)
    # Max constrained continuation rounds after the first pass; see genre_agent.ranking.listwise.
    max_repair_rounds: int = Field(3, ge=0, le=20)
    # listwise mode: "two_phase" ranks ids first, then explains each pick in a batched
    # request; "inline" writes ids and rationales in one answer (see genre_agent.ranking.listwise).
    listwise_style: Literal["two_phase", "inline"] = "two_phase"
    # --- mode="scoring" (genre_agent.ranking.scoring): one forward pass scores labelled candidates.
    scoring_template: str = "rerank_scoring"
    # Per-item rationale prompt (genre_agent.ranking.rationales), used by every mode.
    rationale_template: str = "explain_evidence"
    # "evidence": the sentence opens "Like <cited title>," and names one shared attribute
    # (template explain_evidence). "facts": the answer cites supporting history items by id
    # and picks the facts it uses (both enums of the evidence), then the model writes its
    # own sentence, checked after (genre_agent.ranking.rationale_facts; template
    # explain_facts); not the default: on the 0.5B model its sentences were worse
    # (docs/explanations.md). "linked": the service chooses two or three facts and the
    # sentence's pattern requires each verbatim, the words between them the model's
    # (genre_agent.ranking.rationale_linked; template explain_linked). "free": one
    # sentence of up to max_rationale_chars, no citations (template explain_item).
    rationale_format: Literal["evidence", "facts", "linked", "free"] = "evidence"
    # Candidates per prompt; each gets a one-token label A..Z then a..z. Longer lists are
    # split into windows whose scores are centred (see docs/ranking.md).
    window_size: int = Field(20, ge=2, le=52)
    # Shuffled candidate orders per request (1 = the retrieval order only).
    permutations: int = Field(1, ge=1, le=16)
    aggregate: Literal["borda", "mean"] = "borda"
    # modes "scoring" and "retrieval": rationales for the top-r items (0 = none). Listwise
    # two_phase explains all k.
    rationale_top_r: int = Field(10, ge=0, le=100)
    # With permutations > 1: if the list's stability (mean Spearman correlation between
    # each permutation's ranking and the aggregate) is below the threshold, return the
    # retrieval order instead, flagged in Trace.fallback.
    unstable_fallback: bool = False
    stability_threshold: float = Field(0.5, ge=-1.0, le=1.0)
    # Final score = w * minmax(LLM score) + (1 - w) * minmax(retrieval score).
    fusion_weight: float = Field(1.0, ge=0.0, le=1.0)
    # Label-position calibration (genre_agent.ranking.calibration): "content_free" scores one extra
    # prompt per window whose candidates are placeholders and subtracts its per-label
    # logprobs, removing the model's prior for label positions (docs/tuning.md).
    calibration: Literal["none", "content_free"] = "none"
    # Start each candidate's text with its catalog popularity tier, counted over the
    # interactions the ranker may see (genre_agent.ranking.popularity_hint). Both ranking modes.
    popularity_hint: bool = False
    learned: LearnedConfig = LearnedConfig()

    @model_validator(mode="after")
    def _fusion_needs_scores(self) -> RankingConfig:
        if self.fusion_weight < 1.0 and self.mode != "scoring":
            raise ValueError(
                f"fusion_weight = {self.fusion_weight} needs mode = 'scoring': a listwise "
                "answer is an order without scores to fuse (use 1.0, or mode = 'scoring')"
            )
        return self
