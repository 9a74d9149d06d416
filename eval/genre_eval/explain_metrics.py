"""Faithfulness and quality of rationales: pure per-user functions over recorded explanations.

An explanation is what ``genre_eval.lines.result_lines`` records for a ranked item with a
rationale (:func:`explanation_entry`): the sentence, its cites, the evidence it was given and
the item's title and genres. Each rate below takes one user's explanations (one result line) and
returns a share in [0, 1], or None when undefined (no rationale, no bigram); the summary
averages them over users with bootstrap CIs. :func:`removals` and :func:`rank_drop`
(``genre_eval.counterfactual``): what the runner removes from a history, how far items fell.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from genre_agent.ranking.grounding import (
    BROAD_GENRES,
    CATEGORY_WORDS,
    article,
    attributes,
    display_title,
    grammar_faults,
    markup_problems,
    safe_title,
    strip_titles,
    unsupported_claims,
    unsupported_genres,
)
from genre_agent.ranking.rationales import shares_text
from genre_agent.types import RankedItem
from genre_eval.counterfactual import rank_drop as rank_drop
from genre_eval.counterfactual import removals as removals
from genre_eval.explain_style import DECADE_WORD_RE, prompt_speak_rate, share

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
            {"id": s.id, "title": s.title, "shared": list(s.shared), "by": list(s.by)}
            for s in (ev.history if ev is not None else [])
        ],
        "unsupported_terms": list(item.unsupported_terms),
        "shared": list(ev.shared) if ev is not None else [],
        # The request words found in the item's data, and the item's own year and tags:
        # what a sentence for a request without history may name.
        "request": list(ev.request) if ev is not None else [],
        "year": item.item.metadata.get("year"),
        "tags": sorted(a.split(" ", 1)[1] for a in attributes(item.item) if a.startswith("tag ")),
    }


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
    return share(is_grounded(e, visible) for e in entries)


def unsupported_rate(entries: Sequence[Explanation]) -> float | None:
    """unsupported = |{e : unsupported_terms(e) ≠ ∅}| / |E|."""
    return share(bool(e.get("unsupported_terms")) for e in entries)


def is_cut(rationale: str) -> bool:
    """A sentence that does not end with . ! or ? (closing quotes or brackets may follow)."""
    return not _END_RE.search(rationale.rstrip())


def truncation_rate(entries: Sequence[Explanation]) -> float | None:
    """truncation = |{e : e does not end with . ! or ?}| / |E|."""
    return share(is_cut(str(e["rationale"])) for e in entries)


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
    return share(
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
    return share(counts[_norm(r)] > 1 for r in rationales)


# -- rationales worth reading (issue 19 items 3 and 4) ---------------------------------------
# Each function below takes one recorded explanation (:func:`explanation_entry`); records of
# older runs lack "by", "request", "year" and "tags", which then count as empty (the year
# comes from the title).
_TITLE_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")
_COLIKED_RE = re.compile(
    r"\b(?:people|viewers|fans|users|those|others|audiences?|anyone)\s+who\s+(?:also\s+)?"
    r"(?:liked|loved|enjoyed|watched|rated)\b|\bfans\s+of\b|\balso\s+(?:liked|loved|enjoyed|"
    r"watched)\b|\b(?:liked|loved|enjoyed|watched)\s+(?:it\s+)?(?:too|as\s+well)\b|"
    r"\bpopular\s+(?:with|among)\b|\bwatched\s+together\b|\bsame\s+(?:viewers|audience)\b",
    re.IGNORECASE,
)


def _cited_support(entry: Explanation) -> list[Mapping[str, Any]]:
    cited = list(dict.fromkeys(entry.get("cites", [])))
    by_id = {s["id"]: s for s in entry.get("support", [])}
    return [by_id[c] for c in cited if c in by_id]


def _year(entry: Explanation) -> int | None:
    year = entry.get("year")
    if isinstance(year, int):
        return year
    m = _TITLE_YEAR_RE.search(str(entry.get("title", "")))
    return int(m.group(1)) if m else None


def _item_genres(entry: Explanation) -> set[str]:
    return {g for g in str(entry.get("genres", "")).split("|") if g}


def unsupported_claim_list(entry: Explanation) -> list[str]:
    """``ranking.grounding.unsupported_claims`` of the recorded sentence against its
    recorded evidence: capitalised names and numbers, category words in any case, decades,
    and URLs, domains, codes, prices and superlatives that no attribute holds."""
    return unsupported_claims(
        str(entry["rationale"]),
        title=str(entry.get("title", "")),
        genres=_item_genres(entry),
        year=_year(entry),
        tags=entry.get("tags") or [],
        cited=[(s["title"], s["shared"]) for s in _cited_support(entry)],
        request=entry.get("request") or [],
    )


def unsupported_claim_rate(entries: Sequence[Explanation]) -> float | None:
    """unsupported claims = |{e : unsupported_claim_list(e) ≠ ∅}| / |E| (the widened check,
    recomputed from the record; ``unsupported_rate`` counts what the service flagged)."""
    return share(bool(unsupported_claim_list(e)) for e in entries)


def named_facts(entry: Explanation) -> list[tuple[str, str]]:
    """The true facts the sentence names, as (kind, value): a cited liked item by its title
    ("liked"); a genre of the item or one a cited item shares, by name or category word
    ("genre"); a tag of the item or a cited item's shared tag ("tag"); the item's decade or a
    shared one ("decade"); the item's year ("year"); that people who liked a cited item also
    liked this one, when item-kNN found that cited item ("co-liked"); a request word the item
    matches ("request"). Words inside titles are not facts."""
    text = str(entry["rationale"])
    cited = _cited_support(entry)
    facts: list[tuple[str, str]] = []
    for s in cited:
        if any(_names(text, f, len(f) >= _SHORT_TITLE) for f in _title_forms(s["title"])):
            facts.append(("liked", s["id"]))
    bare = strip_titles(text, [str(entry.get("title", "")), *(s["title"] for s in cited)])
    shared = [a for s in cited for a in s["shared"]]
    genres = _item_genres(entry) | {a[6:] for a in shared if a.startswith("genre ")}
    for word, genre in CATEGORY_WORDS.items():
        if genre in genres and _names(bare, word):
            facts.append(("genre", genre))
    tags = [*(entry.get("tags") or []), *(a[4:] for a in shared if a.startswith("tag "))]
    facts += [("tag", t.lower()) for t in tags if _names(bare, t)]
    year = _year(entry)
    decades = {a for a in shared if DECADE_WORD_RE.fullmatch(a)}
    if year is not None:
        decades.add(f"{year // 10 * 10}s")
        if re.search(rf"(?<!\d){year}(?!\d)", bare):
            facts.append(("year", str(year)))
    facts += [("decade", d) for d in DECADE_WORD_RE.findall(bare) if d in decades]
    if _COLIKED_RE.search(bare) and any("itemknn" in s.get("by", []) for s in cited):
        facts.append(("co-liked", ",".join(s["id"] for s in cited)))
    facts += [("request", w) for w in entry.get("request") or [] if _names(bare, w)]
    return list(dict.fromkeys(facts))


def grounded_facts(entries: Sequence[Explanation]) -> float | None:
    """grounded facts = mean over E of |named_facts(e)| (distinct true facts per sentence)."""
    return mean_or_none([float(len(named_facts(e))) for e in entries])


def is_weak_link(entry: Explanation) -> bool | None:
    """The only link the sentence names between the item and the user is weak: a decade,
    or one broad genre (``grounding.BROAD_GENRES``), or nothing at all. A link is strong
    when the sentence names a tag or a non-broad genre that a cited liked item shares, two
    or more shared broad genres, two or more cited liked items, that people who liked a
    cited item also liked this one (item-kNN), or a request word the item matches. None
    (not counted) when the item had neither supporting history nor request words."""
    if not entry.get("support") and not entry.get("request"):
        return None
    facts = named_facts(entry)
    kinds = {k for k, _ in facts}
    if kinds & {"co-liked", "request"} or sum(k == "liked" for k, _ in facts) >= 2:
        return False
    shared = {a for s in _cited_support(entry) for a in s["shared"]}
    linked_genres = {v for k, v in facts if k == "genre" and f"genre {v}" in shared}
    linked_tags = {v for k, v in facts if k == "tag" and f"tag {v}" in shared}
    if linked_tags or linked_genres - BROAD_GENRES or len(linked_genres) >= 2:
        return False
    return True


def weak_link_rate(entries: Sequence[Explanation]) -> float | None:
    """weak links = |{e : is_weak_link(e)}| / |{e : is_weak_link(e) is not None}|."""
    return share(w for w in (is_weak_link(e) for e in entries) if w is not None)


def _subsets(values: Sequence[str], cap: int = 6) -> list[list[str]]:
    vs = list(values)[:cap]
    return [[v for i, v in enumerate(vs) if mask >> i & 1] for mask in range(1, 1 << len(vs))]


def template_forms(entry: Explanation) -> set[str]:
    """Sentences that fixed format strings write from the same evidence (normalised: lower
    case, single spaces). The format before this work, "{Like|As with} {title}, it shares
    {shares_text(S)}." for every non-empty subset S of what that liked item shares; and the
    obvious one-slot forms a rewrite could fall back to: "{Like|As with} {title}, it is
    {a} {value} film.", "Popular with people who also liked {title}.", "People who liked
    {title} also liked it.", "{A} {year} {genre} film, as asked.", "{A} {genre} film from
    the {decade}."."""
    forms: set[str] = set()
    year = _year(entry)
    genres = sorted(_item_genres(entry))
    for s in entry.get("support", []):
        titles = _title_forms(s["title"]) + [s["title"], display_title(safe_title(s["title"]))]
        for title in dict.fromkeys(titles):
            for opener in ("Like", "As with"):
                for subset in _subsets(s["shared"]):
                    forms.add(f"{opener} {title}, it shares {shares_text(subset)}.")
                for value in attribute_values(s["shared"]):
                    forms.add(f"{opener} {title}, it is {article(value)} {value} film.")
            forms.add(f"Popular with people who also liked {title}.")
            forms.add(f"People who liked {title} also liked it.")
    for g in genres:
        if year is not None:
            forms.add(f"{article(str(year))} {year} {g} film, as asked.")
            forms.add(f"{article(g)} {g} film from the {year // 10 * 10}s.")
    return {_norm(f) for f in forms}


