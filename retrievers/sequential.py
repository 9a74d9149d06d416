"""A SASRec-style self-attentive next-item model (torch, CPU) as a candidate source.

The user's history, oldest first, is the input sequence: each item's embedding plus a learned
position embedding, then causal self-attention blocks (each position sees only itself and
what came before), then a layer norm. The output at the last position is the user's state;
an item's score is its dot product with the (tied) item embedding. Training is in
``retrievers.sequential_train``; ``genre fit`` runs it (``service.fit.FITTERS``).

Sequences are left-padded to ``max_len`` with id 0, so the most recent item always sits at
the last position, and only the most recent ``max_len`` items are read. Items outside the
model's vocabulary (not in the catalog when it was fitted) are dropped from a history.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genre_agent.catalog.items import Item
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, ScoreIndex

PAD = 0


# torch's thread count is process-wide: without the lock, concurrent requests (genre serve)
# would restore it under each other's forward passes and run them oversubscribed.
_THREADS = threading.RLock()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch ops on ``n`` threads inside the block, then restore the previous count.
    One block at a time per process."""
    with _THREADS:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class SASRec(nn.Module):
    """Item + position embeddings, ``layers`` causal pre-norm transformer blocks, layer norm."""

    def __init__(
        self, n_items: int, max_len: int, hidden: int, layers: int, heads: int, dropout: float
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.arch = {
            "n_items": n_items,
            "max_len": max_len,
            "hidden": hidden,
            "layers": layers,
            "heads": heads,
            "dropout": dropout,
        }
        self.max_len = max_len
        self.heads = heads
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=PAD)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            hidden,
            heads,
            dim_feedforward=hidden * 2,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        nn.init.normal_(self.item_emb.weight, std=hidden**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq``: [batch, L] left-padded item indices (L <= max_len) -> states [batch, L, d]."""
        n, length = seq.shape
        hidden = self.item_emb.embedding_dim
        pos = torch.arange(self.max_len - length, self.max_len, device=seq.device)
        x = self.item_emb(seq) * math.sqrt(hidden) + self.pos_emb(pos)
        pad = seq == PAD
        x = self.drop(x) * (~pad).unsqueeze(-1)
        # True = may not attend: the future, and padding (except a padded position itself,
        # so that no row is fully masked).
        future = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        mask = future.unsqueeze(0) | (pad.unsqueeze(1) & ~eye)
        mask = mask.repeat_interleave(self.heads, dim=0)
        return self.norm(self.blocks(x, mask=mask))

    def item_weights(self) -> torch.Tensor:
        """The output embeddings of the real items (row i-1 is item index i)."""
        return self.item_emb.weight[1:]


def left_pad(indices: Sequence[int], max_len: int) -> list[int]:
    """The last ``max_len`` indices, left-padded with PAD to ``max_len``."""
    tail = list(indices)[-max_len:]
    return [PAD] * (max_len - len(tail)) + tail


class SequentialRetriever:
    """Scores the catalog by the SASRec state after the user's history (one forward pass)."""

    name = "sequential"

    def __init__(
        self,
        items: Mapping[str, Item],
        ids: Sequence[str],
        model: SASRec,
        training_report: dict[str, Any] | None = None,
    ) -> None:
        self.items = items
        self.ids = list(ids)
        # Item index = position in ids + 1 (0 is padding).
        self.index = {i: n + 1 for n, i in enumerate(self.ids)}
        self.model = model.eval()
        self.training_report = training_report
        self._rank = ScoreIndex(items, self.ids)

    def _scores(self, query: RetrievalQuery) -> np.ndarray | None:
        """Scores of every vocabulary item (ids order); None if no history item is known."""
        known = [self.index[h.id] for h in query.history if h.id in self.index]
        if not known:
            return None
        seq = torch.tensor([left_pad(known, self.model.max_len)], dtype=torch.long)
        # One request is a small forward pass: a single thread is faster than paying for
        # thread synchronisation (by orders of magnitude on a busy machine).
        with torch.inference_mode(), torch_threads(1):
            state = self.model(seq)[0, -1]
            scores = self.model.item_weights() @ state
        return scores.numpy().astype(np.float64)

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        scores = self._scores(query)
        if scores is None:
            return [0.0] * len(candidate_ids)
        return [float(scores[self.index[c] - 1]) if c in self.index else 0.0 for c in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = self._scores(query)
        if scores is None:
            return []
        return self._rank.search(scores, query, k, self.name)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "sequential.pt")
        (folder / "sequential.json").write_text(
            json.dumps(
                {"arch": self.model.arch, "training": self.training_report, "ids": self.ids}
            ),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, folder: Path, items: Mapping[str, Item]) -> SequentialRetriever:
        meta = json.loads((folder / "sequential.json").read_text(encoding="utf-8"))
        model = SASRec(**meta["arch"])
        state = torch.load(folder / "sequential.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return cls(items, meta["ids"], model, meta.get("training"))
