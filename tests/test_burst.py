"""The server's fast paths for a burst (issue 12, item 4) give exactly what its general paths give.

Each fast path skips work only where the result is provably the same; these tests compare both on fuzzed and
hostile inputs: the event parser (_parse_event against _checked_event: the same Event, or the same error), the
``--json`` line of a parsed event (against json.dumps of its record), the readable line (against describe_change)
and the rows stored without their all-NULL columns (against every column bound).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import time
import zoneinfo
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=400, deadline=None, database=None)
TS = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
HOSTILE = '\x00\x1b\n\r\t\x7f\x85\u061c\u200e\u202e\u2028\u2066"\\/é日😀\udcff\ud800 '

hostile_text = st.text(st.characters() | st.characters(categories=["Cs"]) | st.sampled_from(HOSTILE), max_size=20)
# Mostly lone surrogates (json.loads accepts "\ud800"; the parser must refuse them on every path), with a few of
# the characters a path or a timestamp is made of.
surrogate_text = st.text(st.characters(categories=["Cs"]) | st.sampled_from("/w.-:T+0123456789"), max_size=20)
# What the parser lets through to the record: no lone surrogate (it refuses them).
storable_text = st.text(
    st.characters(blacklist_categories=["Cs"]) | st.sampled_from(HOSTILE.replace("\udcff", "").replace("\ud800", "")),
    max_size=20,
)
paths = st.one_of(
    st.builds(lambda tail: "/w/" + tail, st.text(st.characters(max_codepoint=0x7E, min_codepoint=0x20), max_size=20)),
    st.builds(lambda tail: "/w/" + tail, hostile_text),
    st.builds(lambda tail: "/w/" + tail, surrogate_text),
    hostile_text,
    st.sampled_from(
        ["/w", "/w/", "/w//a", "/w/./a", "/w/../x", "/other/a", "", "p" * 16 * 1024, "p" * (16 * 1024 + 1)]
    ),
)
utc_datetimes = st.datetimes(
    min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)
)
# mtime texts: iso_mtime's own form (the fast path), its near misses, other forms fromisoformat accepts, garbage.
mtimes = st.one_of(
    utc_datetimes.map(lambda d: d.replace(tzinfo=datetime.UTC).isoformat(timespec="microseconds")),
    utc_datetimes.map(lambda d: d.isoformat(timespec="microseconds") + "Z"),
    utc_datetimes.map(lambda d: d.isoformat(sep=" ", timespec="microseconds") + "+00:00"),
    utc_datetimes.map(lambda d: d.isoformat(timespec="milliseconds") + "+00:00"),
    utc_datetimes.map(lambda d: d.isoformat(timespec="microseconds") + "-03:00"),
    utc_datetimes.map(lambda d: d.isoformat(timespec="microseconds") + "+23:59"),
    utc_datetimes.map(lambda d: d.isoformat(timespec="microseconds")),  # no time zone
    st.sampled_from(
        [
            "0001-01-01T00:00:00.000000+00:00",
            "9999-12-31T23:59:59.999999+00:00",
            "0002-01-01T00:00:00.000000+00:00",
            "9998-12-31T23:59:59.999999+00:00",
            "2026-W48-7T14:23:00.000001+00:00",  # a week date of the same length
            "2026-11-29T14:23:00,000001+00:00",
            "2026-13-29T14:23:00.000001+00:00",
            "2026-02-30T14:23:00.000001+00:00",
            "2026-11-29T24:00:00.000000+00:00",
            "２026-11-29T14:23:00.000001+00:00",  # a non-ASCII digit
            "2026-11-29T14:23:00.000001+00:00\n",
            "0000-01-01T00:00:00.000000+00:00",
        ]
    ),
    # fromisoformat takes any character between date and time: a lone surrogate too
    st.builds(
        lambda d, sep: d.isoformat(sep=sep, timespec="microseconds") + "+00:00",
        utc_datetimes,
        st.characters(categories=["Cs"]),
    ),
    hostile_text,
    st.integers(),
    st.none(),
)
timestamps = st.one_of(
    st.builds(
        lambda d, sep: d.replace(tzinfo=datetime.UTC).isoformat(sep=sep, timespec="milliseconds"),
        utc_datetimes,
        st.characters(categories=["Cs"]) | st.characters(),
    ),
    surrogate_text,
    utc_datetimes.map(lambda d: d.replace(tzinfo=datetime.UTC).isoformat(timespec="milliseconds")),
    st.builds(
        lambda d, minutes: d.replace(tzinfo=datetime.timezone(datetime.timedelta(minutes=minutes))).isoformat(),
        utc_datetimes,
        st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    ),
    st.sampled_from(["2024-05-06T07:08:09.123", "x", "", "2024-05-06T07:08:09.123+00:00"]),
    st.integers(),
)
USUAL = {"seq": 1, "event": "created", "path": "/w/a", "is_dir": False, "type": "file", "size": 1,
         "mtime": "2026-11-29T14:23:00.000001+00:00", "mode": "0644", "ts": "2026-11-29T14:23:00.123+00:00",
         "origin": "live"}  # fmt: skip
# Each key's values: right, wrong, and those that leave the fast path for the general one.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.integers(1, 2**53) | st.sampled_from([0, 2**53 + 1, True, 1.0, "1"]),
    "event": st.sampled_from(["created", "modified", "deleted", "moved", "x"]),
    "path": paths,
    "is_dir": st.booleans() | st.sampled_from([0, 1, None]),
    "type": st.sampled_from(["file", "dir", "symlink", "other", None, "fifo"]),
    "size": st.none() | st.integers(0, 2**63) | st.sampled_from([-1, 2**63 + 1, True, 1.5]),
    "mtime": mtimes,
    "mode": st.none() | st.sampled_from(["0644", "755", "104755", "0o644", "8", "06444444", "", 644]),
    "ts": timestamps,
    "origin": st.sampled_from(["live", "rescan", "startup", "resync", "x", None]),
    "dest_path": paths | st.none(),
    "path_b64": st.sampled_from(["L3cvYQ==", "L3cv/w==", "x", "", None]),
    "dest_path_b64": st.sampled_from(["L3cvYg==", "!", None]),
    "target_path": paths | st.none(),
    "target_path_b64": st.sampled_from(["YQ==", "/w==", None]),
    "sha256": st.sampled_from(["0" * 64, "a" * 64, "A" * 64, "0" * 63, None, 0]),
    "attrib": st.sampled_from([True, False, 1, None]),
}
DELETE = "<delete>"


@st.composite
def event_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """The client's usual event with a few keys changed, added or removed (hostile values included)."""
    event = dict(USUAL)
    for key in draw(st.lists(st.sampled_from(sorted(VALUES)), max_size=4, unique=True)):
        value = draw(VALUES[key] | st.just(DELETE))
        if value == DELETE:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def outcome(parse: Any, obj: Any, version: int) -> tuple[str, Any]:
    try:
        return "ok", parse(obj, version)
    except Exception as exc:  # the kind and the message must match too
        return type(exc).__name__, str(exc)


