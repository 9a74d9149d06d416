"""The "linked" rationale format without a model: facts chosen by the service, a sentence
pattern that requires every chosen phrase, and the cut-sentence check."""

from __future__ import annotations

import json
import re

import pytest

from genre_agent.catalog.items import Item
from genre_agent.config import RankingConfig
from genre_agent.llm import FakeLLM
from genre_agent.ranking import RankRequest
from genre_agent.ranking.grounding import cut_faults, grammar_faults, negation_faults, voice_faults
from genre_agent.ranking.rationale_linked import (
    Link,
    answer_model,
    choose_links,
    schema_regex,
    sentence_pattern,
)
from genre_agent.ranking.rationales import add_rationales
from genre_agent.service.evidence import build_evidence
from genre_agent.types import Candidate, Evidence, RankedItem, Support, Trace


def movie(i: str, title: str, genres: str, year: int, tags: str = "") -> Item:
    text = f"Genres: {genres.replace('|', ', ')}." + (f" Tags: {tags}." if tags else "")
    return Item(id=i, title=title, text=text, metadata={"genres": genres, "year": year})


RONIN = movie("r", "Ronin (1998)", "Action|Crime|Thriller", 1998, "heist")
HEAT = movie("h", "Heat (1995)", "Action|Crime|Thriller", 1995, "heist")
DOGS = movie("d", "Reservoir Dogs (1992)", "Crime|Thriller", 1992)
BEAUTY = movie("b", "American Beauty (1999)", "Drama|Romance", 1999)
NOTTING = movie("n", "Notting Hill (1999)", "Comedy|Romance", 1999)
ALIENS = movie("a", "Aliens (1986)", "Action|Horror|Sci-Fi", 1986)


def cand(item: Item) -> Candidate:
    return Candidate(item=item, score=1.0, source="t")


# -- which facts ----------------------------------------------------------------------------
def test_two_liked_items_pointing_the_same_way_and_what_they_share() -> None:
    ev = build_evidence([cand(RONIN)], [HEAT, DOGS], None, {("h", "r"): 0.1})[0]
    links, cites = choose_links(RONIN, ev)
    assert links == [Link("liked", "Heat"), Link("liked", "Reservoir Dogs"), Link("genre", "crime")]
    assert cites == ["h", "d"]


def test_one_liked_item_with_a_tag_names_the_tag_before_a_broad_genre() -> None:
    ev = Evidence(
        history=[
            Support(
                id="h",
                title="Heat (1995)",
                by=["attributes"],
                similarity=0.5,
                shared=["genre Action", "tag heist", "1990s", "genre Crime"],
            )  # fmt: skip
        ]
    )
    links, cites = choose_links(RONIN, ev)
    assert [x.phrase for x in links] == ["Heat", "heist", "crime"] and cites == ["h"]


def test_a_weak_link_found_by_item_knn_says_people_who_liked_it() -> None:
    pairs = {("h", "n"): 0.4}
    ev = build_evidence([cand(NOTTING)], [NOTTING, BEAUTY, HEAT], None, pairs)[0]
    links, cites = choose_links(NOTTING, ev)
    assert links[0] == Link("co-liked", "people who liked Heat") and cites == ["h"]
    assert all(x.kind != "decade" for x in links)  # "1990s" is weak; nothing else is shared


def test_a_weak_link_without_item_knn_says_what_is_true() -> None:
    ev = build_evidence([cand(NOTTING)], [BEAUTY], None, {})[0]
    links, _ = choose_links(NOTTING, ev)
    assert [x.phrase for x in links] == ["American Beauty", "romance"]


def test_without_history_the_request_word_the_items_genre_and_year() -> None:
    ev = build_evidence([cand(ALIENS)], [], "80s horror", {})[0]
    links, cites = choose_links(ALIENS, ev)
    assert [x.phrase for x in links] == ["horror", "1986", "sci-fi"] and cites == []
    # No request either: the item's own most specific genre and year.
    links, _ = choose_links(ALIENS, Evidence())
    assert [x.phrase for x in links] == ["horror", "1986", "sci-fi"]


def test_a_request_word_takes_the_last_place_of_a_history_link() -> None:
    ev = build_evidence([cand(RONIN)], [HEAT, DOGS], "a heist movie", {})[0]
    links, _ = choose_links(RONIN, ev)
    assert [x.phrase for x in links] == ["Heat", "Reservoir Dogs", "heist"]


