"""Monitora um diretório e envia cada mudança a um servidor WebSocket (servidor.py).

Uso:
    python monitor_cliente.py                          # directory_to_monitor -> SERVER_URI
    python monitor_cliente.py /srv/dados               # outro diretório
    python monitor_cliente.py --servidor ws://meu-servidor:8765
    MONITOR_TOKEN=segredo python monitor_cliente.py --servidor wss://servidor:8765 --cafile ca.pem

A watchdog Observer thread watches the tree; its handler only hands events to the
asyncio loop, which numbers them, prints them and streams them in batches over one
persistent WebSocket connection. Events stay in memory until the server
acknowledges them, so a server that is down, restarts or starts after the client
still receives every change once it is back.

The loop keeps a model of the tree as the server will see it (``View``). Whatever
can lose events -- the kernel's inotify queue overflowing, our own queue reaching
its limit, the watcher thread dying, the watched directory vanishing -- is repaired
the same way: scan the disk, diff it against the model, send the difference
(``origin: rescan``). A state file keeps the model between runs, so changes made
while the client was stopped are reported at start-up (``origin: startup``).

Only ``websockets``, ``watchdog`` and the standard library are needed: copy this
file, run ``pip install websockets watchdog`` and start it.
"""

from __future__ import annotations

__version__ = "1.0.0"

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import signal
import socket
import ssl
import stat
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import websockets.client  # backoff(), process_exception(): read when used, see missing_requirements()
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

# ---------------------------------------------------------------------------
# Settings: edit these, or override them with the command-line flags.
# ---------------------------------------------------------------------------

SERVER_URI = "ws://localhost:8765"  # e.g. "ws://meu-servidor:8765" for a server on another machine (see README)
directory_to_monitor = "."  # the directory to watch, recursively
CLIENT_NAME = ""  # how the server shows this client; empty: this machine's hostname
TOKEN = ""  # the server's shared secret, if it asks for one (prefer MONITOR_TOKEN)
TOKEN_ENV = "MONITOR_TOKEN"  # environment variable that overrides TOKEN (flags override both)
CA_FILE = ""  # CA certificate (PEM) that signed a wss:// server's certificate; "": the system's CAs
BATCH_MAX_EVENTS = 1000  # events per WebSocket message at most
BATCH_MAX_BYTES = 256 * 1024  # bytes per message at most (the server accepts 1 MiB)
MAX_IN_FLIGHT = 20_000  # events sent but not yet acknowledged before sending pauses
RECONNECT_MIN_DELAY = 0.5  # seconds before the first retry when the server is unreachable
RECONNECT_MAX_DELAY = 10.0  # seconds between retries at most
FLUSH_TIMEOUT = 5.0  # seconds to deliver what is pending when asked to stop
KEEPALIVE = 20.0  # seconds between pings, and without a pong before the connection counts as lost
OPEN_TIMEOUT = 10.0  # seconds to open a connection
MAX_QUEUED_EVENTS = 100_000  # events waiting to be sent at most; past it, a rescan replaces them
STATE_FILE = ""  # where the last snapshot is kept between runs; "": in ~/.cache/monitor_cliente/
CHECK_INTERVAL = 1.0  # seconds between checks that the watcher runs and the directory exists
CHECKPOINT_MIN_INTERVAL = 5.0  # seconds between two saves of the state file at least
RESCAN_SETTLE = 0.5  # after a kernel overflow, rescan once overflows stop for this long...
RESCAN_MAX_WAIT = 5.0  # ...but never later than this after the first one

PROTOCOL_VERSION = 1
REQUIRED = [("websockets", (17, 0)), ("watchdog", (7, 1))]  # what this script was written and tested against
# Close codes after which reconnecting would fail the same way.
FATAL_CLOSE_CODES = {1002: "erro de protocolo", 1003: "dados não suportados", 1008: "protocolo violado"}
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,  # directory "modified" only mirrors a child's change: noise
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]

log = logging.getLogger("monitor")

# ---------------------------------------------------------------------------
# Wire format (pure: no I/O). Documented in README.md, section "Protocolo".
# ---------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A message from the server that breaks the protocol."""


class FatalError(Exception):
    """The client must stop; str(exc) is the Portuguese message for the user."""


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """A change worth sending, taken from a watchdog event."""

    kind: str  # created | modified | deleted | moved
    path: str  # as watchdog gives it: undecodable bytes as surrogateescape
    is_dir: bool
    dest_path: str | None = None
    origin: str = "live"  # live (watchdog saw it) | rescan | startup (a scan found it)


def change_from_event(event: FileSystemEvent) -> Change | None:
    """Map a watchdog event to a Change, or None for events that are not sent."""
    kind = event.event_type
    if kind not in ("created", "modified", "deleted", "moved"):
        return None
    if kind == "modified" and event.is_directory:
        return None
    if kind == "moved" and event.is_synthetic:
        return None  # the children of a moved directory: the directory's move says it all
    dest = os.fsdecode(event.dest_path) if kind == "moved" else None
    return Change(kind, os.fsdecode(event.src_path), event.is_directory, dest)