def strict(ev: Any) -> str:
    """An Event as a text that tells apart what == does not (the same instant in two time zones)."""
    return repr(ev)


@FUZZ
@given(obj=event_dicts(), version=st.sampled_from([1, 2, 3, 3, 3]))
@example(obj=USUAL, version=3)
@example(obj={**USUAL, "sha256": "a" * 64}, version=3)
@example(obj={**USUAL, "path": "/w/\u202e\x1b", "attrib": True, "event": "modified"}, version=3)
@example(obj={**USUAL, "path_b64": "L3cvYQ=="}, version=3)
@example(obj={**USUAL, "event": "moved", "dest_path": "/w/b"}, version=3)
@example(obj={**USUAL, "type": "symlink", "target_path": "/w/\x00"}, version=3)
@example(obj={**USUAL, "mtime": "0001-01-01T00:00:00.000000+00:00"}, version=3)
@example(obj={**USUAL, "mtime": "2026-11-29T14:23:00.000001Z"}, version=3)
@example(obj={**USUAL, "seq": 0}, version=3)
# Each condition of the fast path, by an input that only it sends to the general path:
@example(obj={**USUAL, "ts": "2026-11-29\ud80014:23:00.123+00:00"}, version=3)  # ts_text.isascii()
@example(obj={**USUAL, "ts": "2026-11-29\udfff14:23:00.123+00:00"}, version=2)
@example(obj={**USUAL, "path": "/w/\ud800"}, version=3)  # path.isascii()
@example(obj={**USUAL, "path": "/w/a\x7f"}, version=3)  # event_lines' "\x7f" checks (with the clients below)
@example(obj={**USUAL, "path": "/w/" + "a" * (16 * 1024 - 3)}, version=3)  # len(path) <= MAX_TEXT_CHARS
@example(obj={**USUAL, "path": "/w/" + "a" * (16 * 1024 - 2)}, version=3)
@example(obj={**USUAL, "size": 2**63}, version=3)  # size <= MAX_FILE_SIZE
@example(obj={**USUAL, "size": 2**63 + 1}, version=3)
@example(obj={**USUAL, "size": True}, version=3)  # type(size) is int
@example(obj={**USUAL, "size": 1.0}, version=3)
@example(obj={**USUAL, "mtime": "2026-11-29T14:23:00.000001-03:00"}, version=3)  # _CANONICAL_UTC's offset
@example(obj={**USUAL, "mtime": "2026-11-29T14:23:00.000001-00:00"}, version=3)
@example(obj={**USUAL, "mtime": "2026-11-29T14:23:00.000001+00:01"}, version=3)
@example(obj={**USUAL, "mtime": "2026-11-29T24:00:00.000000+00:00"}, version=3)  # 3.14+ reads it (next day)
@example(obj={**USUAL, "mtime": "2026-11-29\ud80014:23:00.000001+00:00"}, version=3)
@example(obj={**USUAL, "mtime": "9999-12-31T23:59:59.999999+00:00"}, version=3)  # the year's range
def test_fuzz_fast_event_parser_equals_general(servidor: ModuleType, obj: Any, version: int) -> None:
    assert_fast_parser_equals_general(servidor, obj, version)


