"""Servidor WebSocket que mostra, ao vivo, as mudanças enviadas por monitor_cliente.py.

Uso:
    python servidor.py                     # ws://localhost:8765
    python servidor.py --host 0.0.0.0      # aceita conexões de outras máquinas
    python servidor.py --port 0 --json     # porta livre; um objeto JSON por evento
    python servidor.py --log eventos.jsonl # registro durável; sobrevive a reinícios
    MONITOR_TOKEN=segredo python servidor.py --host 0.0.0.0 --cert cert.pem --key key.pem

Each message a client sends is printed on stdout, one line per event; connection
status goes to stderr. Clients of our protocol (see README) say ``hello`` first and
then send batches of numbered events, which this server acknowledges once they
have been printed (and appended to the durable log, with --log); any other text
message is printed as received, escaped. Resent events are recognised by
(client id, seq) and never shown twice, across restarts too when --log is used.

Only ``websockets`` and the standard library are needed: copy this file, run
``pip install websockets`` and start it.
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
import errno
import functools
import hmac
import importlib.metadata
import io
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TextIO, get_args

try:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers, MultipleValuesError
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
except ModuleNotFoundError as missing:
    if __name__ != "__main__":
        raise
    library = (missing.name or "websockets").partition(".")[0]  # run as a script: a sentence, not a traceback
    sys.exit(f"Erro: falta a biblioteca {library} — instale com: pip install websockets watchdog")

# ---------------------------------------------------------------------------
# Settings: edit these, or override them with the command-line flags.
# ---------------------------------------------------------------------------

HOST = "localhost"  # "0.0.0.0" accepts connections from other machines
PORT = 8765
TOKEN = ""  # shared secret every client must present; "": anyone may connect (prefer MONITOR_TOKEN)
TOKEN_ENV = "MONITOR_TOKEN"  # environment variable that overrides TOKEN (flags override both)
CERT_FILE = ""  # TLS certificate chain (PEM): with KEY_FILE, the server speaks wss://
KEY_FILE = ""  # TLS private key (PEM)
MAX_MESSAGE_SIZE = 1024 * 1024  # bytes per WebSocket message; the client's batches stay under 256 KiB
MAX_QUEUED_MESSAGES = 4  # messages buffered per connection: memory per client <= this x MAX_MESSAGE_SIZE
KEEPALIVE = 20.0  # seconds between pings, and without a pong before a connection counts as lost
EVENT_LOG = ""  # file that every event is appended to as a JSON line before it is acknowledged; "": none
OPEN_TIMEOUT = 10.0  # seconds for a client to finish the opening handshake, or be dropped
MAX_REMEMBERED_CLIENTS = 10_000  # per-client sequence numbers kept to drop resent events

PROTOCOL_VERSION = 1
REQUIRED = [("websockets", (17, 0))]  # what this script was written and tested against
MAX_SEQ = 2**53  # largest integer every JSON parser keeps exactly
MAX_TEXT_CHARS = 16 * 1024  # longest path, name or id accepted in a message
CLOSE_POLICY = 1008  # RFC 6455: the message violates the protocol we speak (ProtocolError's default code)
CLOSE_UNSUPPORTED = 1003  # RFC 6455: binary frame on a text protocol
CLOSE_INTERNAL = 1011  # RFC 6455: the server hit an unexpected condition
CLOSE_REPLACED = 4000  # application code: the same client connected again

log = logging.getLogger("servidor")

# ===========================================================================
# Shared section: begin. The same text, byte for byte, in servidor.py and monitor_cliente.py
# (tests/test_shared.py compares the two). Each script stands alone, so it is copied, not imported.
# ===========================================================================

EventKind = Literal["created", "modified", "deleted", "moved"]
Origin = Literal["live", "rescan", "startup"]  # live: watchdog saw it; rescan, startup: a scan found it
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
ORIGINS: tuple[Origin, ...] = get_args(Origin)


class FatalError(Exception):
    """The script must stop: main() prints ``Erro: <str(exc)>`` (Portuguese) and returns 1."""


class ProtocolError(ValueError):
    """A message from the other side that breaks the protocol.

    ``str(exc)`` is the reason (Portuguese); ``code`` the close code that ends the connection
    (RFC 6455: 1008 policy violated, 1003 data of a kind not accepted).
    """

    def __init__(self, reason: str, code: int = 1008) -> None:
        super().__init__(reason)
        self.code = code


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


_VERBS: dict[EventKind, str] = {"created": "criado", "modified": "modificado", "deleted": "excluído", "moved": "movido"}
_ORIGIN_NOTES: dict[Origin, str] = {"live": "", "rescan": " (varredura)", "startup": " (varredura inicial)"}


def describe_change(kind: EventKind, path: str, is_dir: bool, dest_path: str | None, origin: Origin) -> str:
    """What happened, in Portuguese, paths escaped: ``arquivo movido: /w/a -> /w/b (varredura)``."""
    noun = "diretório" if is_dir else "arquivo"
    line = f"{noun} {_VERBS[kind]}: {escape(path)}"
    if dest_path is not None:
        line += f" -> {escape(dest_path)}"
    return line + _ORIGIN_NOTES[origin]


def token_from(flag: str | None) -> str:
    """The shared secret: ``--token``, else the TOKEN_ENV variable, else TOKEN.

    Raises ValueError (a Portuguese sentence) when an HTTP header cannot carry it.
    """
    token = flag if flag is not None else os.environ.get(TOKEN_ENV, TOKEN)
    if not all("!" <= char <= "~" for char in token):  # visible ASCII only
        raise ValueError("o token só pode ter caracteres ASCII visíveis (sem espaços nem acentos)")
    return token


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


# argparse's own words are English; these are the ones a user of these scripts can meet.
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
    "not allowed with argument %s": "não pode ser usado junto com %s",
    "%(prog)s: error: %(message)s\n": "%(prog)s: erro: %(message)s\n",
}


def speak_portuguese_argparse() -> None:
    """Make argparse use the words above: it looks each one up through its module-level ``_``.

    main() calls this once, before it builds its parser (group titles are looked up then).
    """
    argparse._ = lambda message: _ARGPARSE_PT.get(message, message)  # type: ignore[attr-defined]


class PortugueseHelpFormatter(argparse.HelpFormatter):
    """Help in Portuguese, each default shown after its option, numbers as the README writes them (20, not 20.0)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, "", argparse.SUPPRESS) and "%(default)" not in text:
            shown = f"{action.default:g}" if isinstance(action.default, float) else "%(default)s"
            text += f" (padrão: {shown})"
        return text


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=PortugueseHelpFormatter,
        epilog=f"Variável de ambiente: {TOKEN_ENV} (o token; mais seguro que --token, que aparece no ps).",
    )


