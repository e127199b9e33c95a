"""Unit tests for the pure (I/O-free) parts of servidor.py and monitor_cliente.py.

The scripts are loaded by path through the ``servidor`` and ``cliente`` fixtures of
conftest.py. Everything here runs without sockets, threads or watchdog observers.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import errno
import hashlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import LOOPBACK
from watchdog import events as wd
from websockets.datastructures import Headers

TS = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
TS_TEXT = "2024-05-06T07:08:09.123+00:00"
LOCAL = TS.astimezone().strftime("%Y-%m-%d %H:%M:%S")  # what the server prints for TS

MAX_TEXT_CHARS = 16 * 1024  # servidor.MAX_TEXT_CHARS, needed at collection time

# C0, DEL, C1, the bidi controls (ALM, LRM, RLM, embeddings/overrides, isolates), surrogates.
UNSAFE = {
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *range(0xD800, 0xE000),
}

FUZZ = settings(max_examples=300, deadline=None, database=None)


def fixed_event(**overrides: Any) -> dict[str, Any]:
    """A valid event object; an override of None removes the key."""
    event: dict[str, Any] = {"seq": 1, "event": "created", "path": "/w/a.txt", "is_dir": False, "ts": TS_TEXT}
    event.update(overrides)
    return {key: value for key, value in event.items() if value is not None}


def events_message(*events: dict[str, Any]) -> str:
    return json.dumps({"type": "events", "events": list(events) or [fixed_event()]})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------------
# Client encoding -> server decoding.
# ---------------------------------------------------------------------------

ROUND_TRIP = [
    # (kind, path, is_dir, dest_path, origin)
    ("created", "/w/a.txt", False, None, "live"),
    ("created", "/w/dir", True, None, "live"),
    ("modified", "/w/a.txt", False, None, "live"),
    ("modified", "/w/dir", True, None, "rescan"),
    ("deleted", "/w/a.txt", False, None, "live"),
    ("deleted", "/w/dir", True, None, "startup"),
    ("moved", "/w/a.txt", False, "/w/b.txt", "live"),
    ("moved", "/w/dir", True, "/w/other dir", "live"),
    ("created", '/w/ação/日本語/😀 "quoted" \\back.txt', False, None, "live"),
    ("moved", "/w/ü", False, "/w/\u00a0nbsp", "rescan"),
]


def test_events_round_trip_every_kind(servidor: ModuleType, cliente: ModuleType) -> None:
    encoded = [
        cliente.encode_event(seq, cliente.Change(kind, path, is_dir, dest, origin), TS_TEXT)
        for seq, (kind, path, is_dir, dest, origin) in enumerate(ROUND_TRIP, start=1)
    ]
    assert all(text.isascii() for text in encoded)
    events = servidor.parse_events(cliente.encode_batch(encoded))
    assert len(events) == len(ROUND_TRIP)
    for seq, (ev, (kind, path, is_dir, dest, origin)) in enumerate(zip(events, ROUND_TRIP, strict=True), start=1):
        assert ev.seq == seq
        assert ev.event == kind
        assert ev.path == path
        assert ev.dest_path == dest
        assert ev.is_dir is is_dir
        assert ev.ts == TS
        assert ev.ts.utcoffset() == datetime.timedelta(0)
        assert ev.origin == origin
        assert ev.path_b64 is None
        assert ev.dest_path_b64 is None
        assert ev == servidor.Event(seq=seq, event=kind, path=path, is_dir=is_dir, ts=TS, origin=origin, dest_path=dest)


def test_encode_event_exact_wire_text(cliente: ModuleType) -> None:
    change = cliente.Change("moved", "/w/a", False, os.fsdecode(b"/tmp/bad_\xff"), origin="rescan")
    assert cliente.encode_event(7, change, TS_TEXT) == (
        '{"seq":7,"event":"moved","path":"/w/a","dest_path":"/tmp/bad_\\\\xff","dest_path_b64":"L3RtcC9iYWRf/w==",'
        '"is_dir":false,"type":"file","ts":"2024-05-06T07:08:09.123+00:00","origin":"rescan"}'
    )
    assert cliente.encode_event(1, cliente.Change("created", "/ç", True), TS_TEXT) == (
        '{"seq":1,"event":"created","path":"/\\u00e7","is_dir":true,"type":"dir","ts":"2024-05-06T07:08:09.123+00:00",'
        '"origin":"live"}'
    )
    assert cliente.encode_batch(["{}", "[]"]) == '{"type":"events","events":[{},[]]}'


@pytest.mark.parametrize("version", [2, 1])
def test_hello_round_trip(servidor: ModuleType, cliente: ModuleType, version: int) -> None:
    secret = "5e" * 16
    text = cliente.encode_hello("0123abcd", "pc-ção 😀", "/home/joão/dados", version, secret)
    secret_hash = hashlib.sha256(secret.encode()).digest() if version >= 2 else None
    assert servidor.parse_hello(text) == servidor.Hello(
        client_id="0123abcd", name="pc-ção 😀", root="/home/joão/dados", version=version, secret_hash=secret_hash
    )
    hello = servidor.parse_hello(text)
    assert type(hello.version) is int
    assert cliente.encode_hello("i", "n", "/r", secret=secret) == cliente.encode_hello("i", "n", "/r", 3, secret)
    assert (cliente.PROTOCOL_VERSION, cliente.FALLBACK_PROTOCOL_VERSION) == (3, 1)
    assert servidor.PROTOCOL_VERSIONS == (1, 2, 3)


@pytest.mark.parametrize("seq", [0, 1, 42, 2**53])
@pytest.mark.parametrize("version", [2, 1])
def test_welcome_and_ack_round_trip(servidor: ModuleType, cliente: ModuleType, seq: int, version: int) -> None:
    Message = cliente.ServerMessage
    welcome = servidor.encode_welcome(seq, version)
    assert cliente.parse_server_message(welcome, version) == Message("welcome", seq, version=version)
    assert cliente.parse_server_message(welcome) == Message("welcome", seq, version=version)  # the server's choice
    assert cliente.parse_server_message(servidor.encode_ack(seq), version) == Message("ack", seq)
    assert cliente.parse_server_message(servidor.encode_ack(seq).encode(), version) == Message("ack", seq)


@pytest.mark.parametrize("kind", ["verified", "resync"])
def test_digest_answers_round_trip(servidor: ModuleType, cliente: ModuleType, kind: str) -> None:
    for digest in [servidor.Digest(0, 0), servidor.Digest(2**53, 2**64 - 1), servidor.Digest(3, 0xABC)]:
        text = servidor.encode_digest_answer(kind, 7, digest)
        assert cliente.parse_server_message(text) == cliente.ServerMessage(kind, 7, count=digest.count, sum=digest.sum)
        with pytest.raises(cliente.ProtocolError):
            cliente.parse_server_message(text, 1)  # version 1 has no digest


def test_digest_and_manifest_are_what_the_server_parses(servidor: ModuleType, cliente: ModuleType) -> None:
    text = cliente.encode_digest(12, 3, 0x0123456789ABCDEF)
    assert servidor.parse_message(text) == servidor.DigestReport(12, servidor.Digest(3, 0x0123456789ABCDEF))
    assert json.loads(text) == {"type": "digest", "seq": 12, "count": 3, "sum": "0123456789abcdef"}
    bad = os.fsdecode(b"/w/b_\xff")
    entries = [("/w/d", True), ("/w/d/ç.txt", False), (bad, False)]
    hashed = [(path, is_dir, cliente.path_hash(path, is_dir)) for path, is_dir in entries]
    messages, count, total = cliente.encode_manifest(5, hashed)
    assert messages[0] == '{"type":"manifest_begin","seq":5}'
    parsed = [servidor.parse_message(message) for message in messages]
    assert parsed[0] == servidor.ManifestBegin(5)
    exact = [(os.fsencode(path), is_dir) for path, is_dir in entries]
    assert [entry for message in parsed[1:-1] for entry in message.entries] == exact
    assert (
        parsed[-1]
        == servidor.ManifestEnd(servidor.Digest.of(exact))
        == servidor.ManifestEnd(servidor.Digest(count, total))
    )
    assert json.loads(messages[1])["entries"][2] == {"path": "/w/b_\\xff", "path_b64": "L3cvYl//", "is_dir": False}
    assert all(message.isascii() for message in messages)


def test_manifest_batches_stay_under_the_limits(cliente: ModuleType) -> None:
    long_name = "/w/" + "n" * 20_000
    entries = [(f"/w/f{n:05d}", False, n) for n in range(2_500)] + [(long_name + str(n), False, 1) for n in range(30)]
    messages, count, total = cliente.encode_manifest(0, entries)
    batches = [json.loads(message)["entries"] for message in messages[1:-1]]
    assert sum(len(batch) for batch in batches) == count == len(entries)
    assert total == (sum(range(2_500)) + 30) % 2**64
    assert all(len(batch) <= cliente.BATCH_MAX_EVENTS for batch in batches)
    assert all(len(message) <= cliente.BATCH_MAX_BYTES + 100 for message in messages)
    assert cliente.encode_manifest(9, []) == (
        ['{"type":"manifest_begin","seq":9}', '{"type":"manifest_end","count":0,"sum":"0000000000000000"}'],
        0,
        0,
    )


def test_a_refused_version_names_what_the_server_speaks(servidor: ModuleType, cliente: ModuleType) -> None:
    with pytest.raises(servidor.ProtocolError) as caught:
        servidor.parse_hello(cliente.encode_hello("i", "n", "/r", 4))
    assert cliente.refused_version(str(caught.value)) == (1, 2, 3)
    # What a server older than protocol 2 said (servidor.py before issue 13): it speaks only 1.
    assert cliente.refused_version("versão de protocolo não suportada: 2") == (1,)
    assert cliente.refused_version("versão de protocolo não suportada (este servidor fala 3): 2") == (3,)
    assert cliente.refused_version("tipo de mensagem inesperado: 'digest'") is None


# ---------------------------------------------------------------------------
# Names that are not UTF-8.
# ---------------------------------------------------------------------------

BAD_NAMES = [
    (b"/tmp/bad_\xff", "/tmp/bad_\\xff", "L3RtcC9iYWRf/w=="),
    (b"/tmp/\xe9t\xe9.txt", "/tmp/\\xe9t\\xe9.txt", "L3RtcC/pdOkudHh0"),
    (b"/tmp/\xed\xa0\x80", "/tmp/\\xed\\xa0\\x80", "L3RtcC/toIA="),  # an encoded surrogate
    ("ação".encode() + b"\xff", "ação\\xff", "YcOnw6Nv/w=="),  # valid UTF-8, then one bad byte
]


@pytest.mark.parametrize(("raw", "text", "b64"), BAD_NAMES)
def test_wire_path_of_undecodable_name(cliente: ModuleType, raw: bytes, text: str, b64: str) -> None:
    path = os.fsdecode(raw)
    assert cliente.wire_path(path) == (text, b64)
    assert base64.b64decode(b64) == raw


@pytest.mark.parametrize("path", ["/tmp/ok", "/tmp/ação 😀", "", "/tmp/\\xff"])
def test_wire_path_of_utf8_name(cliente: ModuleType, path: str) -> None:
    assert cliente.wire_path(path) == (path, None)


@pytest.mark.parametrize(("raw", "text", "b64"), BAD_NAMES)
def test_undecodable_path_round_trip(
    servidor: ModuleType, cliente: ModuleType, raw: bytes, text: str, b64: str
) -> None:
    data = cliente.encode_event(3, cliente.Change("deleted", os.fsdecode(raw), False), TS_TEXT)
    assert data.isascii()
    [ev] = servidor.parse_events(cliente.encode_batch([data]))
    assert (ev.seq, ev.event, ev.path, ev.path_b64, ev.dest_path, ev.dest_path_b64) == (
        3,
        "deleted",
        text,
        b64,
        None,
        None,
    )
    assert base64.b64decode(ev.path_b64, validate=True) == raw


def test_undecodable_dest_path_round_trip(servidor: ModuleType, cliente: ModuleType) -> None:
    src, dest = b"/tmp/bad_\xff", b"/tmp/new_\xfe\xff"
    moves = [
        cliente.Change("moved", "/tmp/good", False, os.fsdecode(dest)),
        cliente.Change("moved", os.fsdecode(src), True, os.fsdecode(dest)),
        cliente.Change("moved", os.fsdecode(src), False, "/tmp/good"),
    ]
    data = [cliente.encode_event(seq, change, TS_TEXT) for seq, change in enumerate(moves, start=1)]
    assert all(text.isascii() for text in data)
    first, second, third = servidor.parse_events(cliente.encode_batch(data))
    assert (first.path, first.path_b64, first.dest_path) == ("/tmp/good", None, "/tmp/new_\\xfe\\xff")
    assert base64.b64decode(first.dest_path_b64) == dest
    assert (second.path, second.dest_path, second.is_dir) == ("/tmp/bad_\\xff", "/tmp/new_\\xfe\\xff", True)
    assert base64.b64decode(second.path_b64) == src
    assert base64.b64decode(second.dest_path_b64) == dest
    assert (third.path, third.dest_path, third.dest_path_b64) == ("/tmp/bad_\\xff", "/tmp/good", None)
    assert base64.b64decode(third.path_b64) == src


# ---------------------------------------------------------------------------
# servidor.parse_hello
# ---------------------------------------------------------------------------

HELLO = {"type": "hello", "version": 1, "client_id": "id1", "name": "pc", "root": "/w"}


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("olá servidor", id="plain-text"),
        pytest.param("", id="empty"),
        pytest.param("{not json", id="brace-but-not-json"),
        pytest.param("[" * 100_000, id="deep-array"),
        pytest.param("{" * 100_000, id="deep-brace"),
        pytest.param(json.dumps([HELLO]), id="json-array"),
        pytest.param('"hello"', id="json-string"),
        pytest.param("42", id="json-number"),
        pytest.param(" " + json.dumps(HELLO), id="leading-space"),
        pytest.param("{}", id="empty-object"),
        pytest.param(json.dumps({**HELLO, "type": "events"}), id="type-events"),
        pytest.param(json.dumps({**HELLO, "type": "HELLO"}), id="type-uppercase"),
        pytest.param(json.dumps({k: v for k, v in HELLO.items() if k != "type"}), id="type-missing"),
        pytest.param(json.dumps(HELLO).encode(), id="binary-bytes"),
        pytest.param(b"\xff\x00", id="binary-garbage"),
    ],
)
def test_parse_hello_returns_none_for_other_first_messages(servidor: ModuleType, message: str | bytes) -> None:
    assert servidor.parse_hello(message) is None


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"version": 4}, id="version-4"),
        pytest.param({"version": 0}, id="version-0"),
        pytest.param({"version": "1"}, id="version-string"),
        pytest.param({"version": True}, id="version-bool"),
        pytest.param({"version": None}, id="version-null"),
        pytest.param({"version": [1]}, id="version-list"),
        pytest.param({"client_id": None}, id="client-id-null"),
        pytest.param({"client_id": ""}, id="client-id-empty"),
        pytest.param({"client_id": 5}, id="client-id-number"),
        pytest.param({"name": 5}, id="name-number"),
        pytest.param({"name": None}, id="name-null"),
        pytest.param({"name": ["pc"]}, id="name-list"),
        pytest.param({"root": {}}, id="root-object"),
        pytest.param({"name": "x" * (MAX_TEXT_CHARS + 1)}, id="name-too-long"),
        pytest.param({"root": "\ud800"}, id="root-lone-surrogate"),
    ],
)
def test_parse_hello_rejects_malformed_hello(servidor: ModuleType, changes: dict[str, Any]) -> None:
    message = json.dumps({**HELLO, **changes})
    with pytest.raises(servidor.ProtocolError):
        servidor.parse_hello(message)


def test_parse_hello_rejects_missing_version_and_client_id(servidor: ModuleType) -> None:
    for key in ("version", "client_id", "root"):
        with pytest.raises(servidor.ProtocolError):
            servidor.parse_hello(json.dumps({k: v for k, v in HELLO.items() if k != key}))


def test_parse_hello_accepts_empty_name_and_max_length_text(servidor: ModuleType) -> None:
    long = "/" + "r" * (servidor.MAX_ROOT_CHARS - 1)
    hello = servidor.parse_hello(json.dumps({**HELLO, "name": "", "root": long, "extra": [1, 2]}))
    assert hello == servidor.Hello(client_id="id1", name="", root=long, version=1)


# ---------------------------------------------------------------------------
# servidor.parse_events: every way to be wrong.
# ---------------------------------------------------------------------------

BAD_EVENTS: list[Any] = [
    pytest.param('{"type":"events","events":[', id="invalid-json"),
    pytest.param("", id="empty-text"),
    pytest.param("NaN", id="json-nan"),
    pytest.param(events_message().encode(), id="bytes"),
    pytest.param(json.dumps([fixed_event()]), id="array"),
    pytest.param('"events"', id="json-string"),
    pytest.param(json.dumps({"type": "hello", "events": [fixed_event()]}), id="type-hello"),
    pytest.param(json.dumps({"events": [fixed_event()]}), id="type-missing"),
    pytest.param(json.dumps({"type": ["events"], "events": [fixed_event()]}), id="type-list"),
    pytest.param('{"type":"events"}', id="events-missing"),
    pytest.param('{"type":"events","events":[]}', id="events-empty"),
    pytest.param('{"type":"events","events":null}', id="events-null"),
    pytest.param(json.dumps({"type": "events", "events": fixed_event()}), id="events-object"),
    pytest.param('{"type":"events","events":"abc"}', id="events-string"),
    pytest.param('{"type":"events","events":[1]}', id="event-number"),
    pytest.param('{"type":"events","events":["x"]}', id="event-string"),
    pytest.param('{"type":"events","events":[null]}', id="event-null"),
    pytest.param(json.dumps({"type": "events", "events": [[fixed_event()]]}), id="event-list"),
    pytest.param(json.dumps({"type": "events", "events": [fixed_event(), 1]}), id="second-event-number"),
    pytest.param(events_message(fixed_event(seq=None)), id="seq-missing"),
    pytest.param(events_message(fixed_event(seq=0)), id="seq-0"),
    pytest.param(events_message(fixed_event(seq=-1)), id="seq-negative"),
    pytest.param(events_message(fixed_event(seq=True)), id="seq-bool"),
    pytest.param(events_message(fixed_event(seq=1.0)), id="seq-float"),
    pytest.param(events_message(fixed_event(seq="1")), id="seq-string"),
    pytest.param(events_message(fixed_event(seq=2**53 + 1)), id="seq-above-2**53"),
    pytest.param(events_message(fixed_event(seq=10**30)), id="seq-huge"),
    pytest.param(events_message(fixed_event(event="renamed")), id="kind-unknown"),
    pytest.param(events_message(fixed_event(event="Created")), id="kind-uppercase"),
    pytest.param(events_message(fixed_event(event=None)), id="kind-missing"),
    pytest.param(events_message(fixed_event(event=["created"])), id="kind-list"),
    pytest.param(events_message(fixed_event(origin="manual")), id="origin-unknown"),
    pytest.param(json.dumps({"type": "events", "events": [{**fixed_event(), "origin": None}]}), id="origin-null"),
    pytest.param(events_message(fixed_event(is_dir=None)), id="is-dir-missing"),
    pytest.param(events_message(fixed_event(is_dir=0)), id="is-dir-0"),
    pytest.param(events_message(fixed_event(is_dir="false")), id="is-dir-string"),
    pytest.param(events_message(fixed_event(ts=None)), id="ts-missing"),
    pytest.param(events_message(fixed_event(ts=1714979289)), id="ts-number"),
    pytest.param(events_message(fixed_event(ts="ontem")), id="ts-not-iso"),
    pytest.param(events_message(fixed_event(ts="")), id="ts-empty"),
    pytest.param(events_message(fixed_event(ts="2024-13-01T00:00:00+00:00")), id="ts-month-13"),
    pytest.param(events_message(fixed_event(ts="2024-05-06T07:08:09+24:00")), id="ts-offset-24h"),
    pytest.param(events_message(fixed_event(ts="2024-05-06T07:08:09.123")), id="ts-naive"),
    pytest.param(events_message(fixed_event(ts="2024-05-06")), id="ts-date-only"),
    pytest.param(events_message(fixed_event(path=None)), id="path-missing"),
    pytest.param(events_message(fixed_event(path=5)), id="path-number"),
    pytest.param(events_message(fixed_event(path=["/w"])), id="path-list"),
    pytest.param(events_message(fixed_event(path="p" * (MAX_TEXT_CHARS + 1))), id="path-too-long"),
    pytest.param(events_message(fixed_event(event="moved")), id="moved-without-dest"),
    pytest.param(events_message(fixed_event(event="moved", dest_path=5)), id="moved-dest-number"),
    pytest.param(events_message(fixed_event(event="moved", dest_path="d" * (MAX_TEXT_CHARS + 1))), id="dest-too-long"),
    pytest.param(events_message(fixed_event(dest_path="/w/b")), id="created-with-dest"),
    pytest.param(events_message(fixed_event(event="deleted", dest_path="/w/b")), id="deleted-with-dest"),
    pytest.param(events_message(fixed_event(path_b64="abc")), id="path-b64-bad-padding"),
    pytest.param(events_message(fixed_event(path_b64="!!!!")), id="path-b64-bad-alphabet"),
    pytest.param(events_message(fixed_event(path_b64="L3Rt cC8=")), id="path-b64-space"),
    pytest.param(events_message(fixed_event(path_b64="é")), id="path-b64-non-ascii"),
    pytest.param(events_message(fixed_event(path_b64=5)), id="path-b64-number"),
    pytest.param(events_message(fixed_event(event="moved", dest_path="/w/b", dest_path_b64="abc")), id="dest-b64-bad"),
    pytest.param(
        events_message(fixed_event(event="moved", dest_path="/w/b", dest_path_b64="ü===")), id="dest-b64-non-ascii"
    ),
    pytest.param(events_message(fixed_event(path="\ud800")), id="path-lone-surrogate"),
    pytest.param(events_message(fixed_event(path="/w/\udcff")), id="path-surrogateescape"),
    pytest.param(events_message(fixed_event(event="moved", dest_path="\udfff")), id="dest-lone-surrogate"),
    pytest.param(events_message(fixed_event(ts="\ud800")), id="ts-lone-surrogate"),
    pytest.param(events_message(fixed_event(path_b64="\ud800")), id="b64-lone-surrogate"),
    pytest.param(events_message(fixed_event(seq=1), fixed_event(seq=1)), id="seq-repeated"),
    pytest.param(events_message(fixed_event(seq=2), fixed_event(seq=1)), id="seq-decreasing"),
    pytest.param(events_message(fixed_event(seq=1), fixed_event(seq=3), fixed_event(seq=2)), id="seq-out-of-order"),
    pytest.param("[" * 100_000, id="deep-array"),
    pytest.param('{"a":' * 100_000, id="deep-object"),
    pytest.param('{"type":"events","events":' + "[" * 100_000 + "]" * 100_000 + "}", id="deep-events"),
]


@pytest.mark.parametrize("message", BAD_EVENTS)
def test_parse_events_rejects(servidor: ModuleType, message: str | bytes) -> None:
    with pytest.raises(servidor.ProtocolError):
        servidor.parse_events(message)


def test_parse_events_deep_kind_inside_batch(servidor: ModuleType) -> None:
    # Nested deep enough to be parsed but deep to repr: the error message must not recurse out.
    deep = "[" * 900 + "]" * 900
    message = '{"type":"events","events":[{"seq":1,"event":' + deep + "}]}"
    with pytest.raises(servidor.ProtocolError):
        servidor.parse_events(message)


def test_parse_events_accepts_edge_values(servidor: ModuleType) -> None:
    assert servidor.MAX_TEXT_CHARS == MAX_TEXT_CHARS  # the too-long cases above rely on it
    long = "p" * servidor.MAX_TEXT_CHARS
    first, second = servidor.parse_events(
        events_message(
            fixed_event(seq=1, path=long),
            fixed_event(
                seq=2**53, event="moved", path="/a", dest_path="", path_b64="", dest_path_b64="AA==", is_dir=True
            ),
        )
    )
    assert first == servidor.Event(seq=1, event="created", path=long, is_dir=False, ts=TS)
    assert second == servidor.Event(
        seq=2**53, event="moved", path="/a", is_dir=True, ts=TS, dest_path="", path_b64="", dest_path_b64="AA=="
    )
    # Another offset, microseconds, unknown keys: accepted; the offset is kept.
    third, fourth = servidor.parse_events(
        events_message(
            fixed_event(seq=5, ts="2024-05-06T09:08:09.123+02:00", origin="startup", extra=[1]),
            fixed_event(seq=6, ts="2024-05-06T07:08:09.123000+00:00", event="deleted", origin="rescan"),
        )
    )
    assert (third.seq, third.ts, third.ts.utcoffset(), third.origin) == (
        5,
        TS,
        datetime.timedelta(hours=2),
        "startup",
    )
    assert (fourth.seq, fourth.event, fourth.ts, fourth.origin) == (6, "deleted", TS, "rescan")


# ---------------------------------------------------------------------------
# Fuzzing: the parsers raise nothing but ProtocolError.
# ---------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Valid events, and valid events with one field broken or removed, so that the
# fuzzer reaches every check of _parse_event instead of stopping at the first one.
timestamps = st.builds(
    lambda when, minutes: when.replace(tzinfo=datetime.timezone(datetime.timedelta(minutes=minutes))).isoformat(),
    st.datetimes(),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
paths = st.text(st.characters() | st.characters(categories=["Cs"]) | st.sampled_from("\x1b\n\u202e\\"), max_size=30)
good_paths = st.text(st.characters() | st.sampled_from("\x1b\n\u202e\\"), max_size=30)
base64_texts = st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())
DELETE = object()


def build_event(kind: str, origin: str | None, b64: tuple[str | None, str | None], **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event": kind, **fields}
    if kind != "moved":
        del event["dest_path"]
    if origin is not None:
        event["origin"] = origin
    for key, value in zip(("path_b64", "dest_path_b64"), b64, strict=True):
        if value is not None:
            event[key] = value
    return event


valid_events = st.builds(
    build_event,
    kind=st.sampled_from(["created", "modified", "deleted", "moved"]),
    origin=st.sampled_from([None, "live", "rescan", "startup"]),
    b64=st.tuples(st.none() | base64_texts, st.none() | base64_texts),
    seq=st.integers(min_value=1, max_value=2**53),
    is_dir=st.booleans(),
    ts=timestamps | st.just(TS_TEXT),
    path=good_paths,
    dest_path=good_paths,
)
EVENT_KEYS = ["seq", "event", "origin", "is_dir", "ts", "path", "dest_path", "path_b64", "dest_path_b64"]


def break_event(event: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    broken = {k: v for k, v in event.items() if k != key}
    if value is not DELETE:
        broken[key] = value
    return broken


event_like = valid_events | st.builds(
    break_event,
    valid_events,
    st.sampled_from(EVENT_KEYS),
    st.just(DELETE) | paths | json_values | st.integers() | st.sampled_from(["moved", "x", "2024-05-06"]),
)


def renumber(batch: list[dict[str, Any]], in_order: bool) -> list[dict[str, Any]]:
    if in_order:
        return [{**event, "seq": seq} if "seq" in event else event for seq, event in enumerate(batch, start=1)]
    return batch


event_batches = st.builds(renumber, st.lists(event_like, min_size=1, max_size=4), st.booleans())
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["events", "hello"]) | json_values},
    optional={
        "events": st.lists(event_like, max_size=4) | json_values,
        "version": st.sampled_from([1, 1.0, True, 2]) | json_values,
        "client_id": paths | json_values,
        "name": paths | json_values,
        "root": paths | json_values,
    },
)
wire_texts = st.one_of(
    st.text(max_size=200),
    st.text(st.characters() | st.characters(categories=["Cs"]), max_size=50),
    json_values.map(json.dumps),
    message_like.map(json.dumps),
    message_like.map(lambda obj: json.dumps(obj)[: len(json.dumps(obj)) // 2]),  # truncated
    st.binary(max_size=50),
)


def check_parsers(servidor: ModuleType, text: str | bytes) -> list[Any]:
    """Run both parsers; return the events parse_events accepted (empty if rejected)."""
    events: list[Any] = []
    try:
        events = servidor.parse_events(text)
    except servidor.ProtocolError:
        pass
    else:
        assert isinstance(events, list) and events
        assert all(isinstance(ev, servidor.Event) for ev in events)
    try:
        hello = servidor.parse_hello(text)
    except servidor.ProtocolError:
        pass
    else:
        assert hello is None or isinstance(hello, servidor.Hello)
    return events


@FUZZ
@given(text=wire_texts)
def test_fuzz_parsers_raise_only_protocol_error(servidor: ModuleType, text: str | bytes) -> None:
    check_parsers(servidor, text)


@FUZZ
@given(batch=event_batches)
@example(batch=[fixed_event()])
@example(batch=[fixed_event(path_b64="é")])
def test_fuzz_event_batches(servidor: ModuleType, batch: list[dict[str, Any]]) -> None:
    check_parsers(servidor, json.dumps({"type": "events", "events": batch}))


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(ts=timestamps)
def test_fuzz_accepted_events_are_printable(servidor: ModuleType, ts: str) -> None:
    """Whatever parse_events accepts can be printed in both output modes (else the handler dies)."""
    message = events_message(fixed_event(ts=ts), fixed_event(seq=2, path="/w/bad_\\xff\u202e"))
    for ev in check_parsers(servidor, message):
        servidor.format_event("pc", ev)
        servidor.to_json_line(servidor.event_record("pc", "id", ev)).encode("utf-8")


@pytest.mark.parametrize(
    ("ts", "accepted"),
    [
        ("0001-01-01T00:00:00+01:00", False),  # year 0 in UTC
        ("9999-12-31T23:59:59-01:00", False),  # year 10000 in UTC
        ("0001-01-01T00:00:00+23:59", False),
        ("9999-12-31T23:59:59-23:59", False),
        # In range in UTC and in every local time zone (UTC-12 to UTC+14): shown, whatever TZ the test runs in.
        ("0001-01-01T00:00:00-23:59", True),
        ("9999-12-31T23:59:59+23:59", True),
    ],
)
def test_extreme_timestamps_are_refused_or_printable(servidor: ModuleType, ts: str, accepted: bool) -> None:
    """A ts that cannot be shown in local time is refused; one that can is accepted and printed
    (a ts accepted but not printable would kill the handler)."""
    message = events_message(fixed_event(ts=ts))
    if not accepted:
        with pytest.raises(servidor.ProtocolError, match="^campo 'ts' fora do intervalo$"):
            servidor.parse_events(message)
        return
    [ev] = servidor.parse_events(message)
    line = servidor.format_event("pc", ev)
    assert int(line.split("-", 1)[0]) == int(ts[:4]) and " [pc] arquivo " in line
    assert json.loads(servidor.to_json_line(servidor.event_record("pc", "id", ev)))["ts"][:4] == ts[:4]


# ---------------------------------------------------------------------------
# escape (identical in both scripts).
# ---------------------------------------------------------------------------

ESCAPES = [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("a\rb", "a\\rb"),
    ("a\nb", "a\\nb"),
    ("a\tb", "a\\tb"),
    ("\x00", "\\x00"),
    ("\x07\x08\x0b\x0c", "\\x07\\x08\\x0b\\x0c"),
    ("\x7f", "\\x7f"),
    ("\x9b2J", "\\x9b2J"),
    ("\x80\x85\x9f", "\\x80\\x85\\x9f"),
    ("abc\u202etxt.exe", "abc\\u202etxt.exe"),
    ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("\u2066x\u2067y\u2068z\u2069", "\\u2066x\\u2067y\\u2068z\\u2069"),
    ("\u061c\u200e\u200f", "\\u061c\\u200e\\u200f"),
    ("/w/\u2028x\u2029", "/w/\\u2028x\\u2029"),  # line and paragraph separators break the line
    ("bad_\udcff", "bad_\\xff"),
    ("\udc80\udce9", "\\x80\\xe9"),
    ("\ud800", "\\ud800"),
    ("\udfff", "\\udfff"),
    ("\udc7f\udc00", "\\udc7f\\udc00"),
    ("\ud83d\ude00", "\\ud83d\\ude00"),  # a surrogate pair in a str is still two lone surrogates
]
UNCHANGED = [
    "",
    "plain.txt",
    "ação é ü ñ 日本語",
    "😀 🇧🇷",
    '"><img src=x onerror=alert(1)>.txt',
    "C:\\dir\\x1b",
    "\xa0nbsp \u00ad soft hyphen \u200b zwsp",
]


@pytest.fixture(params=["servidor", "cliente"])
def script(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.getfixturevalue(request.param)
    return module


@pytest.mark.parametrize(("text", "expected"), ESCAPES)
def test_escape(script: ModuleType, text: str, expected: str) -> None:
    assert script.escape(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_escape_keeps_normal_text(script: ModuleType, text: str) -> None:
    assert script.escape(text) == text


unicode_text = st.text(
    st.characters()
    | st.characters(categories=["Cs"])
    | st.characters(max_codepoint=0xFF)
    | st.sampled_from([chr(c) for c in sorted(UNSAFE) if c < 0xD800])
)


@FUZZ
@given(text=unicode_text)
def test_escape_output_is_safe_and_identical(servidor: ModuleType, cliente: ModuleType, text: str) -> None:
    escaped = servidor.escape(text)
    assert cliente.escape(text) == escaped
    assert not [c for c in escaped if ord(c) in UNSAFE]
    escaped.encode("utf-8")  # printable on any UTF-8 terminal
    if not any(ord(c) in UNSAFE for c in text):
        assert escaped == text


# ---------------------------------------------------------------------------
# Server output formatting.
# ---------------------------------------------------------------------------


def make_event(servidor: ModuleType, kind: str, path: str, is_dir: bool, **kw: Any) -> Any:
    return servidor.Event(seq=kw.pop("seq", 1), event=kind, path=path, is_dir=is_dir, ts=TS, **kw)


@pytest.mark.parametrize(
    ("client", "kind", "path", "is_dir", "extra", "expected"),
    [
        ("pc", "created", "/w/a.txt", False, {}, "[pc] arquivo criado: /w/a.txt"),
        ("pc", "created", "/w/d", True, {}, "[pc] diretório criado: /w/d"),
        ("pc", "modified", "/w/a.txt", False, {}, "[pc] arquivo modificado: /w/a.txt"),
        ("pc", "modified", "/w/d", True, {}, "[pc] diretório modificado: /w/d"),
        ("pc", "deleted", "/w/a.txt", False, {}, "[pc] arquivo excluído: /w/a.txt"),
        ("pc", "deleted", "/w/d", True, {}, "[pc] diretório excluído: /w/d"),
        ("pc", "moved", "/w/a", False, {"dest_path": "/w/b"}, "[pc] arquivo movido: /w/a -> /w/b"),
        ("pc", "moved", "/w/d", True, {"dest_path": "/x/d"}, "[pc] diretório movido: /w/d -> /x/d"),
        ("pc", "created", "/w/a", False, {"origin": "rescan"}, "[pc] arquivo criado: /w/a (varredura)"),
        ("pc", "deleted", "/w/d", True, {"origin": "startup"}, "[pc] diretório excluído: /w/d (varredura inicial)"),
        (
            "pc",
            "moved",
            "/w/a",
            False,
            {"dest_path": "/w/b", "origin": "rescan"},
            "[pc] arquivo movido: /w/a -> /w/b (varredura)",
        ),
        (
            "pc\x1b[2J",
            "moved",
            "/w/\u202eevil\n.txt",
            False,
            {"dest_path": "/w/\x9b\tx"},
            "[pc\\x1b[2J] arquivo movido: /w/\\u202eevil\\n.txt -> /w/\\x9b\\tx",
        ),
        (
            "mesa-ção",
            "created",
            '/w/"><img src=x onerror=alert(1)>.txt',
            False,
            {"path_b64": "AA=="},
            '[mesa-ção] arquivo criado: /w/"><img src=x onerror=alert(1)>.txt',
        ),
        ("", "created", "/w/bad_\\xff", False, {}, "[] arquivo criado: /w/bad_\\xff"),
    ],
)
def test_format_event(
    servidor: ModuleType, client: str, kind: str, path: str, is_dir: bool, extra: dict[str, Any], expected: str
) -> None:
    ev = make_event(servidor, kind, path, is_dir, **extra)
    assert servidor.format_event(client, ev) == f"{LOCAL} {expected}"


def test_format_event_uses_local_time_of_any_offset(servidor: ModuleType) -> None:
    ts = datetime.datetime(2024, 5, 6, 9, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    ev = servidor.Event(seq=1, event="created", path="/a", is_dir=False, ts=ts)
    assert servidor.local_time(ts) == LOCAL
    assert servidor.format_event("pc", ev) == f"{LOCAL} [pc] arquivo criado: /a"


def test_event_record_minimal(servidor: ModuleType) -> None:
    record = servidor.event_record("pc", "id1", make_event(servidor, "created", "/w/a", False))
    assert record == {
        "client": "pc",
        "client_id": "id1",
        "seq": 1,
        "event": "created",
        "path": "/w/a",
        "is_dir": False,
        "ts": TS_TEXT,
        "origin": "live",
    }
    assert list(record) == ["client", "client_id", "seq", "event", "path", "is_dir", "ts", "origin"]


def test_event_record_full(servidor: ModuleType) -> None:
    ts = datetime.datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    ev = servidor.Event(
        seq=9,
        event="moved",
        path="/w/bad_\\xff",
        is_dir=True,
        ts=ts,
        origin="rescan",
        dest_path="/w/ação",
        path_b64="L3cvYmFkX/8=",
        dest_path_b64="AA==",
    )
    record = servidor.event_record("pc\n", "id\x1b", ev)
    assert record == {
        "client": "pc\n",
        "client_id": "id\x1b",
        "seq": 9,
        "event": "moved",
        "path": "/w/bad_\\xff",
        "dest_path": "/w/ação",
        "is_dir": True,
        "ts": "2024-05-06T09:08:09.123+02:00",
        "origin": "rescan",
        "path_b64": "L3cvYmFkX/8=",
        "dest_path_b64": "AA==",
    }
    assert list(record) == [
        "client",
        "client_id",
        "seq",
        "event",
        "path",
        "dest_path",
        "is_dir",
        "ts",
        "origin",
        "path_b64",
        "dest_path_b64",
    ]
    line = servidor.to_json_line(record)
    assert "\n" not in line
    assert json.loads(line) == record
    assert line.startswith('{"client": "pc\\n", "client_id": "id\\u001b", "seq": 9, "event": "moved"')
    assert '"dest_path": "/w/ação"' in line


printed_text = st.text(
    st.characters(blacklist_categories=["Cs"])
    | st.characters(max_codepoint=0xFF)
    | st.sampled_from([chr(c) for c in sorted(UNSAFE) if c < 0xD800] + ['"', "\\", "/", "\u2028"])
)


@FUZZ
@given(
    client=printed_text,
    client_id=printed_text,
    seq=st.integers(0, 2**53),
    kind=st.sampled_from(["created", "modified", "deleted", "moved"]),
    path=printed_text,
    dest_path=st.none() | printed_text,
    is_dir=st.booleans(),
    ts=st.datetimes(timezones=st.timezones() | st.just(datetime.UTC)),
    origin=st.sampled_from(["live", "rescan", "startup", "resync"]),
    path_b64=st.none() | printed_text,
    dest_path_b64=st.none() | printed_text,
    metadata=st.fixed_dictionaries(
        {},
        optional={  # protocol 3's keys (tests/test_metadata.py), any of them known or not
            "type": st.sampled_from(["file", "dir", "symlink", "other"]),
            "size": st.integers(0, 2**63),
            "mtime": st.datetimes(timezones=st.timezones() | st.just(datetime.UTC)),
            "mode": printed_text,
            "target_path": printed_text,
            "target_path_b64": printed_text,
            "sha256": printed_text,
            "attrib": st.booleans(),
        },
    ),
)
@example(
    client="a\x7f", client_id="\u202e", seq=0, kind="moved", path="\x00\"\\\n", dest_path="\u2028",
    is_dir=True, ts=TS, origin="resync", path_b64="", dest_path_b64="", metadata={},
)  # fmt: skip
@example(
    client="pc", client_id="id", seq=1, kind="created", path="/w/a\x7f", dest_path=None,
    is_dir=False, ts=TS, origin="live", path_b64=None, dest_path_b64=None, metadata={},
)  # fmt: skip
@example(
    client="pc", client_id="id", seq=1, kind="modified", path="/w/l", dest_path=None, is_dir=False, ts=TS,
    origin="live", path_b64=None, dest_path_b64=None,
    metadata={"type": "symlink", "size": 2**63, "mtime": TS, "mode": "0777", "target_path": "\u202e\x1b\"",
              "target_path_b64": "\x7f", "sha256": "\u2028", "attrib": True},
)  # fmt: skip
def test_fuzz_event_lines_equal_json_dumps(
    servidor: ModuleType,
    client: str,
    client_id: str,
    seq: int,
    kind: str,
    path: str,
    dest_path: str | None,
    is_dir: bool,
    ts: datetime.datetime,
    origin: str,
    path_b64: str | None,
    dest_path_b64: str | None,
    metadata: dict[str, Any],
) -> None:
    """The --json fast path prints exactly what json.dumps of the event's record prints, whatever the text."""
    events = [
        servidor.Event(seq, kind, path, is_dir, ts, origin, dest_path, path_b64, dest_path_b64, **metadata),
        servidor.Event(seq + 1, "created", "/w/plain", False, TS),
    ]
    expected = [servidor.to_json_line(servidor.event_record(client, client_id, ev)) for ev in events]
    assert servidor.event_lines(client, client_id, events) == expected