def wire_path(path: str) -> tuple[str, str | None]:
    """A path as JSON text, plus its exact bytes in base64 when they are not UTF-8.

    watchdog hands undecodable names over with lone surrogates, which cannot be
    sent as UTF-8; the text then shows those bytes as ``\\xNN`` instead.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")
    return path, None


def encode_event(seq: int, change: Change, ts: str) -> str:
    """One event as a JSON object (text), ready to be joined into a batch."""
    path, path_b64 = wire_path(change.path)
    obj: dict[str, Any] = {"seq": seq, "event": change.kind, "path": path}
    if change.dest_path is not None:
        obj["dest_path"], dest_b64 = wire_path(change.dest_path)
        if dest_b64 is not None:
            obj["dest_path_b64"] = dest_b64
    if path_b64 is not None:
        obj["path_b64"] = path_b64
    obj["is_dir"] = change.is_dir
    obj["ts"] = ts
    obj["origin"] = change.origin
    # ASCII only, so len() is the size in bytes when sizing a batch.
    return json.dumps(obj, separators=(",", ":"))


def encode_batch(events: list[str]) -> str:
    return '{"type":"events","events":[' + ",".join(events) + "]}"


def encode_hello(client_id: str, name: str, root: str) -> str:
    return json.dumps(
        {"type": "hello", "version": PROTOCOL_VERSION, "client_id": client_id, "name": name, "root": root},
        ensure_ascii=False,
    )


def parse_server_message(text: str | bytes) -> tuple[str, int]:
    """Decode a ``welcome`` or ``ack`` from the server into (type, seq)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("mensagem do servidor não é JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("mensagem do servidor não é um objeto JSON")
    kind, key = obj.get("type"), ("ack" if obj.get("type") == "welcome" else "seq")
    seq = obj.get(key)
    if kind not in ("welcome", "ack") or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ProtocolError(f"mensagem inesperada do servidor: {str(text)[:80]!r}")
    if kind == "welcome" and (type(obj.get("version")) is not int or obj.get("version") != PROTOCOL_VERSION):
        raise ProtocolError(f"o servidor fala outra versão do protocolo: {obj.get('version')!r}")
    return kind, seq


# Characters that would move the cursor, recolour or reorder the terminal, or hide
# text: C0/C1 controls, DEL, bidi embeddings/overrides/isolates, lone surrogates.
_UNSAFE = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F]
_UNSAFE += [*range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _UNSAFE}
_ESCAPES |= {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
# Undecodable filename bytes arrive as surrogateescape (U+DC80..U+DCFF): show the byte.
_ESCAPES |= {0xDC00 + byte: f"\\x{byte:02x}" for byte in range(0x80, 0x100)}


def escape(text: str) -> str:
    """Make ``text`` safe to print on a terminal: one line, no control sequences."""
    return text.translate(_ESCAPES)


_VERBS = {"created": "criado", "modified": "modificado", "deleted": "excluído", "moved": "movido"}
_ORIGIN_NOTES = {"live": "", "rescan": " (varredura)", "startup": " (varredura inicial)"}


def format_changes(changes: list[Change], when: datetime.datetime) -> str:
    """The client's own console lines for a burst, like the server's but without a name."""
    stamp = f"{when:%Y-%m-%d %H:%M:%S} "  # once per burst, not once per line
    return "".join(f"{stamp}{describe_change(change)}\n" for change in changes)


def describe_change(change: Change) -> str:
    noun = "diretório" if change.is_dir else "arquivo"
    line = f"{noun} {_VERBS[change.kind]}: {escape(change.path)}"
    if change.dest_path is not None:
        line += f" -> {escape(change.dest_path)}"
    return line + _ORIGIN_NOTES[change.origin]


# ---------------------------------------------------------------------------
# The model of the tree the server sees, and the state file (pure).
# ---------------------------------------------------------------------------

FileInfo = int | None  # a file's fingerprint (see fingerprint()); None: not known


class View:
    """The watched tree as the server will see it once every queued event is delivered.

    A nested dict: a directory maps names to children, a file maps to its FileInfo.
    Changes seen on disk go in; the changes worth sending come out: none when the
    view already agrees (a duplicate), and the missing parents first when an event
    arrives for a directory the view never heard of.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.top: dict[str, Any] = {}
        self.root_exists = True
        self.suspect = False  # an event showed that the view missed something: rescan soon
        self._prefix = root.rstrip(os.sep) + os.sep

    def _parts(self, path: str) -> list[str] | None:
        if path == self.root:
            return []
        return path[len(self._prefix) :].split(os.sep) if path.startswith(self._prefix) else None

    def _dir(self, parts: list[str]) -> dict[str, Any] | None:
        node: Any = self.top
        for name in parts:
            node = node.get(name)
            if not isinstance(node, dict):
                return None
        return node  # type: ignore[no-any-return]

    def _join(self, parts: list[str]) -> str:
        return self._prefix + os.sep.join(parts)

    def _make_parents(self, parts: list[str], origin: str) -> tuple[dict[str, Any], list[Change]]:
        """The directory that holds ``parts``, creating (and reporting) any that is missing."""
        node, out = self.top, []
        for depth, name in enumerate(parts[:-1], 1):
            if not isinstance(node.get(name, None), dict):
                path = self._join(parts[:depth])
                if name in node:
                    out.append(Change("deleted", path, False, origin="rescan"))
                node[name] = {}
                out.append(Change("created", path, True, origin="rescan"))
                self.suspect = True
            node = node[name]
        if out and origin == "live":
            self.suspect = True
        return node, out

    def apply(self, change: Change) -> list[Change]:
        """Record a change seen on disk; return what to send so the server agrees."""
        parts = self._parts(change.path)
        if parts is None:
            return []
        if not parts:
            return self._apply_to_root(change)
        if change.kind == "moved":
            return self._move(parts, change)
        if change.kind == "deleted":
            parent = self._dir(parts[:-1])
            if parent is None or parts[-1] not in parent:
                return []
            node = parent.pop(parts[-1])
            return [dataclasses.replace(change, is_dir=isinstance(node, dict))]
        if change.kind == "modified":
            parent = self._dir(parts[:-1])
            if parent is not None and parts[-1] in parent and not isinstance(parent[parts[-1]], dict):
                parent[parts[-1]] = None  # the content changed: what we knew of it is stale
                return [change]
            if change.is_dir or (parent is not None and parts[-1] in parent):
                return []
            self.suspect = True  # a file we never saw created: its creation was lost
        return self._create(parts, change.is_dir, change.origin)

    def _create(self, parts: list[str], is_dir: bool, origin: str) -> list[Change]:
        parent, out = self._make_parents(parts, origin)
        name, path = parts[-1], self._join(parts)
        if name in parent:
            was_dir = isinstance(parent[name], dict)
            if was_dir == is_dir:
                return out
            out.append(Change("deleted", path, was_dir, origin=origin))
        parent[name] = {} if is_dir else None
        out.append(Change("created", path, is_dir, origin=origin))
        return out

    def _move(self, parts: list[str], change: Change) -> list[Change]:
        assert change.dest_path is not None
        dest = self._parts(change.dest_path)
        parent = self._dir(parts[:-1])
        if parent is None or parts[-1] not in parent:
            # The source was never seen: for the server, the destination just appeared,
            # and if it is a directory its content is unknown too.
            self.suspect = True
            return self._create(dest, change.is_dir, change.origin) if dest else []
        if not dest:  # moved onto the root itself: cannot happen; treat as gone
            node = parent.pop(parts[-1])
            return [Change("deleted", change.path, isinstance(node, dict), origin=change.origin)]
        node = parent.pop(parts[-1])
        dest_parent, out = self._make_parents(dest, change.origin)
        dest_parent[dest[-1]] = node  # a rename replaces whatever was at the destination
        return [*out, dataclasses.replace(change, is_dir=isinstance(node, dict))]

    def _apply_to_root(self, change: Change) -> list[Change]:
        if change.kind == "deleted" and self.root_exists:
            self.top.clear()
            self.root_exists = False
            return [Change("deleted", self.root, True, origin=change.origin)]
        if change.kind == "created" and not self.root_exists:
            self.root_exists = True
            return [Change("created", self.root, True, origin=change.origin)]
        return []

    def load_tree(self, tree: dict[str, Any]) -> None:
        """Adopt a scanned tree (see scan_tree) as the view: it has the same shape."""
        self.top = tree
        self.root_exists = True

    def diff(self, disk: dict[str, Any], origin: str, report_modified: bool = False) -> list[Change]:
        """The changes that turn this view into the scanned ``disk`` tree.

        Deletions first (only the topmost of a deleted subtree), then creations, parents
        before children, and modifications (when asked, for files whose info is known).
        """
        gone: list[Change] = []
        appeared: list[Change] = []
        stack: list[tuple[str, dict[str, Any], dict[str, Any]]] = [(self._prefix, self.top, disk)]
        while stack:
            prefix, mine, theirs = stack.pop()
            subdirs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
            for name in sorted(mine.keys() | theirs.keys()):
                path, old, new = prefix + name, mine.get(name, _MISSING), theirs.get(name, _MISSING)
                old_dir, new_dir = isinstance(old, dict), isinstance(new, dict)
                if old is not _MISSING and (new is _MISSING or old_dir != new_dir):
                    gone.append(Change("deleted", path, old_dir, origin=origin))
                if new is _MISSING:
                    continue
                if old is _MISSING or old_dir != new_dir:
                    appeared.append(Change("created", path, new_dir, origin=origin))
                    if new_dir:
                        subdirs.append((path + os.sep, {}, new))  # everything in it is new too
                elif old_dir:
                    subdirs.append((path + os.sep, old, new))
                elif report_modified and old is not None and old != new:
                    appeared.append(Change("modified", path, False, origin=origin))
            stack.extend(reversed(subdirs))
        return gone + appeared


_MISSING = object()
STATE_VERSION = 3


def encode_state(root: str, uri: str, tree: dict[str, Any]) -> str:
    """The state file: the tree the server has acknowledged, as nested JSON (a file: its fingerprint)."""
    # ASCII: undecodable names (lone surrogates) survive as \udcXX escapes.
    return json.dumps({"version": STATE_VERSION, "root": root, "server": uri, "tree": tree}, separators=(",", ":"))


def decode_state(text: str, root: str, uri: str) -> dict[str, Any] | None:
    """The tree of a state file written for this root and server; None if it is not one."""
    try:
        obj = json.loads(text)
        if obj["version"] != STATE_VERSION or obj["root"] != root or obj["server"] != uri:
            return None
        tree = obj["tree"]
        stack = [tree]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                return None
            for child in node.values():
                if isinstance(child, dict):
                    stack.append(child)
                elif child is not None and type(child) is not int:
                    return None
        return tree  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def default_state_path(root: str, uri: str) -> str:
    """One state file per (directory, server) pair, in the user's cache directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(f"{root}\0{uri}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(cache, "monitor_cliente", f"{key}.json")


def describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "conexão recusada (o servidor está rodando?)"
    if isinstance(exc, socket.gaierror):
        return "nome do servidor não encontrado"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "tempo esgotado"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificado do servidor não confiável ({exc.verify_message}); indique a CA com --cafile"
    if isinstance(exc, ssl.SSLError):
        return f"{exc.reason or exc} (o servidor usa TLS? confira ws:// ou wss://)"
    if isinstance(exc, InvalidMessage):
        return "resposta inválida do servidor (ele usa TLS? então a URI é wss://)"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return f"token recusado (HTTP 401); confira --token ou {TOKEN_ENV}"
        return f"o servidor respondeu HTTP {status}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def reconnect_delays() -> Any:
    """websockets' backoff, started and capped for a monitor: retry soon, never wait long."""
    return websockets.client.backoff(
        initial_delay=RECONNECT_MIN_DELAY, min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY
    )


# ---------------------------------------------------------------------------
# I/O: the watchdog thread, the outbox and the connection.
# ---------------------------------------------------------------------------


def fingerprint(st: os.stat_result) -> int:
    """One small int that changes when a file's mtime or size does (a tuple would cost 4x the memory)."""
    return hash((st.st_mtime_ns, st.st_size))


def scan_tree(root: str, skip: frozenset[str]) -> tuple[dict[str, Any], list[str]] | None:
    """Walk the tree (meant for a worker thread) into the View's shape, and list unreadable directories.

    A directory is a dict of its entries, a file its fingerprint. None when the
    root itself is gone. Symbolic links are entries, never followed. (watchdog's
    DirectorySnapshot keeps a full stat result, a path and an inode map per entry: on
    100,000 files it took the client to 145 MB; this keeps what the diff needs.)
    """
    tree: dict[str, Any] = {}
    unreadable: list[str] = []
    stack = [(root, tree)]
    while stack:
        path, node = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.path in skip:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            child: dict[str, Any] = {}
                            node[entry.name] = child
                            stack.append((entry.path, child))
                        else:
                            node[entry.name] = fingerprint(entry.stat(follow_symlinks=False))
                    except OSError:
                        continue  # gone since it was listed
        except PermissionError:
            if path == root:
                return None
            unreadable.append(path)
        except (FileNotFoundError, NotADirectoryError):
            if path == root:
                return None  # a subdirectory that vanished is simply empty
    return tree, unreadable


def root_identity(root: str) -> tuple[int, int] | None:
    """(device, inode) of the watched directory, or None when it is not a directory now."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def still_true(change: Change) -> bool:
    """Whether a change a scan found still holds now (the tree may have moved on since)."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(change.path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return change.kind == "deleted"
    except OSError:
        return False
    return is_dir != change.is_dir if change.kind == "deleted" else is_dir == change.is_dir


def write_state(path: str, text: str) -> None:
    """Replace the state file atomically: a crash leaves the old one or the new one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


class ThreadBridge:
    """Hands watchdog's events to the asyncio loop: the one place threads meet asyncio.

    Events are collected under a lock and the loop is woken once per burst, not once
    per event, so a burst of thousands costs a handful of wake-ups. While paused (a
    start-up scan is running) events are only collected.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, consume: Callable[[list[FileSystemEvent]], None]) -> None:
        self._loop = loop
        self._consume = consume
        self._lock = threading.Lock()
        self._pending: list[FileSystemEvent] = []
        self._paused = False

    def push(self, event: FileSystemEvent) -> None:
        """Called in the watchdog thread."""
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > 1 or self._paused:
                return  # a drain is already scheduled, or resume() will do it
        self.call_soon(self.drain)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop; safe from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
            self._loop.call_soon_threadsafe(callback)

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
        self.drain()

    def drain(self) -> None:
        """Called in the loop."""
        with self._lock:
            if self._paused:
                return
            events, self._pending = self._pending, []
        if events:
            self._consume(events)


