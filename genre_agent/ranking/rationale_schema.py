"""The answer schemas of a rationale: the "free" format's regex and the "evidence" format's
pydantic model and its regex, whose sentence opens with the cited item's title and names an
attribute it shares (moved from genre_agent.ranking.rationales)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter, create_model


def rationale_regex(max_chars: int) -> str:
    """The "free" format: one plain string of 8..max_chars characters (no citations)."""
    return r'\{"rationale": "[^"\\\n\r\t]{8,' + str(max_chars) + r'}"\}'


# The free part of a sentence: printable ASCII without a double quote or a backslash, so the
# decoder can neither close the JSON string early nor emit stray bytes.
_PLAIN = r"[ !#-\[\]-~]"
OPENERS = ("Like", "As with")


def _sentence_pattern(title: str | None, shared: Sequence[str], max_chars: int) -> str:
    """One sentence ending with a period. With a supporting title, it opens with "Like
    <title>," (or "As with <title>,"), so it names the evidence it cites; when that item
    shares attributes with the recommendation, the sentence must also name one of them
    (a genre, tag or decade), so every rationale states at least one true, shared fact."""
    if title is None:
        return rf"^[A-Z]{_PLAIN}{{20,{max_chars}}}\.$"
    openers = "|".join(OPENERS)
    head = rf"^({openers}) {_literal(title)}, "
    values = sorted({v for a in shared for v in _attribute_words(a)}, key=len, reverse=True)
    if not values:
        return rf"{head}{_PLAIN}{{10,{max_chars}}}\.$"
    half = max_chars // 2
    alt = "|".join(_literal(v) for v in values)
    return rf"{head}{_PLAIN}{{0,{half}}}({alt}){_PLAIN}{{0,{half}}}\.$"


def _attribute_words(attribute: str) -> list[str]:
    """How a sentence may name an attribute: "genre Sci-Fi" -> "Sci-Fi", "sci-fi";
    "tag space" -> "space"; "1990s" -> "1990s"."""
    value = attribute.split(" ", 1)[1] if attribute.startswith(("genre ", "tag ")) else attribute
    if not all(" " <= ch <= "~" and ch not in '"\\' for ch in value):
        return []
    return list(dict.fromkeys([value, value.lower()]))


def _literal(text: str) -> str:
    r"""``text`` as a regex literal (spaces stay spaces: some grammar engines reject ``\ ``)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def _citable(title: str) -> bool:
    """A title that can sit inside the JSON string as written (no quote, backslash or control)."""
    return all(ch >= " " and ch not in '"\\' for ch in title)


def answer_model(support: Sequence[tuple[str, str, tuple[str, ...]]], max_chars: int) -> Any:
    """The "evidence" answer schema for supports ``[(id, title, shared attributes), ...]``.

    One alternative per support: the sentence opens with that support's title and ``cites``
    is exactly its id, so the cited id and the named title always agree. Without support,
    the sentence is free (but complete) and ``cites`` is empty. Every answer is
    ``{"rationale": "...", "cites": [...]}`` with ``extra="forbid"``.
    """
    variants: list[type[BaseModel]] = []
    citable = [t for t in dict.fromkeys(support) if _citable(t[1])]
    # A support that shares nothing nameable with the item leaves the sentence free; offer
    # it only when no support shares anything.
    with_facts = [t for t in citable if any(_attribute_words(a) for a in t[2])]
    for n, (item_id, title, shared) in enumerate(with_facts or citable):
        variants.append(
            create_model(
                f"Explanation{n}",
                __config__=ConfigDict(extra="forbid"),
                rationale=(str, Field(pattern=_sentence_pattern(title, shared, max_chars))),
                cites=(list[Literal[(item_id,)]], Field(min_length=1, max_length=1)),  # type: ignore[valid-type]
            )
        )
    if not variants:
        variants.append(
            create_model(
                "ExplanationFree",
                __config__=ConfigDict(extra="forbid"),
                rationale=(str, Field(pattern=_sentence_pattern(None, (), max_chars))),
                cites=(list[str], Field(max_length=0)),
            )
        )
    if len(variants) == 1:
        return variants[0]
    return RootModel[Union[tuple(variants)]]  # type: ignore[valid-type,misc]  # noqa: UP007


@lru_cache(maxsize=4096)
def schema_regex(support: tuple[tuple[str, str, tuple[str, ...]], ...], max_chars: int) -> str:
    from outlines_core.json_schema import build_regex_from_schema

    schema = TypeAdapter(answer_model(support, max_chars)).json_schema()
    return str(build_regex_from_schema(json.dumps(schema), whitespace_pattern=r" ?"))