def test_format_text_message(servidor: ModuleType) -> None:
    assert servidor.format_text_message("127.0.0.1:5000", "olá\x1b[2J\n", TS) == (
        f"{LOCAL} [127.0.0.1:5000] mensagem: olá\\x1b[2J\\n"
    )
    assert servidor.format_text_message("[::1]:5\r", b"\x00\x01\x02", TS) == (
        f"{LOCAL} [[::1]:5\\r] mensagem: <3 bytes binários>"
    )
    assert servidor.format_text_message("p", b"", TS) == f"{LOCAL} [p] mensagem: <0 bytes binários>"


def test_text_record(servidor: ModuleType) -> None:
    record = servidor.text_record("127.0.0.1:5000", "olá\x1b", TS)
    assert record == {
        "client": "127.0.0.1:5000",
        "client_id": None,
        "event": "message",
        "text": "olá\x1b",
        "ts": TS_TEXT,
    }
    assert list(record) == ["client", "client_id", "event", "text", "ts"]
    record = servidor.text_record("127.0.0.1:5000", b"\x00\x01\x02\xff", TS)
    assert record == {
        "client": "127.0.0.1:5000",
        "client_id": None,
        "event": "message",
        "text": None,
        "data_b64": "AAEC/w==",
        "ts": TS_TEXT,
    }
    assert list(record) == ["client", "client_id", "event", "text", "data_b64", "ts"]


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("localhost", 8765, "ws://localhost:8765"),
        ("::1", 1, "ws://[::1]:1"),
        ("0.0.0.0", 0, "ws://0.0.0.0:0"),
        ("192.0.2.10", 8765, "ws://192.0.2.10:8765"),
        ("fe80::1%eth0", 80, "ws://[fe80::1%eth0]:80"),
    ],
)
def test_format_address(servidor: ModuleType, host: str, port: int, expected: str) -> None:
    assert servidor.format_address(host, port) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (("127.0.0.1", 5000), "127.0.0.1:5000"),
        (("::1", 5000, 0, 0), "[::1]:5000"),
        ("/run/sock", "/run/sock"),
        (None, "None"),
    ],
)
def test_format_peer(servidor: ModuleType, address: Any, expected: str) -> None:
    assert servidor.format_peer(address) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            OSError(errno.EADDRINUSE, "Address already in use"),
            "a porta 8765 já está em uso em localhost; feche o outro programa ou use --port",
        ),
        (
            OSError(errno.EACCES, "Permission denied"),
            "sem permissão para usar a porta 8765; use uma porta acima de 1023",
        ),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "o endereço localhost não pertence a esta máquina"),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "endereço inválido: 'localhost' (nome não encontrado)",
        ),
        (
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            "não foi possível escutar em localhost:8765: rede inalcançável",
        ),
        (OSError("boom"), "não foi possível escutar em localhost:8765: boom"),
    ],
)
def test_describe_bind_error(servidor: ModuleType, exc: OSError, expected: str) -> None:
    assert servidor.describe_bind_error(exc, "localhost", 8765) == expected


