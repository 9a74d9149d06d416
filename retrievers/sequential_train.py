"""Training the sequential model (retrievers.sequential) on CPU: bounded, resumable, seeded.

Data: each user's interactions sorted by timestamp, interactions that share a timestamp in
an order drawn from ``seed`` and the user id (never by item id: "the later of two same-second
items is the larger id" is a rule the model would learn; storage.interactions.time_ordered),
items outside the catalog dropped; the last ``max_len + 1`` of them give ``max_len`` (input,
next item) pairs. Users with fewer than two known items teach nothing and are skipped.

Loss (``loss``): ``"ce"`` is cross-entropy over every catalog item at every position;
``"sampled"`` is cross-entropy over the next item and ``negatives`` uniformly drawn items
shared by the batch (cheaper on large catalogs).

Budget: at most ``epochs`` epochs and about ``time_budget_s`` seconds of training, counted
over resumes too; training stops after the epoch that crosses the budget, and the report
(provenance's ``training``) says which bound stopped it.

Resume: every ``checkpoint_every`` epochs (and at the end) the model, the optimiser, the
epoch, the training time so far and every random state go to ``<checkpoint>/checkpoint.pt``,
keyed by a fingerprint of the training sequences and of the settings that shape the model.
A fit that finds a checkpoint with the same key carries on from it (a finished one is reused
as it is); any other key starts over. ``epochs``, ``time_budget_s``, ``threads`` and
``checkpoint_every`` only bound or pace training, so changing them keeps the checkpoint:
raise ``epochs`` or ``time_budget_s`` and fit again to train further.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genre_agent.catalog.items import Item
from genre_agent.config import SequentialConfig
from genre_agent.storage.interactions import Interaction, time_ordered
from retrievers.sequential import (
    PAD,
    SASRec,
    SequentialRetriever,
    left_pad,
    torch_threads,
)

Announce = Callable[[str], None]
# Called after each epoch with (epochs done, epochs in all, mean loss of the epoch).
OnEpoch = Callable[[int, int, float], None]

# Settings that only bound or pace training: changing them keeps a checkpoint.
PACING = frozenset({"epochs", "time_budget_s", "threads", "checkpoint_every"})
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainingReport:
    """How a fit ended: the ``training`` part of provenance."""

    epochs_done: int
    epochs: int
    stopped_by: str  # "epochs" or "time_budget"
    resumed_from_epoch: int | None
    train_seconds: float  # over every run that built this model, resumes included
    final_loss: float | None
    sequences: int  # users with two or more known items
    windows: int  # training rows (max_len stretches of their histories)


def user_sequences(
    ids: Iterable[str], rows: Iterable[Interaction], seed: int = 0
) -> list[list[int]]:
    """Each user's known items as indices (ids order + 1), by timestamp, ties in an order
    seeded by (``seed``, user) that does not depend on the ids or on the order of ``rows``;
    users sorted by id; users with fewer than two known items left out."""
    index = {i: n + 1 for n, i in enumerate(ids)}
    by_user: dict[str, list[Interaction]] = {}
    for r in rows:
        if r.item_id in index:
            by_user.setdefault(r.user_id, []).append(r)
    seqs = []
    for user in sorted(by_user):
        ordered = time_ordered(by_user[user], seed)
        if len(ordered) >= 2:
            seqs.append([index[r.item_id] for r in ordered])
    return seqs


# The code that shapes a trained model: the model and this training loop.
_CODE_FILES = (Path(__file__), Path(__file__).with_name("sequential.py"))


def code_version() -> str:
    """SHA-256 of the model and training code and the torch version. A checkpoint left by
    other code is not resumed: a shared checkpoint from before a change of the training
    code once gave the harness's learned row other numbers than a fresh run."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for path in _CODE_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(ids: list[str], seqs: list[list[int]], cfg: SequentialConfig) -> str:
    """SHA-256 of the vocabulary, the training sequences, the model-shaping settings and
    the code (:func:`code_version`)."""
    digest = hashlib.sha256(code_version().encode())
    shaping = {k: v for k, v in cfg.model_dump().items() if k not in PACING}
    digest.update(json.dumps([ids, shaping], sort_keys=True).encode())
    for seq in seqs:
        digest.update(json.dumps(seq).encode())
    return digest.hexdigest()


