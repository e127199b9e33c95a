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

The parts (README.md, "Arquitetura"): ThreadBridge -> Recorder -> View and Outbox ->
Uplink -> server; the Supervisor checks the Watcher, runs the scans through the
Recorder and writes the StateFile; MonitorClient wires them together.

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
import errno
import fnmatch
import functools
import hashlib
import importlib.metadata
import io
import ipaddress
import itertools
import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import ssl
import stat
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from typing import Any, Literal, TextIO, TypeGuard, cast, get_args

if sys.platform != "win32":
    import fcntl  # POSIX only: one client per state file (see StateFile.lock)

try:
    if __name__ == "__main__":  # a stop signal while the libraries load: a quiet exit 0 below (main() takes over)
        for _name in ("SIGTERM", "SIGHUP"):
            if getattr(signal, _name, None) and signal.getsignal(getattr(signal, _name)) is signal.SIG_DFL:
                signal.signal(getattr(signal, _name), signal.default_int_handler)
    import websockets.client  # backoff(), process_exception(): read when used, see missing_requirements()
    from watchdog.events import (
        DirAttribEvent,
        DirCreatedEvent,
        DirDeletedEvent,
        DirModifiedEvent,
        DirMovedEvent,
        FileAttribEvent,
        FileClosedEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileModifiedEvent,
        FileMovedEvent,
        FileOpenedEvent,
        FileSystemEvent,
        FileSystemEventHandler,
    )
    from watchdog.observers import Observer
    from watchdog.observers.api import BaseObserver, ObservedWatch
    from watchdog.observers.polling import PollingObserverVFS
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
    from websockets.uri import parse_uri

    if sys.platform.startswith("linux"):  # BatchingObserver's bases: watchdog's inotify emitter (Linux only)
        from watchdog import events as watchdog_events
        from watchdog.observers import inotify as watchdog_inotify
        from watchdog.observers import inotify_c as watchdog_inotify_c
        from watchdog.observers import inotify_move_event_grouper as watchdog_grouper
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

SERVER_URI = "ws://localhost:8765"  # e.g. "ws://meu-servidor:8765" for a server on another machine (see README)
directory_to_monitor = "."  # the directory to watch, recursively
CLIENT_NAME = ""  # how the server shows this client; empty: this machine's hostname
TOKEN = ""  # the server's shared secret, if it asks for one (prefer MONITOR_TOKEN)
TOKEN_ENV = "MONITOR_TOKEN"  # environment variable that overrides TOKEN (flags override both)
CA_FILE = ""  # CA certificate (PEM) that signed a wss:// server's certificate; "": the system's CAs
BATCH_MAX_EVENTS = 1000  # events per WebSocket message at most
IGNORE_CLEAN_CACHE = 4096  # directories remembered as not ignored (an event there matches only its own name)
DRAIN_MAX_EVENTS = 1000  # watchdog events the loop takes at a time (~30 ms of work) before the sender's turn
BATCH_MAX_BYTES = 256 * 1024  # bytes per message at most (the server accepts 1 MiB)
MAX_IN_FLIGHT = 20_000  # events sent but not yet acknowledged before sending pauses
RECONNECT_MIN_DELAY = 0.5  # seconds before the first retry when the server is unreachable
RECONNECT_MAX_DELAY = 10.0  # seconds between retries at most
FLUSH_TIMEOUT = 5.0  # seconds to deliver what is pending when asked to stop
STOP_CLOSE_TIMEOUT = 1.0  # ...and then for the server to answer our close (a frozen server never does)
KEEPALIVE = 20.0  # seconds between pings, and without a pong before the connection counts as lost
OPEN_TIMEOUT = 10.0  # seconds to open a connection
MAX_QUEUED_EVENTS = 100_000  # events waiting to be sent at most; past it, a rescan replaces them
STATE_FILE = ""  # where the last snapshot is kept between runs; "": in ~/.cache/monitor_cliente/
CHECK_INTERVAL = 1.0  # seconds between checks that the watcher runs and the directory exists
RESTART_PACE = 1.0  # seconds between two restarts of the watcher at least (a thread that dies at once cannot spin)
POLL_GATHER = 0.05  # --polling: seconds without events that end a poll's events (see PollGather)
CHECKPOINT_MIN_INTERVAL = 5.0  # seconds between two saves of the state file at least...
CHECKPOINT_MAX_INTERVAL = 300.0  # ...and at most this while the tree keeps moving during the checks
CHECKPOINT_SECOND_LOOK = 1.0  # seconds before a check that found differences looks again
RESCAN_SETTLE = 0.5  # after a kernel overflow, rescan once overflows stop for this long...
RESCAN_MAX_WAIT = 5.0  # ...but never later than this after the first one
# Ignored: a pattern without "/" is matched (fnmatch) against each name at any depth, one with "/" against the path
# relative to the watched directory; a trailing "/" limits it to directories, whose content is then ignored too.
IGNORE_PATTERNS = [
    *(".git/", ".hg/", ".svn/"),  # version control internals
    *(".venv/", "venv/", "__pycache__/", "node_modules/", ".tox/"),  # virtualenvs and packages
    *(".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".hypothesis/", ".pytype/", ".pyre/"),  # tools' caches
    *(".nox/", ".eggs/", ".ipynb_checkpoints/", ".gradle/", ".parcel-cache/", ".sass-cache/", ".eslintcache"),
    *("*.swp", "*.swx", "*~", ".#*", "4913"),  # editors' swap, backup and lock files (4913: vim's write test)
    *("#*#", ".~lock.*#", "*.kate-swp"),  # Emacs auto-save, LibreOffice lock, Kate swap files
]
HASH_MAX_BYTES = 100_000_000  # --hash: the SHA-256 of regular files up to this size (bytes)
SETTLE = 0.15  # seconds without a new event before the changes held are sent as their net effect (0: every raw event)
SETTLE_MAX_HOLD = 1.0  # ...but a path that keeps changing (a download) is held this long at most
VANISHED_ENDS = 4096  # --hash: moves and deletions kept to follow a file gone before its hash (SettlePipeline)
UNWALKED_LIMIT = 1024  # new directories gone before their walk, remembered until renamed (WalkOnceWatchGroup)
DEPARTED_HOLD = 5.0  # seconds: events under a directory that left the tree are checked (GhostFilter)
POLLING_INTERVAL = 0.0  # --polling: seconds between two walks of the tree instead of inotify (0: inotify)
POLLING_MIN = 0.1  # ...at least (each walk lstats the whole tree; 1e-6 s spun a core; twice POLL_GATHER)
IDLE_CHECK_INTERVAL = 300.0  # --verificacao: seconds between two checks of the view against the disk, even when idle
IDLE_CHECK_DUTY = 200  # ...and at least this many times the last check's scan (a tree of millions of files)
DEGRADED_SCAN_INTERVAL = 5.0  # seconds between two looks at the mtimes of the directories without a watch, and
# between two full scans of them at least...
DEGRADED_DUTY = 200  # ...and at least this many times the last full scan's duration (at most 0.5 % of a core)
DEGRADED_RETRY_MIN = 30.0  # seconds before trying to watch them again (a restart and a full scan); doubling up to...
DEGRADED_RETRY_MAX = 300.0  # ...this; at once when the limit changes or directories were deleted (watches freed)
PATH_MAX = 4096  # bytes in a path, with its terminating NUL (Linux): longer ones are left out (see too_long)
WALK_RECURSION = PATH_MAX // 2 + 1000  # recursion limit: watchdog's walks recurse once per level, at most PATH_MAX / 2

PROTOCOL_VERSION = 3  # 3: events with their metadata (type, size, mtime...); 2: plus the tree digest and manifest
FALLBACK_PROTOCOL_VERSION = 1  # the oldest version spoken to a server that refuses ours (README, "Protocolo")
STATE_VERSION = 6  # the state file's format (6: the tree as one row per directory; 5, 4 and 3 are migrated)
STATE_CHUNK_ENTRIES = (
    65_536  # files per piece of the state file as it is made (see state_chunks): bounds its peak memory
)
PREVIOUS_STATE_VERSIONS = (3, 4, 5)  # 5: nested; 4: each file's (mtime, size) fingerprint only; 3: no identity
REQUIRED = [("websockets", (17, 0)), ("watchdog", (7, 1))]  # what this script was written and tested against
# Close codes after which reconnecting would fail the same way.
CLOSE_CREDENTIAL = 4001  # the server refused this client's identity (README, "Protocolo")
CLOSE_TRY_AGAIN = 1013  # the server has no room for a new client now: retry later
REDIRECT_STATUSES = {300, 301, 302, 303, 307, 308}  # answered to the handshake: not followed (see DirectConnect)
FATAL_CLOSE_CODES = {1002: "erro de protocolo", 1003: "dados não suportados", 1008: "protocolo violado"}
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,  # directory "modified" only mirrors a child's change: noise
    FileAttribEvent,  # chmod, chown, touch: a "modified" with "attrib" (a directory's, a child's link count: noise)
    FileClosedEvent,  # IN_CLOSE_WRITE: a file written is complete (a download held until then, see Settler)
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]
STOCK_WATCHDOG_ENV = "MONITOR_STOCK_WATCHDOG"  # set to 1: watchdog's stock inotify path, one event at a time (README)
# The mtimes an event carries, as Unix seconds: 0002-01-01 to 9999-01-01 UTC (any time zone can show them).
MTIME_FIRST, MTIME_END = -62_104_060_800, 253_370_764_800

log = logging.getLogger("monitor")

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


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """A change worth sending, taken from a watchdog event or found by a scan."""

    kind: EventKind
    path: str  # as watchdog gives it: undecodable bytes as surrogateescape
    is_dir: bool
    dest_path: str | None = None
    origin: Origin = "live"
    attrib: bool = False  # a "modified" where only metadata changed (chmod, chown, touch)
    file_type: FileType | None = None  # what the path is (deleted: was); None: not known yet, looked up when sent
    # "moved": what was at dest_path before (the View says), None: nothing; "modified" of a file replaced by a new one
    # (a save): what the path held before, None: not known -- of another type now, it is said deleted + created
    replaced: FileType | None = None
    synthetic: bool = False  # watchdog's is_synthetic: made up by its walk of a directory moved in, not the kernel's
    # What the View held at the path before: deleted, its subtree (or FileInfo); modified, the FileInfo the file had
    # when it left the tree and came back (net_effect): not sent if the file still has it (Describer).
    prior: Any = dataclasses.field(default=None, compare=False, repr=False)

    def typed(self, file_type: FileType | None) -> Change:
        """This change with ``file_type``: dataclasses.replace, less its look at every field each call (one per
        event sent: a third of its time, by cProfile; tests/test_view.py checks the two agree)."""
        if file_type == self.file_type:
            return self
        return Change(
            self.kind,
            self.path,
            self.is_dir,
            self.dest_path,
            self.origin,
            self.attrib,
            file_type,
            self.replaced,
            self.synthetic,
            self.prior,
        )


def change_from_event(event: FileSystemEvent) -> Change | None:
    """Map a watchdog event to a Change, or None for events that are not sent."""
    kind = event.event_type
    if kind == "attrib" and not event.is_directory:
        return Change("modified", os.fsdecode(event.src_path), False, attrib=True)
    if kind not in EVENT_KINDS:
        return None
    if kind == "modified" and event.is_directory:
        return None
    if kind == "moved" and event.is_synthetic:
        return None  # the children of a moved directory: the directory's move says it all
    dest = os.fsdecode(event.dest_path) if kind == "moved" else None
    return Change(kind, os.fsdecode(event.src_path), event.is_directory, dest, synthetic=event.is_synthetic)


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


@dataclasses.dataclass(frozen=True, slots=True)
class Metadata:
    """What a path is, from one lstat (README, "Protocolo": the ECS ``file.*`` names). ``size`` in bytes (files;
    a symlink: its target's length), ``mtime`` ISO 8601 UTC, ``mode`` the permission bits in octal, ``target_path``
    a symlink's target; None: not known (a deleted path has its type only)."""

    type: FileType
    size: int | None = None
    mtime: str | None = None
    mode: str | None = None
    target_path: str | None = None
    sha256: str | None = None