def test_describe_bind_error_in_use_mentions_port(servidor: ModuleType) -> None:
    message = servidor.describe_bind_error(OSError(errno.EADDRINUSE, "in use"), "0.0.0.0", 9123)
    assert "9123" in message
    assert "--port" in message


# ---------------------------------------------------------------------------
# Server: the handshake checks (moved from test_hostile.py: pure, like the rest here).
# ---------------------------------------------------------------------------

TOKEN = "s3cr3t"
HOST = f"{LOOPBACK}:8765"
ORIGIN_403 = (403, "origem não permitida")
TOKEN_401 = (401, "token ausente ou inválido")


@pytest.mark.parametrize(
    ("headers", "token", "expected"),
    [
        pytest.param({}, "", None, id="nada-sem-token"),
        pytest.param({"Host": HOST}, "", None, id="host-sem-token"),
        pytest.param({"Host": HOST}, TOKEN, TOKEN_401, id="sem-authorization"),
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, TOKEN, None, id="token-certo"),
        pytest.param({"authorization": f"Bearer {TOKEN}"}, TOKEN, None, id="nome-do-header-minusculo"),
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, "", None, id="token-sem-servidor-pedir"),
        pytest.param({"Authorization": "Bearer errado"}, TOKEN, TOKEN_401, id="token-errado"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, TOKEN, TOKEN_401, id="token-mais-longo"),
        pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, TOKEN, TOKEN_401, id="prefixo-do-token"),
        pytest.param({"Authorization": "Bearer "}, TOKEN, TOKEN_401, id="token-vazio"),
        pytest.param({"Authorization": TOKEN}, TOKEN, TOKEN_401, id="sem-esquema"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, TOKEN, TOKEN_401, id="outro-esquema"),
        pytest.param({"Authorization": f"Bearer  {TOKEN}"}, TOKEN, TOKEN_401, id="dois-espacos"),
        pytest.param({"Authorization": f"Bearer {TOKEN.upper()}"}, TOKEN, TOKEN_401, id="maiusculas"),
        pytest.param({"Authorization": "Bearer s\xe9nha"}, "sénha", None, id="token-latin1"),
        pytest.param({"Authorization": "Bearer senha"}, "sénha", TOKEN_401, id="sem-acento"),
        pytest.param({"Host": HOST, "Origin": f"http://{HOST}"}, "", None, id="mesma-origem"),
        pytest.param({"Host": HOST, "Origin": f"https://{HOST}"}, "", None, id="mesma-origem-https"),
        pytest.param({"Host": "LocalHost:8765", "Origin": "http://localhost:8765"}, "", None, id="maiusculas-host"),
        pytest.param({"Host": HOST, "Origin": "http://evil.example"}, "", ORIGIN_403, id="origem-alheia"),
        pytest.param({"Host": HOST, "Origin": f"http://{LOOPBACK}:8766"}, "", ORIGIN_403, id="outra-porta"),
        pytest.param({"Host": HOST, "Origin": f"http://{HOST}.evil.example"}, "", ORIGIN_403, id="sufixo"),
        pytest.param({"Host": HOST, "Origin": f"http://user@{HOST}"}, "", ORIGIN_403, id="userinfo"),
        pytest.param({"Host": HOST, "Origin": "null"}, "", ORIGIN_403, id="origem-null"),
        pytest.param({"Host": HOST, "Origin": "http://[::1"}, "", ORIGIN_403, id="origem-malformada"),
        pytest.param({"Host": HOST, "Origin": "http://[zz]:80"}, "", ORIGIN_403, id="ipv6-invalido"),
        pytest.param({"Origin": f"http://{HOST}"}, "", ORIGIN_403, id="origem-sem-host"),
        pytest.param(
            {"Host": HOST, "Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"},
            TOKEN,
            ORIGIN_403,
            id="origem-alheia-com-token-certo",
        ),
        pytest.param({"Host": HOST, "Origin": "http://evil.example"}, TOKEN, ORIGIN_403, id="origem-antes-do-token"),
        pytest.param(
            {"Host": HOST, "Origin": f"http://{HOST}", "Authorization": "Bearer x"},
            TOKEN,
            TOKEN_401,
            id="mesma-origem-token-errado",
        ),
        pytest.param(
            {"Host": HOST, "Origin": f"http://{HOST}", "Authorization": f"Bearer {TOKEN}"},
            TOKEN,
            None,
            id="mesma-origem-token-certo",
        ),
    ],
)
def test_check_request(
    servidor: ModuleType, headers: dict[str, str], token: str, expected: tuple[int, str] | None
) -> None:
    assert servidor.check_request(Headers(headers), token) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.5.5.5", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("example.com", False),
        ("192.0.2.10", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.evil.example", False),
    ],
)
def test_is_loopback(servidor: ModuleType, host: str, expected: bool) -> None:
    assert servidor.is_loopback(host) is expected


