"""Label-position calibration for scoring mode, and a position-bias measurement.

Content-free calibration (Zhao et al. 2021, "Calibrate Before Use"): the model's preference
for a label *position*, independent of the candidate behind it, is estimated by scoring the
same prompt (same user, same history, same number of labels) with every candidate replaced by
a placeholder. With ``p`` the label distribution of the real prompt and ``p_cf`` that of the
content-free prompt, the calibrated distribution is ``q = softmax(log p - log p_cf)``, i.e.
``diag(p_cf)^-1 p`` renormalised. One extra pass per window; in vLLM it shares the prefix
(system prompt + history) with the real pass, so it costs a fraction of one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

PLACEHOLDER_TITLE = "N/A"


def placeholder_candidates(labels: Sequence[str]) -> list[dict[str, str]]:
    """Template context for ``len(labels)`` content-free candidates."""
    return [{"label": lab, "id": "", "title": PLACEHOLDER_TITLE, "text": ""} for lab in labels]


def calibrate(logprobs: Mapping[str, float], prior: Mapping[str, float]) -> dict[str, float]:
    """log softmax(log p - log p_cf) over the labels of ``logprobs``.

    q_l = exp(lp_l - cf_l) / sum_m exp(lp_m - cf_m)
    """
    if set(logprobs) != set(prior):
        raise ValueError(f"labels differ: {sorted(logprobs)} vs {sorted(prior)}")
    raw = {lab: logprobs[lab] - prior[lab] for lab in logprobs}
    top = max(raw.values())
    log_z = top + math.log(sum(math.exp(v - top) for v in raw.values()))
    return {lab: v - log_z for lab, v in raw.items()}


def split_by_position(
    cases: Sequence[tuple[Sequence[str], str, float]], head: int = 5
) -> dict[str, tuple[float, int]]:
    """Mean metric when the target sits in the first ``head`` vs the last ``head`` positions.

    ``cases`` are (presented candidate ids, target id, metric value). Returns
    ``{"first": (mean, n), "last": (mean, n)}``; a position-unbiased ranker has equal means up
    to noise, a ranker that prefers early labels has first >> last.
    """
    groups: dict[str, list[float]] = {"first": [], "last": []}
    for cands, target, value in cases:
        if target not in cands:
            continue
        pos = list(cands).index(target)
        if pos < head:
            groups["first"].append(value)
        elif pos >= len(cands) - head:
            groups["last"].append(value)
    return {k: (sum(v) / len(v) if v else float("nan"), len(v)) for k, v in groups.items()}
