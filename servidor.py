"""Servidor WebSocket que mostra, ao vivo, as mudanças enviadas por monitor_cliente.py.

Uso:
    python servidor.py                     # ws://localhost:8765
    python servidor.py --host 0.0.0.0      # aceita conexões de outras máquinas
    python servidor.py --port 0 --json     # porta livre; um objeto JSON por evento
    python servidor.py --banco eventos.db  # registro durável (SQLite); sobrevive a reinícios
    MONITOR_TOKEN=segredo python servidor.py --host 0.0.0.0 --cert cert.pem --key key.pem

A página ao vivo fica na mesma porta: http://localhost:8765/ no navegador (de outra máquina, só com um token).

Each message a client sends is printed on stdout, one line per event; connection
status goes to stderr. Clients of our protocol (see README) say ``hello`` first and
then send batches of numbered events, which this server acknowledges once the
transaction that stores them has committed (to the SQLite file of --banco, or to an
in-memory database without it) and they have been printed; any other text message is
printed as received, escaped. Resent events are recognised by (client id, seq) and
never shown twice, across restarts too when --banco is used. Each client's tree is
kept too, and a client speaking protocol 2 proves with a digest that it matches; one
speaking protocol 3 also says what each path is (type, size, mtime, mode, a link's target).

Only ``websockets`` and the standard library (``sqlite3`` included) are needed: copy
this file, run ``pip install websockets`` and start it.
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
import email.utils
import errno
import functools
import gc
import hashlib
import hmac
import http
import importlib.metadata
import io
import ipaddress
import json
import logging
import os
import pathlib
import queue
import re
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO, Literal, get_args

try:
    if __name__ == "__main__":  # a stop signal while the libraries load: a quiet exit 0 below (main() takes over)
        for _name in ("SIGTERM", "SIGHUP"):
            if getattr(signal, _name, None) and signal.getsignal(getattr(signal, _name)) is signal.SIG_DFL:
                signal.signal(getattr(signal, _name), signal.default_int_handler)
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers, MultipleValuesError
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request, Response
except ImportError as missing:  # ModuleNotFoundError too: a library missing, or one too old to have a name
    if __name__ != "__main__":
        raise
    library = (missing.name or "websockets").partition(".")[0]  # run as a script: a sentence, not a traceback
    if isinstance(missing, ModuleNotFoundError) and missing.name == library:
        sys.exit(f"Erro: falta a biblioteca {library} — instale com: pip install websockets watchdog")
    try:  # installed, without what this script imports (websockets.asyncio, a renamed class): an older version
        _found = f"{library} {importlib.metadata.version(library)}"
    except importlib.metadata.PackageNotFoundError:
        _found = f"{library} (de versão desconhecida)"
    sys.exit(
        f"Erro: {_found} é antigo demais; este script precisa de uma versão mais nova: "
        "pip install -U websockets watchdog"
    )
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    sys.exit(0)

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
OPEN_TIMEOUT = 10.0  # seconds for a client to finish the opening handshake, or be dropped
DATABASE = ""  # SQLite file of the durable record (events, clients, trees); "": in memory, lost at exit
RETENTION_DAYS = 0.0  # events stored more than this many days ago are deleted; 0: kept forever
MAX_EVENTS = 0  # events kept at most in DATABASE, the oldest deleted first; 0: no limit
MEMORY_MAX_EVENTS = 100_000  # the same limit without DATABASE (the in-memory record stays bounded)
MEMORY_MAX_BYTES = (
    64 * 1024 * 1024
)  # bytes of paths the in-memory record keeps at most, the oldest events deleted first
MEMORY_MAX_TEXTS = 10_000  # plain text messages the in-memory record keeps at most, the oldest deleted first
MEMORY_MAX_TEXT_BYTES = 8 * 1024 * 1024  # bytes of plain text messages the in-memory record keeps at most
MAX_REMEMBERED_CLIENTS = 10_000  # idle clients whose sequence numbers stay in memory (the database keeps all)
MEMORY_MAX_CLIENTS = 10_000  # client ids the in-memory record keeps; past it NEW ids are refused (never evicted)
MAX_CONNECTIONS = 1_000  # open connections at most; newcomers get HTTP 503 (also kept below RLIMIT_NOFILE)
FD_RESERVE = 64  # file descriptors kept free for the database, stdout, logs: the cap is RLIMIT_NOFILE - this
HELLO_MAX_SIZE = 64 * 1024  # bytes of a message before a valid hello (and of every message of a plain text session)
CONSOLE_BUFFER_BYTES = 1024 * 1024  # bytes waiting for stdout; with --banco, lines past it are dropped (and counted)
CONSOLE_STUCK = 0.05  # seconds one write to stdout may take before its reader counts as stuck (drops start)
CONSOLE_MAX_BYTES = 16 * 1024 * 1024  # bytes waiting for stdout at most, stuck or not (with --banco)
CONSOLE_CLOSE_TIMEOUT = 2.0  # seconds a stop waits for a stuck stdout before leaving its lines unprinted
MAX_ID_CHARS = 64  # longest client_id in a hello
MAX_NAME_CHARS = 256  # longest client name in a hello
MAX_ROOT_CHARS = 4096  # longest root in a hello
MIN_SECRET_CHARS = 32  # a hello's secret: at least 128 bits as hex
MAX_SECRET_CHARS = 128
WARNING_INTERVAL = 60.0  # seconds between two stderr lines about the same refused crowd (full server, cap)

PROTOCOL_VERSION = 3  # what this server speaks; it answers each client in the client's own version
PROTOCOL_VERSIONS = (
    1,
    2,
    3,
)  # 1: events only; 2: adds the tree digest and the manifest; 3: adds metadata (README, "Protocolo")
SCHEMA_VERSION = 2  # PRAGMA user_version of the database; an older one is migrated in place at start
COMMIT_RETRY_DELAY = 1.0  # seconds between attempts after a failed commit
FAILURE_REPORT_INTERVAL = 60.0  # seconds between two stderr lines about the same storage failure
CACHE_KIB = 16 * 1024  # SQLite's page cache (the default 2 MiB makes every index insert a cache miss)
RETENTION_CHUNK = 10_000  # rows deleted per retention transaction, so a commit never waits long
RETENTION_INTERVAL = 60.0  # seconds between two checks of RETENTION_DAYS
GC_YOUNG_OBJECTS = 50_000  # net new objects before a young garbage collection (CPython: 700; see collect_less)
MAX_PENDING_BATCHES = 16  # batches of one connection awaiting their commit before the server stops reading it
MAX_MANIFEST_ENTRIES = 2_000_000  # entries of one manifest at most (past it: 1008); a client's tree of 1 M is ~50 MB
MAX_MANIFEST_BYTES = 256 * 1024 * 1024  # bytes of paths of one manifest at most (past it: 1008)
DIGEST_MIN_INTERVAL = 2.0  # seconds between two digests computed for one connection; an earlier one waits
CLAIM_TIMEOUT = 10.0  # seconds a hello waits for its credential's commit before 1013 "tente mais tarde"
MAX_PENDING_BYTES = 64 * 1024 * 1024  # bytes of messages awaiting their commit, all connections: past it none is read
MAX_PENDING_TEXTS = 10_000  # plain text messages awaiting their commit; past it they are shown but not stored
FAIL_COMMIT_ENV = "SERVIDOR_TESTE_FALHA_COMMIT"  # test hook: while the file it names exists, commits fail
REQUIRED = [("websockets", (17, 0))]  # what this script was written and tested against
MAX_SEQ = 2**53  # largest integer every JSON parser keeps exactly
MAX_FILE_SIZE = 2**63  # largest ``size`` an event may say (bytes; protocol 3)
MAX_TEXT_CHARS = 16 * 1024  # longest path, name or id accepted in a message
CLOSE_POLICY = 1008  # RFC 6455: the message violates the protocol we speak (ProtocolError's default code)
CLOSE_UNSUPPORTED = 1003  # RFC 6455: binary frame on a text protocol
CLOSE_INTERNAL = 1011  # RFC 6455: the server hit an unexpected condition
CLOSE_REPLACED = 4000  # application code: the same client connected again
CLOSE_CREDENTIAL = 4001  # application code: the hello's secret does not prove the client_id
CLOSE_TRY_AGAIN = 1013  # RFC 6455 (IANA): try again later; the in-memory record has no room for a new client
VIEWER_PATH = "/ao-vivo"  # the live page's WebSocket (README, "A página ao vivo"); any other path is a monitor client
MAX_VIEWERS = 32  # pages open at once; more are closed with 1013
VIEWER_BACKLOG_MESSAGES = 256  # messages waiting for one slow page; past it: "N eventos omitidos" and a fresh state
VIEWER_BACKLOG_BYTES = 4 * 1024 * 1024  # characters of those messages, at most
VIEWER_RECENT_EVENTS = 200  # events a page gets when it opens (the latest stored)
VIEWER_MAX_CLIENTS = 200  # recently seen clients a page lists (the connected ones always)
VIEWER_MAX_ENTRIES = 1_000  # entries of one directory a page gets
VIEWER_MAX_HISTORY = 200  # events of one path's history a page gets (the latest)
VIEWER_REQUEST_INTERVAL = 0.2  # seconds between two tree/history reads of one page
VIEWER_AUTH_DELAY = 1.0  # seconds before a page's wrong token is answered (slows guessing)
VIEWER_CLOSE_TIMEOUT = 1.0  # seconds a stop waits for each page's close before cutting it (a page that never reads)
CLOSE_VIEWER_TOKEN = 4401  # application code: the page's token is missing or wrong
CLOSE_VIEWER_REMOTE = 4403  # application code: no token, and the page is on another machine
REMOTE_VIEWER_REASON = (  # the close reason of 4403, shown by the page
    "sem token, a página só atende esta máquina (localhost); para outra, inicie o servidor com --token"
)

log = logging.getLogger("servidor")

# ===========================================================================
# Shared section: begin. The same text, byte for byte, in servidor.py and monitor_cliente.py
# (tests/test_shared.py compares the two). Each script stands alone, so it is copied, not imported.
# ===========================================================================

EventKind = Literal["created", "modified", "deleted", "moved"]
# live: watchdog saw it; rescan, startup: a scan found it; resync: the server's own differences after a manifest
Origin = Literal["live", "rescan", "startup", "resync"]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
ORIGINS: tuple[Origin, ...] = get_args(Origin)
# What a path is (ECS file.type): "other" is a FIFO, a socket or a device.
FileType = Literal["file", "dir", "symlink", "other"]
FILE_TYPES: tuple[FileType, ...] = get_args(FileType)


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


# Characters that would move the cursor, recolour or reorder the terminal, break the line or hide
# text: C0/C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates, lone surrogates.
_UNSAFE = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029]
_UNSAFE += [*range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _UNSAFE}
_ESCAPES |= {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
# Undecodable filename bytes arrive as surrogateescape (U+DC80..U+DCFF): show the byte.
_ESCAPES |= {0xDC00 + byte: f"\\x{byte:02x}" for byte in range(0x80, 0x100)}


def escape(text: str) -> str:
    """Make ``text`` safe to print on a terminal: one line, no control sequences."""
    return text.translate(_ESCAPES)


_VERBS: dict[EventKind, str] = {"created": "criado", "modified": "modificado", "deleted": "excluído", "moved": "movido"}
_ORIGIN_NOTES: dict[Origin, str] = {
    "live": "",
    "rescan": " (varredura)",
    "startup": " (varredura inicial)",
    "resync": " (ressincronização)",
}


_NOUNS: dict[FileType, str] = {
    "file": "arquivo",
    "dir": "diretório",
    "symlink": "link simbólico",
    "other": "arquivo especial",
}


def describe_change(
    kind: EventKind, path: str, file_type: FileType, dest_path: str | None, origin: Origin, attrib: bool = False
) -> str:
    """What happened, in Portuguese, paths escaped: ``arquivo movido: /w/a -> /w/b (varredura)``.

    ``attrib``: only metadata changed (chmod, chown, touch), shown as ``... modificado (atributos): /w/a``.
    """
    verb = _VERBS[kind] + (" (atributos)" if attrib else "")
    line = f"{_NOUNS[file_type]} {verb}: {escape(path)}"
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
        # A flag without a value (nargs 0: -q, -v, --json) has no default worth showing; 0 is one (0 == False).
        shown_default = (
            action.nargs != 0 and action.default is not None and action.default not in ("", argparse.SUPPRESS)
        )
        if shown_default and "%(default)" not in text:
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
    """The signals that stop a script cleanly: SIGTERM, SIGINT (Ctrl-C) and SIGHUP (the terminal closed), but
    not a SIGINT or SIGHUP that was ignored when the script started (a shell's ``trap "" INT``, nohup): by the
    Unix convention it stays ignored. SIGHUP does not exist on Windows."""
    optional = [getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name)]
    return [signal.SIGTERM, *(sig for sig in optional if signal.getsignal(sig) is not signal.SIG_IGN)]


# Portuguese for the system errors a user can meet (a missing file, a full disk...); strerror is English.
_OS_ERRORS = {
    errno.ENOENT: "arquivo ou diretório não encontrado",
    errno.EACCES: "sem permissão",
    errno.EPERM: "operação não permitida",
    errno.EISDIR: "é um diretório",
    errno.ENOTDIR: "um componente do caminho não é um diretório",
    errno.ENOSPC: "disco cheio",
    errno.EROFS: "sistema de arquivos somente leitura",
    errno.EDQUOT: "cota de disco esgotada",
    errno.EMFILE: "arquivos abertos demais neste processo",
    errno.ENFILE: "arquivos abertos demais no sistema",
    errno.ENAMETOOLONG: "nome longo demais",
    errno.ELOOP: "links simbólicos demais no caminho",
    errno.EIO: "erro de entrada e saída do disco",
    errno.EEXIST: "já existe",
    errno.EBUSY: "em uso",
    errno.EPIPE: "a saída foi fechada",
    errno.ECONNRESET: "conexão interrompida pelo outro lado",
    errno.ECONNABORTED: "conexão abortada",
    errno.ENETUNREACH: "rede inalcançável",
    errno.EHOSTUNREACH: "máquina inalcançável",
    errno.ETIMEDOUT: "tempo esgotado",
}
# OpenSSL's reasons for a certificate or key file that cannot be used.
_SSL_ERRORS = {
    "KEY_VALUES_MISMATCH": "a chave não corresponde ao certificado",
    "NO_START_LINE": "não é um arquivo PEM",
    "PEM_LIB": "não é um arquivo PEM válido",
    "NO_CERTIFICATE_OR_CRL_FOUND": "nenhum certificado no arquivo",
    "BAD_END_LINE": "arquivo PEM incompleto",
    "CA_MD_TOO_WEAK": "certificado assinado com um algoritmo fraco demais",
    "EE_KEY_TOO_SMALL": "chave pequena demais",
}


def describe_os_error(exc: BaseException) -> str:
    """A Portuguese reason for an OSError or ssl.SSLError (never the English strerror), e.g. ``sem permissão``.

    An errno without a translation shows its symbolic name (``erro do sistema EXDEV``), which a user can search.
    """
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        return _SSL_ERRORS.get(reason, f"erro de TLS {reason}" if reason else "erro de TLS")
    if isinstance(exc, OSError) and exc.errno is not None:
        return _OS_ERRORS.get(exc.errno) or f"erro do sistema {errno.errorcode.get(exc.errno, exc.errno)}"
    return str(exc) or type(exc).__name__


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


# Protocol version 2's tree digest (README, "Protocolo"): both sides must hash an entry the same way.
DIGEST_MODULUS = 2**64


def entry_hash(path: bytes, is_dir: bool) -> int:
    """The 64-bit hash of one tree entry: the first 8 bytes (big-endian) of SHA-256(b"d\\0" or b"f\\0" + path).

    ``path`` is the entry's exact absolute path in bytes (``path_b64`` decoded, else the UTF-8 of
    ``path``). A tree's digest is (number of entries, sum of their hashes modulo 2**64): the order
    does not matter, and adding or removing an entry changes it in O(1) on both sides.
    """
    return int.from_bytes(hashlib.sha256((b"d\0" if is_dir else b"f\0") + path).digest()[:8], "big")


# ===========================================================================
# Shared section: end.
# ===========================================================================

# ---------------------------------------------------------------------------
# Wire format (pure: no I/O). Documented in README.md, section "Protocolo".
# ---------------------------------------------------------------------------


PathStyle = Literal["posix", "windows"]
PATH_STYLES: dict[PathStyle, type[pathlib.PurePath]] = {
    "posix": pathlib.PurePosixPath,
    "windows": pathlib.PureWindowsPath,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Hello:
    client_id: str
    name: str
    root: str
    version: int
    secret_hash: bytes | None = None  # SHA-256 of the hello's secret (version 2); the secret itself is not kept
    path_style: PathStyle = "posix"  # how the client's paths are judged (README, "Protocolo")


# Not frozen (hashable all the same): a frozen dataclass's __init__ costs 1.5 µs per event, a tenth of the server's
# budget in a burst. Nothing changes an Event once made.
@dataclasses.dataclass(slots=True, unsafe_hash=True)
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
    # Protocol version 3's metadata, named after ECS file.* fields (README, "Protocolo"); None: not known (an
    # older client, or lstat failed). They describe the destination of a move.
    type: FileType | None = None
    size: int | None = None  # bytes (st_size; a symlink's: the length of its target)
    mtime: datetime.datetime | None = None  # UTC
    mode: str | None = None  # permission bits as octal text, e.g. "0644"
    target_path: str | None = None  # a symlink's target, as the client's os.readlink gives it
    target_path_b64: str | None = None  # its exact bytes, when they are not UTF-8
    sha256: str | None = None  # 64 lowercase hex digits (the client's --hash)
    attrib: bool = False  # a modified event where only metadata changed (chmod, chown, touch)
    # The client's text of mtime when it is exactly what iso_mtime(mtime) writes (None: not kept, format it):
    # the record and --json use it instead of formatting the datetime again.
    mtime_text: str | None = dataclasses.field(default=None, compare=False, repr=False)


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
    if type(version) is not int or version not in PROTOCOL_VERSIONS:
        spoken = ", ".join(map(str, PROTOCOL_VERSIONS[:-1])) + f" e {PROTOCOL_VERSIONS[-1]}"
        raise ProtocolError(f"versão de protocolo não suportada (este servidor fala {spoken}): {version!r}")
    client_id = _text(obj, "client_id")
    name = _text(obj, "name")
    root = _text(obj, "root")
    assert client_id is not None and name is not None and root is not None
    if not client_id:
        raise ProtocolError("campo 'client_id' vazio")
    for key, value, longest in (("client_id", client_id, MAX_ID_CHARS), ("name", name, MAX_NAME_CHARS)):
        if len(value) > longest:
            raise ProtocolError(f"campo '{key}' longo demais (máximo {longest} caracteres)")
    if len(root) > MAX_ROOT_CHARS:
        raise ProtocolError(f"campo 'root' longo demais (máximo {MAX_ROOT_CHARS} caracteres)")
    style = _path_style(obj, root, version)
    if not _is_absolute(root, style):
        raise ProtocolError("campo 'root' não é um caminho absoluto")
    secret_hash = None
    if version >= 2:
        secret = obj.get("secret")
        if (
            not isinstance(secret, str)
            or re.fullmatch(f"[0-9a-f]{{{MIN_SECRET_CHARS},{MAX_SECRET_CHARS}}}", secret) is None
        ):
            raise ProtocolError(
                f"campo 'secret' ausente ou inválido ({MIN_SECRET_CHARS} a {MAX_SECRET_CHARS} dígitos hexadecimais)"
            )
        secret_hash = hash_secret(secret)
    return Hello(client_id, name, root, version, secret_hash, style)


def hash_secret(secret: str) -> bytes:
    """What the server keeps of a client's secret: its SHA-256 (compared with hmac.compare_digest)."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def _path_style(obj: dict[str, Any], root: str, version: int) -> PathStyle:
    """Version 2 says ``path_style`` (default posix); a version 1 root is judged by its looks (``C:\\`` is Windows)."""
    if version >= 2:
        style = obj.get("path_style", "posix")
        if type(style) is not str or style not in PATH_STYLES:  # a list or object is unhashable: no dict lookup
            raise ProtocolError("campo 'path_style' deve ser 'posix' ou 'windows'")
        return style
    if not root.startswith("/") and pathlib.PureWindowsPath(root).is_absolute():
        return "windows"
    return "posix"


def _is_absolute(path: str, style: PathStyle) -> bool:
    pure = PATH_STYLES[style](path)
    return pure.is_absolute() and ".." not in pure.parts


@functools.lru_cache(maxsize=64)
def _root_of(root: str, style: PathStyle) -> tuple[pathlib.PurePath, str]:
    pure = PATH_STYLES[style](root)
    return pure, str(pure).rstrip("/") + "/"


def inside_root(path: str, root: str, style: PathStyle) -> bool:
    """Whether ``path`` is ``root`` or below it: absolute, normalised (no ``.`` or ``..`` component, no empty one,
    no trailing separator), judged as ``style`` paths."""
    pure_root, prefix = _root_of(root, style)
    if style == "posix" and path.startswith(prefix) and "/." not in path and "//" not in path:
        return not path.endswith("/") or path == "/"  # the common case without pathlib
    pure = PATH_STYLES[style](path)
    if str(pure) != (path if style == "posix" else path.replace("/", "\\")):
        return False  # "/w/", "/w//x", "/w/./x", "C:\\w\\": not as the client's system writes it
    return pure.is_absolute() and ".." not in pure.parts and (pure == pure_root or pure.is_relative_to(pure_root))


def check_paths(hello: Hello, paths: Iterable[tuple[str, str | None]]) -> None:
    """ProtocolError (1008) unless every (text, base64) path is under the client's root (README, "Protocolo")."""
    root, style = hello.root, hello.path_style
    for text, b64 in paths:
        # The exact bytes, shown as the client shows bytes that are not UTF-8 (its root is sent that way too).
        exact = text if b64 is None else exact_path(text, b64).decode("utf-8", "backslashreplace")
        if not inside_root(text, root, style) or (exact is not text and not inside_root(exact, root, style)):
            raise ProtocolError(f"caminho fora da raiz do cliente ou não normalizado: {text!r}"[:100])
        if exact != text:
            raise ProtocolError(f"'path_b64' não confere com o caminho {text!r}"[:100])


def check_event_paths(hello: Hello, events: list[Event]) -> None:
    """``check_paths(hello, event_paths(events))``, the burst's usual batch in one pass: posix paths without base64
    or move that inside_root's own fast branch accepts (under the root's prefix, no ``/.``, ``//`` or trailing
    ``/``); any other batch goes through check_paths (tests/test_burst.py compares both)."""
    if hello.path_style == "posix":
        prefix = _root_of(hello.root, "posix")[1]
        for ev in events:
            path = ev.path
            if (
                ev.path_b64 is not None
                or ev.dest_path is not None
                or not path.startswith(prefix)
                or "/." in path
                or "//" in path
                or path.endswith("/")
            ):
                break
        else:
            return
    check_paths(hello, event_paths(events))


def event_paths(events: Iterable[Event]) -> Iterator[tuple[str, str | None]]:
    for ev in events:
        yield ev.path, ev.path_b64
        if ev.dest_path is not None:
            yield ev.dest_path, ev.dest_path_b64


_FAST_KINDS = ("created", "modified", "deleted")  # the kinds without dest_path
# iso_mtime's form, the hour 00 to 23: a text fromisoformat reads back as exactly this text. Python 3.14+ also
# reads T24:00 (the next day's midnight), which the record writes as 00:00 of that day: not kept. Any other field
# out of its range is refused by fromisoformat (the general path's message then).
_CANONICAL_UTC = re.compile(r"\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):\d\d:\d\d\.\d{6}\+00:00", re.ASCII)


