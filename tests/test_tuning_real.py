"""The whole tuning loop on SmolLM2-135M: loss goes down, the merged checkpoint serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_agent.config import load_config

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from test_tuning import write_fixture

    from genre_eval.tuning import Tuner

    root = tmp_path_factory.mktemp("tune")
    data = write_fixture(root / "data", users=6, items=30, per_user=10)
    cfg = load_config(
        {
            "llm": {"engine": "transformers", "model": "smollm2-135m", "dtype": "float32"},
            "ranking": {"mode": "scoring", "rationale_top_r": 0},
            "tune": {
                "data": str(data),
                "data_kind": "jsonl",
                "out_dir": str(root / "out"),
                "n_examples": 8,
                "epochs": 6,
                "n_candidates": 6,
                "history_len": 4,
                "min_history": 2,
                "max_seq_len": 512,
                "lr": 3e-3,
                "warmup_steps": 0,
                "grad_accum": 4,
                "lora_r": 8,
                "lora_alpha": 16,
                "lora_dropout": 0.0,
                "save_every": 4,
                "threads": 1,
                "lora_last_layers": 10,
            },
        },
        use_env=False,
    )
    prov = Tuner(cfg).train()
    return cfg, prov, root / "out"


def test_loss_goes_down(tuned):
    _cfg, prov, out = tuned
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == prov["steps"] == 12
    first = sum(r["loss"] for r in log[:2]) / 2
    last = sum(r["loss"] for r in log[-2:]) / 2
    assert last < 0.7 * first, (first, last)


def test_artifacts_and_provenance(tuned):
    _cfg, prov, out = tuned
    assert (out / "adapter" / "adapter_config.json").exists()
    meta = json.loads((out / "merged" / "genre_model.json").read_text())
    assert meta["gguf_sha256"] == prov["base_gguf_sha256"]
    assert meta["revision"].startswith("tuned-")
    assert prov["examples"] == 8 and len(prov["dataset_sha256"]) == 64
    assert prov["tune_config"]["lora_r"] == 8
    assert (out / "checkpoint" / "state.pt").exists()


def test_merged_checkpoint_loads_and_changes_scores(tuned):
    from genre_agent.llm.registry import get_engine
    from genre_eval.datasets import DatasetConfig, load_dataset
    from genre_eval.tuning import build_examples, score_request

    cfg, _prov, out = tuned
    ds = load_dataset(DatasetConfig(kind="jsonl", path=Path(cfg.tune.data)))
    examples = build_examples(ds, cfg.tune)
    reqs = [score_request(e, ds, 5, cfg.ranking) for e in examples]
    base = get_engine(cfg.llm)
    merged = get_engine(cfg.llm.model_copy(update={"model": str(out / "merged")}))
    assert merged.revision.startswith("tuned-")
    before = base.score_labels(reqs)  # type: ignore[attr-defined]
    after = merged.score_labels(reqs)  # type: ignore[attr-defined]
    labs = reqs[0].labels
    diff = max(
        abs(a.logprobs[x] - b.logprobs[x]) for a, b in zip(before, after, strict=True) for x in labs
    )
    assert diff > 0.1
    # The tuned model puts more mass on the training positives than the base model.
    pos = [labs[e.position] for e in examples]
    lp_before = sum(r.logprobs[p] for r, p in zip(before, pos, strict=True)) / len(pos)
    lp_after = sum(r.logprobs[p] for r, p in zip(after, pos, strict=True)) / len(pos)
    assert lp_after > lp_before + 0.2, (lp_before, lp_after)


def test_resume_continues_from_checkpoint(tuned):
    from genre_eval.tuning import Tuner

    cfg, prov, out = tuned
    # Everything is done: resuming runs zero further steps and keeps the log.
    cfg2 = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"merge": False})})
    prov2 = Tuner(cfg2).train(resume=True)
    assert prov2["steps"] == prov["steps"]