# ---------------------------------------------------------------------------
# Client: watchdog events, console lines.
# ---------------------------------------------------------------------------

WHEN = datetime.datetime(2024, 5, 6, 7, 8, 9, 999999)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("created", "/w/a.txt", False, None), "2024-05-06 07:08:09 arquivo criado: /w/a.txt"),
        (("created", "/w/d", True, None), "2024-05-06 07:08:09 diretório criado: /w/d"),
        (("modified", "/w/a.txt", False, None), "2024-05-06 07:08:09 arquivo modificado: /w/a.txt"),
        (("deleted", "/w/a.txt", False, None), "2024-05-06 07:08:09 arquivo excluído: /w/a.txt"),
        (("deleted", "/w/d", True, None), "2024-05-06 07:08:09 diretório excluído: /w/d"),
        (("moved", "/w/a", False, "/w/b"), "2024-05-06 07:08:09 arquivo movido: /w/a -> /w/b"),
        (("moved", "/w/d", True, "/x/d"), "2024-05-06 07:08:09 diretório movido: /w/d -> /x/d"),
        (
            ("moved", "/w/bad_\udcff\x1b[2J", False, "/w/\u202e\n"),
            "2024-05-06 07:08:09 arquivo movido: /w/bad_\\xff\\x1b[2J -> /w/\\u202e\\n",
        ),
        (("created", "/w/ação 😀", False, None), "2024-05-06 07:08:09 arquivo criado: /w/ação 😀"),
        (("created", "/w/a", False, None, "rescan"), "2024-05-06 07:08:09 arquivo criado: /w/a (varredura)"),
        (
            ("deleted", "/w/d", True, None, "startup"),
            "2024-05-06 07:08:09 diretório excluído: /w/d (varredura inicial)",
        ),
        (("moved", "/w/a", False, "/w/b", "live"), "2024-05-06 07:08:09 arquivo movido: /w/a -> /w/b"),
        (
            ("moved", "/w/a", False, "/w/b", "rescan"),
            "2024-05-06 07:08:09 arquivo movido: /w/a -> /w/b (varredura)",
        ),
    ],
)
def test_format_changes(cliente: ModuleType, change: tuple[Any, ...], expected: str) -> None:
    assert cliente.format_changes([cliente.Change(*change)], WHEN) == expected + "\n"


