"""The server's record without a network: schema, start-up, each client's tree, the digest, resync, retention.

servidor.py is loaded by path (the ``servidor`` fixture); each test opens its own database, in memory
or in a temporary file, and drives the Record the writer thread drives. The tree semantics are pinned
against the replay of tests/convergence.py, the one the end-to-end tests use for "nothing lost".
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import replay
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = "/w"
NOW = datetime.datetime(2026, 11, 25, 17, 3, 31, 118000, tzinfo=datetime.UTC)
FUZZ = settings(max_examples=200, deadline=None, database=None)


@pytest.fixture
def record(servidor: ModuleType) -> Iterator[Any]:
    conn = servidor.open_database(":memory:")
    try:
        yield servidor.Record(conn)
    finally:
        conn.close()


def hello(servidor: ModuleType, client_id: str = "c1", root: str = ROOT, version: int = 2) -> Any:
    return servidor.Hello(client_id=client_id, name=f"nome-{client_id}", root=root, version=version)


def make_events(servidor: ModuleType, specs: Sequence[tuple[str, str, bool, str | None]], first: int = 1) -> list[Any]:
    return [
        servidor.Event(seq=seq, event=kind, path=path, is_dir=is_dir, ts=NOW, dest_path=dest)
        for seq, (kind, path, is_dir, dest) in enumerate(specs, first)
    ]


def tree_rows(record: Any, client_id: str = "c1") -> dict[str, bool]:
    rows = record.conn.execute(
        "SELECT t.path, t.is_dir FROM tree AS t JOIN clients AS c ON c.id = t.client WHERE c.client_id = ?",
        (client_id,),
    ).fetchall()
    return {path.decode(): bool(is_dir) for path, is_dir in rows}


def as_records(events: list[Any]) -> list[dict[str, Any]]:
    return [{"event": ev.event, "path": ev.path, "dest_path": ev.dest_path} for ev in events]


# ---------------------------------------------------------------------------
# The digest: one pure function, pinned.
# ---------------------------------------------------------------------------


def test_entry_hash_is_the_documented_sha256_prefix(servidor: ModuleType) -> None:
    for path, is_dir in [(b"/w/a.txt", False), (b"/w/dir", True), (b"/w/\xff\xfe", False), (b"", True)]:
        expected = int.from_bytes(hashlib.sha256((b"d\0" if is_dir else b"f\0") + path).digest()[:8], "big")
        assert servidor.entry_hash(path, is_dir) == expected
    assert servidor.entry_hash(b"/w/x", True) != servidor.entry_hash(b"/w/x", False)


def test_digest_is_order_independent_and_incremental(servidor: ModuleType) -> None:
    entries = [(f"/w/f{i}".encode(), i % 3 == 0) for i in range(500)]
    digest = servidor.Digest.of(entries)
    assert digest == servidor.Digest.of(reversed(entries))
    assert digest.count == 500 and 0 <= digest.sum < 2**64
    smaller = servidor.Digest.of(entries[1:])
    assert (smaller.sum + servidor.entry_hash(*entries[0])) % 2**64 == digest.sum


def test_digest_wire_round_trip(servidor: ModuleType) -> None:
    answer = json.loads(servidor.encode_digest_answer("verified", 7, servidor.Digest(3, 2**64 - 1)))
    assert answer == {"type": "verified", "seq": 7, "count": 3, "sum": "ffffffffffffffff"}
    report = servidor.parse_message('{"type":"digest","seq":7,"count":3,"sum":"00000000000000ff"}', 2)
    assert report == servidor.DigestReport(7, servidor.Digest(3, 255))


# ---------------------------------------------------------------------------
# Protocol version 2 messages.
# ---------------------------------------------------------------------------


def test_manifest_messages_parse(servidor: ModuleType) -> None:
    assert servidor.parse_message('{"type":"manifest_begin","seq":0}', 2) == servidor.ManifestBegin(0)
    manifest = servidor.parse_message(
        json.dumps(
            {
                "type": "manifest",
                "entries": [
                    {"path": "/w/a", "is_dir": True},
                    {"path": "/w/b_\\xff", "path_b64": "L3cvYl//", "is_dir": False},
                ],
            }
        ),
        2,
    )
    assert manifest == servidor.Manifest([(b"/w/a", True), (b"/w/b_\xff", False)])
    end = servidor.parse_message('{"type":"manifest_end","count":2,"sum":"0123456789abcdef"}', 2)
    assert end == servidor.ManifestEnd(servidor.Digest(2, 0x0123456789ABCDEF))


@pytest.mark.parametrize(
    "message",
    [
        '{"type":"digest","seq":1,"count":1,"sum":"ABCDEF0123456789"}',
        '{"type":"digest","seq":1,"count":1,"sum":"123"}',
        '{"type":"digest","seq":-1,"count":1,"sum":"0000000000000000"}',
        '{"type":"digest","seq":1,"count":true,"sum":"0000000000000000"}',
        '{"type":"manifest","entries":[{"path":"/a"}]}',
        '{"type":"manifest","entries":{"path":"/a","is_dir":false}}',
        '{"type":"manifest_begin"}',
        '{"type":"verified","seq":1}',
    ],
)
def test_bad_version_2_messages_are_protocol_errors(servidor: ModuleType, message: str) -> None:
    with pytest.raises(servidor.ProtocolError):
        servidor.parse_message(message, 2)


def test_version_1_has_no_digest(servidor: ModuleType) -> None:
    with pytest.raises(servidor.ProtocolError, match="tipo de mensagem inesperado"):
        servidor.parse_message('{"type":"digest","seq":0,"count":0,"sum":"0000000000000000"}', 1)


def test_hello_versions(servidor: ModuleType) -> None:
    base = {"type": "hello", "client_id": "x", "name": "n", "root": "/w"}
    assert servidor.parse_hello(json.dumps({**base, "version": 1})).version == 1
    assert servidor.parse_hello(json.dumps({**base, "version": 2, "secret": "ab" * 16})).version == 2
    with pytest.raises(servidor.ProtocolError, match=r"este servidor fala 1, 2 e 3\): 4"):
        servidor.parse_hello(json.dumps({**base, "version": 4}))
    assert json.loads(servidor.encode_welcome(5, 1)) == {"type": "welcome", "version": 1, "ack": 5}


# ---------------------------------------------------------------------------
# Start-up reads no history.
# ---------------------------------------------------------------------------


def test_start_up_does_not_read_events_or_trees(servidor: ModuleType, tmp_path: Path) -> None:
    """Structural: every SQL statement run while opening a database with history, and for a hello."""
    path = str(tmp_path / "eventos.db")
    conn = servidor.open_database(path)
    record = servidor.Record(conn)
    conn.execute("BEGIN")
    for index in range(20):
        specs = [("created", f"/w/c{index}/f{n}", False, None) for n in range(50)]
        record.store_events(hello(servidor, f"c{index}"), make_events(servidor, specs), NOW)
    conn.execute("COMMIT")
    conn.close()

    statements: list[str] = []

    class Traced(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.set_trace_callback(statements.append)

    conn = servidor.open_database(path, Traced)
    try:
        assert servidor.Record(conn).last_seq("c3") == 50  # what a hello asks
        assert servidor.Record(conn).last_seq("desconhecido") == 0
    finally:
        conn.close()
    reads = re.compile(r"\b(FROM|JOIN|UPDATE|INTO)\s+(events|tree|messages)\b", re.IGNORECASE)
    assert statements, "the trace saw nothing"
    assert [sql for sql in statements if reads.search(sql)] == []
    assert any("FROM clients" in sql for sql in statements)


def test_new_database_schema(servidor: ModuleType, tmp_path: Path) -> None:
    path = str(tmp_path / "novo.db")
    servidor.open_database(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == servidor.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    assert {"clients", "events", "tree", "messages"} <= tables
    assert {"events_by_path", "events_by_dest_path", "events_by_client"} <= indexes


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("CREATE TABLE alheia (x); ", "é um banco SQLite de outro programa"),
        ("PRAGMA user_version = 99; ", "tem o esquema 99"),
    ],
)
def test_foreign_or_newer_database_is_refused(servidor: ModuleType, tmp_path: Path, setup: str, message: str) -> None:
    path = str(tmp_path / "outro.db")
    with sqlite3.connect(path) as conn:
        conn.executescript(setup)
    with pytest.raises(servidor.FatalError, match=re.escape(message)):
        servidor.open_database(path)


def test_not_a_database_is_refused(servidor: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "texto.db"
    path.write_text("isto não é um banco\n" * 100)
    with pytest.raises(servidor.FatalError, match="não foi possível abrir o banco"):
        servidor.open_database(str(path))


# ---------------------------------------------------------------------------
# Events: stored once, whatever is resent.
# ---------------------------------------------------------------------------


def test_store_events_drops_what_is_stored(servidor: ModuleType, record: Any) -> None:
    events = make_events(servidor, [("created", f"/w/f{n}", False, None) for n in range(10)])
    assert record.store_events(hello(servidor), events[:6], NOW) == events[:6]
    assert record.store_events(hello(servidor), events[3:], NOW) == events[6:]
    assert record.store_events(hello(servidor), events, NOW) == []
    seqs = [row[0] for row in record.conn.execute("SELECT seq FROM events ORDER BY id")]
    assert seqs == list(range(1, 11))
    assert record.last_seq("c1") == 10
    exported = list(record.export())
    assert [item["seq"] for item in exported] == seqs
    assert exported[0] == servidor.event_record("nome-c1", "c1", events[0])


# ---------------------------------------------------------------------------
# The tree: the same as replaying the events.
# ---------------------------------------------------------------------------

NAMES = ["a", "a-b", "a0", "b", "é"]
tree_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda parts: ROOT + "/" + "/".join(parts))
event_specs = st.one_of(
    st.tuples(st.sampled_from(["created", "modified", "deleted"]), tree_paths, st.booleans(), st.none()),
    st.tuples(st.just("moved"), tree_paths, st.booleans(), tree_paths),
    st.tuples(st.sampled_from(["created", "deleted"]), st.just(ROOT), st.just(True), st.none()),
)


@contextlib.contextmanager
def stored(servidor: ModuleType, specs: list[tuple[str, str, bool, str | None]]) -> Iterator[tuple[Any, list[Any]]]:
    """A fresh in-memory Record holding client c1's ``specs`` (hypothesis runs many examples per test)."""
    conn = servidor.open_database(":memory:")
    try:
        record = servidor.Record(conn)
        events = make_events(servidor, specs)
        record.store_events(hello(servidor), events, NOW)
        yield record, events
    finally:
        conn.close()


