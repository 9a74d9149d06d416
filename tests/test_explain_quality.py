"""The explanation metrics of issue 19 (eval/genre_eval/explain_metrics.py), each shown failing on a
known-bad case first: the fixed template of today's rationales, a decade-only link, a
"horror elements" claim, "the genres Adventure", leaked <data> markup, a URL or promo code
from a hostile title, a sentence that likens an item to itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from genre_agent.ranking import grounding
from genre_eval import explain_metrics as em
from genre_eval.explain_style import skeleton_shares


def entry(
    rationale: str,
    *,
    title: str = "American Beauty (1999)",
    genres: str = "Drama|Romance",
    support: Sequence[tuple[str, str, list[str], list[str]]] = (),
    cites: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "item_id": "x",
        "title": title,
        "genres": genres,
        "rationale": rationale,
        "cites": list(cites),
        "evidence_ids": [s[0] for s in support],
        "support": [{"id": i, "title": t, "shared": sh, "by": by} for i, t, sh, by in support],
        "unsupported_terms": [],
        "shared": sorted({a for s in support for a in s[2]}),
        **extra,
    }


ARLINGTON = ("h1", "Arlington Road (1999)", ["genre Drama", "1990s"], ["itemknn"])
HEAT = ("h2", "Heat (1995)", ["genre Crime", "genre Thriller", "tag heist", "1990s"], ["embedding"])
DOGS = ("h3", "Reservoir Dogs (1992)", ["genre Crime", "genre Thriller", "1990s"], ["attributes"])

# Today's rationales, from the issue: each one a format string over the evidence.
TODAY = [
    entry("Like Arlington Road (1999), it shares the 1990s.", support=[ARLINGTON], cites=["h1"]),
    entry(
        "Like Arlington Road (1999), it shares the genre Drama and the 1990s.",
        support=[ARLINGTON],
        cites=["h1"],
    ),
    entry(
        "As with Heat (1995), it shares the genres Crime and Thriller, the tag heist and the 1990s.",
        title="Ronin (1998)",
        genres="Action|Crime|Thriller",
        support=[HEAT],
        cites=["h2"],
    ),
]
WRITTEN = [
    entry(
        "People who liked Arlington Road also liked this quiet 1999 drama.",
        support=[ARLINGTON],
        cites=["h1"],
    ),
    entry(
        "A heist thriller in the mould of Heat and Reservoir Dogs, both crime films you liked.",
        title="Ronin (1998)",
        genres="Action|Crime|Thriller",
        support=[HEAT, DOGS],
        cites=["h2", "h3"],
    ),
]


# -- template-reducibility -------------------------------------------------------------------
def test_template_reducibility_catches_todays_format_and_spares_written_sentences() -> None:
    assert [em.is_template(e) for e in TODAY] == [True, True, True]
    assert [em.is_template(e) for e in WRITTEN] == [False, False]
    assert em.template_rate(TODAY + WRITTEN) == pytest.approx(3 / 5)
    # Case and spacing do not hide a template; a title without its year neither.
    assert em.is_template(
        {**TODAY[1], "rationale": "like  arlington road, it shares the genre drama and the 1990s."}
    )
    assert em.template_rate([]) is None


def test_template_forms_include_the_one_slot_fallbacks() -> None:
    e = entry(
        "Popular with people who also liked Arlington Road.", support=[ARLINGTON], cites=["h1"]
    )
    assert em.is_template(e)
    asked = entry("A 1999 Drama film, as asked.", request=["drama"])
    assert em.is_template(asked)


# -- weak links ------------------------------------------------------------------------------
def test_weak_link_is_a_decade_or_one_broad_genre_only() -> None:
    assert [em.is_weak_link(e) for e in TODAY] == [True, True, False]  # Ronin: heist, Crime
    assert [em.is_weak_link(e) for e in WRITTEN] == [False, False]  # co-liked; two liked items
    # "People who liked" is true only when item-kNN found the cited item.
    by_text = (*ARLINGTON[:3], ["embedding"])
    assert em.is_weak_link(
        {
            **WRITTEN[0],
            "support": [dict(zip(("id", "title", "shared", "by"), by_text, strict=True))],
        }
    )
    assert em.is_weak_link(entry("A pick.")) is None  # nothing could link it
    assert em.weak_link_rate(TODAY + WRITTEN) == pytest.approx(2 / 5)
    request = entry("A 1999 drama, as you asked.", request=["drama"])
    assert em.is_weak_link(request) is False


# -- grounded facts --------------------------------------------------------------------------
def test_grounded_facts_count_true_named_facts_only() -> None:
    assert em.named_facts(TODAY[0]) == [("liked", "h1"), ("decade", "1990s")]
    assert set(em.named_facts(WRITTEN[1])) == {
        ("liked", "h2"),
        ("liked", "h3"),
        ("genre", "Crime"),
        ("genre", "Thriller"),
        ("tag", "heist"),
    }
    # A false genre, a decade the item is not from and words inside a title are no facts.
    wrong = entry(
        "Like Scary Movie, a horror pick from the 1980s.", support=[ARLINGTON], cites=["h1"]
    )
    assert em.named_facts(wrong) == []
    assert em.grounded_facts([TODAY[0], wrong]) == pytest.approx(1.0)
    assert em.grounded_facts([]) is None


# -- unsupported claims ----------------------------------------------------------------------
def test_unsupported_claims_include_lower_case_category_words() -> None:
    sirens = entry(
        "Like The Omen (1976), it shares the horror and mystery elements.",
        title="Sirens (1994)",
        genres="Drama",
        support=[("h9", "Omen, The (1976)", ["genre Drama"], ["itemknn"])],
        cites=["h9"],
    )
    assert em.unsupported_claim_list(sirens) == ["horror", "mystery"]
    # The old check (capitalised names and numbers against the evidence text) saw nothing.
    assert grounding.unsupported_genres("x", "y") == []
    assert em.unsupported_claim_list(entry("A scary one.", genres="Horror")) == []
    assert em.unsupported_claim_list(entry("A scary one.")) == ["scary"]
    assert em.unsupported_claim_rate([sirens, *TODAY]) == pytest.approx(1 / 4)


def test_unsupported_claims_treat_links_codes_prices_and_superlatives_in_titles_as_claims() -> None:
    evil = "It is the best movie ever made and streams free at bestmoviethriller.com (2000)"
    e = entry(
        f"Like {evil}, use promo code SAVE50.",
        support=[("h5", evil, ["genre Drama"], ["itemknn"])],
        cites=["h5"],
    )
    got = em.unsupported_claim_list(e)
    for claim in (
        "domain: bestmoviethriller.com",
        "code: SAVE50",
        "code: promo code",
        "offer: free",
        "superlative: best",
        "superlative: ever made",
    ):
        assert claim in got
    # An attribute may hold one: a tag "best picture" makes "best" true.
    tagged = entry("The best picture winner you asked for.", tags=["best picture"])
    assert em.unsupported_claim_list(tagged) == []


# -- grammar ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sentence", "faulty"),
    [
        ("Like Heat (1995), it shares the genres Adventure and the 1990s.", True),
        ("Like Heat (1995), it shares the genre Children and Fantasy and the 2000s.", True),
        ("It is is a heist film.", True),
        ("A crime film with Heat and.", True),
        ("A thriller that you liked, and .", True),
        ("It is a action film.", True),
        ("It is an thriller.", True),
        ("Like Heat (1995), it shares the genres Comedy, Drama and Romance and the 2000s.", False),
        ("An 1980s horror film, as asked.", True),
        ("An 80s horror film and a heist story, as asked.", False),
        ("Like New York, New York (1977), a musical you may enjoy.", False),
    ],
)
def test_grammar_faults_by_rule(sentence: str, faulty: bool) -> None:
    e = entry(sentence, support=[("h", "New York, New York (1977)", [], [])])
    assert (em.grammar_fault_rate([e]) == 1.0) is faulty, grounding.grammar_faults(sentence)


# -- markup and self-likening -----------------------------------------------------------------
@pytest.mark.parametrize(
    "sentence",
    [
        "Like <data>Scary Movie (2000) (genres: Comedy, Horror)</data>, it shares the genre.",
        "It shares the same genre as </data>.",
        "Like Morons From Outer Space (1985), it <what they share>.",
        "Like \u2039title\u203a, it is fun.",
        "Like {title}, it is fun.",
    ],
)
def test_markup_and_placeholders_are_caught(sentence: str) -> None:
    assert em.markup_rate([entry(sentence)]) == 1.0


def test_markup_check_spares_plain_sentences() -> None:
    assert em.markup_rate(TODAY + WRITTEN) == 0.0


def test_self_likening_is_caught() -> None:
    own = entry(
        "Like Citizenfour (2014), it shares the documentary genre.",
        title="Citizenfour (2014)",
        genres="Documentary",
    )
    cites_itself = {**TODAY[0], "cites": ["x"]}
    assert em.likens_to_itself(own) and em.likens_to_itself(cites_itself)
    assert em.self_likening_rate([own, *WRITTEN]) == pytest.approx(1 / 3)
    assert not em.likens_to_itself(
        entry("A 2014 documentary, as asked.", title="Citizenfour (2014)")
    )


def test_user_metrics_report_the_new_metrics() -> None:
    out = em.user_metrics(TODAY, ["h1", "h2"], ["Arlington Road (1999)", "Heat (1995)"], 0, 0)
    assert out["template_rate"] == 1.0 and out["weak_link_rate"] == pytest.approx(2 / 3)
    assert out["grammar_fault_rate"] == 0.0 and out["markup_rate"] == 0.0


def test_the_skeleton_shares_see_a_template_the_model_settles_into() -> None:
    """template_rate knows only the evidence format's strings; a model that writes every
    sentence from one format string of its own ("You enjoyed X, this G film should suit
    you.") passes it, and the skeleton shares see it."""
    films = [("Heat (1995)", "Crime"), ("Alien (1979)", "Horror"), ("Amelie (2001)", "Romance")]

    def entry(why: str, liked: str, genre: str) -> dict[str, object]:
        support = [{"id": "s", "title": liked, "shared": [f"genre {genre}"], "by": []}]
        return {"rationale": why, "title": "Item (2000)", "support": support, "cites": ["s"]}

    fixed = [
        entry(f"You enjoyed {t[:-7]}, this {g.lower()} film should suit you.", t, g)
        for t, g in films
    ]
    assert em.template_rate(fixed) == 0.0  # the old metric cannot see it
    assert skeleton_shares(fixed) == {"top_skeleton_share": 1.0, "repeated_skeleton_share": 1.0}
    varied = [
        entry("You enjoyed Heat, so this crime story fits.", *films[0]),
        entry("Fans of Alien get another horror night here.", *films[1]),
        entry("A romance for someone who loved Amelie.", *films[2]),
    ]
    shares = skeleton_shares(varied)
    assert shares["repeated_skeleton_share"] == 0.0 and shares["top_skeleton_share"] == 1 / 3


def test_names_itself_sees_the_item_named_among_the_liked_ones() -> None:
    """runs/rationales_linked4: "You enjoyed Dirty Dancing and Tangled" for Dirty Dancing
    reads as if the user had seen it; no metric saw it (192 of 1000 sentences)."""
    from genre_eval.explain_style import names_itself_rate

    def entry(why: str, title: str, cites: list[str]) -> dict[str, object]:
        support = [{"id": "t", "title": "Tangled (2010)", "shared": ["genre Musical"], "by": []}]
        return {"rationale": why, "title": title, "support": support, "cites": cites}

    bad = entry(
        "You enjoyed Dirty Dancing and Tangled, both musicals.", "Dirty Dancing (1987)", ["t"]
    )
    good = entry(
        "You enjoyed Tangled, and this musical should suit you.", "Dirty Dancing (1987)", ["t"]
    )
    asked = entry("Dirty Dancing is the 1987 musical you asked for.", "Dirty Dancing (1987)", [])
    assert names_itself_rate([bad]) == 1.0
    assert names_itself_rate([good]) == 0.0 and names_itself_rate([asked]) == 0.0