def test_format_change_keeps_the_given_timezone(cliente: ModuleType) -> None:
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=-3)))
    assert (
        cliente.format_changes([cliente.Change("created", "/a", False)], when)
        == "2024-05-06 07:08:09 arquivo criado: /a\n"
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (wd.FileCreatedEvent("/a"), ("created", "/a", False, None)),
        (wd.DirCreatedEvent("/d"), ("created", "/d", True, None)),
        (wd.FileModifiedEvent("/a"), ("modified", "/a", False, None)),
        (wd.DirModifiedEvent("/d"), None),
        (wd.FileDeletedEvent("/a"), ("deleted", "/a", False, None)),
        (wd.DirDeletedEvent("/d"), ("deleted", "/d", True, None)),
        (wd.FileMovedEvent("/a", "/b"), ("moved", "/a", False, "/b")),
        (wd.DirMovedEvent("/d", "/e"), ("moved", "/d", True, "/e")),
        (wd.DirMovedEvent("/d/sub", "/e/sub", is_synthetic=True), None),
        (wd.FileMovedEvent("/d/f", "/e/f", is_synthetic=True), None),
        (wd.FileOpenedEvent("/a"), None),
        (wd.FileClosedEvent("/a"), None),
        (wd.FileClosedNoWriteEvent("/a"), None),
        (wd.FileAttribEvent("/a"), ("modified", "/a", False, None, "live", True)),
        (wd.DirAttribEvent("/d"), None),
        (wd.FileCreatedEvent(b"/tmp/bad_\xff"), ("created", "/tmp/bad_\udcff", False, None)),
        (wd.FileMovedEvent(b"/tmp/a", b"/tmp/b\xfe"), ("moved", "/tmp/a", False, "/tmp/b\udcfe")),
        (wd.FileCreatedEvent("/tmp/ação"), ("created", "/tmp/ação", False, None)),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, wd.FileSystemEvent) else None,
)
def test_change_from_event(cliente: ModuleType, event: wd.FileSystemEvent, expected: tuple[Any, ...] | None) -> None:
    change = cliente.change_from_event(event)
    if expected is None:
        assert change is None
    else:
        assert change == cliente.Change(*expected)


