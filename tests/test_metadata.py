"""Issue 10, server side: protocol 3's metadata (type, size, mtime, mode, target_path, sha256, attrib).

Pure parts first (validation, each rule and its reason; human_size; the console line and the --json record),
then the record (schema 2, the migration of a version 1 file, the tree's type/size/mtime), then end to end:
the real servidor.py on 127.0.0.1 (port 0) and a raw protocol client written in the tests (test_trust.py's),
asserting on exactly what the server printed, what --json printed and what the database holds.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import SERVER_SCRIPT, TIMEOUT, Processes, script_env, wait_until
from test_protocol import BAD_EVENTS
from test_trust import ROOT, TS, Client, batch, event
from websockets.exceptions import ConnectionClosed

MTIME = "2026-11-29T14:23:51.123456+00:00"
MTIME_EPOCH = datetime.datetime.fromisoformat(MTIME).timestamp()
SHA = "ab" * 32
TARGET = "../alvo\u202e\x1b[31m.txt"  # a symlink's target with a bidi override and an escape sequence
TARGET_SHOWN = "../alvo\\u202e\\x1b[31m.txt"


def v3_event(seq: int, path: str = "", file_type: str = "file", **changes: Any) -> dict[str, Any]:
    """A valid protocol 3 event (test_trust.py's event plus ``type``); a change of None removes the key."""
    ev = {**event(seq, path, is_dir=file_type == "dir", type=file_type), **changes}
    return {key: value for key, value in ev.items() if value is not None}


def message(*events: dict[str, Any]) -> str:
    return json.dumps({"type": "events", "events": list(events)})


# servidor._SCHEMA is version 1's text as servidor.py 1.0.0 created it (commit f8ec062); later versions are
# migrations. Pinned, so the migration is always tested from the real old layout.
V1_SCHEMA_SHA256 = "b0b24c03e5ef9aa402e7cd23812d26ff2173e45b3c104de15dcfae97f1197ea5"


# ---------------------------------------------------------------------------
# Validation (pure): each rule, and its reason.
# ---------------------------------------------------------------------------


def parse3(servidor: ModuleType, *events: dict[str, Any]) -> list[Any]:
    parsed: list[Any] = servidor.parse_message(message(*events), 3)
    return parsed


def test_every_key_is_read(servidor: ModuleType) -> None:
    [ev] = parse3(
        servidor,
        v3_event(1, f"{ROOT}/a", size=1_200_000, mtime=MTIME, mode="0644", sha256=SHA, event="modified", attrib=True),
    )
    assert ev == servidor.Event(
        1,
        "modified",
        f"{ROOT}/a",
        False,
        datetime.datetime.fromisoformat(TS),
        "live",
        type="file",
        size=1_200_000,
        mtime=datetime.datetime.fromisoformat(MTIME),
        mode="0644",
        sha256=SHA,
        attrib=True,
    )
    link, target_bytes = parse3(
        servidor,
        v3_event(1, f"{ROOT}/l", "symlink", size=len(TARGET.encode()), mtime=MTIME, mode="0777", target_path=TARGET),
        v3_event(2, f"{ROOT}/m", "symlink", target_path="/tmp/bad_\\xff", target_path_b64="L3RtcC9iYWRf/w=="),
    )
    assert (link.type, link.target_path, link.target_path_b64, link.attrib) == ("symlink", TARGET, None, False)
    assert (target_bytes.target_path, target_bytes.target_path_b64) == ("/tmp/bad_\\xff", "L3RtcC9iYWRf/w==")


def test_only_type_is_required_and_mtime_is_kept_in_utc(servidor: ModuleType) -> None:
    minimal, other_zone, deleted = parse3(
        servidor,
        v3_event(1, file_type="other"),
        v3_event(2, file_type="dir", mtime="2026-11-29T16:23:51.123456+02:00", size=None),
        v3_event(3, event="deleted", file_type="symlink"),
    )
    assert (minimal.type, minimal.size, minimal.mtime, minimal.mode, minimal.sha256) == (
        "other",
        None,
        None,
        None,
        None,
    )
    assert other_zone.mtime == datetime.datetime.fromisoformat(MTIME)
    assert other_zone.mtime.utcoffset() == datetime.timedelta(0)
    assert deleted.type == "symlink" and not deleted.is_dir


@pytest.mark.parametrize("size", [0, 1, 2**53 + 1, 2**63])
def test_size_edges_are_accepted(servidor: ModuleType, size: int) -> None:
    [ev] = parse3(servidor, v3_event(1, size=size))
    assert ev.size == size


@pytest.mark.parametrize("mode", ["644", "0644", "0755", "104755", "000"])
def test_modes_accepted(servidor: ModuleType, mode: str) -> None:
    [ev] = parse3(servidor, v3_event(1, mode=mode))
    assert ev.mode == mode


SIZE_REASON = "campo 'size' não é um inteiro de 0 a 9223372036854775808"
VIOLATIONS: list[tuple[dict[str, Any], str]] = [
    # (changes to a valid v3 event, the exact reason)
    ({"type": None}, "campo 'type' ausente ou desconhecido: None"),
    ({"type": "link"}, "campo 'type' ausente ou desconhecido: 'link'"),
    ({"type": "File"}, "campo 'type' ausente ou desconhecido: 'File'"),
    ({"type": ["file"]}, "campo 'type' ausente ou desconhecido: ['file']"),
    ({"type": "dir", "is_dir": False}, "campo 'is_dir' não confere com 'type' 'dir'"),
    ({"type": "file", "is_dir": True}, "campo 'is_dir' não confere com 'type' 'file'"),
    ({"type": "symlink", "is_dir": True}, "campo 'is_dir' não confere com 'type' 'symlink'"),
    ({"size": True}, SIZE_REASON),
    ({"size": False}, SIZE_REASON),
    ({"size": -1}, SIZE_REASON),
    ({"size": 2**63 + 1}, SIZE_REASON),
    ({"size": 10**30}, SIZE_REASON),
    ({"size": 1.0}, SIZE_REASON),
    ({"size": "12"}, SIZE_REASON),
    ({"mtime": "2026-11-29T14:23:51.123456"}, "campo 'mtime' sem fuso horário"),
    ({"mtime": "ontem"}, "campo 'mtime' não é uma data ISO 8601"),
    ({"mtime": ""}, "campo 'mtime' não é uma data ISO 8601"),
    ({"mtime": 1764426231.5}, "campo 'mtime' ausente ou não é texto"),
    ({"mtime": "0001-01-01T00:00:00+01:00"}, "campo 'mtime' fora do intervalo"),
    ({"mode": "644x"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"mode": "0648"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"mode": "12"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"mode": "1234567"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"mode": "0o644"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"mode": "0644\n"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"mode": "٠٦٤٤"}, "campo 'mode' não tem de 3 a 6 dígitos octais"),  # Arabic-Indic digits
    ({"mode": 644}, "campo 'mode' não tem de 3 a 6 dígitos octais"),
    ({"target_path": 5}, "campo 'target_path' ausente ou não é texto"),
    ({"target_path": "t" * (16 * 1024 + 1)}, "campo 'target_path' longo demais"),
    ({"target_path": "/x/\ud800"}, "campo 'target_path' tem surrogates isolados"),
    ({"target_path": "/x", "target_path_b64": "abc"}, "campo 'target_path_b64' não é base64"),
    ({"target_path_b64": "L3g="}, "'target_path_b64' não confere com 'target_path'"),
    ({"target_path": "/y", "target_path_b64": "L3g="}, "'target_path_b64' não confere com 'target_path'"),
    ({"sha256": SHA.upper()}, "campo 'sha256' não tem 64 dígitos hexadecimais minúsculos"),
    ({"sha256": SHA[:-1]}, "campo 'sha256' não tem 64 dígitos hexadecimais minúsculos"),
    ({"sha256": SHA + "0"}, "campo 'sha256' não tem 64 dígitos hexadecimais minúsculos"),
    ({"sha256": 5}, "campo 'sha256' não tem 64 dígitos hexadecimais minúsculos"),
    ({"event": "modified", "attrib": False}, "campo 'attrib' só pode ser true, e só em 'modified'"),
    ({"event": "modified", "attrib": 1}, "campo 'attrib' só pode ser true, e só em 'modified'"),
    ({"event": "modified", "attrib": "true"}, "campo 'attrib' só pode ser true, e só em 'modified'"),
    ({"attrib": True}, "campo 'attrib' só pode ser true, e só em 'modified'"),
    ({"event": "deleted", "attrib": True}, "campo 'attrib' só pode ser true, e só em 'modified'"),
]


@pytest.mark.parametrize(
    ("changes", "reason"), VIOLATIONS, ids=[f"{i}-{next(iter(c))}" for i, (c, _) in enumerate(VIOLATIONS)]
)
def test_each_rule_violated_gives_its_reason(servidor: ModuleType, changes: dict[str, Any], reason: str) -> None:
    ev = {**v3_event(1), **changes}
    with pytest.raises(servidor.ProtocolError) as caught:
        servidor.parse_message(message({k: v for k, v in ev.items() if v is not None}), 3)
    assert str(caught.value) == reason
    assert caught.value.code == 1008


def with_types(text: str | bytes) -> str | bytes:
    """``text`` with a ``type`` that agrees with ``is_dir`` added to each event object that has none."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if not isinstance(text, str) or not isinstance(obj, dict) or not isinstance(obj.get("events"), list):
        return text
    for item in obj["events"]:
        if isinstance(item, dict) and "type" not in item:
            item["type"] = "dir" if item.get("is_dir") is True else "file"
    return json.dumps(obj)


@pytest.mark.parametrize("bad", BAD_EVENTS)
def test_version_3_keeps_every_older_rule(servidor: ModuleType, bad: str | bytes) -> None:
    """test_protocol.py's malformed messages, each event given a ``type``: refused in version 3 for the same
    reason as in version 2."""
    with pytest.raises(servidor.ProtocolError) as as_2:
        servidor.parse_events(bad, 2)
    with pytest.raises(servidor.ProtocolError) as as_3:
        servidor.parse_events(with_types(bad), 3)
    assert str(as_3.value) == str(as_2.value)


def test_older_versions_ignore_the_new_keys(servidor: ModuleType) -> None:
    """A version 1 or 2 client's events are read as before: whatever else they carry is not looked at."""
    text = message(v3_event(1, size=True, type="nada", mtime="ontem", attrib=False))
    for version in (1, 2):
        [ev] = servidor.parse_message(text, version)
        assert ev == servidor.Event(1, "created", f"{ROOT}/f1.txt", False, datetime.datetime.fromisoformat(TS))
    [ev] = servidor.parse_events(message(event(1)))  # the default: version 2
    assert ev.type is None


# ---------------------------------------------------------------------------
# human_size (pure).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (999, "999 B"),
        (1000, "1,0 kB"),
        (1049, "1,0 kB"),
        (1050, "1,1 kB"),  # half up
        (1_200_000, "1,2 MB"),
        (999_949, "999,9 kB"),
        (999_950, "1,0 MB"),  # 999,95 kB rounds to 1000,0 kB: the next unit
        (999_999, "1,0 MB"),
        (3_400_000_000, "3,4 GB"),
        (999_950_000_000, "1,0 TB"),
        (10**12, "1,0 TB"),
        (1_234_567_890_123_456, "1,2 PB"),
        (2**63, "9,2 EB"),
        (10**21, "1000,0 EB"),  # past the last unit: more digits, never a wrong unit
    ],
)
def test_human_size(servidor: ModuleType, size: int, shown: str) -> None:
    assert servidor.human_size(size) == shown


