"""Faithfulness and quality of rationales: pure per-user functions over recorded explanations.

An explanation is what ``Runner._lines`` records for a ranked item with a rationale
(:func:`explanation_entry`): the sentence, its cites, the evidence it was given and the item's
title and genres. Each rate below takes one user's explanations (one result line) and
returns a share in [0, 1], or None when it is undefined for that user (no rationale, no
bigram). The counterfactual helpers (:func:`removals`, :func:`rank_drop`) say what the runner
removes from a history and how far an item fell. The summary averages the per-user values
over users, with bootstrap CIs (``genre_agent.eval.summary``).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from genre_agent.ranking.grounding import unsupported_genres
from genre_agent.types import RankedItem

Explanation = Mapping[str, Any]

_YEAR_RE = re.compile(r"\s*\(\d{4}(?:[-–]\d{0,4})?\)\s*$")
_ARTICLE_RE = re.compile(r"^(?P<core>.+),\s*(?P<article>The|A|An)$", re.IGNORECASE)
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Closing quotes and brackets may follow the final punctuation: 'He said "go."' is whole.
_END_RE = re.compile(r"[.!?][\"'’”)\]]*$")
# Titles this short are often everyday words in lower case ("It", "Up", "Her"): they are
# matched with their case.
_SHORT_TITLE = 4


def explanation_entry(item: RankedItem) -> dict[str, Any]:
    """What a result line records about one explained item (see the module doc)."""
    ev = item.evidence
    return {
        "item_id": item.item.id,
        "title": item.item.title,
        "genres": str(item.item.metadata.get("genres", "")),
        "rationale": item.rationale or "",
        "cites": list(item.cites),
        "evidence_ids": ev.ids() if ev is not None else [],
        # The supporting history items' titles and shared attributes: what a cite allows.
        "support": [
            {"id": s.id, "title": s.title, "shared": list(s.shared)}
            for s in (ev.history if ev is not None else [])
        ],
        "unsupported_terms": list(item.unsupported_terms),
        "shared": list(ev.shared) if ev is not None else [],
    }


def _share(flags: Iterable[bool]) -> float | None:
    xs = list(flags)
    return sum(xs) / len(xs) if xs else None


def allowed_text(entry: Explanation) -> str:
    """The item's title and genres, the cited supporting items' titles and shared
    attributes, and the item's shared attributes: what a grounded sentence may mention."""
    cited = set(entry.get("cites", []))
    parts = [str(entry.get("title", "")), str(entry.get("genres", "")).replace("|", " ")]
    for s in entry.get("support", []):
        if s["id"] in cited:
            parts += [str(s["title"]), *s["shared"]]
    parts += list(entry.get("shared", []))
    return " ".join(parts)


def is_grounded(entry: Explanation, history_ids: Iterable[str]) -> bool:
    """Every cite is in the visible history and no genre word is unsupported by
    :func:`allowed_text` (``ranking.grounding.unsupported_genres``)."""
    visible = set(history_ids)
    if any(c not in visible for c in entry.get("cites", [])):
        return False
    return not unsupported_genres(str(entry["rationale"]), allowed_text(entry))


def grounding_rate(entries: Sequence[Explanation], history_ids: Iterable[str]) -> float | None:
    """grounding = |{e : cites(e) ⊆ H and unsupported_genres(e) = ∅}| / |E|, H the user's
    visible history, E the user's rationales."""
    visible = set(history_ids)
    return _share(is_grounded(e, visible) for e in entries)


def unsupported_rate(entries: Sequence[Explanation]) -> float | None:
    """unsupported = |{e : unsupported_terms(e) ≠ ∅}| / |E|."""
    return _share(bool(e.get("unsupported_terms")) for e in entries)


def is_cut(rationale: str) -> bool:
    """A sentence that does not end with . ! or ? (closing quotes or brackets may follow)."""
    return not _END_RE.search(rationale.rstrip())


def truncation_rate(entries: Sequence[Explanation]) -> float | None:
    """truncation = |{e : e does not end with . ! or ?}| / |E|."""
    return _share(is_cut(str(e["rationale"])) for e in entries)


def truncated_attempt_rate(truncated: int, attempts: int) -> float | None:
    """truncated attempts / all attempts, where all attempts = accepted rationales + rejected
    ones ("truncated rationale" and "malformed rationale" entries of the trace)."""
    if truncated < 0 or truncated > attempts:
        raise ValueError(f"truncated attempts {truncated} not within 0..{attempts}")
    return truncated / attempts if attempts else None


def title_core(title: str) -> str:
    """The title without its "(year)" suffix: "Toy Story (1995)" -> "Toy Story"."""
    return _YEAR_RE.sub("", title).strip()


