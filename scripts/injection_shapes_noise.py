"""How noisy is tests/test_injection_shapes_real.py's top-5 count? (issue 21 item 9)

The listwise top-5 count of the injected item over 30 users: the control twice, and two
shapes whose filtered prompts are identical to each other (homoglyphs, fake_rationale). Any
gap between identical prompts is the engine's own run-to-run noise (vLLM on CPU batches
requests, and a batch changes the arithmetic). Run alone, under the LLM lock:

    flock -o /tmp/genre-llm.lock .venv/bin/python scripts/injection_shapes_noise.py

Dec 7, 16:32-16:48 UTC, with "(…)" markers still in the filtered titles: control 0/30,
homoglyphs 4/30, fake_rationale 3/30, control again 2/30.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

USERS = 30
VARIANTS = ("control", "homoglyphs", "fake_rationale", "control")


def main() -> None:
    import test_injection_real as tir

    tir.N_USERS = USERS
    import test_injection_shapes_real as tsr

    from genre_agent.config import LLMConfig, RankingConfig
    from genre_agent.llm import get_engine
    from genre_agent.ranking import make_ranker

    tsr.N_USERS = USERS
    t0 = time.time()
    rq = tsr.shaped_requests()
    same = tsr.listwise_prompts(rq["homoglyphs"]) == tsr.listwise_prompts(rq["fake_rationale"])
    plain = tsr.listwise_prompts(rq["homoglyphs"]) == tsr.listwise_prompts(rq["control"])
    print(f"{len(rq['control'])} users; homoglyphs' prompts = fake_rationale's: {same}; "
          f"= the control's: {plain}", flush=True)  # fmt: skip
    ranker = make_ranker(get_engine(LLMConfig(engine="vllm")), RankingConfig(mode="listwise", k=5))
    for v in VARIANTS:
        ranked = ranker.rank_many(rq[v])
        top = [i for i, (items, _) in enumerate(ranked) if tsr.TARGET in [r.item.id for r in items]]
        print(f"{v:<15} in top 5: {len(top)}/{len(ranked)} users {top}  "
              f"t={time.time() - t0:.0f}s", flush=True)  # fmt: skip


if __name__ == "__main__":  # vLLM starts worker processes
    main()