# Clients whose names take each branch of event_lines' terminal-safety check (non-ASCII, DEL in an ASCII name).
CLIENTS = (("pc", "id"), (HOSTILE, "\u202e\x7f"), ("p\x7fc", "id"), ("pc", "i\x7fd"))


def assert_fast_parser_equals_general(servidor: ModuleType, obj: Any, version: int) -> None:
    # Through JSON, as the server gets it (the fast path relies on JSON's exact types).
    obj = json.loads(json.dumps(obj))
    fast = outcome(servidor._parse_event, obj, version)
    general = outcome(servidor._checked_event, obj, version)
    assert fast[0] == general[0]
    if fast[0] != "ok":
        assert fast == general
        return
    ev, reference = fast[1], general[1]
    assert strict(ev) == strict(reference)
    assert ev.mtime_text is None or ev.mtime_text == servidor.iso_mtime(ev.mtime)
    for client, client_id in CLIENTS:
        [line] = servidor.event_lines(client, client_id, [ev])
        assert line == servidor.to_json_line(servidor.event_record(client, client_id, reference))
        assert "\x7f" not in line
        # The texts as formatted without any cache (a cache keyed by == could give another offset's text).
        shown = json.loads(line)
        assert shown["ts"] == reference.ts.isoformat(timespec="milliseconds")
        if reference.mtime is not None:
            assert shown["mtime"] == reference.mtime.astimezone(datetime.UTC).isoformat(timespec="microseconds")
        assert servidor.format_event(client, ev) == servidor.format_event(client, reference)
    [row] = servidor._event_rows(1, [ev], 0)
    assert row[servidor._ROW_COLUMNS.index("ts")] == reference.ts.isoformat(timespec="milliseconds")


@contextlib.contextmanager
def local_zone(servidor: ModuleType, zone: str) -> Iterator[None]:
    """The process's local time zone set to ``zone`` (time.tzset), the caches of local-time results emptied on
    the way in and out (they hold for one zone: the server's process never changes its own)."""
    caches = (servidor._parse_ts, servidor._local_time)
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    for cache in caches:
        cache.cache_clear()
    try:
        assert time.timezone != 0, f"{zone} not known here (no tzdata?)"
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
        for cache in caches:
            cache.cache_clear()