def _title_forms(title: str) -> list[str]:
    """The core title, and for "Matrix, The" also "The Matrix" (MovieLens moves articles)."""
    core = title_core(title)
    forms = [core] if core else []
    m = _ARTICLE_RE.match(core)
    if m:
        forms.append(f"{m['article']} {m['core']}")
    return forms


def _names(text: str, phrase: str, ignore_case: bool = True) -> bool:
    flags = re.IGNORECASE if ignore_case else 0
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, flags) is not None


def attribute_values(shared: Iterable[str]) -> list[str]:
    """The value part of shared attributes: "genre Comedy" -> "Comedy", "tag space" ->
    "space", "1980s" -> "1980s"."""
    out = []
    for a in shared:
        kind, _, value = a.partition(" ")
        out.append(value if kind in {"genre", "tag"} and value else a)
    return [v for v in out if v.strip()]


def is_specific(rationale: str, history_titles: Iterable[str], shared: Iterable[str]) -> bool:
    """The sentence names a visible history title (without its "(year)", as a whole phrase,
    in any case unless shorter than 4 characters) or a shared attribute value."""
    titles = [f for t in history_titles for f in _title_forms(t)]
    if any(_names(rationale, t, len(t) >= _SHORT_TITLE) for t in titles):
        return True
    return any(_names(rationale, v) for v in attribute_values(shared))


def specificity(entries: Sequence[Explanation], history_titles: Sequence[str]) -> float | None:
    """specificity = |{e : e names a title of H or a value of shared(e)}| / |E|."""
    return _share(
        is_specific(str(e["rationale"]), history_titles, e.get("shared", [])) for e in entries
    )


def _bigrams(text: str) -> list[tuple[str, str]]:
    words = _WORD_RE.findall(text.lower())
    return list(zip(words, words[1:], strict=False))


def distinct_2(rationales: Sequence[str]) -> float | None:
    """distinct-2 = |unique word bigrams| / |word bigrams| over one user's rationales
    (lower-cased words; bigrams within each sentence)."""
    grams = [g for r in rationales for g in _bigrams(r)]
    return len(set(grams)) / len(grams) if grams else None


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def duplicate_share(rationales: Sequence[str]) -> float | None:
    """duplicates = |{r : r equals another rationale of the list}| / |R| (case and spacing
    ignored)."""
    counts = Counter(_norm(r) for r in rationales)
    return _share(counts[_norm(r)] > 1 for r in rationales)


def rank_drop(before: Sequence[str], after: Sequence[str], item_id: str) -> int:
    """rank_after(i) - rank_before(i) (1-based; positive: the item fell). An item missing from
    ``after`` (cut at k) ranks len(after) + 1."""
    if item_id not in before:
        raise ValueError(f"item {item_id!r} is not in the first ranking")
    new = after.index(item_id) + 1 if item_id in after else len(after) + 1
    return new - (list(before).index(item_id) + 1)


def removals(
    explained: Sequence[tuple[str, Sequence[str]]], history_ids: Sequence[str], seed: str
) -> list[tuple[str, list[str], list[str]]]:
    """For each (item, cites): (item, the cited history items, as many random history items).

    Cites outside the visible history are ignored; an item with no cite left, or whose
    removal would empty the history, is skipped. The random items are drawn uniformly from
    the whole visible history with a generator seeded by ``seed`` (the user id)."""
    visible = list(dict.fromkeys(history_ids))
    known = set(visible)
    rng = random.Random(seed)
    out = []
    for item_id, cites in explained:
        cited = [c for c in dict.fromkeys(cites) if c in known]
        if not cited or len(cited) >= len(visible):
            continue
        out.append((item_id, cited, rng.sample(visible, len(cited))))
    return out


def mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def user_metrics(
    entries: Sequence[Explanation],
    history_ids: Sequence[str],
    history_titles: Sequence[str],
    truncated_attempts: int,
    rejected_attempts: int,
) -> dict[str, float | None]:
    """Every per-user metric of one result line (``rejected_attempts`` counts the truncated
    and the malformed rejected rationales)."""
    texts = [str(e["rationale"]) for e in entries]
    return {
        "grounding_rate": grounding_rate(entries, history_ids),
        "unsupported_rate": unsupported_rate(entries),
        "truncation_rate": truncation_rate(entries),
        "truncated_attempt_rate": truncated_attempt_rate(
            truncated_attempts, len(entries) + rejected_attempts
        ),
        "specificity": specificity(entries, history_titles),
        "distinct_2": distinct_2(texts),
        "duplicate_share": duplicate_share(texts),
    }


# Per-user metrics in report order; the counterfactual ones come from the runner.
METRICS = (
    "grounding_rate",
    "unsupported_rate",
    "truncation_rate",
    "truncated_attempt_rate",
    "specificity",
    "distinct_2",
    "duplicate_share",
)
CF_METRICS = ("cf_drop_cited", "cf_drop_random")