def test_a_title_that_is_not_plain_is_not_quoted_and_the_item_is_never_cited() -> None:
    odd = Support(id="x", title='Say "Hi" (1999)', by=["attributes"], similarity=0.1,
                  shared=["genre Crime"])  # fmt: skip
    itself = Support(id="r", title="Ronin (1998)", by=["itemknn"], similarity=0.9, shared=[])
    links, cites = choose_links(RONIN, Evidence(history=[odd, itself]))
    assert cites == [] and all("Hi" not in x.phrase and "Ronin" not in x.phrase for x in links)


# -- the pattern ----------------------------------------------------------------------------
PHRASES = ["Heat", "Reservoir Dogs", "crime"]


@pytest.mark.parametrize(
    "sentence",
    [
        "Like Heat and Reservoir Dogs, this tense crime story should suit you.",
        "Another crime film for fans of Reservoir Dogs and Heat.",
        "You rated Heat highly, Reservoir Dogs too, so try this crime thriller.",
    ],
)
def test_a_sentence_with_every_phrase_in_any_order_passes(sentence: str) -> None:
    assert re.fullmatch(sentence_pattern(PHRASES, 120), sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Like Heat, this tense crime story should suit you.",  # a fact missing
        "Like Heat and Reservoir Dogs, it is a great film.",  # another missing
        "Like Heat and Reservoir Dogs, this crime film is from the 20.",  # number fragment
        "Like Heat and Reservoir Dogs. A crime film.",  # two sentences
        "like Heat and Reservoir Dogs, a crime film.",  # no capital
        "Like Heat and Reservoir Dogs, a crime film",  # no period
        "Like <data>Heat</data> and Reservoir Dogs, a crime film.",  # markup
        "Like Heated Reservoir Dogs, a crime film.",  # a phrase inside another word
        "You liked 'Heat' and Reservoir Dogs, a crime film.",  # quoting
        "You liked Heat; Reservoir Dogs; crime.",  # the phrase list copied
        "You liked Heat and  Reservoir Dogs, a crime film.",  # a double space
        "You liked Heat and Reservoir Dogs, a crime film,.",  # ends on a comma
        "Heat and Reservoir Dogs point to this crime film for you.",  # a phrase opens it
        "Like Heat and Reservoir Dogs, a crime film from the 20.",  # ends in a number
    ],
)
def test_a_sentence_missing_a_fact_or_shaped_badly_fails(sentence: str) -> None:
    assert not re.fullmatch(sentence_pattern(PHRASES, 120), sentence)


def test_the_answer_regex_compiles_in_both_grammar_engines() -> None:
    """vLLM's structured outputs (xgrammar here) and llguidance (the transformers engine)."""
    rx = schema_regex(("h", "d"), tuple(PHRASES), 120)
    good = json.dumps({"cites": ["h", "d"], "rationale": PHRASES_SENTENCE})
    assert re.fullmatch(rx, good)
    assert not re.fullmatch(rx, good.replace('"d"', '"b"'))  # cites are an enum
    xgr = pytest.importorskip("xgrammar")
    assert xgr.Grammar.from_regex(rx) is not None
    llg = pytest.importorskip("llguidance")
    assert llg.LLMatcher.validate_grammar(llg.grammar_from("regex", rx)) == ""
    model = answer_model(["h", "d"], PHRASES, 120)
    assert model.model_validate_json(good)


PHRASES_SENTENCE = "Like Heat and Reservoir Dogs, this is a crime story for you."


# -- the cut check ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sentence",
    [
        "The Matrix Reloaded is a classic action adventure film from the 20.",
        "It is a comedy from the 2000s, which aligns with the 200.",
        "This movie was recommended because it was in the 2010s, which aligns with their''.",
        "A crime film that fans of Heat will like because it is.",
        "You liked Heat, and this one is a.",
    ],
)
def test_a_sentence_cut_at_the_cap_is_a_fault(sentence: str) -> None:
    assert cut_faults(sentence) and any(f.startswith("cut") for f in grammar_faults(sentence))


