"""Monitora um diretório e envia cada mudança a um servidor WebSocket (servidor.py).

Uso:
    python monitor_cliente.py                          # directory_to_monitor -> SERVER_URI
    python monitor_cliente.py /srv/dados               # outro diretório
    python monitor_cliente.py --servidor ws://192.168.0.103:8765

A watchdog Observer thread watches the tree; its handler only hands events to the
asyncio loop, which numbers them, prints them and streams them in batches over one
persistent WebSocket connection. Events stay in memory until the server
acknowledges them, so a server that is down, restarts or starts after the client
still receives every change once it is back.

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
import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

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
from websockets.client import backoff
from websockets.client import process_exception as websockets_process_exception
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

# ---------------------------------------------------------------------------
# Settings: edit these, or override them with the command-line flags.
# ---------------------------------------------------------------------------

SERVER_URI = "ws://localhost:8765"  # e.g. "ws://192.168.0.103:8765" for a server on another machine
directory_to_monitor = "."  # the directory to watch, recursively
CLIENT_NAME = ""  # how the server shows this client; empty: this machine's hostname
BATCH_MAX_EVENTS = 1000  # events per WebSocket message at most
BATCH_MAX_BYTES = 256 * 1024  # bytes per message at most (the server accepts 1 MiB)
MAX_IN_FLIGHT = 20_000  # events sent but not yet acknowledged before sending pauses
RECONNECT_MIN_DELAY = 0.5  # seconds before the first retry when the server is unreachable
RECONNECT_MAX_DELAY = 10.0  # seconds between retries at most
FLUSH_TIMEOUT = 5.0  # seconds to deliver what is pending when asked to stop
PING_INTERVAL = 20.0  # seconds between keepalive pings
PING_TIMEOUT = 20.0  # seconds without a pong before the connection counts as lost
OPEN_TIMEOUT = 10.0  # seconds to open a connection

PROTOCOL_VERSION = 1
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


def encode_event(seq: int, change: Change, ts: str, origin: str = "live") -> str:
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
    obj["origin"] = origin
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
    if kind == "welcome" and obj.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(f"o servidor fala outra versão do protocolo: {obj.get('version')!r}")
    return kind, seq


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


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


def format_change(change: Change, when: datetime.datetime) -> str:
    """The client's own console line for a change, like the server's but without a name."""
    noun = "diretório" if change.is_dir else "arquivo"
    line = f"{when:%Y-%m-%d %H:%M:%S} {noun} {_VERBS[change.kind]}: {escape(change.path)}"
    return line if change.dest_path is None else f"{line} -> {escape(change.dest_path)}"


def describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "conexão recusada (o servidor está rodando?)"
    if isinstance(exc, socket.gaierror):
        return "nome do servidor não encontrado"
    if isinstance(exc, TimeoutError):
        return "tempo esgotado"
    if isinstance(exc, InvalidStatus):
        return f"o servidor respondeu HTTP {exc.response.status_code}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def reconnect_delays() -> Any:
    """websockets' backoff, started and capped for a monitor: retry soon, never wait long."""
    return backoff(initial_delay=RECONNECT_MIN_DELAY, min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY)


# ---------------------------------------------------------------------------
# I/O: the watchdog thread, the outbox and the connection.
# ---------------------------------------------------------------------------


class ThreadBridge:
    """Hands watchdog's events to the asyncio loop: the one place threads meet asyncio.

    Events are collected under a lock and the loop is woken once per burst, not once
    per event, so a burst of thousands costs a handful of wake-ups.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, consume: Callable[[list[FileSystemEvent]], None]) -> None:
        self._loop = loop
        self._consume = consume
        self._lock = threading.Lock()
        self._pending: list[FileSystemEvent] = []

    def push(self, event: FileSystemEvent) -> None:
        """Called in the watchdog thread."""
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > 1:
                return  # a drain is already scheduled
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
            self._loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Called in the loop."""
        with self._lock:
            events, self._pending = self._pending, []
        if events:
            self._consume(events)


class Handler(FileSystemEventHandler):
    def __init__(self, bridge: ThreadBridge) -> None:
        self._bridge = bridge

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._bridge.push(event)


@dataclasses.dataclass(slots=True)
class Outgoing:
    seq: int
    path: str
    data: str  # the event's JSON text