class Handler(FileSystemEventHandler):
    def __init__(self, bridge: ThreadBridge) -> None:
        self._bridge = bridge

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._bridge.push(event)


class OverflowDetector(logging.Handler):
    """watchdog's only sign that the kernel dropped events is a log record: listen for it."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow()


@dataclasses.dataclass(slots=True)
class Outgoing:
    seq: int
    path: str
    data: str  # the event's JSON text


class Outbox:
    """Events waiting to be sent (an asyncio queue) and sent but not yet acknowledged."""

    def __init__(self, limit: int = MAX_QUEUED_EVENTS) -> None:
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.limit = limit
        self.in_flight: collections.deque[Outgoing] = collections.deque()
        self.next_seq = 1
        self.acked_seq = 0
        self.progress = asyncio.Event()  # set whenever an ack arrives
        # path -> seq of its queued created/modified event: a later "modified" of the same
        # path adds nothing until that one is sent, so it is dropped (one write() = one event).
        self._touched: dict[str, int] = {}

    def full(self) -> bool:
        return self.queue.qsize() >= self.limit

    def add(self, change: Change, ts: str) -> bool:
        """Queue a change; False when it was folded into one already queued."""
        if change.kind == "modified" and change.path in self._touched:
            return False
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        if change.kind in ("created", "modified"):
            self._touched[change.path] = seq
        else:
            self._touched.pop(change.path, None)
            if change.dest_path is not None:
                self._touched.pop(change.dest_path, None)
        self.queue.put_nowait(Outgoing(seq, change.path, encode_event(seq, change, ts)))
        return True

    async def next_batch(self) -> list[Outgoing]:
        """Wait for queued events and room in the window; move a batch into flight."""
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            self.progress.clear()
            await self.progress.wait()
        batch = [await self.queue.get()]
        size = len(batch[0].data)
        while len(batch) < BATCH_MAX_EVENTS and not self.queue.empty():
            item = self.queue._queue[0]  # type: ignore[attr-defined]  # peek: asyncio.Queue has no API for it
            if size + len(item.data) > BATCH_MAX_BYTES:
                break
            batch.append(self.queue.get_nowait())
            size += len(item.data)
        for item in batch:
            if self._touched.get(item.path) == item.seq:
                del self._touched[item.path]
        self.in_flight.extend(batch)
        return batch

    def ack(self, seq: int) -> None:
        """The server handled every event up to ``seq``."""
        while self.in_flight and self.in_flight[0].seq <= seq:
            self.in_flight.popleft()
        self.acked_seq = max(self.acked_seq, seq)
        self.progress.set()

    def unacked_batches(self) -> list[list[Outgoing]]:
        """What was in flight when a connection dropped, in batches, to send again."""
        batches: list[list[Outgoing]] = []
        size = 0
        for item in self.in_flight:
            if not batches or len(batches[-1]) >= BATCH_MAX_EVENTS or size + len(item.data) > BATCH_MAX_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += len(item.data)
        return batches

    def pending(self) -> int:
        return len(self.in_flight) + self.queue.qsize()


@dataclasses.dataclass(frozen=True)
class Config:
    uri: str
    root: str
    name: str
    quiet: bool
    state_path: str = ""  # "": no state file
    max_queued: int = MAX_QUEUED_EVENTS
    keepalive: float = KEEPALIVE
    token: str = ""
    tls: ssl.SSLContext | None = None  # for wss:// URIs


class MonitorClient:
    """Watches ``config.root`` and delivers every change to the server at ``config.uri``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.client_id = uuid.uuid4().hex
        self.outbox = Outbox(config.max_queued)
        self.view = View(config.root)
        self.connected = False
        self.observer: BaseObserver | None = None
        self.bridge: ThreadBridge | None = None
        self.skip = frozenset({config.state_path, f"{config.state_path}.tmp"} - {""})
        self.events_seen = 0  # raw watchdog events: tells whether the tree moved during a scan
        self.rescan_needed = False
        self.dirty = False  # the view changed since the state file was written
        self.next_checkpoint = 0.0
        self.checkpoint_delay = CHECKPOINT_MIN_INTERVAL
        self.unreadable: set[str] = set()
        self._second_look = False
        self._root_missing = False
        self._root_identity: tuple[int, int] | None = None
        self.rescan_after = 0.0  # loop time before which a pending rescan waits
        self._first_overflow = 0.0
        self.wake = asyncio.Event()  # wakes the supervisor
        self._dropping = False

    # -- events in ---------------------------------------------------------

    def on_events(self, events: list[FileSystemEvent]) -> None:
        """Apply a burst of watchdog events to the view; queue and print what changed (in the loop)."""
        self.events_seen += len(events)
        changes: list[Change] = []
        for event in events:
            change = change_from_event(event)
            if change is None or change.path in self.skip:
                continue
            if self.outbox.full():
                self._queue_full()
                continue
            changes.extend(self.view.apply(change))
        self.send(changes)
        if self.view.suspect or not self.view.root_exists:
            self.view.suspect = False
            self.request_rescan()

    def send(self, changes: list[Change]) -> None:
        """Queue changes already applied to the view, and print them."""
        if not changes:
            return
        self.dirty = True
        now = datetime.datetime.now().astimezone()
        ts = now.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        added = [c for c in changes if self.outbox.add(c, ts)]
        if added and not self.config.quiet:
            sys.stdout.write(format_changes(added, now))
            sys.stdout.flush()

    def _queue_full(self) -> None:
        # Dropped events never touch the view, so a rescan later finds exactly what they said.
        if not self._dropping:
            self._dropping = True
            log.warning(
                "Aviso: %d eventos aguardando envio (o limite); os próximos serão recuperados por uma varredura.",
                self.outbox.queue.qsize(),
            )
        self.rescan_needed = True

    def request_rescan(self) -> None:
        self.rescan_needed = True
        self.wake.set()

    def on_kernel_overflow(self) -> None:
        # A burst overflows the kernel queue again and again: scanning in the middle of it is
        # wasted work, so the rescan waits until the overflows stop (RESCAN_SETTLE).
        now = asyncio.get_running_loop().time()
        if not self.rescan_needed:
            log.warning("Aviso: a fila de eventos do kernel transbordou; uma varredura vai recuperar o que se perdeu.")
            self._first_overflow = now
        self.rescan_after = min(now + RESCAN_SETTLE, self._first_overflow + RESCAN_MAX_WAIT)
        self.request_rescan()

    # -- the watcher -------------------------------------------------------

    def start_observer(self) -> None:
        assert self.bridge is not None
        observer = Observer()
        try:
            observer.schedule(Handler(self.bridge), self.config.root, recursive=True, event_filter=WATCHED_EVENTS)
            observer.start()
            self._root_identity = root_identity(self.config.root)
        except OSError as exc:
            raise FatalError(f"não foi possível monitorar {escape(self.config.root)}: {exc.strerror or exc}") from exc
        self.observer = observer

    async def stop_observer(self) -> None:
        observer, self.observer = self.observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join)
            await asyncio.sleep(0)  # run the last drain the observer scheduled

    def watcher_alive(self) -> bool:
        return (
            self.observer is not None and self.observer.is_alive() and all(e.is_alive() for e in self.observer.emitters)
        )

    async def check_watcher(self) -> None:
        """Notice a vanished root, a dead watcher thread or a directory that became readable."""
        root = self.config.root
        identity = root_identity(root)
        if self.view.root_exists and identity is not None and identity != self._root_identity:
            # Renamed away and replaced by a new directory: inotify still follows the old one.
            log.warning("O diretório monitorado foi substituído por outro: %s; recomeçando.", escape(root))
            self.send(self.view.apply(Change("deleted", root, True, origin="rescan")))
        if identity is None:
            if not self._root_missing:
                self._root_missing = True
                log.warning("O diretório monitorado não existe mais: %s; aguardando ele reaparecer...", escape(root))
            self.send(self.view.apply(Change("deleted", root, True, origin="rescan")))  # if no event said so
            if self.observer is not None:
                await self.stop_observer()
            return
        if not self.view.root_exists:
            self._root_missing = False
            log.info("O diretório %s reapareceu; retomando o monitoramento.", escape(root))
            self.send(self.view.apply(Change("created", root, True, origin="rescan")))
        elif not self.watcher_alive():
            log.warning("Aviso: o monitoramento parou; reiniciando com uma varredura.")
        elif not self._became_readable():
            return
        await self.stop_observer()
        try:
            self.start_observer()
        except FatalError as exc:
            log.warning("Aviso: %s; nova tentativa em instantes.", exc)
            return
        self.rescan_needed = True

    def _became_readable(self) -> bool:
        readable = {d for d in self.unreadable if os.access(d, os.R_OK | os.X_OK)}
        for path in readable:
            log.info("O diretório %s agora pode ser lido; passa a ser monitorado.", escape(path))
        self.unreadable -= readable
        return bool(readable)

    def note_unreadable(self, paths: list[str]) -> None:
        for path in sorted(set(paths) - self.unreadable):
            log.warning("Aviso: sem permissão para ler %s; esse diretório não é monitorado.", escape(path))
        self.unreadable.update(paths)

    # -- scans ---------------------------------------------------------------

    async def scan(self) -> dict[str, Any] | None:
        result = await asyncio.to_thread(scan_tree, self.config.root, self.skip)
        if result is None:
            self.wake.set()  # the root is gone: check_watcher reports it
            return None
        disk, unreadable = result
        self.note_unreadable(unreadable)
        return disk

    def repair(self, differences: list[Change]) -> int:
        """Send the differences a scan found (View.diff), as far as they still hold; return how many."""
        changes: list[Change] = []
        room = self.outbox.limit - self.outbox.queue.qsize()
        for change in differences:
            if len(changes) >= room:
                self.rescan_needed = True  # the rest when the queue has drained
                break
            if still_true(change):
                changes += self.view.apply(change)
        self.send(changes)
        return len(changes)

    async def rescan(self) -> None:
        self.rescan_needed = False
        self._dropping = False
        disk = await self.scan()
        if disk is not None:
            sent = self.repair(self.view.diff(disk, "rescan"))
            log.info("Varredura concluída: %d mudança(s) recuperada(s).", sent)

    def quiescent(self) -> bool:
        return self.outbox.pending() == 0 and not self.rescan_needed

    async def checkpoint(self) -> None:
        """When the server has everything, check the view against the disk and save the state file."""
        loop = asyncio.get_running_loop()
        seen = self.events_seen
        disk = await self.scan()
        if disk is None or self.events_seen != seen or not self.quiescent():
            # The tree moved during the scan: try again later, less eagerly.
            self.checkpoint_delay = min(self.checkpoint_delay * 2, 300.0)
            self.next_checkpoint = loop.time() + self.checkpoint_delay
            return
        self.checkpoint_delay = CHECKPOINT_MIN_INTERVAL
        self.next_checkpoint = loop.time() + self.checkpoint_delay
        differences = self.view.diff(disk, "rescan")
        if differences:
            if not self._second_look:
                # Their events may still be on their way from the kernel: look again shortly.
                self._second_look = True
                self.next_checkpoint = loop.time() + 1.0
                return
            # Events were lost without any sign (the scan is the only witness): send them now,
            # and save the state at the next checkpoint, once the server has them.
            self._second_look = False
            sent = self.repair(differences)
            log.warning("Aviso: %d mudança(s) não percebida(s) encontrada(s) na verificação; enviadas.", sent)
            return
        self._second_look = False
        self.view.load_tree(disk)  # the same paths, with every file's info known again
        await self.save_state()
        self.dirty = False

    async def save_state(self) -> None:
        if not self.config.state_path:
            return
        try:
            text = encode_state(self.config.root, self.config.uri, self.view.top)
        except RecursionError:  # a tree nested deeper than json can write
            log.warning("Aviso: a árvore é profunda demais para o arquivo de estado; ele não foi gravado.")
            return
        try:
            await asyncio.to_thread(write_state, self.config.state_path, text)
        except OSError as exc:
            log.warning("Aviso: não foi possível gravar o estado em %s: %s", self.config.state_path, exc)

    async def start_up(self) -> None:
        """Load the state file and report what changed while we were stopped; or take a baseline."""
        assert self.bridge is not None
        self.bridge.pause()  # live events wait until the view is loaded
        try:
            self.start_observer()
            log.info("Monitorando %s (com subdiretórios)", escape(self.config.root))
            saved = self.load_state()
            disk = await self.scan()
            if disk is None:
                raise FatalError(f"o diretório não existe: {escape(self.config.root)}")
            if saved is None:
                self.view.load_tree(disk)
                await self.save_state()
            else:
                self.view.load_tree(saved)
                sent = self.repair(self.view.diff(disk, "startup", report_modified=True))
                log.info("Varredura inicial: %d mudança(s) desde a última execução.", sent)
        finally:
            self.bridge.resume()

    def load_state(self) -> dict[str, Any] | None:
        path = self.config.state_path
        if not path:
            return None
        try:
            with open(path, encoding="ascii") as file:
                text = file.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("Aviso: estado ilegível em %s (%s); começando do zero.", path, exc)
            return None
        saved = decode_state(text, self.config.root, self.config.uri)
        if saved is None:
            log.warning("Aviso: o estado em %s não serve para este diretório; começando do zero.", path)
        return saved

    async def supervise(self) -> None:
        """The loop's housekeeping: watcher health, rescans, and saving the state file."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = CHECK_INTERVAL
            if self.rescan_needed:
                timeout = min(timeout, max(0.0, self.rescan_after - loop.time()))
            with contextlib.suppress(asyncio.TimeoutError):  # not yet the builtin on Python 3.10
                await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()
            await self.check_watcher()
            if not self.view.root_exists:
                continue
            if self.rescan_needed and loop.time() < self.rescan_after:
                continue  # overflows are still coming: wait until they stop
            if self.rescan_needed and self.outbox.queue.qsize() < self.outbox.limit // 2:
                await self.rescan()
            elif self.dirty and self.quiescent() and loop.time() >= self.next_checkpoint:
                await self.checkpoint()

    # -- the connection ------------------------------------------------------

    def _on_connect_error(self, exc: Exception) -> Exception | None:
        """websockets' verdict (retry on network errors and 5xx), with one line per attempt.

        A wrong token or an untrusted certificate would fail the same way forever: fatal.
        """
        if isinstance(exc, ssl.SSLError):
            return FatalError(f"falha de TLS com {self.config.uri}: {describe_connect_error(exc)}")
        verdict = websockets.client.process_exception(exc)
        if verdict is None:
            log.warning("Sem conexão com %s: %s; tentando novamente...", self.config.uri, describe_connect_error(exc))
            return None
        return FatalError(f"não foi possível conectar a {self.config.uri}: {describe_connect_error(exc)}")

    async def deliver_forever(self) -> None:
        """Keep one connection open (reconnecting as needed) and stream the outbox over it."""
        loop = asyncio.get_running_loop()
        quick_drops = 0
        async for ws in connect(
            self.config.uri,
            process_exception=self._on_connect_error,
            reconnect_delays=reconnect_delays,
            compression=None,  # loopback and LAN: deflate costs more CPU than it saves
            open_timeout=OPEN_TIMEOUT,
            ssl=self.config.tls,
            additional_headers={"Authorization": f"Bearer {self.config.token}"} if self.config.token else None,
            ping_interval=self.config.keepalive,
            ping_timeout=self.config.keepalive,
            close_timeout=self.config.keepalive,  # a dead server never answers the close either
            logger=logging.getLogger("monitor.websockets"),
        ):
            opened = loop.time()
            try:
                await self._session(ws)
            except ConnectionClosed as exc:
                self._connection_lost(exc)
            finally:
                self.connected = False
            # websockets restarts its backoff after each successful handshake: a server that
            # drops us at once would make us spin, so back off here too.
            quick_drops = quick_drops + 1 if loop.time() - opened < RECONNECT_MAX_DELAY else 0
            if quick_drops > 1:
                await asyncio.sleep(min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2 ** (quick_drops - 2)))

    def _connection_lost(self, exc: ConnectionClosed) -> None:
        frame = exc.rcvd
        if frame is not None and frame.code in FATAL_CLOSE_CODES:
            reason = frame.reason or FATAL_CLOSE_CODES[frame.code]
            raise FatalError(f"o servidor recusou as mensagens deste cliente: {reason}")
        if frame is not None:
            why = f"código {frame.code}"
        elif exc.sent is not None and exc.sent.code == 1011:
            why = f"sem resposta ao ping em {self.config.keepalive:g} s"
        else:
            why = "conexão interrompida"
        log.warning("Conexão com %s perdida (%s); reconectando...", self.config.uri, why)

    async def _session(self, ws: ClientConnection) -> None:
        name, root = wire_path(self.config.name)[0], wire_path(self.config.root)[0]  # argv may hold any bytes
        await ws.send(encode_hello(self.client_id, name, root))
        try:
            kind, last_seq = parse_server_message(await ws.recv())
            if kind != "welcome":
                raise ProtocolError("o servidor não respondeu ao hello")
        except ProtocolError as exc:
            raise FatalError(f"{self.config.uri} não é um servidor deste monitor: {exc}") from None
        if last_seq >= self.outbox.next_seq:
            # The server remembers more than we ever sent under this id: not ours to trust.
            raise FatalError(f"o servidor diz ter recebido o evento {last_seq}, que este cliente nunca enviou")
        self.outbox.ack(last_seq)
        self.connected = True
        log.info("Conectado a %s", self.config.uri)
        sender = asyncio.create_task(self._send(ws))
        receiver = asyncio.create_task(self._receive(ws))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # ConnectionClosed (even a normal close: the server is stopping) / FatalError
        finally:
            sender.cancel()
            receiver.cancel()
            await ws.close()

    async def _send(self, ws: ClientConnection) -> None:
        for batch in self.outbox.unacked_batches():
            await ws.send(encode_batch([item.data for item in batch]))
        while True:
            batch = await self.outbox.next_batch()
            await ws.send(encode_batch([item.data for item in batch]))

    async def _receive(self, ws: ClientConnection) -> None:
        while True:
            message = await ws.recv()  # raises ConnectionClosed, a normal close included
            try:
                kind, seq = parse_server_message(message)
            except ProtocolError as exc:
                raise FatalError(str(exc)) from None
            if kind == "ack":
                self.outbox.ack(seq)
                if not self.outbox.pending():
                    self.wake.set()  # the server has everything: time for a checkpoint

    async def flush(self) -> None:
        """Wait, up to FLUSH_TIMEOUT, until the server has acknowledged everything."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_TIMEOUT
        while self.connected and self.outbox.pending() and loop.time() < deadline:
            self.outbox.progress.clear()
            with contextlib.suppress(asyncio.TimeoutError):  # not yet the builtin on Python 3.10
                await asyncio.wait_for(self.outbox.progress.wait(), deadline - loop.time())

    # -- the whole run ---------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch and deliver until SIGINT/SIGTERM (or ``stop`` is set); raise FatalError on a fatal failure."""
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; non-main thread
                loop.add_signal_handler(sig, stop.set)
        self.bridge = ThreadBridge(loop, self.on_events)
        detector = OverflowDetector(lambda: self.bridge.call_soon(self.on_kernel_overflow) if self.bridge else None)
        logging.getLogger("watchdog").addHandler(detector)
        previous_hook = threading.excepthook
        threading.excepthook = self._thread_died
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.start_up()
            supervisor = asyncio.create_task(self.supervise())
            tasks = [asyncio.create_task(self.deliver_forever()), supervisor, asyncio.create_task(stop.wait())]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # FatalError from the connection; the supervisor never ends
            supervisor.cancel()  # it would restart the watcher we are about to stop
            await asyncio.gather(supervisor, return_exceptions=True)
            log.info("Encerrando: entregando os eventos pendentes...")
            await self.stop_observer()
            await self.flush()
            if self.dirty and self.quiescent() and self.view.root_exists:
                await self.checkpoint()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop_observer()
            logging.getLogger("watchdog").removeHandler(detector)
            threading.excepthook = previous_hook
        left = self.outbox.pending()
        if left:
            log.warning("Aviso: %d evento(s) não entregue(s) ao servidor; serão recuperados na próxima execução.", left)
        log.info("Monitor encerrado.")

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        """A watchdog thread raised (watchdog #663): one line, then the supervisor restarts it."""
        log.error("Erro na thread %s: %s", args.thread.name if args.thread else "?", args.exc_value)
        log.debug("detalhes", exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]
        if self.bridge is not None:
            self.bridge.call_soon(self.wake.set)


