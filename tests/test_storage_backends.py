"""The user-data stores, one suite on both backends: SQLite files and a real PostgreSQL
(started by the test on a free loopback port; skipped with the reason when missing)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import postgres_bin, postgres_server

from genre_agent.config import Config
from genre_agent.experiments.exposures import Exposure
from genre_agent.service.chat import SessionState, SessionStore
from genre_agent.service.feedback import FeedbackEvent, forget_user, record_feedback
from genre_agent.storage import backends
from genre_agent.storage.interactions import Interaction, InteractionStore
from genre_agent.storage.migrations import (
    SQLITE,
    Migration,
    SchemaVersionError,
    latest,
    migrate_postgres,
    migrate_sqlite,
)
from genre_agent.storage.profiles import ProfileRecord, ProfileStore, UserProfile


def _pg_missing() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    if postgres_bin() is None:
        return "postgres is not installed (scripts/install-servers.sh)"
    return None


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    missing = _pg_missing()
    if missing:
        pytest.skip(missing)
    with postgres_server() as url:
        yield url


def fresh_database(server_url: str) -> str:
    """A new empty database on the test server; returns its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.server)])
def cfg(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A Config whose user-data stores are SQLite files under tmp_path, or a fresh database
    on the test's PostgreSQL."""
    data: dict[str, object] = {
        "store": {
            "kind": "embedded",
            "path": str(tmp_path / "chroma"),
            "interactions_path": str(tmp_path / "i.sqlite"),
        },
        "profile": {"path": str(tmp_path / "p.sqlite")},
        "chat": {"sessions_path": str(tmp_path / "s.sqlite")},
    }
    if request.param == "postgres":
        url = fresh_database(request.getfixturevalue("pg_server"))
        data["store"] = {**data["store"], "database_url": url}  # type: ignore[dict-item]
    return Config.model_validate(data)


def ev(eid: str, user: str = "u1", item: str = "i1", type_: str = "view", **kw: object):
    return FeedbackEvent.model_validate(
        {"event_id": eid, "user_id": user, "item_id": item, "type": type_, **kw}
    )


def test_factory_picks_the_backend_the_config_names(cfg: Config) -> None:
    store = backends.open_interactions(cfg)
    expected = "PostgresInteractions" if cfg.store.database_url else "InteractionStore"
    assert type(store).__name__ == expected
    store.close()


def test_interactions_replace_and_order(cfg: Config) -> None:
    store = backends.open_interactions(cfg)
    store.add(
        [
            Interaction("u1", "b", 2.0, 4.0),
            Interaction("u1", "a", 2.0, None),
            Interaction("u2", "a", 1.0, 3.0),
            Interaction("u1", "c", 1.0, 5.0),
        ]
    )
    store.add([Interaction("u1", "c", 3.0, 1.0)])  # same (user, item): replaced
    # b and a share a timestamp: arrival order (b was stored first), never item id order.
    assert [(r.item_id, r.timestamp, r.rating) for r in store.history("u1")] == [
        ("b", 2.0, 4.0),
        ("a", 2.0, None),
        ("c", 3.0, 1.0),
    ]
    assert store.count() == 4
    assert list(store.users()) == ["u1", "u2"]
    assert store.item_counts() == {"a": 2, "b": 1, "c": 1}
    store.close()


def test_same_rows_same_fingerprint_on_both_backends(cfg: Config, tmp_path: Path) -> None:
    rows = [
        Interaction("u1", "b", 2.0, 4.0),
        Interaction("u1", "a", 2.0, None),
        Interaction("U0", "z", 1.0, 3.0),
        Interaction("u1", "B", 2.0, 1.0),
    ]
    store = backends.open_interactions(cfg)
    store.add(rows)
    record_feedback(store, [ev("e1", user="u1", item="a", timestamp=2.0)])
    reference = InteractionStore(tmp_path / "ref.sqlite")
    reference.add(rows)
    record_feedback(reference, [ev("e1", user="u1", item="a", timestamp=2.0)])
    # Byte-wise text order on both ("B" < "a" < "b"; "U0" < "u1"), NULL ratings first.
    assert store.all() == reference.all()
    assert store.fingerprint() == reference.fingerprint()
    store.close()
    reference.close()


def test_feedback_idempotent_by_event_id_across_reopen(cfg: Config) -> None:
    store = backends.open_interactions(cfg)
    first = record_feedback(
        store, [ev("a", timestamp=1), ev("b", timestamp=2), ev("a", timestamp=3)]
    )
    assert (first.stored, first.duplicates) == (2, ["a"])
    store.close()
    again = backends.open_interactions(cfg)
    second = record_feedback(again, [ev("b"), ev("c", timestamp=4)])
    assert (second.stored, second.duplicates) == (1, ["b"])
    assert again.event_count() == 3
    assert again.event_counts(["a", "b", "c", "zz"]) == {"a": 1, "b": 1, "c": 1, "zz": 0}
    # The first write of an id wins.
    assert [r.timestamp for r in again.history("u1")] == [1.0, 2.0, 4.0]
    again.close()


def test_concurrent_writers_store_each_event_once(cfg: Config) -> None:
    """Eight threads (each with its own store object: a worker each) send the same 40 ids."""
    ids = [f"e{i}" for i in range(40)]
    stored: list[int] = []

    def send() -> None:
        store = backends.open_interactions(cfg)
        stored.append(record_feedback(store, [ev(i, item=i, timestamp=1) for i in ids]).stored)
        store.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = backends.open_interactions(cfg)
    assert sum(stored) == 40
    assert store.event_counts(ids) == dict.fromkeys(ids, 1)
    store.close()


def test_version_changes_with_every_kind_of_write(cfg: Config) -> None:
    store = backends.open_interactions(cfg)
    seen = [store.version()]
    store.add([Interaction("u1", "a", 1.0, None)])
    seen.append(store.version())
    record_feedback(store, [ev("x", item="b", timestamp=2)])
    seen.append(store.version())
    store.delete_user("u1")
    seen.append(store.version())
    assert len(set(seen)) == 4
    store.close()


def test_item_counts_follow_writes_from_another_store_object(cfg: Config) -> None:
    """The incremental count (new events only) must equal a fresh full count."""
    reader = backends.open_interactions(cfg)
    writer = backends.open_interactions(cfg)
    writer.add([Interaction("u1", "a", 1.0, None), Interaction("u2", "a", 1.0, None)])
    assert reader.item_counts() == {"a": 2}
    record_feedback(writer, [ev("1", item="a", timestamp=2), ev("2", item="b", timestamp=3)])
    assert reader.item_counts() == {"a": 3, "b": 1}
    record_feedback(writer, [ev("3", item="b", timestamp=4), ev("1", item="a")])  # "1": dup
    assert reader.item_counts() == {"a": 3, "b": 2}
    writer.delete_user("u2")
    assert reader.item_counts() == {"a": 2, "b": 2}
    fresh = backends.open_interactions(cfg)
    assert fresh.item_counts() == reader.item_counts()
    for s in (reader, writer, fresh):
        s.close()


def test_profiles_round_trip(cfg: Config) -> None:
    store = backends.open_profiles(cfg)
    record = ProfileRecord(
        user_id="u1",
        profile=UserProfile(summary="likes ünïcode"),
        template_sha256="t",
        model_id="m",
        history_sha256="h",
    )
    assert store.get("u1") is None
    store.put(record)
    store.put(record.model_copy(update={"edited": True}))
    got = store.get("u1")
    assert got is not None and got.edited and got.profile.summary == "likes ünïcode"
    store.forget("u1", "i9")
    store.forget("u1", "i9")
    store.forget("u2", "i1")
    assert store.forgotten("u1") == {"i9"}
    assert store.drop_forgotten("u1") == 1
    assert store.forgotten("u1") == set() and store.forgotten("u2") == {"i1"}
    assert store.delete("u1") is True and store.delete("u1") is False
    store.close()


def test_sessions_round_trip(cfg: Config) -> None:
    store = SessionStore.from_config(cfg)
    store.save(SessionState(id="s1", user_id="u1", created=1.0))
    store.save(SessionState(id="s2", user_id=None, created=2.0))
    assert store.load("s1").user_id == "u1"
    assert [sid for sid, _, _ in store.list()] == ["s1", "s2"]
    with pytest.raises(Exception, match="no chat session 'nope'"):
        store.load("nope")
    assert store.delete_user("u1") == 1
    assert [sid for sid, _, _ in store.list()] == ["s2"]
    store.close()


def test_forget_user_deletes_everything_and_a_redelivery_stays_deleted(cfg: Config) -> None:
    inter = backends.open_interactions(cfg)
    inter.add([Interaction("u1", "a", 1.0, 4.0), Interaction("u2", "a", 1.0, 4.0)])
    record_feedback(inter, [ev("e1", user="u1", timestamp=2), ev("e2", user="u2", timestamp=2)])
    profiles = backends.open_profiles(cfg)
    profiles.put(
        ProfileRecord(
            user_id="u1",
            profile=UserProfile(),
            template_sha256="t",
            model_id="m",
            history_sha256="h",
        )
    )
    profiles.forget("u1", "a")
    sessions = SessionStore.from_config(cfg)
    sessions.save(SessionState(id="s1", user_id="u1", created=1.0))
    shown = backends.open_exposures(cfg, inter)
    for user in ("u1", "u2"):
        shown.add_exposure(Exposure("x", "a", user, f"r-{user}", 1.0, ("a",)))
    report = forget_user(cfg, inter, "u1")
    assert report.exposures == 1
    assert [e.user_id for e in shown.exposures("x")] == ["u2"]
    assert (
        report.interactions,
        report.events,
        report.profiles,
        report.forgotten_items,
        report.chat_sessions,
    ) == (1, 1, 1, 1, 1)
    assert inter.history("u1") == []
    assert [r.user_id for r in inter.history("u2")] == ["u2", "u2"]
    again = record_feedback(inter, [ev("e1", user="u1", timestamp=3)])
    assert (again.stored, again.duplicates) == (0, ["e1"])
    assert inter.history("u1") == []
    for s in (inter, profiles, sessions):
        s.close()


# -- schema versions ----------------------------------------------------------------------

# Made-up migrations one past the newest real one (the same number on both backends).
NEXT = latest(SQLITE["interactions"]) + 1
V2_ONLINE = Migration(NEXT, "an index", ("CREATE INDEX IF NOT EXISTS extra ON feedback (item_id)",))
V2_OFFLINE = Migration(NEXT, "rewrite feedback", ("SELECT 1",), online=False)


def _migrate(cfg: Config, migrations: tuple[Migration, ...], allow_offline: bool = False):
    """Run the interactions store's migrations against cfg's backend with a custom list."""
    from genre_agent.storage.migrations import POSTGRES

    if cfg.store.database_url:
        import psycopg

        base = POSTGRES["interactions"]
        with psycopg.connect(cfg.store.database_url, autocommit=True) as conn:
            return migrate_postgres(conn, "db", "interactions", (*base, *migrations), allow_offline)
    conn = sqlite3.connect(str(cfg.store.interactions_path))
    try:
        return migrate_sqlite(
            conn, "file", "interactions", (*SQLITE["interactions"], *migrations), allow_offline
        )
    finally:
        conn.close()


def test_new_store_is_made_at_the_newest_version(cfg: Config) -> None:
    backends.open_interactions(cfg).close()
    assert _migrate(cfg, ()) == []  # nothing pending


def test_online_migration_is_applied_on_open_and_recorded(cfg: Config) -> None:
    backends.open_interactions(cfg).close()
    assert _migrate(cfg, (V2_ONLINE,)) == [NEXT]
    assert _migrate(cfg, (V2_ONLINE,)) == []


def test_offline_migration_is_refused_naming_the_command(cfg: Config) -> None:
    backends.open_interactions(cfg).close()
    with pytest.raises(
        SchemaVersionError, match=rf"version {NEXT - 1}.*needs {NEXT}.*genre store migrate"
    ):
        _migrate(cfg, (V2_OFFLINE,))
    assert _migrate(cfg, (V2_OFFLINE,), allow_offline=True) == [NEXT]


def test_store_newer_than_the_code_is_refused(cfg: Config) -> None:
    backends.open_interactions(cfg).close()
    _migrate(cfg, (V2_ONLINE,))
    with pytest.raises(SchemaVersionError, match=rf"version {NEXT}, newer than this genre_agent"):
        if cfg.store.database_url:
            from genre_agent.storage import postgres

            postgres._POOLS.clear()  # a new process: the schema is checked again
        backends.open_interactions(cfg)


def test_sqlite_store_made_before_versioning_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file with the old tables and rows but no schema_version keeps its rows."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for stmt in SQLITE["interactions"][0].statements:
        conn.execute(stmt)
    conn.execute("INSERT INTO interactions VALUES ('u1', 'a', 1.0, 5.0)")
    conn.commit()
    conn.close()
    store = InteractionStore(path)
    assert [r.item_id for r in store.history("u1")] == ["a"]
    version = store.db.execute(
        "SELECT version FROM schema_version WHERE component = 'interactions'"
    ).fetchone()
    # Version 1 stamped, then the online migrations after it applied (2: feedback.request_id).
    assert version == (latest(SQLITE["interactions"]),)
    columns = {row[1] for row in store.db.execute("PRAGMA table_info(feedback)")}
    assert "request_id" in columns
    store.close()
    old_profiles = tmp_path / "p.sqlite"
    conn = sqlite3.connect(old_profiles)
    conn.execute("CREATE TABLE profiles (user_id TEXT PRIMARY KEY, record TEXT)")
    conn.commit()
    conn.close()
    ProfileStore(old_profiles).close()  # the forgotten table is added, version 1 stamped


def test_genre_store_migrate_applies_pending_migrations(cfg: Config) -> None:
    backends.open_interactions(cfg).close()
    done = backends.migrate(cfg)
    assert done.get("interactions") == []


def test_an_unreachable_database_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from servers import free_port

    from genre_agent.errors import StoreError

    url = f"postgresql://genre:s3cret@127.0.0.1:{free_port()}/genre"
    cfg = Config.model_validate({"store": {"database_url": url}})
    with pytest.raises(StoreError, match=r"cannot connect to postgresql://genre:\*\*\*@") as got:
        backends.open_interactions(cfg)
    assert "s3cret" not in str(got.value)


def test_a_database_url_must_name_postgres() -> None:
    with pytest.raises(Exception, match="database_url"):
        Config.model_validate({"store": {"database_url": "mysql://x@y/z"}})


def test_exposures_round_trip_and_feedback_is_read_for_the_join(cfg: Config) -> None:
    inter = backends.open_interactions(cfg)
    shown = backends.open_exposures(cfg, inter)
    a = Exposure("x", "control", "u1", "r1", 10.0, ("i1", "i2"), None, 12, 0.5)
    b = Exposure("x", "", "u2", "r2", 11.0, ("i3", "i1"), ("control", "pop"))
    shown.add_exposure(a)
    shown.add_exposure(b)
    shown.add_exposure(Exposure("other", "v", "u1", "r3", 12.0, ("i9",)))
    assert shown.exposures("x") == [a, b]
    record_feedback(
        inter,
        [
            ev("e1", user="u1", item="i2", type_="click", timestamp=15, request_id="r1"),
            ev("e2", user="u2", item="i3", type_="dislike", timestamp=16),
            ev("e3", user="u1", item="i1", type_="view", timestamp=5),  # before: not read
            ev("e4", user="u3", item="i1", type_="view", timestamp=20),  # not asked for
        ],
    )
    got = sorted(shown.feedback_since(["u1", "u2"], 10.0))
    assert got == [
        ("u1", "i2", 15.0, "click", None, "r1"),
        ("u2", "i3", 16.0, "dislike", 0.0, None),
    ]
    inter.close()