def add_console_options(parser: argparse.ArgumentParser, quiet_help: str) -> None:
    """-q and -v (one or the other; -v counts: -vv), and --version."""
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="diagnóstico no stderr (-vv: também o das bibliotecas, em inglês)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="mostra a versão e sai")


# A log record's prefix comes from its level; extra=NO_PREFIX marks a status line that is not an "Aviso".
LEVEL_PREFIXES = {logging.WARNING: "Aviso: ", logging.ERROR: "Erro: ", logging.CRITICAL: "Erro: "}
NO_PREFIX = {"prefix": ""}


class ConsoleFormatter(logging.Formatter):
    """One stderr line per record: ``2024-05-06 07:08:09 Aviso: …`` (local time; no time with ``stamp=False``)."""

    def __init__(self, stamp: bool = True) -> None:
        super().__init__("%(message)s", "%Y-%m-%d %H:%M:%S")
        self.stamp = stamp

    def format(self, record: logging.LogRecord) -> str:
        prefix = getattr(record, "prefix", LEVEL_PREFIXES.get(record.levelno, ""))
        when = f"{self.formatTime(record, self.datefmt)} " if self.stamp else ""
        return f"{when}{prefix}{super().format(record)}"


def configure_console(verbose: int, quiet: bool = False) -> None:
    """Log to stderr through ConsoleFormatter (``quiet``: warnings and errors only; -v: our diagnostics too;
    -vv: the libraries' as well)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # a hostile name must never crash a print
            stream.reconfigure(errors="backslashreplace")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # websockets dumps every frame, in English, and logs expected network failures with tracebacks: -vv only.
    logging.getLogger(f"{log.name}.websockets").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


def stop_signals() -> list[signal.Signals]:
    """The signals that stop a script cleanly: SIGINT and SIGTERM, but not a SIGINT that was ignored when the
    script started (a shell's ``trap "" INT``, nohup): by the Unix convention it stays ignored."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    return [signal.SIGTERM] if ignored else [signal.SIGINT, signal.SIGTERM]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_stoppable(command_line: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """What main() does: run ``command_line(argv)`` (its exit code) with SIGINT and SIGTERM raising
    KeyboardInterrupt until the event loop takes them over, and that interrupt as a quiet exit 0.

    Before main() runs -- the interpreter starting, the imports -- the signals still act the default way.
    The previous handlers come back at the end.
    """
    previous = {}
    for sig in stop_signals():
        with contextlib.suppress(ValueError):  # not the main thread (main() called by a test): leave them
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        return command_line(argv)
    except KeyboardInterrupt:  # stopped before the loop took the signals over (or without add_signal_handler)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ===========================================================================
# Shared section: end.
# ===========================================================================

# ---------------------------------------------------------------------------
# Wire format (pure: no I/O). Documented in README.md, section "Protocolo".
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Hello:
    client_id: str
    name: str
    root: str
    version: int


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    seq: int
    event: EventKind
    path: str
    is_dir: bool
    ts: datetime.datetime
    origin: Origin = "live"
    dest_path: str | None = None
    path_b64: str | None = None
    dest_path_b64: str | None = None


def _text(obj: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"campo '{key}' ausente ou não é texto")
    if len(value) > MAX_TEXT_CHARS:
        raise ProtocolError(f"campo '{key}' longo demais")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # json.loads accepts "\ud800"; such a string cannot be printed or re-encoded.
            raise ProtocolError(f"campo '{key}' tem surrogates isolados") from None
    return value


def _b64(obj: dict[str, Any], key: str) -> str | None:
    value = _text(obj, key, optional=True)
    if value is not None:
        try:
            base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise ProtocolError(f"campo '{key}' não é base64") from None
    return value


def _loads_object(text: str | bytes) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ProtocolError("mensagem binária; o protocolo usa texto", CLOSE_UNSUPPORTED)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("mensagem não é JSON válido") from None
    if not isinstance(obj, dict):
        raise ProtocolError("mensagem não é um objeto JSON")
    return obj


def parse_hello(text: str | bytes) -> Hello | None:
    """Return the hello that opens a protocol session, or None for any other message.

    A first message that is not a hello makes a plain text session (a user typing
    into a generic websocket client); a hello that is malformed is an error.
    """
    if not isinstance(text, str) or not text.startswith("{"):
        return None
    try:
        obj = _loads_object(text)
    except ProtocolError:
        return None
    if obj.get("type") != "hello":
        return None
    version = obj.get("version")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"versão de protocolo não suportada: {version!r}")
    client_id = _text(obj, "client_id")
    name = _text(obj, "name")
    root = _text(obj, "root")
    assert client_id is not None and name is not None and root is not None
    if not client_id:
        raise ProtocolError("campo 'client_id' vazio")
    return Hello(client_id=client_id, name=name, root=root, version=version)


def _parse_event(obj: object) -> Event:
    if not isinstance(obj, dict):
        raise ProtocolError("evento não é um objeto JSON")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise ProtocolError("campo 'seq' ausente ou fora do intervalo")
    kind = obj.get("event")
    if kind not in EVENT_KINDS:
        raise ProtocolError(f"tipo de evento desconhecido: {kind!r}"[:100])
    origin = obj.get("origin", "live")
    if origin not in ORIGINS:
        raise ProtocolError(f"origem desconhecida: {origin!r}"[:100])
    is_dir = obj.get("is_dir")
    if not isinstance(is_dir, bool):
        raise ProtocolError("campo 'is_dir' ausente ou não é booleano")
    ts_text = _text(obj, "ts")
    assert ts_text is not None
    ts = _parse_ts(ts_text)
    path = _text(obj, "path")
    assert path is not None
    dest_path = _text(obj, "dest_path", optional=True)
    if (kind == "moved") != (dest_path is not None):
        raise ProtocolError("'dest_path' é obrigatório em 'moved' e só nele")
    return Event(
        seq=seq,
        event=kind,
        path=path,
        is_dir=is_dir,
        ts=ts,
        origin=origin,
        dest_path=dest_path,
        path_b64=_b64(obj, "path_b64"),
        dest_path_b64=_b64(obj, "dest_path_b64"),
    )


@functools.lru_cache(maxsize=1024)  # the events of a batch mostly share one timestamp
def _parse_ts(text: str) -> datetime.datetime:
    try:
        ts = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError("campo 'ts' não é uma data ISO 8601") from None
    if ts.tzinfo is None:
        raise ProtocolError("campo 'ts' sem fuso horário")
    try:
        ts.astimezone()  # year 1 or 9999 in another time zone cannot be shown in local time
    except (OverflowError, ValueError):
        raise ProtocolError("campo 'ts' fora do intervalo") from None
    return ts


def parse_events(text: str | bytes) -> list[Event]:
    """Decode and validate an ``events`` message; raise ProtocolError if it is not one."""
    obj = _loads_object(text)
    if obj.get("type") != "events":
        raise ProtocolError(f"tipo de mensagem inesperado: {obj.get('type')!r}"[:100])
    raw = obj.get("events")
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("campo 'events' ausente ou vazio")
    events = [_parse_event(item) for item in raw]
    if any(a.seq >= b.seq for a, b in zip(events, events[1:], strict=False)):
        raise ProtocolError("números de sequência fora de ordem")
    return events


def encode_welcome(last_seq: int) -> str:
    """The server's answer to hello: the last seq it already handled for that client."""
    return json.dumps({"type": "welcome", "version": PROTOCOL_VERSION, "ack": last_seq})


def encode_ack(seq: int) -> str:
    """Cumulative acknowledgement: every event up to ``seq`` has been handled."""
    return f'{{"type":"ack","seq":{seq}}}'


# ---------------------------------------------------------------------------
# Output formatting (pure).
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def local_time(ts: datetime.datetime) -> str:
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=1024)
def iso_time(ts: datetime.datetime) -> str:
    return ts.isoformat(timespec="milliseconds")


