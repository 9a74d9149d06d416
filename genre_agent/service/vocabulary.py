"""The catalog's words for the normaliser: folding, tokens, title keys, the vocabulary."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from genre_agent.catalog.items import Item


def _fold_case_kept(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2013", "-")
    return text.replace("&", " and ")


def fold(text: str) -> str:
    """Lower case, accents stripped, curly quotes straightened, "&" read as "and"."""
    return _fold_case_kept(text).lower()


@dataclass(frozen=True)
class Tok:
    text: str
    start: int
    end: int
    dash: bool  # a dash right before it ("1995-2005", "non-horror")
    upper: bool  # written with a capital letter (a title, usually)


_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[,.;:!?/+]")


def tokenize(text: str) -> list[Tok]:
    kept = _fold_case_kept(text)
    folded = kept.lower()
    toks = []
    for m in _TOKEN_RE.finditer(folded):
        before = folded[max(0, m.start() - 1) : m.start()]
        toks.append(
            Tok(
                m.group().replace("'", ""),
                m.start(),
                m.end(),
                before == "-",
                m.start() < len(kept) and kept[m.start()].isupper(),
            )
        )
    return toks


_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "die", "das", "der", "l")


def title_keys(title: str) -> list[tuple[str, ...]]:
    """Lookup keys of a catalog title: "Matrix, The (1999)" -> ("the","matrix"), ("matrix",).

    Parenthesised parts (year, a.k.a. titles, original titles) become keys of their own; a
    title with a subtitle ("Star Wars: Episode IV - A New Hope") is also found by its part
    before the colon.
    """
    t = fold(title).replace("&", " and ")
    parts = re.findall(r"\(([^()]*)\)", t)
    main = re.sub(r"\([^()]*\)", " ", t).strip()
    names = [main] + [re.sub(r"^a\.k\.a\.\s*", "", p).strip() for p in parts]
    keys: list[tuple[str, ...]] = []  # the main title's own key first, then the aliases
    for name in names:
        if not name or re.fullmatch(r"\d{4}", name):
            continue
        m = re.match(r"^(.*), (" + "|".join(_ARTICLES) + r")$", name)
        if m:
            name = f"{m.group(2)} {m.group(1)}"
        for variant in (name, name.split(":")[0]):
            words = tuple(
                w.replace("'", "") for w in re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", variant)
            )
            if not words:
                continue
            keys.append(words)
            if len(words) > 1 and words[0] in _ARTICLES:
                keys.append(words[1:])
    return list(dict.fromkeys(keys))


def _id_order(item_id: str) -> tuple[int, int | str]:
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)


@dataclass(frozen=True)
class TitleEntry:
    id: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    popularity: int


@dataclass
class Vocabulary:
    """The catalog's words: genres, titles (by lookup key) and the newest year."""

    genres: tuple[str, ...]
    titles: dict[tuple[str, ...], list[TitleEntry]] = field(default_factory=dict)
    max_year: int = 2020
    max_title_len: int = 1

    @classmethod
    def from_items(
        cls,
        items: Iterable[Item],
        genres: Sequence[str],
        popularity: Mapping[str, int] | None = None,
    ) -> Vocabulary:
        pop = popularity or {}
        vocab = cls(tuple(genres))
        years = []
        tiered: dict[tuple[str, ...], list[tuple[int, TitleEntry]]] = {}
        for it in items:
            year = it.metadata.get("year")
            year = year if isinstance(year, int) else None
            if year is not None:
                years.append(year)
            gs = tuple(g for g in str(it.metadata.get("genres", "")).split("|") if g)
            entry = TitleEntry(it.id, it.title, year, gs, int(pop.get(it.id, 0)))
            for tier, key in enumerate(title_keys(it.title)):
                tiered.setdefault(key, []).append((min(tier, 1), entry))
        for key, entries in tiered.items():
            # A title's own name beats an alias ("heat" is Heat (1995) before The Heat);
            # then the more often rated, then the lower id.
            entries.sort(key=lambda te: (te[0], -te[1].popularity, _id_order(te[1].id)))
            vocab.titles[key] = [e for _, e in entries]
        vocab.max_year = max(years) if years else 2020
        vocab.max_title_len = max((len(k) for k in vocab.titles), default=1)
        return vocab
