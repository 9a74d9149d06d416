"""The chat-understanding benchmark: cases, the seeded generator, and its metrics.

A case is one conversation: turns of user text, each with the wishes the session should hold
after it (cumulative: "older ones" keeps the genres of the turn before). Wishes name the
catalog's own genres, years and item ids, so they are checked against the picks' metadata.
Two wishes depend on what the session showed: ``year_max = "older_than_last"`` (older than
every pick of the turn before) and ``year_min = "newer_than_last"``; :func:`resolve` fixes
them at run time from that session's own picks.

The generator reads a catalog (items + popularity) and writes its requests from a small
phrase table of its own, which is not the normaliser's lexicon. It is seeded: the same
catalog and seed give the same cases. Titles are referred to by item id; the generated text
quotes titles, so the generated file for a licensed catalog stays on the machine that made it
(``runs/``), and only the generator and the hand-written part are committed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.errors import GenreError
from genre_eval.chat_bench_cases import RELATIVE as RELATIVE
from genre_eval.chat_bench_cases import SLOTS as SLOTS
from genre_eval.chat_bench_cases import VIOLENT as VIOLENT
from genre_eval.chat_bench_cases import Case as Case
from genre_eval.chat_bench_cases import CaseTurn as CaseTurn
from genre_eval.chat_bench_cases import Expect as Expect
from genre_eval.chat_bench_cases import load_cases as load_cases
from genre_eval.chat_bench_cases import write_cases as write_cases
from genre_eval.chat_bench_metrics import PRF as PRF
from genre_eval.chat_bench_metrics import percentile as percentile
from genre_eval.chat_bench_metrics import pick_ok as pick_ok
from genre_eval.chat_bench_metrics import resolve as resolve
from genre_eval.chat_bench_metrics import slot_prf as slot_prf
from genre_eval.chat_bench_metrics import slot_values as slot_values

# --- generator -------------------------------------------------------------------------------
# The generator's own words for each genre: (adjective, plural noun).
_NAMES: dict[str, tuple[str, str]] = {
    "Action": ("action", "action movies"),
    "Adventure": ("adventure", "adventure films"),
    "Animation": ("animated", "animated films"),
    "Children": ("kids'", "kids' movies"),
    "Comedy": ("comedy", "comedies"),
    "Crime": ("crime", "crime films"),
    "Documentary": ("documentary", "documentaries"),
    "Drama": ("drama", "dramas"),
    "Fantasy": ("fantasy", "fantasy films"),
    "Film-Noir": ("film noir", "film noirs"),
    "Horror": ("horror", "horror movies"),
    "Musical": ("musical", "musicals"),
    "Mystery": ("mystery", "mysteries"),
    "Romance": ("romantic", "romances"),
    "Sci-Fi": ("sci-fi", "science fiction films"),
    "Thriller": ("thriller", "thrillers"),
    "War": ("war", "war movies"),
    "Western": ("western", "westerns"),
}
_MOODS: dict[str, tuple[str, ...]] = {
    "Horror": ("something scary", "a scary movie", "something spooky", "a creepy film"),
    "Comedy": (
        "something funny",
        "a feel-good movie",
        "something to make me laugh",
        "a lighthearted film",
        "something hilarious",
    ),
    "Children": (
        "something for kids",
        "a movie for the kids",
        "something family-friendly",
        "a film for my 8 year old",
    ),
    "Romance": ("something romantic", "a love story"),
    "Thriller": ("something suspenseful", "an edge-of-your-seat film"),
    "Sci-Fi": ("something set in space", "something futuristic"),
    "Drama": ("a tearjerker",),
    "Animation": ("a cartoon",),
    "Western": ("a cowboy movie",),
    "Mystery": ("a whodunit",),
}
# "but {word}" after a title: the genre the word asks for.
_MORE: dict[str, str] = {
    "funnier": "Comedy",
    "scarier": "Horror",
    "more romantic": "Romance",
    "with more action": "Action",
    "more suspenseful": "Thriller",
}
_DECADE_WORDS = {
    1920: "twenties",
    1930: "thirties",
    1940: "forties",
    1950: "fifties",
    1960: "sixties",
    1970: "seventies",
    1980: "eighties",
    1990: "nineties",
}


def _decade_phrases(d: int) -> list[str]:
    short = f"{d % 100:02d}s"
    out = [f"the {d}s", f"{d}s", f"the {short}", f"the '{short}", short]
    if d in _DECADE_WORDS:
        out += [f"the {_DECADE_WORDS[d]}"]
    return out


def _surface(title: str) -> str:
    """A title as people write it: no year or aliases, the article in front."""
    main = re.sub(r"\s*\([^()]*\)", "", title).strip()
    m = re.match(r"^(.*), (The|A|An)$", main)
    return f"{m.group(2)} {m.group(1)}" if m else main


@dataclass
class _Catalog:
    items: list[Item]
    genres: list[str]
    max_year: int
    by_genre_decade: dict[tuple[str, int], int] = field(default_factory=dict)
    titles: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)


def _index(items: Sequence[Item], popularity: Mapping[str, int]) -> _Catalog:
    years = [it.metadata.get("year") for it in items]
    ys = [y for y in years if isinstance(y, int)]
    genres = sorted({g for it in items for g in str(it.metadata.get("genres", "")).split("|") if g})
    cat = _Catalog(list(items), [g for g in genres if g in _NAMES], max(ys) if ys else 2020)
    for it in items:
        y = it.metadata.get("year")
        if not isinstance(y, int):
            continue
        for g in str(it.metadata.get("genres", "")).split("|"):
            gd = (g, y // 10 * 10)
            cat.by_genre_decade[gd] = cat.by_genre_decade.get(gd, 0) + 1
    seen: set[str] = set()
    ranked = sorted(items, key=lambda it: (-popularity.get(it.id, 0), it.id))
    for it in ranked[:400]:
        s = _surface(it.title)
        key = s.lower()
        gs = tuple(g for g in str(it.metadata.get("genres", "")).split("|") if g)
        if key in seen or not gs or len(s.split()) > 6 or not re.search(r"[A-Za-z]{3}", s):
            seen.add(key)
            continue
        seen.add(key)
        cat.titles.append((it.id, s, gs))
    return cat


def _count(cat: _Catalog, genre: str, lo: int, hi: int) -> int:
    return sum(
        n for (g, d), n in cat.by_genre_decade.items() if g == genre and lo // 10 * 10 <= d <= hi
    )


def generate(
    items: Sequence[Item],
    popularity: Mapping[str, int] | None = None,
    n: int = 330,
    seed: int = 0,
) -> list[Case]:
    """``n`` templated cases over ``items`` (seeded). Each category gets its share."""
    rng = random.Random(seed)
    cat = _index(items, popularity or {})
    if not cat.genres:
        raise GenreError("the catalog has no genres the generator knows; nothing to ask for")
    makers = [
        ("genre", 0.08, _genre),
        ("mood", 0.09, _mood),
        ("negation", 0.13, _negation),
        ("decade", 0.18, _decade),
        ("bound", 0.16, _bound),
        ("relative", 0.03, _relative),
        ("reference", 0.15, _reference),
        ("followup", 0.18, _followup),
    ]
    cases: list[Case] = []
    for kind, share, make in makers:
        want = round(n * share) if kind != "followup" else max(0, n - len(cases))
        got = 0
        tries = 0
        while got < want and tries < want * 20:
            tries += 1
            turns = make(rng, cat)
            if turns is None:
                continue
            cases.append(Case(id=f"t{len(cases) + 1:03d}", part="template", kind=kind, turns=turns))
            got += 1
    return cases


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _t(text: str, **expect: Any) -> CaseTurn:
    return CaseTurn(text=text, expect=Expect(**expect))


def _pick_genre(rng: random.Random, cat: _Catalog, pool: Iterable[str] | None = None) -> str:
    options = [g for g in (pool or cat.genres) if g in cat.genres]
    return rng.choice(options)


def _genre(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    g = _pick_genre(rng, cat)
    adj, plural = _NAMES[g]
    text = rng.choice(
        [
            f"{plural}",
            f"show me some {plural}",
            f"I want to watch {_a(adj)} film",
            f"any good {plural}?",
            f"recommend me {_a(adj)} movie",
            f"I'm in the mood for {plural}",
        ]
    )
    return [_t(text, genres_include=[g])]


def _mood(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    g = _pick_genre(rng, cat, _MOODS)
    phrase = rng.choice(_MOODS[g])
    text = rng.choice([f"{phrase}", f"I'd like {phrase}", f"can you find me {phrase}?"])
    return [_t(text, genres_include=[g])]


def _negation(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    inc = _pick_genre(rng, cat)
    exc = _pick_genre(rng, cat)
    if inc == exc:
        return None
    ia, ip = _NAMES[inc]
    ea, ep = _NAMES[exc]
    form = rng.randrange(6)
    if form == 5:
        return [_t(f"anything but {ep}", genres_exclude=[exc])]
    text = [
        f"{ip} but not {ep}",
        f"{_a(ia)} movie, no {ep} please",
        f"{ip} without {ea}",
        f"I want {ip}, nothing {ea}",
        f"{ip}, not {ep}",
    ][form]
    return [_t(text, genres_include=[inc], genres_exclude=[exc])]


def _decade(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    g = _pick_genre(rng, cat)
    d = rng.choice([1930, 1940, 1950, 1960, 1970, 1980, 1990, 2000, 2010])
    if _count(cat, g, d, d + 9) < 8:
        return None
    phrases = _decade_phrases(d)
    phrase = rng.choice(phrases)
    adj, plural = _NAMES[g]
    bare = phrase.removeprefix("the ")
    text = rng.choice(
        [
            f"{plural} from {phrase if phrase.startswith('the') else 'the ' + phrase}",
            f"{bare} {plural}",
            f"{_a(adj)} film from {phrase if phrase.startswith('the') else 'the ' + phrase}",
            f"something {adj} from {phrase if phrase.startswith('the') else 'the ' + phrase}",
        ]
    )
    return [_t(text, genres_include=[g], year_min=d, year_max=d + 9)]


def _bound(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    g = _pick_genre(rng, cat)
    adj, plural = _NAMES[g]
    y = rng.randrange(1950, min(cat.max_year, 2015) + 1)
    form = rng.randrange(9)
    if form == 0:
        text, lo, hi = f"{plural} made before {y}", None, y - 1
    elif form == 1:
        text, lo, hi = f"{plural} released after {y}", y + 1, None
    elif form == 2:
        text, lo, hi = f"{adj} movies since {y}", y, None
    elif form == 3:
        text, lo, hi = f"{_a(adj)} film not older than {y}", y, None
    elif form == 4:
        text, lo, hi = f"{plural} older than {y}", None, y - 1
    elif form == 5:
        text, lo, hi = f"{plural} newer than {y}", y + 1, None
    elif form == 6:
        y2 = min(y + rng.choice([5, 10, 15]), cat.max_year)
        text, lo, hi = f"{plural} between {y} and {y2}", y, y2
    elif form == 7:
        y2 = min(y + rng.choice([4, 9]), cat.max_year)
        text, lo, hi = f"{adj} films from {y} to {y2}", y, y2
    else:
        text, lo, hi = f"{plural} from {y} or later", y, None
    if _count(cat, g, lo or 1900, hi or cat.max_year) < 8:
        return None
    return [_t(text, genres_include=[g], year_min=lo, year_max=hi)]


def _relative(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    g = _pick_genre(rng, cat)
    adj, plural = _NAMES[g]
    n = rng.choice([5, 10, 20])
    form = rng.randrange(2)
    if form == 0:
        return [
            _t(
                f"{plural} from the last {n} years",
                genres_include=[g],
                year_min=cat.max_year - n + 1,
            )
        ]
    return [_t(f"a recent {adj} movie", genres_include=[g], year_min=cat.max_year - 4)]


def _reference(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    if not cat.titles:
        return None
    iid, title, gs = rng.choice(cat.titles)
    form = rng.randrange(6)
    if form == 0:
        word = rng.choice(list(_MORE))
        g = _MORE[word]
        if g not in cat.genres:
            return None
        return [_t(f"something like {title} but {word}", references=[iid], genres_include=[g])]
    if form == 1:
        return [_t(f"movies similar to {title}", references=[iid])]
    if form == 2:
        return [_t(f"I loved {title}, what else would I like?", references=[iid])]
    if form == 3:
        exc = rng.choice(gs)
        if exc not in _NAMES or len(gs) < 2:
            return None
        return [
            _t(f"like {title} but not {_NAMES[exc][1]}", references=[iid], genres_exclude=[exc])
        ]
    if form == 4:
        d = rng.choice([1980, 1990, 2000])
        phrase = rng.choice(_decade_phrases(d))
        phrase = phrase if phrase.startswith("the") else "the " + phrase
        return [
            _t(
                f"something like {title} from {phrase}",
                references=[iid],
                year_min=d,
                year_max=d + 9,
            )
        ]
    return [_t(f"more like {title} please", references=[iid])]


def _followup(rng: random.Random, cat: _Catalog) -> list[CaseTurn] | None:
    g = _pick_genre(
        rng,
        cat,
        [
            "Sci-Fi",
            "Thriller",
            "Crime",
            "Adventure",
            "Comedy",
            "Drama",
            "Fantasy",
            "Mystery",
            "Romance",
        ],
    )
    adj, plural = _NAMES[g]
    first = _t(
        rng.choice([f"{plural}", f"some {plural} please", f"a good {adj} movie"]),
        genres_include=[g],
    )
    form = rng.randrange(8)
    if form == 0:
        return [
            first,
            _t(
                rng.choice(["older ones", "something older", "older please"]),
                genres_include=[g],
                year_max="older_than_last",
            ),
        ]
    if form == 1:
        return [
            first,
            _t(
                rng.choice(["newer ones", "something newer", "more recent ones"]),
                genres_include=[g],
                year_min="newer_than_last",
            ),
        ]
    if form == 2:
        k = rng.choice([1, 2, 3])
        word = {1: "first", 2: "second", 3: "third"}[k]
        text = rng.choice(
            [f"not that one, the {word} one", f"not the {word} one", f"drop the {word} one"]
        )
        return [first, _t(text, genres_include=[g], positions=[f"exclude:{k}"])]
    if form == 3:
        k = rng.choice([1, 2, 3])
        word = {1: "first", 2: "second", 3: "third"}[k]
        return [first, _t(f"more like the {word} one", genres_include=[g], positions=[f"more:{k}"])]
    return _followup_late(rng, cat, g, first, form)


def _followup_late(
    rng: random.Random, cat: _Catalog, g: str, first: CaseTurn, form: int
) -> list[CaseTurn] | None:
    """Forms 4-7 of :func:`_followup`: less violent, a decade, a genre dropped, "funnier"."""
    if form == 4:
        excl = [v for v in VIOLENT if v in cat.genres and v != g]
        return [
            first,
            _t(
                rng.choice(["less violent", "less violent please", "something less violent"]),
                genres_include=[g],
                genres_exclude=excl,
            ),
        ]
    if form == 5:
        d = rng.choice([1980, 1990, 2000])
        phrase = rng.choice(_decade_phrases(d))
        phrase = phrase if phrase.startswith("the") else "the " + phrase
        if _count(cat, g, d, d + 9) < 8:
            return None
        return [first, _t(f"from {phrase} please", genres_include=[g], year_min=d, year_max=d + 9)]
    if form == 6:
        exc = _pick_genre(rng, cat)
        if exc == g:
            return None
        return [first, _t(f"no {_NAMES[exc][1]}", genres_include=[g], genres_exclude=[exc])]
    if not cat.titles:
        return None
    iid, title, gs = rng.choice(cat.titles)
    return [
        _t(f"something like {title}", references=[iid]),
        _t(
            rng.choice(["but funnier", "funnier please", "ok but funnier"]),
            references=[iid],
            genres_include=["Comedy"],
        ),
    ]