def _parse_event(obj: object, version: int) -> Event:
    """One event of an ``events`` message; ProtocolError (1008) if it is wrong.

    The hot path of a burst: the common shape (no move, no base64, no symlink target, no attrib; an mtime in the
    form iso_mtime writes) is checked with few operations; anything else, and every error, goes through
    _checked_event, the general path, so the result and the message are the same (tests/test_protocol.py
    compares both on fuzzed and hostile inputs).
    """
    if type(obj) is not dict:  # JSON gives exact dicts, ints, strs: type() is enough
        return _checked_event(obj, version)
    get = obj.get
    seq, kind, origin, is_dir = get("seq"), get("event"), get("origin", "live"), get("is_dir")
    ts_text, path = get("ts"), get("path")
    if not (
        type(seq) is int
        and 1 <= seq <= MAX_SEQ
        and kind in _FAST_KINDS
        and origin in ORIGINS
        and type(is_dir) is bool
        and type(ts_text) is str
        and type(path) is str
        and len(path) <= MAX_TEXT_CHARS
        and len(ts_text) <= MAX_TEXT_CHARS
        and path.isascii()
        and ts_text.isascii()
        and get("dest_path") is None
        and get("path_b64") is None
        and get("dest_path_b64") is None
    ):
        return _checked_event(obj, version)
    try:
        ts = _parse_ts(ts_text)
    except ProtocolError:
        return _checked_event(obj, version)
    if version < 3:
        return Event(seq, kind, path, is_dir, ts, origin)
    file_type, size, mtime_text, mode, sha256 = get("type"), get("size"), get("mtime"), get("mode"), get("sha256")
    mtime = None
    if mtime_text is not None:
        if type(mtime_text) is not str or _CANONICAL_UTC.fullmatch(mtime_text) is None:
            return _checked_event(obj, version)
        try:
            mtime = datetime.datetime.fromisoformat(mtime_text)
        except ValueError:
            return _checked_event(obj, version)
        if not 1 < mtime.year < 9999:  # _parse_ts's range checks matter at the ends only
            return _checked_event(obj, version)
    if not (
        file_type in FILE_TYPES
        and is_dir == (file_type == "dir")
        and (size is None or (type(size) is int and 0 <= size <= MAX_FILE_SIZE))
        and (mode is None or (type(mode) is str and _MODE.fullmatch(mode) is not None))
        and (sha256 is None or (type(sha256) is str and _SHA256.fullmatch(sha256) is not None))
        and get("target_path") is None
        and get("target_path_b64") is None
        and "attrib" not in obj
    ):
        return _checked_event(obj, version)
    return Event(
        seq, kind, path, is_dir, ts, origin, None, None, None, file_type, size, mtime, mode, None, None, sha256,
        False, mtime_text,
    )  # fmt: skip


def _checked_event(obj: object, version: int) -> Event:
    """_parse_event's general path: every key checked in turn, with the message of the first that is wrong."""
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
        seq,
        kind,
        path,
        is_dir,
        ts,
        origin,
        dest_path,
        _b64(obj, "path_b64"),
        _b64(obj, "dest_path_b64"),
        *(_metadata(obj, kind, is_dir) if version >= 3 else ()),
    )


_MODE = re.compile("[0-7]{3,6}")
_SHA256 = re.compile("[0-9a-f]{64}")
Metadata = tuple[FileType, int | None, datetime.datetime | None, str | None, str | None, str | None, str | None, bool]


def _metadata(obj: dict[str, Any], kind: EventKind, is_dir: bool) -> Metadata:
    """An event's protocol 3 keys, in Event's field order (README, "Protocolo"); ProtocolError (1008) if one is
    wrong. ``type`` is required, the others optional (absent or null: not known)."""
    file_type = obj.get("type")
    if file_type not in FILE_TYPES:
        raise ProtocolError(f"campo 'type' ausente ou desconhecido: {file_type!r}"[:100])
    if is_dir != (file_type == "dir"):
        raise ProtocolError(f"campo 'is_dir' não confere com 'type' {file_type!r}")
    size = obj.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_SIZE):
        raise ProtocolError(f"campo 'size' não é um inteiro de 0 a {MAX_FILE_SIZE}")
    mtime_text = _text(obj, "mtime", optional=True)
    mtime = None if mtime_text is None else _parse_ts(mtime_text, "mtime").astimezone(datetime.UTC)
    mode = obj.get("mode")
    if mode is not None and (not isinstance(mode, str) or _MODE.fullmatch(mode) is None):
        raise ProtocolError("campo 'mode' não tem de 3 a 6 dígitos octais")
    target_path = _text(obj, "target_path", optional=True)
    target_path_b64 = _b64(obj, "target_path_b64")
    if target_path_b64 is not None and (
        target_path is None or exact_path("", target_path_b64).decode("utf-8", "backslashreplace") != target_path
    ):
        raise ProtocolError("'target_path_b64' não confere com 'target_path'")
    sha256 = obj.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None):
        raise ProtocolError("campo 'sha256' não tem 64 dígitos hexadecimais minúsculos")
    if "attrib" in obj and (obj["attrib"] is not True or kind != "modified"):
        raise ProtocolError("campo 'attrib' só pode ser true, e só em 'modified'")
    return file_type, size, mtime, mode, target_path, target_path_b64, sha256, "attrib" in obj


@functools.lru_cache(maxsize=1024)  # the events of a batch mostly share one timestamp
def _parse_ts(text: str, key: str = "ts") -> datetime.datetime:
    """A timestamp field (``ts``, ``mtime``): ISO 8601 with a time zone, shown in UTC and in local time."""
    try:
        ts = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"campo '{key}' não é uma data ISO 8601") from None
    if ts.tzinfo is None:
        raise ProtocolError(f"campo '{key}' sem fuso horário")
    try:
        ts.astimezone()  # year 1 or 9999 in another time zone cannot be shown in local time
        ts.astimezone(datetime.UTC)
    except (OverflowError, ValueError):
        raise ProtocolError(f"campo '{key}' fora do intervalo") from None
    return ts


def parse_events(text: str | bytes, version: int = 2) -> list[Event]:
    """Decode and validate an ``events`` message as ``version`` has it; raise ProtocolError if it is not one.

    Version 2 (the default) reads the keys every version has and ignores any other; version 3 requires
    ``type`` and reads the metadata keys.
    """
    return _events_from(_loads_object(text), version)


def _events_from(obj: dict[str, Any], version: int) -> list[Event]:
    if obj.get("type") != "events":
        raise ProtocolError(f"tipo de mensagem inesperado: {obj.get('type')!r}"[:100])
    raw = obj.get("events")
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("campo 'events' ausente ou vazio")
    events = [_parse_event(item, version) for item in raw]
    if any(a.seq >= b.seq for a, b in zip(events, events[1:], strict=False)):
        raise ProtocolError("números de sequência fora de ordem")
    return events


def encode_welcome(last_seq: int, version: int) -> str:
    """The server's answer to hello, in the client's ``version``: the last seq it already stored for that client."""
    return json.dumps({"type": "welcome", "version": version, "ack": last_seq})


def encode_ack(seq: int) -> str:
    """Cumulative acknowledgement: every event up to ``seq`` has been handled."""
    return f'{{"type":"ack","seq":{seq}}}'


# Protocol version 2: the tree digest and the manifest (README, "Protocolo").


@dataclasses.dataclass(frozen=True, slots=True)
class Digest:
    """A tree's set digest: ``count`` entries whose entry_hash values add up to ``sum`` (mod 2**64)."""

    count: int
    sum: int

    @classmethod
    def of(cls, entries: Iterable[tuple[bytes, bool]]) -> Digest:
        count = total = 0
        for path, is_dir in entries:
            count, total = count + 1, total + entry_hash(path, is_dir)
        return cls(count, total % DIGEST_MODULUS)


@dataclasses.dataclass(frozen=True, slots=True)
class DigestReport:
    """``digest``: the client's tree after every event up to ``seq`` (all of them acknowledged)."""

    seq: int
    digest: Digest


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestBegin:
    """A resync starts: the entries that follow are the client's whole tree as of ``seq``."""

    seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """One batch of a manifest: (exact path, is_dir) of each entry."""

    entries: list[tuple[bytes, bool]]


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestEnd:
    """The manifest is complete; ``digest`` is what its entries add up to."""

    digest: Digest


class ManifestProgress:
    """Where one connection is in a manifest: none open, or open as of ``seq`` with so many entries and path
    bytes so far (capped: MAX_MANIFEST_ENTRIES, MAX_MANIFEST_BYTES). Each step raises ProtocolError out of order."""

    def __init__(self) -> None:
        self.seq: int | None = None  # a manifest is being received, as of this seq
        self._entries = 0
        self._bytes = 0

    def outside(self, what: str) -> None:
        """ProtocolError if ``what`` (a message kind) comes while a manifest is open."""
        if self.seq is not None:
            raise ProtocolError(f"{what} no meio de um manifesto")

    def begin(self, message: ManifestBegin, stored_seq: int) -> None:
        if self.seq is not None:
            raise ProtocolError("'manifest_begin' repetido")
        if message.seq < stored_seq:
            raise ProtocolError(f"manifesto do seq {message.seq}, mas o servidor já tem até {stored_seq}")
        self.seq, self._entries, self._bytes = message.seq, 0, 0

    def add(self, message: Manifest) -> None:
        if self.seq is None:
            raise ProtocolError("'manifest' sem 'manifest_begin'")
        self._entries += len(message.entries)
        self._bytes += sum(len(path) for path, _ in message.entries)
        if self._entries > MAX_MANIFEST_ENTRIES or self._bytes > MAX_MANIFEST_BYTES:
            raise ProtocolError(
                f"manifesto grande demais (máximo {MAX_MANIFEST_ENTRIES} entradas, "
                f"{MAX_MANIFEST_BYTES} bytes de caminhos)"
            )

    def end(self) -> int:
        """Close the manifest; the seq it was opened as of."""
        if self.seq is None:
            raise ProtocolError("'manifest_end' sem 'manifest_begin'")
        seq, self.seq = self.seq, None
        return seq


ClientMessage = list[Event] | DigestReport | ManifestBegin | Manifest | ManifestEnd


def exact_path(text: str, b64: str | None) -> bytes:
    """A path's exact bytes: its ``_b64`` form decoded when present, else the UTF-8 of its text."""
    return base64.b64decode(b64) if b64 is not None else text.encode("utf-8")


def wire_path(path: bytes) -> tuple[str, str | None]:
    """The text and (for bytes that are not UTF-8) base64 forms of a path, as a client would send them."""
    try:
        return path.decode("utf-8"), None
    except UnicodeDecodeError:
        return path.decode("utf-8", "backslashreplace"), base64.b64encode(path).decode("ascii")


def _count(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise ProtocolError(f"campo '{key}' ausente ou fora do intervalo")
    return value


def _digest(obj: dict[str, Any]) -> Digest:
    total = obj.get("sum")
    if not isinstance(total, str) or re.fullmatch("[0-9a-f]{16}", total) is None:
        raise ProtocolError("campo 'sum' deve ter 16 dígitos hexadecimais minúsculos")
    return Digest(_count(obj, "count"), int(total, 16))


def _parse_entry(obj: object) -> tuple[bytes, bool]:
    if not isinstance(obj, dict):
        raise ProtocolError("entrada do manifesto não é um objeto JSON")
    is_dir = obj.get("is_dir")
    if not isinstance(is_dir, bool):
        raise ProtocolError("campo 'is_dir' ausente ou não é booleano")
    path = _text(obj, "path")
    assert path is not None
    return exact_path(path, _b64(obj, "path_b64")), is_dir


def parse_message(text: str | bytes, version: int = PROTOCOL_VERSION) -> ClientMessage:
    """Decode what a client sends after hello; ProtocolError for anything its ``version`` does not have."""
    obj = _loads_object(text)
    kind = obj.get("type")
    if kind == "events" or version < 2:
        return _events_from(obj, version)
    if kind == "digest":
        return DigestReport(_count(obj, "seq"), _digest(obj))
    if kind == "manifest_begin":
        return ManifestBegin(_count(obj, "seq"))
    if kind == "manifest":
        raw = obj.get("entries")
        if not isinstance(raw, list):
            raise ProtocolError("campo 'entries' ausente")
        return Manifest([_parse_entry(item) for item in raw])
    if kind == "manifest_end":
        return ManifestEnd(_digest(obj))
    raise ProtocolError(f"tipo de mensagem inesperado: {kind!r}"[:100])


def encode_digest_answer(kind: str, seq: int, digest: Digest) -> str:
    """``verified`` (the trees agree as of ``seq``) or ``resync`` (send the manifest); ``digest``: the server's."""
    return json.dumps({"type": kind, "seq": seq, "count": digest.count, "sum": f"{digest.sum:016x}"})


# ---------------------------------------------------------------------------
# Output formatting (pure).
# ---------------------------------------------------------------------------


def local_time(ts: datetime.datetime) -> str:
    """``ts`` in the local time zone, to the second: ``2026-11-29 11:23:00``."""
    if type(ts.tzinfo) is not datetime.timezone:  # naive, or an offset that depends on fold (which == ignores)
        return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return _local_time(ts)


@functools.lru_cache(maxsize=1024)  # by the instant alone (fixed offsets): the text depends on nothing else
def _local_time(ts: datetime.datetime) -> str:
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ts: datetime.datetime) -> str:
    """``ts`` as ISO 8601 with milliseconds, in its own offset: ``2026-11-29T11:23:00.123-03:00``."""
    tz = ts.tzinfo
    if tz is not None and type(tz) is not datetime.timezone:  # an offset that may depend on fold: not cached
        return ts.isoformat(timespec="milliseconds")
    return _iso_time(ts, tz)


# Keyed by the time zone too, like every cache here whose key's == is looser than its text: two aware datetimes of
# one instant are equal (and hash alike) whatever their offsets; two datetime.timezone are equal only for the same
# offset, all that isoformat writes of them (tests/test_burst.py, AUDITED_CACHES).
@functools.lru_cache(maxsize=1024)
def _iso_time(ts: datetime.datetime, tz: datetime.tzinfo | None) -> str:
    return ts.isoformat(timespec="milliseconds")


_SIZE_UNITS = ("kB", "MB", "GB", "TB", "PB", "EB")


