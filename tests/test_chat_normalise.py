"""The deterministic normaliser: genres and moods, negation scope, years, titles, positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_agent.catalog.items import load_items
from genre_agent.config import MOVIELENS_GENRES
from genre_agent.service.normalise import Normaliser, title_keys

CATALOG = Path(__file__).parent / "fixtures" / "catalog.jsonl"


@pytest.fixture(scope="module")
def norm() -> Normaliser:
    items = load_items(CATALOG)
    ids = {it.title: it.id for it in items}
    # Alien more popular than Aliens, as in any real catalog
    return Normaliser.from_items(items, MOVIELENS_GENRES, {ids["Alien (1979)"]: 10})


def _id(norm: Normaliser, title: str) -> str:
    return next(e.id for es in norm.vocab.titles.values() for e in es if e.title == title)


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("from the eighties", 1980, 1989),
        ("80s movies", 1980, 1989),
        ("the '80s", 1980, 1989),
        ("the 1980s", 1980, 1989),
        ("made after 2005", 2006, None),
        ("before 1970", None, 1969),
        ("since 2000", 2000, None),
        ("not older than 2000", 2000, None),
        ("older than 1990", None, 1989),
        ("between 1995 and 2005", 1995, 2005),
        ("from 1995 to 2000", 1995, 2000),
        ("1995-2005", 1995, 2005),
        ("2000 or later", 2000, None),
        ("the 50s or 60s", 1950, 1969),
        ("early 90s", 1990, 1993),
        ("late 90s", 1996, 1999),
        ("nothing made after 1999", None, 1999),
        ("the last 10 years", 2009, None),  # the fixture catalog's newest year is 2018
        ("something recent", 2014, None),
        ("isn't from the 2010s", None, 2009),
        ("westerns pre-1970", None, 1969),
    ],
)
def test_years(norm: Normaliser, text: str, lo: int | None, hi: int | None) -> None:
    r = norm.read(text)
    assert (r.year_min, r.year_max) == (lo, hi), text


@pytest.mark.parametrize(
    ("text", "inc", "exc"),
    [
        ("something funny but not romantic", ("Comedy",), ("Romance",)),
        ("a scary movie", ("Horror",), ()),
        ("a feel-good movie", ("Comedy",), ()),
        ("something for kids", ("Children",), ()),
        ("a film for my 8 year old", ("Children",), ()),
        ("no horror or thrillers please", (), ("Horror", "Thriller")),
        ("anything but drama", (), ("Drama",)),
        ("comedies without romance", ("Comedy",), ("Romance",)),
        ("i'm not in the mood for anything scary", (), ("Horror",)),
        ("romcom", ("Comedy", "Romance"), ()),
        ("less violent", (), ("Action", "Horror", "War")),
        ("animated but not for little kids", ("Animation",), ("Children",)),
        ("no, I meant comedies", ("Comedy",), ()),
        # a new wish after the comma: the negation stops there (tests/test_chat_real.py)
        ("no horror please, something with comedy", ("Comedy",), ("Horror",)),
        ("no horror, no comedy", (), ("Horror", "Comedy")),
        ("no horror, comedy or drama", (), ("Horror", "Comedy", "Drama")),
    ],
)
def test_genres_and_negation(
    norm: Normaliser, text: str, inc: tuple[str, ...], exc: tuple[str, ...]
) -> None:
    r = norm.read(text)
    assert (r.genres_include, r.genres_exclude) == (inc, exc), text


def test_contradiction_is_left_over_not_guessed(norm: Normaliser) -> None:
    r = norm.read("a scary one but no gore")
    assert "Horror" not in r.genres_include and "Horror" not in r.genres_exclude
    assert not r.settled


def test_title_references(norm: Normaliser) -> None:
    alien = _id(norm, "Alien (1979)")
    r = norm.read("something like Alien but funnier, not older than 2000")
    assert r.references == (alien,)
    assert r.genres_include == ("Comedy",) and r.year_min == 2000
    assert r.settled
    # "The" moved or dropped, several titles, uncued but written as a title
    assert norm.read("like the matrix").references == (_id(norm, "The Matrix (1999)"),)
    two = norm.read("like Heat or Fargo").references
    assert two == (_id(norm, "Heat (1995)"), _id(norm, "Fargo (1996)"))
    assert norm.read("Groundhog Day vibes").references == (_id(norm, "Groundhog Day (1993)"),)
    # "like" as a verb is not a comparison, and a title that is a common word needs a cue
    assert norm.read("I'd like something up beat").references == ()
    assert norm.read("a movie we can watch at home").references == ()
    # older/newer than the named title
    r = norm.read("like The Shining but newer")
    assert r.references == (_id(norm, "The Shining (1980)"),) and r.year_min == 1981


def test_positions_follow_ups(norm: Normaliser) -> None:
    years = [1999, 2001, 1995]
    assert norm.read("not that one, the first one", years).exclude_picks == (1,)
    assert norm.read("more like the second one", years).more_like == (2,)
    r = norm.read("drop the second, and no romance", years)
    assert r.exclude_picks == (2,) and r.genres_exclude == ("Romance",)
    assert norm.read("older ones", years).year_max == 1994
    assert norm.read("newer ones", years).year_min == 2002
    assert norm.read("the fourth one", years).exclude_picks == ()  # only 3 were shown
    assert norm.read("actually, start over. I want a western").reset


def test_settled_only_when_every_word_is_accounted_for(norm: Normaliser) -> None:
    assert norm.read("horror from the 80s please").settled
    r = norm.read("I need a good cry")
    assert not r.settled and "cry" in r.leftover


def test_title_keys() -> None:
    assert ("the", "matrix") in title_keys("Matrix, The (1999)")
    assert ("matrix",) in title_keys("Matrix, The (1999)")
    assert ("se7en",) in title_keys("Seven (a.k.a. Se7en) (1995)")
    assert ("leon",) in title_keys("Léon: The Professional (1994)")