@FUZZ
@given(specs=st.lists(event_specs, max_size=30))
def test_tree_equals_the_replay(servidor: ModuleType, specs: list[tuple[str, str, bool, str | None]]) -> None:
    with stored(servidor, specs) as (record, events):
        rows = tree_rows(record)
        assert set(rows) == replay(as_records(events), root=ROOT)
        key = record.conn.execute("SELECT id FROM clients").fetchone()[0]
        assert record.tree.digest(key) == servidor.Digest.of((p.encode(), d) for p, d in rows.items())


def test_moved_directory_carries_its_subtree_only(servidor: ModuleType, record: Any) -> None:
    specs: list[tuple[str, str, bool, str | None]] = [
        ("created", "/w/a", True, None),
        ("created", "/w/a/x", False, None),
        ("created", "/w/a/s", True, None),
        ("created", "/w/a/s/y", False, None),
        ("created", "/w/a-b", False, None),
        ("created", "/w/a0", False, None),
        ("created", "/w/c", True, None),
        ("created", "/w/c/old", False, None),
        ("moved", "/w/a", True, "/w/c"),
    ]
    record.store_events(hello(servidor), make_events(servidor, specs), NOW)
    assert tree_rows(record) == {
        "/w/a-b": False,
        "/w/a0": False,
        "/w/c": True,
        "/w/c/x": False,
        "/w/c/s": True,
        "/w/c/s/y": False,
    }
    record.store_events(hello(servidor), make_events(servidor, [("deleted", "/w/c", True, None)], 10), NOW)
    assert tree_rows(record) == {"/w/a-b": False, "/w/a0": False}