# ---------------------------------------------------------------------------
# Client: the Outbox.
# ---------------------------------------------------------------------------


def change(cliente: ModuleType, kind: str, path: str, dest: str | None = None, is_dir: bool = False) -> Any:
    return cliente.Change(kind, path, is_dir, dest)


def seqs(items: list[Any]) -> list[int]:
    return [item.seq for item in items]


def test_outbox_numbers_from_one(cliente: ModuleType) -> None:
    async def scenario() -> None:
        box = cliente.Outbox()
        changes = [
            cliente.Change("created", "/w/a", False, origin="rescan"),
            cliente.Change("deleted", "/w/b", True, origin="startup"),
            cliente.Change("moved", "/w/c", False, "/w/d"),
        ]
        assert [box.add(c, TS_TEXT) for c in changes] == [True, True, True]
        assert box.next_seq == 4
        assert box.pending() == 3
        batch = await box.next_batch()
        assert seqs(batch) == [1, 2, 3]
        assert [item.path for item in batch] == ["/w/a", "/w/b", "/w/c"]
        assert [item.data for item in batch] == [
            cliente.encode_event(seq, c, TS_TEXT) for seq, c in enumerate(changes, start=1)
        ]
        assert box.add(change(cliente, "created", "/w/e"), TS_TEXT) is True
        assert seqs(await box.next_batch()) == [4]
        assert seqs(list(box.in_flight)) == [1, 2, 3, 4]

    run(scenario())