# ---------------------------------------------------------------------------
# The console line and the --json record (pure).
# ---------------------------------------------------------------------------

WHEN = datetime.datetime.fromisoformat(TS)


def make(servidor: ModuleType, kind: str, path: str, file_type: str | None, **fields: Any) -> Any:
    is_dir = file_type == "dir" if file_type is not None else fields.pop("is_dir", False)
    return servidor.Event(1, kind, path, is_dir, WHEN, type=file_type, **fields)


@pytest.mark.parametrize(
    ("kind", "file_type", "fields", "shown"),
    [
        ("created", "file", {"size": 1_200_000}, "arquivo criado: /w/a (1,2 MB)"),
        ("modified", "file", {"size": 0, "attrib": True}, "arquivo modificado (atributos): /w/a (0 B)"),
        ("created", "file", {}, "arquivo criado: /w/a"),  # lstat failed: no size
        (
            "modified",
            "file",
            {"size": 999_950, "origin": "startup"},
            "arquivo modificado: /w/a (varredura inicial) (1,0 MB)",
        ),
        ("moved", "file", {"size": 999, "dest_path": "/w/b"}, "arquivo movido: /w/a -> /w/b (999 B)"),
        ("created", "dir", {"size": 4096}, "diretório criado: /w/a"),  # only a file's size is shown
        ("created", "symlink", {"size": 20, "target_path": TARGET}, f"link simbólico criado: /w/a -> {TARGET_SHOWN}"),
        (
            "moved",
            "symlink",
            {"target_path": "alvo", "dest_path": "/w/b"},
            "link simbólico movido: /w/a -> /w/b -> alvo",
        ),
        ("deleted", "symlink", {}, "link simbólico excluído: /w/a"),
        ("created", "other", {"size": 0}, "arquivo especial criado: /w/a"),
        ("created", None, {"is_dir": True}, "diretório criado: /w/a"),  # a version 2 client's event: as before
        ("created", None, {}, "arquivo criado: /w/a"),
    ],
)
def test_console_line(
    servidor: ModuleType, kind: str, file_type: str | None, fields: dict[str, Any], shown: str
) -> None:
    ev = make(servidor, kind, "/w/a", file_type, **fields)
    local = WHEN.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert servidor.format_event("pc", ev) == f"{local} [pc] {shown}"