def test_subtree_queries_use_the_primary_key(servidor: ModuleType, record: Any) -> None:
    plan = record.conn.execute(
        "EXPLAIN QUERY PLAN DELETE FROM tree WHERE client = ? AND path >= ? AND path < ?", (1, b"/w/a/", b"/w/a0")
    ).fetchall()
    assert any("USING PRIMARY KEY (client=? AND path>? AND path<?)" in row[-1] for row in plan), plan


def test_trees_of_two_clients_are_apart(servidor: ModuleType, record: Any) -> None:
    one = make_events(servidor, [("created", "/w/x", False, None)])
    record.store_events(hello(servidor, "c1"), one, NOW)
    record.store_events(hello(servidor, "c2"), make_events(servidor, [("deleted", "/w", True, None)]), NOW)
    assert tree_rows(record, "c1") == {"/w/x": False}
    assert tree_rows(record, "c2") == {}


def test_undecodable_names_are_kept_exactly(servidor: ModuleType, record: Any) -> None:
    events = [
        servidor.Event(1, "created", "/w/b_\\xff", False, NOW, path_b64="L3cvYl//"),
        servidor.Event(2, "created", "/w/b_\\xff", False, NOW),  # a name that really has a backslash
    ]
    record.store_events(hello(servidor), events, NOW)
    paths = {row[0] for row in record.conn.execute("SELECT path FROM tree")}
    assert paths == {b"/w/b_\xff", b"/w/b_\\xff"}