def test_outbox_folds_modified_until_sent(cliente: ModuleType) -> None:
    async def scenario() -> None:
        box = cliente.Outbox()
        assert box.add(change(cliente, "created", "/w/a"), TS_TEXT) is True  # 1
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is False
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is False
        assert box.add(change(cliente, "modified", "/w/b"), TS_TEXT) is True  # 2
        assert box.add(change(cliente, "modified", "/w/b"), TS_TEXT) is False
        assert box.add(change(cliente, "created", "/w/b"), TS_TEXT) is True  # 3: never folded
        assert box.pending() == 3
        assert box.next_seq == 4
        assert seqs(await box.next_batch()) == [1, 2, 3]
        # Taken by next_batch: a new write is news again.
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is True  # 4
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is False
        assert box.add(change(cliente, "modified", "/w/b"), TS_TEXT) is True  # 5
        assert box.pending() == 5
        batch = await box.next_batch()
        assert seqs(batch) == [4, 5]
        assert [json.loads(item.data)["event"] for item in batch] == ["modified", "modified"]

    run(scenario())


def test_outbox_delete_and_move_end_folding(cliente: ModuleType) -> None:
    async def scenario() -> None:
        box = cliente.Outbox()
        assert box.add(change(cliente, "created", "/w/a"), TS_TEXT) is True  # 1
        assert box.add(change(cliente, "deleted", "/w/a"), TS_TEXT) is True  # 2
        assert box.add(change(cliente, "deleted", "/w/a"), TS_TEXT) is True  # 3: deletes are never folded
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is True  # 4
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is False
        # A move ends the folding for its source and its destination.
        assert box.add(change(cliente, "created", "/w/dst"), TS_TEXT) is True  # 5
        assert box.add(change(cliente, "moved", "/w/a", "/w/dst"), TS_TEXT) is True  # 6
        assert box.add(change(cliente, "modified", "/w/a"), TS_TEXT) is True  # 7
        assert box.add(change(cliente, "modified", "/w/dst"), TS_TEXT) is True  # 8
        assert box.add(change(cliente, "modified", "/w/dst"), TS_TEXT) is False
        assert box.pending() == 8
        batch = await box.next_batch()
        assert [(item.seq, json.loads(item.data)["event"]) for item in batch] == [
            (1, "created"),
            (2, "deleted"),
            (3, "deleted"),
            (4, "modified"),
            (5, "created"),
            (6, "moved"),
            (7, "modified"),
            (8, "modified"),
        ]
        # After a batch that held an older event of the path, the newer queued one still folds.
        assert box.add(change(cliente, "created", "/w/n"), TS_TEXT) is True  # 9
        assert box.add(change(cliente, "deleted", "/w/n"), TS_TEXT) is True  # 10
        assert box.add(change(cliente, "created", "/w/n"), TS_TEXT) is True  # 11
        assert box.add(change(cliente, "modified", "/w/n"), TS_TEXT) is False
        assert seqs(await box.next_batch()) == [9, 10, 11]
        assert box.add(change(cliente, "modified", "/w/n"), TS_TEXT) is True  # 12

    run(scenario())


def test_outbox_limit(cliente: ModuleType) -> None:
    async def scenario() -> None:
        box = cliente.Outbox(limit=2)
        assert not box.full()
        box.add(change(cliente, "created", "/w/a"), TS_TEXT)
        assert not box.full()
        box.add(change(cliente, "created", "/w/b"), TS_TEXT)
        assert box.full()
        assert seqs(await box.next_batch()) == [1, 2]
        assert not box.full()  # in flight does not count: only what waits to be sent
        assert cliente.Outbox().limit == cliente.MAX_QUEUED_EVENTS

    run(scenario())


def test_outbox_batch_max_events(cliente: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cliente, "BATCH_MAX_EVENTS", 3)

    async def scenario() -> None:
        box = cliente.Outbox()
        for i in range(7):
            assert box.add(change(cliente, "created", f"/w/{i}"), TS_TEXT) is True
        assert [seqs(await box.next_batch()) for _ in range(3)] == [[1, 2, 3], [4, 5, 6], [7]]
        assert box.waiting() == 0
        assert box.pending() == 7

    run(scenario())


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (lambda size: 2 * size, [[1, 2], [3, 4], [5]]),  # exactly two fit
        (lambda size: 2 * size + size // 2, [[1, 2], [3, 4], [5]]),
        (lambda size: 2 * size - 1, [[1], [2], [3], [4], [5]]),
        (lambda size: 3 * size, [[1, 2, 3], [4, 5]]),
        (lambda size: 10, [[1], [2], [3], [4], [5]]),  # larger than the limit: sent alone
    ],
)
def test_outbox_batch_max_bytes(
    cliente: ModuleType, monkeypatch: pytest.MonkeyPatch, limit: Callable[[int], int], expected: list[list[int]]
) -> None:
    size = len(cliente.encode_event(1, change(cliente, "created", "/w/0"), TS_TEXT))
    monkeypatch.setattr(cliente, "BATCH_MAX_BYTES", limit(size))

    async def scenario() -> None:
        box = cliente.Outbox()
        for i in range(5):
            box.add(change(cliente, "created", f"/w/{i}"), TS_TEXT)
        batches = [await box.next_batch() for _ in expected]
        assert [seqs(batch) for batch in batches] == expected
        assert all(len(item.data) == size for batch in batches for item in batch)
        for batch in batches:
            assert len(batch) == 1 or sum(len(item.data) for item in batch) <= cliente.BATCH_MAX_BYTES
        assert box.waiting() == 0
        # The same limits split what is still in flight for a resend.
        assert [seqs(batch) for batch in box.unacked_batches()] == expected

    run(scenario())


def test_outbox_ack(cliente: ModuleType) -> None:
    async def scenario() -> None:
        box = cliente.Outbox()
        for i in range(5):
            box.add(change(cliente, "created", f"/w/{i}"), TS_TEXT)
        await box.next_batch()
        box.progress.clear()
        box.ack(3)
        assert seqs(list(box.in_flight)) == [4, 5]
        assert box.acked_seq == 3
        assert box.progress.is_set()
        assert box.pending() == 2
        box.ack(2)  # an old ack changes nothing
        assert seqs(list(box.in_flight)) == [4, 5]
        assert box.acked_seq == 3
        box.ack(0)
        assert box.acked_seq == 3
        box.ack(10)
        assert list(box.in_flight) == []
        assert box.acked_seq == 10
        assert box.pending() == 0

    run(scenario())


