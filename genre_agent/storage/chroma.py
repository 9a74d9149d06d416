"""The ChromaDB item store (embedded PersistentClient, HttpClient or in-memory).

Upserts are idempotent: each record carries a content hash, unchanged items are skipped,
changed ones are re-embedded and replaced, so a killed indexing run can simply be rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from genre_agent.catalog.items import Item, validate_rows
from genre_agent.config import StoreConfig
from genre_agent.embedders import Embedder
from genre_agent.errors import StoreError, shorten

Progress = Callable[[int, int], None]


def item_hash(item: Item, embedder_name: str) -> str:
    blob = json.dumps([item.model_dump(mode="json"), embedder_name], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _to_record(item: Item, digest: str, added: float) -> dict[str, Any]:
    meta: dict[str, Any] = dict(item.metadata)
    meta.update({"_title": item.title, "_text": item.text, "_hash": digest, "_added": added})
    return meta


def _from_record(item_id: str, meta: dict[str, Any]) -> Item:
    clean = {k: v for k, v in meta.items() if not k.startswith("_")}
    return Item(id=item_id, title=meta["_title"], text=meta.get("_text", ""), metadata=clean)


@dataclass(frozen=True)
class IndexReport:
    added: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


def make_client(cfg: StoreConfig) -> Any:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    try:
        if cfg.kind == "embedded":
            cfg.path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(cfg.path), settings=settings)
        if cfg.kind == "http":
            return chromadb.HttpClient(host=cfg.host, port=cfg.port, settings=settings)
        return chromadb.EphemeralClient(settings=settings)
    except Exception as exc:
        where = cfg.path if cfg.kind == "embedded" else f"{cfg.host}:{cfg.port}"
        raise StoreError(f"cannot open Chroma store ({cfg.kind}, {where}): {exc}") from exc


class ChromaStore:
    """Items with their embeddings in one Chroma collection (cosine space)."""

    def __init__(self, client: Any, collection: str, embedder: Embedder) -> None:
        self.client = client
        self.embedder = embedder
        self.collection = client.get_or_create_collection(
            name=collection, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )

    @classmethod
    def from_config(cls, cfg: StoreConfig, embedder: Embedder) -> ChromaStore:
        return cls(make_client(cfg), cfg.collection, embedder)

    def count(self) -> int:
        return int(self.collection.count())

    def _existing(self, ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """(content hash, first indexed at) of the stored ``ids``."""
        got = self.collection.get(ids=list(ids), include=["metadatas"])
        return {
            i: (str((m or {}).get("_hash", "")), float((m or {}).get("_added", 0.0)))
            for i, m in zip(got["ids"], got["metadatas"], strict=True)
        }

    def upsert(
        self, items: Iterable[Item], batch_size: int = 256, progress: Progress | None = None
    ) -> IndexReport:
        """Add or replace ``items``, all or nothing.

        Every item is validated again first (a model_copy or model_construct skips pydantic),
        so what Chroma would refuse raises CatalogError before anything is written. If Chroma
        or the embedder still fails part-way, the rows this call added are deleted and the
        ones it replaced are restored, then one StoreError is raised. (A killed process cannot
        roll back: rerunning the same upsert completes it, as each record carries its hash.)
        """
        # Line numbers in problems are 1-based positions in ``items``.
        items = validate_rows(
            ((n, it.model_dump()) for n, it in enumerate(items, start=1)), "<items to upsert>"
        )
        added_ids: list[str] = []  # written by this call
        new_ids: list[str] = []  # of the batch being written
        previous: dict[str, Any] = {"ids": [], "embeddings": [], "documents": [], "metadatas": []}
        unchanged = updated = 0
        now = time.time()
        batch: list[Item] = []
        try:
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                existing = self._existing([it.id for it in batch])
                todo = []
                for it in batch:
                    digest = item_hash(it, self.embedder.name)
                    if it.id in existing and existing[it.id][0] == digest:
                        unchanged += 1
                        continue
                    todo.append((it, digest))
                if todo:
                    replaced = [it.id for it, _ in todo if it.id in existing]
                    if replaced:
                        self._keep_previous(replaced, previous)
                    new_ids = [it.id for it, _ in todo if it.id not in existing]
                    vecs = self.embedder.embed([it.document() for it, _ in todo])
                    self.collection.upsert(
                        ids=[it.id for it, _ in todo],
                        embeddings=vecs,  # type: ignore[arg-type]
                        documents=[it.document() for it, _ in todo],
                        # An update keeps the time the item was first indexed (GET /v1/latest).
                        metadatas=[
                            _to_record(it, d, existing[it.id][1] if it.id in existing else now)
                            for it, d in todo
                        ],
                    )
                    added_ids.extend(new_ids)
                    updated += len(replaced)
                    new_ids = []
                if progress:
                    progress(min(start + batch_size, len(items)), len(items))
        except Exception as exc:
            self._roll_back_and_raise(exc, batch, added_ids, new_ids, updated, previous)
        return IndexReport(len(added_ids), updated, unchanged)

    def _roll_back_and_raise(
        self,
        exc: Exception,
        batch: list[Item],
        added_ids: list[str],
        new_ids: list[str],
        updated: int,
        previous: dict[str, Any],
    ) -> NoReturn:
        """Undo a failed upsert's writes, then raise the StoreError that says so."""
        where = f"items {batch[0].id}..{batch[-1].id}" if batch else "the first batch"
        cause = shorten(" ".join(f"{type(exc).__name__}: {exc}".split()), 200)
        undone = f"the {len(added_ids)} added and {updated} replaced rows it wrote"
        try:
            # The failed batch's new ids too, in case Chroma kept part of it.
            self._roll_back(added_ids + new_ids, previous)
        except Exception as again:
            raise StoreError(
                f"upsert failed at {where} ({cause}), and rolling back {undone} failed too "
                f"({shorten(str(again), 200)}); rerun the same index command to finish it"
            ) from exc
        raise StoreError(
            f"upsert failed at {where} ({cause}); rolled back {undone}, the collection is as before"
        ) from exc

    def _keep_previous(self, ids: list[str], previous: dict[str, Any]) -> None:
        """Append the stored records of ``ids`` to ``previous`` (for a roll-back)."""
        got = self.collection.get(ids=ids, include=["embeddings", "documents", "metadatas"])
        previous["ids"].extend(got["ids"])
        previous["embeddings"].extend([float(x) for x in e] for e in got["embeddings"])
        previous["documents"].extend(got["documents"])
        previous["metadatas"].extend(got["metadatas"])

    def _roll_back(
        self, added_ids: list[str], previous: dict[str, Any], batch_size: int = 256
    ) -> None:
        for start in range(0, len(added_ids), batch_size):
            self.collection.delete(ids=added_ids[start : start + batch_size])
        for start in range(0, len(previous["ids"]), batch_size):
            self.collection.upsert(
                **{key: values[start : start + batch_size] for key, values in previous.items()}
            )

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Remove the stored items among ``ids``; return the ids that were stored."""
        if not ids:
            return []
        try:
            stored = list(self.collection.get(ids=list(ids), include=[])["ids"])
            if stored:
                self.collection.delete(ids=stored)
        except Exception as exc:
            raise StoreError(f"Chroma delete failed (ids={list(ids)[:10]!r}): {exc}") from exc
        return stored

    def get(self, ids: Sequence[str]) -> dict[str, Item]:
        if not ids:
            return {}
        got = self.collection.get(ids=list(ids), include=["metadatas"])
        return {i: _from_record(i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True)}

    def embeddings(self, ids: Sequence[str]) -> dict[str, list[float]]:
        if not ids:
            return {}
        got = self.collection.get(ids=list(ids), include=["embeddings"])
        return {
            i: [float(x) for x in e] for i, e in zip(got["ids"], got["embeddings"], strict=True)
        }

    def all_items(self, batch: int = 5000) -> list[Item]:
        out: list[Item] = []
        offset = 0
        while True:
            got = self.collection.get(include=["metadatas"], limit=batch, offset=offset)
            if not got["ids"]:
                return out
            out.extend(
                _from_record(i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True)
            )
            offset += len(got["ids"])

    def added_times(self, batch: int = 5000) -> dict[str, float]:
        """Every item's first-indexed time (Unix seconds; 0 for items indexed before this
        was recorded)."""
        out: dict[str, float] = {}
        offset = 0
        while True:
            got = self.collection.get(include=["metadatas"], limit=batch, offset=offset)
            if not got["ids"]:
                return out
            for i, m in zip(got["ids"], got["metadatas"], strict=True):
                out[i] = float((m or {}).get("_added", 0.0))
            offset += len(got["ids"])

    def ids_where(self, where: dict[str, Any]) -> frozenset[str]:
        """Every stored id whose metadata the Chroma ``where`` filter admits: sources that
        do not search Chroma filter with this set, so all sources share Chroma's semantics."""
        try:
            got = self.collection.get(where=where, include=[])
        except Exception as exc:
            raise StoreError(f"Chroma filter failed (where={where!r}): {exc}") from exc
        return frozenset(got["ids"])

    def query(
        self,
        vector: Sequence[float],
        k: int,
        where: dict[str, Any] | None = None,
        exclude: set[str] | None = None,
        items: Mapping[str, Item] | None = None,
    ) -> list[tuple[Item, float]]:
        """Nearest items by cosine similarity (1 - distance), skipping ``exclude``.

        ``items``: the catalog already loaded; hits are taken from it rather than rebuilt
        from their stored records (any hit it lacks is read from the store).
        """
        exclude = exclude or set()
        n = min(k + len(exclude), max(self.count(), 1))
        include = ["distances"] if items is not None else ["metadatas", "distances"]
        try:
            got = self.collection.query(
                query_embeddings=[list(vector)], n_results=n, where=where or None, include=include
            )
        except Exception as exc:
            raise StoreError(f"Chroma query failed (where={where!r}): {exc}") from exc
        hits = [
            (n_, i, 1.0 - float(d))
            for n_, (i, d) in enumerate(zip(got["ids"][0], got["distances"][0], strict=True))
            if i not in exclude
        ][:k]
        if items is None:
            metas = got["metadatas"][0]
            return [(_from_record(i, metas[n_]), s) for n_, i, s in hits]
        lacking = self.get([i for _, i, _ in hits if i not in items])
        return [
            (items[i] if i in items else lacking[i], s)
            for _, i, s in hits
            if i in items or i in lacking
        ]