# ---------------------------------------------------------------------------
# Resync: the tree becomes the manifest; the differences replay the old tree into it.
# ---------------------------------------------------------------------------

manifests = st.dictionaries(tree_paths, st.booleans(), max_size=12)


@FUZZ
@given(specs=st.lists(event_specs, max_size=15), manifest=manifests)
def test_resync_makes_the_tree_the_manifest(
    servidor: ModuleType, specs: list[tuple[str, str, bool, str | None]], manifest: dict[str, bool]
) -> None:
    with stored(servidor, specs) as (record, events):
        before = tree_rows(record)
        entries = [(path.encode(), is_dir) for path, is_dir in manifest.items()]
        half = len(entries) // 2
        record.stage(hello(servidor), entries[:half], True, NOW)
        record.stage(hello(servidor), entries[half:], False, NOW)
        differences = record.resync(hello(servidor), len(events), servidor.Digest.of(entries), NOW)
        assert tree_rows(record) == manifest
        assert all(ev.origin == "resync" and ev.seq == 0 for ev in differences)
        # Only differences: nothing already right is reported (unless a reported deletion took it along, as
        # deleting a path removes everything below it), and replaying them gives the manifest.
        created = {ev.path: ev.is_dir for ev in differences if ev.event == "created"}
        deleted = [ev.path for ev in differences if ev.event == "deleted"]
        taken = {path for path in created if any(path.startswith(gone + "/") for gone in deleted)}
        assert all(before.get(path) != is_dir for path, is_dir in created.items() if path not in taken)
        assert all(path in manifest for path in taken)
        assert replay(as_records(differences), set(before), root=ROOT) == set(manifest)
        assert record.last_seq("c1") == len(events)
        query = "SELECT count(*) FROM events WHERE origin = 'resync' AND seq IS NULL"
        assert record.conn.execute(query).fetchone()[0] == len(differences)


def test_resync_below_a_deleted_file_creates_what_the_deletion_took(servidor: ModuleType, record: Any) -> None:
    """Events can leave children below a file (created /w/a, then created /w/a/a/a); a manifest without the file.

    Deleting /w/a removes /w/a/a/a too (for the server's tree and for whoever replays the output), so
    it is listed as created again: the one way replaying the differences gives the manifest. Found
    by hypothesis in test_resync_makes_the_tree_the_manifest, whose check was too strict for it.
    """
    events = make_events(servidor, [("created", "/w/a", False, None), ("created", "/w/a/a/a", False, None)])
    record.store_events(hello(servidor), events, NOW)
    before = tree_rows(record)
    assert before == {"/w/a": False, "/w/a/a/a": False}
    entries = [(b"/w/a/a/a", False)]
    record.stage(hello(servidor), entries, True, NOW)
    differences = record.resync(hello(servidor), len(events), servidor.Digest.of(entries), NOW)
    assert [(ev.event, ev.path, ev.is_dir) for ev in differences] == [
        ("deleted", "/w/a", False),
        ("created", "/w/a/a/a", False),
    ]
    assert tree_rows(record) == {"/w/a/a/a": False}
    assert replay(as_records(differences[:1]), set(before), root=ROOT) == set()  # the deletion took it
    assert replay(as_records(differences), set(before), root=ROOT) == {"/w/a/a/a"}