@pytest.mark.parametrize(
    "sentence",
    [
        "A 1986 horror film, as asked.",
        "Fans of Heat will like this heist film from the 1990s.",
        "Like Ocean's 11, a heist film for you.",
    ],
)
def test_a_whole_sentence_is_not_cut(sentence: str) -> None:
    assert not cut_faults(sentence)
    assert not grammar_faults(sentence, ["Ocean's 11"])


# -- the path --------------------------------------------------------------------------------
def test_the_linked_path_writes_sentences_that_carry_the_chosen_facts() -> None:
    cfg = RankingConfig(rationale_format="linked", rationale_template="explain_linked")
    ev = build_evidence([cand(RONIN)], [HEAT, DOGS], None, {})[0]
    req = RankRequest(
        history=[HEAT, DOGS], candidates=[cand(RONIN).model_copy(update={"evidence": ev})]
    )
    results = [([RankedItem(item=RONIN, rank=1, score=1.0, evidence=ev)], Trace(candidates=[]))]
    llm = FakeLLM()
    add_rationales(llm, cfg, [req], results, top_r=1)
    entry = results[0][0][0]
    assert entry.rationale == "You may like it, after Heat and Reservoir Dogs and crime."
    assert entry.cites == ["h", "d"] and entry.unsupported_terms == []
    sent = llm.requests[0]
    assert sent.hint["facts"] == PHRASES and re.fullmatch(sent.regex or "", json.dumps(
        {"cites": ["h", "d"], "rationale": PHRASES_SENTENCE}))  # fmt: skip
    assert "Use these phrases: <data>Heat; Reservoir Dogs; crime</data>" in sent.messages[1].content


def test_an_unsupported_claim_is_asked_again_then_gives_way_to_the_floor() -> None:
    cfg = RankingConfig(
        rationale_format="linked", rationale_template="explain_linked", max_repair_rounds=1
    )
    ev = build_evidence([cand(RONIN)], [HEAT, DOGS], None, {})[0]
    req = RankRequest(history=[HEAT, DOGS], candidates=[cand(RONIN)])
    results = [([RankedItem(item=RONIN, rank=1, score=1.0, evidence=ev)], Trace(candidates=[]))]
    why = "Like Heat and Reservoir Dogs, a scary crime film for you."  # Ronin is no horror
    llm = FakeLLM(lambda r: json.dumps({"cites": ["h", "d"], "rationale": why}))
    add_rationales(llm, cfg, [req], results, top_r=1)
    assert len(llm.requests) == 2 and llm.requests[1].temperature >= 0.7
    assert results[0][0][0].rationale.startswith("Like Heat (1995), it shares")
    assert results[0][0][0].unsupported_terms == []
    assert all("unsupported" in r["detail"] for r in results[0][1].rejected_entries)


def test_the_grammar_metric_counts_a_cut_sentence() -> None:
    """The harness's grammar-fault rate fails on known-bad cut sentences from a real run."""
    from genre_eval.explain_metrics import grammar_fault_rate

    def entry(why: str) -> dict[str, object]:
        return {"rationale": why, "title": "Matrix Reloaded, The (2003)", "support": []}

    bad = [entry("The Matrix Reloaded is a classic action adventure film from the 20.")]
    good = [entry("An action film from 2003 for you.")]
    assert grammar_fault_rate(bad) == 1.0 and grammar_fault_rate(good) == 0.0


# Sentences of the linked v4 run (runs/rat-linked4-10, docs/explanations.md): read badly,
# and the grammar rule check of that run passed every one of them.
_V4_BAD = [
    ("The movie was recommended to theuser, horror, because it meets the user's genre.", 1),
    ("Sci-fi and it's well-known for its's Black Mirror: White Christmas series.", 1),
    ("Serenity and Black Mirror, because they's sci-fi.", 1),
    ("Chinatown is a highly ratedThriller.", 1),
]


@pytest.mark.parametrize(("why", "grammar"), _V4_BAD)
def test_run_together_words_and_pronoun_s_are_grammar_faults(why: str, grammar: int) -> None:

    assert len([f for f in grammar_faults(why) if "cut" not in f]) >= grammar, why


