"""Explanation metrics: each pure function on hand-made records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from genre_agent.catalog.items import Item
from genre_agent.eval import explain_metrics as em
from genre_agent.types import Evidence, RankedItem, Support


def entry(
    rationale: str,
    cites: Sequence[str] = (),
    *,
    genres: str = "Comedy",
    support: Sequence[tuple[str, str, list[str]]] = (),
    shared: Sequence[str] = (),
    unsupported: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "item_id": "x",
        "title": "Some Film (2001)",
        "genres": genres,
        "rationale": rationale,
        "cites": list(cites),
        "evidence_ids": [s[0] for s in support],
        "support": [{"id": i, "title": t, "shared": sh} for i, t, sh in support],
        "unsupported_terms": list(unsupported),
        "shared": list(shared),
    }


HISTORY = ["h1", "h2", "h3"]
SUPPORT = [("h1", "Heat (1995)", []), ("h2", "Scream (1996)", ["genre Horror"])]


# -- grounding -------------------------------------------------------------------------------
def test_grounding_needs_cites_in_history_and_no_unsupported_genre() -> None:
    ok = entry("Tense like Heat.", ["h1"], support=SUPPORT)
    outside = entry("Tense like Heat.", ["h9"], support=SUPPORT)  # cite not in the history
    horror = entry("A horror classic.", [], support=SUPPORT)  # the item is a comedy
    cited_horror = entry("Horror fans of Scream will like it.", ["h2"], support=SUPPORT)
    # Horror is only shared with h2, which this sentence does not cite.
    wrong_cite = entry("Horror fans will like it.", ["h1"], support=SUPPORT)
    assert em.is_grounded(ok, HISTORY)
    assert not em.is_grounded(outside, HISTORY)
    assert not em.is_grounded(horror, HISTORY)
    assert em.is_grounded(cited_horror, HISTORY)
    assert not em.is_grounded(wrong_cite, HISTORY)
    entries = [ok, outside, horror, cited_horror, wrong_cite]
    assert em.grounding_rate(entries, HISTORY) == pytest.approx(2 / 5)
    assert em.grounding_rate([], HISTORY) is None


def test_an_attribute_shared_by_the_item_grounds_its_genre_word() -> None:
    e = entry("A horror pick.", [], genres="Comedy", shared=["genre Horror"])
    assert em.is_grounded(e, HISTORY)
    assert em.allowed_text(e).endswith("genre Horror")


def test_unsupported_term_rate() -> None:
    entries = [entry("Fine.", unsupported=[]), entry("By Nolan.", unsupported=["Nolan"])]
    assert em.unsupported_rate(entries) == 0.5
    assert em.unsupported_rate([]) is None


# -- truncation ------------------------------------------------------------------------------
def test_truncation_rate_counts_sentences_without_final_punctuation() -> None:
    texts = [
        "Great pick.",
        "Wow!",
        "Is it good?",
        'He said "go."',
        "Because you liked the",  # cut by max_tokens
        "Fits your history (5)",  # no final period
        "Ends with a period.  ",
    ]
    assert [em.is_cut(t) for t in texts] == [False, False, False, False, True, True, False]
    assert em.truncation_rate([entry(t) for t in texts]) == pytest.approx(2 / 7)


def test_truncated_attempt_rate() -> None:
    assert em.truncated_attempt_rate(1, 4) == 0.25
    assert em.truncated_attempt_rate(0, 3) == 0.0
    assert em.truncated_attempt_rate(0, 0) is None
    with pytest.raises(ValueError):
        em.truncated_attempt_rate(5, 3)


# -- specificity -----------------------------------------------------------------------------
TITLES = ["Toy Story (1995)", "Matrix, The (1999)", "Up (2009)"]


@pytest.mark.parametrize(
    ("rationale", "shared", "specific"),
    [
        ("Playful like toy story.", [], True),  # any case, year dropped
        ("Another ride like The Matrix.", [], True),  # MovieLens' moved article
        ("Another ride like Matrix, The.", [], True),
        ("A sequel to Matrix Reloaded.", [], False),  # not the title
        ("Toy Storyline fans beware.", [], False),  # a whole phrase only
        ("A Pixar film like Up.", [], True),
        ("It cheers you up.", [], False),  # short titles keep their case
        ("Tense like Heat.", [], False),  # Heat is not in this history
        ("A comedy for you.", ["genre Comedy"], True),
        ("Set in space.", ["tag space"], True),
        ("A 1980s favourite.", ["1980s"], True),
        ("A comedy for you.", ["genre Drama"], False),
        ("Recommended for you.", ["genre Comedy", "tag space"], False),
    ],
)
def test_specific_names_a_history_title_or_a_shared_value(
    rationale: str, shared: list[str], specific: bool
) -> None:
    assert em.is_specific(rationale, TITLES, shared) is specific


def test_specificity_rate_and_attribute_values() -> None:
    entries = [
        entry("Like Toy Story."),
        entry("Like Heat."),
        entry("Funny.", shared=["genre Comedy"]),
    ]
    assert em.specificity(entries, TITLES) == pytest.approx(1 / 3)
    assert em.attribute_values(["genre Sci-Fi", "tag time travel", "1990s"]) == [
        "Sci-Fi",
        "time travel",
        "1990s",
    ]
    assert em.title_core("Matrix, The (1999)") == "Matrix, The"


# -- distinctness ----------------------------------------------------------------------------
def test_distinct_2_and_duplicates() -> None:
    assert em.distinct_2(["a b c", "A b d"]) == pytest.approx(3 / 4)
    assert em.distinct_2(["same words here", "same words here"]) == pytest.approx(2 / 4)
    assert em.distinct_2(["one", "two"]) is None
    assert em.duplicate_share(["Great pick.", "great  pick.", "Other."]) == pytest.approx(2 / 3)
    assert em.duplicate_share(["A.", "B."]) == 0.0
    assert em.duplicate_share([]) is None


# -- counterfactual --------------------------------------------------------------------------
def test_rank_drop() -> None:
    before = ["a", "b", "c", "d"]
    assert em.rank_drop(before, ["b", "c", "a", "d"], "a") == 2
    assert em.rank_drop(before, ["d", "a", "b", "c"], "d") == -3
    assert em.rank_drop(before, ["b", "c"], "a") == 2  # cut at k: ranks k + 1
    with pytest.raises(ValueError):
        em.rank_drop(before, before, "z")


def test_removals_pick_cited_and_as_many_seeded_random_items() -> None:
    hist = [f"h{i}" for i in range(10)]
    explained = [("a", ["h1", "h2"]), ("b", ["zz"]), ("c", []), ("d", ["h3", "zz"])]
    plan = em.removals(explained, hist, "0:u1")
    assert [(item, cited) for item, cited, _ in plan] == [("a", ["h1", "h2"]), ("d", ["h3"])]
    for _, cited, rand in plan:
        assert len(rand) == len(cited) and set(rand) <= set(hist) and len(set(rand)) == len(rand)
    assert plan == em.removals(explained, hist, "0:u1")  # seeded by the user
    draws = {tuple(em.removals(explained, hist, f"0:u{n}")[0][2]) for n in range(20)}
    assert len(draws) > 1
    # Removing every history item would leave nothing to rank from: skipped.
    assert em.removals([("a", ["h1", "h2"])], ["h1", "h2"], "s") == []


def test_user_metrics_has_every_metric() -> None:
    out = em.user_metrics([entry("Like Toy Story.", ["h1"])], HISTORY, TITLES, 1, 2)
    assert tuple(out) == em.METRICS
    assert out["truncated_attempt_rate"] == pytest.approx(1 / 3)
    assert out["grounding_rate"] == out["specificity"] == 1.0


def test_explanation_entry_records_cites_and_evidence() -> None:
    ev = Evidence(
        history=[Support(id="h2", title="Scream (1996)", by=["itemknn"], shared=["genre Horror"])],
        shared=["genre Horror"],
    )
    item = Item(id="i1", title="Film (2000)", text="t", metadata={"genres": "Horror|Comedy"})
    got = em.explanation_entry(
        RankedItem(rank=1, item=item, rationale="Like Scream.", cites=["h2"], evidence=ev)
    )
    assert got["evidence_ids"] == ["h2"] and got["cites"] == ["h2"]
    assert got["support"] == [{"id": "h2", "title": "Scream (1996)", "shared": ["genre Horror"]}]
    assert (got["title"], got["genres"], got["shared"]) == (
        "Film (2000)",
        "Horror|Comedy",
        ["genre Horror"],
    )