def test_resync_refuses_an_incomplete_manifest(servidor: ModuleType, record: Any) -> None:
    entries = [(b"/w/a", False), (b"/w/b", False)]
    record.stage(hello(servidor), entries[:1], True, NOW)
    with pytest.raises(servidor.ProtocolError, match="não confere"):
        record.resync(hello(servidor), 0, servidor.Digest.of(entries), NOW)


def test_a_new_manifest_drops_an_unfinished_one(servidor: ModuleType, record: Any) -> None:
    record.stage(hello(servidor), [(b"/w/velho", False)], True, NOW)
    record.stage(hello(servidor), [(b"/w/novo", False)], True, NOW)
    record.resync(hello(servidor), 0, servidor.Digest.of([(b"/w/novo", False)]), NOW)
    assert tree_rows(record) == {"/w/novo": False}


# ---------------------------------------------------------------------------
# Retention.
# ---------------------------------------------------------------------------


def test_trim_by_count_keeps_the_newest(servidor: ModuleType, record: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servidor, "RETENTION_CHUNK", 7)
    events = make_events(servidor, [("created", f"/w/f{n}", False, None) for n in range(30)])
    record.store_events(hello(servidor), events, NOW)
    deleted = []
    while (count := record.pruner.trim(10, None)) > 0:
        assert count <= 7  # bounded chunks
        deleted.append(count)
    assert sum(deleted) == 20
    assert [row[0] for row in record.conn.execute("SELECT seq FROM events ORDER BY id")] == list(range(21, 31))
    assert len(tree_rows(record)) == 30  # the tree is kept whole


def test_trim_by_age(servidor: ModuleType, record: Any) -> None:
    old = NOW - datetime.timedelta(days=10)
    record.store_events(hello(servidor), make_events(servidor, [("created", "/w/velho", False, None)]), old)
    record.store_events(hello(servidor), make_events(servidor, [("created", "/w/novo", False, None)], 2), NOW)
    record.store_text("127.0.0.1:5", "olá", old)
    cutoff = int((NOW - datetime.timedelta(days=5)).timestamp())
    assert record.pruner.trim(0, cutoff) == 2
    assert record.pruner.trim(0, cutoff) == 0
    assert [row[0] for row in record.conn.execute("SELECT path FROM events")] == ["/w/novo"]


def test_retention_says_when(servidor: ModuleType) -> None:
    assert servidor.Retention(0, 0).due() is None
    assert servidor.Retention(5, 0).due() == (5, None, None)
    retention = servidor.Retention(0, 1.5)
    limits = retention.due()
    assert limits is not None and limits[0] == 0 and limits[1] is not None
    retention.caught_up()
    assert retention.due() is None  # the age is checked again RETENTION_INTERVAL later


def test_memory_budget_caps_bytes_and_texts(servidor: ModuleType, record: Any) -> None:
    """The in-memory record is bounded in bytes too (long paths, long texts), and in plain text messages:
    the oldest rows go first, the newest stay."""
    budget = servidor.MemoryBudget(event_bytes=80_000, texts=5, text_bytes=30_000)
    long = "x" * 9_000
    for n in range(20):
        record.store_events(
            hello(servidor), make_events(servidor, [("created", f"/w/{long}{n}", False, None)], n + 1), NOW
        )
        record.store_text("127.0.0.1:5", f"{n:02d}" + "t" * 9_000, NOW)
        record.pruner.trim(0, None, budget)
    (event_bytes,) = record.conn.execute("SELECT sum(length(CAST(path AS BLOB))) FROM events").fetchone()
    assert event_bytes <= 80_000 * 9 // 8 + 10_000
    seqs = [row[0] for row in record.conn.execute("SELECT seq FROM events ORDER BY id")]
    assert seqs and seqs[-1] == 20 and seqs == list(range(seqs[0], 21))
    texts = [row[0][:2] for row in record.conn.execute("SELECT text FROM messages ORDER BY id")]
    assert 1 <= len(texts) <= 5 and texts[-1] == "19"
    assert sum(len(text) for (text,) in record.conn.execute("SELECT text FROM messages")) <= 30_000 * 9 // 8 + 10_000