@pytest.mark.parametrize(
    "why",
    [
        "Since you enjoyed Alien and Predator, this sci-fi film should suit you.",
        "It's a 1986 horror film, as you asked.",
        "Many people who liked Amelie also loved this romance.",
    ],
)
def test_plain_sentences_have_no_grammar_or_voice_fault(why: str) -> None:

    assert grammar_faults(why) == [] and voice_faults(why) == []


def test_the_prompt_speak_metric_fails_on_the_user_and_recommended() -> None:
    """The harness's prompt-speak rate sees the v4 run's "was recommended to theuser" and
    "the user's", and reads no word inside a title ("The Recommendation")."""
    from genre_eval.explain_metrics import prompt_speak_rate

    def entry(why: str, title: str = "Orphan (2009)") -> dict[str, object]:
        return {"rationale": why, "title": title, "support": []}

    assert prompt_speak_rate([entry(_V4_BAD[0][0])]) == 1.0
    assert (
        prompt_speak_rate([entry("The user enjoyed The Net and Outbreak, both thrillers.")]) == 1.0
    )
    assert (
        prompt_speak_rate([entry("Since you liked Heat, this crime film should suit you.")]) == 0.0
    )
    ok = entry("The Recommendation is a drama, as you asked.", "Recommendation, The (2001)")
    assert prompt_speak_rate([ok]) == 0.0


def test_prompt_speak_is_asked_again_sampled() -> None:
    """A sentence that says "recommended to the user" is rejected for its wording and asked
    again at temperature 0.7; the second, plain sentence is kept."""
    cfg = RankingConfig(
        rationale_format="linked", rationale_template="explain_linked", max_repair_rounds=1
    )
    ev = build_evidence([cand(RONIN)], [HEAT, DOGS], None, {})[0]
    req = RankRequest(history=[HEAT, DOGS], candidates=[cand(RONIN)])
    results = [([RankedItem(item=RONIN, rank=1, score=1.0, evidence=ev)], Trace(candidates=[]))]
    assert [link.phrase for link in choose_links(RONIN, ev)[0]] == [
        "Heat",
        "Reservoir Dogs",
        "crime",
    ]
    bad = "The user liked Heat and Reservoir Dogs, both crime films."
    good = "Since you liked Heat and Reservoir Dogs, this crime film should suit you."
    answers = iter([bad, good])
    llm = FakeLLM(lambda r: json.dumps({"cites": ["h", "d"], "rationale": next(answers)}))
    add_rationales(llm, cfg, [req], results, top_r=1)
    assert len(llm.requests) == 2 and llm.requests[1].temperature >= 0.7
    assert results[0][0][0].rationale == good
    assert "prompt speak" in results[0][1].rejected_entries[0]["detail"]


@pytest.mark.parametrize(
    "why",
    [
        # runs/rat-linked5-10, after the prompt spoke to the reader
        "You enjoyed The Dark Knight Rises, which are both movies youliked, adventure.",
        "It was released in 1995, which match the two years mentioned intheCITES.",
        "You enjoyed Jagged Edge and Body Heat, and crime is a genre that's.",
        # runs/rationales_linked2 (200 users, with the floor)
        "Michael Clayton won you over, and this drama film is in thesamegenre.",
        "You enjoyed Outbreak and Die Hard, and this combination suitsyou.",
    ],
)
def test_the_linked5_run_faults_are_grammar_faults(why: str) -> None:
    assert grammar_faults(why, ["Dark Knight Rises, The (2012)"]), why


def test_the_model_speaking_as_itself_is_prompt_speak() -> None:
    assert voice_faults("You enjoyed Forrest Gump, and it's a favorite of mine.")
    assert voice_faults("I think you will like it.")
    assert not voice_faults("You enjoyed Forrest Gump and True Lies, both comedies.")
    assert not voice_faults("Since you liked Rocky I, this drama should suit you.", ["Rocky I"])


# -- the floor: when every sentence fails ---------------------------------------------------
def _explain_with(answers: list[str], history: list[Item], query: str | None = None):
    cfg = RankingConfig(
        rationale_format="linked", rationale_template="explain_linked", max_repair_rounds=1
    )
    ev = build_evidence([cand(RONIN)], history, query, {})[0]
    req = RankRequest(history=history, candidates=[cand(RONIN)], query=query)
    results = [([RankedItem(item=RONIN, rank=1, score=1.0, evidence=ev)], Trace(candidates=[]))]
    cites = choose_links(RONIN, ev)[1]
    it = iter(answers)
    llm = FakeLLM(lambda r: json.dumps({"cites": cites, "rationale": next(it)}))
    add_rationales(llm, cfg, [req], results, top_r=1)
    return results[0][0][0], results[0][1], ev