def test_outbox_unacked_batches(cliente: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cliente, "BATCH_MAX_EVENTS", 2)

    async def scenario() -> None:
        box = cliente.Outbox()
        assert box.unacked_batches() == []
        for i in range(7):
            box.add(change(cliente, "created", f"/w/{i}"), TS_TEXT)
        assert [seqs(await box.next_batch()) for _ in range(3)] == [[1, 2], [3, 4], [5, 6]]
        box.ack(1)
        batches = box.unacked_batches()
        assert [seqs(batch) for batch in batches] == [[2, 3], [4, 5], [6]]
        assert [item for batch in batches for item in batch] == list(box.in_flight)
        assert box.pending() == 6  # 5 in flight + 1 queued
        monkeypatch.setattr(cliente, "BATCH_MAX_EVENTS", 1000)
        assert [seqs(batch) for batch in box.unacked_batches()] == [[2, 3, 4, 5, 6]]
        box.ack(6)
        assert box.unacked_batches() == []
        assert box.pending() == 1

    run(scenario())


def test_outbox_unacked_batches_by_bytes(cliente: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        box = cliente.Outbox()
        for path in ["/w/a", "/w/bbbbbbbbbbbbbbbbbbbb", "/w/c", "/w/d", "/w/eeeeeeeeeeeeeeeeeeee", "/w/f"]:
            box.add(change(cliente, "created", path), TS_TEXT)
        items = await box.next_batch()
        short, long = len(items[0].data), len(items[1].data)
        assert long == short + 19
        monkeypatch.setattr(cliente, "BATCH_MAX_BYTES", short + long)
        assert [seqs(batch) for batch in box.unacked_batches()] == [[1, 2], [3, 4], [5, 6]]
        monkeypatch.setattr(cliente, "BATCH_MAX_BYTES", 2 * short)
        assert [seqs(batch) for batch in box.unacked_batches()] == [[1], [2], [3, 4], [5], [6]]
        monkeypatch.setattr(cliente, "BATCH_MAX_BYTES", 1)
        assert [seqs(batch) for batch in box.unacked_batches()] == [[1], [2], [3], [4], [5], [6]]

    run(scenario())


def test_outbox_waits_for_room_in_the_window(cliente: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cliente, "MAX_IN_FLIGHT", 2)
    monkeypatch.setattr(cliente, "BATCH_MAX_EVENTS", 2)

    async def scenario() -> None:
        box = cliente.Outbox()
        for i in range(3):
            box.add(change(cliente, "created", f"/w/{i}"), TS_TEXT)
        assert seqs(await box.next_batch()) == [1, 2]
        waiting = asyncio.create_task(box.next_batch())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        box.ack(1)
        assert seqs(await asyncio.wait_for(waiting, 5)) == [3]

    run(scenario())


# ---------------------------------------------------------------------------
# Client: server messages, settings validation, reconnection delays.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"type":"welcome","version":1,"ack":0}', ("welcome", 0, 1)),
        ('{"type":"welcome","version":2,"ack":17,"extra":null}', ("welcome", 17, 2)),
        ('{"type":"ack","seq":5}', ("ack", 5, 0)),
        (b'{"type":"ack","seq":5}', ("ack", 5, 0)),
        (' {"seq":9007199254740992,"type":"ack"} ', ("ack", 2**53, 0)),
        ('{"type":"verified","seq":3,"count":0,"sum":"0000000000000000"}', ("verified", 3, 0)),
        ('{"type":"resync","seq":0,"count":9,"sum":"ffffffffffffffff","x":1}', ("resync", 0, 0)),
    ],
)
def test_parse_server_message_accepts(
    cliente: ModuleType, message: str | bytes, expected: tuple[str, int, int]
) -> None:
    parsed = cliente.parse_server_message(message)
    assert (parsed.kind, parsed.seq, parsed.version) == expected


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param(b"\xff\xfe\x00", id="binary-garbage"),
        pytest.param("[]", id="array"),
        pytest.param('"ack"', id="string"),
        pytest.param("null", id="null"),
        pytest.param("[" * 100_000, id="deep"),
        pytest.param("{}", id="empty-object"),
        pytest.param('{"type":"ack"}', id="ack-without-seq"),
        pytest.param('{"type":"ack","seq":-1}', id="ack-negative"),
        pytest.param('{"type":"ack","seq":true}', id="ack-bool"),
        pytest.param('{"type":"ack","seq":false}', id="ack-false"),
        pytest.param('{"type":"ack","seq":1.0}', id="ack-float"),
        pytest.param('{"type":"ack","seq":"1"}', id="ack-string"),
        pytest.param('{"type":"ack","ack":1}', id="ack-wrong-key"),
        pytest.param('{"type":"welcome","version":1,"seq":0}', id="welcome-wrong-key"),
        pytest.param('{"type":"welcome","version":1,"ack":-5}', id="welcome-negative"),
        pytest.param('{"type":"welcome","version":1,"ack":true}', id="welcome-bool"),
        pytest.param('{"type":"welcome","version":4,"ack":0}', id="welcome-version-4"),
        pytest.param('{"type":"welcome","version":0,"ack":0}', id="welcome-version-0"),
        pytest.param('{"type":"welcome","version":"1","ack":0}', id="welcome-version-string"),
        pytest.param('{"type":"welcome","ack":0}', id="welcome-version-missing"),
        pytest.param('{"type":"welcome","version":true,"ack":0}', id="welcome-version-bool"),
        pytest.param('{"type":"hello","version":1,"seq":0}', id="other-type"),
        pytest.param('{"type":"events","seq":0}', id="events-type"),
        pytest.param('{"type":"verified","seq":1,"count":0}', id="verified-without-sum"),
        pytest.param('{"type":"verified","seq":1,"count":0,"sum":"0"}', id="verified-short-sum"),
        pytest.param('{"type":"resync","seq":1,"count":0,"sum":"000000000000000A"}', id="resync-uppercase-sum"),
        pytest.param('{"type":"resync","seq":1,"count":-1,"sum":"0000000000000000"}', id="resync-negative-count"),
        pytest.param('{"type":"resync","count":1,"sum":"0000000000000000"}', id="resync-without-seq"),
    ],
)
def test_parse_server_message_rejects(cliente: ModuleType, message: str | bytes) -> None:
    with pytest.raises(cliente.ProtocolError):
        cliente.parse_server_message(message)


@pytest.mark.parametrize(
    "uri", ["ws://localhost:8765", "wss://example.com/path?q=1", "ws://192.0.2.10:8765", "ws://[::1]:8765"]
)
def test_validate_uri_accepts(cliente: ModuleType, uri: str) -> None:
    assert cliente.validate_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    ["http://x", "localhost:8765", "", "ws://", "ftp://x/", "ws//localhost"],
)
def test_validate_uri_rejects(cliente: ModuleType, uri: str) -> None:
    with pytest.raises(cliente.FatalError) as info:
        cliente.validate_uri(uri)
    assert str(info.value) == f"URI do servidor inválida: {uri!r} (exemplo: ws://localhost:8765)"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("ws://localhost:0", "a porta 0 não serve para conectar"),
        ("ws://local host:1", "o nome do servidor tem espaço ou está vazio"),
        ("ws://ana:segredo@localhost:8765", "sem usuário e senha na URI; use MONITOR_TOKEN"),
        ("wss://ana@localhost:8765", "sem usuário e senha na URI; use MONITOR_TOKEN"),
    ],
)
def test_validate_uri_rejects_what_can_never_connect(cliente: ModuleType, uri: str, reason: str) -> None:
    with pytest.raises(cliente.FatalError) as info:
        cliente.validate_uri(uri)
    assert str(info.value) == f"URI do servidor inválida: {uri!r} ({reason})"


def test_validate_directory_ok(cliente: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cliente.validate_directory(str(tmp_path)) == str(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert cliente.validate_directory(".") == os.getcwd()
    assert cliente.validate_directory("sub") == os.path.join(os.getcwd(), "sub")
    assert cliente.validate_directory("sub/../sub/") == os.path.join(os.getcwd(), "sub")


def test_validate_directory_missing(cliente: ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(cliente.FatalError) as info:
        cliente.validate_directory(str(missing))
    assert str(info.value) == f"o diretório não existe: {missing}"


def test_validate_directory_file(cliente: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(cliente.FatalError) as info:
        cliente.validate_directory(str(path))
    assert str(info.value) == f"não é um diretório: {path}"


def test_validate_directory_escapes_hostile_name(cliente: ModuleType, tmp_path: Path) -> None:
    missing = os.path.join(str(tmp_path), "x\x1b[2J\udcff")
    with pytest.raises(cliente.FatalError) as info:
        cliente.validate_directory(missing)
    assert str(info.value) == f"o diretório não existe: {tmp_path}/x\\x1b[2J\\xff"


def test_redial_delay_backs_off_when_the_server_keeps_dropping_us(cliente: ModuleType) -> None:
    """Our own backoff for a server that accepts and drops us at once (websockets' restarts after each handshake)."""
    assert (cliente.RECONNECT_MIN_DELAY, cliente.RECONNECT_MAX_DELAY) == (0.5, 10.0)
    assert [cliente.redial_delay(drops) for drops in range(9)] == [0, 0, 0.5, 1, 2, 4, 8, 10, 10]
    assert cliente.redial_delay(5000) == 10.0  # no overflow, however long it goes on