def validate_directory(path: str) -> str:
    """The absolute path of a directory we can watch; FatalError otherwise."""
    root = os.path.abspath(path)
    if not os.path.exists(root):
        raise FatalError(f"o diretório não existe: {escape(root)}")
    if not os.path.isdir(root):
        raise FatalError(f"não é um diretório: {escape(root)}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise FatalError(f"sem permissão para ler o diretório: {escape(root)}")
    return root


def validate_uri(uri: str) -> str:
    try:
        parse_uri(uri)
    except InvalidURI:
        raise FatalError(f"URI do servidor inválida: {uri!r} (exemplo: ws://localhost:8765)") from None
    return uri


def tls_context(uri: str, cafile: str) -> ssl.SSLContext | None:
    """Certificate checking for wss:// (the system's CAs, or ``cafile``); None for ws://."""
    if not uri.startswith("wss://"):
        if cafile:
            raise FatalError("--cafile só vale para servidores wss://")
        return None
    try:
        return ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(f"não foi possível ler a CA {cafile!r}: {exc}") from exc


def missing_requirements() -> str | None:
    """A Portuguese sentence when an installed library is older than this script needs."""
    for name, (major, minor) in REQUIRED:
        try:
            found = importlib.metadata.version(name)
            numbers = tuple(int(part) for part in found.split(".")[:2])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue  # not installed by pip (a checkout, a system package): trust the import
        if numbers < (major, minor):
            return (
                f"{name} {found} é antigo demais; este script precisa de {name} >= {major}.{minor} "
                f"(Python >= 3.11): pip install -U websockets watchdog"
            )
    return None


# argparse's own words are English; these are the ones a user of this script can meet.
_ARGPARSE_PT = {
    "usage: ": "uso: ",
    "options": "opções",
    "positional arguments": "argumentos posicionais",
    "show this help message and exit": "mostra esta ajuda e sai",
    "show program's version number and exit": "mostra a versão e sai",
    "unrecognized arguments: %s": "argumentos não reconhecidos: %s",
    "argument %(argument_name)s: %(message)s": "argumento %(argument_name)s: %(message)s",
    "invalid %(type)s value: %(value)r": "valor inválido (%(type)s): %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)": "opção inválida: %(value)r (escolha entre %(choices)s)",
    "expected one argument": "falta o valor",
    "ambiguous option: %(option)s could match %(matches)s": "opção ambígua: %(option)s pode ser %(matches)s",
    "the following arguments are required: %s": "faltam os argumentos: %s",
    "%(prog)s: error: %(message)s\n": "%(prog)s: erro: %(message)s\n",
}


class PortugueseHelpFormatter(argparse.HelpFormatter):
    """Help in Portuguese, each default shown after its option."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, "", argparse.SUPPRESS) and "%(default)" not in text:
            text += " (padrão: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    argparse._ = lambda message: _ARGPARSE_PT.get(message, message)  # type: ignore[attr-defined]
    parser = argparse.ArgumentParser(
        prog="monitor_cliente.py",
        description="Monitora um diretório e envia cada mudança a um servidor WebSocket.",
        formatter_class=PortugueseHelpFormatter,
        epilog=f"Variável de ambiente: {TOKEN_ENV} (o token; mais seguro que --token, que aparece no ps).",
    )
    parser.add_argument("diretorio", nargs="?", default=directory_to_monitor, help="diretório a monitorar")
    parser.add_argument("--servidor", default=SERVER_URI, help="URI do servidor WebSocket")
    parser.add_argument("--nome", default=CLIENT_NAME or socket.gethostname(), help="nome deste cliente no servidor")
    parser.add_argument("--token", default=None, help=f"segredo pedido pelo servidor (ou {TOKEN_ENV})")
    parser.add_argument(
        "--cafile", default=CA_FILE, metavar="ARQUIVO", help="CA (PEM) que assinou o certificado de um servidor wss://"
    )
    parser.add_argument(
        "--estado",
        default=STATE_FILE,
        metavar="ARQUIVO",
        help="arquivo com o último retrato do diretório, para relatar o que mudou enquanto o cliente estava parado "
        "(padrão: um arquivo por diretório e servidor em ~/.cache/monitor_cliente/)",
    )
    parser.add_argument(
        "--max-fila",
        type=int,
        default=MAX_QUEUED_EVENTS,
        metavar="N",
        help="eventos aguardando envio, no máximo; além disso, uma varredura os recupera depois",
    )
    parser.add_argument(
        "--keepalive",
        type=float,
        default=KEEPALIVE,
        metavar="SEGUNDOS",
        help="intervalo entre pings; sem resposta nesse tempo, a conexão é dada como perdida",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="não mostra cada mudança; só avisos e erros")
    parser.add_argument("-v", "--verbose", action="store_true", help="diagnóstico detalhado no stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="mostra a versão e sai")
    return parser


def configure_logging(quiet: bool, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    # websockets logs expected network failures with tracebacks; show them only with -v.
    logging.getLogger("monitor.websockets").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    # watchdog's warnings must still be emitted (one of them reports a kernel overflow),
    # but they reach the console only with -v; we say the same in Portuguese.
    watchdog_log = logging.getLogger("watchdog")
    watchdog_log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    watchdog_log.propagate = verbose


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = missing_requirements()
    if problem is not None:
        print(f"Erro: {problem}", file=sys.stderr)
        return 1
    configure_logging(args.quiet, args.verbose)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # a hostile name must never crash a print
            stream.reconfigure(errors="backslashreplace")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, TOKEN)
    if not all("!" <= char <= "~" for char in token):  # an HTTP header carries visible ASCII only
        print("Erro: o token só pode ter caracteres ASCII visíveis (sem espaços nem acentos)", file=sys.stderr)
        return 2
    if args.max_fila < 1 or args.keepalive <= 0:
        print("Erro: --max-fila e --keepalive precisam ser maiores que zero", file=sys.stderr)
        return 2
    try:
        uri = validate_uri(args.servidor)
        root = validate_directory(args.diretorio)
        tls = tls_context(uri, args.cafile)
        config = Config(
            uri=uri,
            root=root,
            name=args.nome,
            quiet=args.quiet,
            state_path=os.path.abspath(args.estado) if args.estado else default_state_path(root, uri),
            max_queued=args.max_fila,
            keepalive=args.keepalive,
            token=token,
            tls=tls,
        )
        asyncio.run(MonitorClient(config).run())
    except FatalError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # platforms without loop.add_signal_handler
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