edge_texts = st.sampled_from(
    ["0001-01-01T00:00:00.000000+00:00", "0001-01-01T12:00:00.000000+00:00", "0001-01-02T00:00:00.000000+00:00",
     "9999-12-31T23:59:59.999999+00:00", "9999-12-31T12:00:00.000000+00:00", "9999-12-30T23:59:59.999999+00:00",
     "0001-01-01T00:00:00.000+00:00", "9999-12-31T23:59:59.999+00:00", "0001-01-01T05:00:00.000+05:00"]
)  # fmt: skip


@pytest.mark.parametrize("zone", ["America/Sao_Paulo", "Asia/Tokyo"])
def test_fuzz_fast_event_parser_equals_general_in_other_zones(servidor: ModuleType, zone: str) -> None:
    """The comparison west and east of UTC: year 1 and 9999 fit in UTC but not in local time there (the general
    path refuses them; the fast path must too)."""

    @FUZZ
    @given(obj=event_dicts(), mtime=edge_texts, ts=edge_texts, version=st.sampled_from([2, 3, 3]))
    @example(obj=USUAL, mtime="0001-01-01T00:00:00.000000+00:00", ts=USUAL["ts"], version=3)
    @example(obj=USUAL, mtime="9999-12-31T23:59:59.999999+00:00", ts=USUAL["ts"], version=3)
    @example(obj=USUAL, mtime=USUAL["mtime"], ts="0001-01-01T00:00:00.000+00:00", version=3)
    @example(obj=USUAL, mtime=USUAL["mtime"], ts="9999-12-31T23:59:59.999+00:00", version=3)
    def compare(obj: dict[str, Any], mtime: str, ts: str, version: int) -> None:
        assert_fast_parser_equals_general(servidor, {**obj, "mtime": mtime, "ts": ts}, version)

    with local_zone(servidor, zone):
        compare()


def test_fast_path_taken_for_the_client_s_usual_event(servidor: ModuleType) -> None:
    """The burst's usual event keeps its mtime text (so the fast path is not dead code)."""
    obj = {"seq": 7, "event": "created", "path": "/w/a", "is_dir": False, "type": "file", "size": 10,
           "mtime": "2026-11-29T14:23:00.000001+00:00", "mode": "0644", "ts": "2026-11-29T14:23:00.123+00:00",
           "origin": "live"}  # fmt: skip
    ev = servidor._parse_event(obj, 3)
    assert ev.mtime_text == obj["mtime"]
    assert servidor._checked_event(obj, 3).mtime_text is None
    assert servidor.event_lines("pc", "id", [ev]) == [
        '{"client": "pc", "client_id": "id", "seq": 7, "event": "created", "path": "/w/a", "is_dir": false, '
        '"type": "file", "size": 10, "mtime": "2026-11-29T14:23:00.000001+00:00", "mode": "0644", '
        '"ts": "2026-11-29T14:23:00.123+00:00", "origin": "live"}'
    ]


def reference_line(servidor: ModuleType, client: str, ev: Any) -> str:
    """format_event as it was: describe_change (escape() on every path) and the client's name escaped."""
    file_type = servidor.file_type_of(ev)
    what = servidor.describe_change(ev.event, ev.path, file_type, ev.dest_path, ev.origin, ev.attrib)
    if file_type == "file" and ev.size is not None:
        what += f" ({servidor.human_size(ev.size)})"
    elif file_type == "symlink" and ev.target_path is not None:
        what += f" -> {servidor.escape(ev.target_path)}"
    return f"{servidor.local_time(ev.ts)} [{servidor.escape(client)}] {what}"


@FUZZ
@given(
    client=hostile_text,
    kind=st.sampled_from(["created", "modified", "deleted", "moved"]),
    path=paths,
    dest_path=st.none() | paths,
    file_type=st.sampled_from(["file", "dir", "symlink", "other", None]),
    size=st.none() | st.integers(0, 2**63),
    target=st.none() | hostile_text,
    origin=st.sampled_from(["live", "rescan", "startup", "resync"]),
    attrib=st.booleans(),
)
@example(client="pc", kind="created", path="/w/a\x7f", dest_path=None, file_type="file", size=1, target=None,
         origin="live", attrib=False)  # fmt: skip