def is_template(entry: Explanation) -> bool:
    """The sentence is, word for word (case and spacing aside), one of template_forms (the
    titles as MovieLens, the core and the service's floor sentence write them)."""
    return _norm(str(entry["rationale"])) in template_forms(entry)


def template_rate(entries: Sequence[Explanation]) -> float | None:
    """template-reducibility = |{e : is_template(e)}| / |E|."""
    return share(is_template(e) for e in entries)


def grammar_fault_rate(entries: Sequence[Explanation]) -> float | None:
    """grammar faults = |{e : grammar_faults(e) ≠ ∅}| / |E| (``ranking.grounding``: plural
    agreement, doubled words, dangling conjunctions, a/an; text inside titles skipped)."""

    def titles(e: Explanation) -> list[str]:
        raw = [str(e.get("title", "")), *(s["title"] for s in e.get("support", []))]
        return [f for t in raw for f in _title_forms(t) + [t]]

    return share(bool(grammar_faults(str(e["rationale"]), titles(e))) for e in entries)


def markup_rate(entries: Sequence[Explanation]) -> float | None:
    """markup = |{e : e holds <data>, </data>, an <angle-bracket> or ‹placeholder›}| / |E|."""
    return share(bool(markup_problems(str(e["rationale"]))) for e in entries)


