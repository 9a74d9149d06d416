"""scripts/stack.py without servers: the generated genre.toml loads as a valid config with
the stack's ports, ``--set`` overrides reach it, and nginx's config routes around a replica
that fails and does not buffer server-sent events."""

from __future__ import annotations

import sys
from pathlib import Path

import tomli_w

from genre_agent.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import stack  # noqa: E402

PORTS = {"postgres": 5001, "redis": 5002, "chroma": 5003, "vllm": 5004}


def test_generated_config_is_valid_and_takes_overrides(tmp_path: Path) -> None:
    cfg = stack.genre_config(tmp_path, PORTS, ["embedder.kind=fake", "ranking.k=4"])
    path = tmp_path / "genre.toml"
    path.write_text(tomli_w.dumps(cfg))
    loaded = load_config(path, use_env=False)
    assert loaded.store.kind == "http" and loaded.store.port == 5003
    assert loaded.store.database_url == "postgresql://genre@127.0.0.1:5001/postgres"
    assert loaded.service.cache_url == "redis://127.0.0.1:5002/0"
    assert loaded.queue.redis_url == "redis://127.0.0.1:5002/1"
    assert loaded.llm.engine == "openai" and loaded.llm.base_url == "http://127.0.0.1:5004/v1"
    assert loaded.embedder.kind == "fake" and loaded.ranking.k == 4


def test_nginx_config_balances_both_replicas_on_loopback(tmp_path: Path) -> None:
    conf = stack.nginx_conf(tmp_path, 6000, [6001, 6002])
    assert "listen 127.0.0.1:6000;" in conf
    assert "server 127.0.0.1:6001" in conf and "server 127.0.0.1:6002" in conf
    assert "proxy_next_upstream error timeout http_502 http_503" in conf
    assert "proxy_buffering off;" in conf and "daemon off;" in conf
    assert str(tmp_path) in conf.split("pid ", 1)[1].split(";")[0]


def test_sample_interactions_name_catalog_items(tmp_path: Path) -> None:
    catalog = Path(__file__).parent / "fixtures" / "catalog.jsonl"
    rows = stack.sample_interactions(catalog, tmp_path / "i.csv").read_text().splitlines()
    ids = {line.split('"id": "')[1].split('"')[0] for line in catalog.read_text().splitlines()}
    assert rows[0] == "user_id,item_id,timestamp,rating" and len(rows) == 241
    assert {r.split(",")[1] for r in rows[1:]} <= ids
