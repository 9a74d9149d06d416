"""Options and helpers shared by the ``genre`` sub-commands (parsing only)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from genre_agent.config import Config, RankingConfig, load_config
from genre_agent.errors import GenreError, shorten

err = Console(stderr=True)


class CliState:
    """What the error handler needs from the command that failed."""

    debug: bool = False  # --debug: a traceback instead of the one-line error
    config: Config | None = None  # the last config a command loaded (names engine and URL)


STATE = CliState()

# C0 and C1 controls (ESC and CSI start ANSI sequences), DEL, and the bidi controls that
# reorder what a terminal shows. Catalog text, LLM text and ids are shown with these escaped.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(value: object, keep_newlines: bool = False) -> str:
    """``value`` as text with control characters escaped visibly: ESC -> ``\\x1b``."""

    def escape(m: re.Match[str]) -> str:
        ch = m.group()
        return ch if keep_newlines and ch == "\n" else ch.encode("unicode_escape").decode()

    return _UNSAFE.sub(escape, str(value))


def safe_text(value: object, style: str = "") -> Text:
    """A rich Text of ``value``: never parsed as markup, control characters escaped."""
    return Text(terminal_safe(value), style=style)


# What a JSON encoder leaves raw inside strings: all of _UNSAFE but the C0 controls (always
# escaped in strings; tab, newline and return occur only as whitespace between tokens).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_json(text: str) -> str:
    """JSON text with DEL, C1 and bidi controls written as ``\\uXXXX`` escapes.

    Such characters can only occur inside JSON strings, so the document means the same.
    """
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def check_k(k: int | None, flag: str = "-k") -> int | None:
    """``k`` checked by the rule of ``ranking.k`` (its bounds in RankingConfig)."""
    if k is None:
        return None
    try:
        RankingConfig.model_validate({"k": k})
    except ValidationError:
        bounds = {
            name: getattr(m, name)
            for m in RankingConfig.model_fields["k"].metadata
            for name in ("ge", "le")
            if hasattr(m, name)
        }
        raise GenreError(
            f"{flag} must be between {bounds.get('ge')} and {bounds.get('le')} "
            f"(like ranking.k), got {k}"
        ) from None
    return k


def _server_error_kind(exc: BaseException) -> str | None:
    """ "openai" for an OpenAI client error, "http" for an httpx one, else None."""
    # Only modules already imported can have raised: no import cost on the error path.
    # (openai's own HTTP client is httpx2, whose errors are not httpx's.)
    kinds = [("openai", "APIError", "openai")]
    kinds += [(m, n, "http") for m in ("httpx", "httpx2") for n in ("HTTPError", "InvalidURL")]
    for module, name, kind in kinds:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return kind
    return None


def _request_url(exc: BaseException) -> str | None:
    try:
        return str(exc.request.url)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when it has none
        return None


def describe_error(exc: BaseException, cfg: Config | None = None) -> str | None:
    """The message for an error users can act on, or None for a bug (show its traceback).

    GenreError keeps its message (a CatalogError lists its rows on further lines). An OpenAI
    client error is one line naming the engine and base URL from ``cfg``; a bare httpx error
    (the LLM client's or Chroma's) names the URL it was for, else the engine and the store.
    """
    if isinstance(exc, GenreError):
        return terminal_safe(exc, keep_newlines=True)
    kind = _server_error_kind(exc)
    if kind is None:
        return None
    detail = " ".join(str(exc).split()) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in detail:
        detail += f" ({type(cause).__name__}: {' '.join(str(cause).split())})"
    llm = f"engine {cfg.llm.engine}, base URL {cfg.llm.base_url or '-'}" if cfg else ""
    if kind == "openai":
        head = f"LLM server error ({llm})" if cfg else "LLM server error"
    elif _request_url(exc):
        head = f"HTTP error at {_request_url(exc)}"
    elif cfg is not None:
        store = (
            cfg.store.kind
            if cfg.store.kind != "http"
            else f"http {cfg.store.host}:{cfg.store.port}"
        )
        head = f"HTTP error (LLM {llm}; store {store})"
    else:
        head = "HTTP error"
    return terminal_safe(f"{head}: {type(exc).__name__}: {shorten(detail, 300)}")


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """Click's exception base, from typer's vendored copy (typer >= 0.20 parses with it) and
    from click itself when some command still uses it."""
    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            imported = __import__(module, fromlist=["ClickException"])
        except ImportError:
            continue
        cls = getattr(imported, "ClickException", None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def usage_error(exc: BaseException, fallback_ctx: Any = None) -> tuple[str, int] | None:
    """``(one-line message, exit code)`` for a command-line parsing error, else None (the
    message is empty when there is nothing to add to the help already shown).

    A usage error (unknown option or command, an option without its value, a bad value)
    names what was wrong and the command's usage line, and exits 2. ``fallback_ctx`` is the
    command's click context for errors that carry none (an option missing its value).
    """
    kinds = _click_exception_types()
    if not kinds or not isinstance(exc, kinds):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":
        return "", 2  # a bare group (`genre`, `genre models`): its help is printed already
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None) or fallback_ctx
    is_usage = type(exc).__name__ in {"UsageError", "BadParameter", "NoSuchOption"} or any(
        c.__name__ == "UsageError" for c in type(exc).__mro__
    )
    if ctx is not None:
        usage = " ".join(ctx.get_usage().split())
        usage = usage[len("Usage:") :].strip() if usage.startswith("Usage:") else usage
        message += f" (usage: {usage}; see '{ctx.command_path} --help')"
    code = 2 if is_usage else int(getattr(exc, "exit_code", 1) or 1)
    return message, code


# What quiets each library's logging, and the value for -v. Child processes (vLLM's engine
# process, multiprocessing's resource tracker) inherit os.environ.
QUIET_ENV = "GENRE_QUIET_LIBRARIES"
_LIBRARY_LOG_ENV = {
    QUIET_ENV: ("1", "0"),
    "VLLM_LOGGING_LEVEL": ("ERROR", "INFO"),
    "TRANSFORMERS_VERBOSITY": ("error", "info"),
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": ("1", "0"),
    "HF_HUB_DISABLE_PROGRESS_BARS": ("1", "0"),
    "TQDM_DISABLE": ("1", "0"),
    "TORCH_CPP_LOG_LEVEL": ("ERROR", "WARNING"),  # torch's C++ "[W1207 ...] Warning:" lines
    # The resource tracker's "leaked shared_memory objects" warning at vLLM's shutdown.
    "PYTHONWARNINGS": ("ignore::UserWarning:multiprocessing.resource_tracker", ""),
}
# Loggers and Python warnings (deprecations, FutureWarning) of these packages: shown only
# with -v.
_NOISY = ("vllm", "transformers", "torch", "outlines", "huggingface_hub", "xgrammar")
_NOISY_PACKAGES = r"(" + "|".join(_NOISY) + r")(\.|$)"


def quiet_libraries(verbose: bool) -> None:
    """Silence vLLM's, transformers' and torch's log lines and warnings unless ``verbose``.

    A variable the user set already is left alone. Only logging is affected: our own
    messages (progress, notes, errors) go to stderr as before.
    """
    import os

    for name, (quiet, loud) in _LIBRARY_LOG_ENV.items():
        os.environ.setdefault(name, loud if verbose else quiet)
    _quiet_this_process(os.environ.get(QUIET_ENV) == "1")


def _quiet_this_process(quiet: bool) -> None:
    import logging
    import warnings

    # vLLM logs some lines at import, before it configures its loggers (they reach
    # logging's last-resort handler), so the levels are set here first.
    level = logging.ERROR if quiet else logging.INFO
    for name in _NOISY:
        logging.getLogger(name).setLevel(level)
    if quiet:
        warnings.filterwarnings("ignore", module=_NOISY_PACKAGES)


def _quiet_a_spawned_child() -> None:
    """vLLM's engine process is spawned: it imports the parent's main module (the `genre`
    script, hence this package) before vLLM, but never runs the CLI's options; the
    variable the parent set tells it to be quiet too."""
    import os

    if os.environ.get(QUIET_ENV) == "1":
        _quiet_this_process(True)


_quiet_a_spawned_child()


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML/YAML config file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: llm.engine=fake (repeatable)."),
]


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["llm.engine=fake", "ranking.k=5"]`` -> ``{"llm.engine": "fake", "ranking.k": 5}``."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise GenreError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            result[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            result[key.strip()] = raw
    return result


def cli_config(path: Path | None, pairs: list[str] | None) -> Config:
    """Defaults < file < env < ``--set`` flags."""
    cfg = load_config(path, overrides=parse_overrides(pairs))
    STATE.config = cfg
    return cfg


def announce(msg: str) -> None:
    err.print(safe_text(msg, "dim"))


def progress_bar(*, info: bool = False) -> Any:
    """A rich progress bar on stderr with count, elapsed time and ETA (plus a text field)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=err)


class LabelledBars:
    """A progress callback ``(label, done, total[, info])``: one bar per label, made on first use.

    ``info`` (a name -> number mapping, e.g. the running loss) is shown after the ETA.
    Use as ``with bars.progress: ...``.
    """

    def __init__(self) -> None:
        self.progress = progress_bar(info=True)
        self.tasks: dict[str, Any] = {}

    def __call__(
        self, label: str, done: int, total: int, info: dict[str, float] | None = None
    ) -> None:
        text = "  ".join(f"{k} {v:.3f}" for k, v in (info or {}).items())
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total, completed=0, info=text)
        self.progress.update(self.tasks[label], completed=done, total=total, info=text)