def test_a_sentence_that_fails_every_round_gives_way_to_the_evidence_template() -> None:
    """Two rounds of a faulty sentence ("theuser"): the item shows the evidence format's
    true template sentence, the trace says so, and the harness counts it as a template."""
    from genre_eval.explain_metrics import explanation_entry, is_template

    bad = "Since theuser liked Heat and Reservoir Dogs, this crime film fits."
    entry, trace, _ = _explain_with([bad, bad], [HEAT, DOGS])
    assert entry.rationale == (
        "Like Heat (1995), it shares the genres Action, Crime and Thriller, the tag heist "
        "and the 1990s."
    ), entry.rationale
    assert entry.cites == ["h"] and entry.unsupported_terms == []
    assert any("template sentence is shown" in n for n in trace.notes), trace.notes
    assert len(trace.rejected_entries) == 2
    assert is_template(explanation_entry(entry))


def test_the_floor_for_a_request_without_history_names_its_genre_and_year() -> None:
    bad = "You asked for crime, and theuser got 1998 action."
    entry, trace, ev = _explain_with([bad, bad], [], query="a crime film")
    assert ev.request, ev
    assert entry.rationale == "A 1998 crime film, as asked.", entry.rationale
    assert entry.cites == []


def test_a_good_second_sentence_is_kept_and_no_floor_is_used() -> None:
    bad = "Since theuser liked Heat and Reservoir Dogs, this crime film fits."
    good = "Since you liked Heat and Reservoir Dogs, this crime film should suit you."
    entry, trace, _ = _explain_with([bad, good], [HEAT, DOGS])
    assert entry.rationale == good and not trace.notes


def test_a_negation_is_a_fault_outside_titles() -> None:
    """runs/rationales_linked2: "You liked Waterworld and Stargate, but not adventure." (a
    claim no evidence holds); a title's own "No" is not read."""
    assert negation_faults("You liked Waterworld and Stargate, but not adventure.")
    assert negation_faults("This drama was not as popular as the other two.")
    titles = ["No Country for Old Men (2007)"]
    assert not negation_faults("You liked No Country for Old Men, a crime film.", titles)
    assert not negation_faults("Since you liked Heat, this crime film should suit you.")


def test_a_negation_is_asked_again_and_then_floored() -> None:
    bad = "You liked Heat and Reservoir Dogs, but not crime."
    entry, trace, _ = _explain_with([bad, bad], [HEAT, DOGS])
    assert entry.rationale.startswith("Like Heat (1995), it shares")
    assert all("negation" in r["detail"] for r in trace.rejected_entries)


def test_an_answer_cut_at_the_token_cap_every_round_is_floored_not_an_error() -> None:
    """runs/rationales_linked3, user 573: four answers ran "people15455555555555" to the
    token cap; the request failed. Now the item gets the floor sentence and a note."""
    cut = '{"cites": ["h", "d"], "rationale": "Heat is a movie that people1545555'
    cfg = RankingConfig(
        rationale_format="linked", rationale_template="explain_linked", max_repair_rounds=1
    )
    ev = build_evidence([cand(RONIN)], [HEAT, DOGS], None, {})[0]
    req = RankRequest(history=[HEAT, DOGS], candidates=[cand(RONIN)])
    results = [([RankedItem(item=RONIN, rank=1, score=1.0, evidence=ev)], Trace(candidates=[]))]
    add_rationales(FakeLLM(lambda r: cut), cfg, [req], results, top_r=1)
    assert results[0][0][0].rationale.startswith("Like Heat (1995), it shares")
    assert any("template sentence is shown" in n for n in results[0][1].notes)


def test_a_free_number_is_a_whole_word_of_at_most_four_digits() -> None:
    rx = re.compile(sentence_pattern(["Heat"], 120))
    assert rx.fullmatch("You liked Heat in 1995, a crime film.")
    assert not rx.fullmatch("You liked Heat in 19955, a crime film.")
    assert not rx.fullmatch("You liked Heat, people1545555 did too.")