@functools.lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    """``2026-11-29T14:23:51`` for a Unix time in whole seconds (within MTIME_FIRST..MTIME_END).

    Cached: a burst's files share a handful of seconds, and this was a third of a burst's metadata cost."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")[:-6]


def iso_mtime(mtime_ns: int) -> str | None:
    """An mtime in nanoseconds as ISO 8601 UTC with microseconds (truncated), ``2026-11-29T14:23:51.123456+00:00``;
    None outside years 2 to 9998 (a datetime holds 1 to 9999, and a server shows the time in its own time zone, up to a
    day either side; ``touch -d @1099511627776`` on a tmpfs is year 36812)."""
    seconds, rest = divmod(mtime_ns, 1_000_000_000)
    if not MTIME_FIRST <= seconds < MTIME_END:
        return None
    return f"{_utc_second(seconds)}.{rest // 1000:06d}+00:00"


def metadata_of(st: os.stat_result, target: str | None = None) -> Metadata:
    """Metadata from an lstat result (``target``: a symlink's os.readlink)."""
    kind = stat_type(st.st_mode)
    mtime = iso_mtime(st.st_mtime_ns)
    size = st.st_size if kind in ("file", "symlink") else None
    return Metadata(kind, size, mtime, f"{stat.S_IMODE(st.st_mode):04o}", target if kind == "symlink" else None)


def stat_type(mode: int) -> FileType:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "symlink" if stat.S_ISLNK(mode) else "other"


# The keys of protocol version 3 (README, "Protocolo"): an older server is sent events without them.
VERSION_3_KEYS = ("type", "size", "mtime", "mode", "target_path", "target_path_b64", "sha256", "attrib")


_quote = json.encoder.encode_basestring_ascii  # the string encoder of json.dumps (ensure_ascii): C when available


def _path_member(key: str, path: str, parts: list[str]) -> None:
    """``,"key":"path"`` and, for a path that is not UTF-8, ``,"key_b64":"..."``: json.dumps' text for them."""
    if path.isascii():  # no lone surrogate: wire_path would give it unchanged
        parts += (',"', key, '":', _quote(path))
        return
    text, b64 = wire_path(path)
    parts += (',"', key, '":', _quote(text))
    if b64 is not None:
        parts += (',"', key, '_b64":"', b64, '"')


def encode_event(seq: int, change: Change, ts: str, meta: Metadata | None = None) -> str:
    """One event as a JSON object (text), ready to be joined into a batch: protocol version 3 (see downgrade).
    ``meta``: what the path is now (the destination of a move); without it, the type the change says.

    Written piece by piece, byte for byte what ``json.dumps(obj, separators=(",", ":"))`` gives for the same keys
    in the same order (tests/test_batching.py compares them on fuzzed changes): strings through json's own
    encoder, ints through ``int.__repr__`` as json does. ASCII only, so len() is the size in bytes."""
    path, path_b64 = (change.path, None) if change.path.isascii() else wire_path(change.path)
    parts = ['{"seq":', int.__repr__(seq), ',"event":', _quote(change.kind), ',"path":', _quote(path)]
    if change.dest_path is not None:
        _path_member("dest_path", change.dest_path, parts)
    if path_b64 is not None:
        parts += (',"path_b64":"', path_b64, '"')
    kind = meta.type if meta is not None else change.file_type or ("dir" if change.is_dir else "file")
    parts += (',"is_dir":true,"type":' if change.is_dir else ',"is_dir":false,"type":', _quote(kind))
    if meta is not None and change.kind != "deleted":
        if meta.size is not None:
            parts += (',"size":', int.__repr__(meta.size))
        if meta.mtime is not None:
            parts += (',"mtime":', _quote(meta.mtime))
        if meta.mode is not None:
            parts += (',"mode":', _quote(meta.mode))
        if meta.target_path is not None:
            _path_member("target_path", meta.target_path, parts)
        if meta.sha256 is not None:
            parts += (',"sha256":', _quote(meta.sha256))
    if change.attrib and change.kind == "modified":
        parts.append(',"attrib":true')
    parts += (',"ts":', _quote(ts), ',"origin":', _quote(change.origin), "}")
    return "".join(parts)


def downgrade(data: str, version: int) -> str:
    """An event encoded by encode_event as protocol ``version`` speaks it: before 3, without the new keys."""
    if version >= 3:
        return data
    obj = json.loads(data)
    for key in VERSION_3_KEYS:
        obj.pop(key, None)
    return json.dumps(obj, separators=(",", ":"))


def upgrade(data: str) -> str:
    """An event of an older version (a state file's pending one) as version 3: with its ``type`` after ``is_dir``."""
    obj = json.loads(data)
    if "type" in obj or not isinstance(obj, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out[key] = value
        if key == "is_dir":
            out["type"] = "dir" if value is True else "file"
    return json.dumps(out, separators=(",", ":"))


def renumber(data: str, seq: int) -> str:
    """An event encoded by encode_event under another ``seq`` (its text starts with ``{"seq":N,``)."""
    return f'{{"seq":{seq}' + data[data.index(",") :]


def encode_batch(events: list[str]) -> str:
    return '{"type":"events","events":[' + ",".join(events) + "]}"


def encode_hello(
    client_id: str, name: str, root: str, version: int = PROTOCOL_VERSION, secret: str = "", path_style: str = "posix"
) -> str:
    """The first message: who this client is. ``secret`` (hex) proves the id in version 2, where ``path_style``
    ("posix" or "windows") says how the server judges the paths (README, "Protocolo")."""
    hello: dict[str, Any] = {"type": "hello", "version": version, "client_id": client_id, "name": name, "root": root}
    if version >= 2:
        hello["secret"] = secret
        if path_style != "posix":
            hello["path_style"] = path_style
    return json.dumps(hello, ensure_ascii=False)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerMessage:
    """A message from the server: ``welcome`` (``seq``: its ``ack``; ``version``), ``ack``, and in version 2
    ``verified`` or ``resync`` (``seq``, and the server's tree digest: ``count`` entries adding up to ``sum``)."""

    kind: Literal["welcome", "ack", "verified", "resync"]
    seq: int
    version: int = 0
    count: int = 0
    sum: int = 0


def _natural(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_server_message(text: str | bytes, version: int = PROTOCOL_VERSION) -> ServerMessage:
    """Decode a message from the server; ProtocolError for anything the protocol ``version`` spoken does not have.

    A ``welcome`` may be in any version up to ``version`` (the session then speaks the server's).
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("mensagem do servidor não é JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("mensagem do servidor não é um objeto JSON")
    kind = obj.get("type")
    seq = obj.get("ack" if kind == "welcome" else "seq")
    kinds = ("welcome", "ack", "verified", "resync") if version >= 2 else ("welcome", "ack")
    if kind not in kinds or not _natural(seq):
        raise ProtocolError(f"mensagem inesperada do servidor: {str(text)[:80]!r}")
    if kind == "welcome":
        spoken = obj.get("version")
        if type(spoken) is not int or not FALLBACK_PROTOCOL_VERSION <= spoken <= version:
            raise ProtocolError(f"o servidor fala outra versão do protocolo: {spoken!r}")
        return ServerMessage("welcome", seq, version=spoken)
    if kind in ("verified", "resync"):
        count, total = obj.get("count"), obj.get("sum")
        if not _natural(count) or not isinstance(total, str) or re.fullmatch("[0-9a-f]{16}", total) is None:
            raise ProtocolError(f"resumo inválido do servidor: {str(text)[:80]!r}")
        return ServerMessage(kind, seq, count=count, sum=int(total, 16))
    return ServerMessage(cast(Literal["ack"], kind), seq)


def refused_version(reason: str) -> tuple[int, ...] | None:
    """The versions a server that refused our hello says it speaks (close reason 1008, README "Protocolo"), or
    None when the reason is not a version refusal. A server older than version 2 names none: (1,). Its words:
    "versão de protocolo não suportada (este servidor fala 1 e 2): 3"."""
    if not reason.startswith("versão de protocolo não suportada"):
        return None
    spoken = re.search(r"\(este servidor fala ([0-9 e,]+)\)", reason)
    return tuple(int(n) for n in re.findall("[0-9]+", spoken.group(1))) if spoken else (FALLBACK_PROTOCOL_VERSION,)


def encode_digest(seq: int, count: int, total: int) -> str:
    """``digest``: the tree the server should hold for this client once every event up to ``seq`` is stored."""
    return f'{{"type":"digest","seq":{seq},"count":{count},"sum":"{total:016x}"}}'


def encode_manifest(seq: int, entries: Iterable[tuple[str, bool, int]]) -> tuple[list[str], int, int]:
    """A whole manifest (README, "Protocolo"): ``manifest_begin``, the ``manifest`` batches, ``manifest_end``.

    ``entries``: (path, is_dir, entry_hash) of every entry the server should hold as of ``seq``. Each
    batch has at most BATCH_MAX_EVENTS entries and BATCH_MAX_BYTES bytes (ASCII JSON). Returns the
    messages and the entries' digest (count, sum).
    """
    messages = [f'{{"type":"manifest_begin","seq":{seq}}}']
    batch: list[str] = []
    size = count = total = 0
    for path, is_dir, value in entries:
        text, b64 = wire_path(path)
        item = f'{{"path":{json.dumps(text)},'
        item += f'"path_b64":"{b64}",' if b64 is not None else ""
        item += '"is_dir":true}' if is_dir else '"is_dir":false}'
        if batch and (len(batch) >= BATCH_MAX_EVENTS or size + len(item) > BATCH_MAX_BYTES):
            messages.append('{"type":"manifest","entries":[' + ",".join(batch) + "]}")
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 1
        count, total = count + 1, total + value
    if batch:
        messages.append('{"type":"manifest","entries":[' + ",".join(batch) + "]}")
    total %= DIGEST_MODULUS
    messages.append(f'{{"type":"manifest_end","count":{count},"sum":"{total:016x}"}}')
    return messages, count, total


def format_changes(changes: list[Change], when: datetime.datetime) -> str:
    """The client's own console lines for a burst, like the server's but without a name."""
    stamp = f"{when:%Y-%m-%d %H:%M:%S} "  # once per burst, not once per line
    lines = (
        describe_change(c.kind, c.path, c.file_type or ("dir" if c.is_dir else "file"), c.dest_path, c.origin, c.attrib)
        for c in changes
    )
    return "".join(f"{stamp}{line}\n" for line in lines)


@dataclasses.dataclass(slots=True)
class Outgoing:
    """An event numbered and encoded, waiting to be sent or to be acknowledged."""

    seq: int
    path: str
    data: str  # the event's JSON text


def split_batches(items: Iterable[Outgoing]) -> Iterator[list[Outgoing]]:
    """Cut events, in order, into messages of at most BATCH_MAX_EVENTS and BATCH_MAX_BYTES (an event
    larger than that travels alone). The one cut for fresh batches and for resent ones."""
    batch: list[Outgoing] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= BATCH_MAX_EVENTS or size + len(item.data) > BATCH_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item.data)
    if batch:
        yield batch


def redial_delay(quick_drops: int) -> float:
    """Seconds to wait after a connection the server dropped soon after accepting it, ``quick_drops`` times in a row.

    websockets restarts its backoff after each successful handshake, so a server that
    accepts and drops us at once would make us spin: nothing after the first drop,
    then RECONNECT_MIN_DELAY doubling up to RECONNECT_MAX_DELAY.
    """
    if quick_drops < 2:
        return 0.0
    return min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2.0 ** min(quick_drops - 2, 32))


def reconnect_delays() -> Generator[float, None, None]:
    """websockets' backoff, started and capped for a monitor: retry soon, never wait long."""
    return websockets.client.backoff(
        initial_delay=RECONNECT_MIN_DELAY, min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY
    )


# OpenSSL's reasons when the other side answered a TLS hello with something that is not TLS.
NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"}
# X509_V_ERR_* codes with a hint of their own (ssl.SSLCertVerificationError.verify_code).
CERT_NOT_YET_VALID, CERT_HAS_EXPIRED, HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH = 9, 10, 62, 64


def not_tls(exc: BaseException) -> bool:
    """Whether a failed TLS handshake says the server does not speak TLS at all (a ws:// server behind a wss:// URI):
    it answered with plain HTTP, or dropped the connection at the TLS hello."""
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLCertVerificationError):
        return exc.reason in NOT_TLS_REASONS
    return isinstance(exc, ConnectionResetError)


def with_scheme(uri: str, scheme: str) -> str:
    return scheme + uri.partition("://")[2]


def describe_connect_error(exc: BaseException, uri: str) -> str:
    """Why connecting to ``uri`` failed, in Portuguese, with the likely cause when the error tells it."""
    secure = uri.startswith("wss://")
    if isinstance(exc, ConnectionRefusedError):
        return "conexão recusada (o servidor está rodando?)"
    if isinstance(exc, socket.gaierror):
        return "nome do servidor não encontrado"
    if isinstance(exc, TimeoutError):
        return "tempo esgotado"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == CERT_HAS_EXPIRED:
            return "o certificado do servidor expirou; ele precisa de um certificado novo"
        if exc.verify_code == CERT_NOT_YET_VALID:
            return "o certificado do servidor ainda não é válido (confira o relógio das duas máquinas)"
        if exc.verify_code in (HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH):
            host = urllib.parse.urlsplit(uri).hostname or uri
            return f"o certificado do servidor não vale para {host}; use na URI um nome que o certificado tenha"
        return f"certificado do servidor não confiável ({exc.verify_message}); indique a CA com --cafile"
    if secure and not_tls(exc):
        return f"o servidor não fala TLS? então a URI é {with_scheme(uri, 'ws://')}"
    if isinstance(exc, ssl.SSLError):
        return f"{exc.reason or exc} (o servidor usa TLS? confira ws:// ou wss://)"
    if isinstance(exc, InvalidMessage):
        if isinstance(exc.__cause__, ValueError) and "HTTP/" in str(exc.__cause__):
            return "o endereço responde HTTP, mas não é um servidor deste monitor (confira o endereço e a porta)"
        if secure:
            return "resposta inválida do servidor"
        return f"resposta inválida do servidor (ele usa TLS? então a URI é {with_scheme(uri, 'wss://')})"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return f"token recusado (HTTP 401); confira --token ou {TOKEN_ENV}"
        if status == 403:
            return "o servidor recusou a conexão (HTTP 403)"
        if status >= 500:
            return f"o servidor respondeu HTTP {status}"
        if status in REDIRECT_STATUSES:
            location = exc.response.headers.get("Location")
            target = urllib.parse.urljoin(uri, location) if location else "outro endereço"
            return (
                f"o servidor redirecionou para {escape(target)} (HTTP {status}); este monitor não segue "
                "redirecionamentos: se esse é o servidor certo, use-o em --servidor"
            )
        return f"o endereço responde HTTP {status}, mas não é um servidor deste monitor (confira o endereço e a porta)"
    if isinstance(exc, InvalidHandshake):
        return "o endereço responde HTTP, mas não é um servidor deste monitor (confira o endereço e a porta)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return describe_os_error(exc)
    return type(exc).__name__


# ---------------------------------------------------------------------------
# The model of the tree the server sees, and the state file (pure).
# ---------------------------------------------------------------------------

FileInfo = int | None  # what is known of a file, a symlink or a special file (see pack_info); None: nothing
Tree = dict[str, "Tree | FileInfo"]  # a directory: each name maps to a Tree (a subdirectory) or a FileInfo (a file)
_MISSING: Any = object()
# A FileInfo packs, from the low bits up: the type (2 bits, _TYPE_CODES), whether the attributes are known (1 bit:
# not for a file of a migrated state file), a 32-bit hash of (mode, uid, gid), the 64-bit fingerprint of the
# content (see fingerprint()); 99 bits, an int of 40 bytes. (Earlier releases kept a hash of the size above: 131
# bits, 44 bytes; nothing reads it.) One int per file: a tuple would cost three times the memory on 100,000 files.
_TYPE_CODES: dict[FileType, int] = {"file": 0, "symlink": 1, "other": 2}
_CODE_TYPES: dict[int, FileType] = {code: kind for kind, code in _TYPE_CODES.items()}
_ATTRS_KNOWN = 4
_ATTRS_SHIFT = 3
_CONTENT_SHIFT = 35
_MASK32, _MASK64 = 2**32 - 1, 2**64 - 1


def pack_info(kind: FileType, content: int, attrs: int | None) -> int:
    """A FileInfo: ``content`` (a fingerprint of mtime and size) and ``attrs`` (of mode, uid, gid; None: unknown).
    (Bits above the content, a hash of the size and flags that earlier releases kept, may be in a state file they
    wrote: nothing reads them.)"""
    known = 0 if attrs is None else _ATTRS_KNOWN | (attrs & _MASK32) << _ATTRS_SHIFT
    return (content & _MASK64) << _CONTENT_SHIFT | known | _TYPE_CODES[kind]


def node_type(node: Tree | FileInfo) -> FileType:
    if isinstance(node, dict):
        return "dir"
    return "file" if node is None else _CODE_TYPES.get(node & 3, "file")


def special_type(node: Tree | FileInfo) -> FileType | None:
    """The type of a node that is neither a directory nor a regular file (a symlink, "other"), else None."""
    kind = node_type(node)
    return kind if kind in ("symlink", "other") else None


def known_type(info: FileInfo) -> FileType | None:
    """The type of a non-directory when it is known (None: no FileInfo, or one migrated from a state file that did
    not keep types: attributes unknown)."""
    return None if info is None or not info & _ATTRS_KNOWN else node_type(info)


def info_change(old: FileInfo, new: FileInfo) -> Literal["", "content", "attrib"]:
    """How a file changed between two FileInfo: its content (or type), only its attributes, or not at all (or
    not known: either is None). A migrated one (attributes unknown) is compared on its content only.

    The rule of scans (start-up, checks; README, "Atributos") is the conservative one: only a change of mode,
    owner or group with the same size and mtime is "attrib"; any change of mtime, size or type is "content". A
    scan cannot tell ``touch -d`` from a write that kept the size and set the mtime back (``rsync -a``, ``cp -p``
    of other bytes): an event never says "attributes only" when the content may have changed. Live, the kernel
    tells a write (IN_MODIFY: "content") from the rest (IN_ATTRIB alone: "attrib"), so ``touch`` there is
    "attrib" and, made while the client was stopped, a plain "content".
    """
    if old is None or new is None:
        return ""
    if (old >> _CONTENT_SHIFT) & _MASK64 != (new >> _CONTENT_SHIFT) & _MASK64:
        return "content"
    if not old & new & _ATTRS_KNOWN:
        return ""
    if old & 3 != new & 3:
        return "content"
    return "attrib" if (old >> _ATTRS_SHIFT) & _MASK32 != (new >> _ATTRS_SHIFT) & _MASK32 else ""


def tree_entries(path: str, node: Tree | FileInfo) -> Iterator[tuple[str, bool]]:
    """(path, is_dir) of ``path`` (which holds ``node``) and of every entry below it, parents first."""
    stack = [(path, node)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            yield path, True
            stack.extend((path + os.sep + name, child) for name, child in node.items())
        else:
            yield path, False


def path_hash(path: str, is_dir: bool) -> int:
    """entry_hash of a path as watchdog gives it (the exact bytes: os.fsencode undoes surrogateescape)."""
    return entry_hash(os.fsencode(path), is_dir)


class HeldDigest:
    """What the server holds of a View once every queued event is stored, and its digest (README, "Protocolo").

    The server holds what the changes returned so far describe, replayed its way, on top of what it held when
    the view was loaded (``restore``: the state file says, since a client id lasts as long as its state file).
    Entries adopted from a scan that were never sent are not held, so until the server holds every entry of
    the view, ``_held`` lists the entry_hash of those it does; the digest (``_count``, ``_sum``) covers only them.
    """

    def __init__(self) -> None:
        self._count = 0  # entries the server holds...
        self._sum = 0  # ...and their entry_hash values added up, mod DIGEST_MODULUS
        self._held: set[int] | None = None  # None: the server holds every entry of the view

    def digest(self) -> tuple[int, int]:
        return self._count, self._sum

    def held(self) -> Held:
        return Held(self._count, self._sum, None if self._held is None else frozenset(self._held))

    def restore(self, held: Held) -> None:
        self._count, self._sum = held.count, held.sum
        self._held = None if held.hashes is None else set(held.hashes)

    def clear(self) -> None:
        """The server holds nothing (the root itself was deleted)."""
        self._count, self._sum, self._held = 0, 0, None

    def adopt_unsent(self) -> None:
        """The view adopted a scan at start-up while the server held nothing: none of it was sent."""
        if self._held is None and self._count == 0:
            self._held = set()

    def hold(self, path: str, is_dir: bool, new: bool = True) -> None:
        """The server holds this entry now (``new``: it has just entered the view)."""
        if self._held is None:
            if not new:
                return
            value = path_hash(path, is_dir)
        else:
            value = path_hash(path, is_dir)
            if value in self._held:
                return
            self._held.add(value)
        self._count += 1
        self._sum = (self._sum + value) % DIGEST_MODULUS

    def release(self, path: str, node: Tree | FileInfo) -> None:
        """``path`` (holding ``node``) left the view with everything below it: so does what the server holds of it."""
        for entry, is_dir in tree_entries(path, node):
            value = path_hash(entry, is_dir)
            if self._held is not None:
                if value not in self._held:
                    continue
                self._held.remove(value)
            self._count -= 1
            self._sum = (self._sum - value) % DIGEST_MODULUS

    def carry(self, source: str, dest: str, node: Tree | FileInfo) -> None:
        """``node`` moved from ``source`` to ``dest``: the server moves what it holds of it."""
        old: list[int] = []
        new: list[int] = []
        for entry, is_dir in tree_entries(source, node):
            value = path_hash(entry, is_dir)
            if self._held is None or value in self._held:
                old.append(value)
                new.append(path_hash(dest + entry[len(source) :], is_dir))
        if self._held is not None:
            self._held.difference_update(old)
            self._held.update(new)
        self._sum = (self._sum + sum(new) - sum(old)) % DIGEST_MODULUS

    def recount(self, entries: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bool, int]]:
        """(path, is_dir, entry_hash) of the ``entries`` (every entry of the view) the server should hold;
        once exhausted, the digest is recounted from what it gave."""
        held, kept = self._held, set[int]()
        count = total = seen = 0
        for path, is_dir in entries:
            value = path_hash(path, is_dir)
            seen += 1
            if held is None or value in held:
                yield path, is_dir, value
                count, total = count + 1, total + value
                kept.add(value)
        self._count, self._sum = count, total % DIGEST_MODULUS
        self._held = None if count == seen else kept


class TreePaths:
    """Where a watched path sits in a Tree (pure): the names from the root down to it, and back; lookups in a
    tree given to it. Owns nothing that changes: the View owns the tree, and this only reads it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.prefix = root.rstrip(os.sep) + os.sep  # what every path below the root starts with

    def parts(self, path: str) -> list[str] | None:
        """The names from the root down to ``path`` ([] for the root itself); None when it is not below it."""
        if path == self.root:
            return []
        return path[len(self.prefix) :].split(os.sep) if path.startswith(self.prefix) else None

    def join(self, parts: list[str]) -> str:
        return self.prefix + os.sep.join(parts)

    @staticmethod
    def find_dir(top: Tree, parts: list[str]) -> Tree | None:
        """The directory of ``top`` at ``parts``; None when there is none (missing, or not a directory)."""
        node: Tree | FileInfo = top
        for name in parts:
            node = node.get(name) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None

    def is_in(self, top: Tree, parts: list[str], node_type: FileType | None = None) -> bool:
        """Whether ``parts`` (not the root) is in ``top`` (as a ``node_type``: "dir" or anything else, when given)."""
        parent = self.find_dir(top, parts[:-1])
        if parent is None or parts[-1] not in parent:
            return False
        return node_type is None or isinstance(parent[parts[-1]], dict) == (node_type == "dir")

    def entries(self, top: Tree) -> Iterator[tuple[str, bool]]:
        """(path, is_dir) of every entry of ``top``, parents first."""
        return (entry for name, node in top.items() for entry in tree_entries(self.prefix + name, node))


class HeldTree:
    """The View's tree and what the server holds of it: every edit of the tree goes through here, so that its
    ``HeldDigest`` follows. Owns the tree (``top``) and the digest; says nothing about what the edits mean."""

    def __init__(self, root: str) -> None:
        self.top: Tree = {}
        self.paths = TreePaths(root)
        self.server = HeldDigest()  # what the server holds of this tree

    def make_parents(self, parts: list[str]) -> tuple[Tree, list[Change]]:
        """The directory that holds ``parts``, creating (and reporting) any that is missing."""
        node, out = self.top, []
        for depth, name in enumerate(parts[:-1], 1):
            child = node.get(name, None)
            if not isinstance(child, dict):
                path = self.paths.join(parts[:depth])
                if name in node:
                    out.append(Change("deleted", path, False, origin="rescan"))
                    self.server.release(path, child)
                child = node[name] = {}
                out.append(Change("created", path, True, origin="rescan"))
                self.server.hold(path, True)
            node = child
        return node, out

    def remove(self, parent: Tree, name: str, path: str) -> Tree | FileInfo:
        """Take ``name`` (at ``path``) out of ``parent``, with everything below it; return what it held."""
        node = parent.pop(name)
        self.server.release(path, node)
        return node

    def stale(self, parent: Tree, name: str, path: str) -> None:
        """The content of the file ``name`` (at ``path``) changed: what was known of it is stale."""
        parent[name] = None
        self.server.hold(path, False, new=False)  # a file from the start-up scan: the server adds it

    def create(self, parent: Tree, parts: list[str], is_dir: bool, origin: Origin, replaced: bool) -> list[Change]:
        """Create ``parts`` in ``parent`` (see View.apply); what to send."""
        out: list[Change] = []
        name, path = parts[-1], self.paths.join(parts)
        if name in parent:
            was_dir = isinstance(parent[name], dict)
            if was_dir == is_dir:
                if replaced and not is_dir and origin == "live":
                    # A file the view has "created" again: its name was replaced by a rename from outside the
                    # tree (mktemp + mv, os.replace), which watchdog reports as "created". New content. (A walk of a
                    # new directory repeats real creates too: those are synthetic, see _WALKED, and not here.) Of
                    # another type now (a link where a file was), the Describer says deleted + created.
                    kind = known_type(parent[name])  # type: ignore[arg-type]  # not a dict: was_dir is False
                    self.stale(parent, name, path)
                    out.append(Change("modified", path, False, origin=origin, replaced=kind))
                return out
            out.append(Change("deleted", path, was_dir, origin=origin))
            self.server.release(path, parent[name])
        parent[name] = {} if is_dir else None
        out.append(Change("created", path, is_dir, origin=origin))
        self.server.hold(path, is_dir)
        return out

    def move(self, parent: Tree, parts: list[str], dest: list[str], change: Change) -> list[Change]:
        """Move ``parts`` (in ``parent``) to ``dest`` (not the root), replacing whatever was there."""
        assert change.dest_path is not None
        node = parent.pop(parts[-1])
        dest_parent, out = self.make_parents(dest)
        replaced: FileType | None = None
        if dest[-1] in dest_parent:
            replaced = node_type(dest_parent[dest[-1]])
            self.server.release(change.dest_path, dest_parent[dest[-1]])
        dest_parent[dest[-1]] = node  # a rename replaces whatever was at the destination
        self.server.carry(change.path, change.dest_path, node)
        moved = dataclasses.replace(change, is_dir=isinstance(node, dict), file_type=special_type(node))
        return [*out, dataclasses.replace(moved, replaced=replaced)]


class View:
    """The watched tree as the server will see it once every queued event is delivered.

    Changes seen on disk go in; the changes worth sending come out: none when the view already agrees (a
    duplicate), and the missing parents first when an event arrives for a directory the view never heard of.
    Owns whether the root exists, and whether an event showed that the view missed something; the tree and what
    the server holds of it are its ``HeldTree``'s.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.root_exists = True
        self.suspect = False  # an event showed that the view missed something: rescan soon
        self._tree = HeldTree(root)
        self._paths = self._tree.paths
        self._server = self._tree.server  # what the server holds of this view

    @property
    def top(self) -> Tree:
        return self._tree.top

    def digest(self) -> tuple[int, int]:
        """(count, sum) of the tree the server holds once every queued event is stored."""
        return self._server.digest()

    def held(self) -> Held:
        """What the server holds of the view once every queued event is stored, for the state file."""
        return self._server.held()

    def restore(self, tree: Tree, held: Held) -> None:
        """Adopt the tree of the state file, of which the server holds ``held`` (what the state file says)."""
        self._tree.top = tree
        self.root_exists = True
        self._server.restore(held)

    def held_entries(self) -> Iterator[tuple[str, bool, int]]:
        """(path, is_dir, entry_hash) of every entry the server should hold, parents first: the manifest.

        Consume it at once (the view must not change meanwhile). Once it is exhausted the digest
        is recounted from what it gave.
        """
        return self._server.recount(self._paths.entries(self.top))

    def take_suspect(self) -> bool:
        """Whether the view missed something since the last call."""
        suspect, self.suspect = self.suspect, False
        return suspect

    def apply(self, change: Change) -> list[Change]:
        """Record a change seen on disk; return what to send so the server agrees."""
        parts = self._paths.parts(change.path)
        if parts is None:
            return []
        if not parts:
            return self._apply_to_root(change)
        parent = self._paths.find_dir(self.top, parts[:-1])
        name = parts[-1]
        if change.kind == "moved":
            return self._move(parent, parts, change)
        if change.kind == "deleted":
            if parent is None or name not in parent:
                return []
            node = self._tree.remove(parent, name, change.path)
            kind = special_type(node)
            return [dataclasses.replace(change, is_dir=isinstance(node, dict), file_type=kind, prior=node)]
        if change.kind == "modified":
            if parent is not None and name in parent and not isinstance(parent[name], dict):
                self._tree.stale(parent, name, change.path)
                return [dataclasses.replace(change, is_dir=False) if change.is_dir else change]
            if change.is_dir or (parent is not None and name in parent):
                return []
            self.suspect = True  # a file we never saw created: its creation was lost
        return self._create(parts, change.is_dir, change.origin, replaced=not change.synthetic)

    def _create(self, parts: list[str], is_dir: bool, origin: Origin, replaced: bool = False) -> list[Change]:
        parent, out = self._tree.make_parents(parts)
        self.suspect = self.suspect or bool(out)  # a parent we never saw created: its creation was lost
        return out + self._tree.create(parent, parts, is_dir, origin, replaced)

    def _move(self, parent: Tree | None, parts: list[str], change: Change) -> list[Change]:
        assert change.dest_path is not None
        dest = self._paths.parts(change.dest_path)
        if parent is None or parts[-1] not in parent:
            # The source was never seen: for the server, the destination just appeared,
            # and if it is a directory its content is unknown too.
            self.suspect = True
            return self._create(dest, change.is_dir, change.origin) if dest else []
        if not dest:  # moved onto the root itself: cannot happen; treat as gone
            node = self._tree.remove(parent, parts[-1], change.path)
            return [Change("deleted", change.path, isinstance(node, dict), origin=change.origin)]
        out = self._tree.move(parent, parts, dest, change)
        if len(out) > 1:
            self.suspect = True  # a parent we never saw created: its creation was lost
        return out

    def has(self, path: str, node_type: FileType | None = None) -> bool:
        """Whether ``path`` is in the view (as a ``node_type``: "dir" or anything else, when given)."""
        parts = self._paths.parts(path)
        if not parts:
            return parts is not None and self.root_exists and node_type in (None, "dir")
        return self._paths.is_in(self.top, parts, node_type)

    def note(self, path: str, info: int) -> None:
        """What a file of the view is now (its FileInfo, from the lstat of a change sent): its type is known."""
        parts = self._paths.parts(path)
        parent = self._paths.find_dir(self.top, parts[:-1]) if parts else None
        if parent is not None and parts and parts[-1] in parent and not isinstance(parent[parts[-1]], dict):
            parent[parts[-1]] = info

    def _apply_to_root(self, change: Change) -> list[Change]:
        if change.kind == "deleted" and self.root_exists:
            self.top.clear()
            self._server.clear()  # the server empties the tree too
            self.root_exists = False
            return [Change("deleted", self.root, True, origin=change.origin)]
        if change.kind == "created" and not self.root_exists:
            self.root_exists = True
            return [Change("created", self.root, True, origin=change.origin)]
        return []

    def load_tree(self, tree: Tree) -> None:
        """Adopt a scanned tree (see scan_tree) as the view: it has the same shape.

        At start-up without a state (the server holds none of it: nothing was sent), or at a checkpoint
        (the same paths).
        """
        if tree:
            self._server.adopt_unsent()  # at start-up, the scan was never sent
        self._tree.top = tree
        self.root_exists = True

    def diff(self, disk: Tree, origin: Origin, report_modified: bool = False) -> list[Change]:
        """The changes that turn this view into the scanned ``disk`` tree (see diff_trees)."""
        return diff_trees(self._paths.prefix, self.top, disk, origin, report_modified)


def diff_trees(prefix: str, old: Tree, new: Tree, origin: Origin, report_modified: bool = False) -> list[Change]:
    """The changes that turn ``old`` into ``new``, both trees under the directory ``prefix`` (ending in os.sep).

    Deletions first (only the topmost of a deleted subtree), then creations, parents
    before children, and modifications (when asked, for files whose info is known).
    """
    gone: list[Change] = []
    appeared: list[Change] = []
    stack: list[tuple[str, Tree, Tree]] = [(prefix, old, new)]
    while stack:
        prefix, mine, theirs = stack.pop()
        subdirs: list[tuple[str, Tree, Tree]] = []
        for name in sorted(mine.keys() | theirs.keys()):
            before, after = mine.get(name, _MISSING), theirs.get(name, _MISSING)
            if type(before) is int and before == after:
                continue  # the same file, as it was (most of a restart's scan: one test)
            path = prefix + name
            was_dir, is_dir = isinstance(before, dict), isinstance(after, dict)
            if before is not _MISSING and (after is _MISSING or was_dir != is_dir):
                gone.append(Change("deleted", path, was_dir, origin=origin, file_type=special_type(before)))
            if after is _MISSING:
                continue
            was = known_type(before) if isinstance(before, int) else None
            if was is not None and isinstance(after, int) and known_type(after) not in (None, was):
                # Another type of non-directory (a link where a file was): the Describer says deleted + created.
                appeared.append(Change("modified", path, False, origin=origin, replaced=was))
            elif before is _MISSING or was_dir != is_dir:
                appeared.append(Change("created", path, is_dir, origin=origin, file_type=special_type(after)))
                if isinstance(after, dict):
                    subdirs.append((path + os.sep, {}, after))  # everything in it is new too
            elif isinstance(before, dict) and isinstance(after, dict):
                subdirs.append((path + os.sep, before, after))
            elif report_modified and not isinstance(before, dict) and not isinstance(after, dict):
                what = info_change(before, after)
                if what:
                    attrib = what == "attrib"
                    appeared.append(Change("modified", path, False, origin=origin, attrib=attrib))
        stack.extend(reversed(subdirs))
    return gone + appeared


# ---------------------------------------------------------------------------
# Settling: what a window of changes amounts to (pure). README.md, "Assentamento".
# ---------------------------------------------------------------------------


def net_effect(changes: list[Change]) -> list[Change]:
    """The net effect of ``changes`` (what View.apply returned, in order): the same tree for the server, said the
    way a person would.

    What each path touched held before the window is compared with what it holds after (a rule about sequences,
    not tools): created + modified... -> created; modified... -> one modified; created + deleted -> nothing; a
    file written under another name and renamed over (or into) a path -> modified (or created) of that path (of
    another type than the file it replaced: deleted + created, which the Describer says: see Change.replaced), the
    other name never appears, whatever else happened meanwhile (directories created, moved, deleted); a move of
    something that was there before the window and survives it stays one moved (a directory's children are not
    listed); a directory moved out of the tree and back, as it was -> nothing (each file in it is checked once
    more when sent: see Change.prior). Order: deletions (children before parents: a directory's deletion says
    its content), moves (parents first), then creations and modifications, each after the creation of every
    new directory above it, so that replaying them gives the same tree and a reader never sees a path before
    its parent. Only live changes are merged: what a scan found, and the parents the View made up, stay in
    place. When no order says it (files swapped in a cycle), the raw changes go out.
    """
    out: list[Change] = []
    run: list[Change] = []
    for change in changes:
        if change.origin == "live":
            run.append(change)
            continue
        out += _net_live(run)
        run = []
        out.append(change)
    return out + _net_live(run)


class _Unsure(Exception):
    """A window the rules do not cover (a change about something the window cannot place): sent raw."""


class _Thing:
    """Something a window of changes touched: the path it had before the window (None: new in it), what it is."""

    __slots__ = ("before", "file_type", "gone", "is_dir", "order", "prior", "replaced", "touched", "written")

    def __init__(self, before: str | None, is_dir: bool, file_type: FileType | None, order: int) -> None:
        self.before = before
        self.is_dir = is_dir
        self.file_type = file_type
        self.order = order  # the index of the change that first touched it: creations go out in that order
        self.written = False  # a modified that is not only its attributes
        self.touched = False  # any modified
        self.gone = False
        self.prior: Tree | FileInfo = None  # deleted: what the View held there
        self.replaced: FileType | None = None  # replaced by a new file from outside the tree: what it was (a type)

    def kind(self) -> FileType:
        return "dir" if self.is_dir else self.file_type or "file"


class _Window:
    """Where each thing a window of live changes touched is now (see net_effect); untouched things below a
    directory move with it, unseen."""

    def __init__(self) -> None:
        self.now: dict[str, _Thing] = {}  # path -> the thing there now (the things touched that are present)
        self.was: dict[str, _Thing] = {}  # path -> the thing there before the window (the ones touched)
        self.things: list[_Thing] = []

    def apply(self, order: int, change: Change) -> None:
        path = change.path
        if change.kind == "created":
            if path in self.now:
                raise _Unsure
            self.now[path] = thing = _Thing(None, change.is_dir, change.file_type, order)
            self.things.append(thing)
            return
        thing = self._at(path, order, change)
        if change.kind == "modified":
            thing.touched = True
            thing.written = thing.written or not change.attrib
            thing.replaced = thing.replaced or change.replaced
        elif change.kind == "deleted":
            thing.prior = change.prior
            self._remove(path)
        else:
            assert change.dest_path is not None
            dest = change.dest_path
            if path.startswith(dest + os.sep):
                raise _Unsure  # onto a directory above it (the View allows it; a file system does not)
            if dest in self.now or change.replaced is not None:
                victim = self._at(dest, order, Change("deleted", dest, change.replaced == "dir"))
                victim.file_type = victim.file_type or change.replaced
                self._remove(dest)
            for old in [path, *self._below(path)]:
                self.now[dest + old[len(path) :]] = self.now.pop(old)
            # Written, then renamed (a download's .part let out by SETTLE_MAX_HOLD, then renamed): the move is
            # described as it is now (size, mtime), so a modified of the same content would say nothing more.
            thing.touched = thing.written = False

    def _at(self, path: str, order: int, change: Change) -> _Thing:
        """The thing at ``path`` now; one not touched yet was there before the window, or below a directory that was."""
        thing = self.now.get(path)
        if thing is None:
            before = self._before(path)
            if before is None or before in self.was:
                raise _Unsure
            thing = self.now[path] = self.was[before] = _Thing(before, change.is_dir, change.file_type, order)
            self.things.append(thing)
        if change.kind != "modified":
            thing.is_dir = change.is_dir
        thing.file_type = change.file_type or thing.file_type
        return thing

    def _before(self, path: str) -> str | None:
        """Where a thing not touched yet, now at ``path``, was before the window (None: it cannot be said)."""
        parent = path
        while True:
            parent, sep, _ = parent.rpartition(os.sep)
            if not sep or not parent:
                return path
            above = self.now.get(parent)
            if above is not None:
                return None if above.before is None else above.before + path[len(parent) :]

    def _below(self, path: str) -> list[str]:
        below = path + os.sep
        return [p for p in self.now if p.startswith(below)]

    def _remove(self, path: str) -> None:
        for old in [path, *self._below(path)]:
            self.now.pop(old).gone = True


def _net_live(run: list[Change]) -> list[Change]:
    """net_effect of a run of live changes."""
    if len(run) < 2:
        return run
    window = _Window()
    try:
        for order, change in enumerate(run):
            window.apply(order, change)
        net, start = _Said(window).changes()
    except _Unsure:
        return run
    if net is None or _replay_paths(net, start) != _replay_paths(run, start):
        return run  # no order of these changes says it (a cycle): the raw changes do
    return net


class _Said:
    """The changes that say what a _Window amounts to (see net_effect)."""

    def __init__(self, window: _Window) -> None:
        self.window = window
        self.where = {thing: path for path, thing in window.now.items()}  # where each present thing is now
        self.again: dict[_Thing, Tree] = {}  # a directory moved out and back as it was -> the View's tree of it
        self.checked: dict[_Thing, FileInfo] = {}  # a file in such a directory -> what the View knew of it
        for before, thing in window.was.items():
            self._put_back(before, thing)
        self.moved: list[tuple[str, str]] = []  # the moves said so far, in order

    def _put_back(self, before: str, thing: _Thing) -> None:
        """A directory deleted (or moved out of the tree) and made again at its path with everything it held (same
        names, same types) is the same directory: nothing is said of it, a file in both is checked once more, what
        is new is created."""
        heir = self.window.now.get(before)
        if not (thing.gone and isinstance(thing.prior, dict) and heir is not None and heir.is_dir):
            return
        below = before + os.sep
        now = {p: t for p, t in self.window.now.items() if p.startswith(below)}
        if heir.before is not None or any(t.before is not None for t in now.values()):
            return  # something that was in the tree moved in: said as deleted + created
        old = dict(_nodes_below(before, thing.prior))
        same: list[tuple[_Thing, Tree | FileInfo]] = []  # in both: a directory is nothing, a file is checked
        for path, node in old.items():
            new = now.get(path)
            if new is not None and new.is_dir == isinstance(node, dict):
                same.append((new, node))
            else:
                return  # not as it was: deleted + created (a new directory in its place, say)
        checked = {new: node for new, node in same if not isinstance(node, dict)}
        self.again[thing] = thing.prior
        self.where[thing] = before
        del self.where[heir]
        for new, _ in same:
            if new not in checked:
                del self.where[new]
        self.checked.update(checked)

    def _translate(self, path: str) -> str:
        """Where ``path`` is once the moves said so far are replayed."""
        for source, dest in self.moved:
            if path == source or path.startswith(source + os.sep):
                path = dest + path[len(source) :]
        return path

    def _home(self, thing: _Thing) -> str | None:
        """Where a thing that was there before the window is once its parents have moved (None: they are gone)."""
        assert thing.before is not None
        parent = thing.before
        while True:
            parent, sep, _ = parent.rpartition(os.sep)
            if not sep or not parent:
                return thing.before
            above = self.window.was.get(parent)
            if above is not None:
                place = self.where.get(above)
                return None if place is None else place + thing.before[len(parent) :]

    def _buried(self, thing: _Thing) -> bool:
        """Whether a gone thing went with a gone directory above it (whose deletion says it)."""
        assert thing.before is not None
        parent = thing.before
        while True:
            parent, sep, _ = parent.rpartition(os.sep)
            if not sep or not parent:
                return False
            above = self.window.was.get(parent)
            if above is not None and above.gone and above not in self.where:
                return True

    def changes(self) -> tuple[list[Change] | None, list[str]]:
        """The changes (None: no order says them) and the paths they start from, for a replay check."""
        window, where = self.window, self.where
        early: list[Change] = []
        late: list[Change] = []
        saved: dict[_Thing, FileType | None] = {}  # new files that replace one at their path (a save) -> its type
        survivors = [t for t in window.was.values() if t in where]
        for before, thing in window.was.items():
            if thing in where or self._buried(thing):
                continue
            home = self._home(thing)
            heir = window.now.get(home) if home is not None else None
            if heir is not None and heir in where:
                if heir.before is not None:
                    continue  # moved over it: the move replaces it
                if not heir.is_dir and not thing.is_dir:
                    saved[heir] = known_type(thing.prior) if isinstance(thing.prior, int) else thing.file_type
                    continue
            deletion = Change("deleted", before, thing.is_dir, file_type=thing.file_type)
            inside = before + os.sep
            if thing.is_dir and any(t.before is not None and t.before.startswith(inside) for t in survivors):
                late.append(deletion)  # after what moves out of it
            else:
                early.append(deletion)
        wanted = {t.before: where[t] for t in survivors if t.before is not None and self._home(t) != where[t]}
        ordered = _order_moves(wanted)
        if ordered is None:
            return None, []
        ordered.sort(key=lambda move: move[1].count(os.sep))
        out = early
        made: set[_Thing] = set()
        by_path = {path: thing for thing, path in where.items()}
        for source, dest in ordered:
            out += _make_parents(dest, by_path, made)
            mover = window.was[source]
            replaced = window.was[dest].kind() if dest in window.was and window.was[dest] is not mover else None
            source = self._translate(source)
            out.append(Change("moved", source, mover.is_dir, dest, file_type=mover.file_type, replaced=replaced))
            self.moved.append((source, dest))
        out += [dataclasses.replace(c, path=self._translate(c.path)) for c in late]
        for thing in sorted(where, key=lambda t: t.order):
            path = where[thing]
            if thing in made or thing in self.again:
                continue
            out += _make_parents(path, by_path, made)  # a file moved into a directory made after it
            if thing in self.checked:
                out.append(Change("modified", path, False, prior=self.checked[thing]))  # checked once more when sent
            elif thing in saved:
                out.append(Change("modified", path, False, replaced=saved[thing]))
            elif thing.before is None:
                made.add(thing)
                out.append(Change("created", path, thing.is_dir))
            elif thing.touched:
                out.append(Change("modified", path, False, attrib=not thing.written, replaced=thing.replaced))
        return out, self._start()

    def _start(self) -> list[str]:
        """The paths the replay check starts from: what was there before the window (a directory's unseen
        content as one entry below it)."""
        start: list[str] = []
        for before, thing in self.window.was.items():
            start.append(before)
            if thing in self.again:
                start += [path for path, _ in tree_entries(before, self.again[thing])]
            elif thing.is_dir:
                start.append(before + os.sep + "\0")
        return start


def _make_parents(dest: str, by_path: dict[str, _Thing], made: set[_Thing]) -> list[Change]:
    """The creations of the new directories (not in ``made`` yet: added) that a change at ``dest`` needs first,
    topmost first."""
    out: list[Change] = []
    parent = dest
    while True:
        parent, sep, _ = parent.rpartition(os.sep)
        if not sep or not parent:
            return out[::-1]
        thing = by_path.get(parent)
        if thing is not None and thing.before is None and thing not in made:
            made.add(thing)
            out.append(Change("created", parent, True))


def _nodes_below(path: str, node: Tree) -> Iterator[tuple[str, Tree | FileInfo]]:
    """(path, node) of every entry below the directory ``path`` (which holds ``node``), parents first."""
    stack: list[tuple[str, Tree | FileInfo]] = [(path + os.sep + name, child) for name, child in node.items()]
    while stack:
        path, here = stack.pop()
        yield path, here
        if isinstance(here, dict):
            stack.extend((path + os.sep + name, child) for name, child in here.items())


_Present = None  # the key that marks a path present in a _replay_paths node


def _replay_paths(changes: list[Change], start: Iterable[str]) -> set[str]:
    """The paths the server holds after replaying ``changes`` over ``start`` (as servidor.py does: a deletion or a
    move takes everything below; a move replaces its destination)."""
    top: dict[str | None, Any] = {}

    def node(path: str, create: bool) -> dict[str | None, Any] | None:
        here = top
        for name in path.split(os.sep):
            child = here.get(name)
            if child is None:
                if not create:
                    return None
                child = here[name] = {}
            here = child
        return here

    def detach(path: str) -> dict[str | None, Any] | None:
        parent, _, name = path.rpartition(os.sep)
        holder = node(parent, False)
        return None if holder is None else holder.pop(name, None)

    for path in start:
        node(path, True)[_Present] = True  # type: ignore[index]
    for change in changes:
        if change.kind in ("created", "modified"):
            node(change.path, True)[_Present] = True  # type: ignore[index]
        elif change.kind == "deleted":
            detach(change.path)
        elif change.dest_path is not None:
            moving = detach(change.path)
            detach(change.dest_path)
            if moving is not None:
                parent, _, name = change.dest_path.rpartition(os.sep)
                node(parent, True)[name] = moving  # type: ignore[index]
    paths: set[str] = set()
    stack: list[tuple[str, dict[str | None, Any]]] = [("", top)]
    while stack:
        prefix, here = stack.pop()
        for key, child in here.items():
            if key is not None:
                path = f"{prefix}{os.sep}{key}" if prefix or here is not top else key
                if child.get(_Present):
                    paths.add(path)
                stack.append((path, child))
    return paths


def _order_moves(moves: dict[str, str]) -> list[tuple[str, str]] | None:
    """The moves (source -> destination) in an order where each source still holds its file when it moves: a move
    into a path comes after the move out of it. None when they form a cycle."""
    ordered: list[tuple[str, str]] = []
    done: set[str] = set()
    for first in moves:
        chain: list[str] = []
        source = first
        while source not in done:  # follow: the move out of this move's destination goes first
            if source in chain:
                return None
            chain.append(source)
            following = moves[source]
            if following not in moves:
                break
            source = following
        for source in reversed(chain):
            if source not in done:
                done.add(source)
                ordered.append((source, moves[source]))
    return ordered


def carry(paths: set[str], source: str, dest: str, is_dir: bool) -> None:
    """Rename ``source`` (a directory: and every path below it) to ``dest`` in ``paths``, in place."""
    if source in paths:
        paths.discard(source)
        paths.add(dest)
    if is_dir and paths:
        below = source + os.sep
        moved = [p for p in paths if p.startswith(below)]
        paths.difference_update(moved)
        paths.update(dest + p[len(source) :] for p in moved)


class Settler:
    """Holds changes for a short window and gives back their net effect (see net_effect); pure, ``now`` in seconds.

    Everything held goes out once no change came for ``window`` seconds, or ``max_hold`` seconds after the
    first held one (a path that keeps changing, a download, is not held for ever). A file written and not closed
    yet (``writing``: a write seen, its IN_CLOSE_WRITE not yet) holds them until its close or ``max_hold``,
    whatever the pauses between its writes (wget --limit-rate writes in bursts 200 ms apart). A file created and
    neither written nor closed since (``opened``: its creator holds it, or it came by link(2)) holds nothing, but
    is not hashed either (see SettlePipeline). ``window`` 0: every change goes out as it comes.
    """

    def __init__(self, window: float = SETTLE, max_hold: float = SETTLE_MAX_HOLD, closes: bool = True) -> None:
        self.window = window
        self.max_hold = max_hold
        self.closes = closes  # the watcher reports closes (inotify; --polling does not): writes are followed
        self._held: list[Change] = []
        self._first = 0.0  # when the first held change came
        self._last = 0.0  # ...and the last one
        self._recent: dict[str, float] = {}  # path -> when it last changed, while held
        self.writing: set[str] = set()  # files written and not closed since (read by SettlePipeline)
        self.opened: set[str] = set()  # files created, neither written nor closed since (read by SettlePipeline)

    def __len__(self) -> int:
        return len(self._held)

    def add(
        self,
        changes: list[Change],
        now: float,
        written: Iterable[str] = (),
        closed: Iterable[str] = (),
        opened: Iterable[str] = (),
    ) -> list[Change]:
        """Hold ``changes``; what goes out at once (all of them when the window is 0). ``written``: the files whose
        last word among the events of these changes is a write (open for writing); ``closed``: a close after
        writing (IN_CLOSE_WRITE); ``opened``: their creation by open(2) (see writes_and_closes)."""
        writing = self.writing
        tracked = writing or self.opened
        for change in changes:
            if self.window > 0:
                self._recent[change.dest_path or change.path] = now
            if tracked and change.kind != "modified":  # what was written there is another file now (or gone)
                if change.dest_path is not None:
                    self._forget(change.dest_path, change.is_dir)
                    for files in (writing, self.opened):  # still open, under its new name (logrotate's rename)
                        carry(files, change.path, change.dest_path, change.is_dir)
                else:
                    self._forget(change.path, change.is_dir)
        if self.closes:
            writing.update(written)
            self.opened.update(opened)
        if self.opened:
            self.opened.difference_update(written)  # written since: ``writing`` now
            self.opened.difference_update(closed)
        writing.difference_update(closed)
        if self.window <= 0:
            return changes  # out at once; ``writing`` still says which are open (never hashed while so)
        if changes:
            if not self._held:
                self._first = now
            self._last = now
            self._held.extend(changes)
        return []

    def _forget(self, path: str, is_dir: bool) -> None:
        for files in (self.writing, self.opened):
            files.discard(path)
            if is_dir:
                below = path + os.sep
                files.difference_update([p for p in files if p.startswith(below)])

    def open_files(self) -> frozenset[str]:
        """Every file written or created and not closed since, as far as the events said."""
        return frozenset(self.writing | self.opened)

    def unfinished(self, paths: Iterable[str]) -> frozenset[str]:
        """Which of ``paths`` are files written or created and not closed since (never worth hashing)."""
        writing, opened = self.writing, self.opened
        if not writing and not opened:
            return frozenset()
        return frozenset(p for p in paths if p in writing or p in opened)

    def _being_written(self) -> bool:
        """Whether a file written and not closed yet changed while held."""
        writing, recent = self.writing, self._recent
        return any(p in recent for p in writing) if len(writing) <= len(recent) else any(p in writing for p in recent)

    def deadline(self) -> float | None:
        """When what is held is due (None: nothing is held)."""
        if not self._held:
            return None
        if self.writing and self._being_written():
            return self._first + self.max_hold
        return min(self._last + self.window, self._first + self.max_hold)

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def take(self, now: float) -> tuple[list[Change], frozenset[str]]:
        """Everything held, as its net effect, and the paths still being written, perhaps (their content is not
        worth hashing yet): those open for writing, as the events said (``writing``, ``opened``); without closes
        (--polling), those that changed in the last window. A file closed is complete whenever it goes out: let out
        early (by a scan, or ``max_hold``), it is hashed too -- not sent without its hash, then again with it."""
        held, self._held = self._held, []
        busy = self.unfinished(self._recent)  # open for writing: never hashed
        quiet = now - self._last >= self.window * 0.999  # let out by the window (the timer may fire a hair early)
        if not quiet and not self.closes:
            busy |= frozenset(p for p, when in self._recent.items() if now - when < self.window)
        self._recent = {}
        return net_effect(held), busy


def pattern_parts(pattern: str) -> tuple[str, bool, bool] | None:
    """An ignore pattern as it is matched: (its text, whether it is matched against the path relative to the root
    -- it has a "/" before its end -- rather than each name, whether it is for directories only -- it ends in "/"),
    written the way a user means it: a "./" at its start or a "." between names dropped, "/" repeated once ("./build"
    is the path "build"; "a//b", "a/b"; "docs/." the directory "docs"). None when it can never match: nothing left
    (".", "./") or a "..". A leading "/" is refused on the command line (ignore_pattern); here, relative."""
    body, dirs = pattern, False
    while body.endswith(("/", "/.")):
        body, dirs = body.removesuffix("/").removesuffix("/."), True
    names = [name for name in body.split("/") if name not in ("", ".")]
    if not names or ".." in names:
        return None
    return "/".join(names), "/" in body, dirs


class IgnoreRules:
    """Which paths are never watched, scanned, saved nor sent (IGNORE_PATTERNS, README "Ignorados"): fnmatch on
    each name (a pattern without "/") or on the path relative to the root with "/" between names (with "/"); a
    trailing "/": directories only; a directory ignored, everything below it. No negation, no gitignore rules.

    Remembers which patterns matched something (``matched``: pattern -> the first path), said once each (-v).
    """

    def __init__(self, root: str, patterns: Iterable[str]) -> None:
        parsed = {p: pattern_parts(p) for p in patterns}
        self._parts = {p: parts for p, parts in parsed.items() if parts is not None}  # never matching: left out
        self.patterns = tuple(self._parts)
        self.matched: dict[str, str] = {}
        self._prefix = root.rstrip(os.sep) + os.sep
        kinds = self._parts.values()
        # One regular expression per kind, made by fnmatch itself: one match per name instead of one per pattern.
        self._names = self._compile(body for body, path, dirs in kinds if not path and not dirs)
        self._dir_names = self._compile(body for body, path, dirs in kinds if not path)
        self._paths = self._compile(body for body, path, dirs in kinds if path and not dirs)
        self._dir_paths = self._compile(body for body, path, dirs in kinds if path)
        self._paths_any = self._dir_paths is not None  # a pattern with "/": every entry is matched by path
        self._clean: set[str] = set()  # directories known not to be ignored, nor anything above them

    @staticmethod
    def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
        translated = [fnmatch.translate(os.path.normcase(p)) for p in patterns]
        return re.compile("|".join(translated)) if translated else None

    def ignored(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` (absolute, below the root) is ignored; ``is_dir``: it is a directory."""
        if not self.patterns or not path.startswith(self._prefix):
            return False
        parent, _, name = path.rpartition(os.sep)
        if parent in self._clean:  # most events of a burst: only the name is new (see ignored_entry)
            names = self._dir_names if is_dir else self._names
            if not self._paths_any and (names is None or not names.match(os.path.normcase(name))):
                return False
            return self.ignored_entry(path, is_dir)
        if self._ignored(path, is_dir):
            return True
        if len(self._clean) >= IGNORE_CLEAN_CACHE:
            self._clean.clear()
        self._clean.add(parent)  # not ignored, nor anything above it: every name of the path was matched
        return False

    def _ignored(self, path: str, is_dir: bool) -> bool:
        parts = os.path.normcase(path[len(self._prefix) :]).split(os.sep)
        last = len(parts) - 1
        for depth, name in enumerate(parts):
            names, paths = (self._dir_names, self._dir_paths) if is_dir or depth < last else (self._names, self._paths)
            if (names is not None and names.match(name)) or (
                paths is not None and paths.match("/".join(parts[: depth + 1]))
            ):
                self._note("/".join(parts[: depth + 1]), depth < last or is_dir, path)
                return True
        return False

    def suspects(self, names: list[str]) -> Collection[str]:
        """Which of ``names`` (entries of one directory) some pattern could match: ``ignored_entry`` is False for
        the others, whatever their type. Most directories of a scan have none (one match per name, in C)."""
        if self._paths_any:
            return names
        if self._dir_names is None:
            return ()
        if os.path.normcase("A") == "A":
            return set(filter(self._dir_names.match, names))
        return {name for name in names if self._dir_names.match(os.path.normcase(name))}

    def ignored_entry(self, path: str, is_dir: bool) -> bool:
        """``ignored`` for an entry whose parent directory is known not to be (a scan walks only those): its own
        name and its relative path are matched, not every name above it (a third of a scan's time on 10⁶ files)."""
        if not self.patterns or not path.startswith(self._prefix):
            return False
        relative = os.path.normcase(path[len(self._prefix) :]).replace(os.sep, "/")
        names, paths = (self._dir_names, self._dir_paths) if is_dir else (self._names, self._paths)
        if (names is not None and names.match(relative.rpartition("/")[2])) or (
            paths is not None and paths.match(relative)
        ):
            self._note(relative, is_dir, path)
            return True
        return False

    def _note(self, relative: str, is_dir: bool, path: str) -> None:
        name = relative.rpartition("/")[2]
        for pattern, (body, anchored, dirs) in self._parts.items():
            if pattern in self.matched or (dirs and not is_dir):
                continue
            if fnmatch.fnmatch(relative if anchored else name, body):
                self.matched[pattern] = path
                log.debug("ignorado (padrão %s): %s", pattern, escape(path))


def server_address(uri: str) -> str:
    """The server a URI names, spelled one way: scheme, host in lower case (every loopback alias -- localhost,
    127.x.x.x, ::1 -- as ``localhost``), the port even when it is the default, the resource path.

    ``ws://127.0.0.1/`` and ``ws://LOCALHOST:80`` both give ``ws://localhost:80/``. The key of the state file,
    so that spelling the same server differently loses nothing. InvalidURI or ValueError for a bad URI.
    """
    parsed = parse_uri(uri)
    host = parsed.host.lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{'wss' if parsed.secure else 'ws'}://{host}:{parsed.port}{parsed.resource_name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who this client is to the server: ``client_id`` (uuid4 hex) and the ``secret`` (hex) that proves it."""

    client_id: str
    secret: str

    @classmethod
    def new(cls) -> Identity:
        return cls(uuid.uuid4().hex, secrets.token_hex(16))


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """What the server holds of a View: the digest (``count`` entries adding up to ``sum``) and, when it
    holds only some entries, their entry_hash values (``hashes``; None: every entry of the view)."""

    count: int = 0
    sum: int = 0
    hashes: frozenset[int] | None = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class SavedState:
    """A state file's content: the tree the server acknowledged; the ``identity`` it knows this client by
    (None in a version 3 file: a new one is made), the last ``seq`` it acknowledged, and what it ``held``.

    ``pending``: the events of a run that stopped before the server confirmed them, as (seq, JSON text), seqs
    after ``seq``; the tree already includes them. Sent again under the same seqs, so the server drops those it
    stored (README, "Protocolo"). Absent from files written with nothing pending (and from older ones).
    """

    tree: Tree
    identity: Identity | None = None
    seq: int = 0
    held: Held = Held()
    pending: tuple[tuple[int, str], ...] = ()


def tree_rows(tree: Tree) -> Iterator[list[Any]]:
    """``tree`` as one row per directory, parents first: ``[parent row, name, [file names], [their FileInfo]]``
    (row 0: the root, parent -1), one at a time (a row holds the tree's own names and FileInfo, no copies). JSON
    never nests more than four levels, whatever the depth of the tree."""
    index = 0
    stack: list[tuple[int, str, Tree]] = [(-1, "", tree)]
    while stack:
        parent, name, node = stack.pop()
        files = [(entry, child) for entry, child in node.items() if not isinstance(child, dict)]
        yield [parent, name, [entry for entry, _ in files], [child for _, child in files]]
        stack.extend((index, entry, child) for entry, child in reversed(node.items()) if isinstance(child, dict))
        index += 1


_NAME_TYPES, _INFO_TYPES = {str}, {int, type(None)}  # what a row of a state file holds (see unflatten_tree)
_INFO_LIMIT = 1 << 132  # no FileInfo of any release reached this (pack_info; the size hash of earlier ones: 131 bits)


def _plain_names(names: Iterable[str]) -> bool:
    """Whether ``names`` (of one directory, from a state file) are each a name a directory can hold: not empty,
    ".", "..", nor with a separator or a NUL (such a name would put a path outside the root in an event, which the
    server refuses: the client would stop at every start), and one the system can encode. In C: one join per
    directory."""
    listed = list(names)
    if "" in listed or "." in listed or ".." in listed:
        return False
    joined = "\n".join(listed)
    if os.sep in joined or "\0" in joined or (os.altsep is not None and os.altsep in joined):
        return False
    try:
        os.fsencode(joined)  # a lone surrogate outside U+DC80..U+DCFF (what an undecodable byte becomes) is no name
    except UnicodeEncodeError:
        return False
    return True


def unflatten_tree(rows: object) -> Tree | None:
    """The Tree of tree_rows' rows; None when they are not valid (a parent row that does not come first, a
    name twice in a directory, a FileInfo that is not a natural number or null)."""
    if not isinstance(rows, list) or not rows:
        return None
    nodes: list[Tree] = []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4:
            return None
        parent, name, names, infos = row
        if type(parent) is not int or not isinstance(name, str) or not isinstance(names, list):
            return None
        if not isinstance(infos, list) or len(names) != len(infos):
            return None
        # Checked a row at a time, in C (a restart reads 10⁶ of them): names are text, once each; a FileInfo is
        # null or an int (a bool is not), never negative.
        try:
            node: Tree = dict(zip(names, infos, strict=True))
        except TypeError:  # a name that is a list or an object
            return None
        if len(node) != len(names) or not set(map(type, names)) <= _NAME_TYPES or not _plain_names(names):
            return None
        if not set(map(type, infos)) <= _INFO_TYPES:
            return None
        if min(filter(None, infos), default=0) < 0 or max(filter(None, infos), default=0) >= _INFO_LIMIT:
            return None
        if index == 0:
            if parent != -1:
                return None
        elif not 0 <= parent < index or not _plain_names((name,)) or name in nodes[parent]:
            return None
        else:
            nodes[parent][name] = node
        nodes.append(node)
    return nodes[0]


def encode_state(root: str, address: str, state: SavedState) -> str:
    """The state file: the tree the server at ``address`` (see server_address) has acknowledged (flat: see
    tree_rows), with the client's identity and what the server holds of the tree. (state_chunks, joined.)"""
    return "".join(state_chunks(root, address, state))


def state_chunks(root: str, address: str, state: SavedState) -> Iterator[str]:
    """encode_state's text in pieces of about STATE_CHUNK_ENTRIES files each, made one at a time: a tree of
    10⁶ files is never held as one 40 MB string next to its pieces (the client's peak memory, README
    "Desempenho"). The same text as ``json.dumps(obj, separators=(",", ":"))`` (ASCII: undecodable names, lone
    surrogates, survive as \\udcXX escapes)."""
    assert state.identity is not None
    held = state.held
    head = {
        "version": STATE_VERSION,
        "root": root,
        "server": address,  # before the tree: see stored_server()
        "client_id": state.identity.client_id,
        "secret": state.identity.secret,
        "seq": state.seq,
        "count": held.count,
        "sum": f"{held.sum:016x}",
        "held": None if held.hashes is None else [f"{value:016x}" for value in sorted(held.hashes)],
    }
    yield json.dumps(head, separators=(",", ":"))[:-1] + ',"tree":['
    batch: list[list[Any]] = []
    size, first = 0, True
    for row in tree_rows(state.tree):
        batch.append(row)
        size += len(row[2]) + 1
        if size >= STATE_CHUNK_ENTRIES:
            yield ("" if first else ",") + json.dumps(batch, separators=(",", ":"))[1:-1]
            batch, size, first = [], 0, False
    if batch:
        yield ("" if first else ",") + json.dumps(batch, separators=(",", ":"))[1:-1]
    pending = [[seq, data] for seq, data in state.pending]
    yield "]" + (',"pending":' + json.dumps(pending, separators=(",", ":")) if pending else "") + "}"


def same_server(stored: object, address: str) -> bool:
    """Whether a state file's ``server`` names ``address``: older versions stored the URI as it was typed."""
    if not isinstance(stored, str):
        return False
    try:
        return stored == address or server_address(stored) == address
    except (InvalidURI, ValueError):
        return False


_HEX16 = re.compile("[0-9a-f]{16}")


def _decode_identity(obj: dict[str, Any]) -> tuple[Identity, int, Held] | None:
    """The identity, last seq and Held of a version 4 state file; None when they are not valid."""
    client_id, secret, seq = obj["client_id"], obj["secret"], obj["seq"]
    count, total, held = obj["count"], obj["sum"], obj["held"]
    if not isinstance(client_id, str) or re.fullmatch("[0-9a-f]{32}", client_id) is None:
        return None
    if not isinstance(secret, str) or re.fullmatch("[0-9a-f]{32,128}", secret) is None:
        return None
    if not _natural(seq) or not _natural(count) or not isinstance(total, str) or not _HEX16.fullmatch(total):
        return None
    hashes = None
    if held is not None:
        if not isinstance(held, list) or not all(isinstance(v, str) and _HEX16.fullmatch(v) for v in held):
            return None
        hashes = frozenset(int(value, 16) for value in held)
        if len(hashes) != count or sum(hashes) % DIGEST_MODULUS != int(total, 16):
            return None
    return Identity(client_id, secret), seq, Held(count, int(total, 16), hashes)


def _decode_pending(value: object, after: int) -> tuple[tuple[int, str], ...] | None:
    """The ``pending`` events of a state file: [seq, event JSON] pairs, seqs rising after ``after``, each text
    an event numbered with its seq; None when they are not valid."""
    if not isinstance(value, list):
        return None
    pending: list[tuple[int, str]] = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2 or not _natural(entry[0]) or not isinstance(entry[1], str):
            return None
        seq, data = entry
        event = json.loads(data)
        if seq <= after or not isinstance(event, dict) or event.get("seq") != seq:
            return None
        pending.append((seq, data))
        after = seq
    return tuple(pending)


def decode_state(text: str, root: str, address: str) -> SavedState | None:
    """The content of a state file written for this root and server; None if it is not one.

    Version 6 as it is; the previous formats are migrated, never discarded (an upgrade loses no offline change):
    5's tree is nested (a dict per directory; one too deep for json was never written); 4's files keep their
    fingerprint as the content part of a FileInfo, their type and attributes unknown (so the next checkpoint learns
    them, and nothing is reported for them but a content change); its pending events get their ``type``; 3 has no
    identity either.
    """
    try:
        obj = json.loads(text)
        version = obj["version"]
        if version != STATE_VERSION and version not in PREVIOUS_STATE_VERSIONS:
            return None
        if obj["root"] != root or not same_server(obj["server"], address):
            return None
        identity = _decode_identity(obj) if version >= 4 else None
        if version >= 4 and identity is None:
            return None
        if version == STATE_VERSION:
            tree = unflatten_tree(obj["tree"])
            return None if tree is None else _with_identity(obj, tree, identity, version)
        tree = obj["tree"]
        stack = [tree]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict) or not _plain_names(node):  # JSON keys: text
                return None
            for name, child in node.items():
                if isinstance(child, dict):
                    stack.append(child)
                elif child is None:
                    continue
                elif type(child) is not int or (version == 5 and child < 0):
                    return None
                elif version < 5:
                    node[name] = pack_info("file", child, None)
        return _with_identity(obj, cast(Tree, tree), identity, version)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _with_identity(
    obj: dict[str, Any], tree: Tree, identity: tuple[Identity, int, Held] | None, version: int
) -> SavedState | None:
    """The SavedState of a decoded state file's ``tree``, with its identity and pending events (see decode_state)."""
    if identity is None:
        return SavedState(tree)  # version 3: the server knows none of it under a new identity
    pending = _decode_pending(obj.get("pending", []), identity[1])
    if pending is None:
        return None
    if version < 5:
        pending = tuple((seq, upgrade(data)) for seq, data in pending)
    return SavedState(tree, identity[0], identity[1], identity[2], pending)


def state_folder() -> str:
    """Where the default state files live: the user's cache directory (XDG_CACHE_HOME, else ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "monitor_cliente")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def default_state_path(root: str, uri: str) -> str:
    """One state file per (directory, server) pair in state_folder(): ``<directory key>-<server key>.json``, the
    server as server_address() spells it; ``<directory key>-*.json`` are the directory's files for every server."""
    return os.path.join(state_folder(), f"{_key(root)}-{_key(server_address(uri))}.json")


def legacy_state_path(root: str, uri: str) -> str:
    """The default state file of version 1.0.0: one key for the directory and the URI as typed."""
    key = _key(root + "\0" + uri)
    return os.path.join(state_folder(), f"{key}.json")


def stored_server(head: str) -> str | None:
    """The ``server`` of a state file, from the start of its text (it comes before the tree); None if not found."""
    start = head.find(',"server":')  # a quote inside a value is always escaped: this is the key
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(head, start + len(',"server":'))
    except ValueError:
        return None
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------
# Timers (pure: every method takes ``now``, in seconds of one monotonic clock).
# ---------------------------------------------------------------------------


class RescanSchedule:
    """Whether a rescan is needed, and from when it may run.

    Asked for whenever events may have been lost. After a kernel overflow it waits
    until overflows stop for ``settle`` seconds, but never longer than ``max_wait``
    after the first one: a burst overflows again and again, and scanning in the
    middle of it is wasted work. Also says which overflow or dropped event is the
    first of its episode, the one worth a warning.
    """

    def __init__(self, settle: float = RESCAN_SETTLE, max_wait: float = RESCAN_MAX_WAIT) -> None:
        self.settle = settle
        self.max_wait = max_wait
        self.needed = False
        self._not_before = 0.0
        self._first_overflow = 0.0
        self._overflowing = False  # the kernel overflowed since the last rescan started
        self._dropping = False  # our queue dropped events since the last rescan started

    def request(self) -> None:
        self.needed = True

    def overflow(self, now: float) -> bool:
        """The kernel dropped events; True for the first overflow since the last rescan started."""
        first = not self._overflowing
        if first:
            self._overflowing = True
            self._first_overflow = now
        self._not_before = min(now + self.settle, self._first_overflow + self.max_wait)
        self.needed = True
        return first

    def dropped(self) -> bool:
        """Our own queue was full and an event was dropped; True for the first since the last rescan started."""
        first = not self._dropping
        self._dropping = True
        self.needed = True
        return first

    def due(self, now: float) -> bool:
        return self.needed and now >= self._not_before

    def wait(self, now: float, limit: float) -> float:
        """Seconds until a needed rescan may run, at most ``limit``."""
        return min(limit, max(0.0, self._not_before - now)) if self.needed else limit

    def started(self) -> None:
        self.needed = False
        self._overflowing = False
        self._dropping = False


class CheckpointSchedule:
    """When the next check of the view against the disk (and save of the state file) may run.

    A check whose scan saw the tree move is retried later, each time less eagerly. A
    check that finds differences looks once more shortly (their events may still be
    on their way from the kernel) before it sends them as lost.
    """

    def __init__(self) -> None:
        self._delay = CHECKPOINT_MIN_INTERVAL
        self._next = 0.0
        self._second_look = False

    def due(self, now: float) -> bool:
        return now >= self._next

    def moved(self, now: float) -> None:
        """The tree moved during the check's scan."""
        self._delay = min(self._delay * 2, CHECKPOINT_MAX_INTERVAL)
        self._next = now + self._delay

    def differs(self, now: float) -> bool:
        """The scan found differences: True when they are to be sent now, False to look again first."""
        self._delay = CHECKPOINT_MIN_INTERVAL
        self._second_look = not self._second_look
        self._next = now + (CHECKPOINT_SECOND_LOOK if self._second_look else self._delay)
        return not self._second_look

    @property
    def looking_again(self) -> bool:
        """Whether the last check found differences, and the next one is their second look."""
        return self._second_look

    def agrees(self, now: float) -> None:
        """The view and the disk agree (the state file gets written)."""
        self._delay = CHECKPOINT_MIN_INTERVAL
        self._second_look = False
        self._next = now + self._delay


class Coverage:
    """The degraded mode (pure): the directories without an inotify watch, when to look at them, when to scan them,
    when to try to watch them again. Every DEGRADED_SCAN_INTERVAL the mtime of each is looked at (an entry
    created, deleted or renamed in a directory moves it: that directory is scanned); full scans (a file written in
    place moves no directory's mtime) are spaced by DEGRADED_SCAN_INTERVAL or DEGRADED_DUTY times the last one's
    duration, whichever is longer (a bounded share of a core, whatever the size of the unwatched part); the
    retries double from DEGRADED_RETRY_MIN to DEGRADED_RETRY_MAX."""

    def __init__(self) -> None:
        self.uncovered: list[str] = []  # the topmost directories without a watch (each scanned with its subtree)
        self.count = 0  # directories without a watch
        self.interval = DEGRADED_SCAN_INTERVAL
        self._next_scan = 0.0
        self._next_look = 0.0
        self._retry_delay = DEGRADED_RETRY_MIN
        self._next_retry = 0.0

    def update(self, unwatched: list[str], now: float) -> Literal["entered", "left", "changed", ""]:
        """The directories of the view found without a watch: whether the degraded mode starts or ends now, or
        goes on with another number of them."""
        was, count, self.count = bool(self.uncovered), self.count, len(unwatched)
        self.uncovered = topmost(unwatched)
        if self.uncovered and not was:
            self._next_scan = now
            self._retry_delay = DEGRADED_RETRY_MIN
            self._next_retry = now + self._retry_delay
            return "entered"
        if was and not self.uncovered:
            return "left"
        return "changed" if self.uncovered and self.count != count else ""

    def scan_due(self, now: float) -> bool:
        return bool(self.uncovered) and now >= self._next_scan

    def look_due(self, now: float) -> bool:
        """Whether to look at the directories' mtimes now (then every DEGRADED_SCAN_INTERVAL)."""
        if not self.uncovered or now < self._next_look:
            return False
        self._next_look = now + DEGRADED_SCAN_INTERVAL
        return True

    def scanned(self, now: float, duration: float) -> None:
        self.interval = max(DEGRADED_SCAN_INTERVAL, DEGRADED_DUTY * duration)
        self._next_scan = now + self.interval

    def retry_due(self, now: float) -> bool:
        return bool(self.uncovered) and now >= self._next_retry

    def retried(self, now: float) -> None:
        self._retry_delay = min(self._retry_delay * 2, DEGRADED_RETRY_MAX)
        self._next_retry = now + self._retry_delay

    def retry_now(self, now: float) -> None:
        """Watches may be available now (the limit was raised): try at once, then from DEGRADED_RETRY_MIN again."""
        self._retry_delay = DEGRADED_RETRY_MIN
        self._next_retry = now


def topmost(paths: Iterable[str]) -> list[str]:
    """The paths that are not below another one of them."""
    kept: list[list[str]] = []
    for parts in sorted(path.split(os.sep) for path in paths):
        if not kept or parts[: len(kept[-1])] != kept[-1]:
            kept.append(parts)
    return [os.sep.join(parts) for parts in kept]


_INOTIFY_LIMITS = {  # the machine's sysctl, the user namespace's, the least value worth suggesting
    "watches": ("fs.inotify.max_user_watches", "user.max_inotify_watches", 524288),
    "instances": ("fs.inotify.max_user_instances", "user.max_inotify_instances", 1024),
}


def describe_inotify_limit(kind: Literal["watches", "instances"], machine: int | None, own: int | None) -> str:
    """``(<the limit in force>): {}. Para aumentar: sudo sysctl …`` for an inotify limit of ``kind`` whose values
    are ``machine`` (fs.inotify.*) and ``own`` (this user namespace's: a container may bind lower); the caller
    puts what it could not watch in the ``{}``."""
    name, own_name, least = _INOTIFY_LIMITS[kind]
    if own is not None and machine is not None and own < machine:
        limit = f"{own_name} = {own} neste namespace; {name} = {machine}"
    else:
        limit = f"{name} = {machine if machine is not None else '?'}"
    return f"({limit}): {{}}. Para aumentar: sudo sysctl {name}={max(least, 2 * (machine or 0))}"


def fold_polled_moves(events: list[FileSystemEvent]) -> list[FileSystemEvent]:
    """A poll's events with its moves as inotify gives them: watchdog's PollingEmitter reports a moved directory's
    children first, each as a move of its own; those implied by an ancestor's move are dropped, and the moves left
    come parents first (in place of the first move). (A "move" that changes the type: see retype_polled.)"""
    moves = [event for event in events if event.event_type == "moved"]
    if len(moves) < 2:
        return events
    dirs = {os.fsdecode(e.src_path): os.fsdecode(e.dest_path) for e in moves if e.is_directory}

    def implied(event: FileSystemEvent) -> bool:
        src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
        parent = os.path.dirname(src)
        while parent not in dirs and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        return parent in dirs and dest == dirs[parent] + src[len(parent) :]

    kept = sorted((e for e in moves if not implied(e)), key=lambda e: os.fsdecode(e.src_path).count(os.sep))
    first = events.index(moves[0])
    rest = [event for event in events if event.event_type != "moved"]
    return [*rest[:first], *kept, *rest[first:]]


def retype_polled(
    events: list[FileSystemEvent], was: Callable[[str], FileType | None] = lambda path: None
) -> list[FileSystemEvent]:
    """A poll's events with each change of type as a deletion and a creation (``rm f; mkdir f``, ``rmdir d; mkfifo
    d``, ``rm -r d; echo x > d``). watchdog's poll matches paths by inode, and the kernel reuses a freed inode at
    once: the new entry, of another type, comes as a "modified" (or "attrib") of the old one -- of a directory if it
    was one (DirModifiedEvent, wanted from the poll for this only: dropped when the path is still a directory) -- or
    as a "move" from another path that was deleted. What a path is now is its lstat; what it was, the event's
    ``is_directory`` (the poll's last snapshot), or ``was`` (the View, for a symlink or special file; None: not
    known). Each retyped path once, where its first event was. The poll queues files' events before directories':
    a directory replaced by a file of a new inode came as "created" before "deleted"; its deletion goes first."""
    out: list[FileSystemEvent] = []
    done: set[bytes | str] = set()
    for event in events:
        kind = event.event_type
        if kind not in ("modified", "attrib", "moved"):
            out.append(event)
            continue
        path = event.dest_path if kind == "moved" else event.src_path
        if path in done:
            continue
        try:
            now = stat_type(os.lstat(path).st_mode)
        except OSError:
            now = None  # gone already: the next poll says so
        before: FileType | None = "dir" if event.is_directory else None
        if before is None:
            known = was(os.fsdecode(event.src_path))
            before = known if known != "dir" else None  # the poll's snapshot is newer than the View
        if now is None or now == before or (before is None and now != "dir"):
            if not (event.is_directory and kind in ("modified", "attrib")):
                out.append(event)  # a directory's own "modified": a child changed (noise)
            continue
        done.add(path)
        out.append(DirDeletedEvent(event.src_path) if event.is_directory else FileDeletedEvent(event.src_path))
        out.append(DirCreatedEvent(path) if now == "dir" else FileCreatedEvent(path))
    return _deletions_first(out)


def _deletions_first(events: list[FileSystemEvent]) -> list[FileSystemEvent]:
    """``events`` with each deletion of a path before the events that came earlier for that same path (made there
    since: a poll is a diff of two snapshots, not a sequence)."""
    seen: set[bytes | str] = set()
    late: dict[bytes | str, FileSystemEvent] = {}
    for event in events:
        if event.event_type == "deleted" and event.src_path in seen:
            late.setdefault(event.src_path, event)
        seen.add(event.src_path)
        if event.event_type == "moved":
            seen.add(event.dest_path)
    if not late:
        return events
    moved_up = {id(event) for event in late.values()}
    out: list[FileSystemEvent] = []
    for event in events:
        if id(event) in moved_up:
            continue
        for path in (event.src_path, event.dest_path if event.event_type == "moved" else None):
            deletion = late.pop(path, None) if path is not None else None
            if deletion is not None:
                out.append(deletion)
        out.append(event)
    return out


def view_types(view: View) -> Callable[[str], FileType | None]:
    """What the View holds at a path (read only): "dir", or a file's type when it was read (lstat of an event
    sent); None when the path is not in it or its type is not known yet."""
    paths = TreePaths(view.root)

    def known(path: str) -> FileType | None:
        parts = paths.parts(path)
        parent = paths.find_dir(view.top, parts[:-1]) if parts else None
        if parent is None or not parts or parts[-1] not in parent:
            return None
        node = parent[parts[-1]]
        return None if node is None else node_type(node)

    return known


def mountinfo_field(field: str) -> str:
    """A field of /proc/self/mountinfo as text: proc(5) escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str, root: str) -> frozenset[str]:
    """The mount points at or below ``root`` in the text of /proc/self/mountinfo (proc(5): the fifth field, with
    space, tab, newline and backslash escaped as octal)."""
    prefix = root.rstrip(os.sep) + os.sep
    points = set()
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = mountinfo_field(fields[4])
            if point == root or point.startswith(prefix):
                points.add(point)
    return frozenset(points)


# Filesystems where a directory's link count is 2 plus its subdirectories (its name in its parent, its own ".",
# each subdirectory's ".."), or 1 when it no longer counts (ext4 past 65,000 subdirectories; btrfs always).
_COUNTING_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs"})


def counting_devices(text: str) -> frozenset[str]:
    """The devices ("major:minor", field 3 of /proc/self/mountinfo, proc(5)) of the mounts whose filesystem type
    (the first field after " - ") is one of _COUNTING_FILESYSTEMS: there a directory with a link count of 2 has no
    subdirectory, and need not be listed to find them (GNU find's leaf optimisation, gnulib fts.c, which is
    likewise kept to filesystems known to count)."""
    devices = set()
    for line in text.splitlines():
        fields = line.split(" ")
        if " - " in line and len(fields) > 2:
            kind = line.split(" - ", 1)[1].split(" ", 1)[0]
            if kind in _COUNTING_FILESYSTEMS:
                devices.add(fields[2])
    return frozenset(devices)


def no_subdirectories(path: bytes, devices: frozenset[str]) -> bool:
    """Whether directory ``path`` has no subdirectory by its link count (2), on a device of ``devices`` (see
    counting_devices). Read after its watch was added: a subdirectory made since is an event of that watch."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_nlink == 2 and stat.S_ISDIR(st.st_mode) and f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" in devices


def bind_sources(text: str, root: str) -> list[tuple[str, str]]:
    """(mount point, source) of each bind mount whose two paths are both at or below ``root``, from the text of
    /proc/self/mountinfo (proc(5): field 3 is the device, field 4 the root of the mount within its filesystem,
    field 5 the mount point). The source is found through another mount of the same device whose root holds
    this one's; candidates only: the caller confirms each with a stat (same device and inode)."""
    prefix = root.rstrip(os.sep) + os.sep
    rows = (line.split(" ") for line in text.splitlines())
    mounts = [(f[2], mountinfo_field(f[3]), mountinfo_field(f[4])) for f in rows if len(f) > 4]
    pairs = []
    for device, inner, point in mounts:
        if not point.startswith(prefix) or inner == "/":
            continue
        for d, r, m in mounts:  # every mount of the device that shows this one's root: each is a path to it
            if d == device and m != point and (inner + "/").startswith(r.rstrip("/") + "/"):
                source = m.rstrip("/") + inner[len(r.rstrip("/")) :]
                if source.startswith(prefix) and source != point:
                    pairs.append((point, source))
    return pairs


class Aliases:
    """Directories of the tree that are one directory under two paths (a bind mount of a part of the tree inside
    it): inotify watches an inode once (inotify(7): a second watch of the same object returns the same
    descriptor), so watchdog names each change under one of the paths only; the change holds under both."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._other: dict[str, str] = {}
        for one, two in pairs:
            self._other[one], self._other[two] = two, one

    def __bool__(self) -> bool:
        return bool(self._other)

    def _mirror(self, path: str) -> str | None:
        for prefix, other in self._other.items():
            if path == prefix or path.startswith(prefix + os.sep):
                return other + path[len(prefix) :]
        return None

    def expand(self, changes: Iterable[Change | None]) -> Iterator[Change]:
        """Each change (None left out), then the same change under the other path of an aliased directory (not
        twice if watchdog said both)."""
        said = [change for change in changes if change is not None]
        seen = {(c.kind, c.path, c.dest_path) for c in said} if self._other else set()
        for change in said:
            yield change
            mirror = self.mirrored(change) if self._other else None
            if mirror is not None and (mirror.kind, mirror.path, mirror.dest_path) not in seen:
                seen.add((mirror.kind, mirror.path, mirror.dest_path))
                yield mirror

    def mirrored(self, change: Change) -> Change | None:
        """The same change as seen under the other path (None: not under an aliased directory). A move out of (or
        into) the aliased directory is, seen from the other path, a deletion (or a creation)."""
        path = self._mirror(change.path)
        dest = self._mirror(change.dest_path) if change.dest_path is not None else None
        if change.dest_path is None or (path is not None and dest is not None):
            return None if path is None else dataclasses.replace(change, path=path, dest_path=dest)
        if path is not None:
            return Change("deleted", path, change.is_dir)
        if dest is not None:
            return Change("created", dest, change.is_dir)
        return None


# ---------------------------------------------------------------------------
# I/O: the disk, the watchdog threads, the outbox, the connection.
# ---------------------------------------------------------------------------


def fingerprint(st: os.stat_result) -> int:
    """One small int that changes when a file's mtime or size does: state formats 3 and 4 kept it per file."""
    return hash((st.st_mtime_ns, st.st_size))


def file_info(st: os.stat_result) -> int:
    """The FileInfo of a path that is not a directory, from its lstat: ``pack_info(stat_type(mode),
    fingerprint(st), hash((mode bits, uid, gid)))`` in one call (a scan makes one per file; tests/test_view.py
    checks the two agree)."""
    mode = st.st_mode
    kind = 0 if stat.S_ISREG(mode) else 1 if stat.S_ISLNK(mode) else 2  # _TYPE_CODES
    content = (hash((st.st_mtime_ns, st.st_size)) & _MASK64) << _CONTENT_SHIFT
    return content | (hash((mode & 0o7777, st.st_uid, st.st_gid)) & _MASK32) << _ATTRS_SHIFT | _ATTRS_KNOWN | kind


class Interrupted(Exception):
    """A scan stopped before the end: the client is stopping."""


def too_long(path: str) -> bool:
    """Whether the system refuses ``path`` by its length (ENAMETOOLONG): such an entry is left out of the view, no
    event or lstat can name it. (A character is at most 4 bytes in UTF-8: a short path is not encoded.)"""
    return len(path) * 4 >= PATH_MAX and len(os.fsencode(path)) >= PATH_MAX


# Whether a scan can lstat each entry through its directory's descriptor (Linux and most Unixes; not Windows).
_SCAN_BY_FD = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd


def _listing(path: str, top: bool) -> tuple[list[str], int | None]:
    """The names in directory ``path`` and, where the system has ``dir_fd``, a descriptor of it to lstat them
    through (fstatat: the kernel does not resolve the whole path again for each entry) that the caller closes.
    Below the root, a symbolic link that took the directory's place since it was listed is not followed
    (O_NOFOLLOW). Raises OSError (PermissionError: it cannot be listed)."""
    if not _SCAN_BY_FD:
        return os.listdir(path), None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if top else os.O_NOFOLLOW))
    try:
        return os.listdir(fd), fd
    except BaseException:
        os.close(fd)
        raise


def _same_names(node: Tree, names: list[str]) -> list[str]:
    """``names`` (listed in a directory), those equal to a name of ``node`` (the same directory in another
    thread's tree) as its objects: a scan shares them. In C, so that the other thread cannot change ``node``
    meanwhile (the GIL is held throughout)."""
    known = dict(zip(node, node, strict=True))
    return list(map(known.get, names, names))


def scan_tree(
    root: str,
    skip: frozenset[str],
    stop: threading.Event | None = None,
    ignore: IgnoreRules | None = None,
    too_deep: list[str] | None = None,
    like: Tree | None = None,
) -> tuple[Tree, list[str]] | None:
    """Walk the tree (meant for a worker thread) into the View's shape, and list unreadable directories.

    A directory is a dict of its entries, anything else its FileInfo (file_info). None when the
    root itself is gone (or unreadable). An unreadable directory (no permission to list it, or to look at what it
    lists) is empty here and listed as such: its content is not known, see graft_unknown. Symbolic links are
    entries, never followed. (watchdog's
    DirectorySnapshot keeps a full stat result, a path and an inode map per entry: on
    100,000 files it took the client to 145 MB; this keeps what the diff needs.)
    Raises Interrupted once ``stop`` is set (checked at each directory). The directories holding entries
    whose path is too long (see too_long) go to ``too_deep``, the entries are left out.

    ``like``: a tree the result shares objects with (the view's, read as it is, from this thread): a name and a
    FileInfo equal to its own at the same place are its objects, not new ones, so that two trees of 10⁶ files at
    once (a restart's diff, a check) cost one tree and a second set of dicts (README, "Desempenho").

    Per entry, one lstat and only what cannot be decided once for its directory (whether a skipped path or a
    path too long can be in it; a name that no ignore pattern can match is not matched again by path): on 10⁶
    files in tmpfs, 4.95 → 3.4 s; an lstat per file by its path alone is 2.6 s (README, "Uma árvore de 1.000.000 de
    arquivos").
    """
    tree: Tree = {}
    unreadable: list[str] = []
    skip_in = {os.path.dirname(path) for path in skip}
    rules = ignore if ignore is not None and ignore.patterns else None
    stack: list[tuple[str, Tree, Tree | FileInfo]] = [(root, tree, like)]
    while stack:
        if stop is not None and stop.is_set():
            raise Interrupted
        path, node, before = stack.pop()
        below = len(stack)  # the subdirectories of this one are pushed above here
        prefix = path if path.endswith(os.sep) else path + os.sep
        skipping = path in skip_in or prefix[:-1] in skip_in
        # A name is at most NAME_MAX (255) bytes: below this, no entry's path can be too long.
        long_names = len(path) * 4 + 257 >= PATH_MAX and len(os.fsencode(path)) + 257 >= PATH_MAX
        fd = None
        try:
            names, fd = _listing(path, path == root)
            suspects = rules.suspects(names) if rules is not None else ()
            old: Tree = before if isinstance(before, dict) else {}
            if old:
                names = _same_names(old, names)
            for name in names:
                if skipping and prefix + name in skip:
                    continue
                if long_names and too_long(prefix + name):
                    if too_deep is not None:
                        too_deep.append(path)
                    continue
                try:
                    st = os.stat(name if fd is not None else prefix + name, dir_fd=fd, follow_symlinks=False)
                except PermissionError:
                    # Listed but not searchable (read without execute permission): nothing below it can be
                    # known, as for a directory that cannot be listed at all.
                    node.clear()
                    del stack[below:]
                    raise
                except OSError:
                    continue  # gone since it was listed
                is_dir = stat.S_ISDIR(st.st_mode)
                if suspects and name in suspects and rules.ignored_entry(prefix + name, is_dir):  # type: ignore[union-attr]
                    continue
                if is_dir:
                    child: Tree = {}
                    node[name] = child
                    stack.append((prefix + name, child, old.get(name)))
                else:
                    info = file_info(st)
                    if old:
                        same = old.get(name)
                        if same == info:
                            info = same  # the view's object: this one is freed at once
                    node[name] = info
        except PermissionError:
            if path == root:
                return None
            unreadable.append(path)
        except OSError:  # vanished (simply empty), or unreachable (ENAMETOOLONG, ELOOP, EIO): never the client's end
            if path == root:
                return None
        finally:
            if fd is not None:
                os.close(fd)
    return tree, unreadable


def graft_unknown(disk: Tree, root: str, unreadable: list[str], known: Callable[[str], Tree | None]) -> None:
    """Put back in the scanned ``disk`` what was ``known`` (the view's subtree) below each directory the scan could
    not read: a scan says nothing of what it could not see, so it neither deletes nor creates anything there."""
    paths = TreePaths(root)
    for path in unreadable:
        parts = paths.parts(path)
        target = None if not parts else paths.find_dir(disk, parts)
        before = known(path)
        if target is not None and before:
            target.clear()
            target.update(before)


def is_dir_now(path: str) -> bool:
    """Whether ``path`` is a directory (not a link to one); True when it is gone (what the event said stands)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return True


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


def start_state(path: str, pieces: Iterable[str]) -> tuple[int, int]:
    """Write ``pieces`` (ASCII text) to ``<path>.tmp``, each as it comes: a piece is never held with the others
    (the state of 10⁶ files is 40 MB). Returns the open descriptor, for commit_state, and the bytes written. It holds
    the client's secret: readable by its owner only (mode 0600, whatever an older file or the umask said).
    Raises OSError (ENOSPC, EINVAL for what is not a regular file); the descriptor is then closed."""
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        kind = os.lstat(tmp).st_mode
        if not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
            os.unlink(tmp)  # the client's own temporary name: a FIFO, link or device there is replaced, never used
    fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if hasattr(os, "fchmod"):  # not on Windows (before 3.13), where modes do not apply
            os.fchmod(fd, 0o600)  # a .tmp left by a crash keeps its old mode through O_CREAT
        size = 0
        with open(fd, "wb", closefd=False) as file:
            for piece in pieces:
                size += file.write(piece.encode("ascii"))
        return fd, size
    except BaseException:
        os.close(fd)
        raise


def commit_state(path: str, fd: int) -> None:
    """Make what start_state wrote on ``fd`` the state file: fsync (seconds on a slow disk: meant for a worker
    thread), close, rename over ``path``. Raises OSError; the descriptor is closed in any case."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(f"{path}.tmp", path)


def inotify_limit(kind: Literal["watches", "instances"]) -> tuple[int | None, int | None]:
    """The inotify limit of ``kind``: the machine's (fs.inotify.max_user_*) and this user namespace's."""
    values: list[int | None] = []
    for name in _INOTIFY_LIMITS[kind][:2]:
        try:
            with open("/proc/sys/" + name.replace(".", "/"), encoding="ascii") as file:
                values.append(int(file.read()))
        except (OSError, ValueError):
            values.append(None)
    return values[0], values[1]


_WATCH_LINE = re.compile(r"^inotify wd:\S+ ino:([0-9a-f]+) ", re.MULTILINE)


def same_directories(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of paths that are one directory now (same device and inode); a few stats."""
    out = []
    for one, two in pairs:
        with contextlib.suppress(OSError):
            a, b = os.stat(one), os.stat(two)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and stat.S_ISDIR(a.st_mode):
                out.append((one, two))
    return out


def inotify_watches() -> set[int] | None:
    """The inode of every directory this process holds an inotify watch on: the kernel's own list, in the
    /proc/self/fdinfo of each inotify descriptor. None where there is no such list (not Linux). The device it
    lists is the superblock's, which lstat does not always give (a btrfs subvolume has a device of its own):
    inodes alone are compared, so a directory is taken as watched if another filesystem's watched one has its
    inode number (rare; its changes then wait for the idle check)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    watched: set[int] = set()
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as file:
                text = file.read()
        except OSError:
            continue  # closed meanwhile
        watched.update(int(ino, 16) for ino in _WATCH_LINE.findall(text))
    return watched


_WD_LINE = re.compile(r"^inotify wd:([0-9a-f]+) ino:([0-9a-f]+) ", re.MULTILINE)


def drop_stale_watches(group: Any, paths: Iterable[str]) -> int:
    """Drop the watches of watchdog's InotifyWatchGroup ``group`` at or below ``paths`` that no longer watch the
    directory at their path (its inode differs: the kernel's list, /proc/self/fdinfo); how many.

    A directory moved out of the tree keeps its watch, under its old path (watchdog leaves this as a TODO in
    InotifyWatchGroup.on_event), so what happens to it out there comes as ghost events under that path, even
    once a new directory is there. The group's fields are private: when they are not there, nothing is done.
    """
    try:
        lock, by_watch, by_path = group._lock, group._active_callbacks_by_watch, group._active_callbacks_by_path
        fd: int = group._inotify_fd._inotify_fd
        remove: Callable[[list[int]], None] = group._remove_callbacks
    except AttributeError:
        return 0
    targets = {os.fsencode(path) for path in paths}
    prefixes = tuple(target + os.sep.encode() for target in targets)
    with lock:
        if not targets.intersection(by_path):
            return 0  # deleted, not moved out: the kernel removed the watch and watchdog forgot it
        try:
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as file:
                inodes = {int(wd, 16): int(ino, 16) for wd, ino in _WD_LINE.findall(file.read())}
        except OSError:
            return 0
        stale: list[int] = []
        for wd, path in list(by_watch.items()):
            if path in targets or path.startswith(prefixes):
                try:
                    here: int | None = os.lstat(path).st_ino
                except OSError:
                    here = None
                if inodes.get(wd) != here:
                    stale.append(wd)
        if stale:
            remove(stale)
    return len(stale)


def watch_room(path: str) -> bool:
    """Whether this user can add one more inotify watch (a throwaway instance watches ``path``): the limit counts
    per user, across instances. True where it cannot be told (not Linux)."""
    try:
        from watchdog.observers.inotify_c import InotifyConstants, inotify_add_watch, inotify_init
    except (ImportError, OSError, AttributeError):
        return True
    fd = inotify_init()
    if fd < 0:
        return False  # the instance limit: no room either
    try:
        return inotify_add_watch(fd, os.fsencode(path), InotifyConstants.IN_ATTRIB) >= 0
    finally:
        os.close(fd)


def directory_stamps(directories: list[str]) -> dict[str, int | None]:
    """The mtime (ns) of each directory (None: gone): it moves when an entry is created, deleted or renamed in it."""
    stamps: dict[str, int | None] = {}
    for path in directories:
        try:
            stamps[path] = os.lstat(path).st_mtime_ns
        except OSError:
            stamps[path] = None
    return stamps


def unwatched(directories: list[str], watched: set[int]) -> list[str]:
    """The ``directories`` (that still exist, and can be read: else the Watcher says so) without a watch in
    ``watched`` (see inotify_watches)."""
    missing = []
    for path in directories:
        try:
            if os.lstat(path).st_ino not in watched and os.access(path, os.R_OK | os.X_OK):
                missing.append(path)
        except OSError:
            continue
    return missing


def open_regular(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` for a regular file only: a FIFO or a device there is never waited on (O_NONBLOCK until it is
    known to be a regular file), and raises OSError(EINVAL, "... não é um arquivo comum")."""
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as exc:
        # A FIFO opened for writing without a reader (ENXIO), a symbolic link (ELOOP: O_NOFOLLOW), a directory.
        if exc.errno in (errno.ENXIO, errno.ELOOP, errno.EISDIR):
            raise OSError(errno.EINVAL, f"{escape(path)} não é um arquivo comum") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{escape(path)} não é um arquivo comum")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def peek_server(path: str) -> str | None:
    """The server a state file was written for (read from its first 64 KiB), or None (also for anything but a
    regular file)."""
    try:
        with open(open_regular(path, os.O_RDONLY), encoding="ascii", errors="replace") as file:
            return stored_server(file.read(65536))
    except OSError:
        return None


class StateFile:
    """The last tree the server acknowledged and the client's identity, kept between runs (``path`` "": none,
    and a new identity each run), and the lock that keeps it to one client at a time. Problems reading or
    writing it are warnings.

    Owns ``identity``: read by ``load`` from the file, or made anew (and said once) when it has none.
    """

    def __init__(self, path: str, root: str, address: str) -> None:
        self.path = path
        self.root = root
        self.address = address  # server_address() of the server
        self.lock_path = f"{path}.lock" if path else ""
        self.own_paths = frozenset({path, f"{path}.tmp", self.lock_path} - {""})  # never watched, never sent
        self.identity = Identity.new()  # until load() reads the file's
        self.new_identity = True  # the identity is not in the file yet: save it before anything is sent
        self.ran_before = False  # a client used this state file before (see lock)
        self._lock_fd: int | None = None
        self._unsaved = ""  # why the last save failed, once said
        self._commit: asyncio.Future[None] | None = None  # the last save's fsync and rename (a worker thread)

    def lock(self) -> None:
        """Hold the state file for this run (an advisory lock on ``<path>.lock``): FatalError when another client
        holds it. Without fcntl (Windows) there is no lock."""
        if not self.path:
            return
        self.ran_before = os.path.exists(self.lock_path)  # the lock file stays after each run: a trace of them
        if sys.platform == "win32":
            log.debug("sem fcntl neste sistema: o arquivo de estado não é travado contra outro cliente")
            with contextlib.suppress(OSError):
                open(self.lock_path, "ab").close()  # the trace, at least
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FatalError(f"não foi possível criar {escape(self.lock_path)}: {describe_os_error(exc)}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FatalError(
                f"outro monitor_cliente já usa o arquivo de estado {escape(self.path)} (o mesmo diretório e "
                "servidor); pare o outro ou indique outro arquivo com --estado"
            ) from None
        self._lock_fd = fd

    @staticmethod
    def _ms(started: float) -> float:
        return (time.perf_counter() - started) * 1000

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the lock; the empty lock file stays, for the next run

    def load(self) -> SavedState | None:
        """The state of the last run (None: none usable); sets ``identity``, saying when it is a new one."""
        saved, why = self._read()
        if saved is not None and saved.identity is not None:
            self.identity, self.new_identity = saved.identity, False
        elif self.path:
            # Said once, when it replaces one (a deleted or unusable state file, the previous format);
            # a first run has nothing to say.
            log.log(
                logging.INFO if why else logging.DEBUG,
                "Identidade nova deste cliente (id %s), guardada em %s (%s); o servidor o verá como um cliente novo.",
                self.identity.client_id,
                escape(self.path),
                why or "primeira execução",
            )
        return saved

    def _read(self) -> tuple[SavedState | None, str]:
        """The state of the last run, and why it has no identity ("" for a first run, or when it has one)."""
        if not self.path:
            log.debug("sem arquivo de estado (--estado vazio): uma identidade nova a cada execução")
            return None, ""
        try:
            with open(open_regular(self.path, os.O_RDONLY), encoding="ascii") as file:
                text = file.read()
        except FileNotFoundError:
            log.debug("arquivo de estado: %s (ainda não existe: primeira execução)", escape(self.path))
            return None, "o arquivo de estado foi apagado" if self.ran_before else ""
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("estado ilegível em %s (%s); começando do zero.", escape(self.path), exc)
            return None, "o arquivo de estado era ilegível"
        saved = decode_state(text, self.root, self.address)
        if saved is None:
            other = stored_server(text[:65536])
            if other is not None and not same_server(other, self.address):
                log.warning(
                    "o estado em %s é de outro servidor (%s); começando do zero.", escape(self.path), escape(other)
                )
            else:
                log.warning("o estado em %s não serve para este diretório; começando do zero.", escape(self.path))
        else:
            log.debug("arquivo de estado: %s (%d bytes)", escape(self.path), len(text))
        return saved, "o arquivo de estado não servia" if saved is None else "o arquivo de estado não tinha uma"

    async def save(self, tree: Tree, held: Held, seq: int, pending: tuple[tuple[int, str], ...] = ()) -> None:
        """Write ``tree``, of which the server holds ``held`` and has acknowledged every event up to ``seq``
        (and will hold ``pending`` too: events sent again at the next start, see SavedState)."""
        if not self.path:
            return
        state = SavedState(tree, self.identity, seq, held, pending)
        if self._commit is not None and not self._commit.done():
            # A save whose caller was cancelled in its fsync (the client stopping) goes on in its thread, and
            # renames <path>.tmp at its end: it ends before this one writes there again.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._commit)
        started = time.perf_counter()
        try:
            # Made and written here, in the loop, while nothing changes the tree (the page cache takes it); made
            # durable in a worker thread, which a cancel of the caller does not stop (see above).
            fd, size = start_state(self.path, state_chunks(self.root, self.address, state))
            self._commit = asyncio.ensure_future(asyncio.to_thread(commit_state, self.path, fd))
            self._commit.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved here
            await asyncio.shield(self._commit)
            self.new_identity = False
            self._unsaved = ""
            log.debug("estado gravado: %s (%d bytes, %.0f ms)", escape(self.path), size, self._ms(started))
        except OSError as exc:
            why = exc.strerror if exc.errno == errno.EINVAL and exc.strerror else describe_os_error(exc)
            if why != self._unsaved:  # said once, not at each checkpoint
                log.warning("não foi possível gravar o estado em %s: %s", escape(self.path), why)
            self._unsaved = why


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
        self.push_all((event,))

    def push_all(self, events: Iterable[FileSystemEvent]) -> None:
        """Called in the watchdog thread, with a batch (BatchingObserver) or one event."""
        with self._lock:
            scheduled = bool(self._pending)
            self._pending.extend(events)
            if scheduled or self._paused or not self._pending:
                return  # a drain is already scheduled, or resume() will do it
        self.call_soon(self.drain)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop; safe from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
            self._loop.call_soon_threadsafe(callback)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold events back for the duration (in the loop), then hand them over."""
        with self._lock:
            self._paused = True
        try:
            yield
        finally:
            with self._lock:
                self._paused = False
            self.drain()

    def drain(self) -> None:
        """Called in the loop: hands over up to DRAIN_MAX_EVENTS events, and comes back for the rest once the
        loop's other work had its turn (the sender: a burst is sent while it is read, not after)."""
        with self._lock:
            if self._paused:
                return
            events = self._pending[:DRAIN_MAX_EVENTS]
            del self._pending[:DRAIN_MAX_EVENTS]
            if self._pending:  # push_all schedules a drain only when none is pending: this one's follow-up
                self._loop.call_soon(self.drain)
        if events:
            self._consume(events)


class Handler(FileSystemEventHandler):
    """watchdog's handler: an event (the stock observer) or a batch (BatchingObserver) goes to the bridge."""

    def __init__(self, bridge: ThreadBridge) -> None:
        self._bridge = bridge

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._bridge.push(event)

    def dispatch_batch(self, events: list[FileSystemEvent]) -> None:
        """Every event one wake-up of BatchingObserver found, in order (in its thread)."""
        self._bridge.push_all(fold_writes(events))


def fold_writes(events: list[FileSystemEvent]) -> list[FileSystemEvent]:
    """A batch without the writes, attribute changes and closes of files created earlier in it (``open(O_CREAT)``,
    ``write()``, ``close()``: one event, not three). Nothing is lost: the creation's metadata is read (lstat) after
    the whole batch was read, so it already says the written size, mtime and mode. A file created and not closed
    yet keeps its FileOpenedEvent (the batched emitter's mark: its creator holds it open, see fold_raw_writes) and,
    written, one write, so that the Settler holds it until its close and it is not hashed before. A file deleted or
    moved in between is a new file if created again, and a write after a move onto it is not folded."""
    created: set[bytes | str] = set()
    kept: list[FileSystemEvent | None] = []
    open_writes: dict[bytes | str, int] = {}  # a created file written and not closed yet -> its write's index
    opened: dict[bytes | str, int] = {}  # a created file not closed yet -> its FileOpenedEvent's index
    folded = False
    for event in events:
        kind = type(event)
        if kind is FileModifiedEvent or kind is FileAttribEvent:
            if event.src_path in created:
                if kind is FileModifiedEvent and event.src_path not in open_writes:
                    open_writes[event.src_path] = len(kept)
                    kept.append(event)
                continue
        elif kind is FileOpenedEvent:
            if event.src_path in created:
                opened[event.src_path] = len(kept)
        elif kind is FileClosedEvent:
            if event.src_path in created:
                for index in (open_writes.pop(event.src_path, None), opened.pop(event.src_path, None)):
                    if index is not None:
                        kept[index] = None  # closed in the same batch: its creation says it all
                        folded = True
                continue
        elif kind is FileCreatedEvent:
            created.add(event.src_path)
        elif created and kind is not DirCreatedEvent:
            if event.is_directory:  # a directory deleted or moved: what was created under it is another story
                created.clear()
                open_writes.clear()
                opened.clear()
            else:
                for path in (event.src_path, event.dest_path):
                    created.discard(path)
                    open_writes.pop(path, None)
                    opened.pop(path, None)
        kept.append(event)
    return [event for event in kept if event is not None] if folded else cast(list[FileSystemEvent], kept)


RawEvent = tuple[int, int, int, bytes]  # an inotify_event as read: (wd, mask, cookie, name), see inotify(7)
# The inotify bits read here and by the batched emitter (the kernel's ABI, <sys/inotify.h>).
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE, _IN_MOVED_FROM, _IN_MOVED_TO = 0x2, 0x4, 0x8, 0x40, 0x80
_IN_CREATE, _IN_DELETE, _IN_DELETE_SELF, _IN_Q_OVERFLOW, _IN_ISDIR = 0x100, 0x200, 0x400, 0x4000, 0x40000000
# The cookie of a creation made up by a walk of a new directory (the kernel's are 0): built synthetic, so that the
# view takes one it knows already (its real IN_CREATE came too) for nothing, not for a file replaced (a modified).
_WALKED = 0xFFFFFFFF


def fold_raw_writes(records: Iterable[RawEvent]) -> list[RawEvent]:
    """fold_writes on what one read() of the inotify descriptor gave, before watchdog builds an object of each:
    the writes, attribute changes and closes of a file created earlier in it are dropped (one write kept while
    it is not closed), and its creation's record says it was closed (IN_CLOSE_WRITE added to its mask; one
    without it is open yet: the batched emitter adds a FileOpenedEvent). A burst of new files is three kernel
    events each (IN_CREATE, IN_MODIFY, IN_CLOSE_WRITE); built and queued one by one, the reader thread fell
    behind the kernel's queue (16,384 events) in a 10,000-file burst and it overflowed: a rescan, T 0.6 → 1.1 s
    (tests/bench/cpu.py). A file is (wd, name); a directory's event, or one of the watch itself, ends every fold
    in progress (as fold_writes does)."""
    created: dict[tuple[int, bytes], int] = {}  # created in this read -> its creation's index in kept
    open_writes: dict[tuple[int, bytes], int] = {}  # created, written, not closed yet -> its write's index
    kept: list[RawEvent | None] = []
    folded = False
    for record in records:
        wd, mask, _, name = record
        key = (wd, name)
        if mask & _IN_ISDIR or not name or mask & _IN_Q_OVERFLOW:
            if not mask & _IN_CREATE:  # a directory (or the watch itself) deleted, moved, changed: start again
                created.clear()
                open_writes.clear()
        elif mask & _IN_CREATE:
            created[key] = len(kept)
        elif key in created:
            if mask & _IN_MODIFY:
                if key not in open_writes:
                    open_writes[key] = len(kept)
                    kept.append(record)
                continue
            if mask & _IN_ATTRIB:
                continue
            if mask & _IN_CLOSE_WRITE:
                index = open_writes.pop(key, None)
                if index is not None:
                    kept[index] = None
                    folded = True
                at = created[key]
                creation = cast(RawEvent, kept[at])
                kept[at] = (wd, creation[1] | _IN_CLOSE_WRITE, creation[2], name)
                continue
            del created[key]  # deleted or moved: a new file if created again
            open_writes.pop(key, None)
        kept.append(record)
    return [record for record in kept if record is not None] if folded else cast(list[RawEvent], kept)


_WRITTEN, _OPENED, _CLOSED = 0, 1, 2  # a file's last word in writes_and_closes


def writes_and_closes(
    events: list[FileSystemEvent],
) -> tuple[frozenset[str], frozenset[str], frozenset[str], bool]:
    """(written, closed, opened, lost): the files whose last word in ``events`` is a write (IN_MODIFY: open for
    writing, as far as they say), a close after writing (IN_CLOSE_WRITE), or their creation by open(2) (a
    FileOpenedEvent, see fold_raw_writes: its creator holds it open, written or not). A deletion ends
    what was said of a path; a move carries it to the new name. ``lost``: a KernelOverflowEvent is among them:
    what was open before it is taken as closed (its close may be among the events lost)."""
    last: dict[bytes | str, int] = {}  # path -> _WRITTEN, _OPENED or _CLOSED
    lost = False
    for event in events:
        kind = type(event)
        if kind is FileClosedEvent:
            last[event.src_path] = _CLOSED
        elif kind is FileModifiedEvent:
            last[event.src_path] = _WRITTEN
        elif kind is FileOpenedEvent:
            last[event.src_path] = _OPENED
        elif last and (kind is FileDeletedEvent or kind is FileMovedEvent):
            word = last.pop(event.src_path, None)
            last.pop(event.dest_path, None)
            if word is not None and kind is FileMovedEvent:
                last[event.dest_path] = word  # renamed while open: open under its new name
        elif last and (kind is DirDeletedEvent or kind is DirMovedEvent):  # what was said below it goes with it
            source = os.fsdecode(event.src_path)
            below = source + os.sep
            for path in [p for p in last if os.fsdecode(p).startswith(below)]:
                word = last.pop(path)
                if kind is DirMovedEvent:
                    last[os.fsdecode(event.dest_path) + os.fsdecode(path)[len(source) :]] = word
        elif kind is KernelOverflowEvent:
            lost = True
            last = dict.fromkeys(last, _CLOSED)
    if not last:
        return frozenset(), frozenset(), frozenset(), lost
    said: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    for path, word in last.items():
        said[word].add(os.fsdecode(path))
    return frozenset(said[_WRITTEN]), frozenset(said[_CLOSED]), frozenset(said[_OPENED]), lost


class KernelOverflowEvent(FileSystemEvent):
    """Where, among the events, the kernel's inotify queue overflowed (the batched emitter's mark; ``src_path``:
    the watch's root): what came before it was read before the overflow, and the close of a file open then may be
    among the events lost (see writes_and_closes). Never sent (change_from_event: not a kind of change)."""

    event_type = "overflow"
    is_directory = True  # for fold_writes: a fold in progress ends here


@dataclasses.dataclass(eq=False, slots=True)
class EventBatch:
    """Events handed from the batched emitter to its observer as one item of watchdog's event queue. Compared by
    identity: that queue drops an item equal to the one just before it."""

    events: list[FileSystemEvent]


def take_ready(delayed: Any) -> list[Any]:
    """Take, without waiting, every element at the head of a watchdog ``DelayedQueue`` that its ``get()`` would
    return now: those not delayed, or whose delay (a move's source waiting for its destination) has passed.
    Reads its privates (``_lock``, ``_queue`` of ``(element, inserted, delayed)``, ``delay``): checked at start by
    batching_unsupported. The caller is the queue's only consumer."""
    taken: list[Any] = []
    now = time.monotonic()
    with delayed._lock:
        items, delay = delayed._queue, delayed.delay
        while items:
            element, inserted, held = items[0]
            if held and inserted + delay > now:
                break
            items.popleft()
            taken.append(element)
    return taken


def batching_unsupported() -> str:
    """Why the batched emitter cannot run here ("": it can). Checks once, on throwaway objects, everything of
    watchdog's that is not public API and that BatchingInotifyEmitter / BatchingObserver rely on; a watchdog
    release that changes any of it falls back to the stock path (tests/test_batching.py fails loudly)."""
    if os.environ.get(STOCK_WATCHDOG_ENV, "") not in ("", "0"):
        return f"{STOCK_WATCHDOG_ENV}={os.environ[STOCK_WATCHDOG_ENV]}"
    if not sys.platform.startswith("linux"):
        return "sem inotify neste sistema"
    try:
        grouper = watchdog_grouper.InotifyMoveEventGrouper()
        delayed = grouper._queue
        sentinel = object()
        delayed.put(cast(Any, sentinel), delay=True)
        head = delayed._queue[0]
        with delayed._lock:
            pass
        if not (head[0] is sentinel and isinstance(head[1], float) and head[2] is True):
            return "DelayedQueue._queue mudou de formato"
        if not isinstance(delayed.delay, int | float) or take_ready(delayed) or len(delayed._queue) != 1:
            return "DelayedQueue.delay mudou"
        condition = getattr(delayed, "_not_empty", None)
        if not isinstance(condition, threading.Condition) or condition._lock is not delayed._lock:  # type: ignore[attr-defined]
            return "DelayedQueue._not_empty mudou"
        group = watchdog_inotify.InotifyWatchGroup
        group_fields = {f.name for f in dataclasses.fields(group)}
        for name in ("_inotify_fd", "_move_event_grouper", "_lock", "_active_callbacks_by_path", "event_mask"):
            if name not in group_fields:
                return f"InotifyWatchGroup.{name} não existe mais"
        for name in ("read_event", "on_event", "_build_event_source_path", "is_active", "_activate", "_add_callback"):
            if not hasattr(group, name):
                return f"InotifyWatchGroup.{name} não existe mais"
        for name in ("_add_all_callbacks", "_recursive_simulate", "on_queue_overflow"):
            if not callable(getattr(group, name, None)):
                return f"InotifyWatchGroup.{name} não existe mais"
        reader = watchdog_inotify_c.InotifyFD
        for name in ("_read_event_buffer", "_parse_event_buffer", "read_events", "handle_event", "should_keep_running"):
            if not callable(getattr(reader, name, None)):
                return f"InotifyFD.{name} não existe mais"
        if list(reader._parse_event_buffer(struct.pack("iIII", 1, 2, 3, 8) + b"ab\0\0\0\0\0\0")) != [(1, 2, 3, b"ab")]:
            return "InotifyFD._parse_event_buffer mudou"
        if not callable(getattr(watchdog_inotify_c, "inotify_add_watch", None)):
            return "inotify_c.inotify_add_watch não existe mais"
        observer = BaseObserver(watchdog_inotify.InotifyEmitter, inotify_fd=sentinel)  # never started
        observer.schedule(FileSystemEventHandler(), os.sep, recursive=True)
        (emitter,) = observer.emitters
        for name in ("_inotify", "_event_queue", "_inotify_fd", "get_event_mask_from_filter"):
            if not hasattr(emitter, name):
                return f"InotifyEmitter.{name} não existe mais"
        if "build_and_queue_event" not in watchdog_inotify.InotifyEmitter.queue_events.__code__.co_names:
            return "InotifyEmitter.queue_events não chama mais build_and_queue_event"
        if emitter._event_queue is not observer.event_queue:
            return "InotifyEmitter._event_queue mudou"
        if not hasattr(observer, "_lock") or not isinstance(getattr(observer, "_handlers", None), dict):
            return "BaseObserver._handlers não existe mais"
        if getattr(observer, "stop_event", None) is None:
            return "EventDispatcher.stop_event não existe mais"
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


if sys.platform.startswith("linux"):  # inotify: the stock observer elsewhere (and with STOCK_WATCHDOG_ENV)

    class WalkOnceWatchGroup(watchdog_inotify.InotifyWatchGroup):
        """watchdog's watch group (the reader thread's side), less a quadratic walk: the creation of a directory
        it already watches (the same inode: inotify_add_watch gives back the same descriptor) is passed on as
        is, without watching and listing its subtree again. A walk from its ancestor added that watch, then
        listed what the directory held; what came after, its own watch reports. Stock walks it again, which on a
        chain of N new directories is N walks of up to N levels, each re-watch warning with the whole table of
        watches in its text: minutes behind (issue 11, 3,000 levels created while running)."""

        def __post_init__(self) -> None:
            self._gathered: list[Any] = []  # plain events of the read being handled (the reader thread's)
            self._unwalked: set[bytes] = set()  # new directories gone when walked (see _directory_moved_in)
            super().__post_init__()

        def on_event(self, event: Any) -> None:
            mask = event.mask
            new_dir = mask & _IN_CREATE and mask & _IN_ISDIR and self.is_recursive
            if new_dir or not mask & (_IN_MOVED_FROM | _IN_MOVED_TO):
                # A plain event (most of a burst): what stock does for it, without its checks for moves; a new
                # directory: the same, unless it is not one we watch already.
                with self._lock:
                    if not self.is_active:
                        return
                    path = self._build_event_source_path(event)
                    if path is None:
                        return
                    if not new_dir or self._watching(path):
                        if self._unwalked and not new_dir:
                            event = self._unlisted(event, path)
                        self._gather(watchdog_grouper.PathedInotifyEvent(event, path))
                        return
            self.flush()  # what came before goes first
            if mask & _IN_MOVED_TO and mask & _IN_ISDIR:
                self._directory_moved_in(event)
            else:
                super().on_event(event)

        def _directory_moved_in(self, event: Any) -> None:
            """Stock's handling of a directory's IN_MOVED_TO, with what its walk makes up after the move, not
            before: ``mkdir x; echo > x/f; mv x y`` faster than this thread, the source had no watch yet and
            stock queued ``y/f`` before ``y``: the view made ``y`` up (a scan, then a move onto it). And a source
            watched, of which a directory (or itself) was gone when walked (renamed before it was listed: stock
            does not walk them again), has those walked under their new names: what they held before their watch
            would never be said (found by the next check only, minutes later)."""
            with self._lock:
                source = self._source_for_move(event.cookie)
                unwalked = self._unwalked_below(source) if source in self._active_callbacks_by_path else []
            self._deferred = []
            try:
                super().on_event(event)
            finally:
                deferred, self._deferred = self._deferred, None
            with self._lock:
                dest = self._build_event_source_path(event) if unwalked else None
                if source is not None and dest is not None:
                    self._unwalked.difference_update(unwalked)
                    for old in unwalked:
                        moved = dest + old[len(source) :]
                        self._add_all_callbacks(moved)  # as stock for a source not watched: what is below it too
                        deferred += self._recursive_simulate(moved)
                for sub_event in deferred:
                    path = self._build_event_source_path(sub_event)
                    if path is not None:
                        self._move_event_grouper.put_event(watchdog_grouper.PathedInotifyEvent(sub_event, path))

        def _unlisted(self, event: Any, path: bytes) -> Any:
            """A write or attribute change of a file in a directory gone when walked (or below one) is its
            creation: the walk that would have said it did not list it (made before the watch, written after;
            else the view took it for a lost creation, and a scan followed). Said again by the walk under the
            new name: one creation (see View.apply). A directory deleted is forgotten here."""
            mask = event.mask
            if mask & _IN_DELETE_SELF and path in self._unwalked:
                self._unwalked.discard(path)
                return event
            if not mask & (_IN_MODIFY | _IN_ATTRIB) or mask & (_IN_CREATE | _IN_ISDIR):
                return event
            parent = path
            while len(parent) > len(self.path):
                parent = os.path.dirname(parent)
                if parent in self._unwalked:
                    build: Any = watchdog_inotify_c.InotifyEvent
                    return build(event.wd, _IN_CREATE | (mask & _IN_CLOSE_WRITE), event.cookie, event.name)
            return event

        def _unwalked_below(self, source: bytes | None) -> list[bytes]:
            """The directories gone when walked that are ``source`` or below it, the outermost only (a walk of
            one lists what is below it)."""
            if source is None or not self._unwalked:
                return []
            below = source + os.sep.encode()
            found = sorted(p for p in self._unwalked if p == source or p.startswith(below))
            outer: list[bytes] = []
            for path in found:
                if not outer or not path.startswith(outer[-1] + os.sep.encode()):
                    outer.append(path)
            return outer

        _deferred: list[Any] | None = None  # the walk of a directory moved in, while stock handles its move

        def _gather(self, item: Any) -> None:
            """Queue ``item`` for the emitter with the rest of this read (FoldingInotifyFD flushes it), or now."""
            groups = getattr(self._inotify_fd, "gathered", None)
            if groups is None:
                self._move_event_grouper._queue.put(item)
                return
            if not self._gathered:
                groups.append(self)
            self._gathered.append(item)

        def flush(self) -> None:
            """Hand the emitter what was gathered, at once: one wake-up of its thread for a read, not one per
            event (each cost the GIL twice over; a 10,000-file burst, 10,000 of them)."""
            items, self._gathered = self._gathered, []
            if items:
                delayed, now = self._move_event_grouper._queue, time.monotonic()
                with delayed._lock:  # as DelayedQueue.put: (element, insert time, delay), then one notify
                    delayed._queue.extend((item, now, False) for item in items)
                    delayed._not_empty.notify()

        _counting: frozenset[str] = frozenset()  # during the first walk: see counting_devices

        def _activate(self) -> None:
            # The first walk (the whole tree, at start) skips the listing of directories without subdirectories
            # where their link count says so; later walks (a directory created live: small) list everything.
            try:
                with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
                    self._counting = counting_devices(file.read())
            except OSError:
                self._counting = frozenset()
            try:
                super()._activate()
            finally:
                self._counting = frozenset()

        def _add_all_callbacks(self, path: bytes) -> None:
            """Stock's walk (watch ``path``, then each directory below it, each watched before it is listed),
            without its os.walk: no list of every file's name, no islink per directory (the type comes from the
            listing); at start, a directory whose link count says it has no subdirectory is not listed (see
            counting_devices): 1,000 directories of 10⁶ files on tmpfs watched in 0.56 → 0.1 s."""
            if self.follow_symlink or not self.is_recursive:
                super()._add_all_callbacks(path)
                return
            is_dir = os.path.isdir(path)
            self._add_callback(path)
            stack = [path] if is_dir else []
            counting = self._counting
            while stack:
                top = stack.pop()
                if counting and no_subdirectories(top, counting):
                    continue
                try:
                    with os.scandir(top) as entries:
                        found = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
                except OSError:  # gone, or unreadable: as os.walk, nothing below it
                    continue
                for directory in found:
                    self._add_callback(directory)
                stack.extend(reversed(found))

        def on_queue_overflow(self) -> None:
            # As stock (its pending events dropped, its watches rebuilt), then a mark among the events, in the
            # place of the overflow: the loop learns there that closes may have been lost (not from the log
            # record, which reaches it before the events read just before the overflow).
            super().on_queue_overflow()
            build: Any = watchdog_inotify_c.InotifyEvent
            self._gather(watchdog_grouper.PathedInotifyEvent(build(-1, _IN_Q_OVERFLOW, 0, b""), self.path))

        def _recursive_simulate(self, src_path: bytes) -> list[Any]:
            # Stock makes up an IN_CREATE for each entry a new directory already holds when its walk lists it:
            # a file there was written before the watch, no close of it will come. Marked closed, as
            # fold_raw_writes marks a creation closed in its read (else it would wait for ever for its hash), and
            # made up (_WALKED: built synthetic).
            build: Any = watchdog_inotify_c.InotifyEvent
            made_up = [
                build(e.wd, e.mask if e.mask & _IN_ISDIR else e.mask | _IN_CLOSE_WRITE, _WALKED, e.name)
                for e in super()._recursive_simulate(src_path)
            ]
            if not os.path.isdir(src_path):  # renamed (or deleted) before or while it was listed: in part, maybe
                if len(self._unwalked) >= UNWALKED_LIMIT:
                    self._unwalked.clear()  # a scan finds what one of them held, if one is ever renamed
                self._unwalked.add(src_path)
                made_up += self._watched_unsaid(src_path, made_up)
            if self._deferred is None:
                return made_up
            self._deferred += made_up  # queued after the move (see _directory_moved_in)
            return []

        def _watched_unsaid(self, src_path: bytes, said: list[Any]) -> list[Any]:
            """An IN_CREATE for each directory below ``src_path`` that its walk watched but could not list (renamed
            meanwhile), parents first: the events in them, which their watches report, must not come before them."""
            below = src_path + os.sep.encode()
            known = {(e.wd, e.name) for e in said if e.mask & _IN_ISDIR}
            build: Any = watchdog_inotify_c.InotifyEvent
            unsaid = []
            for path in sorted(p for p in self._active_callbacks_by_path if p.startswith(below)):
                parent, _, name = path.rpartition(os.sep.encode())
                wd = self._active_callbacks_by_path.get(parent)
                if wd is not None and (wd, name) not in known:
                    unsaid.append(build(wd, _IN_CREATE | _IN_ISDIR, _WALKED, name))
            return unsaid

        def _add_callback(self, path: bytes) -> None:
            if not self._watching(path):  # stock registers it again, with a warning that prints the whole table
                super()._add_callback(path)

        def _watching(self, path: bytes) -> bool:
            """Whether ``path`` is the directory this group watches under that name (not a new one there)."""
            wd = self._active_callbacks_by_path.get(path)
            if wd is None:
                return False
            fd = getattr(self._inotify_fd, "_inotify_fd", None)  # the instance's descriptor; if renamed: as stock
            return isinstance(fd, int) and watchdog_inotify_c.inotify_add_watch(fd, path, self.event_mask) == wd

    class BatchingInotifyEmitter(watchdog_inotify.InotifyEmitter):
        """watchdog's inotify emitter, one wake-up at a time: the event stock queue_events read comes with every
        other event ready in its watch group's queue (take_ready); only the events the watch's filter wants are
        built (no DirModifiedEvent per child's change, no made-up moves of a moved directory's children: the
        Recorder drops both), and they go out as one EventBatch. Reading, watches, move pairing and a new
        directory's walk stay watchdog's."""

        _wants: frozenset[type[FileSystemEvent]] = frozenset()

        def on_thread_start(self) -> None:
            # As stock, with a watch group that does not walk again a directory it watches already.
            self._inotify = WalkOnceWatchGroup(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink,
            )
            wanted = self.watch.event_filter
            built = (*_CREATED, *_DELETED, *_MOVED, *_MODIFIED, *_ATTRIB, FileClosedEvent)
            self._wants = frozenset(
                kind for kind in built if wanted is None or any(issubclass(kind, w) for w in wanted)
            )

        def build_and_queue_event(self, event: Any, *, full_events: bool = False) -> None:
            """Called by stock queue_events (under its lock) with the event one wake-up read: queues it and every
            other one ready now as one EventBatch (generate_full_events: never, ours is the plain emitter)."""
            grouped = [event]
            if self._inotify is not None:
                grouped += take_ready(self._inotify._move_event_grouper._queue)
            events: list[FileSystemEvent] = []
            for each in grouped:
                self._build(each, events)
            if events:
                self._event_queue.put((EventBatch(events), self.watch))

        def _build(self, grouped: Any, out: list[FileSystemEvent]) -> None:
            """The events stock build_and_queue_event queues for one grouped inotify event (generate_full_events
            off), less those the filter drops, which are never built."""
            wants = self._wants
            if not isinstance(grouped, watchdog_grouper.PathedInotifyEvent):  # a move, both ends seen
                source, dest = grouped
                moved = _MOVED[source.ev.is_directory]
                if moved in wants:
                    out.append(moved(os.fsdecode(source.path), os.fsdecode(dest.path)))
                return
            event = grouped.ev
            mask, is_dir = event.mask, event.is_directory
            if mask & _IN_Q_OVERFLOW:  # our mark (on_queue_overflow), in its place among the events
                out.append(KernelOverflowEvent(os.fsdecode(grouped.path)))
                return
            kind: type[FileSystemEvent]
            if mask & _IN_MOVED_TO:
                kind = _CREATED[is_dir]
            elif mask & _IN_ATTRIB:
                kind = _ATTRIB[is_dir]
            elif mask & _IN_MODIFY:
                kind = _MODIFIED[is_dir]
            elif mask & (_IN_DELETE | _IN_MOVED_FROM):
                kind = _DELETED[is_dir]
            elif mask & _IN_CREATE:
                kind = _CREATED[is_dir]
            elif mask & _IN_CLOSE_WRITE and not is_dir:
                kind = FileClosedEvent
            elif mask & _IN_DELETE_SELF and os.fsdecode(grouped.path) == self.watch.path:
                if _DELETED[is_dir] in wants:
                    out.append(_DELETED[is_dir](self.watch.path))
                self.stop()
                return
            else:
                return  # open and close: not in the mask this filter asks for
            if kind in wants:
                path = os.fsdecode(grouped.path)
                out.append(kind(path) if event.cookie != _WALKED else kind(path, is_synthetic=True))
                if kind is FileCreatedEvent and not mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO):
                    # Made by open(2) and not closed in its read (fold_raw_writes): its creator may write it yet.
                    out.append(FileOpenedEvent(path))
                if mask & _IN_MOVED_TO and is_dir and self.watch.is_recursive:
                    out.extend(e for e in watchdog_events.generate_sub_created_events(path) if type(e) in wants)

    class FoldingInotifyFD(watchdog_inotify_c.InotifyFD):
        """watchdog's inotify reader (its thread reads the descriptor and hands each event to the watch groups),
        with what one read gave folded first (fold_raw_writes): the events of a new file are built once, not
        three times."""

        def __init__(self) -> None:
            super().__init__()
            self.gathered: list[WalkOnceWatchGroup] = []  # the groups holding events of this read (this thread's)

        def run(self) -> None:
            # As stock (read, then each event to its watch's groups), and then what the groups gathered goes to
            # their emitters at once; before an overflow is handled, what came before it.
            while self.should_keep_running():
                for event in self.read_events():
                    if event.mask & _IN_Q_OVERFLOW:
                        self.flush()
                    self.handle_event(event)
                self.flush()

        def flush(self) -> None:
            groups, self.gathered = self.gathered, []
            for group in groups:
                group.flush()

        def read_events(self, *, event_buffer_size: int = watchdog_inotify_c.DEFAULT_EVENT_BUFFER_SIZE) -> Any:
            read = self._read_event_buffer(event_buffer_size)
            records = fold_raw_writes(watchdog_inotify_c.InotifyFD._parse_event_buffer(read))
            # As stock: the kernel's global events (wd -1) are left out, but its overflow.
            event: Any = watchdog_inotify_c.InotifyEvent
            return [event(*record) for record in records if record[0] != -1 or record[1] & _IN_Q_OVERFLOW]

    class BatchingObserver(BaseObserver):
        """watchdog's inotify observer with BatchingInotifyEmitter: the same three threads (inotify reader,
        emitter, this dispatcher), but a wake-up takes every item queued and the handler's ``dispatch_batch``
        (a plain handler: ``dispatch`` per event) gets them in one call. For directory watches (ours)."""

        def __init__(self) -> None:
            self._reader = FoldingInotifyFD()  # as InotifyObserver: its own inotify instance
            self._reader.start()
            super().__init__(BatchingInotifyEmitter, inotify_fd=self._reader)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._reader.stop()
            self._reader.join()

        def dispatch_events(self, event_queue: Any) -> None:
            entry = event_queue.get(block=True)
            watch: Any = None
            events: list[FileSystemEvent] = []
            while True:
                if entry is self.stop_event:
                    event_queue.task_done()
                    break
                item, its_watch = entry
                if its_watch is not watch and events:
                    self._dispatch(watch, events)
                    events = []
                watch = its_watch
                if isinstance(item, EventBatch):
                    events.extend(item.events)
                else:
                    events.append(item)
                event_queue.task_done()
                if not event_queue.qsize():  # this thread alone takes from the queue: the get below never blocks
                    break
                entry = event_queue.get()
            if events:
                self._dispatch(watch, events)

        def _dispatch(self, watch: Any, events: list[FileSystemEvent]) -> None:
            with self._lock:  # as stock: a handler may be removed meanwhile
                for handler in list(self._handlers.get(watch, ())):
                    if handler in self._handlers.get(watch, ()):
                        batched = getattr(handler, "dispatch_batch", None)
                        if batched is not None:
                            batched(events)
                        else:
                            for event in events:
                                handler.dispatch(event)

    # What the emitter builds, by is_directory (the inotify bits it reads: see RawEvent).
    _CREATED = (watchdog_events.FileCreatedEvent, watchdog_events.DirCreatedEvent)
    _DELETED = (watchdog_events.FileDeletedEvent, watchdog_events.DirDeletedEvent)
    _MOVED = (watchdog_events.FileMovedEvent, watchdog_events.DirMovedEvent)
    _MODIFIED = (watchdog_events.FileModifiedEvent, watchdog_events.DirModifiedEvent)
    _ATTRIB = (watchdog_events.FileAttribEvent, watchdog_events.DirAttribEvent)


class TypedPollingObserver(PollingObserverVFS):
    """watchdog's polling observer on lstat (a symbolic link is an entry, never followed: README, "Links
    simbólicos") whose watches also let a directory's "modified" and "attrib" through: the only sign of a directory
    replaced by an entry of another type that got its inode (see retype_polled, which drops the others)."""

    def __init__(self, interval: float) -> None:
        super().__init__(os.lstat, os.scandir, polling_interval=interval)

    def schedule(self, event_handler: FileSystemEventHandler, path: Any, **options: Any) -> ObservedWatch:
        if options.get("event_filter") is not None:
            options["event_filter"] = [*options["event_filter"], DirModifiedEvent, DirAttribEvent]
        return super().schedule(event_handler, path, **options)


def new_inotify_observer(first: bool) -> BaseObserver:
    """BatchingObserver, or watchdog's stock Observer when batching_unsupported says why (a -v line, on the
    ``first`` start only)."""
    why = batching_unsupported()
    if not why:
        return BatchingObserver()
    if first:
        log.debug("emissor em lotes desligado (%s): usando o caminho padrão do watchdog, evento por evento.", why)
    return Observer()


class OverflowDetector(logging.Handler):
    """watchdog's only sign that the kernel dropped events is a log record: listen for it."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow()


@contextlib.contextmanager
def watchdog_alarms(on_overflow: Callable[[], None], on_thread_death: Callable[[str, str], None]) -> Iterator[None]:
    """Listen, for the duration, to watchdog's signs of lost events: a kernel overflow (a log record) and a
    thread that raised (watchdog #663; e.g. the shared inotify reader, which no emitter's is_alive shows), given
    as the exception's type and its cause (``RecursionError na thread Thread-1 do watchdog``). Both callbacks run
    in watchdog's threads."""

    def thread_died(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        log.debug("detalhes", exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]
        on_thread_death(args.exc_type.__name__, f"{args.exc_type.__name__} na thread {name} do watchdog")

    detector = OverflowDetector(on_overflow)
    logging.getLogger("watchdog").addHandler(detector)
    previous_hook, threading.excepthook = threading.excepthook, thread_died
    try:
        yield
    finally:
        logging.getLogger("watchdog").removeHandler(detector)
        threading.excepthook = previous_hook


def restart_delay(last: float, now: float, pace: float = RESTART_PACE) -> float:
    """Seconds to wait before a restart of the watcher, the last one having begun at ``last`` (monotonic)."""
    return min(pace, max(0.0, last + pace - now))


RootFinding = Literal["ok", "gone", "replaced", "reappeared", "stopped", "readable"]


class Watcher:
    """The watchdog observer on the root: its start, stop and health; the root's identity; unreadable directories.

    It reports what it finds (``inspect``) and says it on the console; it never
    queues a change: the supervisor does that.
    """

    def __init__(self, root: str, handler: FileSystemEventHandler, polling: float = POLLING_INTERVAL) -> None:
        self.root = root
        self._handler = handler
        self.polling = polling  # seconds between walks (PollingObserverVFS); 0: inotify
        self._observer: BaseObserver | None = None
        self._died = ""  # why a watchdog thread died since the last start ("": none did)
        self._failing = ""  # why the last restart failed ("": it did not)
        self._deaths: dict[str, float] = {}  # each type of exception already said, and when
        self._restarted = -math.inf  # when the last restart began (monotonic seconds)
        self._identity: tuple[int, int] | None = None  # (device, inode) of the directory being watched
        self._missing = False  # the root's absence has been reported
        self._unreadable: set[str] = set()

    def start(self) -> None:
        """Start the observer; FatalError when nothing can be watched (an inotify limit names its fix)."""
        try:
            observer = self._new_observer()
            observer.schedule(self._handler, self.root, recursive=True, event_filter=WATCHED_EVENTS)
            observer.start()
            self._identity = root_identity(self.root)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE) and "inotify" in str(exc):
                kind: Literal["watches", "instances"] = "watches" if exc.errno == errno.ENOSPC else "instances"
                what = "limite de inotify" if kind == "watches" else "limite de instâncias de inotify"
                text = describe_inotify_limit(kind, *inotify_limit(kind))
                raise FatalError(
                    f"{what} atingido {text.format(f'nada em {escape(self.root)} pode ser monitorado')}"
                ) from None
            raise FatalError(f"não foi possível monitorar {escape(self.root)}: {describe_os_error(exc)}") from exc
        self._died = ""
        self._observer = observer

    def _new_observer(self) -> BaseObserver:
        if self.polling:
            return TypedPollingObserver(self.polling)
        return new_inotify_observer(first=self._identity is None)

    def died(self, kind: str, cause: str, wake: Callable[[], None]) -> None:
        """A watchdog thread died (in the loop) of an exception of type ``kind``: said once per type a minute (the
        thread's name changes at each restart); the next inspect restarts it."""
        now = time.monotonic()
        if now - self._deaths.get(kind, -math.inf) > 60:
            log.warning("o monitoramento ao vivo parou (%s); reiniciando com uma varredura.", cause)
        self._deaths[kind] = now
        self._died = cause
        wake()

    async def stop(self, wait: float | None = None) -> None:
        """Stop the observer; wait for its threads at most ``wait`` seconds (None: until they end). At exit they
        are not waited for long: watchdog's reader may be walking a deep tree it was told of (its threads are
        daemons)."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, wait)
            await asyncio.sleep(0)  # run the last drain the observer scheduled

    async def restart(self) -> bool:
        """Stop and start the observer again, RESTART_PACE seconds after the last restart at the earliest."""
        await asyncio.sleep(restart_delay(self._restarted, time.monotonic()))
        self._restarted = time.monotonic()
        await self.stop()
        try:
            self.start()
        except FatalError as exc:
            if str(exc) != self._failing:  # said once, not at each attempt
                log.warning("%s; nova tentativa em instantes.", exc)
            self._failing = str(exc)
            return False
        self._failing = ""
        return True

    def alive(self) -> bool:
        observer = self._observer
        alive = observer is not None and observer.is_alive() and all(e.is_alive() for e in observer.emitters)
        return alive and not self._died

    def drop_stale_watches(self, paths: list[str]) -> None:
        """Directories that left ``paths`` (moved out of the tree, or deleted): their watches, if any still
        follow them, are dropped (see drop_stale_watches)."""
        observer = self._observer
        if observer is not None and not self.polling:
            for emitter in list(observer.emitters):
                if drop_stale_watches(getattr(emitter, "_inotify", None), paths):
                    log.debug("vigias de diretórios que saíram da árvore removidas: %s", ", ".join(map(escape, paths)))

    def inspect(self, root_in_view: bool) -> RootFinding:
        """Whether the root vanished, came back or was replaced, the watcher died, or a directory became readable."""
        identity = root_identity(self.root)
        if identity is None:
            if not self._missing:
                self._missing = True
                log.warning(
                    "O diretório monitorado não existe mais: %s; aguardando ele reaparecer...",
                    escape(self.root),
                    extra=NO_PREFIX,
                )
            return "gone"
        # One finding, one line: a replaced root is not also said to have reappeared.
        if root_in_view and identity != self._identity:
            # Renamed away and replaced by a new directory: inotify still follows the old one.
            self._missing = False
            log.warning(
                "O diretório monitorado foi substituído por outro: %s; recomeçando.", escape(self.root), extra=NO_PREFIX
            )
            return "replaced"
        if not root_in_view:
            self._missing = False
            log.info("O diretório %s reapareceu; retomando o monitoramento.", escape(self.root))
            return "reappeared"
        if not self.alive():
            if not self._died and not self._failing:  # a death with its cause, a failed restart: said already
                log.warning("o monitoramento parou; reiniciando com uma varredura.")
            return "stopped"
        return "readable" if self._became_readable() else "ok"

    def _became_readable(self) -> bool:
        readable = {d for d in self._unreadable if os.access(d, os.R_OK | os.X_OK)}
        for path in readable:
            log.info("O diretório %s agora pode ser lido; passa a ser monitorado.", escape(path))
        self._unreadable -= readable
        return bool(readable)

    def note_unreadable(self, paths: list[str]) -> None:
        """Directories a scan could not read: each is reported once, and watched again once it can be read."""
        for path in sorted(set(paths) - self._unreadable):
            log.warning("sem permissão para ler %s; esse diretório não é monitorado.", escape(path))
        self._unreadable.update(paths)

    def barred(self, path: str) -> bool:
        """Whether ``path`` cannot have a watch for want of permission, not of inotify watches: it, or a directory
        above it, could not be read (watchdog never walked into it), or it cannot be read now."""
        if not os.access(path, os.R_OK | os.X_OK):
            return True
        parent = path
        while parent != self.root and parent.startswith(self.root):
            if parent in self._unreadable:
                return True
            parent = os.path.dirname(parent)
        return False


class Outbox:
    """Numbered events waiting to be sent, then in flight until the server acknowledges them.

    Owns the sequence numbers (``next_seq`` to give, ``acked_seq`` acknowledged) and
    folds repeated writes: a "modified" of a path whose created/modified event still
    waits to be sent adds nothing (one write() = one event), so it is dropped.
    """

    def __init__(self, limit: int = MAX_QUEUED_EVENTS) -> None:
        self.limit = limit  # events waiting to be sent at most
        self.next_seq = 1
        self.acked_seq = 0
        self.in_flight: collections.deque[Outgoing] = collections.deque()
        self.progress = asyncio.Event()  # set whenever an ack arrives
        self._waiting: collections.deque[Outgoing] = collections.deque()
        self._added = asyncio.Event()  # set whenever an event is queued
        # path -> its waiting created/modified event, the change and ts it says
        self._touched: dict[str, tuple[Outgoing, Change, str]] = {}

    def waiting(self) -> int:
        """Events queued but not sent yet."""
        return len(self._waiting)

    def full(self) -> bool:
        return len(self._waiting) >= self.limit

    def room(self) -> int:
        return self.limit - len(self._waiting)

    def pending(self) -> int:
        """Events the server has not acknowledged yet: waiting or in flight."""
        return len(self.in_flight) + len(self._waiting)

    def add(self, change: Change, ts: str, meta: Metadata | None = None) -> bool:
        """Queue a change (``meta``: what the path is now); False when it was folded into one already queued,
        which then says the newer metadata."""
        folded = self._touched.get(change.path) if change.kind == "modified" else None
        if folded is not None:
            item, queued, queued_ts = folded
            if queued.attrib and not change.attrib:
                queued = dataclasses.replace(queued, attrib=False)  # the content changed after all
            item.data = encode_event(item.seq, queued, queued_ts, meta)
            self._touched[change.path] = (item, queued, queued_ts)
            return False
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        item = Outgoing(seq, change.path, encode_event(seq, change, ts, meta))
        if change.kind in ("created", "modified"):
            self._touched[change.path] = (item, change, ts)
        else:
            self._touched.pop(change.path, None)
            if change.dest_path is not None:
                self._touched.pop(change.dest_path, None)
        self._waiting.append(item)
        self._added.set()
        return True

    async def next_batch(self) -> list[Outgoing]:
        """Wait for queued events and room in the window; move a batch into flight."""
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            await self.next_ack()
        await self.queued()
        batch = next(split_batches(list(itertools.islice(self._waiting, BATCH_MAX_EVENTS))))
        for item in batch:
            self._waiting.popleft()
            touched = self._touched.get(item.path)
            if touched is not None and touched[0] is item:
                del self._touched[item.path]
        self.in_flight.extend(batch)
        return batch

    async def queued(self) -> None:
        """Return once an event waits to be sent."""
        while not self._waiting:
            self._added.clear()
            await self._added.wait()

    async def next_ack(self) -> None:
        """Return when the next ack arrives."""
        self.progress.clear()
        await self.progress.wait()

    def ack(self, seq: int) -> None:
        """The server handled every event up to ``seq``."""
        while self.in_flight and self.in_flight[0].seq <= seq:
            self.in_flight.popleft()
        self.acked_seq = max(self.acked_seq, seq)
        self.progress.set()

    def continue_after(self, seq: int) -> None:
        """Number every event not sent yet after ``seq`` (never lower than now): a restarted client continues
        where its identity stopped (the state file's last seq, then the welcome's ack), so no event it
        sends reuses a seq the server stored, which it would drop as already seen."""
        first = self._waiting[0].seq if self._waiting else self.next_seq
        shift = seq + 1 - first
        if shift <= 0:
            return
        for item in self._waiting:  # nothing in flight: the server acknowledged everything up to seq
            item.seq += shift
            item.data = renumber(item.data, item.seq)
        self.next_seq += shift

    def restore(self, acked: int, pending: Iterable[tuple[int, str]]) -> None:
        """Take back, before anything else is queued, the events a previous run sent without a confirmation
        (the state file's ``pending``): in flight under their own seqs, so they go out first on the next
        connection and the server drops those it already has."""
        assert not self.in_flight and not self._waiting
        for seq, data in pending:
            path = json.loads(data).get("path", "")
            self.in_flight.append(Outgoing(seq, path if isinstance(path, str) else "", data))
            self.next_seq = seq + 1
        self.acked_seq = max(self.acked_seq, acked)

    def unconfirmed(self) -> tuple[tuple[int, str], ...]:
        """Every event the server has not confirmed, in flight or waiting, as (seq, JSON text), in seq order."""
        return tuple((item.seq, item.data) for item in itertools.chain(self.in_flight, self._waiting))

    def unacked_batches(self) -> list[list[Outgoing]]:
        """What was in flight when a connection dropped, in batches, to send again."""
        return list(split_batches(self.in_flight))


class Console:
    """The client's own line per change on stdout. Optional: -q hides it, and a standard output that was closed
    (``monitor_cliente.py | head``) ends it with one warning while the changes keep being sent."""

    def __init__(self, quiet: bool, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.shown = not quiet

    def changes(self, changes: list[Change], when: datetime.datetime) -> None:
        if not self.shown:
            return
        stream = self._stream or sys.stdout  # looked up when used: tests and embedders may swap sys.stdout
        if stream is None:  # started with no standard output at all (``>&-``)
            self.shown = False
            return
        try:
            stream.write(format_changes(changes, when))
            stream.flush()
        except OSError as exc:
            self.shown = False
            # Python flushes stdout once more at exit and would complain: what is left goes to /dev/null.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            if isinstance(exc, BrokenPipeError):
                why = "a saída padrão foi fechada"
            else:
                why = f"não foi possível escrever na saída padrão ({describe_os_error(exc)})"
            log.warning("%s; as mudanças deixam de aparecer aqui, mas continuam sendo enviadas.", why)


def sha256_of(path: str, st: os.stat_result) -> str | None:
    """The SHA-256 (hex) of a regular file read in chunks (meant for a worker thread); None when it is not the file
    ``st`` (its lstat) describes any more -- replaced, or written while it was read -- or cannot be read."""
    # O_NONBLOCK: a FIFO put in the file's place would otherwise block the open until a writer comes.
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | extra)) as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            digest = hashlib.file_digest(file, "sha256").hexdigest()
            now = os.fstat(file.fileno())
    except OSError:
        return None
    same = (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    return digest if same else None


def _missing(path: str) -> bool:
    """Whether nothing is at ``path`` (ENOENT, ENOTDIR); an unreadable parent (EACCES) is not that."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        pass
    return False


def _hash_all(jobs: list[tuple[str, os.stat_result]]) -> list[str | None]:
    return [sha256_of(path, st) for path, st in jobs]


class Describer:
    """Settled changes -> (change, metadata), in order: one lstat per path in the loop, and with ``hash_limit``
    the SHA-256 of regular files up to that many bytes, computed in a worker thread. Changes wait behind a batch
    being hashed, so they are queued in the order they were recorded. Owns that backlog."""

    def __init__(
        self,
        view: View,
        deliver: Callable[[list[tuple[Change, Metadata]]], None],
        hash_limit: int | None = None,
        open_files: Callable[[], frozenset[str]] = frozenset,
        gone: Callable[[dict[str, int]], None] = lambda files: None,
    ) -> None:
        self._open_files = open_files  # files open for writing now (the Settler's): a link to one is not complete
        self._gone = gone  # told of the files gone before they were hashed (--hash): path -> its describe() mark
        self._view = view  # told the type of a symlink or special file (see View.note)
        self._deliver = deliver
        self._hash_limit = hash_limit
        self._backlog: collections.deque[
            tuple[list[tuple[Change, Metadata]], list[os.stat_result | None], Sequence[int]]
        ] = collections.deque()
        self._worker: asyncio.Task[None] | None = None

    @property
    def hashing(self) -> bool:
        return self._hash_limit is not None

    def busy(self) -> bool:
        return bool(self._backlog)

    def describe(
        self,
        changes: list[Change],
        busy: frozenset[str],
        opened: frozenset[str] = frozenset(),
        may_wait: Callable[[str], bool] | None = None,
        marks: Sequence[int] = (),
    ) -> tuple[frozenset[str], list[Change]]:
        """Describe ``changes`` and deliver them (now, or once hashed); ``busy``: paths still being written, not
        hashed; ``opened``: those of them busy only because their creator may hold them open -- one with another
        name (st_nlink > 1: made by link(2), complete) is hashed. ``may_wait(path)``: whether a live creation
        whose path is gone (ENOENT) may wait for the event saying where it went (see SettlePipeline.flush).
        Returns the paths left unhashed for being busy, and the creations left to wait (not delivered). With a
        hash limit, a file created, modified or moved here that is gone before its hash is read (its directory
        renamed, perhaps) goes to ``gone({path: mark})``, ``mark`` its last change's in ``marks`` (parallel to
        ``changes``; 0 without), once they are delivered."""
        described: list[tuple[Change, Metadata]] = []
        hashed: list[os.stat_result | None] = []
        where: list[int] = []
        unhashed: set[str] = set()
        waiting: list[Change] = []
        gone: dict[str, int] = {}
        for index, change in enumerate(changes):
            meta, st = self._metadata(change)
            if st is None and may_wait is not None and change.kind == "created" and change.origin == "live":
                if _missing(change.path) and may_wait(change.path):  # may_wait notes when it began to wait
                    waiting.append(change)
                    continue
            mark = marks[index] if marks else 0
            if st is None and self._hash_limit is not None and change.kind != "deleted" and not change.is_dir:
                if _missing(change.dest_path or change.path):
                    gone[change.dest_path or change.path] = mark
            if change.prior is not None and st is not None and file_info(st) == change.prior:
                continue  # a file that left the tree and came back as it was (see net_effect)
            was = change.replaced if change.kind == "modified" else None
            if was is not None and st is not None and meta.type != was:
                # A save that put another type at the path (a link where a file was): not a "modified".
                described.append(
                    (Change("deleted", change.path, False, origin=change.origin, file_type=was), Metadata(was))
                )
                hashed.append(None)
                where.append(mark)
                change = dataclasses.replace(change, kind="created", attrib=False, replaced=None)
            described.append((change.typed(meta.type), meta))
            limit, path = self._hash_limit, change.dest_path or change.path
            worth = st is not None and limit is not None and meta.type == "file" and st.st_size <= limit
            if worth and path in busy and not (path in opened and st is not None and self._complete_link(path, st)):
                unhashed.add(path)  # never a file still being written
                worth = False
            hashed.append(st if worth else None)
            where.append(mark)
        if not self._backlog and not any(hashed):
            self._deliver(described)
        else:
            self._backlog.append((described, hashed, where))
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._hash_backlog())
        if gone:  # after them: what follows them up comes after them
            self._gone(gone)
        return frozenset(unhashed), waiting

    async def drained(self) -> None:
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def _hash_backlog(self) -> None:
        while self._backlog:
            described, hashed, where = self._backlog[0]
            jobs = [((c.dest_path or c.path), st) for (c, _), st in zip(described, hashed, strict=True) if st]
            digests = await asyncio.to_thread(_hash_all, jobs)
            marks = [mark for st, mark in zip(hashed, where, strict=True) if st]
            found = iter(digests)
            out = [
                (c, dataclasses.replace(m, sha256=next(found)) if st else m)
                for (c, m), st in zip(described, hashed, strict=True)
            ]
            self._backlog.popleft()
            self._deliver(out)
            gone = {
                path: mark
                for (path, _), digest, mark in zip(jobs, digests, marks, strict=True)
                if digest is None and _missing(path)
            }
            if gone:
                self._gone(gone)

    def _complete_link(self, path: str, st: os.stat_result) -> bool:
        """Whether a file created and not closed is another name of a file no writer here holds (link(2): ``ln``,
        ``cp -l``): st_nlink > 1, and no other file open for writing is that inode (its writes would say only its
        own name). A writer outside the tree cannot be known."""
        if st.st_nlink < 2:
            return False
        for other in self._open_files():
            if other != path:
                with contextlib.suppress(OSError):
                    if os.path.samestat(os.lstat(other), st):
                        return False
        return True

    def _metadata(self, change: Change) -> tuple[Metadata, os.stat_result | None]:
        """What the path of a change is now: one lstat (none for a deletion: the view said what it was)."""
        known: FileType = change.file_type or ("dir" if change.is_dir else "file")
        if change.kind == "deleted":
            return Metadata(known), None
        path = change.dest_path or change.path
        try:
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        except OSError:
            return Metadata(known), None  # gone already: its deletion follows
        meta = metadata_of(st, target)
        if (meta.type == "dir") != change.is_dir:
            return Metadata(known), None  # replaced by another kind since: its events follow
        if meta.type != "dir":
            # So that its deletion says what it was, and a scan (or its return to the tree) what changed.
            self._view.note(path, file_info(st))
        return meta, st


class GoneFiles:
    """Files let out (--hash) that were gone before their hash was read -- ``mkdir x; echo > x/f; mv x y`` faster
    than the loop, or a scan's flush after it -- followed through the moves and deletions let out after them to
    where they are now; pure. Owns the log of the last VANISHED_ENDS moves and deletions, numbered in order."""

    def __init__(self) -> None:
        self._ends: collections.deque[tuple[str, str | None, bool]] = collections.deque(maxlen=VANISHED_ENDS)
        self._ended = 0  # moves and deletions logged so far (the next one's number); _ends holds the last ones
        self._gone: dict[str, int] = {}  # such a file, where it was last seen -> the number of the next end to apply

    def log(self, changes: list[Change]) -> list[int]:
        """Log the moves and deletions among ``changes`` (let out, in order); for each change, the number of the
        first end after it (its ``mark``)."""
        marks: list[int] = []
        for change in changes:
            marks.append(self._ended)
            if change.kind == "deleted" or change.dest_path is not None:
                self._ends.append((change.path, change.dest_path, change.is_dir))
                self._ended += 1
        return marks

    def add(self, path: str, mark: int) -> None:
        """``path`` was gone before its hash was read; ``mark``: its change's (see log)."""
        self._gone[path] = mark

    def moved(self) -> list[str]:
        """The files the ends logged since took elsewhere: their paths now (forgotten here). One deleted, or
        older than the ends kept, is forgotten too (a check will tell)."""
        if not self._gone:
            return []
        first = self._ended - len(self._ends)
        moved: list[str] = []
        for path, mark in list(self._gone.items()):
            del self._gone[path]
            now = self._where(path, mark - first) if mark >= first else None
            if now == path:
                self._gone[path] = self._ended  # its move is still to come
            elif now is not None:
                moved.append(now)
        return moved

    def _where(self, path: str, start: int) -> str | None:
        """Where the ends kept, from the ``start``-th on, took ``path`` (None: deleted, or moved out)."""
        for source, dest, is_dir in itertools.islice(self._ends, start, None):
            if path == source or (is_dir and path.startswith(source + os.sep)):
                if dest is None:
                    return None
                path = dest + path[len(source) :]
        return path


class SettlePipeline:
    """Changes applied to the view, on their way to the outbox: held by the Settler until quiet (a timer of the
    loop lets them out), then described (Describer: lstat, SHA-256 in order) and handed to ``deliver``.

    Owns the Settler, its timer, and the count of changes let out so far (``released``: has the view changed
    since the state file was written?). Wakes the supervisor when a flush lets changes out.
    """

    def __init__(
        self,
        view: View,
        deliver: Callable[[list[tuple[Change, Metadata]]], None],
        wake: Callable[[], None],
        settler: Settler | None = None,
        hash_limit: int | None = None,
    ) -> None:
        self._view = view  # files let out while still written get one more modified (see _on_timer)
        self._settler = settler if settler is not None else Settler(0.0)
        self._describer = Describer(
            view, deliver, hash_limit, open_files=self._settler.open_files, gone=self._gone_files
        )
        self._waiting: dict[str, float] = {}  # a live creation gone when let out -> when it first waited
        self._wake = wake  # wakes the supervisor
        self._timer: asyncio.TimerHandle | None = None
        self._unhashed: set[str] = set()  # let out while open for writing (--hash): one more modified at its close
        self._following: set[str] = set()  # held again for their hash only (see follow_up)
        self._gone = GoneFiles()  # --hash: followed up where their moves took them
        self._releasing = False  # in release(): the files gone are followed at its end
        self.released = 0

    def __len__(self) -> int:
        """How many changes the Settler holds."""
        return len(self._settler)

    def holding(self) -> bool:
        """Whether changes are held (settling, or hashed): applied to the view, not queued yet."""
        return len(self._settler) > 0 or self._describer.busy()

    async def drained(self) -> None:
        """Return once every change let out is delivered (their hashes computed)."""
        await self._describer.drained()

    def hold(
        self,
        changes: list[Change],
        written: frozenset[str] = frozenset(),
        closed: frozenset[str] = frozenset(),
        opened: frozenset[str] = frozenset(),
        lost: bool = False,
    ) -> None:
        """Hold changes just applied to the view until they settle (what the Settler lets out at once goes on);
        ``written``, ``closed`` and ``opened``: files open for writing, closed after writing, and created by
        open(2), as their events said; ``lost``: the kernel dropped events among them (see writes_and_closes):
        every file open before is taken as closed -- hashed when let out, and one let out without a hash gets it
        now (one more modified) -- but for what the events after the overflow say is open."""
        loop = asyncio.get_running_loop()
        if lost:
            closed = closed | (self._settler.open_files() - written - opened)
        if self._unhashed:  # another file at the path now (or none): its close is not this one's
            for change in changes:
                if change.kind != "modified":
                    if change.dest_path is not None:
                        self._unhashed.discard(change.dest_path)
                        carry(self._unhashed, change.path, change.dest_path, change.is_dir)  # the same file
                    else:
                        self._unhashed.discard(change.path)
        out = self._settler.add(changes, loop.time(), written, closed, opened)
        self.release(out, self._settler.unfinished(c.dest_path or c.path for c in out) if out else frozenset())
        done = closed & self._unhashed
        if done:  # let out while written, so without a hash: one more modified now that it is complete
            self._unhashed -= done
            done -= {c.dest_path or c.path for c in out}  # let out just now, with its hash (settle 0)
            again = [Change("modified", path, False) for path in sorted(done) if self._view.has(path, "file")]
            self.release(self._settler.add([out for change in again for out in self._view.apply(change)], loop.time()))
        deadline = self._settler.deadline()
        if self._timer is not None and deadline is not None and deadline < self._timer.when():
            self._timer.cancel()  # a close ends the hold of a file being written
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        if self._settler.due(loop.time()):
            self.follow_up(self.flush(wait=True))
        deadline = self._settler.deadline()
        if deadline is not None and self._timer is None:
            self._timer = loop.call_at(deadline, self._on_timer)

    def flush(self, wait: bool = False) -> frozenset[str]:
        """Let out whatever is held now (before what a scan found, and when stopping). With ``wait`` (the window
        ended), a live creation whose path is gone already is held once more, up to ``max_hold`` in all: the
        event saying where it went is on its way (watchdog holds an IN_MOVED_FROM 0.5 s for its pair, which never
        comes when the destination is a directory too new to have a watch; a loop behind its events). Returns
        the files let out without a hash for having changed in the last window (--polling): see follow_up; a
        follow-up itself still in its window is not let out but returned with them (it would say nothing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not len(self._settler):
            return frozenset()
        now = asyncio.get_running_loop().time()
        changes, busy = self._settler.take(now)
        again: frozenset[str] = frozenset()
        if self._following:  # a follow-up without its hash would be one more modified, and noise
            following, self._following = self._following, set()
            again = frozenset(
                c.path for c in changes if c.kind == "modified" and c.path in following and c.path in busy
            )
            if again:
                changes = [c for c in changes if c.kind != "modified" or c.path not in again]
        if self._waiting:  # forget what waited long ago (let out since, or its event came)
            self._waiting = {p: t for p, t in self._waiting.items() if now - t < 2 * self._settler.max_hold}

        def may_wait(path: str) -> bool:
            # Only while the view still holds it: else its move or deletion is in this release, after it (net_effect
            # keeps apart runs cut by a scan's change), and it goes out first, in its place.
            return self._view.has(path) and now - self._waiting.setdefault(path, now) < self._settler.max_hold

        waiting, early = self.release(changes, busy, may_wait if wait else None)
        if waiting:
            self._settler.add(waiting, now)
        self._wake()  # the supervisor may checkpoint now
        return early | again

    def _gone_files(self, files: dict[str, int]) -> None:
        """The Describer's: files let out were gone before their hash was read (see GoneFiles). Followed now when
        their hashes were read late; when described, at the end of their release (see release)."""
        for path, mark in files.items():
            self._gone.add(path, mark)
        if not self._releasing:
            self._follow_gone()

    def _follow_gone(self, described: Iterable[str] = ()) -> None:
        """One modified, with its hash, for each file gone that the moves let out since took elsewhere: now, or at
        its close when it is still open (its write, read after the move, is said under its new name: it brings
        the hash); none for one just ``described`` (the same write, said so)."""
        moved = self._gone.moved()
        if not moved:
            return
        moved = [path for path in moved if os.path.lexists(path)]
        still_open = self._settler.unfinished(moved)
        self._unhashed |= still_open
        if described:
            still_open |= set(described)
        now = [path for path in moved if path not in still_open]
        self._unhashed.difference_update(now)  # its hash comes now, not once more at its close
        self.follow_up(now)

    def follow_up(self, paths: Iterable[str]) -> None:
        """Files let out while still changing (--polling: changed in the last window), so without a hash: one more
        modified once they are quiet (those still files of the view now: a scan's changes, released meanwhile, may
        have taken some out)."""
        again = [Change("modified", path, False) for path in sorted(paths) if self._view.has(path, "file")]
        if again:
            self._following.update(change.path for change in again)
            self.hold([out for change in again for out in self._view.apply(change)])

    def release(
        self,
        changes: list[Change],
        busy: frozenset[str] = frozenset(),
        may_wait: Callable[[str], bool] | None = None,
    ) -> tuple[list[Change], frozenset[str]]:
        """Describe and deliver changes already applied to the view (and settled) (``busy``: paths still being
        written, not worth hashing). Those of them open for writing (or created and not closed) are hashed at
        their close: one more modified then. Returns the creations left to wait (see flush), and the files let
        out without a hash for having changed in the last window alone (--polling: see follow_up)."""
        if not changes:
            return [], frozenset()
        opened = self._settler.opened
        marks = self._gone.log(changes) if self._describer.hashing else ()
        self._releasing = True
        try:
            unhashed, waiting = self._describer.describe(
                changes, busy, busy & opened if busy and opened else frozenset(), may_wait, marks
            )
        finally:
            self._releasing = False
        self.released += len(changes) - len(waiting)
        if marks:
            self._follow_gone(c.dest_path or c.path for c in changes if c.kind != "deleted")
        if not unhashed:
            return waiting, frozenset()
        unfinished = self._settler.unfinished(unhashed)
        self._unhashed |= unfinished
        return waiting, unhashed - unfinished


class PollGather:
    """One poll's events together (--polling): watchdog's PollingEmitter queues a poll's file events before its
    directory events, and a burst of the ThreadBridge can end between them, so that a moved directory's children
    came apart from its move (shown twice, with made-up parents). Events wait until none came for POLL_GATHER
    seconds, then go to ``consume`` (after retype_polled, with ``was``: what the View holds at a path, and
    fold_polled_moves) at once. Owns what waits, and its timer."""

    def __init__(
        self,
        consume: Callable[[list[FileSystemEvent]], None],
        was: Callable[[str], FileType | None] = lambda path: None,
    ) -> None:
        self._consume = consume
        self._was = was
        self._waiting: list[FileSystemEvent] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, events: list[FileSystemEvent]) -> None:
        """In the loop: a burst of the ThreadBridge."""
        self._waiting += events
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(POLL_GATHER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        events, self._waiting = self._waiting, []
        if events:
            self._consume(fold_polled_moves(retype_polled(events, self._was)))


class GhostFilter:
    """Which events come from a directory that left the tree (moved out, or replaced): watchdog keeps following
    it under its old path until its watch is dropped (Watcher.drop_stale_watches), and what its reader had
    already queued comes anyway. Owns the directories that left, for DEPARTED_HOLD seconds after."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._departed: dict[str, float] = {}  # a directory that left this path (a live deletion) -> when

    def departed(self, changes: list[Change], now: float) -> list[str]:
        """Note the directories that left the tree in ``changes`` (what the View returned); their paths."""
        paths = [c.path for c in changes if c.kind == "deleted" and c.is_dir and c.origin == "live"]
        if self._departed:
            self._departed = {p: when for p, when in self._departed.items() if now - when < DEPARTED_HOLD}
        for path in paths:
            self._departed[path] = now
        return paths

    def _under_departed(self, path: str) -> bool:
        while path != self._root and len(path) > 1:
            path = os.path.dirname(path)
            if path in self._departed:
                return True
        return False

    def ghost(self, change: Change, view: View, now: float) -> bool:
        """Whether a created or modified is a ghost. Under a directory that just left: when the View has no
        directory there (one made again there is announced, its content with it) or the path is not on disk (its
        deletion would follow anyway).
        Elsewhere, under a directory the view knows is gone, when the disk agrees; anything else under an
        unknown directory is real (the view creates its parents)."""
        if change.kind not in ("created", "modified"):
            return False  # a deletion of an unknown path is dropped by the view; a move says where its source went
        parent = change.path[: change.path.rfind(os.sep)] or os.sep  # os.path.dirname of an absolute path
        if self._departed and self._under_departed(change.path):
            return not view.has(parent, "dir") or not os.path.lexists(change.path)
        return parent != self._root and not view.has(parent) and not os.path.lexists(change.path)


class Recorder:
    """Changes in, one way: watchdog's events (and what scans find) -> View -> SettlePipeline -> Outbox -> console.

    Owns which events reach the view (not an ignored path, not our own files, not a ghost, not past the
    outbox's limit) and the count of raw watchdog events seen (the supervisor reads it: did the tree move
    during a scan?); ``recorded`` (has the view changed since the state file was written?) is its pipeline's.
    Asks for a rescan when events may have been lost.
    """

    def __init__(
        self,
        view: View,
        outbox: Outbox,
        rescans: RescanSchedule,
        wake: Callable[[], None],
        skip: frozenset[str],
        console: Console,
        settler: Settler | None = None,
        ignore: IgnoreRules | None = None,
        hash_limit: int | None = None,
    ) -> None:
        self._view = view
        self._outbox = outbox
        self._pipeline = SettlePipeline(view, self._queue, wake, settler, hash_limit)
        self._rescans = rescans
        self._wake = wake  # wakes the supervisor
        self._skip = skip
        self._ignore = ignore if ignore is not None else IgnoreRules(view.root, ())
        self._console = console
        self._ghosts = GhostFilter(view.root)
        self._aliases = Aliases()
        self.events_seen = 0
        # Told of directories that left a path (see Watcher.drop_stale_watches); set once when wired.
        self.departed: Callable[[list[str]], None] = lambda paths: None

    @property
    def recorded(self) -> int:
        """Changes recorded so far (applied to the view and let out of the Settler)."""
        return self._pipeline.released

    def holding(self) -> bool:
        """Whether changes are held (settling, or hashed): applied to the view, not queued yet."""
        return self._pipeline.holding()

    async def drained(self) -> None:
        """Return once every change recorded is queued (their hashes computed)."""
        await self._pipeline.drained()

    def flush(self) -> None:
        """Queue whatever is held now (see SettlePipeline.flush)."""
        self._pipeline.flush()

    def on_events(self, events: list[FileSystemEvent]) -> None:
        """Apply a burst of watchdog events to the view; queue and print what changed (in the loop)."""
        self.events_seen += len(events)
        changes: list[Change] = []
        departed: list[str] = []
        now = asyncio.get_running_loop().time()
        queued = self._outbox.waiting() + len(self._pipeline)  # neither changes in this loop
        for raw in self._aliases.expand(change_from_event(event) for event in events):
            change = self._unignored(raw)
            if change is None or change.path in self._skip or too_long(change.dest_path or change.path):
                continue
            if change.kind == "created" and change.is_dir and not is_dir_now(change.path):
                # watchdog lists a new directory's content following symlinks: a link to a directory is a link.
                change = dataclasses.replace(change, is_dir=False)
            if self._ghosts.ghost(change, self._view, now):
                continue
            waiting = queued + len(changes)  # this burst's count too
            if waiting >= self._outbox.limit:
                # Dropped events never touch the view, so a rescan later finds exactly what they said.
                if self._rescans.dropped():
                    log.warning(
                        "%d eventos aguardando envio (o limite); os próximos serão recuperados por uma varredura.",
                        waiting,
                    )
                continue
            out = self._view.apply(change)
            departed += self._ghosts.departed(out, now)
            changes += out
        if departed:
            self.departed(departed)
        self._pipeline.hold(changes, *writes_and_closes(events))
        if self._view.take_suspect() or not self._view.root_exists:
            self.request_rescan()

    def use_aliases(self, aliases: Aliases) -> None:
        """The directories that are one under two paths, from now on (see Aliases; the Patrol finds them)."""
        self._aliases = aliases

    def _unignored(self, change: Change) -> Change | None:
        """The change as the view sees it once ignored paths are left out (None: nothing to see)."""
        ignore, dest = self._ignore, change.dest_path
        if dest is not None and ignore.ignored(dest, change.is_dir):
            return None if ignore.ignored(change.path, change.is_dir) else Change("deleted", change.path, change.is_dir)
        if not ignore.ignored(change.path, change.is_dir):
            return change
        if dest is None:
            return None
        if change.is_dir:
            return change  # a directory from an ignored name: the view learns its content by a scan
        # A file written under an ignored name and renamed over (or into) a watched one: a save.
        return Change("modified" if self._view.has(dest) else "created", dest, False)

    def on_kernel_overflow(self) -> None:
        if self._rescans.overflow(asyncio.get_running_loop().time()):
            log.warning("a fila de eventos do kernel transbordou; uma varredura vai recuperar o que se perdeu.")
        self._wake()

    def request_rescan(self) -> None:
        self._rescans.request()
        self._wake()

    def _queue(self, described: list[tuple[Change, Metadata]]) -> None:
        now = datetime.datetime.now().astimezone()
        ts = now.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        added = [change for change, meta in described if self._outbox.add(change, ts, meta)]
        if added:
            self._console.changes(added, now)

    def record_root(self, kind: EventKind) -> None:
        """The root itself was deleted or created, as the watcher found (no-op if the view knows it already)."""
        self.flush()
        self._pipeline.release(self._view.apply(Change(kind, self._view.root, True, origin="rescan")))

    def repair(self, differences: list[Change]) -> int:
        """Record the differences a scan found (View.diff), as far as they still hold; return how many."""
        unhashed = self._pipeline.flush()  # they come after what is held: the scan saw the view with it
        changes: list[Change] = []
        room = self._outbox.room()
        for change in differences:
            if len(changes) >= room:
                self._rescans.request()  # the rest when the queue has drained
                break
            if still_true(change):
                changes += self._view.apply(change)
        self._pipeline.release(changes)
        # After them: what they deleted has none; what they described again has its hash already.
        self._pipeline.follow_up(unhashed.difference(c.dest_path or c.path for c in changes))
        return len(changes)


class Verification:
    """Where the proof of the server's tree stands (protocol 2; README, "Protocolo"); pure, driven by the Uplink.

    A digest is wanted (at a checkpoint), sent once the server has every event, and answered ``verified`` or
    ``resync``; after a ``resync`` the manifest goes out and events wait until the server says the trees agree.
    """

    def __init__(self) -> None:
        self._wanted = False  # a digest is wanted, once the server has every event
        self._answer: tuple[int, int] | None = None  # (seq, count) of a digest or manifest awaiting its answer
        self._resync: int | None = None  # the server asked for the manifest: how many entries it holds
        self._repair: tuple[int, float] | None = None  # a manifest went out (the server's count, when)

    def want(self) -> None:
        self._wanted = True

    def digest_due(self) -> bool:
        return self._wanted and self._answer is None

    def manifest_due(self) -> bool:
        return self._resync is not None

    def holding(self) -> bool:
        """Whether events must wait: a manifest is out and not yet answered."""
        return self._repair is not None

    def digest_sent(self, seq: int, count: int) -> None:
        self._wanted, self._answer = False, (seq, count)

    def manifest_sent(self, seq: int, count: int, now: float) -> None:
        assert self._resync is not None
        self._repair, self._resync, self._answer = (self._resync, now), None, (seq, count)

    def interrupted(self) -> None:
        """The connection ended: anything unfinished is asked again on the next one."""
        if self._answer is not None or self._resync is not None or self._repair is not None:
            self._wanted = True
        self._answer, self._resync, self._repair = None, None, None

    def answered(self, reply: ServerMessage, now: float) -> None:
        """The server's answer to a digest (``verified`` or ``resync``) or to a manifest (``verified``);
        ProtocolError for an answer nobody asked for."""
        sent, repair = self._answer, self._repair
        if sent is None or (repair is not None and reply.kind == "resync"):
            raise ProtocolError(f"resposta '{reply.kind}' que este cliente não pediu")
        self._answer = None
        seq, count = sent
        if repair is not None:
            self._repair = None
            log.info(
                "Ressincronização com o servidor: ele tinha %d entrada(s) desta árvore, este cliente %d; "
                "manifesto enviado, as árvores agora conferem (%.2f s).",
                repair[0],
                count,
                now - repair[1],
            )
        elif reply.kind == "verified":
            log.debug("verificação: a árvore do servidor confere com a deste cliente (seq %d, %d entradas)", seq, count)
        else:
            self._resync = reply.count
            log.debug(
                "verificação: a árvore do servidor difere (servidor: seq %d, %d entradas; cliente: seq %d, %d "
                "entradas); enviando o manifesto",
                reply.seq,
                reply.count,
                seq,
                count,
            )


class DirectConnect(connect):
    """websockets' connect() without following HTTP redirects: the server is the one the user named. websockets
    follows them by default, and for good (later reconnections go to the new address, and the token is dropped
    on a cross-origin one), while the state file is kept for the named server. A 3xx becomes an InvalidStatus,
    fatal, said by describe_connect_error."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class Verdicts:
    """How the Uplink's failures are judged and said: a failed connection attempt, a close by the server, a
    refused protocol version. Each is retried (with one line) or a FatalError that says what to do."""

    def __init__(self, settings: Settings, state_file: StateFile) -> None:
        self._settings = settings
        self._state_file = state_file  # named in the line of a refused identity
        self._full_said = False  # the server said it has no room for a new client (1013): warned once
        self._fallback_said = False  # the server speaks only the fallback version: said once (-v)

    def connected(self) -> None:
        self._full_said = False

    def connect_error(self, exc: Exception) -> Exception | None:
        """websockets' verdict (retry on network errors and 5xx), with one line per attempt.

        A wrong token or an untrusted certificate would fail the same way forever: fatal.
        """
        uri = self._settings.uri
        why = describe_connect_error(exc, uri)
        if isinstance(exc, ssl.SSLError):
            # The server answered, but not with TLS (plain HTTP) or with a certificate we cannot trust: it
            # fails the same way until the URI or the certificate changes. A bare reset at the TLS hello (a
            # ws:// server behind a wss:// URI, but also a proxy without its backend) is retried, with the hint.
            return FatalError(f"falha de TLS com {uri}: {why}")
        verdict = websockets.client.process_exception(exc)
        if verdict is None:
            log.warning("Sem conexão com %s: %s; tentando novamente...", uri, why, extra=NO_PREFIX)
            return None
        return FatalError(f"não foi possível conectar a {uri}: {why}")

    def connection_lost(self, exc: ConnectionClosed) -> None:
        """A session ended: one line and a reconnection, or FatalError (a refused identity, a violated protocol)."""
        frame = exc.rcvd
        if frame is not None and frame.code == CLOSE_CREDENTIAL:
            raise FatalError(self._refused_identity(frame.reason))
        if frame is not None and frame.code == CLOSE_TRY_AGAIN:
            uri, reason = self._settings.uri, frame.reason or "tente mais tarde"
            if not self._full_said:
                self._full_said = True
                log.warning("o servidor %s não aceitou este cliente agora (%s); tentando de novo...", uri, reason)
            else:
                log.debug("o servidor %s ainda não aceita este cliente (%s)", uri, reason)
            return
        if frame is not None and frame.code in FATAL_CLOSE_CODES:
            reason = frame.reason or FATAL_CLOSE_CODES[frame.code]
            raise FatalError(f"o servidor recusou as mensagens deste cliente: {reason}")
        if frame is not None:
            why = f"código {frame.code}"
        elif exc.sent is not None and exc.sent.code == 1011:
            why = f"sem resposta ao ping em {self._settings.keepalive:g} s"
        else:
            why = "conexão interrompida"
        log.warning("Conexão com %s perdida (%s); reconectando...", self._settings.uri, why, extra=NO_PREFIX)

    def _refused_identity(self, reason: str) -> str:
        """The fatal line for a close 4001: what happened and what the user can do."""
        path = self._state_file.path
        what = reason or f"código {CLOSE_CREDENTIAL}"
        if not path:
            return f"o servidor recusou a identidade deste cliente ({what}); inicie-o de novo"
        return (
            f"o servidor recusou a identidade deste cliente ({what}); ele guarda outro segredo para o id "
            f"{self._state_file.identity.client_id}. Se este arquivo de estado foi copiado ou restaurado, ou outro "
            f"cliente tomou o id, apague {escape(path)} para começar com uma identidade nova (o servidor verá um "
            "cliente novo)"
        )

    def version_refused(self, exc: ConnectionClosed, version: int) -> int | None:
        """The version to speak next when the server closed because it does not speak ``version``: the highest
        older one it names (2, else 1); None when the close was about something else; FatalError when it speaks
        none of ours."""
        frame = exc.rcvd
        spoken = refused_version(frame.reason) if frame is not None and frame.code == 1008 else None
        if spoken is None:
            return None
        older = [v for v in spoken if FALLBACK_PROTOCOL_VERSION <= v < version]
        if older:
            fallback = max(older)
            if not self._fallback_said:
                self._fallback_said = True
                lacks = "sem os metadados dos eventos" if fallback == 2 else "sem a verificação da árvore"
                log.debug(
                    "o servidor %s fala só até a versão %d do protocolo (ainda não foi atualizado): os eventos "
                    "seguem, %s",
                    self._settings.uri,
                    fallback,
                    lacks,
                )
            return fallback
        newer = max(spoken, default=0) > PROTOCOL_VERSION
        raise FatalError(
            f"o servidor {self._settings.uri} não fala a versão {version} do protocolo deste cliente "
            f"({frame.reason if frame else ''}); atualize {'este cliente' if newer else 'o servidor'}"
        )


class Stream:
    """What flows over one open connection (the loop alone touches it): the outbox's batches out, the acks in,
    and at quiet moments the digest that proves the server's tree or the manifest that repairs it (protocol 2).

    Owns where a verification stands (its Verification) and the sender's wake-up; lives as long as the client,
    one ``run`` per session.
    """

    def __init__(
        self,
        outbox: Outbox,
        view: View,
        on_all_acked: Callable[[], None],
        settling: Callable[[], bool] = lambda: False,
    ) -> None:
        self._outbox = outbox
        self._view = view
        self._settling = settling  # changes are held, in the view but not queued: no digest, no manifest yet
        self._on_all_acked = on_all_acked
        self._spoken = PROTOCOL_VERSION  # what the current session speaks (the welcome's)
        self._kick = asyncio.Event()  # wakes the sender: a verification step may be due
        self._proof = Verification()

    def verify(self) -> None:
        """Send a digest as soon as the server has acknowledged every event (protocol 2; a no-op on 1)."""
        self._proof.want()
        self._kick.set()

    async def run(self, ws: ClientConnection, spoken: int) -> None:
        """Send and receive over ``ws``, which speaks version ``spoken``, until the connection ends (it raises
        ConnectionClosed, even for a normal close: the server is stopping) or FatalError."""
        self._spoken = spoken
        sender = asyncio.create_task(self._send(ws))
        receiver = asyncio.create_task(self._receive(ws))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            sender.cancel()
            receiver.cancel()

    def ended(self) -> None:
        """The connection is closed: anything unfinished of a verification is asked again on the next one."""
        self._proof.interrupted()

    async def _send(self, ws: ClientConnection) -> None:
        """Send the batches, and at quiet moments the digest or the manifest: the only writer of ``ws``."""
        outbox = self._outbox
        for batch in outbox.unacked_batches():
            await ws.send(encode_batch([downgrade(item.data, self._spoken) for item in batch]))
        while True:
            if self._proof.manifest_due() and not outbox.waiting() and not self._settling():
                await self._send_manifest(ws)
            elif self._proof.digest_due() and not outbox.pending() and not self._settling() and self._spoken >= 2:
                count, total = self._view.digest()
                self._proof.digest_sent(outbox.acked_seq, count)
                await ws.send(encode_digest(outbox.acked_seq, count, total))
            elif outbox.waiting() and not self._proof.holding():
                batch = await outbox.next_batch()
                await ws.send(encode_batch([downgrade(item.data, self._spoken) for item in batch]))
            else:
                await self._idle()

    async def _idle(self) -> None:
        """Wait until an event is queued (unless a manifest holds them) or the sender is kicked."""
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._kick.wait())}
        if not self._proof.holding():
            waits.add(asyncio.ensure_future(self._outbox.queued()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        self._kick.clear()

    async def _send_manifest(self, ws: ClientConnection) -> None:
        """Send the whole tree the server should hold, as of the last event sent (none is waiting: the view
        matches it); then hold the outbox until the server says the trees agree."""
        seq = self._outbox.next_seq - 1
        messages, count, _ = encode_manifest(seq, self._view.held_entries())  # at once: the view cannot move
        self._proof.manifest_sent(seq, count, asyncio.get_running_loop().time())
        for message in messages:
            await ws.send(message)

    async def _receive(self, ws: ClientConnection) -> None:
        while True:
            message = await ws.recv()  # raises ConnectionClosed, a normal close included
            try:
                reply = parse_server_message(message, self._spoken)
                if reply.kind in ("verified", "resync"):
                    self._proof.answered(reply, asyncio.get_running_loop().time())
                    self._kick.set()
            except ProtocolError as exc:
                raise FatalError(str(exc)) from None
            if reply.kind == "ack":
                self._outbox.ack(reply.seq)
                if not self._outbox.pending():
                    self._on_all_acked()  # the server has everything: time for a checkpoint
                    self._kick.set()


class Uplink:
    """The one connection to the server: reconnects, says hello, hands the session to its Stream, flushes at
    the end.

    Owns the connection's lifecycle (the loop alone touches it) and the protocol version spoken. The identity
    said in the hello is the state file's (read when connecting).
    """

    def __init__(self, settings: Settings, outbox: Outbox, state_file: StateFile, stream: Stream) -> None:
        self._settings = settings
        self._outbox = outbox
        self._state_file = state_file
        self._stream = stream
        self.connected = False
        self._verdicts = Verdicts(settings, state_file)
        self._stopping = False  # flush() was called: a close no longer waits for a server that does not answer
        self.version = PROTOCOL_VERSION  # said in the next hello: FALLBACK_PROTOCOL_VERSION after a refusal

    async def run(self) -> None:
        """Keep one connection open (reconnecting as needed) and stream the outbox over it; FatalError when hopeless."""
        settings, loop = self._settings, asyncio.get_running_loop()
        quick_drops = 0
        async for ws in DirectConnect(
            settings.uri,
            process_exception=self._verdicts.connect_error,
            reconnect_delays=reconnect_delays,
            compression=None,  # loopback and LAN: deflate costs more CPU than it saves
            open_timeout=OPEN_TIMEOUT,
            ssl=settings.tls,
            additional_headers={"Authorization": f"Bearer {settings.token}"} if settings.token else None,
            ping_interval=settings.keepalive,
            ping_timeout=settings.keepalive,
            close_timeout=settings.keepalive,  # a dead server never answers the close either
            logger=logging.getLogger("monitor.websockets"),
        ):
            opened = loop.time()
            try:
                await self._session(ws)
            except ConnectionClosed as exc:
                self._verdicts.connection_lost(exc)
            finally:
                if self.connected:  # a session ended: the server may come back upgraded
                    self.version = PROTOCOL_VERSION
                self.connected = False
            quick_drops = quick_drops + 1 if loop.time() - opened < RECONNECT_MAX_DELAY else 0
            await asyncio.sleep(redial_delay(quick_drops))

    async def _session(self, ws: ClientConnection) -> None:
        uri, identity = self._settings.uri, self._state_file.identity
        name, root = wire_path(self._settings.name)[0], wire_path(self._settings.root)[0]  # argv may hold any bytes
        style = "windows" if sys.platform == "win32" else "posix"
        await ws.send(encode_hello(identity.client_id, name, root, self.version, identity.secret, style))
        try:
            welcome = parse_server_message(await ws.recv(), self.version)
            if welcome.kind != "welcome":
                raise ProtocolError("o servidor não respondeu ao hello")
        except ProtocolError as exc:
            raise FatalError(f"{uri} não é um servidor deste monitor: {exc}") from None
        except ConnectionClosed as exc:
            fallback = self._verdicts.version_refused(exc, self.version)
            if fallback is not None:
                self.version = fallback
                return  # reconnect at once, speaking the older version
            raise
        # The ack covers this identity's earlier runs too: what was never sent continues after it.
        self._outbox.ack(welcome.seq)
        self._outbox.continue_after(welcome.seq)
        self.connected = True
        self._verdicts.connected()
        log.info("Conectado a %s", uri)
        try:
            await self._stream.run(ws, welcome.version)
        finally:
            if self._stopping:
                ws.close_timeout = min(ws.close_timeout or STOP_CLOSE_TIMEOUT, STOP_CLOSE_TIMEOUT)
            await ws.close()
            self._stream.ended()

    async def flush(self) -> None:
        """Wait, up to FLUSH_TIMEOUT, until the server has acknowledged everything. From then on (we are
        stopping), closing the connection waits at most STOP_CLOSE_TIMEOUT for the server's answer."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                while self.connected and self._outbox.pending():
                    await self._outbox.next_ack()


class Scanner:
    """Scans of the watched tree, each in a worker thread (see scan_tree): what they find unreadable goes to the
    Watcher; a root that is gone wakes the supervisor. Owns the flag that makes a scan in progress give up."""

    def __init__(
        self,
        root: str,
        watcher: Watcher,
        state_file: StateFile,
        wake: asyncio.Event,
        ignore: IgnoreRules,
        known: Callable[[str], Tree | None] = lambda path: None,
    ) -> None:
        self._root = root
        self._known = known  # the view's subtree at a path: kept where the disk cannot be read
        self._watcher = watcher
        self._skip = state_file.own_paths  # never watched, never scanned
        self._wake = wake
        self._ignore = ignore
        self._interrupt = threading.Event()  # the client is stopping: scans in progress give up
        self._too_deep = False  # the paths too long to watch have been said (until a scan finds none)

    def interrupt(self) -> None:
        """The client is stopping: a scan in progress stops at its next directory (its thread would hold the exit).
        A scan that is not interruptible (the last checkpoint's) goes on."""
        self._interrupt.set()

    async def scan(self, purpose: str, interruptible: bool = True) -> Tree | None:
        """The tree on disk (in a worker thread); None if the root is gone; Interrupted when the client stops."""
        started = time.perf_counter()
        stop = self._interrupt if interruptible else None
        too_deep: list[str] = []
        like = self._known(self._root)  # the view's tree: what did not change is shared, not made again
        result = await asyncio.to_thread(scan_tree, self._root, self._skip, stop, self._ignore, too_deep, like)
        log.debug("varredura %s: %.0f ms", purpose, (time.perf_counter() - started) * 1000)
        if result is None:
            self._wake.set()  # the root is gone: the watcher's inspection reports it
            return None
        disk, unreadable = result
        self._watcher.note_unreadable(unreadable)
        graft_unknown(disk, self._root, unreadable, self._known)
        if too_deep and not self._too_deep:
            cut = too_deep[0] if len(too_deep[0]) <= 80 else f"{too_deep[0][:60]}…{too_deep[0][-20:]}"
            log.warning(
                "caminhos longos demais (o sistema aceita até %d bytes): o que está abaixo de %s (%s bytes) não é "
                "monitorado.",
                PATH_MAX - 1,
                escape(cut),
                f"{len(os.fsencode(too_deep[0])):,}".replace(",", "."),
            )
        self._too_deep = bool(too_deep)
        return disk

    async def scan_below(self, path: str) -> Tree | None:
        """The subtree at ``path`` on disk (a worker thread); None when it is gone or not a directory."""
        result = await asyncio.to_thread(scan_tree, path, self._skip, self._interrupt, self._ignore)
        return None if result is None else result[0]


class Checkpointer:
    """Checkpoints: when the server has every change, check the view against the disk (a scan) and write the
    state file; differences found twice are repaired through the Recorder. Owns the CheckpointSchedule and
    how much the last save covered (``Recorder.recorded`` then)."""

    def __init__(
        self,
        view: View,
        outbox: Outbox,
        recorder: Recorder,
        rescans: RescanSchedule,
        scanner: Scanner,
        state_file: StateFile,
        idle_check: float = IDLE_CHECK_INTERVAL,
    ) -> None:
        self._view = view
        self._outbox = outbox
        self._recorder = recorder
        self._rescans = rescans
        self._scanner = scanner
        self._state_file = state_file
        self._schedule = CheckpointSchedule()
        self._saved = 0  # recorder.recorded when the state file was last written
        self._idle_check = idle_check  # seconds between checks even when nothing changed (a silent loss)
        self._idle_next = math.inf  # loop time of the next one (set by the first due())
        self._changes_only = True  # False from an idle check until the view and the disk agree: report contents too

    def due(self, now: float) -> bool:
        """Whether to checkpoint now: the view changed since the last save (or the idle check is due), the
        server has all of it, and the schedule says it is time."""
        if self._idle_next == math.inf:
            self._idle_next = now + self._idle_check
        # A check that found differences looks again CHECKPOINT_SECOND_LOOK later, idle or not: the bound of a
        # silent loss is one --verificacao (plus the second look), not two.
        again = self._schedule.looking_again
        return (self._ready() or (self._quiet() and (again or now >= self._idle_next))) and self._schedule.due(now)

    def _ready(self) -> bool:
        """The view changed since the last save, and the server has all of it."""
        return self._recorder.recorded != self._saved and self._quiet()

    def _quiet(self) -> bool:
        """The server has every change, and none is held or waits for a rescan."""
        return self._outbox.pending() == 0 and not self._recorder.holding() and not self._rescans.needed

    async def last(self) -> None:
        """At shutdown, after the flush: save the state file if the server has everything; otherwise save the
        view with the events it has not confirmed, to send again at the next start (see SavedState)."""
        if self._outbox.pending():
            await self.save(self._view.top)
        elif self._ready() and self._view.root_exists:
            await self.checkpoint(interruptible=False)

    async def checkpoint(self, interruptible: bool = True) -> bool:
        """When the server has everything, check the view against the disk and save the state file (True)."""
        loop = asyncio.get_running_loop()
        seen = self._recorder.events_seen
        idle = self._idle_next <= loop.time()  # the idle check: runs once each time, whatever it finds
        started = time.perf_counter()
        disk = await self._scanner.scan("de verificação", interruptible)
        if idle:  # a huge tree is checked less often: at most 1/IDLE_CHECK_DUTY of a core
            self._idle_next = loop.time() + max(self._idle_check, IDLE_CHECK_DUTY * (time.perf_counter() - started))
            self._changes_only = False
        if disk is None or self._recorder.events_seen != seen or not self._quiet():
            self._schedule.moved(loop.time())  # try again later, less eagerly
            log.debug("verificação: a árvore mudou durante a varredura; nova tentativa mais tarde")
            return False
        # Files whose content changed without an event (a write through a shared mmap) only the idle check reports.
        differences = self._view.diff(disk, "rescan", report_modified=not self._changes_only)
        if differences:
            if self._schedule.differs(loop.time()):
                # Events were lost without any sign (the scan is the only witness): send them now,
                # and save the state at the next checkpoint, once the server has them.
                sent = self._recorder.repair(differences)
                if sent:  # none still held: the tree moved on since the scan, nothing was lost
                    log.warning("%d mudança(s) não percebida(s) encontrada(s) na verificação; enviadas.", sent)
            else:
                log.debug("verificação: %d diferença(s); olhando de novo antes de enviar", len(differences))
            return False
        self._schedule.agrees(loop.time())
        self._changes_only = True
        self._view.load_tree(disk)  # the same paths, with every file's info known again
        recorded = self._recorder.recorded
        await self.save(disk)
        self._saved = recorded
        return True

    async def save(self, tree: Tree) -> None:
        """Write the state file: ``tree`` is the view's (what the server holds of it: the view says), with the
        events the server has not confirmed yet (none, but at shutdown)."""
        pending = self._outbox.unconfirmed()
        seq = pending[0][0] - 1 if pending else self._outbox.next_seq - 1
        await self._state_file.save(tree, self._view.held(), seq, pending)


class Patrol:
    """What the watcher does not hear by itself, checked at each supervisor tick: directories without an inotify
    watch (the degraded mode: the kernel's list of watches against the view's directories, then periodic scans
    of those without one, see Coverage) and filesystems mounted or unmounted inside the tree (/proc/self/mountinfo,
    read at each tick: ~40 µs). Owns the Coverage and the mount points last seen."""

    def __init__(self, view: View, recorder: Recorder, watcher: Watcher, scanner: Scanner, rescans: RescanSchedule):
        self._view = view
        self._recorder = recorder
        self._watcher = watcher
        self._scanner = scanner
        self._rescans = rescans
        self._coverage = Coverage()
        self._census_seen = -1  # recorder.events_seen at the last census (none yet)
        self._census_next = 0.0
        self._suspects: set[str] = set()  # without a watch at the last census: counted if still so at the next
        self._unwatched: set[str] = set()  # counted: without a watch at two censuses in a row
        self._limit: tuple[int | None, int | None] = (None, None)  # the watch limits when the degraded mode began
        self._directories = 0  # in the view at the last census
        self._stamps: dict[str, int | None] = {}  # the mtime of each directory of the part without a watch
        self._mounts: frozenset[str] | None = None
        self._mounts = self._read_mounts()

    def _read_mounts(self) -> frozenset[str] | None:
        """The mount points in the tree (None: not Linux, mounts are not followed); the recorder is told of the
        bind mounts that make one directory of the tree two (see Aliases) whenever they change."""
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
                text = file.read()
        except OSError:
            return None
        mounts = parse_mountinfo(text, self._view.root)
        if mounts != self._mounts:
            self._recorder.use_aliases(Aliases(same_directories(bind_sources(text, self._view.root))))
        return mounts

    async def tick(self, now: float) -> None:
        mounts = self._read_mounts()
        if mounts != self._mounts and mounts is not None and self._mounts is not None:
            for point in sorted(mounts - self._mounts):
                log.info("Sistema de arquivos montado em %s; varrendo.", escape(point))
            for point in sorted(self._mounts - mounts):
                log.info("Sistema de arquivos desmontado de %s; varrendo.", escape(point))
            if await self._watcher.restart():  # a new mount's root needs a watch of its own
                self._rescans.request()
        self._mounts = mounts
        if self._watcher.polling or not self._watcher.alive():
            return  # polling has no watches; a dead watcher is restarted by the supervisor
        if self._coverage.uncovered and inotify_limit("watches") != self._limit:  # two small reads, only degraded
            self._limit = inotify_limit("watches")
            self._coverage.retry_now(now)
        if self._coverage.retry_due(now):
            self._coverage.retried(now)
            # A retry is a restart and a full rescan (~1 s of CPU on 100,000 files): only when a watch is free.
            if await asyncio.to_thread(watch_room, self._view.root):
                if await self._watcher.restart():  # watchdog adds every watch it can again
                    self._rescans.request()
                self._census_next, self._census_seen = now, -1
            else:
                log.debug("modo degradado: nenhuma vigia livre ainda; sem reinício")
        if self._recorder.events_seen != self._census_seen and now >= self._census_next or self._suspects:
            await self._census(now)
        if self._coverage.scan_due(now):
            await self._scan_uncovered()
        elif self._coverage.look_due(now):
            await self._look_uncovered()

    def _cadence(self) -> str:
        look, full = (f"{round(v, 1):g}".replace(".", ",") for v in (DEGRADED_SCAN_INTERVAL, self._coverage.interval))
        return f"uma varredura a cada {look} s (completa a cada {full} s)"

    def _uncovered_directories(self) -> list[str]:
        """Every directory of the view in the part without a watch (its files are not walked)."""
        paths, out = TreePaths(self._view.root), []
        for top in self._coverage.uncovered:
            parts = paths.parts(top)
            mine = paths.find_dir(self._view.top, parts) if parts is not None else None
            stack = [] if mine is None else [(top, mine)]
            while stack:
                path, node = stack.pop()
                out.append(path)
                stack.extend((path + os.sep + name, child) for name, child in node.items() if isinstance(child, dict))
        return out

    async def _look_uncovered(self) -> None:
        """A stat of each directory without a watch; those whose mtime moved are scanned (a few ms for 500)."""
        stamps = await asyncio.to_thread(directory_stamps, self._uncovered_directories())
        changed = topmost(path for path, stamp in stamps.items() if self._stamps.get(path, stamp) != stamp)
        self._stamps = stamps
        if changed:
            await self._scan_uncovered(changed)

    async def _census(self, now: float) -> None:
        self._census_seen = self._recorder.events_seen
        self._census_next = now + 2 * CHECK_INTERVAL
        directories, stack = [], [(self._view.root, self._view.top)]
        while stack:
            path, node = stack.pop()
            directories.append(path)
            stack.extend((path + os.sep + name, child) for name, child in node.items() if isinstance(child, dict))
        watched = await asyncio.to_thread(inotify_watches)
        if watched is None:
            return
        if len(directories) < self._directories and self._coverage.uncovered:
            self._coverage.retry_now(now)  # their watches were freed: others may get them
        self._directories = len(directories)
        missing = await asyncio.to_thread(unwatched, directories, watched)
        if missing:  # without a watch for want of permission (chmod 311 above them): not the inotify limit
            missing = [path for path in missing if not self._watcher.barred(path)]
        # A directory just created may get its watch a moment after its event: counted at the second census.
        confirmed = [p for p in missing if p in self._suspects or p in self._unwatched]
        self._unwatched, self._suspects = set(confirmed), set(missing) - set(confirmed)
        mode = self._coverage.update(confirmed, now)
        if mode == "entered":
            await self._scan_uncovered()  # first: its duration sets the interval the line announces
            self._limit = inotify_limit("watches")
            limit = describe_inotify_limit("watches", *self._limit)
            text = f"{self._coverage.count} diretório(s) sem monitoramento ao vivo, cobertos por {self._cadence()}"
            log.warning("limite de inotify atingido %s", limit.format(text))
        elif mode == "left":
            log.info("Limite de inotify: todos os diretórios voltaram ao monitoramento ao vivo.", extra=NO_PREFIX)
        elif mode == "changed":
            log.info(
                "Limite de inotify: agora %d diretório(s) sem monitoramento ao vivo, cobertos por %s.",
                self._coverage.count,
                self._cadence(),
                extra=NO_PREFIX,
            )

    async def _scan_uncovered(self, tops: list[str] | None = None) -> None:
        """Scan the part without a watch (or only ``tops`` of it, whose mtime moved); repair what differs."""
        loop = asyncio.get_running_loop()
        started, sent = time.perf_counter(), 0
        paths = TreePaths(self._view.root)
        if tops is None:
            self._stamps = await asyncio.to_thread(directory_stamps, self._uncovered_directories())
        for top in self._coverage.uncovered if tops is None else tops:
            disk = await self._scanner.scan_below(top)
            parts = paths.parts(top)
            mine = paths.find_dir(self._view.top, parts) if parts is not None else None
            if disk is not None and mine is not None:
                sent += self._recorder.repair(diff_trees(top + os.sep, mine, disk, "rescan", report_modified=True))
        if tops is None:
            self._coverage.scanned(loop.time(), time.perf_counter() - started)
        what = "varredura" if tops is None else f"olhada ({len(tops)} diretório(s) mudaram)"
        log.debug("%s do modo degradado: %d mudança(s), %.0f ms", what, sent, (time.perf_counter() - started) * 1e3)


class Supervisor:
    """The loop's housekeeping: the watcher's health, rescans and repairs, checkpoints (its Checkpointer).

    Runs every CHECK_INTERVAL seconds, or as soon as ``wake`` is set (a rescan is asked for, the server
    acknowledged everything, a watchdog thread died). Starts the watcher and loads the view at start-up;
    its scans are the Scanner's.
    """

    def __init__(
        self,
        view: View,
        outbox: Outbox,
        recorder: Recorder,
        watcher: Watcher,
        rescans: RescanSchedule,
        state_file: StateFile,
        wake: asyncio.Event,
        verify: Callable[[], None],
        ignore: IgnoreRules | None = None,
        idle_check: float = IDLE_CHECK_INTERVAL,
    ) -> None:
        self._view = view
        self._ignore = ignore if ignore is not None else IgnoreRules(view.root, ())
        self._outbox = outbox
        self._recorder = recorder
        self._watcher = watcher
        self._rescans = rescans
        self._state_file = state_file
        self._wake = wake
        self._verify = verify  # asks the server to compare its tree with the view's digest
        paths = TreePaths(view.root)

        def known(path: str) -> Tree | None:
            parts = paths.parts(path)
            return None if parts is None else paths.find_dir(view.top, parts)

        self._scanner = Scanner(view.root, watcher, state_file, wake, self._ignore, known)
        self._checkpoints = Checkpointer(view, outbox, recorder, rescans, self._scanner, state_file, idle_check)
        self._patrol = Patrol(view, recorder, watcher, self._scanner, rescans)

    def interrupt(self) -> None:
        """The client is stopping: a scan in progress gives up (see Scanner.interrupt)."""
        self._scanner.interrupt()

    async def last_checkpoint(self) -> None:
        """At shutdown, after the flush (see Checkpointer.last)."""
        await self._checkpoints.last()

    async def start_up(self) -> bool:
        """Start watching; report what changed since the last run (the state file), or take a baseline.

        False when interrupted (the client is stopping) before the view was loaded.
        """
        self._watcher.start()
        polling = self._watcher.polling
        how = f", por varredura a cada {polling:g} s: --polling".replace(".", ",") if polling else ""
        log.info("Monitorando %s (com subdiretórios%s)", escape(self._view.root), how)
        log.debug(
            "padrões ignorados: %s", " ".join(map(escape, self._ignore.patterns)) or "nenhum (--sem-ignorar-padrao)"
        )
        saved = self._state_file.load()
        if saved is not None:
            # What the server holds of the saved tree: what the state says, or nothing under a new identity. Before
            # the scan, which shares with the view what did not change (see scan_tree).
            self._view.restore(saved.tree, saved.held if saved.identity is not None else Held())
        try:
            disk = await self._scanner.scan("inicial")
        except Interrupted:
            return False
        noise = [p for p in self._ignore.matched if p in IGNORE_PATTERNS]
        if noise:
            log.info(
                "Ignorados (ruído de ferramentas; veja --ignorar e --sem-ignorar-padrao): %s",
                ", ".join(map(escape, noise)),
            )
        chosen = [p for p in self._ignore.matched if p not in IGNORE_PATTERNS]
        if chosen:
            log.info("Ignorados (--ignorar): %s", ", ".join(map(escape, chosen)))
        if disk is None:
            raise FatalError(f"o diretório não existe: {escape(self._view.root)}")
        if saved is None:
            self._view.load_tree(disk)
            await self._checkpoints.save(disk)
        else:
            self._outbox.restore(saved.seq, saved.pending)  # before any new event: they keep their seqs
            self._outbox.continue_after(saved.seq)
            if self._state_file.new_identity:
                await self._checkpoints.save(saved.tree)  # the identity is kept before the server hears of it
            sent = self._recorder.repair(self._view.diff(disk, "startup", report_modified=True))
            log.info("Varredura inicial: %d mudança(s) desde a última execução.", sent)
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # asyncio.timeout, never wait_for: before Python 3.12, wait_for drops a cancel that arrives as the
            # wake-up does (CPython gh-86296), and run()'s cancel of the supervisor was lost (tests/test_stopping.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._rescans.wait(loop.time(), CHECK_INTERVAL)):
                    await self._wake.wait()
            self._wake.clear()
            await self._check_watcher()
            if not self._view.root_exists:
                continue
            await self._patrol.tick(loop.time())
            if self._rescans.needed and not self._rescans.due(loop.time()):
                continue  # overflows are still coming: wait until they stop
            if self._rescans.needed and self._outbox.waiting() < self._outbox.limit // 2:
                await self._rescan()
            elif self._checkpoints.due(loop.time()):
                if await self._checkpoints.checkpoint():
                    self._verify()  # the server has every event and the disk agrees: compare the trees

    async def _check_watcher(self) -> None:
        finding = self._watcher.inspect(self._view.root_exists)
        if finding == "ok":
            return
        if finding in ("gone", "replaced"):
            self._recorder.record_root("deleted")  # if no event said so
        if finding == "gone":
            await self._watcher.stop()
            return
        if finding in ("replaced", "reappeared"):
            self._recorder.record_root("created")
        if await self._watcher.restart():
            self._rescans.request()

    async def _rescan(self) -> None:
        self._rescans.started()
        disk = await self._scanner.scan("de recuperação")
        if disk is not None:
            sent = self._recorder.repair(self._view.diff(disk, "rescan"))
            log.info("Varredura concluída: %d mudança(s) recuperada(s).", sent)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command line chose (each flag defaults to its constant above)."""

    uri: str
    root: str
    name: str
    quiet: bool
    state_file: str = ""  # "": no state file
    max_queued: int = MAX_QUEUED_EVENTS
    keepalive: float = KEEPALIVE
    settle: float = SETTLE
    settle_max_hold: float = SETTLE_MAX_HOLD
    ignore: tuple[str, ...] = tuple(IGNORE_PATTERNS)
    hash_limit: int | None = None  # --hash: the SHA-256 of files up to this many bytes; None: none
    polling: float = POLLING_INTERVAL  # --polling: seconds between walks instead of inotify; 0: inotify
    idle_check: float = IDLE_CHECK_INTERVAL
    token: str = ""
    tls: ssl.SSLContext | None = None  # for wss:// URIs


class MonitorClient:
    """Watches ``settings.root`` and delivers every change to the server at ``settings.uri``.

    Only wires the parts together and orders the shutdown; README.md, "Arquitetura", draws them.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_file = StateFile(settings.state_file, settings.root, server_address(settings.uri))
        self.view = View(settings.root)
        self.outbox = Outbox(settings.max_queued)
        self.rescans = RescanSchedule()
        self.wake = asyncio.Event()  # set by any part; the supervisor alone waits on it
        self.ignore = IgnoreRules(settings.root, settings.ignore)
        self.recorder = Recorder(
            self.view,
            self.outbox,
            self.rescans,
            self.wake.set,
            self.state_file.own_paths,
            Console(settings.quiet),
            Settler(settings.settle, settings.settle_max_hold, closes=not settings.polling and sys.platform == "linux"),
            self.ignore,
            settings.hash_limit,
        )
        self.stream = Stream(self.outbox, self.view, self.wake.set, self.recorder.holding)
        self.uplink = Uplink(settings, self.outbox, self.state_file, self.stream)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch and deliver until SIGINT/SIGTERM (or ``stop`` is set); raise FatalError on a fatal failure."""
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        for sig in stop_signals():
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; non-main thread
                loop.add_signal_handler(sig, stop.set)
        self.state_file.lock()
        try:
            await self._run(stop)
        finally:
            self.state_file.unlock()

    async def _run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        polling = self.settings.polling
        gather = PollGather(self.recorder.on_events, view_types(self.view))
        bridge = ThreadBridge(loop, gather.add if polling else self.recorder.on_events)
        watcher = Watcher(self.settings.root, Handler(bridge), polling)
        self.recorder.departed = watcher.drop_stale_watches
        supervisor = Supervisor(
            self.view,
            self.outbox,
            self.recorder,
            watcher,
            self.rescans,
            self.state_file,
            self.wake,
            self.stream.verify,
            self.ignore,
            self.settings.idle_check,
        )
        alarms = watchdog_alarms(
            lambda: bridge.call_soon(self.recorder.on_kernel_overflow),
            lambda kind, cause: bridge.call_soon(lambda: watcher.died(kind, cause, self.wake.set)),
        )
        stopping = asyncio.create_task(stop.wait())
        tasks: list[asyncio.Task[Any]] = [stopping]
        with alarms:
            starting = asyncio.create_task(supervisor.start_up(), name="start_up")
            try:
                with bridge.paused():  # live events wait until the view is loaded
                    # A stop during start-up (a large tree's scan) is not kept waiting for its end.
                    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not starting.done():
                        supervisor.interrupt()
                    started = await starting  # at once, once interrupted; FatalError when the root is gone
                if started and not stop.is_set():
                    supervising = asyncio.create_task(supervisor.run())
                    tasks += [asyncio.create_task(self.uplink.run()), supervising]
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # FatalError from the connection; the supervisor never ends
                    supervisor.interrupt()  # a scan in progress would hold the exit
                    supervising.cancel()  # it would restart the watcher we are about to stop
                    await asyncio.gather(supervising, return_exceptions=True)
                log.info("Encerrando: entregando os eventos pendentes...")
                await watcher.stop(FLUSH_TIMEOUT)
                gather.flush()  # the last poll's events
                self.recorder.flush()  # held changes go out now, live, never left for the next start
                await self.recorder.drained()
                await self.uplink.flush()
                if started:
                    await supervisor.last_checkpoint()
            finally:
                supervisor.interrupt()
                for task in (starting, *tasks):
                    task.cancel()
                await asyncio.gather(starting, *tasks, return_exceptions=True)
                await watcher.stop(FLUSH_TIMEOUT)
        left = self.outbox.pending()
        if left:
            log.warning(
                "%d evento(s) sem confirmação do servidor; serão reenviados na próxima execução%s.",
                left,
                "" if self.state_file.path else " (sem arquivo de estado, não serão)",
            )
        log.info("Monitor encerrado.")


class UsageError(FatalError):
    """A value given on the command line that cannot work: said in one line, exit code 2."""


def ignore_pattern(text: str) -> str:
    """A --ignorar pattern (argparse type): relative to the watched directory, never empty, absolute or with '..'."""
    if not text.strip("/").strip() or (pattern_parts(text) is None and ".." not in text.split("/")):
        raise argparse.ArgumentTypeError(
            f"padrão vazio{f' ({escape(text)!r} não tem nenhum nome)' if text.strip() else ''} "
            "(exemplos: '*.log', 'build/', 'docs/rascunho')"
        )
    if text.startswith("/"):
        raise argparse.ArgumentTypeError(
            f"{escape(text)!r} começa com '/': os padrões são relativos ao diretório monitorado ('docs/rascunho')"
        )
    if ".." in text.split("/"):
        raise argparse.ArgumentTypeError(f"{escape(text)!r} tem '..': um padrão não sai do diretório monitorado")
    return text


def seconds(text: str) -> float:
    """A SECONDS value (argparse type): a decimal point or comma, as the console writes them ("0,5 s")."""
    try:
        return float(text.replace(",", ".", 1) if "." not in text else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{escape(text)!r} não é um número de segundos (exemplos: 0,5 ou 0.5 ou 2)"
        ) from None


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
    """``uri`` when a connection to it can work; FatalError with the reason otherwise."""
    try:
        parts = urllib.parse.urlsplit(uri)  # websockets reads port 0 as "the default port"
        if parts.username is not None:
            # A password in the URI would be shown in every status line (and the journal): the token is the way.
            raise FatalError(f"URI do servidor inválida: {uri!r} (sem usuário e senha na URI; use {TOKEN_ENV})")
        parsed = parse_uri(uri)
        if parts.netloc.endswith(":"):
            raise UsageError(f"URI do servidor inválida: {uri!r} (a porta está vazia; exemplo: ws://localhost:8765)")
        if parts.port == 0:
            raise FatalError(f"URI do servidor inválida: {uri!r} (a porta 0 não serve para conectar)")
        if not parsed.host or any(char.isspace() for char in parsed.host):
            raise FatalError(f"URI do servidor inválida: {uri!r} (o nome do servidor tem espaço ou está vazio)")
    except InvalidURI:
        raise FatalError(f"URI do servidor inválida: {uri!r} (exemplo: ws://localhost:8765)") from None
    except ValueError as exc:  # urllib's: a port out of range or not a number, a broken IPv6 address
        hint = "a porta vai de 1 a 65535" if "out of range" in str(exc) else "exemplo: ws://localhost:8765"
        raise FatalError(f"URI do servidor inválida: {uri!r} ({hint})") from None
    return uri


def validate_state_file(path: str) -> str:
    """The absolute path of a state file we may use: a regular file or none yet, in an existing folder, both
    writable by us (FatalError otherwise). A symbolic link (even one whose target does not exist yet) is followed:
    the state is written to its target, and the link stays (README, "Configuração")."""
    path = os.path.realpath(os.path.abspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FatalError(f"a pasta do arquivo de estado não existe: {escape(folder)}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise FatalError(f"não foi possível usar o arquivo de estado {escape(path)}: {describe_os_error(exc)}") from exc
    if mode is not None and not stat.S_ISREG(mode):
        raise FatalError(f"o arquivo de estado precisa ser um arquivo comum: {escape(path)}")
    if mode is not None and not os.access(path, os.W_OK):
        raise FatalError(f"sem permissão para gravar o arquivo de estado {escape(path)}")
    if not os.access(folder, os.W_OK | os.X_OK):  # it is replaced through <path>.tmp, beside its <path>.lock
        raise FatalError(f"sem permissão para gravar na pasta do arquivo de estado: {escape(folder)}")
    return path


def default_state_file(root: str, uri: str) -> str:
    """The default state file of (root, server): its folder created, the file of version 1.0.0 moved to its new
    name, and a warning when it does not exist yet but the directory has one for another server."""
    path = default_state_path(root, uri)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise FatalError(
            f"não foi possível criar a pasta do estado {escape(folder)}: {describe_os_error(exc)}"
        ) from exc
    legacy = legacy_state_path(root, uri)
    if not os.path.lexists(path) and os.path.isfile(legacy):
        try:
            os.replace(legacy, path)
            log.debug("estado da versão anterior renomeado: %s -> %s", legacy, path)
        except OSError as exc:
            log.warning("não foi possível renomear o estado %s: %s", legacy, describe_os_error(exc))
    if not os.path.lexists(path):
        prefix = os.path.basename(path).partition("-")[0] + "-"
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(folder)):
                other = peek_server(os.path.join(folder, name)) if name.startswith(prefix) else None
                if name.endswith(".json") and other is not None:
                    log.warning(
                        "primeira execução deste diretório com %s; o estado que ele tem é de outro endereço, %s: "
                        "o que mudou enquanto o cliente estava parado não será relatado (se é o mesmo servidor, "
                        "use a mesma URI)",
                        server_address(uri),
                        escape(other),
                    )
                    break
    return path


def tls_context(uri: str, ca_file: str) -> ssl.SSLContext | None:
    """Certificate checking for wss:// (the system's CAs, or ``ca_file``); None for ws://."""
    if not uri.startswith("wss://"):
        if ca_file:
            raise FatalError("--cafile só vale para servidores wss://")
        return None
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(f"não foi possível ler a CA {ca_file!r}: {describe_os_error(exc)}") from exc


def build_parser() -> argparse.ArgumentParser:
    """The command line; each flag's ``dest`` is the name of its Settings field (main() calls
    speak_portuguese_argparse() first)."""
    parser = new_parser(
        "monitor_cliente.py",
        "Monitora um diretório e envia cada mudança a um servidor WebSocket. "
        "SEGUNDOS aceitam vírgula ou ponto decimal (0,5 ou 0.5).",
    )
    parser.add_argument(
        "root", nargs="?", default=directory_to_monitor, metavar="diretorio", help="diretório a monitorar"
    )
    parser.add_argument(
        "--servidor", dest="uri", default=SERVER_URI, metavar="SERVIDOR", help="URI do servidor WebSocket"
    )
    parser.add_argument(
        "--nome",
        dest="name",
        default=CLIENT_NAME or socket.gethostname(),
        metavar="NOME",
        help="nome deste cliente no servidor",
    )
    parser.add_argument("--token", default=None, help=f"segredo pedido pelo servidor (ou {TOKEN_ENV})")
    parser.add_argument(
        "--cafile",
        dest="ca_file",
        default=CA_FILE,
        metavar="ARQUIVO",
        help="CA (PEM) que assinou o certificado de um servidor wss://",
    )
    parser.add_argument(
        "--estado",
        dest="state_file",
        default=STATE_FILE,
        metavar="ARQUIVO",
        help="arquivo com o último retrato do diretório, para relatar o que mudou enquanto o cliente estava parado "
        "(padrão: um arquivo por diretório e servidor em ~/.cache/monitor_cliente/)",
    )
    parser.add_argument(
        "--max-fila",
        dest="max_queued",
        type=int,
        default=MAX_QUEUED_EVENTS,
        metavar="N",
        help="eventos aguardando envio, no máximo; além disso, uma varredura os recupera depois",
    )
    parser.add_argument(
        "--assentar",
        dest="settle",
        type=seconds,
        default=SETTLE,
        metavar="SEGUNDOS",
        help="junta as mudanças até passar este tempo sem nenhuma nova e envia o efeito final de cada caminho "
        "(um salvamento atômico vira um 'modificado'); 0: cada evento bruto, como chega",
    )
    parser.add_argument(
        "--assentar-max",
        dest="settle_max_hold",
        type=seconds,
        default=SETTLE_MAX_HOLD,
        metavar="SEGUNDOS",
        help="tempo máximo que um caminho que não para de mudar (um download) fica retido",
    )
    parser.add_argument(
        "--ignorar",
        dest="ignore",
        action="append",
        type=ignore_pattern,
        metavar="PADRÃO",
        help="ignora os caminhos que casam com o padrão (repetível): sem '/', qualquer nome em qualquer nível "
        "('*.log', 'build'); com '/', o caminho relativo ao diretório ('docs/rascunho'); '/' no fim: só diretórios "
        "(padrão: só os de fábrica, veja --sem-ignorar-padrao)",
    )
    parser.add_argument(
        "--sem-ignorar-padrao",
        dest="no_default_ignore",
        action="store_true",
        help=f"não ignora os padrões de fábrica ({' '.join(IGNORE_PATTERNS)})",
    )
    parser.add_argument(
        "--hash",
        dest="hash",
        action="store_true",
        help="envia o SHA-256 de cada arquivo comum criado ou modificado, até --hash-max bytes (lido fora do laço "
        "principal; nunca de um arquivo ainda sendo escrito)",
    )
    parser.add_argument(
        "--hash-max",
        dest="hash_max",
        type=int,
        default=HASH_MAX_BYTES,
        metavar="BYTES",
        help="tamanho máximo de um arquivo para --hash",
    )
    parser.add_argument(
        "--keepalive",
        type=seconds,
        default=KEEPALIVE,
        metavar="SEGUNDOS",
        help="intervalo entre pings; sem resposta nesse tempo, a conexão é dada como perdida",
    )
    parser.add_argument(
        "--polling",
        type=seconds,
        default=POLLING_INTERVAL,
        metavar="SEGUNDOS",
        help="observa por varredura a cada SEGUNDOS em vez do inotify (NFS, SMB, volumes do Docker Desktop: onde o "
        f"inotify não ouve nada; no mínimo {POLLING_MIN:g}); movimentos podem aparecer como excluído + criado; "
        "0: inotify".replace(".", ","),
    )
    parser.add_argument(
        "--verificacao",
        dest="idle_check",
        type=seconds,
        default=IDLE_CHECK_INTERVAL,
        metavar="SEGUNDOS",
        help="intervalo da verificação completa do disco, mesmo sem mudanças (repara perdas silenciosas)",
    )
    add_console_options(parser, quiet_help="não mostra cada mudança; as mensagens de estado continuam")
    return parser


def quiet_watchdog(verbose: int) -> None:
    """watchdog's warnings must still be emitted (one of them reports a kernel overflow), but they
    reach the console only with -vv; we say the same in Portuguese."""
    watchdog_log = logging.getLogger("watchdog")
    watchdog_log.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    watchdog_log.propagate = verbose >= 2


def route_library_warnings() -> None:
    """watchdog's Python warnings (e.g. "Callback with id ... already exists", a directory watched twice while an
    archive is extracted: harmless) never reach the console raw: one short Portuguese line each, with -v only.
    Others' warnings are shown as Python shows them."""
    show = warnings.showwarning

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if f"{os.sep}watchdog{os.sep}" not in filename:
            show(message, category, filename, lineno, file, line)
        elif "already exists for watch" in str(message):
            log.debug("watchdog: um diretório já vigiado foi vigiado de novo (inofensivo)")
        else:
            log.debug("watchdog avisou: %s", escape(str(message)[:200]))

    warnings.showwarning = showwarning


def main(argv: list[str] | None = None) -> int:
    return run_stoppable(run_command_line, argv)  # a signal from the first line on ends the script quietly with 0


def run_command_line(argv: list[str] | None) -> int:
    speak_portuguese_argparse()
    args = build_parser().parse_args(argv)
    # watchdog's walks (os.walk, DirectorySnapshot) and json recurse once per level of the tree: a level costs a
    # path component, so PATH_MAX bounds the depth (see WALK_RECURSION).
    sys.setrecursionlimit(max(sys.getrecursionlimit(), WALK_RECURSION))
    problem = missing_requirements()
    if problem is not None:
        print(f"Erro: {problem}", file=sys.stderr)
        return 1
    configure_console(args.verbose)  # -q hides the lines of the changes (Console), not the status lines
    quiet_watchdog(args.verbose)
    route_library_warnings()
    try:
        token = token_from(args.token)
    except ValueError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 2
    if args.max_queued < 1 or args.keepalive <= 0:
        print("Erro: --max-fila e --keepalive precisam ser maiores que zero", file=sys.stderr)
        return 2
    # threading.TIMEOUT_MAX: watchdog's threads wait that long at most (a longer wait raises at once in them).
    if args.polling != 0 and not POLLING_MIN <= args.polling <= threading.TIMEOUT_MAX:
        print(
            f"Erro: --polling precisa ser 0 (inotify) ou um número de segundos de {POLLING_MIN:g} a "
            f"{threading.TIMEOUT_MAX:.0f} (cada varredura lê a árvore inteira)".replace(".", ","),
            file=sys.stderr,
        )
        return 2
    if not 0 < args.idle_check <= threading.TIMEOUT_MAX:
        print(
            f"Erro: --verificacao precisa ser maior que zero e até {threading.TIMEOUT_MAX:.0f} segundos",
            file=sys.stderr,
        )
        return 2
    if args.hash_max < 0:
        print("Erro: --hash-max não pode ser negativo", file=sys.stderr)
        return 2
    if not 0 <= args.settle < math.inf or not 0 < args.settle_max_hold < math.inf:
        print("Erro: --assentar precisa ser zero ou mais, e --assentar-max maior que zero", file=sys.stderr)
        return 2
    try:
        uri = validate_uri(args.uri)
        root = validate_directory(args.root)
        state_file = validate_state_file(args.state_file or default_state_file(root, uri))
        settings = Settings(
            uri=uri,
            root=root,
            name=args.name,
            quiet=args.quiet,
            state_file=state_file,
            max_queued=args.max_queued,
            keepalive=args.keepalive,
            settle=args.settle,
            settle_max_hold=args.settle_max_hold,
            ignore=(*([] if args.no_default_ignore else IGNORE_PATTERNS), *(args.ignore or ())),
            hash_limit=args.hash_max if args.hash else None,
            polling=args.polling,
            idle_check=args.idle_check,
            token=token,
            tls=tls_context(uri, args.ca_file),
        )
        asyncio.run(MonitorClient(settings).run())
    except UsageError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 2
    except FatalError as exc:
        print(f"Erro: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