class Outbox:
    """Events waiting to be sent (an asyncio queue) and sent but not yet acknowledged."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.in_flight: collections.deque[Outgoing] = collections.deque()
        self.next_seq = 1
        self.acked_seq = 0
        self.progress = asyncio.Event()  # set whenever an ack arrives
        # path -> seq of its queued created/modified event: a later "modified" of the same
        # path adds nothing until that one is sent, so it is dropped (one write() = one event).
        self._touched: dict[str, int] = {}

    def add(self, change: Change, ts: str, origin: str = "live") -> bool:
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
        self.queue.put_nowait(Outgoing(seq, change.path, encode_event(seq, change, ts, origin)))
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


class MonitorClient:
    """Watches ``config.root`` and delivers every change to the server at ``config.uri``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.client_id = uuid.uuid4().hex
        self.outbox = Outbox()
        self.connected = False

    def on_events(self, events: list[FileSystemEvent]) -> None:
        """Number, print and queue a burst of watchdog events (runs in the loop)."""
        now = datetime.datetime.now().astimezone()
        ts = now.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")
        lines = []
        for event in events:
            change = change_from_event(event)
            if change is not None and self.outbox.add(change, ts) and not self.config.quiet:
                lines.append(format_change(change, now))
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()

    def start_observer(self, loop: asyncio.AbstractEventLoop) -> BaseObserver:
        bridge = ThreadBridge(loop, self.on_events)
        observer = Observer()
        try:
            observer.schedule(Handler(bridge), self.config.root, recursive=True, event_filter=WATCHED_EVENTS)
            observer.start()
        except OSError as exc:
            raise FatalError(f"não foi possível monitorar {escape(self.config.root)}: {exc.strerror or exc}") from exc
        log.info("Monitorando %s (com subdiretórios)", escape(self.config.root))
        return observer

    def _on_connect_error(self, exc: Exception) -> Exception | None:
        """websockets' verdict (retry on network errors and 5xx), with one line per attempt."""
        verdict = websockets_process_exception(exc)
        if verdict is None:
            log.warning("Sem conexão com %s: %s; tentando novamente...", self.config.uri, describe_connect_error(exc))
            return None
        return FatalError(f"não foi possível conectar a {self.config.uri}: {describe_connect_error(exc)}")

    async def deliver_forever(self) -> None:
        """Keep one connection open (reconnecting as needed) and stream the outbox over it."""
        async for ws in connect(
            self.config.uri,
            process_exception=self._on_connect_error,
            reconnect_delays=reconnect_delays,
            compression=None,  # loopback and LAN: deflate costs more CPU than it saves
            open_timeout=OPEN_TIMEOUT,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            logger=logging.getLogger("monitor.websockets"),
        ):
            try:
                await self._session(ws)
            except ConnectionClosed as exc:
                self._connection_lost(exc)
            finally:
                self.connected = False

    def _connection_lost(self, exc: ConnectionClosed) -> None:
        frame = exc.rcvd
        if frame is not None and frame.code in FATAL_CLOSE_CODES:
            reason = frame.reason or FATAL_CLOSE_CODES[frame.code]
            raise FatalError(f"o servidor recusou as mensagens deste cliente: {reason}")
        why = f"código {frame.code}" if frame is not None else "conexão interrompida"
        log.warning("Conexão com %s perdida (%s); reconectando...", self.config.uri, why)

    async def _session(self, ws: ClientConnection) -> None:
        await ws.send(encode_hello(self.client_id, self.config.name, wire_path(self.config.root)[0]))
        try:
            kind, last_seq = parse_server_message(await ws.recv())
            if kind != "welcome":
                raise ProtocolError("o servidor não respondeu ao hello")
        except ProtocolError as exc:
            raise FatalError(f"{self.config.uri} não é um servidor deste monitor: {exc}") from None
        self.outbox.ack(last_seq)
        self.connected = True
        log.info("Conectado a %s", self.config.uri)
        sender = asyncio.create_task(self._send(ws))
        receiver = asyncio.create_task(self._receive(ws))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise ConnectionClosed / FatalError
            # The server closed the connection normally (e.g. it is shutting down).
            raise ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent)
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
        async for message in ws:
            try:
                kind, seq = parse_server_message(message)
            except ProtocolError as exc:
                raise FatalError(str(exc)) from None
            if kind == "ack":
                self.outbox.ack(seq)

    async def flush(self) -> None:
        """Wait, up to FLUSH_TIMEOUT, until the server has acknowledged everything."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_TIMEOUT
        while self.connected and self.outbox.pending() and loop.time() < deadline:
            self.outbox.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.progress.wait(), deadline - loop.time())

    async def run(self) -> None:
        """Watch and deliver until SIGINT/SIGTERM; raise FatalError on a fatal failure."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; non-main thread
                loop.add_signal_handler(sig, stop.set)
        observer = self.start_observer(loop)
        delivery = asyncio.create_task(self.deliver_forever())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({delivery, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if delivery.done():
                delivery.result()  # FatalError
                return
            log.info("Encerrando: entregando os eventos pendentes...")
            observer.stop()
            await asyncio.to_thread(observer.join)
            await asyncio.sleep(0)  # run the last drain the observer scheduled
            await self.flush()
        finally:
            stopping.cancel()
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
            if observer.is_alive():
                observer.stop()
                observer.join()
        left = self.outbox.pending()
        if left:
            log.warning("Aviso: %d evento(s) não entregue(s) ao servidor.", left)
        log.info("Monitor encerrado.")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor_cliente.py",
        description="Monitora um diretório e envia cada mudança a um servidor WebSocket.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("diretorio", nargs="?", default=directory_to_monitor, help="diretório a monitorar")
    parser.add_argument("--servidor", default=SERVER_URI, help="URI do servidor WebSocket")
    parser.add_argument("--nome", default=CLIENT_NAME or socket.gethostname(), help="nome deste cliente no servidor")
    parser.add_argument("-q", "--quiet", action="store_true", help="não mostra cada mudança; só avisos e erros")
    parser.add_argument("-v", "--verbose", action="store_true", help="diagnóstico detalhado no stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def configure_logging(quiet: bool, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    # Libraries log expected network failures with tracebacks; show them only with -v.
    for name in ("monitor.websockets", "watchdog"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # a hostile name must never crash a print
            stream.reconfigure(errors="backslashreplace")
    try:
        config = Config(
            uri=validate_uri(args.servidor),
            root=validate_directory(args.diretorio),
            name=args.nome,
            quiet=args.quiet,
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