FULL_KEYS = [
    "client", "client_id", "seq", "event", "path", "dest_path", "is_dir", "type", "size", "mtime", "mode",
    "target_path", "target_path_b64", "sha256", "attrib", "ts", "origin", "path_b64", "dest_path_b64",
]  # fmt: skip


def test_json_record_has_every_key_in_the_protocol_order(servidor: ModuleType) -> None:
    ev = servidor.Event(
        7,
        "modified",
        "/w/a",
        False,
        WHEN,
        "rescan",
        "/w/b",
        "L3cvYQ==",
        "L3cvYg==",
        type="symlink",
        size=2**63,
        mtime=datetime.datetime.fromisoformat("2026-11-29T16:23:51.5+02:00"),
        mode="0777",
        target_path=TARGET,
        target_path_b64="Li4vYWx2b+KAri5idHQ=",
        sha256=SHA,
        attrib=True,
    )
    record = servidor.event_record("pc", "id1", ev)
    assert list(record) == FULL_KEYS
    assert record["type"] == "symlink" and record["size"] == 2**63 and record["attrib"] is True
    assert record["mtime"] == "2026-11-29T14:23:51.500000+00:00"  # UTC, microseconds: as the protocol writes it
    assert record["target_path"] == TARGET and record["mode"] == "0777" and record["sha256"] == SHA
    [line] = servidor.event_lines("pc", "id1", [ev])
    assert line == servidor.to_json_line(record)
    assert "\u202e" not in line and "\x1b" not in line and json.loads(line) == record


