"""Item enrichment batch job: the LLM writes a summary and keywords per item (constrained JSON).

Resumable and cached: every validated answer is appended to a JSONL checkpoint keyed by the
item's content hash, the template sha256 and the model id, so a killed run restarts where it
stopped and an unchanged item is never sent to the LLM twice. Enriched items are re-upserted
through ChromaStore.upsert (idempotent by content hash). Invalid answers are counted and
reported in the EnrichReport, and those items are left as they were.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genre_agent.catalog.items import Item
from genre_agent.config import EnrichConfig
from genre_agent.llm.base import LLM, GenRequest, Message
from genre_agent.prompting import render, template_sha256
from genre_agent.storage.chroma import ChromaStore

_KEYWORD = r'"[a-z0-9][a-z0-9 \-]{1,24}"'


class Enrichment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    summary: str = Field(min_length=1, max_length=1000)
    keywords: list[str] = Field(min_length=1, max_length=20)


def enrich_regex(cfg: EnrichConfig) -> str:
    summary = r'"[^"\\\n\r\t]{10,' + str(cfg.summary_chars) + '}"'
    kws = r"\[" + _KEYWORD + "(, " + _KEYWORD + "){0," + str(cfg.max_keywords - 1) + r"}\]"
    return r'\{"summary": ' + summary + r', "keywords": ' + kws + r"\}"


def source_hash(item: Item) -> str:
    return hashlib.sha256(item.model_dump_json().encode()).hexdigest()[:24]


def enriched_item(item: Item, e: Enrichment, embed: bool) -> Item:
    """The item with summary/keywords in metadata and, if ``embed``, in the embedded text."""
    meta = dict(item.metadata)
    meta.update(
        {
            "enriched": True,
            "summary": e.summary,
            "keywords": "|".join(e.keywords),
            "source_hash": source_hash(item),
        }
    )
    text = item.text
    if embed:
        text = f"{item.text} Summary: {e.summary} Keywords: {', '.join(e.keywords)}.".strip()
    return item.model_copy(update={"text": text, "metadata": meta})


@dataclass
class EnrichReport:
    done: int = 0
    cached: int = 0
    skipped: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)
    upserted: int = 0


class Enricher:
    """Runs the enrichment job in batches (one batched LLM call per batch)."""

    def __init__(self, llm: LLM, cfg: EnrichConfig | None = None) -> None:
        self.llm = llm
        self.cfg = cfg or EnrichConfig()

    def _key(self, item: Item) -> str:
        return f"{source_hash(item)}:{template_sha256(self.cfg.template)[:16]}:{self.llm.model_id}"

    def load_checkpoint(self, path: Path) -> dict[str, Enrichment]:
        out: dict[str, Enrichment] = {}
        if not path.exists():
            return out
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[row["key"]] = Enrichment.model_validate(row["enrichment"])
            except (ValueError, KeyError, ValidationError):
                continue  # a line cut by a kill mid-write: that item is simply redone
        return out

    def request(self, item: Item) -> GenRequest:
        prompt = render(
            self.cfg.template,
            title=item.title,
            genres=str(item.metadata.get("genres", "")),
            text=item.text,
            summary_chars=self.cfg.summary_chars,
            max_keywords=self.cfg.max_keywords,
            max_item_chars=600,
        )
        return GenRequest(
            messages=(Message("system", prompt.system), Message("user", prompt.user)),
            regex=enrich_regex(self.cfg),
            max_tokens=self.cfg.summary_chars // 2 + 12 * self.cfg.max_keywords + 32,
            hint={"task": "enrich", "item_id": item.id, "title": item.title},
        )

    def parse(self, text: str) -> Enrichment:
        """Re-validate one answer (ValueError / ValidationError if it is not usable)."""
        e = Enrichment.model_validate(json.loads(text))
        if len(e.summary) > self.cfg.summary_chars or len(e.keywords) > self.cfg.max_keywords:
            raise ValueError("summary or keyword list too long")
        return e

    def enrich(self, items: Sequence[Item]) -> tuple[dict[str, Item], list[dict[str, Any]]]:
        """Enrich ``items`` in one batched LLM call, without checkpoint or store (the eval
        harness caches through its CachingLLM instead). Returns the enriched copies by id and
        the invalid answers; an item whose answer is invalid is left out of the copies."""
        outs = self.llm.generate([self.request(it) for it in items]) if items else []
        done: dict[str, Item] = {}
        invalid: list[dict[str, Any]] = []
        for it, out in zip(items, outs, strict=True):
            try:
                done[it.id] = enriched_item(it, self.parse(out.text), self.cfg.embed)
            except (ValueError, ValidationError) as exc:
                invalid.append({"item_id": it.id, "error": str(exc)[:200]})
        return done, invalid

    def run(
        self,
        items: Sequence[Item],
        store: ChromaStore | None = None,
        checkpoint: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> EnrichReport:
        """Enrich ``items`` (originals, not already-enriched copies) and upsert them."""
        path = Path(checkpoint or self.cfg.checkpoint)
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = self.load_checkpoint(path)
        report = EnrichReport()
        todo: list[Item] = []
        ready: list[Item] = []
        for it in items:
            if it.metadata.get("enriched"):
                report.skipped += 1
            elif self._key(it) in cache:
                report.cached += 1
                ready.append(enriched_item(it, cache[self._key(it)], self.cfg.embed))
            else:
                todo.append(it)
        tick = _progress(progress, len(todo))
        with path.open("a", encoding="utf-8") as fh:
            for start in range(0, len(todo), self.cfg.batch_size):
                batch = todo[start : start + self.cfg.batch_size]
                outs = self.llm.generate([self.request(it) for it in batch])
                for it, out in zip(batch, outs, strict=True):
                    try:
                        e = self.parse(out.text)
                    except (ValueError, ValidationError) as exc:
                        report.invalid.append({"item_id": it.id, "error": str(exc)[:200]})
                        continue
                    fh.write(
                        json.dumps(
                            {
                                "key": self._key(it),
                                "item_id": it.id,
                                "enrichment": e.model_dump(),
                            }
                        )
                        + "\n"
                    )
                    fh.flush()
                    report.done += 1
                    ready.append(enriched_item(it, e, self.cfg.embed))
                tick(len(batch))
                if store is not None:
                    # Upsert per batch, so a kill loses at most one batch of work.
                    report.upserted += store.upsert(ready).total
                    ready = []
        if store is not None and ready:
            report.upserted += store.upsert(ready).total
        return report


def _progress(progress: Callable[[int, int], None] | None, total: int) -> Callable[[int], None]:
    """Adapt a (done, total) callback to per-batch ticks (the CLI draws the bar)."""
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    return tick
