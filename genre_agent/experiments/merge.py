"""An interleaved answer: two variants' recommendations merged by team draft."""

from __future__ import annotations

import random

from genre_agent.experiments.interleave import impression_seed, team_draft
from genre_agent.types import RankedItem, Recommendation

INTERLEAVED = "interleaved"


def interleaved(
    experiment: str,
    answers: dict[str, Recommendation],
    k: int,
    request_id: str,
) -> tuple[Recommendation, list[str]]:
    """The team-draft merge of the two answers (first variant = team a), its items taken
    from the answer that picked them, and per item the variant that picked it. The coin
    flips are seeded by (experiment, user, request id): a request replays the same way."""
    (name_a, a), (name_b, b) = answers.items()
    by_id = {it.item.id: it for it in b.items} | {it.item.id: it for it in a.items}
    own = {"a": {it.item.id: it for it in a.items}, "b": {it.item.id: it for it in b.items}}
    rng = random.Random(impression_seed(experiment, a.user_id or "", request_id))
    il = team_draft([it.item.id for it in a.items], [it.item.id for it in b.items], k, rng)
    items: list[RankedItem] = []
    for n, (item_id, team) in enumerate(zip(il.items, il.teams, strict=True), start=1):
        picked = own[team].get(item_id, by_id[item_id])
        items.append(picked.model_copy(update={"rank": n}))
    teams = [name_a if t == "a" else name_b for t in il.teams]
    trace = a.trace.model_copy(deep=True)
    trace.ranked_by = f"interleave:{name_a}+{name_b}"
    trace.notes.append(
        f"interleaved (team draft) from variants {name_a!r} and {name_b!r}; "
        "interleaved answers have no rationales"
    )
    trace.experiment, trace.variant, trace.teams = experiment, INTERLEAVED, teams
    return a.model_copy(update={"items": items, "trace": trace}), teams