def format_event(client: str, ev: Event) -> str:
    """One readable Portuguese line for an event, e.g. ``… [pc] arquivo criado: /x``."""
    what = describe_change(ev.event, ev.path, ev.is_dir, ev.dest_path, ev.origin)
    return f"{local_time(ev.ts)} [{escape(client)}] {what}"


def event_record(client: str, client_id: str, ev: Event) -> dict[str, Any]:
    """The ``--json`` object for an event (schema in README.md)."""
    record: dict[str, Any] = {
        "client": client,
        "client_id": client_id,
        "seq": ev.seq,
        "event": ev.event,
        "path": ev.path,
    }
    if ev.dest_path is not None:
        record["dest_path"] = ev.dest_path
    record["is_dir"] = ev.is_dir
    record["ts"] = iso_time(ev.ts)
    record["origin"] = ev.origin
    if ev.path_b64 is not None:
        record["path_b64"] = ev.path_b64
    if ev.dest_path_b64 is not None:
        record["dest_path_b64"] = ev.dest_path_b64
    return record


def format_text_message(peer: str, text: str | bytes, now: datetime.datetime) -> str:
    """A readable line for a message that is not our protocol."""
    shown = escape(text) if isinstance(text, str) else f"<{len(text)} bytes binários>"
    return f"{local_time(now)} [{escape(peer)}] mensagem: {shown}"