@example(client="pc", kind="modified", path="/w/ a~", dest_path=None, file_type=None, size=None, target=None,
         origin="rescan", attrib=True)  # fmt: skip
def test_fuzz_format_event_equals_describe_change(
    servidor: ModuleType,
    client: str,
    kind: str,
    path: str,
    dest_path: str | None,
    file_type: str | None,
    size: int | None,
    target: str | None,
    origin: str,
    attrib: bool,
) -> None:
    ev = servidor.Event(1, kind, path, file_type == "dir", TS, origin, dest_path, type=file_type, size=size,
                        target_path=target, attrib=attrib)  # fmt: skip
    assert servidor.format_event(client, ev) == reference_line(servidor, client, ev)


# ---------------------------------------------------------------------------
# Rows stored without their all-NULL columns hold what every column bound holds.
# ---------------------------------------------------------------------------


@FUZZ
@given(seqs=st.lists(st.integers(0, 2**53), min_size=1, max_size=6), data=st.data())
def test_fuzz_rows_without_nulls_equal_full_rows(servidor: ModuleType, seqs: list[int], data: Any) -> None:
    events = []
    for seq in seqs:
        kind = data.draw(st.sampled_from(["created", "modified", "deleted", "moved"]))
        meta = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["file", "dir", "symlink", "other"]),
                    "size": st.integers(0, 2**63),
                    "mtime": st.datetimes(timezones=st.just(datetime.UTC)),
                    "mode": st.just("0644"),
                    "target_path": storable_text,
                    "target_path_b64": st.just("YQ=="),
                    "sha256": st.just("0" * 64),
                    "attrib": st.booleans(),
                },
            )
        )
        events.append(
            servidor.Event(
                seq,
                kind,
                data.draw(storable_text),
                data.draw(st.booleans()),
                TS,
                "live",
                data.draw(storable_text) if kind == "moved" else None,
                data.draw(st.none() | st.just("L3cvYQ==")),
                data.draw(st.none() | st.just("L3cvYg==")) if kind == "moved" else None,
                **meta,
            )  # fmt: skip
        )
    full = [servidor._ROW_COLUMNS, servidor._event_rows(1, events, 123)]
    cut = servidor._without_nulls(*full)
    stored = []
    for columns, rows in (full, cut):
        conn = servidor.open_database(":memory:")
        try:
            conn.execute(
                "INSERT INTO clients (client_id, name, root, protocol, first_seen, last_seen) VALUES ('c', 'c', '/',"
                " 3, '', '')"
            )
            conn.executemany(servidor._insert_sql("events", columns), rows)
            stored.append(conn.execute("SELECT *, typeof(is_dir), typeof(size) FROM events ORDER BY id").fetchall())
        finally:
            conn.close()
    assert stored[0] == stored[1]
    assert len(stored[0]) == len(events)


def test_insert_of_no_event_is_nothing(servidor: ModuleType) -> None:
    conn = servidor.open_database(":memory:")
    try:
        servidor.Record(conn)._insert(1, [], 0)  # a resync without differences
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("is_dir", [False, True])
def test_is_dir_stored_as_integer(servidor: ModuleType, is_dir: bool) -> None:
    """is_dir goes in as an int (a bool takes sqlite3's adapter path): SQLite keeps the same 0/1 integer."""
    conn = servidor.open_database(":memory:")
    try:
        record = servidor.Record(conn)
        hello = servidor.Hello("c", "pc", "/w", 3)
        ev = servidor.Event(1, "created", "/w/a", is_dir, TS, type="dir" if is_dir else "file")
        record.store_events(hello, [ev], TS)
        assert conn.execute("SELECT is_dir, typeof(is_dir) FROM events").fetchone() == (int(is_dir), "integer")
        assert conn.execute("SELECT is_dir, typeof(is_dir) FROM tree").fetchone() == (int(is_dir), "integer")
    finally:
        conn.close()