def test_json_record_of_a_minimal_and_of_an_older_event(servidor: ModuleType) -> None:
    minimal = make(servidor, "deleted", "/w/a", "other")
    older = make(servidor, "created", "/w/a", None)
    assert list(servidor.event_record("pc", "id1", minimal)) == [
        "client", "client_id", "seq", "event", "path", "is_dir", "type", "ts", "origin",
    ]  # fmt: skip
    assert list(servidor.event_record("pc", "id1", older)) == [
        "client", "client_id", "seq", "event", "path", "is_dir", "ts", "origin",
    ]  # fmt: skip
    expected = [servidor.to_json_line(servidor.event_record("pc", "id1", ev)) for ev in (minimal, older)]
    assert servidor.event_lines("pc", "id1", [minimal, older]) == expected


# ---------------------------------------------------------------------------
# The record: schema 2, a version 1 file migrated in place, the tree's type/size/mtime.
# ---------------------------------------------------------------------------


def signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


def v1_database(servidor: ModuleType, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """A database file as servidor.py 1.0.0 left it (schema 1, WAL): a client, its events and tree, a message.
    Every row of every table, as read back."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(servidor._SCHEMA)
        conn.execute(
            "INSERT INTO clients (client_id, name, root, protocol, first_seen, last_seen, last_seq, secret_hash)"
            " VALUES ('velho', 'antigo', ?, 1, ?, ?, 2, NULL)",
            (ROOT, TS, TS),
        )
        conn.executemany(
            "INSERT INTO events (client, seq, event, path, dest_path, is_dir, ts, origin, path_b64, dest_path_b64,"
            " stored_at) VALUES (1, ?, 'created', ?, NULL, ?, ?, 'live', NULL, NULL, 1764000000)",
            [(1, f"{ROOT}/velho", True, TS), (2, f"{ROOT}/velho/f", False, TS)],
        )
        conn.executemany(
            "INSERT INTO tree (client, path, is_dir, hash) VALUES (1, ?, ?, ?)",
            [
                (p, d, signed(servidor.entry_hash(p, d)))
                for p, d in [(b"/home/x/velho", True), (b"/home/x/velho/f", False)]
            ],
        )
        conn.execute("INSERT INTO messages (peer, text, ts, stored_at) VALUES ('127.0.0.1:1', 'olá', ?, 1)", (TS,))
        conn.commit()
        return all_rows(conn)


def all_rows(conn: sqlite3.Connection, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four tables (only ``columns`` of each, when given), in primary key order."""
    names = columns or table_columns(conn)
    return {
        table: conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY rowid").fetchall()  # noqa: S608
        if table != "tree"
        else conn.execute(f"SELECT {', '.join(cols)} FROM tree ORDER BY client, path").fetchall()  # noqa: S608
        for table, cols in names.items()
    }


def table_columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    tables = ("clients", "events", "tree", "messages")
    return {t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_version_1_schema_text_is_frozen(servidor: ModuleType) -> None:
    """A database file of version 1 exists wherever 1.0.0 ran: its schema text never changes (a change of the
    schema is a new entry of _MIGRATIONS and a new SCHEMA_VERSION)."""
    assert hashlib.sha256(servidor._SCHEMA.encode()).hexdigest() == V1_SCHEMA_SHA256
    assert "PRAGMA user_version = 1;" in servidor._SCHEMA


def test_version_1_file_is_migrated_in_place(servidor: ModuleType, tmp_path: Path) -> None:
    """A version 1 file opens, keeps every row (every column of it as it was), and gains the new columns, NULL
    in the old rows: the same columns, in the same order, as a new file has."""
    path = tmp_path / "v1.db"
    before = v1_database(servidor, path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        old_columns = table_columns(conn)
    conn = servidor.open_database(str(path))
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == servidor.SCHEMA_VERSION == 2
        assert all_rows(conn, old_columns) == before
        fresh_path = tmp_path / "novo.db"
        servidor.open_database(str(fresh_path)).close()
        with contextlib.closing(sqlite3.connect(fresh_path)) as fresh:
            assert table_columns(conn) == table_columns(fresh)
        added = {t: [c for c in cols if c not in old_columns[t]] for t, cols in table_columns(conn).items()}
        assert added == {
            "clients": [],
            "events": ["type", "size", "mtime", "mode", "target_path", "target_path_b64", "sha256", "attrib"],
            "tree": ["type"],
            "messages": [],
        }
        assert (
            conn.execute(
                "SELECT count(*) FROM events WHERE coalesce(type, size, mtime, attrib) IS NOT NULL"
            ).fetchone()[0]
            == 0
        )
        record = servidor.Record(conn)
        assert record.last_seq("velho") == 2
        exported = list(record.export())
        assert [(item["seq"], item["path"]) for item in exported] == [(1, f"{ROOT}/velho"), (2, f"{ROOT}/velho/f")]
        assert "type" not in exported[0]  # not known: never made up from is_dir
    finally:
        conn.close()
    again = servidor.open_database(str(path))  # a migrated file opens as it is
    again.close()


def test_version_1_file_exports_read_only_without_migrating(servidor: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    v1_database(servidor, path)
    before = path.read_bytes()
    conn = servidor.open_database(str(path), read_only=True)
    try:
        exported = list(servidor.Record(conn).export())
    finally:
        conn.close()
    assert [list(item) for item in exported] == [
        ["client", "client_id", "seq", "event", "path", "is_dir", "ts", "origin"]
    ] * 2
    assert path.read_bytes() == before
    with contextlib.closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_version_1_file_missing_a_column_is_refused_untouched(servidor: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "outro.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(servidor._SCHEMA.replace("    dest_path_b64 TEXT,\n", ""))
    before = path.read_bytes()
    with pytest.raises(servidor.FatalError, match="banco SQLite de outro programa .*'events.dest_path_b64'"):
        servidor.open_database(str(path))
    assert path.read_bytes() == before


def tree_of(record: Any, client_id: str = "c1") -> dict[bytes, tuple[Any, ...]]:
    rows = record.conn.execute(
        "SELECT t.path, t.is_dir, t.type, t.size, t.mtime FROM tree AS t JOIN clients AS c ON c.id = t.client"
        " WHERE c.client_id = ?",
        (client_id,),
    ).fetchall()
    return {path: tuple(rest) for path, *rest in rows}


def test_tree_keeps_type_size_and_mtime(servidor: ModuleType) -> None:
    conn = servidor.open_database(":memory:")
    try:
        record = servidor.Record(conn)
        hello = servidor.Hello("c1", "pc", "/w", 3)
        mtime = datetime.datetime.fromisoformat(MTIME)

        def ev(seq: int, kind: str, path: str, file_type: str | None, **fields: Any) -> Any:
            is_dir = file_type == "dir" if file_type else fields.pop("is_dir", False)
            return servidor.Event(seq, kind, path, is_dir, WHEN, type=file_type, **fields)

        record.store_events(
            hello,
            [
                ev(1, "created", "/w/d", "dir", mtime=mtime, mode="0755"),
                ev(2, "created", "/w/d/f", "file", size=10, mtime=mtime),
                ev(3, "created", "/w/l", "symlink", size=4, target_path="alvo"),
                ev(4, "created", "/w/g", "file", size=2**63, mtime=mtime),
            ],
            NOW,
        )
        assert tree_of(record) == {
            b"/w/d": (1, "dir", None, MTIME_EPOCH),
            b"/w/d/f": (0, "file", 10, MTIME_EPOCH),
            b"/w/l": (0, "symlink", 4, None),
            b"/w/g": (0, "file", 2**63, MTIME_EPOCH),  # SQLite's INTEGER stops at 2**63 - 1: kept exactly as REAL
        }
        record.store_events(
            hello,
            [
                ev(5, "moved", "/w/d", "dir", dest_path="/w/e", mtime=mtime.replace(year=2027)),
                ev(6, "modified", "/w/e/f", "file", size=11),  # mtime not known now: not kept from before
                ev(7, "moved", "/w/nunca", "file", dest_path="/w/n", size=1),  # unknown source: nothing at n
                ev(8, "modified", "/w/l", None),  # a version 2 client's event: type not known
                ev(9, "deleted", "/w/g", "file"),
            ],
            NOW,
        )
        assert tree_of(record) == {
            b"/w/e": (1, "dir", None, mtime.replace(year=2027).timestamp()),
            b"/w/e/f": (0, "file", 11, None),
            b"/w/l": (0, None, None, None),
        }
        entries = [(b"/w/e", True), (b"/w/e/f", False), (b"/w/l", False)]
        assert record.digest("c1") == (9, servidor.Digest.of(entries))  # the digest knows nothing of metadata
        exported = list(record.export())
        assert exported[3]["size"] == 2**63 and exported[4]["mtime"] == "2027-11-29T14:23:51.123456+00:00"
    finally:
        conn.close()


NOW = datetime.datetime(2026, 11, 25, 17, 3, 31, 118000, tzinfo=datetime.UTC)


# ---------------------------------------------------------------------------
# End to end: the real server, a raw protocol 3 client (and a version 2 one beside it).
# ---------------------------------------------------------------------------

BAD_PATH_B64 = "L2hvbWUveC9iYWRf/w=="  # b"/home/x/bad_\xff"
V3_EVENTS = [
    # (the event sent, the console line it makes without "[pc] ")
    (
        v3_event(1, f"{ROOT}/a.txt", size=1_200_000, mtime=MTIME, mode="0644", sha256=SHA),
        "arquivo criado: /home/x/a.txt (1,2 MB)",
    ),
    (v3_event(2, f"{ROOT}/d", "dir", mtime=MTIME, mode="0755"), "diretório criado: /home/x/d"),
    (
        v3_event(3, f"{ROOT}/d/l", "symlink", size=len(TARGET.encode()), mtime=MTIME, mode="0777", target_path=TARGET),
        f"link simbólico criado: /home/x/d/l -> {TARGET_SHOWN}",
    ),
    (
        v3_event(4, f"{ROOT}/a.txt", event="modified", size=1_200_000, mtime=MTIME, mode="0755", attrib=True),
        "arquivo modificado (atributos): /home/x/a.txt (1,2 MB)",
    ),
    (v3_event(5, f"{ROOT}/fifo", "other", mtime=MTIME, mode="0644"), "arquivo especial criado: /home/x/fifo"),
    (
        v3_event(6, f"{ROOT}/a.txt", event="moved", dest_path=f"{ROOT}/b.txt", size=999_950, mtime=MTIME, mode="0755"),
        "arquivo movido: /home/x/a.txt -> /home/x/b.txt (1,0 MB)",
    ),
    (v3_event(7, f"{ROOT}/d/l", "symlink", event="deleted"), "link simbólico excluído: /home/x/d/l"),
    (v3_event(8, f"{ROOT}/vazio", size=0, mtime=MTIME, mode="0600"), "arquivo criado: /home/x/vazio (0 B)"),
    (
        v3_event(
            9,
            f"{ROOT}/bad_\\xff",
            "symlink",
            path_b64=BAD_PATH_B64,
            size=9,
            target_path="/tmp/bad_\\xff",
            target_path_b64="L3RtcC9iYWRf/w==",
        ),
        "link simbólico criado: /home/x/bad_\\xff -> /tmp/bad_\\xff",
    ),
]
# A version 2 client: it sends none of the new keys, and whatever else it sends is not looked at.
V2_EVENT = event(1, f"{ROOT}/v2.txt", type="symlink", size=5)
V2_LINE = "arquivo criado: /home/x/v2.txt"
JSON_ORDER = FULL_KEYS[2:]  # after client and client_id


def expected_record(client_id: str, sent: dict[str, Any]) -> dict[str, Any]:
    """The --json record of an event sent: every key it had, in the protocol's order (its ts and mtime are already
    written the way the server writes them)."""
    sent = {"origin": "live", **sent}  # the server's default
    return {"client": "pc", "client_id": client_id, **{key: sent[key] for key in JSON_ORDER if key in sent}}


def send_all(uri: str) -> tuple[Client, Client]:
    """The v3 client's events in three batches (each acked), then the v2 client's event."""
    v3 = Client(uri, version=3)
    assert v3.welcome == {"type": "welcome", "version": 3, "ack": 0}
    sent = [ev for ev, _ in V3_EVENTS]
    v3.send(*sent[:3])
    v3.send(*sent[3:8])
    v3.send(sent[8])
    v2 = Client(uri, version=2)
    assert v2.welcome["version"] == 2
    v2.send(V2_EVENT)
    return v3, v2


def test_v3_client_json_output(procs: Processes) -> None:
    """--json carries every key each event had, in the protocol's order; a version 2 client's line is as before."""
    server = procs.server(json_output=True)
    v3, v2 = send_all(server.uri)  # without --banco printing is the record: acked once printed
    records = server.json_events()
    expected = [expected_record(v3.client_id, ev) for ev, _ in V3_EVENTS] + [
        {
            "client": "pc",
            "client_id": v2.client_id,
            "seq": 1,
            "event": "created",
            "path": f"{ROOT}/v2.txt",
            "is_dir": False,
            "ts": TS,
            "origin": "live",
        }
    ]
    assert records == expected, server.describe()
    assert [list(record) for record in records] == [list(record) for record in expected]
    raw = server.raw("stdout")
    assert b"\x1b" not in raw and "\u202e".encode() not in raw and b"\\u202e" in raw and b"\\u001b[31m" in raw
    assert not server.lines("stderr") or b"Traceback" not in server.raw("stderr")


def test_v3_client_console_database_and_export(procs: Processes, tmp_path: Path) -> None:
    """The console lines (size, target, attributes), the database's columns and tree, and --exportar."""
    database = tmp_path / "eventos.db"
    server = procs.server(args=["--banco", str(database)])
    v3, v2 = send_all(server.uri)
    server.wait_for_lines([f"[pc] {line}" for _, line in V3_EVENTS] + [f"[pc] {V2_LINE}"])
    assert server.stripped(sizes=True) == [f"[pc] {line}" for _, line in V3_EVENTS] + [f"[pc] {V2_LINE}"]
    raw = server.raw("stdout")
    assert b"\x1b" not in raw and "\u202e".encode() not in raw
    assert server.stop() == 0
    assert b"Traceback" not in server.raw("stderr")

    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT c.client_id, e.seq, e.type, e.size, e.mtime, e.mode, e.target_path, e.target_path_b64, e.sha256,"
            " e.attrib FROM events AS e JOIN clients AS c ON c.id = e.client ORDER BY e.id"
        ).fetchall()
        keys = ("type", "size", "mtime", "mode", "target_path", "target_path_b64", "sha256")
        expected = [
            (v3.client_id, ev["seq"], *(ev.get(key) for key in keys), 1 if ev.get("attrib") else None)
            for ev, _ in V3_EVENTS
        ]
        assert rows == [*expected, (v2.client_id, 1, *([None] * 8))]
        tree = conn.execute(
            "SELECT c.client_id, t.path, t.is_dir, t.type, t.size, t.mtime FROM tree AS t"
            " JOIN clients AS c ON c.id = t.client ORDER BY c.id, t.path"
        ).fetchall()
    assert tree == [
        (v3.client_id, b"/home/x/b.txt", 0, "file", 999_950, MTIME_EPOCH),
        (v3.client_id, b"/home/x/bad_\xff", 0, "symlink", 9, None),
        (v3.client_id, b"/home/x/d", 1, "dir", None, MTIME_EPOCH),
        (v3.client_id, b"/home/x/fifo", 0, "other", None, MTIME_EPOCH),
        (v3.client_id, b"/home/x/vazio", 0, "file", 0, MTIME_EPOCH),
        (v2.client_id, b"/home/x/v2.txt", 0, None, None, None),
    ]

    done = subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "--banco", str(database), "--exportar"],
        env=script_env(tmp_path / ".cache"),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert exported[:-1] == [expected_record(v3.client_id, ev) for ev, _ in V3_EVENTS]
    assert [list(record) for record in exported[:-1]] == [
        list(expected_record(v3.client_id, ev)) for ev, _ in V3_EVENTS
    ]
    assert list(exported[-1]) == ["client", "client_id", "seq", "event", "path", "is_dir", "ts", "origin"]


HOSTILE: list[tuple[str, dict[str, Any], str]] = [  # (name, changes to a valid v3 event, reason)
    ("size-2**64", {"size": 2**64}, SIZE_REASON),
    ("size-bool", {"size": True}, SIZE_REASON),
    ("size-negative", {"size": -5}, SIZE_REASON),
    ("mtime-naive", {"mtime": "2026-11-29T14:23:51"}, "campo 'mtime' sem fuso horário"),
    ("mtime-year-10000", {"mtime": "9999-12-31T23:59:59-01:00"}, "campo 'mtime' fora do intervalo"),
    ("target-huge", {"target_path": "x" * 20_000}, "campo 'target_path' longo demais"),
    (
        "target-b64-lies",
        {"target_path": "a", "target_path_b64": "Yg=="},
        "'target_path_b64' não confere com 'target_path'",
    ),
    ("sha-bad", {"sha256": "Z" * 64}, "campo 'sha256' não tem 64 dígitos hexadecimais minúsculos"),
    ("attrib-on-created", {"attrib": True}, "campo 'attrib' só pode ser true, e só em 'modified'"),
    ("type-missing", {"type": None}, "campo 'type' ausente ou desconhecido: None"),
    ("is-dir-disagrees", {"type": "dir"}, "campo 'is_dir' não confere com 'type' 'dir'"),
]


def test_hostile_metadata_is_refused_and_the_server_goes_on(procs: Processes) -> None:
    """Each bad key closes that connection with 1008 and its reason (the batch is not stored, nothing printed);
    the server says it on stderr, without a traceback, and a well-behaved client right after is served."""
    server = procs.server(json_output=True)
    for name, changes, reason in HOSTILE:
        client = Client(server.uri, version=3)
        bad = {key: value for key, value in {**v3_event(1), **changes}.items() if value is not None}
        client.ws.send(batch(v3_event(1, f"{ROOT}/antes"), {**bad, "seq": 2}))
        with pytest.raises(ConnectionClosed) as closed:
            client.ws.recv(TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason), name
        server.wait_for_line(re.compile(f"violou o protocolo: {re.escape(reason)}$"), "stderr")
    good = Client(server.uri, version=3)
    good.send(v3_event(1, f"{ROOT}/depois", size=1))
    # The ack follows the write to stdout; this test's reader of the pipe may not have read it yet.
    wait_until(lambda: bool(server.json_events()), describe=server.describe)
    assert [record["path"] for record in server.json_events()] == [f"{ROOT}/depois"]
    assert b"Traceback" not in server.raw("stderr") and server.running()


def test_server_migrates_a_version_1_file_and_goes_on(servidor: ModuleType, procs: Processes, tmp_path: Path) -> None:
    """A version 1 database from the previous release: the server says it upgraded it, keeps its rows (the old
    client's seq too) and stores the new events' metadata beside them."""
    database = tmp_path / "v1.db"
    before = v1_database(servidor, database)
    server = procs.server(args=["--banco", str(database)])
    server.wait_for_line(f"banco {str(database)!r} atualizado do esquema 1 para o 2", "stderr")
    old = Client(server.uri, client_id="velho", secret=None, version=1)
    assert old.welcome["ack"] == 2  # its stored seq survived the migration
    v3 = Client(server.uri, version=3)
    v3.send(v3_event(1, f"{ROOT}/novo", size=1000, mode="0644"))
    server.wait_for_lines(["[pc] arquivo criado: /home/x/novo (1,0 kB)"])
    assert server.stop() == 0
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        kept = all_rows(conn, {"events": ["seq", "path", "type"], "messages": ["text"]})
        assert kept["events"] == [(1, f"{ROOT}/velho", None), (2, f"{ROOT}/velho/f", None), (1, f"{ROOT}/novo", "file")]
        assert kept["messages"] == [("olá",)]
        assert conn.execute("SELECT size, mode FROM events WHERE type IS NOT NULL").fetchall() == [(1000, "0644")]
    assert len(before["events"]) == 2


def test_mtime_out_of_datetime_range_is_not_known(cliente: ModuleType) -> None:
    """``touch -d @1099511627776`` on a tmpfs (year 36812) raised ValueError in the loop: the event went nowhere
    and a traceback reached the console. Such an mtime is "not known" (no ``mtime`` key); the rest is exact."""
    assert cliente.iso_mtime(1_099_511_627_776 * 10**9) is None
    assert cliente.iso_mtime(-(10**20)) is None
    assert cliente.iso_mtime(0) == "1970-01-01T00:00:00.000000+00:00"
    assert cliente.iso_mtime(-1) == "1969-12-31T23:59:59.999999+00:00"
    assert cliente.iso_mtime(1_764_426_231_123_456_789) == "2025-11-29T14:23:51.123456+00:00"
    # A server shows the time in its own zone: the first and last day a datetime holds are left out too.
    assert cliente.iso_mtime(int(datetime.datetime(1, 1, 1, 1, tzinfo=datetime.UTC).timestamp()) * 10**9) is None
    assert cliente.iso_mtime(int(datetime.datetime(9999, 12, 31, 23, tzinfo=datetime.UTC).timestamp()) * 10**9) is None
    assert cliente.iso_mtime(int(datetime.datetime(2, 1, 1, tzinfo=datetime.UTC).timestamp()) * 10**9) == (
        "0002-01-01T00:00:00.000000+00:00"
    )
