"""Count invalid outputs over many real recommendations on ml-latest-small users.

    python -m bench.validity --users 200 --candidates 20 -k 5

Checks every result independently of the ranker's own validation: ids on the candidate list,
no duplicates, exactly k items, none from the user's history, non-empty rationales. Prints the
counts, including how many answers needed constrained repair rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=Path(".genre/bench"))
    args = ap.parse_args()

    from bench.common import ml_recommender, sample_users
    from genre_agent.service.recommender import RecRequest

    rec = ml_recommender(args.workdir, **{"retrieval.n_candidates": args.candidates})
    users = sample_users(rec, args.users, seed=1)
    counts = {
        "results": 0,
        "items": 0,
        "off_list": 0,
        "duplicate": 0,
        "wrong_length": 0,
        "in_history": 0,
        "empty_rationale": 0,
        "with_unsupported_terms": 0,
        "answers_with_repair": 0,
        "rejected_entries": 0,
        "failed_requests": 0,
    }
    t0 = time.perf_counter()
    for start in range(0, len(users), args.batch):
        chunk = users[start : start + args.batch]
        results = rec.recommend_many([RecRequest(user_id=u, k=args.k) for u in chunk])
        for u, r in zip(chunk, results, strict=True):
            ids = [i.item.id for i in r.items]
            cands = {c.item.id for c in r.trace.candidates}
            hist = {x.item_id for x in rec.interactions.history(u)}
            counts["results"] += 1
            counts["items"] += len(ids)
            counts["off_list"] += sum(i not in cands for i in ids)
            counts["duplicate"] += len(ids) - len(set(ids))
            counts["wrong_length"] += len(ids) != args.k
            counts["in_history"] += sum(i in hist for i in ids)
            counts["empty_rationale"] += sum(not (i.rationale or "").strip() for i in r.items)
            counts["with_unsupported_terms"] += sum(bool(i.unsupported_terms) for i in r.items)
            counts["answers_with_repair"] += r.trace.repair_rounds > 0
            counts["rejected_entries"] += len(r.trace.rejected_entries)
        elapsed = time.perf_counter() - t0
        running = ", ".join(f"{k}={v}" for k, v in counts.items())
        print(f"{counts['results']}/{len(users)} users, {elapsed:.0f}s, {running}", flush=True)
    for key, value in counts.items():
        print(f"{key:>24}: {value}")
    print(f"{'users/min':>24}: {60 * counts['results'] / (time.perf_counter() - t0):.2f}")


if __name__ == "__main__":
    main()