@FUZZ
@given(
    root=st.sampled_from(["/w", "/", "/w/sub", "C:\\w"]),
    style=st.sampled_from(["posix", "posix", "windows"]),
    batch=st.lists(
        st.tuples(paths, st.none() | st.sampled_from(["L3cvYQ==", "L3cv/w==", "Lw=="]), st.none() | paths),
        min_size=1,
        max_size=4,
    ),
)
@example(root="/w", style="posix", batch=[("/w/a", None, None), ("/w/b/", None, None)])
@example(root="/w", style="posix", batch=[("/w/a", None, None), ("/w/./b", None, None)])
@example(root="/w", style="posix", batch=[("/w/a", None, None), ("/wx/b", None, None)])
@example(root="/", style="posix", batch=[("/", None, None), ("//a", None, None)])
@example(root="/w", style="posix", batch=[("/w/a", None, None), ("/w//b", None, None)])
def test_fuzz_check_event_paths_equals_check_paths(
    servidor: ModuleType, root: str, style: str, batch: list[tuple[str, str | None, str | None]]
) -> None:
    hello = servidor.Hello("c", "pc", root, 3, None, style)
    events = [
        servidor.Event(n, "moved" if dest is not None else "created", path, False, TS, dest_path=dest, path_b64=b64)
        for n, (path, b64, dest) in enumerate(batch, start=1)
    ]
    assert outcome(lambda evs, _: servidor.check_event_paths(hello, evs), events, 0) == outcome(
        lambda evs, _: servidor.check_paths(hello, servidor.event_paths(evs)), events, 0
    )


