"""Benchmark `recommend` on ml-latest-small: load time, latency, tokens/s, RSS, batching.

    python -m bench.bench_recommend --users 20

Prints one table. Sequential and batched runs use the same users in the same process, so their
ratio is comparable even on a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import pct, print_metrics


class PeakRSS:
    """Samples the RSS of this process plus all its children (vLLM's engine processes)."""

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.peak = 0
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> int:
        import psutil

        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> float:
        self._stop.set()
        self.sample()
        return self.peak / 1024**3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=Path(".genre/bench"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--engine", default="vllm")
    args = ap.parse_args()

    from bench.common import ml_recommender, sample_users
    from genre_agent.service.recommender import RecRequest

    rss = PeakRSS()
    rec = ml_recommender(
        args.workdir,
        **{
            "retrieval.n_candidates": args.candidates,
            "llm.model": args.model,
            "llm.engine": args.engine,
        },
    )
    users = sample_users(rec, args.users)
    t0 = time.perf_counter()
    _ = rec.llm
    load_s = time.perf_counter() - t0
    rec.recommend(user_id=users[0], k=args.k)  # warm-up: grammar compile, caches

    seq, llm_s, ret_s, toks = [], [], [], 0
    t_seq = time.perf_counter()
    for u in users:
        t = time.perf_counter()
        r = rec.recommend(user_id=u, k=args.k)
        seq.append(time.perf_counter() - t)
        llm_s.append(r.trace.seconds("llm_rank"))
        ret_s.append(r.trace.seconds("retrieve"))
        toks += r.trace.completion_tokens
    seq_total = time.perf_counter() - t_seq

    t_b = time.perf_counter()
    batch = rec.recommend_many([RecRequest(user_id=u, k=args.k) for u in users])
    batch_total = time.perf_counter() - t_b
    btoks = sum(r.trace.completion_tokens for r in batch)
    rss_gb = rss.stop()

    rows = [
        ("model", f"{rec.llm.model_id} ({args.engine})"),
        ("users", str(len(users))),
        ("candidates -> k", f"{args.candidates} -> {args.k} with rationales"),
        ("model load (s)", f"{load_s:.1f}"),
        ("recommend p50 (s)", f"{statistics.median(seq):.1f}"),
        ("recommend p95 (s)", f"{pct(seq, 0.95):.1f}"),
        ("time to candidates p50 (s)", f"{statistics.median(ret_s):.2f}"),
        (
            "time to ranked list p50 (s)",
            f"{statistics.median(llm_s):.1f}  (two_phase: the ids phase)",
        ),
        ("time to full response p50 (s)", f"{statistics.median(seq):.1f}"),
        ("decode tokens/s, sequential", f"{toks / seq_total:.1f}"),
        ("decode tokens/s, batched", f"{btoks / batch_total:.1f}"),
        ("users/min sequential", f"{60 * len(users) / seq_total:.2f}"),
        ("users/min batched", f"{60 * len(users) / batch_total:.2f}"),
        ("batched / sequential throughput", f"{seq_total / batch_total:.2f}x"),
        ("peak RSS, process + children (GB)", f"{rss_gb:.2f}"),
        ("repair rounds (batched run)", str(sum(r.trace.repair_rounds for r in batch))),
    ]
    print_metrics(rows)


if __name__ == "__main__":
    main()