def likens_to_itself(entry: Explanation) -> bool:
    """The sentence cites the item itself, or says "like <the item's own title>"."""
    if entry.get("item_id") in set(entry.get("cites", [])):
        return True
    text = str(entry["rationale"])
    return any(
        re.search(rf"\b(?:like|as with|similar to)\s+{re.escape(f)}(?!\w)", text, re.IGNORECASE)
        for f in _title_forms(str(entry.get("title", "")))
    )


def self_likening_rate(entries: Sequence[Explanation]) -> float | None:
    """self-likening = |{e : likens_to_itself(e)}| / |E|."""
    return share(likens_to_itself(e) for e in entries)


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
        "template_rate": template_rate(entries),
        "weak_link_rate": weak_link_rate(entries),
        "grounded_facts": grounded_facts(entries),
        "unsupported_claim_rate": unsupported_claim_rate(entries),
        "grammar_fault_rate": grammar_fault_rate(entries),
        "prompt_speak_rate": prompt_speak_rate(entries),
        "markup_rate": markup_rate(entries),
        "self_likening_rate": self_likening_rate(entries),
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
    "template_rate",
    "weak_link_rate",
    "grounded_facts",
    "unsupported_claim_rate",
    "grammar_fault_rate",
    "prompt_speak_rate",
    "markup_rate",
    "self_likening_rate",
)
CF_METRICS = ("cf_drop_cited", "cf_drop_random")