def human_size_reference(n: int) -> str:
    """servidor.human_size as it was, without its kB shortcut."""
    if n < 1000:
        return f"{n} B"
    scale = 1
    units = ("kB", "MB", "GB", "TB", "PB", "EB")
    for unit in units:
        scale *= 1000
        tenths = (n * 10 + scale // 2) // scale
        if tenths < 10_000 or unit == units[-1]:
            break
    return f"{tenths // 10},{tenths % 10} {unit}"


@FUZZ
@given(n=st.integers(0, 2_000_000) | st.integers(0, 2**63))
@example(n=999)
@example(n=1000)
@example(n=1049)
@example(n=1050)
@example(n=999_949)
@example(n=999_950)
def test_fuzz_human_size_shortcut_equals_its_loop(servidor: ModuleType, n: int) -> None:
    assert servidor.human_size(n) == human_size_reference(n)


# ---------------------------------------------------------------------------
# Caches: the same input always gives the same text.
# ---------------------------------------------------------------------------

# Every cache in servidor.py, and why its key tells apart every input whose result differs. A key that compares
# equal for values written differently (aware datetimes of one instant in two offsets, 1 == 1.0 == True, 0.0 ==
# -0.0, ...) would give whichever text the cache saw first.
AUDITED_CACHES = {
    "_iso_time": "a datetime and its UTC offset: the instant and the offset are all isoformat() writes",
    "_json_iso_time": "the same as _iso_time",
    "_local_time": "a datetime with a fixed offset: its text depends on the instant alone (and the process's zone)",
    "_parse_ts": "the client's str (== only for the same characters), and the key name used in messages",
    "_escaped_name": "a client's name, a str",
    "_root_of": "a hello's root and path style, both str",
    "_insert_sql": "the server's own table and column names",
    "_expected_columns": "a schema version, from the server's own constants",
}


def test_every_cache_is_audited(servidor: ModuleType) -> None:
    """A new cache is added here once its key is checked for the kind above."""
    cached = {name for name, value in vars(servidor).items() if callable(getattr(value, "cache_clear", None))}
    assert cached == set(AUDITED_CACHES)


INSTANT = datetime.datetime(2026, 11, 29, 14, 23, 0, 456000, tzinfo=datetime.UTC)
ZONES = [datetime.timezone(datetime.timedelta(minutes=m)) for m in (0, -180, 540, 330, -1439, 1439)]


@pytest.mark.parametrize("first", range(len(ZONES)))
def test_cached_texts_keep_each_offset(servidor: ModuleType, first: int) -> None:
    """One instant in several offsets, any of them first: each keeps its own text."""
    moments = [INSTANT.astimezone(zone) for zone in ZONES[first:] + ZONES[:first]]
    assert len(set(moments)) == 1  # equal, and hashed alike
    for ts in moments:
        assert servidor.iso_time(ts) == ts.isoformat(timespec="milliseconds")
        assert servidor._json_ts(ts) == json.dumps(ts.isoformat(timespec="milliseconds"))
        assert servidor.local_time(ts) == INSTANT.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def test_cached_texts_keep_the_fold_of_a_zone(servidor: ModuleType) -> None:
    """With one zoneinfo time zone, == compares the wall clock and ignores fold: 01:30 before and after the clocks
    go back are equal, yet an hour apart, in two offsets."""
    zone = zoneinfo.ZoneInfo("America/New_York")
    first = datetime.datetime(2026, 11, 1, 1, 30, 0, 789000, tzinfo=zone)
    again = first.replace(fold=1)
    assert first == again and first.utcoffset() != again.utcoffset()
    for ts in (first, again, first.replace(tzinfo=None), again.replace(tzinfo=None)):
        assert servidor.iso_time(ts) == ts.isoformat(timespec="milliseconds")
        assert servidor._json_ts(ts) == json.dumps(ts.isoformat(timespec="milliseconds"))
        assert servidor.local_time(ts) == ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        ev = servidor.Event(1, "created", "/w/a", False, ts)
        assert servidor.format_event("pc", ev) == reference_line(servidor, "pc", ev)


@pytest.mark.parametrize("reverse", [False, True])
def test_one_instant_in_two_offsets_in_a_batch(servidor: ModuleType, reverse: bool) -> None:
    """The review's input: seq 2 is the same instant as seq 1 in another offset (both orders)."""
    texts = ["2026-11-29T14:23:00.321+00:00", "2026-11-29T11:23:00.321-03:00"]
    if reverse:
        texts.reverse()
    batch = {"type": "events", "events": [{**USUAL, "seq": n, "ts": ts} for n, ts in enumerate(texts, start=1)]}
    events = servidor.parse_events(json.dumps(batch), 3)
    assert [json.loads(line)["ts"] for line in servidor.event_lines("pc", "id", events)] == texts
    assert [servidor.event_record("pc", "id", ev)["ts"] for ev in events] == texts
    assert [row[servidor._ROW_COLUMNS.index("ts")] for row in servidor._event_rows(1, events, 0)] == texts
    stored = [servidor._stored_event(list(row[1:-1])) for row in servidor._event_rows(1, events, 0)]
    assert [json.loads(line)["ts"] for line in servidor.event_lines("pc", "id", stored)] == texts


class Python314Datetime(datetime.datetime):
    """datetime as Python 3.14+ parses ISO 8601: ``T24:00`` (with zero minutes, seconds and fraction) is midnight of
    the next day."""

    @classmethod
    def fromisoformat(cls, text: str) -> datetime.datetime:  # type: ignore[override]  # a plain datetime, as used
        found = re.fullmatch(r"(.{10}.)24(:00(?::00(?:\.0+)?)?)(.*)", text)
        if found is None:
            return datetime.datetime.fromisoformat(text)
        midnight = datetime.datetime.fromisoformat(f"{found[1]}00{found[2]}{found[3]}")
        return midnight + datetime.timedelta(days=1)


@pytest.mark.parametrize("parse", ["_parse_event", "_checked_event"])
def test_an_mtime_at_24_00_is_written_as_the_next_day(
    servidor: ModuleType, monkeypatch: pytest.MonkeyPatch, parse: str
) -> None:
    """Where fromisoformat reads T24:00 (Python 3.14+), the client's text is not kept: the line, the row and the
    tree say what iso_mtime writes (here as 3.14 parses, whatever Python runs the test)."""
    shim = SimpleNamespace(**{**vars(datetime), "datetime": Python314Datetime})
    monkeypatch.setattr(servidor, "datetime", shim)
    servidor._parse_ts.cache_clear()
    try:
        ev = getattr(servidor, parse)({**USUAL, "mtime": "2026-11-29T24:00:00.000000+00:00"}, 3)
    finally:
        servidor._parse_ts.cache_clear()
    next_day = "2026-11-30T00:00:00.000000+00:00"
    assert servidor.iso_mtime(ev.mtime) == next_day
    assert json.loads(servidor.event_lines("pc", "id", [ev])[0])["mtime"] == next_day
    assert servidor._event_rows(1, [ev], 0)[0][servidor._ROW_COLUMNS.index("mtime")] == next_day