def windows(seq: list[int], max_len: int, every: bool) -> list[list[int]]:
    """The last ``max_len + 1`` items; with ``every``, also the earlier stretches (stepping
    back ``max_len`` at a time), so every item of a long history is a target once."""
    out = [seq[-(max_len + 1) :]]
    end = len(seq) - max_len
    while every and end >= 2:
        out.append(seq[max(0, end - max_len - 1) : end])
        end -= max_len
    return out


def _tensors(seqs: list[list[int]], max_len: int, every: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item targets, [windows, max_len] each, left-padded."""
    parts = [w for s in seqs for w in windows(s, max_len, every)]
    inputs = [left_pad(w[:-1], max_len) for w in parts]
    targets = [left_pad(w[1:], max_len) for w in parts]
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


def _loss(
    model: SASRec,
    inp: torch.Tensor,
    tgt: torch.Tensor,
    cfg: SequentialConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    states = model(inp)
    real = tgt != PAD
    h = states[real]  # [positions, d]
    y = tgt[real]
    weights = model.item_weights()
    if cfg.loss == "ce":
        return F.cross_entropy(h @ weights.T, y - 1)
    n_items = weights.shape[0]
    negs = torch.randint(1, n_items + 1, (cfg.negatives,), generator=gen)
    pos_logit = (h * model.item_emb(y)).sum(-1, keepdim=True)
    neg_logit = h @ model.item_emb(negs).T
    neg_logit = neg_logit.masked_fill(negs.unsqueeze(0) == y.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long))


def _load_checkpoint(path: Path, key: str, announce: Announce | None) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: say so and start over
        if announce:
            announce(f"sequential: cannot read checkpoint {path} ({exc}): starting over")
        return None
    if ckpt.get("key") != key:
        if announce:
            announce(
                f"sequential: checkpoint {path} is for other data, settings or code: starting over"
            )
        return None
    return ckpt


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write next to the target and rename, so a kill never leaves a damaged checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    meta = {k: state[k] for k in ("key", "epoch", "train_seconds", "losses")}
    (path.parent / "checkpoint.json").write_text(json.dumps(meta), encoding="utf-8")


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def train(
    cfg: SequentialConfig,
    items: Mapping[str, Item],
    rows: Iterable[Interaction],
    checkpoint: Path | None = None,
    announce: Announce | None = None,
    on_epoch: OnEpoch | None = None,
) -> SequentialRetriever:
    """Fit the sequential model on ``rows`` (see the module docstring); ``checkpoint`` is the
    folder to resume from and write to (None: no checkpoints)."""
    ids = sorted(items)
    seqs = user_sequences(ids, rows, cfg.seed)
    key = fingerprint(ids, seqs, cfg)
    with torch_threads(cfg.threads or len(os.sched_getaffinity(0)) or 1):
        report, model = _train(cfg, ids, seqs, key, checkpoint, announce, on_epoch)
    return SequentialRetriever(items, ids, model, asdict(report))


def _resume(
    cfg: SequentialConfig,
    path: Path | None,
    key: str,
    announce: Announce | None,
    model: SASRec,
    optim: torch.optim.Optimizer,
    gen: torch.Generator,
) -> tuple[int, float, list[float], int | None]:
    """(epoch, train seconds, losses, resumed-from epoch) of the checkpoint at ``path``, whose
    model, optimiser and RNG states are loaded; a fresh start when there is none."""
    epoch, spent, losses = 0, 0.0, []
    resumed: int | None = None
    ckpt = _load_checkpoint(path, key, announce) if path else None
    if ckpt is not None and ckpt["epoch"] > cfg.epochs:
        if announce:
            announce(
                f"sequential: checkpoint is at epoch {ckpt['epoch']}, past epochs = "
                f"{cfg.epochs}: starting over"
            )
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        torch.set_rng_state(ckpt["torch_rng"])
        gen.set_state(ckpt["gen_rng"])
        epoch, spent, losses = ckpt["epoch"], ckpt["train_seconds"], list(ckpt["losses"])
        resumed = epoch
        if announce:
            announce(
                f"sequential: resuming from {path} at epoch {epoch}/{cfg.epochs} "
                f"({_duration(spent)} trained so far)"
            )
    return epoch, spent, losses, resumed


def _run_epoch(
    model: SASRec,
    optim: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: SequentialConfig,
    gen: torch.Generator,
) -> float:
    """One pass over the windows in a seeded order; returns the mean batch loss."""
    n = len(inputs)
    model.train()
    order = torch.randperm(n, generator=gen)
    total, batches = 0.0, 0
    for start in range(0, n, cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        loss = _loss(model, inputs[batch], targets[batch], cfg, gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
        total += float(loss.detach())
        batches += 1
    return total / batches


def _epoch_line(cfg: SequentialConfig, epoch: int, loss: float, spent: float, per: float) -> str:
    eta = min(per * (cfg.epochs - epoch), max(cfg.time_budget_s - spent, 0.0))
    return (
        f"sequential: epoch {epoch}/{cfg.epochs} loss {loss:.4f} "
        f"elapsed {_duration(spent)} ETA {_duration(eta)}"
    )


def _train(
    cfg: SequentialConfig,
    ids: list[str],
    seqs: list[list[int]],
    key: str,
    checkpoint: Path | None,
    announce: Announce | None,
    on_epoch: OnEpoch | None,
) -> tuple[TrainingReport, SASRec]:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SASRec(len(ids), cfg.max_len, cfg.hidden, cfg.layers, cfg.heads, cfg.dropout)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    path = checkpoint / CHECKPOINT if checkpoint else None
    epoch, spent, losses, resumed = _resume(cfg, path, key, announce, model, optim, gen)

    def save() -> None:
        if path is None:
            return
        _save_checkpoint(
            path,
            {
                "key": key,
                "epoch": epoch,
                "train_seconds": spent,
                "losses": losses,
                "model": model.state_dict(),
                "optim": optim.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "gen_rng": gen.get_state(),
            },
        )

    inputs, targets = _tensors(seqs, cfg.max_len, cfg.all_windows)
    n = len(inputs)
    if not seqs:
        if announce:
            announce("sequential: no user has two catalog items in order: nothing to learn")
        epoch = cfg.epochs
    saved, stopped_by, run_seconds, run_epochs = epoch, "epochs", 0.0, 0
    while epoch < cfg.epochs:
        if spent >= cfg.time_budget_s:
            stopped_by = "time_budget"
            break
        t0 = time.perf_counter()
        mean_loss = _run_epoch(model, optim, inputs, targets, cfg, gen)
        took = time.perf_counter() - t0
        epoch, run_epochs = epoch + 1, run_epochs + 1
        spent, run_seconds = spent + took, run_seconds + took
        losses.append(round(mean_loss, 5))
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            save()
            saved = epoch
        if announce:
            announce(_epoch_line(cfg, epoch, losses[-1], spent, run_seconds / run_epochs))
        if on_epoch:
            on_epoch(epoch, cfg.epochs, losses[-1])
    if saved != epoch:
        save()  # stopped by the budget between checkpoints
    if stopped_by == "time_budget" and announce:
        announce(
            f"sequential: stopped by time_budget_s = {cfg.time_budget_s:g} after "
            f"{epoch}/{cfg.epochs} epochs; raise it (or epochs) and fit again to resume"
        )
    report = TrainingReport(
        epochs_done=epoch,
        epochs=cfg.epochs,
        stopped_by=stopped_by,
        resumed_from_epoch=resumed,
        train_seconds=round(spent, 3),
        final_loss=losses[-1] if losses else None,
        sequences=len(seqs),
        windows=n,
    )
    return report, model
