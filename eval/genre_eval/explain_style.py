"""Explanation metrics of style: a template the model settles into, and prompt speak.

``skeleton_shares`` is over a whole run (not per user): ``template_rate``
(``genre_eval.explain_metrics``) sees only the evidence format's strings; a model that
writes every sentence from one format string of its own passes it, and these see that.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from genre_agent.ranking.grounding import CATEGORY_WORDS, strip_titles, title_forms, voice_faults

Explanation = Mapping[str, Any]
DECADE_WORD_RE = re.compile(r"\b(?:1[89]|20)\d0s\b")


def share(flags: Iterable[bool]) -> float | None:
    """The share of true flags; None for none."""
    xs = list(flags)
    return sum(xs) / len(xs) if xs else None


def skeleton(entry: Explanation) -> str:
    """The sentence with every fact abstracted to a slot: titles of the item and of its
    support -> {title}, genre and category words -> {genre}, tags -> {tag}, decades ->
    {decade}, years -> {year}, request words -> {request}; lower case, single spaces. Two
    rationales with one skeleton are written by one format string over their evidence."""
    text = " ".join(str(entry["rationale"]).split())
    slots: list[tuple[str, str]] = []
    titles = [str(entry.get("title", "")), *(s["title"] for s in entry.get("support", []))]
    slots += [(f, "{title}") for t in titles for f in [*title_forms(t), t] if f]
    slots += [(w, "{genre}") for w in CATEGORY_WORDS]
    tags = [*(entry.get("tags") or [])]
    tags += [a[4:] for s in entry.get("support", []) for a in s["shared"] if a.startswith("tag ")]
    slots += [(t, "{tag}") for t in tags if t]
    slots += [(w, "{request}") for w in entry.get("request") or [] if w]
    for phrase, slot in sorted(slots, key=lambda x: len(x[0]), reverse=True):
        text = re.sub(rf"(?<![\w{{]){re.escape(phrase)}(?![\w}}])", slot, text, flags=re.I)
    text = DECADE_WORD_RE.sub("{decade}", text)
    text = re.sub(r"(?<!\d)(?:1[89]|20)\d\d(?!\d)", "{year}", text)
    return text.lower()


def skeleton_shares(entries: Sequence[Explanation]) -> dict[str, float | None]:
    """Over a whole run (not per user): ``top_skeleton_share``, the share of rationales the
    single most used skeleton writes (what one fixed format string, the model's own, would
    reproduce), and ``repeated_skeleton_share``, the share whose skeleton another rationale
    of the run shares. ``template_rate`` sees only the evidence format's strings; these see a
    template the model settles into."""
    counts = Counter(skeleton(e) for e in entries)
    n = sum(counts.values())
    if not n:
        return {"top_skeleton_share": None, "repeated_skeleton_share": None}
    return {
        "top_skeleton_share": max(counts.values()) / n,
        "repeated_skeleton_share": sum(c for c in counts.values() if c > 1) / n,
    }


def prompt_speak_rate(entries: Sequence[Explanation]) -> float | None:
    """prompt speak = |{e : voice_faults(e) ≠ ∅}| / |E|: the sentence talks about "the
    user" or "recommended" (the prompt's words) instead of to the reader."""
    return share(
        bool(
            voice_faults(
                str(e["rationale"]),
                [str(e.get("title", "")), *(s["title"] for s in e.get("support", []))],
            )
        )
        for e in entries
    )


def names_itself(entry: Explanation) -> bool:
    """A sentence that cites liked items and also names the recommended item itself ("You
    enjoyed Dirty Dancing and Tangled" for Dirty Dancing): it reads as if the user had seen
    it. Text inside the cited items' titles is not read; a sentence without cites (a
    request without history) may name its item."""
    if not entry.get("cites"):
        return False
    support = [s["title"] for s in entry.get("support", []) if s["id"] in entry["cites"]]
    own = [f for f in title_forms(str(entry.get("title", ""))) if len(f) >= 3]
    text = strip_titles(str(entry["rationale"]), [t for t in support if t != entry.get("title")])
    return any(re.search(rf"(?<!\w){re.escape(f)}(?!\w)", text, re.IGNORECASE) for f in own)


def names_itself_rate(entries: Sequence[Explanation]) -> float | None:
    """names itself = |{e : names_itself(e)}| / |E|."""
    return share(names_itself(e) for e in entries)