def text_record(peer: str, text: str | bytes, now: datetime.datetime) -> dict[str, Any]:
    record: dict[str, Any] = {"client": peer, "client_id": None, "event": "message"}
    if isinstance(text, str):
        record["text"] = text
    else:
        record["text"] = None
        record["data_b64"] = base64.b64encode(text).decode("ascii")
    record["ts"] = now.isoformat(timespec="milliseconds")
    return record


# json.dumps escapes only C0 controls; these would still reach a terminal that shows the output.
_JSON_UNSAFE = {code: f"\\u{code:04x}" for code in [*range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029]}
_JSON_UNSAFE |= {code: f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


_JSON_UNSAFE_FOUND = re.compile("[" + "".join(map(chr, _JSON_UNSAFE)) + "]")


def to_json_line(record: dict[str, Any]) -> str:
    """One JSON object on one line, UTF-8, with nothing a terminal would act on (the text stays exact)."""
    line = json.dumps(record, ensure_ascii=False, separators=(", ", ": "))
    return line.translate(_JSON_UNSAFE) if _JSON_UNSAFE_FOUND.search(line) else line


def close_reason(text: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8."""
    return text.encode("utf-8")[:123].decode("utf-8", "ignore")


def format_address(host: str, port: int, secure: bool = False) -> str:
    """``ws://host:port`` (``wss://`` with TLS), bracketing IPv6 literals."""
    scheme = "wss" if secure else "ws"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def check_request(headers: Headers | Mapping[str, str], token: str) -> tuple[int, str] | None:
    """Refuse a WebSocket handshake: (HTTP status, reason) for a foreign Origin or a wrong token.

    Browsers send Origin; a page of another site must never reach the server. Our
    client sends none, and a page served by this server itself has the same host.
    """
    try:
        origin, authorization = headers.get("Origin"), headers.get("Authorization")
    except MultipleValuesError:
        return 400, "cabeçalho repetido"
    if origin is not None:
        try:
            origin_host = urllib.parse.urlsplit(origin).netloc.lower()
        except ValueError:
            origin_host = ""
        if origin_host != (headers.get("Host") or "").lower():
            return 403, "origem não permitida"
    if token:
        given = (authorization or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogateescape")):
            return 401, "token ausente ou inválido"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_bind_error(exc: OSError, host: str, port: int) -> str:
    """A Portuguese, actionable sentence for a failed bind."""
    if exc.errno == errno.EADDRINUSE:
        return f"a porta {port} já está em uso em {host}; feche o outro programa ou use --port"
    if exc.errno == errno.EACCES:
        return f"sem permissão para usar a porta {port}; use uma porta acima de 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"o endereço {host} não pertence a esta máquina"
    if isinstance(exc, socket.gaierror):
        return f"endereço inválido: {host!r} ({exc.strerror})"
    return f"não foi possível escutar em {host}:{port}: {exc.strerror or exc}"


# ---------------------------------------------------------------------------
# I/O: the asyncio server.
# ---------------------------------------------------------------------------


class Output:
    """Writes events to stdout, one flush per batch so a burst costs one system call."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json

    def events(self, client: str, events: Iterable[Event], json_lines: list[str] | None) -> None:
        """Print events: their JSON lines (already made for the log) with --json, readable lines otherwise."""
        if self.as_json:
            self._write(json_lines if json_lines is not None else [])
        else:
            self._write([format_event(client, ev) for ev in events])

    def text(self, peer: str, message: str | bytes) -> None:
        now = datetime.datetime.now(datetime.UTC)
        if self.as_json:
            self._write([to_json_line(text_record(peer, message, now))])
        else:
            self._write([format_text_message(peer, message, now)])

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


class EventLog:
    """The durable log: one JSON line per event, on disk before the client gets its ack."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._appended = 0  # appends so far...
        self._synced = 0  # ...and how many of them an fsync has covered
        self._sync_task: asyncio.Task[None] | None = None
        self._file = open(path, "a+b")  # noqa: SIM115  # lives as long as the server
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")  # a line torn by a crash stays on its own line

    @staticmethod
    def last_seqs(path: str) -> dict[str, tuple[str, int]]:
        """client_id -> (name, highest seq) of every client in an existing log."""
        found: dict[str, tuple[str, int]] = {}
        try:
            with open(path, "rb") as file:
                for line in file:
                    try:
                        record = json.loads(line)
                        client_id, seq = record["client_id"], record["seq"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line, or a text message
                    if isinstance(client_id, str) and isinstance(seq, int) and seq > found.get(client_id, ("", 0))[1]:
                        found[client_id] = (str(record.get("client", "")), seq)
        except FileNotFoundError:
            pass
        return found

    def append(self, lines: Iterable[str]) -> None:
        """Write JSON lines; once this returns they survive the death of this process."""
        self._file.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self._file.flush()
        self._appended += 1

    async def synced(self) -> None:
        """Return once everything appended so far survives a crash of the machine too.

        Callers that arrive while an fsync runs wait for the next one, which covers all of
        them: one fsync per round, however many clients (group commit).
        """
        target = self._appended
        while self._synced < target:
            if self._sync_task is None:
                self._sync_task = asyncio.create_task(self._sync_once())
            await asyncio.shield(self._sync_task)

    async def _sync_once(self) -> None:
        covered = self._appended
        try:
            await asyncio.to_thread(os.fsync, self._file.fileno())  # the loop serves others meanwhile
        finally:
            self._sync_task = None
        self._synced = max(self._synced, covered)

    def close(self) -> None:
        self._file.close()


@dataclasses.dataclass
class ClientState:
    """What the server remembers of a client between its connections."""

    name: str
    last_seq: int = 0
    connection: ServerConnection | None = None


class MonitorServer:
    """Accepts monitor clients (and plain text clients) and prints what they send."""

    def __init__(self, output: Output, event_log: EventLog | None = None, token: str = "") -> None:
        self.output = output
        self.event_log = event_log
        self.token = token
        self.clients: collections.OrderedDict[str, ClientState] = collections.OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        if event_log is not None:
            for client_id, (name, seq) in EventLog.last_seqs(event_log.path).items():
                self.clients[client_id] = ClientState(name=name, last_seq=seq)

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Runs before the upgrade: a refused client gets a plain HTTP answer, never a WebSocket."""
        refusal = check_request(request.headers, self.token)
        if refusal is None:
            return None
        status, reason = refusal
        log.warning("conexão de %s recusada: %s", format_peer(ws.remote_address), reason)
        response = ws.respond(status, reason.capitalize() + ".\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def handler(self, ws: ServerConnection) -> None:
        peer = format_peer(ws.remote_address)
        try:
            first = await ws.recv()
            hello = parse_hello(first)
            if hello is None:
                await self._plain_session(ws, peer, first)
            else:
                await self._protocol_session(ws, peer, hello)
        except ConnectionClosed:
            pass
        except ProtocolError as exc:
            log.warning("%s violou o protocolo: %s", escape(peer), exc)
            await ws.close(exc.code, close_reason(str(exc)))
        except OSError as exc:
            # Writing the log failed (disk full...): no ack, so the client keeps the events and retries.
            log.error("não foi possível gravar o log: %s", exc.strerror or exc)
            await ws.close(CLOSE_INTERNAL, "erro ao gravar o log do servidor")
        except Exception as exc:  # a bug must cost one connection, never the server
            log.error(
                "Erro interno com %s: %r", escape(peer), exc, exc_info=log.isEnabledFor(logging.DEBUG), extra=NO_PREFIX
            )
            await ws.close(CLOSE_INTERNAL, "erro interno do servidor")

    async def _plain_session(self, ws: ServerConnection, peer: str, first: str | bytes) -> None:
        log.info("conexão de %s (mensagens de texto)", peer)
        try:
            self._text(peer, first)
            async for message in ws:
                self._text(peer, message)
        finally:
            log.info("conexão de %s encerrada", peer)

    def _text(self, peer: str, message: str | bytes) -> None:
        # Logged but not fsynced: nothing is acknowledged, and a flood must not stall the loop.
        if self.event_log is not None:
            now = datetime.datetime.now(datetime.UTC)
            self.event_log.append([to_json_line(text_record(peer, message, now))])
        self.output.text(peer, message)

    async def _protocol_session(self, ws: ServerConnection, peer: str, hello: Hello) -> None:
        state = self._register(ws, hello)
        label = f"{escape(hello.name)} (id {escape(hello.client_id[:8])}, {peer})"
        log.info("cliente conectado: %s monitorando %s", label, escape(hello.root))
        written = asyncio.Event()
        acker = asyncio.create_task(self._acknowledge(ws, state, written))
        acker.add_done_callback(lambda task: task.cancelled() or task.exception())  # seen even if never raised
        try:
            await ws.send(encode_welcome(state.last_seq))
            async for message in ws:
                if acker.done():
                    acker.result()  # the log could not be synced, or the connection is gone
                events = parse_events(message)
                fresh = [ev for ev in events if ev.seq > state.last_seq]
                if fresh:
                    json_lines = None
                    if self.event_log is not None or self.output.as_json:
                        json_lines = [to_json_line(event_record(hello.name, hello.client_id, ev)) for ev in fresh]
                    if self.event_log is not None and json_lines is not None:
                        # The log first: an event in it is never shown again, even if we die right
                        # after; the slow fsync comes later, so that window stays tiny.
                        self.event_log.append(json_lines)
                    self.output.events(hello.name, fresh, json_lines)
                    state.last_seq = fresh[-1].seq
                written.set()
        finally:
            acker.cancel()
            if state.connection is ws:
                state.connection = None
            log.info("cliente desconectado: %s", label)

    async def _acknowledge(self, ws: ServerConnection, state: ClientState, written: asyncio.Event) -> None:
        """Ack what was printed and logged, once it is on disk: one fsync covers every batch written
        meanwhile, by any client, so a slow disk costs latency, not throughput."""
        while True:
            await written.wait()
            written.clear()
            seq = state.last_seq
            if self.event_log is not None:
                await self.event_log.synced()
            await ws.send(encode_ack(seq))

    def _register(self, ws: ServerConnection, hello: Hello) -> ClientState:
        state = self.clients.pop(hello.client_id, None) or ClientState(name=hello.name)
        self.clients[hello.client_id] = state  # most recent last, for eviction
        while len(self.clients) > MAX_REMEMBERED_CLIENTS:
            self.clients.popitem(last=False)
        old, state.connection, state.name = state.connection, ws, hello.name
        if old is not None:
            # The client reconnected before its old connection timed out: close the
            # old one so a single connection at a time delivers its events, in order.
            task = asyncio.create_task(old.close(CLOSE_REPLACED, "substituída por nova conexão"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return state


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = HOST
    port: int = PORT
    as_json: bool = False
    log_path: str = EVENT_LOG
    keepalive: float = KEEPALIVE
    token: str = TOKEN
    cert: str = CERT_FILE
    key: str = KEY_FILE
    max_message: int = MAX_MESSAGE_SIZE
    open_timeout: float = OPEN_TIMEOUT


async def run_server(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; raise FatalError if the server cannot start."""
    tls = tls_context(settings.cert, settings.key) if settings.cert or settings.key else None
    event_log = open_event_log(settings.log_path) if settings.log_path else None
    try:
        monitor = MonitorServer(Output(sys.stdout, settings.as_json), event_log, settings.token)
        await serve_until_stopped(monitor, settings, tls)
    finally:
        if event_log is not None:
            event_log.close()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    if not (cert and key):
        raise FatalError("TLS precisa de --cert e --key juntos")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(f"não foi possível carregar o certificado {cert!r} e a chave {key!r}: {exc}") from exc
    return context


def open_event_log(path: str) -> EventLog:
    try:
        return EventLog(path)
    except OSError as exc:
        raise FatalError(f"não foi possível abrir o log {path!r}: {exc.strerror or exc}") from exc


async def serve_until_stopped(monitor: MonitorServer, settings: Settings, tls: ssl.SSLContext | None) -> None:
    host, port, keepalive = settings.host, settings.port, settings.keepalive
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals():  # not a SIGINT ignored at start: the quick start's ``trap "" INT``
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; non-main thread
            loop.add_signal_handler(sig, stop.set)
    try:
        server = await serve(
            monitor.handler,
            host,
            port,
            ssl=tls,
            process_request=monitor.process_request,
            max_size=settings.max_message,
            max_queue=MAX_QUEUED_MESSAGES,
            compression=None,  # loopback and LAN: deflate costs more CPU than it saves
            ping_interval=keepalive,
            ping_timeout=keepalive,
            close_timeout=keepalive,  # a dead client never answers the close either
            open_timeout=settings.open_timeout,
            logger=logging.getLogger("servidor.websockets"),
        )
    except OSError as exc:
        raise FatalError(describe_bind_error(exc, host, port)) from exc
    async with server:
        bound_port = server.sockets[0].getsockname()[1] if server.sockets else port
        log.info("Servidor WebSocket ouvindo em %s", format_address(host, bound_port, tls is not None))
        if not monitor.token and not is_loopback(host):
            log.warning(
                "sem token, qualquer um que alcance esta porta pode enviar eventos; defina %s ou --token.",
                TOKEN_ENV,
            )
        elif tls is None and not is_loopback(host):
            log.warning("sem TLS, o token e os eventos trafegam sem criptografia; use --cert e --key.")
        await stop.wait()
        log.info("Encerrando o servidor...")
    log.info("Servidor encerrado.")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("servidor.py", "Servidor WebSocket que mostra as mudanças enviadas por monitor_cliente.py.")
    parser.add_argument("--host", default=HOST, help="endereço onde escutar (0.0.0.0: todas as interfaces)")
    parser.add_argument("--port", type=int, default=PORT, help="porta TCP (0: uma porta livre qualquer)")
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="um objeto JSON por evento, por linha, em vez de texto"
    )
    parser.add_argument(
        "--log",
        default=EVENT_LOG,
        metavar="ARQUIVO",
        help="acrescenta cada evento a este arquivo (uma linha JSON, gravada em disco antes da confirmação)",
    )
    parser.add_argument("--token", default=None, help=f"segredo que os clientes devem apresentar (ou {TOKEN_ENV})")
    parser.add_argument("--cert", default=CERT_FILE, metavar="ARQUIVO", help="certificado TLS (PEM): serve wss://")
    parser.add_argument("--key", default=KEY_FILE, metavar="ARQUIVO", help="chave privada TLS (PEM)")
    parser.add_argument(
        "--keepalive",
        type=float,
        default=KEEPALIVE,
        metavar="SEGUNDOS",
        help="intervalo entre pings; sem resposta nesse tempo, a conexão é dada como perdida",
    )
    parser.add_argument(
        "--max-mensagem",
        dest="max_message",
        type=int,
        default=MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="tamanho máximo de uma mensagem",
    )
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=OPEN_TIMEOUT,
        metavar="SEGUNDOS",
        help="tempo para um cliente completar o handshake; depois disso a conexão é fechada",
    )
    add_console_options(parser, quiet_help="só avisos e erros no stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_stoppable(run_command_line, argv)  # a signal from the first line on ends the script quietly with 0


def run_command_line(argv: list[str] | None) -> int:
    speak_portuguese_argparse()
    args = build_parser().parse_args(argv)
    problem = missing_requirements()
    if problem is not None:
        print(f"Erro: {problem}", file=sys.stderr)
        return 1
    configure_console(args.verbose, args.quiet)
    if not 0 <= args.port <= 65535:
        print(f"Erro: porta inválida: {args.port} (use 0 a 65535)", file=sys.stderr)
        return 2
    if args.keepalive <= 0 or args.open_timeout <= 0 or args.max_message < 1024:
        print("Erro: --keepalive e --open-timeout devem ser positivos; --max-mensagem, ao menos 1024", file=sys.stderr)
        return 2
    try:
        token = token_from(args.token)
    except ValueError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        host=args.host,
        port=args.port,
        as_json=args.as_json,
        log_path=args.log,
        keepalive=args.keepalive,
        token=token,
        cert=args.cert,
        key=args.key,
        max_message=args.max_message,
        open_timeout=args.open_timeout,
    )
    try:
        asyncio.run(run_server(settings))
    except FatalError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