def human_size(n: int) -> str:
    """``n`` bytes (>= 0) for a person: decimal units (1 kB = 1000 B), one decimal from kB up, rounded half up,
    Portuguese decimal comma: ``0 B``, ``999 B``, ``1,0 kB``, ``1,2 MB`` (1.2 × 10⁶ B), ``9,2 EB`` (2**63).
    A value that rounds to 1000 of a unit is shown in the next one (999 950 B: ``1,0 MB``)."""
    if n < 1000:
        return f"{n} B"
    if n < 999_950:  # kB, a burst's usual file: the loop's first step without the loop
        tenths = (n + 50) // 100
        return f"{tenths // 10},{tenths % 10} kB"
    scale = 1
    for unit in _SIZE_UNITS:
        scale *= 1000
        tenths = (n * 10 + scale // 2) // scale  # integers: exact for any size
        if tenths < 10_000 or unit == _SIZE_UNITS[-1]:
            break
    return f"{tenths // 10},{tenths % 10} {unit}"


def file_type_of(ev: Event) -> FileType:
    """What the event's path is: the client's ``type`` (protocol 3), else what ``is_dir`` says."""
    return ev.type or ("dir" if ev.is_dir else "file")


def format_event(client: str, ev: Event) -> str:
    """One readable Portuguese line for an event, e.g. ``… [pc] arquivo criado: /x (1,2 MB)``: a file's size when
    known, a symbolic link's target (``-> alvo``), escaped like the paths."""
    file_type = ev.type or ("dir" if ev.is_dir else "file")  # file_type_of(ev)
    if ev.dest_path is None and ev.path.isascii() and ev.path.isprintable():
        # escape() leaves printable ASCII as it is: describe_change's line without its translate(), a third of
        # the cost (the hot path of a burst; tests/test_burst.py compares both on fuzzed paths)
        verb = _VERBS[ev.event] + (" (atributos)" if ev.attrib else "")
        what = f"{_NOUNS[file_type]} {verb}: {ev.path}{_ORIGIN_NOTES[ev.origin]}"
    else:
        what = describe_change(ev.event, ev.path, file_type, ev.dest_path, ev.origin, ev.attrib)
    if file_type == "file" and ev.size is not None:
        what += f" ({human_size(ev.size)})"
    elif file_type == "symlink" and ev.target_path is not None:
        what += f" -> {escape(ev.target_path)}"
    ts = ev.ts  # local_time(ts) without its call (a fixed offset, as parsed: cached by the instant alone)
    when = _local_time(ts) if type(ts.tzinfo) is datetime.timezone else local_time(ts)
    return f"{when} [{_escaped_name(client)}] {what}"


_escaped_name = functools.lru_cache(maxsize=256)(escape)  # a client's name, the same for a whole batch


def iso_mtime(mtime: datetime.datetime) -> str:
    """An mtime as protocol 3 writes it: ISO 8601 in UTC, with microseconds."""
    if mtime.tzinfo is not datetime.UTC:  # parsed ones are UTC already: a third of the cost is this conversion
        mtime = mtime.astimezone(datetime.UTC)
    return mtime.isoformat(timespec="microseconds")


def _mtime_text(ev: Event) -> str | None:
    """``iso_mtime(ev.mtime)``: the client's own text when it was already in that form (None: no mtime)."""
    return ev.mtime_text or (None if ev.mtime is None else iso_mtime(ev.mtime))


def metadata_items(ev: Event) -> list[tuple[str, str | int]]:
    """The protocol 3 keys of an event that are known, as ``--json`` shows them, in the protocol's order
    (``attrib`` only when true; none for an older client's event)."""
    items: list[tuple[str, str | int]] = []
    for key, value in (
        ("type", ev.type),
        ("size", ev.size),
        ("mtime", _mtime_text(ev)),
        ("mode", ev.mode),
        ("target_path", ev.target_path),
        ("target_path_b64", ev.target_path_b64),
        ("sha256", ev.sha256),
        ("attrib", True if ev.attrib else None),
    ):
        if value is not None:
            items.append((key, value))
    return items


def event_record(client: str, client_id: str, ev: Event) -> dict[str, Any]:
    """The ``--json`` object for an event (schema in README.md)."""
    record: dict[str, Any] = {
        "client": client,
        "client_id": client_id,
        "seq": ev.seq or None,  # a resync's differences are the server's, numbered by no client
        "event": ev.event,
        "path": ev.path,
    }
    if ev.dest_path is not None:
        record["dest_path"] = ev.dest_path
    record["is_dir"] = ev.is_dir
    record.update(metadata_items(ev))
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
    return _terminal_safe(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")))


_json_string = json.encoder.encode_basestring  # json.dumps' own string encoder (ensure_ascii=False): C when available


def _json_ts(ts: datetime.datetime) -> str:
    """``json.dumps(iso_time(ts))``."""
    tz = ts.tzinfo
    if tz is not None and type(tz) is not datetime.timezone:  # see iso_time
        return _json_string(ts.isoformat(timespec="milliseconds"))
    return _json_iso_time(ts, tz)


@functools.lru_cache(maxsize=1024)  # keyed by the time zone too (see _iso_time)
def _json_iso_time(ts: datetime.datetime, tz: datetime.tzinfo | None) -> str:
    return _json_string(ts.isoformat(timespec="milliseconds"))


def event_lines(client: str, client_id: str, events: Iterable[Event]) -> list[str]:
    """``to_json_line(event_record(client, client_id, ev))`` for each event, byte for byte, a few times faster.

    The hot path of ``--json``: the keys and the client's part are encoded once per batch, each string
    by json.dumps' own encoder; tests/test_protocol.py compares both on hostile inputs.
    """
    head = f'{{"client": {_json_string(client)}, "client_id": {_json_string(client_id)}, "seq": '
    lines = []
    ts, ts_json = None, ""
    for ev in events:
        if ev.ts is not ts:  # a batch's events mostly share one ts object (_parse_ts's cache): one lookup for them
            ts, ts_json = ev.ts, _json_ts(ev.ts)
        if ev.mtime_text is not None and ev.size is not None and ev.mode is not None and ev.type is not None:
            if (
                ev.dest_path is None
                and ev.path_b64 is None
                and ev.target_path is None
                and ev.sha256 is None
                and not ev.attrib
                and ev.seq
            ):
                # A burst's usual event in one piece: kind, type and origin are words of the protocol, and the
                # mtime text is iso_mtime's (digits and -T:.+): json.dumps writes them as they are.
                lines.append(
                    f'{head}{ev.seq}, "event": "{ev.event}", "path": {_json_string(ev.path)}, "is_dir": '
                    f'{"true" if ev.is_dir else "false"}, "type": "{ev.type}", "size": {ev.size}, "mtime": '
                    f'"{ev.mtime_text}", "mode": {_json_string(ev.mode)}, "ts": {ts_json}, "origin": '
                    f'"{ev.origin}"}}'
                )
                continue
        line = f'{head}{ev.seq or "null"}, "event": {_json_string(ev.event)}, "path": {_json_string(ev.path)}'
        if ev.dest_path is not None:
            line += f', "dest_path": {_json_string(ev.dest_path)}'
        line += f', "is_dir": {"true" if ev.is_dir else "false"}'
        line += _metadata_json(ev)
        line += f', "ts": {ts_json}'
        line += f', "origin": {_json_string(ev.origin)}'
        if ev.path_b64 is not None:
            line += f', "path_b64": {_json_string(ev.path_b64)}'
        if ev.dest_path_b64 is not None:
            line += f', "dest_path_b64": {_json_string(ev.dest_path_b64)}'
        lines.append(line + "}")
    if not client.isascii() or not client_id.isascii():  # every line is non-ASCII: no need to look
        return [_terminal_safe(line) for line in lines]
    return [line if line.isascii() and "\x7f" not in line else _terminal_safe(line) for line in lines]


def _metadata_json(ev: Event) -> str:
    """``metadata_items(ev)`` as the ``--json`` line writes them, without the list it builds ("" for none)."""
    part = "" if ev.type is None else f', "type": {_json_string(ev.type)}'
    if ev.size is not None:
        part += f', "size": {ev.size}'
    if ev.mtime is not None:
        part += f', "mtime": {_json_string(ev.mtime_text or iso_mtime(ev.mtime))}'
    for key, value in (("mode", ev.mode), ("target_path", ev.target_path), ("target_path_b64", ev.target_path_b64)):
        if value is not None:
            part += f', "{key}": {_json_string(value)}'
    if ev.sha256 is not None:
        part += f', "sha256": {_json_string(ev.sha256)}'
    return part + (', "attrib": true' if ev.attrib else "")


def _terminal_safe(line: str) -> str:
    return line.translate(_JSON_UNSAFE) if _JSON_UNSAFE_FOUND.search(line) else line


def close_reason(text: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8."""
    return text.encode("utf-8")[:123].decode("utf-8", "ignore")


def format_address(host: str, port: int, secure: bool = False) -> str:
    """``ws://host:port`` (``wss://`` with TLS), bracketing IPv6 literals."""
    scheme = "wss" if secure else "ws"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def page_url(host: str, port: int, secure: bool = False) -> str:
    """The live page's address for the start-up line: ``http://localhost:8765/`` (``https://`` with TLS); a
    wildcard host (0.0.0.0, ::) is shown as localhost, where the page is always served."""
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (a name shown, not bound)
    return format_address(shown, port).replace("ws://", "https://" if secure else "http://", 1) + "/"


def format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def check_origin(headers: Headers | Mapping[str, str], *, local_name: bool) -> tuple[int, str] | None:
    """Refuse a browser's handshake: (HTTP status, reason) for a foreign Origin, or (``local_name``) for a Host that
    is not a loopback name.

    Browsers send Origin; a page of another site must never reach the server. Our client sends none, and a page
    served by this server itself has the same host. A site whose name resolves to 127.0.0.1 (DNS rebinding) passes
    "Origin equals Host": without a token, a browser may reach the server only by a loopback name.
    """
    try:
        origin, host = headers.get("Origin"), headers.get("Host")
    except MultipleValuesError:
        return 400, "cabeçalho repetido"
    if origin is None:
        return None
    try:
        origin_host = urllib.parse.urlsplit(origin).netloc.lower()
    except ValueError:
        origin_host = ""
    if origin_host != (host or "").lower():
        return 403, "origem não permitida"
    if local_name and not is_loopback(host_name(host)):
        return 403, "nome de host não permitido sem token"
    return None


def check_request(headers: Headers | Mapping[str, str], token: str) -> tuple[int, str] | None:
    """Refuse a monitor client's handshake: (HTTP status, reason) for a browser's (check_origin; without a token, by
    a loopback name only) or a wrong token. Our clients send no Origin and pass from anywhere."""
    refusal = check_origin(headers, local_name=not token)
    if refusal is not None or not token:
        return refusal
    try:
        authorization = headers.get("Authorization")
    except MultipleValuesError:
        return 400, "cabeçalho repetido"
    given = (authorization or "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogateescape")):
        return 401, "token ausente ou inválido"
    return None


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8, ::1, and an IPv4-mapped ::ffff:127.x.y.y (a dual-stack socket's IPv4 peer)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # Python 3.11's is_loopback misses it
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def describe_bind_error(exc: OSError, host: str, port: int) -> str:
    """A Portuguese, actionable sentence for a failed bind."""
    if exc.errno == errno.EADDRINUSE:
        return f"a porta {port} já está em uso em {host}; feche o outro programa ou use --port"
    if exc.errno == errno.EACCES:
        return f"sem permissão para usar a porta {port}; use uma porta acima de 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"o endereço {host} não pertence a esta máquina"
    if isinstance(exc, socket.gaierror):
        return f"endereço inválido: {host!r} (nome não encontrado)"
    return f"não foi possível escutar em {host}:{port}: {describe_os_error(exc)}"


# ---------------------------------------------------------------------------
# The live page: its routes and the /ao-vivo wire format (pure). README, "A página ao vivo".
# ---------------------------------------------------------------------------

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def is_upgrade(headers: Headers) -> bool:
    """Whether a request asks for a WebSocket (a monitor client, a page's /ao-vivo) rather than a file."""
    return any("websocket" in value.lower() for value in headers.get_all("Upgrade"))


def route_of(request: Request) -> str:
    """A request's path without its query string."""
    return request.path.partition("?")[0]


class PageAssets:
    """The page's three files (constants of this script, identical for everyone: they hold no data), answered to a
    plain HTTP GET (or HEAD: the same without the body) with a strict CSP, nosniff and an ETag (``no-cache``:
    revalidated, 304 when unchanged); 404 for any other path, 405 for any other method."""

    def __init__(self, files: Mapping[str, tuple[str, str]]) -> None:
        """``files``: URL path -> (content type, text)."""
        self._files: dict[str, tuple[str, bytes, str]] = {}
        for path, (content_type, text) in files.items():
            body = text.encode("utf-8")
            self._files[path] = (content_type, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def answer(self, request: Request) -> Response:
        if request.method == "HEAD":  # the GET answer's headers (its Content-Length too), without the body
            answer = self.answer(dataclasses.replace(request, method="GET"))
            return dataclasses.replace(answer, body=b"")
        if request.method != "GET":
            return self._response(405, "Método não permitido; use GET ou HEAD.\n", [("Allow", "GET, HEAD")])
        found = self._files.get(route_of(request))
        if found is None:
            return self._response(404, "Não encontrado.\n")
        content_type, body, etag = found
        extra = [("ETag", etag), ("Cache-Control", "no-cache")]
        if etag in request.headers.get_all("If-None-Match"):
            return self._response(304, None, extra)
        return self._response(200, body, [*extra, ("Content-Type", content_type)])

    @staticmethod
    def _response(status: int, body: str | bytes | None, extra: list[tuple[str, str]] | None = None) -> Response:
        # Built whole: assigning a header of Headers appends, and two Content-Length make Chromium refuse the answer.
        data = body.encode("utf-8") if isinstance(body, str) else body or b""
        headers = [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Security-Policy", PAGE_CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            *(extra or []),
        ]
        if isinstance(body, str):
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        if status != 304:
            headers.append(("Content-Length", str(len(data))))
        return Response(status, http.HTTPStatus(status).phrase, Headers(headers), data)


def host_name(host_header: str | None) -> str:
    """The name in a ``Host`` header (``localhost:8765``, ``[::1]:8765``), lower case; "" when it has none."""
    try:
        return urllib.parse.urlsplit("//" + (host_header or "")).hostname or ""
    except ValueError:
        return ""


def check_viewer(headers: Headers, token: str) -> tuple[int, str] | None:
    """Refuse a page's /ao-vivo handshake: (HTTP status, reason). The Origin rule of check_request (the token is
    asked in-band, never in a header). Without a token, a foreign Host name (DNS rebinding, or another machine) is
    NOT refused here: ViewerSession accepts it and closes with 4403 and a reason the page can show (an HTTP
    refusal reaches a page only as "connection failed"), sending nothing before."""
    return check_origin(headers, local_name=False)


@dataclasses.dataclass(frozen=True, slots=True)
class ViewerAuth:
    token: str


@dataclasses.dataclass(frozen=True, slots=True)
class ViewerQuery:
    """A page's ``tree`` or ``history`` request: ``path`` as its exact bytes."""

    kind: Literal["tree", "history"]
    id: int
    client_id: str
    path: bytes


def parse_viewer_request(text: str | bytes) -> ViewerAuth | ViewerQuery:
    """A page's message (README, "A página ao vivo"); ProtocolError (1008, 1003 for binary) otherwise. The reasons
    never quote the page's text (it may hold a token)."""
    obj = _loads_object(text)
    kind = obj.get("type")
    if kind == "auth":
        token = obj.get("token")
        if not isinstance(token, str) or len(token) > MAX_TEXT_CHARS:
            raise ProtocolError("campo 'token' ausente ou inválido")
        return ViewerAuth(token)
    if kind not in ("tree", "history"):
        raise ProtocolError("tipo de pedido desconhecido")
    request_id = obj.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool) or not 1 <= request_id <= MAX_SEQ:
        raise ProtocolError("campo 'id' ausente ou fora do intervalo")
    client_id, path = _text(obj, "client_id"), _text(obj, "path")
    assert client_id is not None and path is not None
    return ViewerQuery(kind, request_id, client_id, exact_path(path, _b64(obj, "path_b64")))


def encode_events(lines: list[str]) -> str:
    """The ``events`` message: ``--json`` lines as they are, never re-encoded."""
    return '{"type": "events", "events": [' + ", ".join(lines) + "]}"


def encode_state(server: dict[str, Any], clients: list[dict[str, Any]], lines: list[str]) -> str:
    head = json.dumps({"type": "state", "server": server, "clients": clients})
    return head[:-1] + ', "events": [' + ", ".join(lines) + "]}"


def encode_answer(kind: str, request: ViewerQuery, items: list[str], truncated: bool, **extra: Any) -> str:
    """A ``tree`` (items: its entries) or ``history`` (items: ``--json`` lines) answer, JSON items as they are."""
    text, b64 = wire_path(request.path)
    head: dict[str, Any] = {"type": kind, "id": request.id, "client_id": request.client_id, "path": text}
    if b64 is not None:
        head["path_b64"] = b64
    key = "entries" if kind == "tree" else "events"
    body = json.dumps(head | extra | {"truncated": truncated})
    return body[:-1] + f', "{key}": [' + ", ".join(items) + "]}"


def encode_error(message: str, request_id: int | None = None) -> str:
    return json.dumps({"type": "error", "message": message} | ({} if request_id is None else {"id": request_id}))


def tree_entry(path: bytes, name: bytes, is_dir: bool, row: tuple[Any, ...] | None) -> str:
    """One ``tree`` entry (JSON): ``row`` is the tree's (type, size, mtime) of it, None for a directory that has
    entries below it and no row of its own."""
    entry: dict[str, Any] = {}
    for key, value in (("name", name), ("path", path)):
        entry[key], b64 = wire_path(value)
        if b64 is not None:
            entry[key + "_b64"] = b64
    file_type, size, mtime = row or (None, None, None)
    entry["type"] = file_type or ("dir" if is_dir else "file")
    if size is not None:
        entry["size"] = int(size)
    if mtime is not None:
        entry["mtime"] = iso_mtime(datetime.datetime.fromtimestamp(mtime, datetime.UTC))
    return json.dumps(entry, ensure_ascii=False)


def remote_viewer_refused(address: Any, token: str, host_header: str | None = "localhost") -> bool:
    """Without a token a page is served to this machine only, by a loopback name: a peer ``address`` (a socket's)
    that is not loopback, or a ``Host`` that is not a loopback name (DNS rebinding), is refused (4403, with a
    reason the page shows: an HTTP refusal would reach it as "connection failed")."""
    if token:
        return False
    return not (isinstance(address, tuple) and is_loopback(str(address[0])) and is_loopback(host_name(host_header)))


def style_of_root(root: str) -> PathStyle:
    """How a stored client's paths are written, judged by its root (``C:\\w`` is Windows)."""
    return _path_style({}, root, 1)


# The page's files, served as they are (PageAssets). Names reach the page's DOM only as text (textContent).

PAGE_HTML = r"""<!DOCTYPE html>
<html lang="pt-BR">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Monitor de diretórios — ao vivo</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/pagina.css">
<script src="/pagina.js" defer></script>
</head>
<body>
<header>
  <h1>Monitor de diretórios <span class="sub">ao vivo</span></h1>
  <p id="conexao" class="estado" role="status" aria-live="polite">Conectando…</p>
</header>

<div id="aviso" class="aviso" role="alert" hidden></div>

<form id="form-token" class="token" hidden>
  <label for="token">Este servidor exige um token para mostrar os eventos.</label>
  <input id="token" type="password" autocomplete="current-password" required>
  <button type="submit">Entrar</button>
  <p id="token-erro" class="erro" hidden></p>
  <p class="nota">O token fica só nesta aba (sessionStorage) e nunca vai para a URL.</p>
</form>

<main id="conteudo">
  <section id="clientes" aria-labelledby="t-clientes">
    <h2 id="t-clientes">Clientes</h2>
    <table>
      <thead>
        <tr>
          <th>Nome</th><th>Pasta monitorada</th><th>Endereço</th><th>Conectado desde</th>
          <th>Eventos</th><th>Último evento</th><th>Resumo da árvore</th><th>Eventos/s (5 min)</th>
        </tr>
      </thead>
      <tbody id="lista-clientes"></tbody>
    </table>
    <p id="sem-clientes" class="vazio">Nenhum cliente visto ainda.</p>
  </section>

  <section id="ao-vivo" aria-labelledby="t-eventos">
    <h2 id="t-eventos">Eventos</h2>
    <div class="filtros">
      <label>Cliente <select id="filtro-cliente"><option value="">todos</option></select></label>
      <label>Tipo
        <select id="filtro-tipo">
          <option value="">todos</option>
          <option value="created">criado</option>
          <option value="modified">modificado</option>
          <option value="deleted">excluído</option>
          <option value="moved">movido</option>
        </select>
      </label>
      <label>Caminho contém <input id="filtro-caminho" type="search"></label>
      <button id="pausa" type="button" aria-pressed="false">Pausar</button>
      <span id="pendentes" class="nota"></span>
    </div>
    <ol id="eventos" class="eventos" reversed></ol>
  </section>

  <section id="arvore" aria-labelledby="t-arvore">
    <h2 id="t-arvore">Árvore</h2>
    <div class="filtros">
      <label>Cliente <select id="arvore-cliente"><option value="">—</option></select></label>
      <nav id="arvore-caminho" class="trilha" aria-label="Caminho"></nav>
    </div>
    <table>
      <thead><tr><th>Nome</th><th>Tipo</th><th>Tamanho</th><th>Modificado em</th></tr></thead>
      <tbody id="arvore-entradas"></tbody>
    </table>
    <p id="arvore-nota" class="nota"></p>
  </section>

  <section id="historico" aria-labelledby="t-historico">
    <h2 id="t-historico">Histórico</h2>
    <p id="historico-caminho" class="nota">Clique num caminho para ver o histórico dele.</p>
    <table>
      <thead><tr><th>Quando</th><th>O quê</th><th>Caminho</th><th>Tamanho</th><th>Origem</th></tr></thead>
      <tbody id="historico-eventos"></tbody>
    </table>
  </section>
</main>
</body>
</html>
"""

PAGE_CSS = r""":root {
  --fundo: #f7f7f5;
  --texto: #1d1d1b;
  --fraco: #6b6b66;
  --linha: #d9d9d3;
  --ok: #1a7f37;
  --erro: #b42318;
  --destaque: #0b57d0;
  --esc: #8a3ffc;
  font-family: system-ui, sans-serif;
  font-size: 14px;
  color: var(--texto);
  background: var(--fundo);
}
body { margin: 0 auto; max-width: 1200px; padding: 0 1rem 2rem; }
header { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; flex-wrap: wrap; }
h1 { font-size: 1.4rem; margin: 1rem 0 0.5rem; }
h1 .sub { color: var(--fraco); font-weight: normal; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--linha); padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { font-weight: 600; color: var(--fraco); }
.estado { margin: 0; padding: 0.2rem 0.6rem; border-radius: 1rem; background: var(--linha); }
.estado.conectado { background: #dafbe1; color: var(--ok); }
.estado.fora { background: #ffebe9; color: var(--erro); }
.aviso {
  border: 1px solid var(--erro); background: #ffebe9; color: var(--erro); padding: 0.5rem 0.75rem; margin: 0.5rem 0;
}
.token { border: 1px solid var(--linha); background: #fff; padding: 0.75rem; margin: 0.5rem 0; }
.token input { margin: 0 0.5rem; }
.erro { color: var(--erro); }
.nota, .vazio { color: var(--fraco); }
.filtros { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: center; margin-bottom: 0.5rem; }
.eventos {
  list-style: none; margin: 0; padding: 0; max-height: 28rem; overflow-y: auto;
  border: 1px solid var(--linha); background: #fff;
}
.eventos li { padding: 0.15rem 0.5rem; border-bottom: 1px solid var(--linha); font-family: ui-monospace, monospace; }
.eventos li .hora { color: var(--fraco); margin-right: 0.5rem; }
.eventos li .cliente { font-weight: 600; margin-right: 0.5rem; }
.eventos li .tipo-created { color: var(--ok); }
.eventos li .tipo-deleted { color: var(--erro); }
.eventos li .tipo-moved { color: var(--destaque); }
.caminho { font-family: ui-monospace, monospace; word-break: break-all; }
a.caminho, button.link {
  color: var(--destaque); cursor: pointer; background: none; border: 0; padding: 0; font: inherit; text-align: left;
}
button.link:hover { text-decoration: underline; }
.esc { color: var(--esc); background: #f1e8ff; border-radius: 2px; }
.confere { color: var(--ok); }
.difere { color: var(--erro); }
.desconectado { color: var(--fraco); }
.trilha button { margin-right: 0.25rem; }
svg.taxa { display: block; }
svg.taxa .eixo { stroke: var(--linha); }
svg.taxa .serie { fill: none; stroke: var(--destaque); stroke-width: 1.5; }
[hidden] { display: none !important; }
"""

PAGE_JS = r"""// The live page of servidor.py: reads /ao-vivo (README, "A página ao vivo") and shows it.
// Every name from the server reaches the DOM through textContent or a text node, never as HTML.
"use strict";

(() => {
  const MAX_ROWS = 500; // event rows in the DOM at most
  const MAX_KEPT = 2000; // events kept in memory for the filters (and while paused)
  const CHART_BUCKET_MS = 5000; // one point of the events-per-second chart
  const CHART_POINTS = 60; // 60 x 5 s: the last five minutes
  const RETRY_MS = [1000, 2000, 4000, 8000, 10000];
  const REFUSED_RETRY_MS = 60000; // after a refusal with a reason (4403, 1013): the server said why
  const TOKEN_KEY = "monitor-token"; // sessionStorage only: never the URL, never persistent storage
  const CLOSE_TOKEN = 4401; // the token is missing or wrong
  const CLOSE_REMOTE = 4403; // a viewer on another machine, and the server has no token
  const GOING_AWAY = 1001; // the server stops: it is gone, whatever the reason says

  const KINDS = { created: "criado", modified: "modificado", deleted: "excluído", moved: "movido" };
  const NOUNS = { file: "arquivo", dir: "diretório", symlink: "link simbólico", other: "arquivo especial" };
  const ORIGINS = {
    live: "",
    rescan: " (varredura)",
    startup: " (varredura inicial)",
    resync: " (ressincronização)",
  };

  // The history's "Origem" column: the stream's names, on their own.
  const originName = (origin) =>
    origin === "live" ? "ao vivo" : ORIGINS[origin] ? ORIGINS[origin].slice(2, -1) : String(origin || "");

  const $ = (id) => document.getElementById(id);
  const view = {
    status: $("conexao"),
    notice: $("aviso"),
    tokenForm: $("form-token"),
    tokenInput: $("token"),
    tokenError: $("token-erro"),
    clients: $("lista-clientes"),
    noClients: $("sem-clientes"),
    events: $("eventos"),
    filterClient: $("filtro-cliente"),
    filterKind: $("filtro-tipo"),
    filterPath: $("filtro-caminho"),
    pause: $("pausa"),
    pending: $("pendentes"),
    treeClient: $("arvore-cliente"),
    treeTrail: $("arvore-caminho"),
    treeEntries: $("arvore-entradas"),
    treeNote: $("arvore-nota"),
    historyPath: $("historico-caminho"),
    historyEvents: $("historico-eventos"),
  };

  const state = {
    ws: null,
    token: null, // in memory; sessionStorage keeps it across reloads of this tab only
    attempt: 0,
    retryTimer: null,
    offlineSince: null,
    clients: new Map(), // client_id -> the server's client object
    kept: [], // events and markers, oldest first
    paused: false,
    unseen: 0, // events that arrived while paused
    rates: new Map(), // client_id -> Map(bucket -> events)
    charts: new Map(), // client_id -> its <polyline>
    nextId: 1,
    treeStack: [], // [{name, path, path_b64}] from the root down
    treeRequest: 0,
    historyRequest: 0,
  };

  // ---- Names: escaped like the server's console (servidor.py, escape) -------------------------

  function unsafe(code) {
    return (
      code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0x061c || code === 0x200e || code === 0x200f ||
      code === 0x2028 || code === 0x2029 || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)
    );
  }

  function escapeOf(code) {
    if (code === 0x09) return "\\t";
    if (code === 0x0a) return "\\n";
    if (code === 0x0d) return "\\r";
    if (code >= 0xdc80 && code <= 0xdcff) return "\\x" + (code - 0xdc00).toString(16); // an undecodable byte
    const hex = code.toString(16).padStart(code < 0x100 ? 2 : 4, "0");
    return (code < 0x100 ? "\\x" : "\\u") + hex;
  }

  // [[escaped, text], ...]: plain runs and the escapes of unsafe characters and lone surrogates.
  function pieces(text, out = []) {
    let run = "";
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0xd800 && code < 0xdc00 && i + 1 < text.length) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next < 0xe000) {
          run += text[i] + text[i + 1];
          i++;
          continue;
        }
      }
      if (unsafe(code) || (code >= 0xd800 && code < 0xe000)) {
        if (run) out.push([false, run]);
        out.push([true, escapeOf(code)]);
        run = "";
      } else {
        run += text[i];
      }
    }
    if (run) out.push([false, run]);
    return out;
  }

  // The exact bytes of a path that is not UTF-8 (its _b64 form): valid UTF-8 as text, other bytes as \xNN.
  function bytePieces(b64) {
    let bytes;
    try {
      bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    } catch (err) {
      return [[true, "\\?"]];
    }
    const out = [];
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let start = 0;
    const flush = (end) => {
      if (end > start) pieces(decoder.decode(bytes.subarray(start, end)), out);
    };
    let i = 0;
    while (i < bytes.length) {
      const length = utf8Length(bytes, i);
      if (length) {
        i += length;
      } else {
        flush(i);
        out.push([true, "\\x" + bytes[i].toString(16).padStart(2, "0")]);
        i++;
        start = i;
      }
    }
    flush(bytes.length);
    return out;
  }

  // Length of the well-formed UTF-8 sequence at i (RFC 3629), 0 if there is none.
  function utf8Length(b, i) {
    const c = b[i];
    const cont = (k) => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
      const d = b[i + 1];
      const ok = c === 0xe0 ? d >= 0xa0 : c === 0xed ? d < 0xa0 : true;
      return ok && cont(1) && cont(2) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
      const d = b[i + 1];
      const ok = c === 0xf0 ? d >= 0x90 : c === 0xf4 ? d < 0x90 : true;
      return ok && cont(1) && cont(2) && cont(3) ? 4 : 0;
    }
    return 0;
  }

  // Append a name to el: text nodes, and each escape in a <span class="esc"> so it shows.
  function appendName(el, text, b64) {
    const parts = b64 ? bytePieces(b64) : pieces(String(text ?? ""));
    for (const [escaped, part] of parts) {
      if (escaped) {
        const span = document.createElement("span");
        span.className = "esc";
        span.textContent = part;
        el.append(span);
      } else {
        el.append(document.createTextNode(part));
      }
    }
    return el;
  }

  function plainName(text, b64) {
    return (b64 ? bytePieces(b64) : pieces(String(text ?? ""))).map((p) => p[1]).join("");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- Formats ---------------------------------------------------------------------------------

  // Decimal units and a decimal comma, like the server's console: 999 B, 1,0 kB, 1,2 MB.
  function formatSize(size) {
    if (typeof size !== "number") return "";
    if (size < 1000) return `${size} B`;
    const units = ["kB", "MB", "GB", "TB", "PB", "EB"];
    let value = size / 1000;
    let unit = 0;
    while (value >= 999.95 && unit < units.length - 1) {
      value /= 1000;
      unit++;
    }
    return `${value.toFixed(1).replace(".", ",")} ${units[unit]}`;
  }

  function formatTime(iso, withDate) {
    if (!iso) return "—";
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    return withDate ? when.toLocaleString("pt-BR") : when.toLocaleTimeString("pt-BR");
  }

  function describe(ev) {
    if (ev.event === "message") return "mensagem: ";
    const noun = NOUNS[ev.type] || (ev.is_dir ? NOUNS.dir : NOUNS.file);
    const verb = (KINDS[ev.event] || String(ev.event)) + (ev.attrib ? " (atributos)" : "");
    return `${noun} ${verb}: `;
  }

  // ---- Connection ------------------------------------------------------------------------------

  function socketUrl() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ao-vivo`;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    const ws = new WebSocket(socketUrl());
    state.ws = ws;
    ws.addEventListener("message", (msg) => {
      if (state.ws === ws) receive(msg.data);
    });
    ws.addEventListener("close", (closing) => {
      if (state.ws === ws) closed(closing.code, closing.reason);
    });
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function closed(code, reason) {
    state.ws = null;
    if (code === CLOSE_TOKEN) {
      forgetToken();
      askToken(reason || "Token inválido.");
      setStatus("Token necessário", "fora");
      return;
    }
    if (code === CLOSE_REMOTE) {
      // Refused on purpose: retrying soon would only be refused again (and fill the server's log).
      showNotice(
        `${reason || "O servidor só mostra os eventos para esta mesma máquina."} ` +
          "Para ver de outra máquina, inicie o servidor com um token (MONITOR_TOKEN ou --token)."
      );
      setStatus("Acesso recusado", "fora");
      state.retryTimer = setTimeout(connect, REFUSED_RETRY_MS);
      return;
    }
    const delay = RETRY_MS[Math.min(state.attempt, RETRY_MS.length - 1)];
    state.attempt++;
    if (reason && code !== GOING_AWAY) {
      // Closed on purpose, with a reason (1013 full, 1008 ...): that, not "the server is gone".
      showNotice(`O servidor encerrou a conexão: ${reason}. Nova tentativa em ${Math.round(delay / 1000)} s…`);
      setStatus("Conexão recusada", "fora");
      state.retryTimer = setTimeout(connect, delay);
      return;
    }
    if (state.offlineSince === null) state.offlineSince = new Date();
    showNotice(
      `Sem conexão com o servidor desde ${state.offlineSince.toLocaleTimeString("pt-BR")}. ` +
        `Tentando reconectar em ${Math.round(delay / 1000)} s…`
    );
    setStatus("Servidor fora do ar", "fora");
    state.retryTimer = setTimeout(connect, delay);
  }

  function setStatus(text, kind) {
    view.status.textContent = text;
    view.status.className = `estado ${kind || ""}`;
  }

  function showNotice(text) {
    view.notice.textContent = text;
    view.notice.hidden = !text;
  }

  // ---- Token -----------------------------------------------------------------------------------

  function storedToken() {
    if (state.token) return state.token;
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (err) {
      return null;
    }
  }

  function forgetToken() {
    state.token = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      // storage disabled: the token was in memory only
    }
  }

  function askToken(error) {
    view.tokenError.textContent = error || "";
    view.tokenError.hidden = !error;
    view.tokenForm.hidden = false;
    view.tokenInput.focus();
  }

  view.tokenForm.addEventListener("submit", (submit) => {
    submit.preventDefault(); // no navigation: the token goes over the socket only
    const token = view.tokenInput.value;
    view.tokenInput.value = "";
    if (!token) return;
    state.token = token;
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (err) {
      // storage disabled: keep it in memory
    }
    view.tokenForm.hidden = true;
    if (!send({ type: "auth", token })) connect();
  });

  // ---- Messages --------------------------------------------------------------------------------

  function receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (err) {
      return;
    }
    const handlers = {
      auth_required: onAuthRequired,
      state: onState,
      events: onEvents,
      client: onClient,
      omitted: onOmitted,
      tree: onTree,
      history: onHistory,
      error: onError,
    };
    const handler = handlers[message.type];
    if (handler) handler(message);
  }

  function onAuthRequired() {
    const token = storedToken();
    if (token) {
      state.token = token;
      send({ type: "auth", token });
    } else {
      askToken("");
      setStatus("Token necessário", "fora");
    }
  }

  function onState(message) {
    state.attempt = 0;
    state.offlineSince = null;
    showNotice("");
    view.tokenForm.hidden = true;
    setStatus("Conectado", "conectado");
    state.clients = new Map((message.clients || []).map((c) => [c.client_id, c]));
    const markers = state.kept.filter((item) => item.marker && item.fresh);
    markers.forEach((item) => (item.fresh = false));
    state.kept = (message.events || []).slice(-MAX_KEPT).concat(markers);
    renderClients();
    renderEvents();
    if (!view.treeClient.value && state.clients.size) {
      view.treeClient.value = state.clients.keys().next().value;
      chooseTreeClient();
    }
  }

  function onEvents(message) {
    const now = Date.now();
    const bucket = Math.floor(now / CHART_BUCKET_MS);
    for (const ev of message.events || []) {
      state.kept.push(ev);
      if (ev.client_id) {
        const rates = state.rates.get(ev.client_id) || new Map();
        rates.set(bucket, (rates.get(bucket) || 0) + 1);
        state.rates.set(ev.client_id, rates);
        const client = state.clients.get(ev.client_id);
        if (client) {
          client.events = Math.max(client.events || 0, ev.seq || 0); // the client numbers its events
          client.last_event = ev.ts;
        }
      }
      if (state.paused) state.unseen++;
      else showEvent(ev);
    }
    if (state.kept.length > MAX_KEPT) state.kept.splice(0, state.kept.length - MAX_KEPT);
    if (state.paused) view.pending.textContent = `${state.unseen} eventos novos enquanto pausado`;
    for (const row of view.clients.children) {
      const client = state.clients.get(row.dataset.clientId);
      if (!client) continue;
      row.querySelector(".eventos-total").textContent = String(client.events ?? 0);
      row.querySelector(".ultimo-evento").textContent = formatTime(client.last_event, true);
    }
  }

  function onClient(message) {
    const client = message.client;
    if (!client || !client.client_id) return;
    state.clients.set(client.client_id, client);
    renderClients();
  }

  function onOmitted(message) {
    const item = { marker: true, fresh: true, count: message.count, at: new Date().toISOString() };
    state.kept.push(item);
    if (!state.paused) showEvent(item);
  }

  function onError(message) {
    if (message.id && message.id === state.treeRequest) view.treeNote.textContent = message.message || "erro";
    else if (message.id && message.id === state.historyRequest) {
      view.historyPath.textContent = message.message || "erro";
    }
    else showNotice(message.message || "Erro do servidor.");
  }

  // ---- Clients ---------------------------------------------------------------------------------

  function renderClients() {
    const rows = [];
    const ordered = [...state.clients.values()].sort(
      (a, b) =>
        Number(Boolean(b.connected)) - Number(Boolean(a.connected)) ||
        String(b.last_seen).localeCompare(String(a.last_seen))
    );
    for (const c of ordered) {
      const tr = el("tr", c.connected ? "" : "desconectado");
      tr.dataset.clientId = c.client_id;
      tr.append(appendName(el("td", "nome"), c.client));
      tr.append(appendName(el("td", "caminho"), c.root));
      tr.append(el("td", "", c.connected ? c.address || "—" : "desconectado"));
      const since = c.connected ? formatTime(c.connected_since, true) : `visto em ${formatTime(c.last_seen, true)}`;
      tr.append(el("td", "", since));
      tr.append(el("td", "eventos-total", String(c.events ?? 0)));
      tr.append(el("td", "ultimo-evento", formatTime(c.last_event, true)));
      const digest =
        c.digest === "matched" ? ["confere", "confere"] : c.digest === "differs" ? ["difere", "difere"] : ["", "—"];
      tr.append(el("td", digest[0], digest[1]));
      const chart = el("td");
      chart.append(chartOf(c.client_id));
      tr.append(chart);
      rows.push(tr);
    }
    view.clients.replaceChildren(...rows);
    view.noClients.hidden = rows.length > 0;
    refreshClientSelects();
  }

  function refreshClientSelects() {
    for (const select of [view.filterClient, view.treeClient]) {
      const chosen = select.value;
      const first = select.options[0];
      const options = [first];
      for (const c of state.clients.values()) {
        const option = el("option", "", plainName(c.client));
        option.value = c.client_id;
        options.push(option);
      }
      select.replaceChildren(...options);
      select.value = state.clients.has(chosen) ? chosen : "";
    }
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svgNode(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function chartOf(clientId) {
    const svg = svgNode("svg", { class: "taxa", width: "120", height: "24", viewBox: "0 0 120 24" });
    const axis = svgNode("line", { class: "eixo", x1: "0", x2: "120", y1: "23.5", y2: "23.5" });
    const line = svgNode("polyline", { class: "serie" });
    const title = svgNode("title", {});
    svg.append(title, axis, line);
    state.charts.set(clientId, line);
    drawChart(clientId);
    return svg;
  }

  function drawChart(clientId) {
    const line = state.charts.get(clientId);
    if (!line) return;
    const rates = state.rates.get(clientId) || new Map();
    const last = Math.floor(Date.now() / CHART_BUCKET_MS);
    const values = [];
    for (let b = last - CHART_POINTS + 1; b <= last; b++) values.push((rates.get(b) || 0) / (CHART_BUCKET_MS / 1000));
    for (const b of rates.keys()) if (b <= last - CHART_POINTS) rates.delete(b);
    const top = Math.max(1, ...values);
    const points = values.map(
      (v, i) => `${((i * 120) / (CHART_POINTS - 1)).toFixed(1)},${(22 - (v / top) * 20).toFixed(1)}`
    );
    line.setAttribute("points", points.join(" "));
    const peak = Math.max(...values);
    const shown = peak.toFixed(1).replace(".", ",");
    line.parentNode.firstChild.textContent = `máximo de ${shown} eventos/s nos últimos 5 minutos`;
  }

  setInterval(() => {
    for (const [clientId, line] of [...state.charts]) {
      if (line.isConnected) drawChart(clientId);
      else state.charts.delete(clientId); // its row was redrawn or its client is gone
    }
  }, 1000);

  // ---- Events ----------------------------------------------------------------------------------

  function matches(ev) {
    if (ev.marker) return true;
    const client = view.filterClient.value;
    const kind = view.filterKind.value;
    const text = view.filterPath.value.toLowerCase();
    if (client && ev.client_id !== client) return false;
    if (kind && ev.event !== kind) return false;
    if (text) {
      const shown = `${plainName(ev.path, ev.path_b64)} ${plainName(ev.dest_path, ev.dest_path_b64)}`.toLowerCase();
      if (!shown.includes(text)) return false;
    }
    return true;
  }

  function eventRow(ev) {
    const li = el("li");
    if (ev.marker) {
      li.className = "omitidos";
      li.textContent =
        `${ev.count} eventos omitidos: esta página ficou para trás; a lista recomeça do estado atual.`;
      return li;
    }
    li.className = `tipo-${ev.event}`;
    li.append(el("span", "hora", formatTime(ev.ts, false)));
    li.append(appendName(el("span", "cliente"), `[${ev.client ?? ""}]`));
    li.append(el("span", `tipo tipo-${ev.event}`, describe(ev)));
    if (ev.event === "message") {
      li.append(appendName(el("span", "caminho"), ev.text ?? `<${ev.data_b64 ? "bytes binários" : ""}>`));
      return li;
    }
    li.append(pathButton(ev.client_id, ev.path, ev.path_b64));
    if (ev.dest_path != null) {
      li.append(document.createTextNode(" -> "));
      li.append(pathButton(ev.client_id, ev.dest_path, ev.dest_path_b64));
    }
    if (ev.target_path != null) {
      li.append(document.createTextNode(" -> "));
      li.append(appendName(el("span", "caminho"), ev.target_path, ev.target_path_b64));
    }
    if (typeof ev.size === "number" && ev.type === "file") {
      li.append(document.createTextNode(` (${formatSize(ev.size)})`));
    }
    li.append(document.createTextNode(ORIGINS[ev.origin] || ""));
    return li;
  }

  function pathButton(clientId, path, b64) {
    const button = appendName(el("button", "link caminho"), path, b64);
    button.type = "button";
    button.title = "ver o histórico";
    button.addEventListener("click", () => requestHistory(clientId, path, b64));
    return button;
  }

  function showEvent(ev) {
    if (!matches(ev)) return;
    view.events.insertBefore(eventRow(ev), view.events.firstChild);
    while (view.events.childElementCount > MAX_ROWS) view.events.lastElementChild.remove();
  }

  function renderEvents() {
    const rows = [];
    for (let i = state.kept.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
      if (matches(state.kept[i])) rows.push(eventRow(state.kept[i]));
    }
    view.events.replaceChildren(...rows);
  }

  for (const control of [view.filterClient, view.filterKind]) control.addEventListener("change", renderEvents);
  view.filterPath.addEventListener("input", renderEvents);

  view.pause.addEventListener("click", () => {
    state.paused = !state.paused;
    view.pause.textContent = state.paused ? "Continuar" : "Pausar";
    view.pause.setAttribute("aria-pressed", String(state.paused));
    if (state.paused) {
      state.unseen = 0;
      view.pending.textContent = "pausado";
    } else {
      view.pending.textContent = "";
      renderEvents();
    }
  });

  // ---- Tree ------------------------------------------------------------------------------------

  function chooseTreeClient() {
    const clientId = view.treeClient.value;
    const client = state.clients.get(clientId);
    state.treeStack = client ? [{ name: client.root, path: client.root, path_b64: null }] : [];
    requestTree();
  }

  function requestTree() {
    const clientId = view.treeClient.value;
    const here = state.treeStack[state.treeStack.length - 1];
    renderTrail();
    if (!clientId || !here) {
      view.treeEntries.replaceChildren();
      view.treeNote.textContent = "Escolha um cliente para ver a árvore dele.";
      return;
    }
    state.treeRequest = state.nextId++;
    const request = { type: "tree", id: state.treeRequest, client_id: clientId, path: here.path };
    if (here.path_b64) request.path_b64 = here.path_b64;
    view.treeNote.textContent = "Carregando…";
    send(request);
  }

  function renderTrail() {
    const parts = state.treeStack.map((step, depth) => {
      const button = appendName(el("button", "link caminho"), step.name, depth ? step.name_b64 : null);
      button.type = "button";
      button.addEventListener("click", () => {
        state.treeStack.length = depth + 1;
        requestTree();
      });
      return button;
    });
    const joined = parts.flatMap((part, i) => (i ? [document.createTextNode(" / "), part] : [part]));
    view.treeTrail.replaceChildren(...joined);
  }

  function onTree(message) {
    if (message.id !== state.treeRequest) return;
    const rows = (message.entries || []).map((entry) => {
      const tr = el("tr");
      const name = el("td");
      const button = appendName(el("button", "link caminho"), entry.name, entry.name_b64);
      button.type = "button";
      if (entry.type === "dir") {
        button.title = "abrir a pasta";
        button.addEventListener("click", () => {
          const step = { name: entry.name, name_b64: entry.name_b64, path: entry.path, path_b64: entry.path_b64 };
          state.treeStack.push(step);
          requestTree();
        });
      } else {
        button.title = "ver o histórico";
        button.addEventListener("click", () => requestHistory(message.client_id, entry.path, entry.path_b64));
      }
      name.append(button);
      tr.append(name, el("td", "", NOUNS[entry.type] || "—"), el("td", "", formatSize(entry.size)));
      tr.append(el("td", "", formatTime(entry.mtime, true)));
      return tr;
    });
    view.treeEntries.replaceChildren(...rows);
    const count = rows.length === 1 ? "1 entrada" : `${rows.length} entradas`;
    const note = rows.length ? count : "Pasta vazia.";
    view.treeNote.textContent = message.truncated ? `${count} (lista cortada pelo servidor)` : note;
  }

  view.treeClient.addEventListener("change", chooseTreeClient);

  // ---- History ---------------------------------------------------------------------------------

  function requestHistory(clientId, path, b64) {
    if (!clientId) return;
    state.historyRequest = state.nextId++;
    const request = { type: "history", id: state.historyRequest, client_id: clientId, path };
    if (b64) request.path_b64 = b64;
    view.historyPath.replaceChildren(
      document.createTextNode("Carregando o histórico de "),
      appendName(el("span", "caminho"), path, b64)
    );
    view.historyEvents.replaceChildren();
    send(request);
    document.getElementById("historico").scrollIntoView({ block: "nearest" });
  }

  function onHistory(message) {
    if (message.id !== state.historyRequest) return;
    const events = message.events || [];
    const rows = events.map((ev) => {
      const tr = el("tr");
      tr.append(el("td", "", formatTime(ev.ts, true)), el("td", "", describe(ev).replace(/: $/, "")));
      const where = appendName(el("td", "caminho"), ev.path, ev.path_b64);
      if (ev.dest_path != null) {
        where.append(document.createTextNode(" -> "));
        appendName(where, ev.dest_path, ev.dest_path_b64);
      }
      tr.append(where, el("td", "", formatSize(ev.size)), el("td", "", originName(ev.origin)));
      return tr;
    });
    view.historyEvents.replaceChildren(...rows);
    const label = events.length === 1 ? "1 evento" : `${events.length} eventos`;
    view.historyPath.replaceChildren(
      document.createTextNode(`${label}${message.truncated ? " (os mais recentes)" : ""} de `),
      appendName(el("span", "caminho"), message.path, message.path_b64)
    );
  }

  connect();
})();
"""

PAGE_FILES = {  # URL path -> (content type, text)
    "/": ("text/html; charset=utf-8", PAGE_HTML),
    "/pagina.css": ("text/css; charset=utf-8", PAGE_CSS),
    "/pagina.js": ("text/javascript; charset=utf-8", PAGE_JS),
}


# ---------------------------------------------------------------------------
# The record: SQLite schema and statements. Only the writer thread runs them (README, "Banco de dados").
# ---------------------------------------------------------------------------

# Version 1 of the schema; _MIGRATIONS[n] takes a database from version n to n + 1. A new file gets both.
_SCHEMA = """
BEGIN;
CREATE TABLE clients (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    root TEXT NOT NULL,
    protocol INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    digest_matched INTEGER,
    verified_at TEXT,
    secret_hash BLOB
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    client INTEGER NOT NULL REFERENCES clients (id),
    seq INTEGER,
    event TEXT NOT NULL,
    path TEXT NOT NULL,
    dest_path TEXT,
    is_dir INTEGER NOT NULL,
    ts TEXT NOT NULL,
    origin TEXT NOT NULL,
    path_b64 TEXT,
    dest_path_b64 TEXT,
    stored_at INTEGER NOT NULL
);
CREATE INDEX events_by_path ON events (path);
CREATE INDEX events_by_dest_path ON events (dest_path) WHERE dest_path IS NOT NULL;
CREATE INDEX events_by_client ON events (client, stored_at);
CREATE TABLE tree (
    client INTEGER NOT NULL REFERENCES clients (id),
    path BLOB NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER,
    mtime REAL,
    hash INTEGER NOT NULL,
    PRIMARY KEY (client, path)
) WITHOUT ROWID;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    peer TEXT NOT NULL,
    text TEXT,
    data BLOB,
    ts TEXT NOT NULL,
    stored_at INTEGER NOT NULL
);
PRAGMA user_version = 1;
COMMIT;
"""
_MIGRATIONS = {
    # 2: protocol 3's metadata of each event (nullable: not known, an older client's), and each tree entry's type.
    1: """
BEGIN;
ALTER TABLE events ADD COLUMN type TEXT;
ALTER TABLE events ADD COLUMN size INTEGER;
ALTER TABLE events ADD COLUMN mtime TEXT;
ALTER TABLE events ADD COLUMN mode TEXT;
ALTER TABLE events ADD COLUMN target_path TEXT;
ALTER TABLE events ADD COLUMN target_path_b64 TEXT;
ALTER TABLE events ADD COLUMN sha256 TEXT;
ALTER TABLE events ADD COLUMN attrib INTEGER;
ALTER TABLE tree ADD COLUMN type TEXT;
PRAGMA user_version = 2;
COMMIT;
""",
}
_METADATA_COLUMNS = ("type", "size", "mtime", "mode", "target_path", "target_path_b64", "sha256", "attrib")
# A manifest being received: private to the connection, never durable (a resync starts over).
_MANIFEST_SCHEMA = """
CREATE TEMP TABLE manifest (
    client INTEGER NOT NULL, path BLOB NOT NULL, is_dir INTEGER NOT NULL, hash INTEGER NOT NULL,
    PRIMARY KEY (client, path)
) WITHOUT ROWID
"""
# An event's columns, in the order of _event_row (and of --json, but for path_b64 and dest_path_b64).
_EVENT_COLUMNS = (
    *("seq", "event", "path", "dest_path", "is_dir", "ts", "origin", "path_b64", "dest_path_b64"),
    *_METADATA_COLUMNS,
)
_ROW_COLUMNS = ("client", *_EVENT_COLUMNS, "stored_at")  # a row of _event_rows


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608


def _without_nulls(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> tuple[tuple[str, ...], list[Any]]:
    """The columns where some row has a value, and the rows cut to them (an omitted column is NULL): binding a
    None costs sqlite3 a failed adapter lookup, three times a value's cost, and most of an event's columns are
    empty (a move's, a symlink's, base64, an older client's metadata). C-level zips: ~0.2 µs per row."""
    values = list(zip(*rows, strict=True))
    count = len(rows)
    kept = [index for index, column in enumerate(values) if column.count(None) != count]
    return tuple(columns[index] for index in kept), list(zip(*(values[index] for index in kept), strict=True))


_UPSERT_ENTRY = (
    "INSERT INTO tree (client, path, is_dir, type, size, mtime, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (client, path) DO UPDATE SET is_dir = excluded.is_dir, type = excluded.type,"
    " size = excluded.size, mtime = excluded.mtime, hash = excluded.hash"
)
_UPSERT_PLAIN_ENTRY = (  # the same without metadata (not known), three values fewer to bind
    "INSERT INTO tree (client, path, is_dir, hash) VALUES (?, ?, ?, ?) ON CONFLICT (client, path) DO UPDATE SET"
    " is_dir = excluded.is_dir, type = NULL, size = NULL, mtime = NULL, hash = excluded.hash"
)
_SQLITE_REASONS = {
    "SQLITE_FULL": "disco cheio",
    "SQLITE_IOERR": "erro de entrada/saída no disco",
    "SQLITE_BUSY": "banco travado por outro processo",
    "SQLITE_LOCKED": "banco travado",
    "SQLITE_CORRUPT": "banco corrompido",
    "SQLITE_NOTADB": "o arquivo não é um banco SQLite",
    "SQLITE_READONLY": "banco somente leitura",
    "SQLITE_CANTOPEN": "não foi possível abrir o arquivo",
    "SQLITE_PERM": "sem permissão",
}


def describe_sqlite_error(exc: sqlite3.Error) -> str:
    """A short Portuguese reason for a storage failure, e.g. ``disco cheio (SQLITE_FULL)``."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    reason = _SQLITE_REASONS.get("_".join(name.split("_")[:2]))  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    return f"{reason} ({name})" if reason else f"{exc} ({name})" if name else str(exc)


def is_storage_failure(exc: BaseException) -> bool:
    """An error of the disk or the file (retry later), not of one statement (a bug or bad input)."""
    job_errors = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.DataError)
    return isinstance(exc, sqlite3.Error) and not isinstance(exc, job_errors)


def open_database(
    path: str, factory: type[sqlite3.Connection] = sqlite3.Connection, *, read_only: bool = False
) -> sqlite3.Connection:
    """Open the record at ``path`` (":memory:": a private in-memory one), creating the schema in a new file.

    ``read_only``: opened with SQLite's ``mode=ro``: nothing is ever written (an empty file is refused).

    Start-up reads the schema version and nothing else: no table grows its cost. WAL with
    synchronous=FULL: a COMMIT returns once the transaction is in the WAL and fsynced.
    Raises FatalError with a Portuguese reason.
    """
    shown = "em memória" if path == ":memory:" else repr(path)
    try:
        # isolation_level=None: the writer says BEGIN/COMMIT itself; the connection moves to its thread.
        if read_only:
            uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
            conn = sqlite3.connect(uri, isolation_level=None, check_same_thread=False, factory=factory, uri=True)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=factory)
    except sqlite3.Error as exc:
        raise FatalError(f"não foi possível abrir o banco {shown}: {describe_sqlite_error(exc)}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 1000")  # another process's lock: wait a little, then retry later
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        # Judged before anything is written: another program's file is left exactly as it was.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        fresh = version == 0
        if fresh and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise FatalError(f"{shown} é um banco SQLite de outro programa")
        if not fresh and not 1 <= version <= SCHEMA_VERSION:
            raise FatalError(
                f"o banco {shown} tem o esquema {version}; este servidor conhece o {SCHEMA_VERSION} (versão mais nova?)"
            )
        missing = "" if fresh else _missing_columns(conn, version)
        if missing:
            raise FatalError(
                f"{shown} é um banco SQLite de outro programa (tem user_version {version}, mas não {missing})"
            )
        if read_only:
            if fresh:
                raise FatalError(f"{shown} não tem o esquema deste servidor (um banco vazio: nenhum evento)")
            return conn
        if path != ":memory:" and conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise FatalError(f"o banco {shown} não aceitou o modo WAL")
        conn.execute("PRAGMA synchronous = FULL")
        if fresh:
            conn.executescript(_SCHEMA)
        for step in range(max(version, 1), SCHEMA_VERSION):  # ALTER TABLE ... ADD COLUMN: no row is read
            conn.executescript(_MIGRATIONS[step])
        if 0 < version < SCHEMA_VERSION:
            log.info("banco %s atualizado do esquema %d para o %d", shown, version, SCHEMA_VERSION)
        conn.execute(_MANIFEST_SCHEMA)
    except sqlite3.Error as exc:
        conn.close()
        raise FatalError(f"não foi possível abrir o banco {shown}: {describe_sqlite_error(exc)}") from exc
    except FatalError:
        conn.close()
        raise
    return conn


def _columns(conn: sqlite3.Connection) -> dict[str, set[str]]:
    """Each table's column names (sqlite_schema and table_info: no row of any table is read)."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
    sql = "SELECT name FROM pragma_table_info(?)"
    return {table: {row[0] for row in conn.execute(sql, (table,))} for table in tables}


@functools.cache
def _expected_columns(version: int) -> dict[str, set[str]]:
    with contextlib.closing(sqlite3.connect(":memory:")) as probe:
        probe.executescript(_SCHEMA)
        for step in range(1, version):
            probe.executescript(_MIGRATIONS[step])
        return _columns(probe)


def _missing_columns(conn: sqlite3.Connection, version: int) -> str:
    """What schema ``version`` lacks in ``conn`` ("": nothing), e.g. ``a coluna 'events.path'``."""
    found = _columns(conn)
    for table, columns in _expected_columns(version).items():
        if table not in found:
            return f"a tabela {table!r}"
        for column in sorted(columns - found[table]):
            return f"a coluna {table + '.' + column!r}"
    return ""


def _signed(value: int) -> int:
    """An entry_hash as SQLite stores integers (signed 64-bit)."""
    return value - DIGEST_MODULUS if value >= _SIGN_BIT else value


_SIGN_BIT = 2**63


def _sql_int(value: int | None) -> int | float | None:
    """An integer as SQLite can store it: its INTEGER is signed 64-bit, so 2**63 (MAX_FILE_SIZE) goes as a
    REAL, which holds that power of two exactly (read back with int())."""
    return float(value) if value is not None and value >= _SIGN_BIT else value


def _entry_metadata(ev: Event) -> tuple[str | None, int | float | None, float | None]:
    """The ``tree`` columns type, size and mtime (Unix time, REAL) an event gives its entry (NULL: not known)."""
    return ev.type, _sql_int(ev.size), None if ev.mtime is None else ev.mtime.timestamp()


def _entry_row(client: int, path: bytes, ev: Event, metadata: bool) -> tuple[Any, ...]:
    """The ``tree`` row an event leaves at ``path``, as _UPSERT_ENTRY (``metadata``) or _UPSERT_PLAIN_ENTRY takes it."""
    hashed = entry_hash(path, ev.is_dir)
    if hashed >= _SIGN_BIT:  # _signed(), inlined: the hot path of a burst
        hashed -= DIGEST_MODULUS
    is_dir = 1 if ev.is_dir else 0  # an int: a bool takes sqlite3's slow adapter path
    if not metadata:
        return client, path, is_dir, hashed
    return client, path, is_dir, ev.type, _sql_int(ev.size), None if ev.mtime is None else ev.mtime.timestamp(), hashed


def _separator(style: PathStyle) -> bytes:
    """The byte that separates the components of a client's paths (its declared ``path_style``)."""
    return b"\\" if style == "windows" else b"/"


def _below(path: bytes, sep: bytes = b"/") -> tuple[bytes, bytes]:
    """The key range of everything strictly below ``path``: [path + sep, path + the byte after sep)
    ("0" follows "/", "]" follows "\\")."""
    base = path.rstrip(sep)
    return base + sep, base + bytes([sep[0] + 1])


class Tree:
    """Each client's tree in the ``tree`` table, as replaying its events gives it.

    ``created``/``modified`` add an entry (the watched root itself excepted), ``deleted`` removes it and
    everything below, ``moved`` removes source and destination (each with its subtree) and puts the
    source's subtree at the destination: README, "Como a visão do servidor fica igual ao disco".
    Subtrees are key ranges of the primary key (client, path), so each step is an indexed range.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def apply(self, client: int, root: bytes, events: list[Event], sep: bytes = b"/") -> None:
        """Each event's change, in order; an entry keeps the event's type, size and mtime (NULL: not known)."""
        metadata = any(ev.type is not None for ev in events)  # protocol 3's events carry them (type always)
        upsert = _UPSERT_ENTRY if metadata else _UPSERT_PLAIN_ENTRY
        if all(ev.event == "created" or ev.event == "modified" for ev in events):  # a burst: one statement
            paths = [
                (ev.path.encode() if ev.path_b64 is None else exact_path(ev.path, ev.path_b64), ev) for ev in events
            ]
            self.conn.executemany(upsert, [_entry_row(client, p, ev, metadata) for p, ev in paths if p != root])
            return
        upserts: list[tuple[Any, ...]] = []
        for ev in events:
            path = exact_path(ev.path, ev.path_b64)
            if ev.event in ("created", "modified"):
                if path != root:
                    upserts.append(_entry_row(client, path, ev, metadata))
                continue
            self.conn.executemany(upsert, upserts)  # in order: a later deletion may undo them
            upserts = []
            if ev.event == "deleted":
                self.remove(client, path, sep)
            else:
                assert ev.dest_path is not None
                dest = exact_path(ev.dest_path, ev.dest_path_b64)
                self.move(client, path, dest, root, sep)
                if ev.type is not None:  # the metadata describe the destination (moved there, if the tree had it)
                    self.conn.execute(
                        "UPDATE tree SET type = ?, size = ?, mtime = ? WHERE client = ? AND path = ?",
                        (*_entry_metadata(ev), client, dest),
                    )
        self.conn.executemany(upsert, upserts)

    def remove(self, client: int, path: bytes, sep: bytes = b"/") -> None:
        low, high = _below(path, sep)
        self.conn.execute("DELETE FROM tree WHERE client = ? AND path = ?", (client, path))
        self.conn.execute("DELETE FROM tree WHERE client = ? AND path >= ? AND path < ?", (client, low, high))

    def move(self, client: int, source: bytes, dest: bytes, root: bytes, sep: bytes = b"/") -> None:
        low, high = _below(source, sep)
        rows = self.conn.execute(
            "SELECT path, is_dir, type, size, mtime FROM tree"
            " WHERE client = ?1 AND (path = ?2 OR path >= ?3 AND path < ?4)",
            (client, source, low, high),
        ).fetchall()
        self.remove(client, source, sep)
        self.remove(client, dest, sep)
        if dest != root:
            moved = [(dest + path[len(source) :], *rest) for path, *rest in rows]
            self.conn.executemany(
                _UPSERT_ENTRY, [(client, p, d, t, s, m, _signed(entry_hash(p, bool(d)))) for p, d, t, s, m in moved]
            )

    def digest(self, client: int) -> Digest:
        """The client's tree digest, summed by SQLite over its key range (two halves: no overflow)."""
        return self._digest(
            "SELECT count(*), sum(hash >> 32), sum(hash & 4294967295) FROM tree WHERE client = ?", client
        )

    def staged_digest(self, client: int) -> Digest:
        return self._digest(
            "SELECT count(*), sum(hash >> 32), sum(hash & 4294967295) FROM temp.manifest WHERE client = ?", client
        )

    def _digest(self, sql: str, client: int) -> Digest:
        count, high, low = self.conn.execute(sql, (client,)).fetchone()
        return Digest(count, ((high or 0) * 2**32 + (low or 0)) % DIGEST_MODULUS)

    def stage(self, client: int, entries: Iterable[tuple[bytes, bool]]) -> None:
        """Keep a manifest batch aside until the manifest ends (a path sent twice counts once)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO temp.manifest (client, path, is_dir, hash) VALUES (?, ?, ?, ?)",
            [(client, path, is_dir, _signed(entry_hash(path, is_dir))) for path, is_dir in entries],
        )

    def unstage(self, client: int) -> None:
        self.conn.execute("DELETE FROM temp.manifest WHERE client = ?", (client,))

    def replace(self, client: int, sep: bytes = b"/") -> tuple[list[tuple[bytes, bool]], list[tuple[bytes, bool]]]:
        """Make the tree equal the staged manifest; (deleted, created) entries, each list sorted by path.

        Only the topmost of the deleted entries is listed (deleting it removes what is below), and an
        entry whose type changed is deleted and created: replaying the lists gives the manifest. So an
        entry the manifest keeps below a deleted one (``/w/a/a/a`` below a file ``/w/a`` the manifest
        lacks: only events can make that shape) is listed as created: the deletion took it.
        """
        gone = self.conn.execute(
            "SELECT path, is_dir FROM tree AS t WHERE client = ?1 AND NOT EXISTS (SELECT 1 FROM temp.manifest AS m"
            " WHERE m.client = ?1 AND m.path = t.path AND m.is_dir = t.is_dir) ORDER BY path",
            (client,),
        ).fetchall()
        deleted: list[tuple[bytes, bool]] = []
        removed: set[bytes] = set()
        for path, is_dir in gone:
            parts = path.split(sep)
            if not any(sep.join(parts[:depth]) in removed for depth in range(1, len(parts))):
                deleted.append((path, bool(is_dir)))
                removed.add(path)
                self.remove(client, path, sep)
        new = self.conn.execute(
            "SELECT path, is_dir, hash FROM temp.manifest AS m WHERE client = ?1 AND NOT EXISTS (SELECT 1 FROM tree"
            " AS t WHERE t.client = ?1 AND t.path = m.path AND t.is_dir = m.is_dir) ORDER BY path",
            (client,),
        ).fetchall()
        self.conn.executemany(_UPSERT_PLAIN_ENTRY, [(client, path, is_dir, value) for path, is_dir, value in new])
        self.unstage(client)
        return deleted, [(path, bool(is_dir)) for path, is_dir, _ in new]


class Record:
    """The clients, events and messages tables plus each client's Tree (its Pruner deletes the oldest rows):
    every statement the writer runs.

    Methods that change anything run inside the writer's transaction and may run again after a
    failed commit: they read and write the database only.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.tree = Tree(conn)
        self.pruner = Pruner(conn)
        self.page = PageQueries(conn)

    def last_seq(self, client_id: str) -> int:
        """The last stored seq of a client (0 for a stranger). A read."""
        row = self.conn.execute("SELECT last_seq FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def client(self, client_id: str) -> tuple[int, bytes | None] | None:
        """(last stored seq, credential hash) of a client; None for a stranger. A read."""
        row = self.conn.execute(
            "SELECT last_seq, secret_hash FROM clients WHERE client_id = ?", (client_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def register(self, hello: Hello, now: datetime.datetime) -> tuple[int, int]:
        """Record a client's hello (name, root, last seen, a first credential); its (key, last stored seq)."""
        seen = now.isoformat(timespec="milliseconds")
        self.conn.execute(
            "INSERT INTO clients (client_id, name, root, protocol, first_seen, last_seen, secret_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, root = excluded.root,"
            " protocol = excluded.protocol, last_seen = excluded.last_seen,"
            " secret_hash = coalesce(clients.secret_hash, excluded.secret_hash)",
            (hello.client_id, hello.name, hello.root, hello.version, seen, seen, hello.secret_hash),
        )
        key, last_seq = self.conn.execute(
            "SELECT id, last_seq FROM clients WHERE client_id = ?", (hello.client_id,)
        ).fetchone()
        return key, last_seq

    def store_events(self, hello: Hello, events: list[Event], now: datetime.datetime) -> list[Event]:
        """Store the events past the client's last stored seq and apply them to its tree; those events."""
        row = self.conn.execute("SELECT id, last_seq FROM clients WHERE client_id = ?", (hello.client_id,)).fetchone()
        key, last_seq = row if row is not None else self.register(hello, now)
        fresh = [ev for ev in events if ev.seq > last_seq]  # never twice, whatever the caller resends
        if fresh:
            self._insert(key, fresh, int(now.timestamp()))
            self.tree.apply(key, hello.root.encode("utf-8"), fresh, _separator(hello.path_style))
            self.conn.execute(
                "UPDATE clients SET last_seq = ?, last_seen = ? WHERE id = ?",
                (fresh[-1].seq, now.isoformat(timespec="milliseconds"), key),
            )
        return fresh

    def _insert(self, key: int, events: list[Event], stored_at: int) -> None:
        if not events:
            return
        self.pruner.added("events", sum(map(_event_bytes, events)))
        columns, rows = _without_nulls(_ROW_COLUMNS, _event_rows(key, events, stored_at))
        self.conn.executemany(_insert_sql("events", columns), rows)

    def digest(self, client_id: str) -> tuple[int, Digest]:
        """(last stored seq, digest of the tree) of a client; (0, empty) for a stranger. A read."""
        row = self.conn.execute("SELECT id, last_seq FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        return (0, Digest(0, 0)) if row is None else (row[1], self.tree.digest(row[0]))

    def note_digest(self, client_id: str, matched: bool, now: datetime.datetime) -> None:
        """Remember whether the client's last digest matched (and when one last did)."""
        self.conn.execute(
            "UPDATE clients SET digest_matched = ?2, verified_at = iif(?2, ?3, verified_at) WHERE client_id = ?1",
            (client_id, matched, now.isoformat(timespec="milliseconds")),
        )

    def stage(self, hello: Hello, entries: list[tuple[bytes, bool]], first: bool, now: datetime.datetime) -> None:
        """Keep a manifest batch aside; ``first``: the batch that opens it (an unfinished one is dropped).

        Only the connection's temporary table changes (no fsync), unless the client is new.
        """
        row = self.conn.execute("SELECT id FROM clients WHERE client_id = ?", (hello.client_id,)).fetchone()
        key = row[0] if row is not None else self.register(hello, now)[0]
        if first:
            self.tree.unstage(key)
        self.tree.stage(key, entries)

    def unstage(self, client_id: str) -> None:
        """Drop a manifest that will never end (its connection is gone). Only the temporary table changes."""
        row = self.conn.execute("SELECT id FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        if row is not None:
            self.tree.unstage(row[0])

    def resync(self, hello: Hello, seq: int, expected: Digest, now: datetime.datetime) -> list[Event]:
        """Replace the client's tree by its staged manifest (as of ``seq``); store and return the differences.

        ProtocolError if the manifest does not add up to ``expected`` (a batch went missing).
        """
        key, last_seq = self.register(hello, now)
        staged = self.tree.staged_digest(key)
        if staged != expected:
            raise ProtocolError(
                f"o manifesto recebido ({staged.count} entradas) não confere com o resumo ({expected.count} entradas)"
            )
        deleted, created = self.tree.replace(key, _separator(hello.path_style))
        differences = [_resync_event("deleted", path, is_dir, now) for path, is_dir in deleted]
        differences += [_resync_event("created", path, is_dir, now) for path, is_dir in created]
        self._insert(key, differences, int(now.timestamp()))
        self.conn.execute(
            "UPDATE clients SET last_seq = ?, digest_matched = 1, verified_at = ? WHERE id = ?",
            (max(seq, last_seq), now.isoformat(timespec="milliseconds"), key),
        )
        return differences

    def store_text(self, peer: str, text: str | bytes, now: datetime.datetime) -> None:
        """Store a plain text message (or a binary one's bytes)."""
        self.pruner.added("messages", len(text))
        self.conn.execute(
            "INSERT INTO messages (peer, text, data, ts, stored_at) VALUES (?, ?, ?, ?, ?)",
            (
                peer,
                text if isinstance(text, str) else None,
                text if isinstance(text, bytes) else None,
                now.isoformat(timespec="milliseconds"),
                int(now.timestamp()),
            ),
        )

    def export(self) -> Iterator[dict[str, Any]]:
        """Every stored event, oldest first, as its ``--json`` record. A read (of a version 1 file too: it was
        opened read-only, not migrated, and its events have no metadata)."""
        found = _columns(self.conn)["events"]
        columns = ", ".join(f"e.{name}" if name in found else "NULL" for name in _EVENT_COLUMNS)
        rows = self.conn.execute(
            f"SELECT c.name, c.client_id, {columns} FROM events AS e JOIN clients AS c ON c.id = e.client"  # noqa: S608
            " ORDER BY e.id"
        )
        for name, client_id, *row in rows:
            yield event_record(name, client_id, _stored_event(row))


class PageQueries:
    """What the live page reads from the record (README, "A página ao vivo"): recently seen clients, a directory
    of a client's tree, a path's history. Reads only, run by the writer thread between transactions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def recent_clients(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recently seen clients, as the page's client objects (not connected)."""
        rows = self.conn.execute(
            "SELECT client_id, name, root, protocol, last_seen, last_seq, digest_matched, verified_at FROM clients"
            " ORDER BY last_seen DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {"client_id": client_id, "client": name, "root": root, "path_style": style_of_root(root),
             "protocol": protocol, "connected": False, "address": None, "connected_since": None,
             "last_seen": last_seen, "events": last_seq, "last_event": None,
             "digest": None if matched is None else "matched" if matched else "differs", "verified_at": verified_at}
            for client_id, name, root, protocol, last_seen, last_seq, matched, verified_at in rows
        ]  # fmt: skip

    def recent_events(self, limit: int) -> list[tuple[str, str, Event]]:
        """The ``limit`` latest stored events, oldest first, as (client name, client_id, Event)."""
        columns = ", ".join(f"e.{name}" for name in _EVENT_COLUMNS)
        rows = self.conn.execute(
            f"SELECT c.name, c.client_id, {columns} FROM events AS e JOIN clients AS c ON c.id = e.client"  # noqa: S608
            " ORDER BY e.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(name, client_id, _stored_event(row)) for name, client_id, *row in reversed(rows)]

    def tree(self, request: ViewerQuery, limit: int = VIEWER_MAX_ENTRIES) -> str | None:
        """The ``tree`` answer for a directory of the client's tree (None: an unknown client).

        A skip-scan over the primary key: each step seeks the first key past the last child seen, so the cost is
        the number of children (times log n), not the size of the subtree below them.
        """
        row = self.conn.execute("SELECT id, root FROM clients WHERE client_id = ?", (request.client_id,)).fetchone()
        if row is None:
            return None
        key, sep = row[0], _separator(style_of_root(row[1]))
        prefix, end = _below(request.path, sep)
        found: dict[bytes, tuple[bool, tuple[Any, ...] | None]] = {}
        low = prefix
        while len(found) <= limit:
            entry = self.conn.execute(
                "SELECT path, is_dir, type, size, mtime FROM tree WHERE client = ? AND path >= ? AND path < ?"
                " ORDER BY path LIMIT 1",
                (key, low, end),
            ).fetchone()
            if entry is None:
                break
            name, below, _ = entry[0][len(prefix) :].partition(sep)
            if below:  # deeper: the child directory ``name`` (with or without a row of its own); skip its subtree
                found.setdefault(name, (True, None))
                low = prefix + name + bytes([sep[0] + 1])
            else:
                found[name] = (bool(entry[1]), tuple(entry[2:]))
                low = entry[0] + b"\x00"
        names = sorted(found)
        entries = [tree_entry(prefix + name, name, *found[name]) for name in names[:limit]]
        return encode_answer("tree", request, entries, len(names) > limit)

    def history(self, request: ViewerQuery, limit: int = VIEWER_MAX_HISTORY) -> str | None:
        """The ``history`` answer: the client's events whose path or dest_path is the path, newest first."""
        row = self.conn.execute("SELECT id, name FROM clients WHERE client_id = ?", (request.client_id,)).fetchone()
        if row is None:
            return None
        text, b64 = wire_path(request.path)
        columns = ", ".join(_EVENT_COLUMNS)
        rows = self.conn.execute(
            f"SELECT id, {columns} FROM events WHERE client = ?1 AND path = ?2 AND path_b64 IS ?3"  # noqa: S608
            f" UNION SELECT id, {columns} FROM events WHERE client = ?1 AND dest_path = ?2 AND dest_path_b64 IS ?3"
            " ORDER BY id DESC LIMIT ?4",
            (row[0], text, b64, limit + 1),
        ).fetchall()
        lines = [
            to_json_line(event_record(row[1], request.client_id, _stored_event(list(found[1:])))) for found in rows
        ]
        return encode_answer("history", request, lines[:limit], len(lines) > limit)


def _event_rows(client: int, events: list[Event], stored_at: int) -> list[tuple[Any, ...]]:
    """Each event as the events table keeps it, in _ROW_COLUMNS order (``seq`` NULL: a resync's difference;
    is_dir as an int: a bool takes sqlite3's slow adapter path)."""
    rows = []
    ts, ts_text = None, ""
    for ev in events:
        if ev.ts is not ts:  # one lookup for the events that share a ts object (as in event_lines)
            ts, ts_text = ev.ts, iso_time(ev.ts)
        rows.append(
            (client, ev.seq or None, ev.event, ev.path, ev.dest_path, 1 if ev.is_dir else 0, ts_text, ev.origin,
             ev.path_b64, ev.dest_path_b64, ev.type, _sql_int(ev.size), _mtime_text(ev), ev.mode, ev.target_path,
             ev.target_path_b64, ev.sha256, 1 if ev.attrib else None, stored_at)
        )  # fmt: skip
    return rows


def _stored_event(row: list[Any]) -> Event:
    """The Event a row in _EVENT_COLUMNS order holds."""
    seq, kind, path, dest, is_dir, ts, origin, path_b64, dest_b64, file_type, size, mtime, *rest = row
    mode, target_path, target_path_b64, sha256, attrib = rest
    return Event(seq or 0, kind, path, bool(is_dir), _parse_ts(ts), origin, dest, path_b64, dest_b64, file_type,
                 None if size is None else int(size), None if mtime is None else _parse_ts(mtime, "mtime"), mode,
                 target_path, target_path_b64, sha256, bool(attrib))  # fmt: skip


_ROW_BYTES = {  # what a row of each table costs, in bytes (as Pruner.added counts it)
    "events": "length(CAST(path AS BLOB)) + ifnull(length(CAST(dest_path AS BLOB)), 0)"
    " + ifnull(length(path_b64), 0) + ifnull(length(dest_path_b64), 0)"
    " + ifnull(length(CAST(target_path AS BLOB)), 0) + ifnull(length(target_path_b64), 0)",
    "messages": "ifnull(length(CAST(text AS BLOB)), 0) + ifnull(length(data), 0)",
}


def _event_bytes(ev: Event) -> int:
    """What an event's row costs, as _ROW_BYTES["events"] counts it (characters for bytes: a cheap estimate)."""
    return (
        len(ev.path)
        + len(ev.dest_path or "")
        + len(ev.path_b64 or "")
        + len(ev.dest_path_b64 or "")
        + len(ev.target_path or "")
        + len(ev.target_path_b64 or "")
    )


class Pruner:
    """Deletes the oldest events and messages past the retention limits and the in-memory budget.

    Runs inside the writer's transactions, like Record (which tells it what each insert added).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._added_bytes = {"events": 0, "messages": 0}  # bytes inserted since trim last counted the table

    def added(self, table: str, size: int) -> None:
        """``size`` bytes (as _ROW_BYTES counts them) went into ``table``."""
        self._added_bytes[table] += size

    def trim(self, max_events: int, stored_before: int | None, budget: MemoryBudget | None = None) -> int:
        """Delete up to RETENTION_CHUNK of the oldest events and of the oldest messages past the limits.

        ``max_events``: rows kept per table (0: any number); ``stored_before``: Unix time before which
        rows go (None: any age). Rows are removed from the oldest id on, so each statement is a range of
        the primary key. ``budget`` (the in-memory record): bytes per table and rows of messages. Returns how
        many rows went.
        """
        deleted = 0
        for table in ("events", "messages"):
            if budget is not None:
                deleted += self._trim_bytes(table, budget)
            low, high = self.conn.execute(f"SELECT min(id), max(id) FROM {table}").fetchone()  # noqa: S608
            if low is None:
                continue
            if budget is not None and table == "messages" and high - low + 1 > budget.texts:
                deleted += self.conn.execute("DELETE FROM messages WHERE id < ?", (high - budget.texts + 1,)).rowcount
            end = low + RETENTION_CHUNK
            if stored_before is not None:
                deleted += self.conn.execute(
                    f"DELETE FROM {table} WHERE id >= ? AND id < ? AND stored_at < ?",  # noqa: S608
                    (low, end, stored_before),
                ).rowcount
            if max_events and high - low + 1 > max_events:
                deleted += self.conn.execute(
                    f"DELETE FROM {table} WHERE id < ?",  # noqa: S608
                    (min(end, high - max_events + 1),),
                ).rowcount
        return deleted

    def _trim_bytes(self, table: str, budget: MemoryBudget) -> int:
        """Delete the oldest rows of ``table`` while its bytes exceed the budget. The table is summed only once
        an eighth of the budget was added since the last sum, so the cost per stored byte stays bounded."""
        limit = budget.event_bytes if table == "events" else budget.text_bytes
        if self._added_bytes[table] <= limit // 8:
            return 0
        size = _ROW_BYTES[table]
        (total,) = self.conn.execute(f"SELECT ifnull(sum({size}), 0) FROM {table}").fetchone()  # noqa: S608
        self._added_bytes[table] = 0
        excess = total - limit
        if excess <= 0:
            return 0
        cut = None
        for row_id, row_bytes in self.conn.execute(f"SELECT id, {size} FROM {table} ORDER BY id"):  # noqa: S608
            excess -= row_bytes
            if excess <= 0:
                cut = row_id
                break
        if cut is None:
            return 0
        return self.conn.execute(f"DELETE FROM {table} WHERE id <= ?", (cut,)).rowcount  # noqa: S608


@dataclasses.dataclass(frozen=True)
class MemoryBudget:
    """What the in-memory record keeps at most besides its rows of events (README, "O registro")."""

    event_bytes: int = MEMORY_MAX_BYTES
    texts: int = MEMORY_MAX_TEXTS
    text_bytes: int = MEMORY_MAX_TEXT_BYTES


def _resync_event(kind: EventKind, path: bytes, is_dir: bool, now: datetime.datetime) -> Event:
    text, b64 = wire_path(path)
    return Event(seq=0, event=kind, path=text, is_dir=is_dir, ts=now, origin="resync", path_b64=b64)


# ---------------------------------------------------------------------------
# I/O: the asyncio server.
# ---------------------------------------------------------------------------


class ConsoleClosed(Exception):
    """stdout is gone (closed pipe, full disk): what was waiting for it was not printed."""


class ConsoleBudget:
    """What waits for stdout (bytes, lines) and the mirror lines dropped since the last report; owned by the loop.

    A mirror line (``--banco``) is dropped past ``limit`` bytes waiting while stdout's reader is stuck (a write has
    taken over CONSOLE_STUCK seconds), or past ``hard_limit`` bytes (a reader that moves, but slower than the events
    come). A burst alone never drops: the console thread lags behind the loop for a moment, its reader does not.
    """

    def __init__(self, limit: int, hard_limit: int) -> None:
        self.bytes = 0
        self.lines = 0
        self._limit = limit
        self._hard_limit = max(limit, hard_limit)
        self._dropped = 0

    def admits(self, size: int, lines: int, writing_since: float) -> bool:
        """Whether a mirror chunk of ``size`` bytes is queued (else it is counted as dropped)."""
        if self.bytes + size <= self._limit:
            return True
        stuck = writing_since != 0.0 and time.monotonic() - writing_since > CONSOLE_STUCK
        if stuck or self.bytes + size > self._hard_limit:
            self._dropped += lines
            return False
        return True

    def queued(self, size: int, lines: int) -> None:
        self.bytes += size
        self.lines += lines

    def written(self, size: int, lines: int) -> None:
        self.bytes -= size
        self.lines -= lines

    def report(self) -> None:
        """Once nothing waits, say how many lines were dropped since the last report."""
        if self._dropped and self.bytes == 0:
            log.warning(
                "%d linhas omitidas no console (a saída padrão não acompanhou); o banco tem todos os eventos",
                self._dropped,
            )
            self._dropped = 0


class Console:
    """The one thread that writes stdout, so a slow or stuck reader never blocks the event loop.

    ``write(lines, record=True)``: the lines are part of the record (no ``--banco``): always queued (the
    acks that wait for them bound how much), and the returned future resolves once they are written and
    flushed (ConsoleClosed if stdout is gone). ``record=False``: a mirror of the database, queued or dropped and
    counted as its ConsoleBudget says; once the queue drains one stderr line says how many were omitted.
    ``closed`` is called (in the loop, once) when a write fails. Futures resolve in the loop through
    call_soon_threadsafe: the only place where this thread meets asyncio.
    """

    def __init__(
        self,
        stream: BinaryIO,
        encoding: str,
        closed: Callable[[OSError], None],
        limit: int,
        hard_limit: int = CONSOLE_MAX_BYTES,
    ) -> None:
        self.encoding = encoding
        self.gone = False  # a write failed: nothing more is written (owned by the loop)
        # os.write on the bare descriptor, never the BufferedWriter: a write stuck on an unread pipe then
        # holds no lock that the interpreter's exit needs, so the thread can be abandoned at exit.
        self._fd = stream.fileno()
        self._closed = closed
        self._budget = ConsoleBudget(limit, hard_limit)
        self._writing_since = 0.0  # monotonic time the thread's write in progress began (0: none; the thread's)
        self._ended = asyncio.Event()  # the thread has returned
        self._idle = asyncio.Event()  # set whenever a write completes
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[tuple[bytes, int, asyncio.Future[None] | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    def write(self, lines: list[str], *, record: bool) -> asyncio.Future[None] | None:
        if not lines:
            return None
        future = self._loop.create_future() if record else None
        if self.gone:
            if future is not None:
                future.set_exception(ConsoleClosed())
            return future
        data = ("\n".join(lines) + "\n").encode(self.encoding, "backslashreplace")
        if future is None and not self._budget.admits(len(data), len(lines), self._writing_since):
            return None
        self._budget.queued(len(data), len(lines))
        self._queue.put((data, len(lines), future))
        return future

    async def drained(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s: stdout may be stuck) until every queued line is written."""
        deadline = time.monotonic() + timeout
        while self._budget.bytes and not self.gone and time.monotonic() < deadline:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), deadline - time.monotonic())

    async def close(self, timeout: float) -> None:
        """Write what is queued, then stop the thread; after ``timeout`` s of a stdout that does not move,
        abandon it (a daemon thread, stuck in write(): the exit does not wait for it) and say how many
        lines were left unprinted."""
        self._queue.put(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout)
        if not self._ended.is_set() and self._budget.lines and not self.gone:
            log.warning(
                "%d linhas não foram impressas: a saída padrão não andou em %g s ao encerrar",
                self._budget.lines,
                timeout,
            )

    # -- the thread --------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._call(self._ended.set)
                return
            items = [item]
            while len(items) < 256:  # one write for a burst
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                items.append(more)
            try:
                data = memoryview(b"".join(data for data, _, _ in items))
                self._writing_since = time.monotonic()
                while data:
                    data = data[os.write(self._fd, data) :]
                self._writing_since = 0.0
            except OSError as exc:
                self._silence()
                self._call(self._failed, items, exc)
                self._call(self._ended.set)
                return
            self._call(self._written, items)

    def _silence(self) -> None:
        """Point stdout at /dev/null: Python's own flush at exit must not fail on the closed pipe."""
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(callback, *args)

    # -- back in the loop --------------------------------------------------

    def _written(self, items: list[tuple[bytes, int, asyncio.Future[None] | None]]) -> None:
        for data, lines, future in items:
            self._budget.written(len(data), lines)
            if future is not None and not future.done():
                future.set_result(None)
        self._idle.set()
        self._budget.report()

    def _failed(self, items: list[tuple[bytes, int, asyncio.Future[None] | None]], exc: OSError) -> None:
        self.gone = True
        while True:  # whatever was queued after the failure is not written either
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is not None:
                items.append(more)
        for _, _, future in items:
            if future is not None and not future.done():
                future.set_exception(ConsoleClosed())
        self._closed(exc)


class Output:
    """Formats events and text messages for stdout and hands them to the Console thread."""

    def __init__(self, console: Console, as_json: bool, record: bool) -> None:
        self.console = console
        self.as_json = as_json
        self.record = record  # printing is part of the record (no --banco): acks wait for it

    def events(self, client: str, events: Iterable[Event], json_lines: list[str] | None) -> asyncio.Future[None] | None:
        """Print events: their JSON lines with --json, readable lines otherwise; a future when acks must wait."""
        if self.as_json:
            return self.console.write(json_lines if json_lines is not None else [], record=self.record)
        return self.console.write([format_event(client, ev) for ev in events], record=self.record)

    def text(self, peer: str, message: str | bytes, now: datetime.datetime | None = None) -> None:
        """A plain text message: the database has it, the console mirrors it (never waited for)."""
        now = now or datetime.datetime.now(datetime.UTC)
        if self.as_json:
            self.console.write([to_json_line(text_record(peer, message, now))], record=False)
        else:
            self.console.write([format_text_message(peer, message, now)], record=False)


class FailureReport:
    """Says a storage failure on stderr once per reason and FAILURE_REPORT_INTERVAL, however many retries."""

    def __init__(self) -> None:
        self.failures = 0
        self._said: dict[str, float] = {}

    def failed(self, exc: sqlite3.Error) -> None:
        self.failures += 1
        reason = describe_sqlite_error(exc)
        now = time.monotonic()
        if reason not in self._said or now - self._said[reason] >= FAILURE_REPORT_INTERVAL:
            self._said[reason] = now
            log.error(
                "não foi possível gravar no banco: %s; nada foi confirmado, nova tentativa a cada %g s",
                reason,
                COMMIT_RETRY_DELAY,
            )

    def succeeded(self) -> None:
        if self.failures:
            log.info("o banco voltou a gravar, depois de %d tentativas sem sucesso", self.failures)
            self.failures = 0
            self._said.clear()


class Retention:
    """What the writer deletes, and when: the events past ``max_events`` and those older than ``days``."""

    def __init__(
        self, max_events: int = MAX_EVENTS, days: float = RETENTION_DAYS, budget: MemoryBudget | None = None
    ) -> None:
        self.max_events = max_events
        self.days = days
        self.budget = budget
        self._next_age_check = 0.0  # time.monotonic()

    def idle_timeout(self) -> float | None:
        """How long the writer may sleep with nothing to do (None: until a job comes)."""
        return RETENTION_INTERVAL if self.days else None

    def due(self) -> tuple[int, int | None, MemoryBudget | None] | None:
        """Arguments for Record.trim, or None when nothing needs checking now."""
        stored_before = None
        if self.days and time.monotonic() >= self._next_age_check:
            stored_before = int(time.time() - self.days * 86_400)
        if not self.max_events and stored_before is None and self.budget is None:
            return None
        return self.max_events, stored_before, self.budget

    def caught_up(self) -> None:
        if self.days:
            self._next_age_check = time.monotonic() + RETENTION_INTERVAL


@dataclasses.dataclass(slots=True)
class _Job:
    work: Callable[[Record], Any]
    future: asyncio.Future[Any]
    write: bool


class Committer:
    """The writer thread's transactions on the database: each round of works in one transaction, rolled
    back, reported (FailureReport) and left for a retry when the storage fails; retention in between.

    ``path``: the database file ("": in memory). Before each COMMIT its identity (st_dev, st_ino) is
    compared with the file opened: a file deleted or replaced under the server would take every later
    commit with it, so from then on nothing commits and ``lost(reason)`` is called once (from the thread).
    """

    def __init__(self, conn: sqlite3.Connection, path: str = "", lost: Callable[[str], None] | None = None) -> None:
        self.record = Record(conn)
        self.lost_reason: str | None = None  # the file is gone: nothing commits any more
        self._conn = conn
        self._path = path
        self._identity = _file_identity(path) if path else None
        self._lost = lost
        self._report = FailureReport()

    def commit(self, works: list[Callable[[Record], Any]]) -> list[tuple[Any, bool]] | None:
        """Run ``works`` in one transaction, each in a savepoint of its own: (its result, True) or (the exception
        it raised, False) per work once committed; None (rolled back, reported) when the storage failed."""
        if self.lost_reason is not None:
            return None
        results: list[tuple[Any, bool]] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for work in works:
                self._conn.execute("SAVEPOINT work")
                try:
                    results.append((work(self.record), True))
                except Exception as exc:
                    if is_storage_failure(exc):
                        raise
                    self._conn.execute("ROLLBACK TO work")  # this work's error is its caller's, not the others'
                    results.append((exc, False))
                self._conn.execute("RELEASE work")
            if not self._file_still_ours():
                self._rollback()
                return None
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._report.failed(exc)
            return None
        self._report.succeeded()
        return results

    def trim(self, retention: Retention) -> None:
        """Retention: a few bounded transactions per round, the rest in the next rounds."""
        limits = retention.due()
        if limits is None or self.lost_reason is not None:
            return
        for _ in range(4):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                deleted = self.record.pruner.trim(*limits)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._report.failed(exc)
                return
            if deleted < RETENTION_CHUNK:
                retention.caught_up()
                return

    def close(self) -> None:
        self._conn.close()

    def _file_still_ours(self) -> bool:
        """False once the database file was deleted or replaced (one stat per commit round)."""
        if self._identity is None:
            return True
        if self.lost_reason is None and _file_identity(self._path) != self._identity:
            self.lost_reason = (
                f"o arquivo do banco {self._path!r} foi apagado ou substituído com o servidor rodando; "
                "nada gravado depois disso foi confirmado e o servidor parou (reinicie-o: os clientes "
                "reenviam o que não foi confirmado)"
            )
            if self._lost is not None:
                self._lost(self.lost_reason)
        return self.lost_reason is None

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back by itself
                self._conn.execute("ROLLBACK")


class Writer:
    """The one thread that owns the database connection: group commits, retries, reads in between.

    ``write(work)``: ``work(record)`` runs in a transaction shared with every write that arrived
    meanwhile, from any connection (one COMMIT, one fsync for all); its result, or the exception it
    raised, reaches the returned future only once that transaction has committed. A failed commit is
    rolled back, reported and retried with the same works (Committer), so a work must only read and
    change the database; nothing is delivered meanwhile. ``read(work)``: runs between transactions,
    sees committed data only and never waits behind a failing commit. Results reach the event loop in
    submission order, through call_soon_threadsafe: the only place where this thread meets asyncio.

    ``path``: the database file ("": in memory); once it is deleted or replaced nothing commits and
    ``lost(reason)`` is called once in the loop (Committer).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        retention: Retention,
        path: str = "",
        lost: Callable[[str], None] | None = None,
    ) -> None:
        self.backlog = 0  # writes submitted and not yet delivered (owned by the loop)
        self._loop = asyncio.get_running_loop()
        self._lost = lost
        self._committer = Committer(conn, path, self._file_lost)  # used by the thread only
        self._retention = retention
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._stopped: asyncio.Future[None] | None = None  # set by close()
        self._finished_seen = False  # the thread has ended (owned by the loop)
        self._thread = threading.Thread(target=self._run, name="banco", daemon=True)
        self._thread.start()

    def write(self, work: Callable[[Record], Any]) -> asyncio.Future[Any]:
        self.backlog += 1
        return self._submit(work, write=True)

    def write_later(self, work: Callable[[Record], Any]) -> None:
        """A write whose result nobody waits for; a failure is logged."""
        self.write(work).add_done_callback(_log_failure)

    def read(self, work: Callable[[Record], Any]) -> asyncio.Future[Any]:
        return self._submit(work, write=False)

    def _submit(self, work: Callable[[Record], Any], *, write: bool) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        self._jobs.put(_Job(work, future, write))
        return future

    async def close(self) -> None:
        """Commit what is pending (one more attempt), then stop the thread and close the database.

        Returns once the last results have reached their futures (and the events are printed).
        """
        if not self._finished_seen:
            self._stopped = self._loop.create_future()
            self._jobs.put(None)
            await self._stopped
        await asyncio.to_thread(self._thread.join)

    # -- the thread --------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # a bug: say it, or every later write would wait for ever in silence
            log.critical("a thread do banco parou; nada mais será confirmado", exc_info=True)
            raise
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._finished)

    def _file_lost(self, reason: str) -> None:
        if self._lost is not None:
            self._loop.call_soon_threadsafe(self._lost, reason)

    def _serve(self) -> None:
        pending: list[_Job] = []
        retry_at = 0.0
        stopping = False
        while not stopping:
            timeout = max(0.0, retry_at - time.monotonic()) if pending else self._retention.idle_timeout()
            for job in self._take(timeout):
                if job is None:
                    stopping = True
                elif job.write:
                    pending.append(job)
                else:
                    self._answer(job)
            if pending and (stopping or time.monotonic() >= retry_at):
                results = self._committer.commit([job.work for job in pending])
                if results is None:
                    retry_at = time.monotonic() + COMMIT_RETRY_DELAY
                else:
                    self._loop.call_soon_threadsafe(self._deliver, list(zip(pending, results, strict=True)))
                    pending = []
            if not pending:
                self._committer.trim(self._retention)
        if pending:  # with the file gone, the one error line is the stop's own (main's ``Erro:``)
            log.log(
                logging.INFO if self._committer.lost_reason else logging.ERROR,
                "%d gravações pendentes ficaram fora do banco; os clientes reenviarão os eventos",
                len(pending),
            )
        self._committer.close()

    def _take(self, timeout: float | None) -> list[_Job | None]:
        """Every job queued now, waiting up to ``timeout`` s for the first (None: for ever)."""
        try:
            jobs = [self._jobs.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                jobs.append(self._jobs.get_nowait())
            except queue.Empty:
                return jobs

    def _answer(self, job: _Job) -> None:
        try:
            result: tuple[Any, bool] = (job.work(self._committer.record), True)
        except Exception as exc:  # delivered to the caller, who decides
            result = (exc, False)
        self._loop.call_soon_threadsafe(self._deliver, [(job, result)])

    # -- back in the loop --------------------------------------------------

    def _finished(self) -> None:
        self._finished_seen = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def _deliver(self, results: list[tuple[_Job, tuple[Any, bool]]]) -> None:
        for job, (value, ok) in results:
            if job.write:
                self.backlog -= 1
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)


def _file_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path``; None if it does not exist any more."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("falha ao gravar no banco: %r", future.exception())


def connection_factory() -> type[sqlite3.Connection]:
    """sqlite3.Connection; in tests (FAIL_COMMIT_ENV set), one whose COMMIT fails while that file exists."""
    flag = os.environ.get(FAIL_COMMIT_ENV, "")
    if not flag:
        return sqlite3.Connection

    class FailingCommit(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            if sql == "COMMIT" and os.path.exists(flag):
                exc = sqlite3.OperationalError("disk I/O error (falha simulada)")
                exc.sqlite_errorname = "SQLITE_IOERR"
                raise exc
            return super().execute(sql, parameters)

    return FailingCommit


@dataclasses.dataclass
class ClientState:
    """What the loop remembers of a client between its connections (the database remembers the rest).

    The seqs and ``last_write`` belong to the Publisher; the rest to the ClientRegistry.
    """

    name: str
    stored_seq: int = 0  # every event up to here is committed: what welcome reports
    accepted_seq: int = 0  # handed to the writer, maybe not committed yet: resent events up to here are dropped
    last_write: asyncio.Future[Any] | None = None  # the latest job with this client's events (stored, then printed)
    connection: ServerConnection | None = None
    secret_hash: bytes | None = None  # the client's credential, as stored (None: a client that never sent one)
    claim: asyncio.Future[Any] | None = None  # the commit of the credential's first contact (no welcome before it)

    def idle(self) -> bool:
        return self.connection is None and (self.last_write is None or self.last_write.done())


class Acknowledger:
    """Sends one connection's acks in order, each once the write it waits for has committed."""

    def __init__(self, ws: ServerConnection) -> None:
        self.error: BaseException | None = None  # a write that failed: the connection must end
        self._ws = ws
        self._pending: collections.deque[tuple[asyncio.Future[Any] | None, int | None]] = collections.deque()
        self._wake = asyncio.Event()  # the oldest pending write may be done
        self._progress = asyncio.Event()  # acks went out

    def add(self, write: asyncio.Future[Any] | None, seq: int | None) -> None:
        """Ack ``seq`` (None: send nothing) once ``write`` (None: nothing to wait for) has committed."""
        self._pending.append((write, seq))
        if write is None or write.done():
            self._wake.set()
        else:
            write.add_done_callback(self._written)  # never awaited here: other connections may share it

    def _written(self, write: asyncio.Future[Any]) -> None:
        self._wake.set()

    async def room(self) -> None:
        """Wait while MAX_PENDING_BATCHES writes of this connection await their commit (back-pressure)."""
        if self.error is not None:
            raise self.error
        while len(self._pending) >= MAX_PENDING_BATCHES:
            await self._progressed()

    async def drained(self) -> None:
        """Wait until every write so far has committed and its ack has been sent."""
        while self._pending:
            await self._progressed()

    async def _progressed(self) -> None:
        if self.error is not None:
            raise self.error
        self._progress.clear()
        await self._progress.wait()
        if self.error is not None:
            raise self.error

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                ack = None
                while self._pending and (self._pending[0][0] is None or self._pending[0][0].done()):
                    write, seq = self._pending.popleft()
                    if write is not None:
                        write.result()
                    ack = seq if seq is not None else ack
                if ack is not None:
                    await self._ws.send(encode_ack(ack))
                self._progress.set()
        except Exception as exc:
            self.error = exc
            self._progress.set()
            raise


def partial_message_visible(protocol: Any) -> bool:
    """Whether websockets' Protocol still shows a message begun and not finished the way 17.x does
    (``reader.buffer``, ``current_size``: not public API; tests/test_hardening2.py fails loudly if they go)."""
    return isinstance(getattr(getattr(protocol, "reader", None), "buffer", None), (bytes, bytearray)) and hasattr(
        protocol, "current_size"
    )


async def watch_incomplete(ws: ServerConnection, timeout: float, label: str) -> None:
    """Close ``ws`` when a message stays incomplete (a frame, or a fragmented message, begun and not finished)
    for ``timeout`` seconds while the server is reading it: a held half-frame costs memory. Time the server
    itself stops reading (back-pressure) does not count."""
    protocol = ws.protocol
    if not partial_message_visible(protocol):
        log.debug("websockets mudou: sem o limite de tempo para mensagens incompletas")
        return
    loop = asyncio.get_running_loop()
    since: float | None = None
    while True:
        await asyncio.sleep(timeout / 4)
        reading = getattr(ws.transport, "is_reading", lambda: True)()
        partial = bool(protocol.reader.buffer) or protocol.current_size is not None
        if not (partial and reading):
            since = None
        elif since is None:
            since = loop.time()
        elif loop.time() - since >= timeout:
            reason = f"mensagem incompleta por mais de {timeout:g} s"
            log.warning("%s violou o protocolo: %s", label, reason)
            await ws.close(CLOSE_POLICY, reason)
            return


class Session:
    """One protocol client's connection: its events to the writer, acks back, the digest check and the
    manifest (v2)."""

    def __init__(self, server: MonitorServer, ws: ServerConnection, hello: Hello, state: ClientState) -> None:
        self.server = server
        self.ws = ws
        self.hello = hello
        self.state = state
        self.acks = Acknowledger(ws)
        self.label = f"{escape(hello.name)} (id {escape(hello.client_id[:8])})"
        self.manifest = ManifestProgress()
        self._next_digest = 0.0  # monotonic time before which a digest waits (each one is a full SQL sum)

    async def run(self) -> None:
        acker = asyncio.create_task(self.acks.run())
        acker.add_done_callback(lambda task: task.cancelled() or task.exception())  # seen even if never raised
        watcher = asyncio.create_task(watch_incomplete(self.ws, self.server.hello_timeout, self.label))
        watcher.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            pending = self.state.last_write
            if pending is not None and not pending.done():
                # A previous connection's events are still being stored (a client killed and restarted at
                # once): the welcome waits for them, so the ack it reports is also what dedup drops.
                await asyncio.wait({pending})
            await self.ws.send(encode_welcome(self.state.stored_seq, self.hello.version))
            async for text in self.ws:
                await self.acks.room()
                await self.server.budget.room()
                message = parse_message(text, self.hello.version)
                if isinstance(message, list):
                    self.events(message, len(text))
                elif isinstance(message, DigestReport):
                    await self.check(message)
                elif isinstance(message, ManifestBegin):
                    await self.begin(message)
                elif isinstance(message, Manifest):
                    self.stage(message)
                else:
                    await self.end(message)
        finally:
            acker.cancel()
            watcher.cancel()
            if self.manifest.seq is not None and self.state.connection in (None, self.ws):
                # An unfinished manifest: its staged rows would stay in SQLite's temp storage for ever.
                # (A newer connection of the client drops them itself when its manifest begins.)
                client_id = self.hello.client_id
                self.server.writer.write_later(lambda record: record.unstage(client_id))

    def events(self, events: list[Event], size: int = 0) -> None:
        self.manifest.outside("eventos")
        check_event_paths(self.hello, events)
        fresh = [ev for ev in events if ev.seq > self.state.accepted_seq]
        if fresh:
            self.server.budget.hold(size, self.server.publisher.store(self.hello, self.state, fresh))
        self.acks.add(self.state.last_write, self.state.accepted_seq)

    async def check(self, report: DigestReport) -> None:
        """Compare the client's digest with the server's tree; answer ``verified`` or ``resync``."""
        self.manifest.outside("'digest'")
        early = self._next_digest - time.monotonic()
        if early > 0:  # a digest spammer waits: it never makes the single writer thread sum its tree again and again
            await asyncio.sleep(early)
        await self.acks.drained()
        client_id = self.hello.client_id
        seq, digest = await self.server.writer.read(lambda record: record.digest(client_id))
        self._next_digest = time.monotonic() + DIGEST_MIN_INTERVAL
        matched = seq == report.seq and digest == report.digest
        now = utc_now()
        self.server.writer.write_later(lambda record: record.note_digest(client_id, matched, now))
        self.server.hub.digest(client_id, matched, now)
        log.debug(
            "verificação de %s: %s (seq %d; servidor: %d entradas, %016x; cliente: seq %d, %d entradas, %016x)",
            self.label,
            "a árvore confere" if matched else "a árvore difere, pedindo ressincronização",
            seq,
            digest.count,
            digest.sum,
            report.seq,
            report.digest.count,
            report.digest.sum,
        )
        await self.ws.send(encode_digest_answer("verified" if matched else "resync", seq, digest))

    async def begin(self, message: ManifestBegin) -> None:
        await self.acks.drained()
        self.manifest.begin(message, self.state.stored_seq)
        self._stage([], first=True)

    def stage(self, message: Manifest) -> None:
        self.manifest.add(message)
        check_paths(self.hello, ((path.decode("utf-8", "backslashreplace"), None) for path, _ in message.entries))
        self._stage(message.entries, first=False)

    def _stage(self, entries: list[tuple[bytes, bool]], *, first: bool) -> None:
        hello, now = self.hello, utc_now()
        self.acks.add(self.server.writer.write(lambda record: record.stage(hello, entries, first, now)), None)

    async def end(self, message: ManifestEnd) -> None:
        """The manifest is whole: replace the tree, show the differences, answer ``verified``."""
        seq = self.manifest.end()
        await self.acks.drained()
        started = time.monotonic()
        write = self.server.publisher.resync(self.hello, self.state, seq, message.digest)
        await asyncio.wait([write])
        differences: list[Event] = write.result()
        created = sum(ev.event == "created" for ev in differences)
        log.info(
            "ressincronização de %s: %d criados, %d excluídos; a árvore tem %d entradas (%.2f s)",
            self.label,
            created,
            len(differences) - created,
            message.digest.count,
            time.monotonic() - started,
        )
        self.server.hub.digest(self.hello.client_id, True, utc_now())
        await self.ws.send(encode_digest_answer("verified", self.state.stored_seq, message.digest))


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


_SECRET_WORDS = ("token", "secret", "password", "auth")  # a key or header holding one of these (any case) is hidden
_JSON_CHARS = rb'(?:[^"\\]|\\.)*'  # the inside of a JSON string, escapes included


def _json_spellings(word: str) -> bytes:
    """A pattern of ``word`` as a JSON string may spell it, any case: each letter as itself or as its ``\\uXXXX``
    escape (``"\\u0073ecret"`` is the key ``secret`` to json.loads)."""
    return b"".join(
        rb"(?:"
        + re.escape(c.encode())
        + b"".join(rb"|\\u%04x" % ord(v) for v in dict.fromkeys(c.lower() + c.upper()))
        + rb")"
        for c in word
    )


_SECRET_VALUE = re.compile(
    rb'("' + _JSON_CHARS + rb"?(?:" + b"|".join(map(_json_spellings, _SECRET_WORDS)) + rb")" + _JSON_CHARS
    + rb'"\s*:\s*")' + _JSON_CHARS,
    re.IGNORECASE,
)  # fmt: skip
_SECRET_HEADERS = {"cookie", "set-cookie"}  # besides those named with a _SECRET_WORDS word (Authorization, ...)


def is_secret_name(name: str) -> bool:
    """Whether a header (or a key) named ``name`` holds a credential: it contains token, secret, password or auth
    (any case: access_token, X-Auth-Token, Proxy-Authorization), or is a cookie."""
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or any(word in lowered for word in _SECRET_WORDS)


class SecretRedaction(logging.Filter):
    """Keeps the page's token, a hello's secret and an Authorization header out of websockets' debug lines (-vv):
    the string value of a frame's key that contains token, secret, password or auth (any case: ``"token"``,
    ``"access_token"``, ``"Password"``) becomes ``***`` (a continuation frame's payload, which may hold the rest
    of one, is dropped), and so does the value of a credential header (is_secret_name)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        if isinstance(args[0], Frame) and args[0].opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            frame = args[0]
            data = b"***" if frame.opcode is Opcode.CONT else _SECRET_VALUE.sub(rb"\1***", frame.data)
            record.args = (dataclasses.replace(frame, data=data), *args[1:])
        elif len(args) == 2 and record.msg in ("< %s: %s", "> %s: %s") and is_secret_name(str(args[0])):
            record.args = (args[0], "***")
        return True

    @classmethod
    def install(cls, logger: logging.Logger) -> None:
        if not any(isinstance(each, cls) for each in logger.filters):
            logger.addFilter(cls())


class RateLimitedWarning:
    """One stderr line per WARNING_INTERVAL for a condition that may repeat thousands of times a second."""

    def __init__(self, message: str) -> None:
        self.message = message  # %-format with the count of occurrences since the last line, then the args
        self._count = 0
        self._said_at: float | None = None

    def happened(self, *args: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if self._said_at is None or now - self._said_at >= WARNING_INTERVAL:
            log.warning(self.message, self._count, *args)
            self._said_at, self._count = now, 0


class ByteBudget:
    """Bytes of the messages awaiting their commit, over all connections, against MAX_PENDING_BYTES: past it no
    connection is read (a failing disk then stops every reader: TCP pushes back on the clients instead of memory
    growing)."""

    def __init__(self) -> None:
        self.pending = 0  # bytes of the messages whose writes have not completed
        self._released = asyncio.Event()  # set whenever pending went down

    def hold(self, size: int, write: asyncio.Future[Any]) -> None:
        """Count ``size`` bytes until ``write`` completes."""
        self.pending += size
        write.add_done_callback(functools.partial(self._release, size))

    def _release(self, size: int, _write: asyncio.Future[Any]) -> None:
        self.pending -= size
        self._released.set()

    def exceeded(self) -> bool:
        return self.pending > MAX_PENDING_BYTES

    async def room(self) -> None:
        """Wait while the bytes held exceed MAX_PENDING_BYTES."""
        if not self.exceeded():
            return
        log.debug("leitura pausada: %d bytes esperam o commit (limite de %d)", self.pending, MAX_PENDING_BYTES)
        while self.exceeded():
            self._released.clear()
            await self._released.wait()


class ClientRegistry:
    """The clients the loop remembers (ClientState by client_id, most recent last) and which connection is each
    one's: a hello's credential is checked (trust on first use: the welcome waits for its commit), a newer
    connection of a client replaces the older, idle states are forgotten past MAX_REMEMBERED_CLIENTS (the
    database still knows them), and new ids are capped for the in-memory record (``max_clients``, 0: no cap).
    Owns each ClientState's name, connection, secret_hash and claim."""

    def __init__(self, writer: Writer, max_clients: int = 0) -> None:
        self.writer = writer
        self.max_clients = max_clients
        self.new_clients = 0  # ids first seen by this process (all the in-memory record knows)
        self.clients: collections.OrderedDict[str, ClientState] = collections.OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._no_room = RateLimitedWarning(
            "%d clientes novos recusados: o registro em memória guarda no máximo %d clientes (use --banco)"
        )

    async def register(self, ws: ServerConnection, hello: Hello) -> ClientState:
        """The client's state once its hello is accepted; ProtocolError (never touching its other connection) if not."""
        client_id = hello.client_id
        state = self.clients.get(client_id)
        if state is None:
            known = await self.writer.read(lambda record: record.client(client_id))
            state = self.clients.get(client_id)  # another connection of it may have come meanwhile
            if state is None:
                if known is None and self.max_clients:
                    if self.new_clients >= self.max_clients:
                        self._no_room.happened(self.max_clients)
                        raise ProtocolError("o servidor não tem espaço para clientes novos", CLOSE_TRY_AGAIN)
                    self.new_clients += 1
                last_seq, secret_hash = known or (0, None)
                state = ClientState(hello.name, last_seq, last_seq, secret_hash=secret_hash)
                self.clients[client_id] = state
        # From here to the end no await: two hellos racing for one id are checked one after the other.
        self._check_credential(state, hello)
        now = utc_now()
        registered = self.writer.write(lambda record: record.register(hello, now))
        registered.add_done_callback(_log_failure)
        if state.secret_hash is None and hello.secret_hash is not None:
            # First contact of a credential (trust on first use): the welcome waits for its commit
            # (README, "Segurança"), and so does a second connection that proves the same secret meanwhile.
            state.secret_hash = hello.secret_hash
            state.claim = registered
        self.clients.move_to_end(client_id)  # most recent last, for eviction
        old, state.connection, state.name = state.connection, ws, hello.name
        self._forget_idle_clients()
        if old is not None:
            # The client reconnected before its old connection timed out: close the
            # old one so a single connection at a time delivers its events, in order.
            task = asyncio.create_task(old.close(CLOSE_REPLACED, "substituída por nova conexão"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return state

    @staticmethod
    async def claimed(state: ClientState) -> None:
        """Wait (at most CLAIM_TIMEOUT) until the client's credential is committed; 1013 if it is not."""
        claim = state.claim
        if claim is None:
            return
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT):
                await asyncio.shield(claim)
        except TimeoutError:
            raise ProtocolError(
                f"a credencial não pôde ser gravada em {CLAIM_TIMEOUT:g} s; tente mais tarde", CLOSE_TRY_AGAIN
            ) from None
        except Exception:
            raise ProtocolError("a credencial não pôde ser gravada; tente mais tarde", CLOSE_TRY_AGAIN) from None
        if state.claim is claim:
            state.claim = None

    @staticmethod
    def disconnected(state: ClientState, ws: ServerConnection) -> None:
        """``ws`` ended; it stays the client's connection only if no newer one replaced it."""
        if state.connection is ws:
            state.connection = None

    def _forget_idle_clients(self) -> None:
        """Past MAX_REMEMBERED_CLIENTS, forget the oldest IDLE states (the database still knows their last seq).

        Connected clients, or those with a write in flight, are skipped, not a reason to stop: one client
        connected for days must not let strangers' hellos grow memory. The skipped ones are at most the
        open connections plus the pending writes, so the walk stays short.
        """
        excess = len(self.clients) - MAX_REMEMBERED_CLIENTS
        if excess <= 0:
            return
        idle: list[str] = []
        for client_id, state in self.clients.items():
            if state.idle():
                idle.append(client_id)
                if len(idle) == excess:
                    break
        for client_id in idle:
            del self.clients[client_id]

    @staticmethod
    def _check_credential(state: ClientState, hello: Hello) -> None:
        stored = state.secret_hash
        if stored is not None and (hello.secret_hash is None or not hmac.compare_digest(stored, hello.secret_hash)):
            raise ProtocolError("credencial ausente ou errada para este client_id", CLOSE_CREDENTIAL)


class Publisher:
    """Hands each batch of a client to the Writer and prints it once committed, in commit order, only the events
    the record had not stored yet. Owns each ClientState's seqs: ``accepted_seq`` and ``last_write`` as a batch is
    handed over, ``stored_seq`` as it commits (a failed write hands its events back: they are taken again)."""

    def __init__(self, output: Output, writer: Writer, hub: ViewerHub | None = None) -> None:
        self.output = output
        self.writer = writer
        self.hub = hub or ViewerHub()

    def store(self, hello: Hello, state: ClientState, events: list[Event]) -> asyncio.Future[Any]:
        """Hand ``events`` (newer than ``state.accepted_seq``) to the writer.

        The returned future (also ``state.last_write``) resolves once they are stored and, when printing is
        part of the record (no --banco), printed: an ack waits for it.
        """
        now = utc_now()
        write = self.writer.write(lambda record: record.store_events(hello, events, now))
        state.accepted_seq = events[-1].seq
        state.last_write = self._shown(hello, state, events[-1].seq, write)
        return state.last_write

    def resync(self, hello: Hello, state: ClientState, seq: int, digest: Digest) -> asyncio.Future[Any]:
        """Replace the client's tree by its staged manifest; the differences are printed once committed."""
        now = utc_now()
        write = self.writer.write(lambda record: record.resync(hello, seq, digest, now))
        return self._shown(hello, state, seq, write)

    def _shown(self, hello: Hello, state: ClientState, seq: int, write: asyncio.Future[Any]) -> asyncio.Future[Any]:
        shown: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        write.add_done_callback(functools.partial(self._stored, hello, state, seq, shown))
        return shown

    def _stored(
        self, hello: Hello, state: ClientState, seq: int, shown: asyncio.Future[Any], write: asyncio.Future[Any]
    ) -> None:
        """Runs in the loop, in commit order, whether or not the connection still exists."""
        if write.cancelled() or write.exception() is not None:
            if state.last_write is shown or state.last_write is None:
                state.accepted_seq, state.last_write = state.stored_seq, None  # not stored: take it again
            shown.set_exception(write.exception() or asyncio.CancelledError())
            return
        state.stored_seq = max(state.stored_seq, seq)
        state.accepted_seq = max(state.accepted_seq, seq)
        stored: list[Event] = write.result()
        printed = None
        if stored:
            json_lines = None
            if self.output.as_json or self.hub.viewers:  # the same lines for --json and the pages
                json_lines = event_lines(hello.name, hello.client_id, stored)
            printed = self.output.events(hello.name, stored, json_lines)
            self.hub.published(hello.name, hello.client_id, stored, json_lines)
        if printed is None:
            shown.set_result(stored)
        else:
            printed.add_done_callback(lambda done: _settle(shown, done, stored))


# ---------------------------------------------------------------------------
# I/O: the live page's viewers (README, "A página ao vivo").
# ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ClientView:
    """What a page shows of one client seen by this process (the record knows the others). Owned by the ViewerHub."""

    client_id: str
    name: str
    root: str
    path_style: PathStyle
    protocol: int
    last_seq: int  # how many events it has numbered: its last stored seq
    last_seen: datetime.datetime
    address: str | None = None  # None: not connected
    connected_since: datetime.datetime | None = None
    last_event: datetime.datetime | None = None
    digest: bool | None = None  # its last digest matched (None: never checked in this process)
    verified_at: datetime.datetime | None = None

    def as_object(self) -> dict[str, Any]:
        """The page's client object (README, "A página ao vivo")."""

        def when(value: datetime.datetime | None) -> str | None:
            return None if value is None else iso_time(value)

        return {"client_id": self.client_id, "client": self.name, "root": self.root, "path_style": self.path_style,
                "protocol": self.protocol, "connected": self.address is not None, "address": self.address,
                "connected_since": when(self.connected_since), "last_seen": when(self.last_seen),
                "events": self.last_seq, "last_event": when(self.last_event),
                "digest": None if self.digest is None else "matched" if self.digest else "differs",
                "verified_at": when(self.verified_at)}  # fmt: skip


class ViewerQueue:
    """One page's outgoing messages and the task that sends them: a page that does not read stalls only this task.

    An ``events`` message is encoded once for every page (``put_events`` gets its bytes); events waiting for a page
    that is behind are merged into one message. Past VIEWER_BACKLOG_MESSAGES messages or VIEWER_BACKLOG_BYTES
    waiting, they are dropped and replaced by ``omitted`` (how many events) and a fresh ``state`` (``refill()``):
    memory per page stays bounded, and the page starts over from the state.
    """

    def __init__(self, ws: ServerConnection, refill: Callable[[], str]) -> None:
        self.ws = ws
        self.omitted = 0  # events dropped for this page so far
        self._refill = refill
        # [bytes, None, size]: a message ready; [bytes | None, lines, size]: events (None: merged, encoded when sent).
        self._waiting: collections.deque[list[Any]] = collections.deque()
        self._size = 0
        self._wake = asyncio.Event()

    def put(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._room(len(data), 1):
            self._append([data, None, len(data)])

    def put_events(self, lines: list[str], data: bytes) -> None:
        last = self._waiting[-1] if self._waiting else None
        if last is not None and last[1] is not None:  # behind: merged into the waiting events
            if self._room(len(data), 0, len(lines)):
                if last[0] is not None:
                    last[1] = list(last[1])  # its own copy from now on (the first one is shared by every page)
                last[0], last[2] = None, last[2] + len(data)
                last[1].extend(lines)
                self._size += len(data)
        elif self._room(len(data), 1, len(lines)):
            self._append([data, lines, len(data)])

    def _append(self, item: list[Any]) -> None:
        self._waiting.append(item)
        self._size += item[2]
        self._wake.set()

    def _room(self, size: int, messages: int, events: int = 0) -> bool:
        """Whether this much more fits; if not, the waiting messages become ``omitted`` + a fresh state."""
        if len(self._waiting) + messages <= VIEWER_BACKLOG_MESSAGES and self._size + size <= VIEWER_BACKLOG_BYTES:
            return True
        count = events + sum(len(lines) for _, lines, _ in self._waiting if lines is not None)
        self.omitted += count
        self._waiting.clear()
        self._size = 0
        self._append([f'{{"type": "omitted", "count": {count}}}'.encode(), None, 0])
        state = self._refill().encode("utf-8")
        self._append([state, None, len(state)])
        log.debug("página ao vivo %s ficou para trás: %d eventos omitidos", format_peer(self.ws.remote_address), count)
        return False

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                data, lines, size = self._waiting.popleft()
                data = data if data is not None else encode_events(lines).encode("utf-8")
                self._size -= size
                await self.ws.send(data, text=True)


class ViewerHub:
    """The pages watching (their ViewerQueues) and what a page is shown first: the clients (ClientViews) and the
    latest events, kept as references (nothing is encoded while no page is open). MonitorServer calls its hooks;
    each is synchronous and costs O(pages). Owns the ClientViews."""

    def __init__(self, database: bool = False, token: bool = False) -> None:
        self.viewers: set[ViewerQueue] = set()
        self.connections: set[ServerConnection] = set()  # every /ao-vivo connection open (a stop closes them)
        self.sessions = 0  # /ao-vivo connections admitted (token checked, if any): at most MAX_VIEWERS
        # The latest events were read from the record once, when the first page opened: with a database, it may
        # hold events of an earlier run; in memory, the ring has had them all since start-up.
        self.seeded = not database
        self._server = {"version": __version__, "protocol": PROTOCOL_VERSION, "database": database, "token": token}
        # The latest stored events, (name, client_id, Event), and text messages, (peer, text, when).
        self._recent: collections.deque[tuple[str, str, Event] | tuple[str, str | bytes, datetime.datetime]]
        self._recent = collections.deque(maxlen=VIEWER_RECENT_EVENTS)
        self._views: collections.OrderedDict[str, ClientView] = collections.OrderedDict()  # least recent first
        self._stored: list[dict[str, Any]] = []  # the record's recent clients, as read when a page last opened
        self._pending: list[str] = []  # --json lines published in this loop turn, for the pages (flush)
        # A refused page retries every few seconds: one stderr line per WARNING_INTERVAL, not one per attempt.
        self.refused = RateLimitedWarning("%d páginas ao vivo recusadas; a última, de %s: %s")

    # -- hooks (MonitorServer) -------------------------------------------------

    def connected(self, hello: Hello, peer: str, last_seq: int, now: datetime.datetime) -> None:
        view = self._views.pop(hello.client_id, None)
        digest, verified_at = (view.digest, view.verified_at) if view is not None else (None, None)
        view = ClientView(hello.client_id, hello.name, hello.root, hello.path_style, hello.version, last_seq, now,
                          peer, now, view.last_event if view else None, digest, verified_at)  # fmt: skip
        self._views[hello.client_id] = view
        excess = len(self._views) - VIEWER_MAX_CLIENTS
        for client_id in [key for key, old in self._views.items() if old.address is None][: max(0, excess)]:
            del self._views[client_id]  # the record still has them
        self._changed(view)

    def disconnected(self, client_id: str, now: datetime.datetime) -> None:
        view = self._views.get(client_id)
        if view is not None:
            view.address, view.connected_since, view.last_seen = None, None, now
            self._changed(view)

    def digest(self, client_id: str, matched: bool, now: datetime.datetime) -> None:
        view = self._views.get(client_id)
        if view is not None:
            view.digest = matched
            view.verified_at = now if matched else view.verified_at
            self._changed(view)

    def published(self, name: str, client_id: str, events: list[Event], lines: list[str] | None) -> None:
        """Stored events (in commit order); ``lines``: their ``--json`` lines, when already made."""
        view = self._views.get(client_id)
        if view is not None:
            view.last_seq, view.last_event = max(view.last_seq, events[-1].seq), events[-1].ts
            view.last_seen = utc_now()
        self._recent.extend((name, client_id, ev) for ev in events[-VIEWER_RECENT_EVENTS:])
        if self.viewers:
            self._pend(lines if lines is not None else event_lines(name, client_id, events))

    def text(self, peer: str, message: str | bytes, now: datetime.datetime) -> None:
        self._recent.append((peer, message, now))
        if self.viewers:
            self._pend([to_json_line(text_record(peer, message, now))])

    def _pend(self, lines: list[str]) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.extend(lines)

    def flush(self) -> None:
        """Hand the events published in this loop turn (a commit round's batches, all clients) to every page as
        one message, encoded once."""
        if self._pending:
            lines, self._pending = self._pending, []
            data = encode_events(lines).encode("utf-8")
            for viewer in self.viewers:
                viewer.put_events(lines, data)

    def _changed(self, view: ClientView) -> None:
        if self.viewers:
            self.flush()  # the events stored before this change go first
            text = json.dumps({"type": "client", "client": view.as_object()})
            for viewer in self.viewers:
                viewer.put(text)

    # -- pages -----------------------------------------------------------------

    def join(
        self,
        viewer: ViewerQueue,
        stored_clients: list[dict[str, Any]],
        recent: list[tuple[str, str, Event]] | None = None,
    ) -> None:
        """A page starts: ``stored_clients`` (the record's recent ones), then the state, then the stream.
        ``recent``: the record's latest events, read once (the events stored before this process started)."""
        self.flush()  # what is pending is in the ring, so in this page's state: the others get it now
        self._stored = stored_clients
        if recent is not None:
            self.seeded = True
            self._recent.clear()
            self._recent.extend(recent)
        self.viewers.add(viewer)
        viewer.put(self.state())

    def leave(self, viewer: ViewerQueue) -> None:
        self.viewers.discard(viewer)

    def state(self) -> str:
        """The ``state`` message, from memory only: built in one loop turn, it cannot miss an event."""
        views = {client_id: view.as_object() for client_id, view in self._views.items()}
        seen = [*views.values(), *(row for row in self._stored if row["client_id"] not in views)]
        connected = [client for client in seen if client["connected"]]
        others = sorted((c for c in seen if not c["connected"]), key=lambda c: c["last_seen"] or "", reverse=True)
        lines = []
        for item in self._recent:
            if isinstance(item[2], Event):
                lines += event_lines(item[0], item[1], [item[2]])
            else:
                lines.append(to_json_line(text_record(*item)))
        return encode_state(self._server, connected + others[:VIEWER_MAX_CLIENTS], lines)


class ViewerSession:
    """One page's /ao-vivo connection: admission (MAX_VIEWERS; without a token, this machine only), the token
    in-band, then the state and the stream (a ViewerQueue) while the page's tree and history requests are answered
    one at a time, at most one per VIEWER_REQUEST_INTERVAL. Nothing a page sends changes anything."""

    def __init__(self, server: MonitorServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.peer = format_peer(ws.remote_address)
        self._next_read = 0.0  # monotonic time before which the next request waits

    async def run(self) -> None:
        token, hub = self.server.token, self.server.hub
        host = self.ws.request.headers.get("Host") if self.ws.request is not None else None
        if remote_viewer_refused(self.ws.remote_address, token, host):
            hub.refused.happened(self.peer, "sem token, ela só atende esta máquina (por localhost)")
            await self.ws.close(CLOSE_VIEWER_REMOTE, REMOTE_VIEWER_REASON)
            return
        if token and not await self._authenticated(token):
            return
        # Only admitted pages count: silent sockets before their token are bounded by the open timeout and the
        # connection cap, and must not lock out a page that knows the token.
        if hub.sessions >= MAX_VIEWERS:
            await self.ws.close(CLOSE_TRY_AGAIN, "muitas páginas abertas; tente mais tarde")
            return
        hub.sessions += 1
        try:
            await self._serve()
        finally:
            hub.sessions -= 1

    async def _serve(self) -> None:
        hub = self.server.hub
        seed = not hub.seeded
        # A write job that only reads: its snapshot holds every event published before it resumes this task, and
        # none published after (results and their callbacks come in commit order), so the two never overlap.
        clients, recent = await self.server.writer.write(
            lambda record: (
                record.page.recent_clients(VIEWER_MAX_CLIENTS),
                record.page.recent_events(VIEWER_RECENT_EVENTS) if seed else None,
            )
        )
        viewer = ViewerQueue(self.ws, hub.state)
        hub.join(viewer, clients, recent)
        log.debug("página ao vivo aberta por %s", self.peer)
        sender = asyncio.create_task(viewer.run())
        sender.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            async for text in self.ws:
                request = parse_viewer_request(text)
                if isinstance(request, ViewerAuth) and self.server.token:
                    raise ProtocolError("'auth' repetido")
                if isinstance(request, ViewerAuth):  # a viewer that assumed a token: told, nothing else changes
                    viewer.put(encode_error("este servidor não usa token; a página ao vivo não precisa de 'auth'"))
                    continue
                await self._answer(request, viewer)
        finally:
            hub.leave(viewer)
            sender.cancel()

    async def _authenticated(self, token: str) -> bool:
        """Nothing but ``auth_required`` before the right token; a wrong one waits VIEWER_AUTH_DELAY, then 4401."""
        await self.ws.send('{"type": "auth_required"}')
        reason = "token ausente ou inválido"
        try:
            async with asyncio.timeout(self.server.hello_timeout):
                request = parse_viewer_request(await self.ws.recv())
        except TimeoutError:
            request, reason = None, f"nenhum token em {self.server.hello_timeout:g} s; digite-o e tente de novo"
        except ProtocolError:
            request = None
        if isinstance(request, ViewerAuth):
            given = request.token.encode("utf-8", "surrogatepass")
            if hmac.compare_digest(given, token.encode("utf-8", "surrogateescape")):
                return True
        self.server.hub.refused.happened(self.peer, reason)  # never the token it sent
        await asyncio.sleep(VIEWER_AUTH_DELAY)
        await self.ws.close(CLOSE_VIEWER_TOKEN, close_reason(reason))
        return False

    async def _answer(self, request: ViewerQuery, viewer: ViewerQueue) -> None:
        early = self._next_read - time.monotonic()
        if early > 0:
            await asyncio.sleep(early)
        if request.kind == "tree":
            answer = await self.server.writer.read(lambda record: record.page.tree(request))
        else:
            answer = await self.server.writer.read(lambda record: record.page.history(request))
        self._next_read = time.monotonic() + VIEWER_REQUEST_INTERVAL
        self.server.hub.flush()  # a fresh state after an overflow here must not be followed by events it holds
        viewer.put(answer if answer is not None else encode_error("cliente desconhecido", request.id))


class HandshakeGate:
    """What a request gets before any WebSocket (websockets' ``process_request``): HTTP 503 past the connection
    cap; the page's files for a plain HTTP request (PageAssets); the checks of a handshake: check_request for a
    monitor client, check_viewer for a page's /ao-vivo."""

    def __init__(self, token: str, max_connections: int, open_connections: Callable[[], int]) -> None:
        self.token = token
        self.max_connections = max_connections
        self.assets = PageAssets(PAGE_FILES)
        self._open_connections = open_connections
        self._full = RateLimitedWarning(
            "servidor cheio: %d conexões recusadas com HTTP 503 (limite de %d conexões abertas; --max-conexoes)"
        )

    def __call__(self, ws: ServerConnection, request: Request) -> Response | None:
        if self._open_connections() > self.max_connections:
            self._full.happened(self.max_connections)
            return ws.respond(503, "Servidor cheio; tente mais tarde.\n")
        if request.method != "GET" or not is_upgrade(request.headers):
            log.debug("pedido HTTP de %s: %s", format_peer(ws.remote_address), escape(request.path[:200]))
            return self.assets.answer(request)
        if route_of(request) == VIEWER_PATH:
            refusal = check_viewer(request.headers, self.token)
        else:
            refusal = check_request(request.headers, self.token)
        if refusal is None:
            return None
        status, reason = refusal
        log.warning("conexão de %s recusada: %s", format_peer(ws.remote_address), reason)
        response = ws.respond(status, reason.capitalize() + ".\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response


class MonitorServer:
    """Accepts monitor clients (and plain text clients), stores what they send and prints it once stored.

    Its parts: ``registry`` (ClientRegistry: who is connected, credentials), ``publisher`` (Publisher: stored,
    then printed), ``budget`` (ByteBudget: bytes awaiting their commit), ``hub`` (ViewerHub: the live pages),
    ``gate`` (HandshakeGate: the page's files, refusals); each connection is a Session, each page a ViewerSession.
    """

    def __init__(
        self,
        output: Output,
        writer: Writer,
        token: str = "",
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_clients: int = 0,
        max_message: int = MAX_MESSAGE_SIZE,
        hello_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self.output = output
        self.writer = writer
        self.token = token
        self.max_message = max_message  # a protocol client's limit, once its hello is valid
        self.hello_timeout = hello_timeout  # seconds for the first message (a slow or half-sent hello)
        self.registry = ClientRegistry(writer, max_clients)  # max_clients: the in-memory record's cap (0: none)
        self.hub = ViewerHub(database=not output.record, token=bool(token))
        self.publisher = Publisher(output, writer, self.hub)
        self.budget = ByteBudget()
        self.gate = HandshakeGate(token, max_connections, self.open_connections)
        self.servers: list[Any] = []  # the websockets Servers (one per address), for the connection count
        self.stop = asyncio.Event()
        self.failure: str | None = None  # why the server stopped on its own (main exits with 1)
        self._texts_unstored = RateLimitedWarning(
            "%d mensagens de texto mostradas sem ser gravadas: a fila de gravação está cheia (%d mensagens ou %d bytes)"
        )

    def console_closed(self, exc: OSError) -> None:
        """stdout is gone: without --banco it was the record, so stop (exit 1); with it, keep serving."""
        reason = (
            "a saída padrão foi fechada"
            if exc.errno == errno.EPIPE
            else f"falha ao escrever na saída padrão ({describe_os_error(exc)})"
        )
        if self.output.record:
            self.fail(
                f"{reason}; sem --banco ela é o registro dos eventos, então o servidor parou (nada mais foi confirmado)"
            )
        else:
            log.warning("%s; os eventos continuam sendo gravados no banco, mas não aparecem mais no console", reason)

    def fail(self, reason: str) -> None:
        """The record cannot go on: stop the server (main says ``Erro: reason``, exit 1)."""
        if self.failure is None:
            self.failure = reason
        self.stop.set()

    def open_connections(self) -> int:
        """TCP connections open now, handshake done or not (each one holds a file descriptor)."""
        return sum(len(server.handler_tasks) for server in self.servers)

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Runs before the upgrade: a file of the page, or a refusal, as a plain HTTP answer (HandshakeGate)."""
        return self.gate(ws, request)

    async def handler(self, ws: ServerConnection) -> None:
        peer = format_peer(ws.remote_address)
        try:
            if ws.request is not None and route_of(ws.request) == VIEWER_PATH:
                self.hub.connections.add(ws)
                try:
                    await ViewerSession(self, ws).run()  # a page: no hello
                finally:
                    self.hub.connections.discard(ws)
                return
            try:
                async with asyncio.timeout(self.hello_timeout):
                    first = await ws.recv()
            except TimeoutError:
                raise ProtocolError(f"nenhuma mensagem completa em {self.hello_timeout:g} s") from None
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
        except sqlite3.Error as exc:
            log.error("não foi possível ler o banco: %s", describe_sqlite_error(exc))
            await ws.close(CLOSE_INTERNAL, "erro no banco do servidor")
        except ConsoleClosed:
            await ws.close(CLOSE_INTERNAL, "a saída do servidor foi fechada")
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
        # Shown at once and stored without waiting: nothing is acknowledged, and a flood must not stall the loop.
        now = utc_now()
        if self.writer.backlog < MAX_PENDING_TEXTS and not self.budget.exceeded():
            write = self.writer.write(lambda record: record.store_text(peer, message, now))
            write.add_done_callback(_log_failure)
            self.budget.hold(len(message), write)
        else:
            self._texts_unstored.happened(MAX_PENDING_TEXTS, MAX_PENDING_BYTES)
        self.output.text(peer, message, now)
        self.hub.text(peer, message, now)

    async def _protocol_session(self, ws: ServerConnection, peer: str, hello: Hello) -> None:
        state = await self.registry.register(ws, hello)
        # Proven: the client may now send messages of the full size (from its next frame on: see README).
        ws.protocol.max_message_size = self.max_message
        label = f"{escape(hello.name)} (id {escape(hello.client_id[:8])}, {peer})"
        claimed = False
        try:
            await self.registry.claimed(state)
            claimed = True
            log.info("cliente conectado: %s monitorando %s", label, escape(hello.root))
            self.hub.connected(hello, peer, state.stored_seq, utc_now())
            await Session(self, ws, hello, state).run()
        finally:
            self.registry.disconnected(state, ws)
            if claimed and state.connection is None:  # not replaced by a newer connection of the client
                self.hub.disconnected(hello.client_id, utc_now())
            log.info("cliente desconectado: %s", label)


def _settle(shown: asyncio.Future[Any], printed: asyncio.Future[None], stored: list[Event]) -> None:
    if shown.done():
        return
    if printed.exception() is not None:
        shown.set_exception(printed.exception())  # type: ignore[arg-type]
    else:
        shown.set_result(stored)


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = HOST
    port: int = PORT
    as_json: bool = False
    database: str = DATABASE
    retention_days: float = RETENTION_DAYS
    max_events: int = MAX_EVENTS
    keepalive: float = KEEPALIVE
    token: str = TOKEN
    cert: str = CERT_FILE
    key: str = KEY_FILE
    max_message: int = MAX_MESSAGE_SIZE
    open_timeout: float = OPEN_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


async def run_server(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM (or stdout closes without --banco); raise FatalError if the server cannot go on."""
    tls = tls_context(settings.cert, settings.key) if settings.cert or settings.key else None
    conn = open_database(settings.database or ":memory:", connection_factory())
    monitor: MonitorServer | None = None

    def lost(reason: str) -> None:
        if monitor is not None:
            monitor.fail(reason)

    budget = None if settings.database else MemoryBudget()
    writer = Writer(conn, Retention(settings.max_events, settings.retention_days, budget), settings.database, lost)
    # --json is UTF-8 whatever the locale; readable lines use the console's encoding, escaping what it lacks.
    encoding = "utf-8" if settings.as_json else (getattr(sys.stdout, "encoding", None) or "utf-8")

    def closed(exc: OSError) -> None:
        if monitor is not None:
            monitor.console_closed(exc)

    console = Console(sys.stdout.buffer, encoding, closed, CONSOLE_BUFFER_BYTES)
    try:
        monitor = MonitorServer(
            Output(console, settings.as_json, record=not settings.database),
            writer,
            settings.token,
            max_connections=connection_cap(settings.max_connections),
            max_clients=0 if settings.database else MEMORY_MAX_CLIENTS,
            max_message=settings.max_message,
            hello_timeout=settings.open_timeout,
        )
        await serve_until_stopped(monitor, settings, tls)
    finally:
        await writer.close()
        await console.close(CONSOLE_CLOSE_TIMEOUT)
    if monitor.failure is not None:
        raise FatalError(monitor.failure)


def collect_less() -> None:
    """Tune the cyclic garbage collector for a burst (tests/bench/server.py): what start-up made is frozen (never
    scanned again), and a young collection waits for GC_YOUNG_OBJECTS net new objects. With CPython's 700 the
    events in flight (up to a client's 20,000) were scanned hundreds of times per 100,000: ~1.5 µs per event.
    Cycles are still collected, a little later; memory stays bounded by the same limits."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS, *gc.get_threshold()[1:])


def connection_cap(requested: int) -> int:
    """``requested``, lowered so every connection has a file descriptor (RLIMIT_NOFILE, raised to its hard limit)."""
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:
        return requested
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted and (hard == resource.RLIM_INFINITY or hard > soft):
        with contextlib.suppress(ValueError, OSError):
            soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return requested
    cap = max(1, soft - FD_RESERVE)
    log.warning(
        "o limite de arquivos abertos (%d, ulimit -n) permite só %d conexões (pedidas: %d)", soft, cap, requested
    )
    return cap


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    if not (cert and key):
        raise FatalError("TLS precisa de --cert e --key juntos")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = describe_os_error(exc)
        raise FatalError(f"não foi possível carregar o certificado {cert!r} e a chave {key!r}: {reason}") from exc
    return context


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class _AcceptFailures:
    """The loop's exception handler: running out of file descriptors in accept() is one rate-limited line."""

    def __init__(self) -> None:
        self._warning = RateLimitedWarning("%d conexões esperaram: sem descritores de arquivo livres (%s)")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self._warning.happened(describe_os_error(exc) if isinstance(exc, OSError) else "?")
        else:
            loop.default_exception_handler(context)


async def close_quickly(connections: list[ServerConnection], timeout: float) -> None:
    """Close ``connections`` (1001) waiting ``timeout`` seconds at most, then cut the ones still open: a page that
    never reads would hold a stop for the whole close timeout (the keepalive) otherwise."""
    if not connections:
        return
    closing = [asyncio.create_task(ws.close(1001, "servidor encerrando")) for ws in connections]
    _done, pending = await asyncio.wait(closing, timeout=timeout)
    if pending:
        for ws in connections:
            ws.transport.abort()
        await asyncio.wait(pending, timeout=timeout)


async def serve_until_stopped(monitor: MonitorServer, settings: Settings, tls: ssl.SSLContext | None) -> None:
    host, port, keepalive = settings.host, settings.port, settings.keepalive
    stop = monitor.stop
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_AcceptFailures())
    for sig in stop_signals():  # not a SIGINT ignored at start: the quick start's ``trap "" INT``
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; non-main thread
            loop.add_signal_handler(sig, stop.set)

    websockets_log = logging.getLogger("servidor.websockets")
    SecretRedaction.install(websockets_log)

    def open_server(address: str, at_port: int) -> Any:
        return serve(
            monitor.handler,
            address,
            at_port,
            ssl=tls,
            process_request=monitor.process_request,
            # Until a valid hello; Session raises it to settings.max_message (README, "Segurança").
            max_size=min(HELLO_MAX_SIZE, settings.max_message),
            max_queue=MAX_QUEUED_MESSAGES,
            compression=None,  # loopback and LAN: deflate costs more CPU than it saves
            ping_interval=keepalive,
            ping_timeout=keepalive,
            close_timeout=keepalive,  # a dead client never answers the close either
            open_timeout=settings.open_timeout,
            logger=websockets_log,
        )

    # "localhost" is both loopbacks: a client may resolve it to ::1 first (one port for both).
    addresses = ["127.0.0.1", "::1"] if host == "localhost" and _ipv6_loopback_available() else [host]
    async with contextlib.AsyncExitStack() as stack:
        for address in addresses:
            try:
                server = await stack.enter_async_context(open_server(address, port))
            except OSError as exc:
                if monitor.servers:  # ::1 after 127.0.0.1: serve IPv4 only rather than not at all
                    log.warning(
                        "não foi possível escutar também em %s: %s", address, describe_bind_error(exc, address, port)
                    )
                    continue
                raise FatalError(describe_bind_error(exc, host, port)) from exc
            monitor.servers.append(server)
            port = server.sockets[0].getsockname()[1] if server.sockets else port
            for sock in server.sockets:
                bound = sock.getsockname()
                log.info("Servidor WebSocket ouvindo em %s", format_address(bound[0], bound[1], tls is not None))
        log.info("Página ao vivo: %s", page_url(host, port, tls is not None))
        if not monitor.token and not is_loopback(host):
            log.warning(
                "sem token, qualquer um que alcance esta porta pode enviar eventos, e a página ao vivo só atende "
                "esta máquina; defina %s ou --token (também para ver a página de outra máquina).",
                TOKEN_ENV,
            )
        elif tls is None and not is_loopback(host):
            log.warning("sem TLS, o token e os eventos trafegam sem criptografia; use --cert e --key.")
        await stop.wait()
        log.info("Encerrando o servidor...")
        # What is printed by now gets its ack before the connections close (else it is sent again, shown twice).
        await monitor.output.console.drained(timeout=2.0)
        for _ in range(8):  # printed -> shown -> Acknowledger woken -> ack sent: a few loop turns
            await asyncio.sleep(0)
        await close_quickly(list(monitor.hub.connections), VIEWER_CLOSE_TIMEOUT)
    log.info("Servidor encerrado.")


def export(database: str) -> int:
    """``--exportar``: every stored event as a ``--json`` line on stdout (UTF-8, whatever the locale); the exit code.

    The database is opened read-only (it may be another program's, or the running server's). A reader
    that stops early (``| head -1``) ends the export quietly with 0, like other command-line tools.
    """
    if not database or not os.path.isfile(database):
        print(f"Erro: --exportar precisa de um --banco que exista: {database!r}", file=sys.stderr)
        return 2 if not database else 1
    out = sys.stdout.buffer
    try:
        conn = open_database(database, read_only=True)
        try:
            for record in Record(conn).export():
                out.write(to_json_line(record).encode("utf-8") + b"\n")
            out.flush()
        finally:
            conn.close()
    except FatalError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"Erro: não foi possível ler o banco {database!r}: {describe_sqlite_error(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader has what it wanted; Python's own flush at exit must not fail on the closed pipe.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("servidor.py", "Servidor WebSocket que mostra as mudanças enviadas por monitor_cliente.py.")
    parser.add_argument("--host", default=HOST, help="endereço onde escutar (0.0.0.0: todas as interfaces)")
    parser.add_argument("--port", type=int, default=PORT, help="porta TCP (0: uma porta livre qualquer)")
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="um objeto JSON por evento, por linha, em vez de texto"
    )
    parser.add_argument(
        "--banco",
        dest="database",
        default=DATABASE,
        metavar="ARQUIVO",
        help="banco SQLite onde cada evento é gravado antes da confirmação (sem ele: só em memória)",
    )
    parser.add_argument(
        "--reter",
        dest="retention_days",
        type=float,
        default=RETENTION_DAYS,
        metavar="DIAS",
        help="apaga os eventos gravados há mais de DIAS dias (0: guarda para sempre)",
    )
    parser.add_argument(
        "--max-eventos",
        dest="max_events",
        type=int,
        default=None,
        metavar="N",
        help=f"guarda só os N eventos mais recentes (padrão: {MAX_EVENTS or 'sem limite'} com --banco, "
        f"{MEMORY_MAX_EVENTS} sem; 0: sem limite)",
    )
    parser.add_argument(
        "--exportar",
        dest="export",
        action="store_true",
        help="escreve os eventos do --banco no stdout (JSON por linha) e sai",
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
    parser.add_argument(
        "--max-conexoes",
        dest="max_connections",
        type=int,
        default=MAX_CONNECTIONS,
        metavar="N",
        help="conexões abertas ao mesmo tempo, no máximo (além disso: HTTP 503); fica abaixo do ulimit -n",
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
    if bool(args.cert) != bool(args.key):
        print("Erro: TLS precisa de --cert e --key juntos", file=sys.stderr)
        return 2
    if args.keepalive <= 0 or args.open_timeout <= 0 or args.max_message < 1024 or args.max_connections < 1:
        print(
            "Erro: --keepalive e --open-timeout devem ser positivos; --max-mensagem, ao menos 1024; "
            "--max-conexoes, ao menos 1",
            file=sys.stderr,
        )
        return 2
    try:
        token = token_from(args.token)
    except ValueError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 2
    if args.retention_days < 0 or (args.max_events is not None and args.max_events < 0):
        print("Erro: --reter e --max-eventos não podem ser negativos", file=sys.stderr)
        return 2
    if args.export:
        return export(args.database)
    if args.max_events is not None:
        max_events = args.max_events
    else:
        max_events = MAX_EVENTS if args.database else MEMORY_MAX_EVENTS
    settings = Settings(
        host=args.host,
        port=args.port,
        as_json=args.as_json,
        database=args.database,
        retention_days=args.retention_days,
        max_events=max_events,
        keepalive=args.keepalive,
        token=token,
        cert=args.cert,
        key=args.key,
        max_message=args.max_message,
        open_timeout=args.open_timeout,
        max_connections=args.max_connections,
    )
    collect_less()
    try:
        asyncio.run(run_server(settings))
    except FatalError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
