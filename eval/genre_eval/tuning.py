"""LoRA fine-tuning of the scoring ranker on a catalog's interactions (``genre tune``).

Examples: a user's history up to time t, the item at t as the positive and uniformly sampled
unseen items as negatives, rendered by ``ScoringRanker`` itself (same template, labels, chat
template), so training and serving prompts are byte-identical. The positive is put at a
uniformly random label position, so no position prior can be learned.

Split: examples only come from interactions strictly before each user's validation target
(``protocols.train_interactions`` / leave-one-out by time, as the eval harness splits), so no
validation or test target is ever a positive or part of a training history.

Loss (LlamaRec-style verbalizer): cross-entropy over the candidate label tokens at the answer
position, ``-log softmax(z[label ids])[positive]``. Only the last position's logits are
computed (``logits_to_keep=1``); the rest of the vocabulary plays no part, exactly as scoring
renormalises over the labels at serve time.

Outputs under ``tune.out_dir``: ``adapter/`` (peft), ``merged/`` (full safetensors checkpoint,
loadable as ``llm.model = "<dir>"``), ``checkpoint/`` (resume state), ``train_log.jsonl``
and ``genre_adapter.json`` (provenance).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_agent.config import Config, RankingConfig, TuneConfig
from genre_agent.errors import ConfigError, ModelError
from genre_agent.ranking.scoring import LABELS
from genre_eval.tuning_data import Example as Example
from genre_eval.tuning_data import build_examples as build_examples
from genre_eval.tuning_data import score_request as score_request
from genre_eval.tuning_data import training_tiers as training_tiers

Progress = Callable[[str, int, int, dict[str, float]], None]


@dataclass
class Encoded:
    input_ids: list[int]
    label_ids: list[int]
    target: int


def encode(
    ex: Example,
    ds: Any,
    tokenizer: Any,
    cfg: TuneConfig,
    ranking: RankingConfig,
    tiers: Mapping[str, str] | None = None,
) -> Encoded:
    """Tokenise the serve-time prompt; drop the oldest history items until it fits."""
    from genre_agent.llm.engines import chat_text, label_token_ids

    history_len = min(cfg.history_len, len(ex.history))
    while True:
        sreq = score_request(ex, ds, history_len, ranking, tiers)
        ids = tokenizer(chat_text(tokenizer, sreq), add_special_tokens=False)["input_ids"]
        if len(ids) <= cfg.max_seq_len:
            break
        if history_len == 0:
            raise ConfigError(
                f"tune.max_seq_len={cfg.max_seq_len} is shorter than a prompt with no "
                f"history ({len(ids)} tokens)"
            )
        history_len -= 1
    return Encoded(list(ids), label_token_ids(tokenizer, sreq.labels), ex.position)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def label_loss(logits: Any, label_ids: Sequence[int], target: int) -> Any:
    """-log softmax(logits[label_ids])[target]: the verbalizer cross-entropy."""
    import torch

    picked = logits[..., list(label_ids)].float().reshape(1, -1)
    return torch.nn.functional.cross_entropy(picked, torch.tensor([target]))


@dataclass
class _Run:
    """The trained model with its optimiser and schedule, for one ``Tuner.train`` call."""

    model: Any
    params: list[Any]
    opt: Any
    sched: Any
    steps_per_epoch: int
    total_steps: int


class Tuner:
    """Builds examples, trains a LoRA adapter with checkpoints, merges and records provenance."""

    def __init__(
        self,
        cfg: Config,
        progress: Progress | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.t = cfg.tune
        self.out = Path(self.t.out_dir)
        self.progress = progress
        self.announce = announce or (lambda _msg: None)

    # --- data --------------------------------------------------------------------------
    def load_data(self) -> Any:
        from genre_eval.datasets import DatasetConfig, load_dataset

        if self.t.data is None:
            raise ConfigError("tune.data: set the interactions directory (--data DIR)")
        return load_dataset(DatasetConfig(kind=self.t.data_kind, path=self.t.data))

    def base_path(self) -> Path:
        from genre_agent.llm.models import resolve_model

        path = Path(resolve_model(self.t.base_model or self.cfg.llm.model))
        if not (path / "config.json").exists():
            raise ModelError(f"tune: base model {path} is not a local HF checkpoint")
        return path

    # --- model -------------------------------------------------------------------------
    def _load(self, base: Path) -> tuple[Any, Any]:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, self.t.dtype))
        n_layers = int(model.config.num_hidden_layers)
        layers = None
        if self.t.lora_last_layers is not None:
            layers = list(range(max(0, n_layers - self.t.lora_last_layers), n_layers))
        lora = LoraConfig(
            layers_to_transform=layers,
            r=self.t.lora_r,
            lora_alpha=self.t.lora_alpha,
            lora_dropout=self.t.lora_dropout,
            target_modules=list(self.t.target_modules),
            task_type="CAUSAL_LM",
        )
        return tok, get_peft_model(model, lora)

    def train(self, resume: bool = True) -> dict[str, Any]:
        """Train (resuming from ``checkpoint/`` if present); returns the provenance record."""
        import torch

        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        torch.manual_seed(self.t.seed)
        t_start = time.perf_counter()
        ds = self.load_data()
        base = self.base_path()
        self.out.mkdir(parents=True, exist_ok=True)
        examples = build_examples(ds, self.t)
        self.announce(f"{len(examples)} examples from {len(ds.by_user)} users; base {base}")
        tok, model = self._load(base)
        ranking = self.cfg.ranking
        tiers = training_tiers(ds) if ranking.popularity_hint else None
        encoded = [encode(ex, ds, tok, self.t, ranking, tiers) for ex in examples]
        lengths = [len(e.input_ids) for e in encoded]
        self.announce(f"prompt tokens: mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}")
        run = self._optimiser(model, len(encoded))
        log_path = self.out / "train_log.jsonl"
        step = self._resume(run) if resume else 0
        if step == 0 and log_path.exists():
            log_path.unlink()
        self._loop(run, encoded, step, log_path)
        train_s = time.perf_counter() - t_start
        model.eval()
        adapter_dir = self.out / "adapter"
        model.save_pretrained(adapter_dir)
        tok.save_pretrained(adapter_dir)
        prov = self._provenance(base, ds, examples, lengths, train_s, log_path)
        prov["planned_steps"] = run.total_steps
        # Examples actually trained on (a max_minutes stop ends before the planned steps).
        prov["examples_trained"] = min(
            prov["steps"] * self.t.grad_accum, len(encoded) * self.t.epochs
        )
        (adapter_dir / "genre_adapter.json").write_text(json.dumps(prov, indent=2))
        (self.out / "genre_adapter.json").write_text(json.dumps(prov, indent=2))
        if self.t.merge:
            self.merge(model, tok, prov)
        return prov

    def _optimiser(self, model: Any, n_examples: int) -> _Run:
        """AdamW over the adapter's parameters, with linear warm-up then linear decay to 0."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.t.lr, weight_decay=0.0)
        steps_per_epoch = math.ceil(n_examples / self.t.grad_accum)
        total_steps = steps_per_epoch * self.t.epochs
        warm = self.t.warmup_steps

        def lr_at(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            rest = max(total_steps - warm, 1)
            return max(0.0, 1.0 - (step - warm) / rest)  # linear decay to 0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        return _Run(model, params, opt, sched, steps_per_epoch, total_steps)

    def _resume(self, run: _Run) -> int:
        """Load ``checkpoint/`` into the run when there is one; returns the step reached."""
        import torch

        ckpt = self.out / "checkpoint"
        if not (ckpt / "state.pt").exists():
            return 0
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = torch.load(ckpt / "state.pt", weights_only=False)
        set_peft_model_state_dict(run.model, load_file(str(ckpt / "adapter.safetensors")))
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        self.announce(f"resumed at step {step}/{run.total_steps}")
        return step

    def _loop(self, run: _Run, encoded: Sequence[Encoded], step: int, log_path: Path) -> None:
        """Optimiser steps from ``step`` to the end (or ``tune.max_minutes``), logged and saved."""
        run.model.train()
        order_rng = random.Random(self.t.seed)
        epoch_orders = []
        for _ in range(self.t.epochs):
            order = list(range(len(encoded)))
            order_rng.shuffle(order)
            epoch_orders.append(order)
        t_loop = time.perf_counter()
        start_step = step
        while step < run.total_steps:
            epoch, within = divmod(step, run.steps_per_epoch)
            batch = epoch_orders[epoch][
                within * self.t.grad_accum : (within + 1) * self.t.grad_accum
            ]
            loss, acc = self._step(run, [encoded[i] for i in batch])
            step += 1
            rec: dict[str, float] = {
                "step": step,
                "epoch": epoch,
                "loss": loss,
                "acc": acc,
                "lr": float(run.sched.get_last_lr()[0]),
                "seconds": time.perf_counter() - t_loop,
            }
            with log_path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            if self.progress:
                per = (time.perf_counter() - t_loop) / (step - start_step)
                self.progress(
                    "tune", step, run.total_steps, {"loss": rec["loss"], "s_per_step": per}
                )
            over = (
                self.t.max_minutes is not None
                and time.perf_counter() - t_loop > 60 * self.t.max_minutes
            )
            last = step == run.total_steps
            if (self.t.save_every and step % self.t.save_every == 0) or last or over:
                self._checkpoint(run.model, run.opt, run.sched, step, self.out / "checkpoint")
            if over:
                self.announce(f"tune.max_minutes reached at step {step}/{run.total_steps}")
                break

    def _step(self, run: _Run, batch: Sequence[Encoded]) -> tuple[float, float]:
        """One optimiser step over a batch; returns its mean loss and label accuracy."""
        import torch

        run.opt.zero_grad()
        losses, hits = [], 0
        for enc in batch:
            ids = torch.tensor([enc.input_ids])
            logits = run.model(input_ids=ids, logits_to_keep=1).logits[0, -1]
            loss = label_loss(logits, enc.label_ids, enc.target)
            (loss / len(batch)).backward()
            losses.append(float(loss.detach()))
            picked = logits[enc.label_ids].detach()
            hits += int(int(torch.argmax(picked)) == enc.target)
        torch.nn.utils.clip_grad_norm_(run.params, 1.0)
        run.opt.step()
        run.sched.step()
        return sum(losses) / len(losses), hits / len(batch)

    def _checkpoint(self, model: Any, opt: Any, sched: Any, step: int, ckpt: Path) -> None:
        import torch
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        tmp = ckpt.with_name("checkpoint.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        sd = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(sd, str(tmp / "adapter.safetensors"))
        torch.save(
            {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "torch_rng": torch.get_rng_state(),
            },
            tmp / "state.pt",
        )
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.replace(ckpt)

    def _provenance(
        self,
        base: Path,
        ds: Any,
        examples: Sequence[Example],
        lengths: Sequence[int],
        train_s: float,
        log_path: Path,
    ) -> dict[str, Any]:
        base_meta_path = base / "genre_model.json"
        base_meta = json.loads(base_meta_path.read_text()) if base_meta_path.exists() else {}
        log = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
        head = log[: max(1, len(log) // 10)]
        tail = log[-max(1, len(log) // 10) :]
        return {
            "base_model": str(base),
            "base_name": base_meta.get("name"),
            "base_gguf_sha256": base_meta.get("gguf_sha256"),
            "dataset": ds.name,
            "dataset_sha256": ds.sha256,
            "examples": len(examples),
            "examples_sha256": hashlib.sha256(
                json.dumps([[e.user_id, e.history, e.candidates] for e in examples]).encode()
            ).hexdigest(),
            "prompt_tokens_mean": sum(lengths) / len(lengths),
            "scoring_template": self.cfg.ranking.scoring_template,
            "tune_config": self.t.model_dump(mode="json"),
            "steps": len(log),
            "loss_first_10pct": sum(r["loss"] for r in head) / len(head),
            "loss_last_10pct": sum(r["loss"] for r in tail) / len(tail),
            "train_seconds": round(train_s, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def merge(self, model: Any, tok: Any, prov: dict[str, Any]) -> Path:
        """Fold the adapter into the base weights and save a plain safetensors checkpoint."""
        import torch

        merged_dir = self.out / "merged"
        staging = self.out / "merged.staging"
        shutil.rmtree(staging, ignore_errors=True)
        merged = model.merge_and_unload()
        merged = merged.to(torch.bfloat16)  # the serving dtype of the packaged checkpoints
        merged.save_pretrained(staging, safe_serialization=True)
        tok.save_pretrained(staging)
        files = {
            p.name: _sha256_file(p) for p in sorted(staging.iterdir()) if p.suffix == ".safetensors"
        }
        revision = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        meta = {
            "name": f"{prov.get('base_name') or 'model'}+lora",
            "revision": "tuned-" + revision[:10],
            "gguf_sha256": prov.get("base_gguf_sha256"),
            "safetensors_sha256": files,
            "adapter": prov,
        }
        (staging / "genre_model.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(merged_dir, ignore_errors=True)
        staging.replace(merged_dir)
        self.announce(f"merged checkpoint: {merged_dir}")
        return merged_dir


def merge_adapter(base: Path, adapter: Path, out_dir: Path) -> Path:
    """Merge a saved adapter directory into ``base`` (for adapters trained elsewhere)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(model, adapter)
    tok = AutoTokenizer.from_pretrained(base)
    prov_path = adapter / "genre_adapter.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    tuner = Tuner.__new__(Tuner)
    tuner.out = out_dir
    tuner.announce = lambda _m: None
    return tuner.merge(peft_model, tok, prov)


__all__ = [
    "LABELS",
    "Example",
    "Tuner",
    "build_examples",
    "encode",
    "label_loss",
    "merge_adapter",
    "score_request",
]
