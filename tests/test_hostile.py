"""Hostile input and access control, end to end: the real scripts on 127.0.0.1, attacked by this test.

The attacks come from the test process itself: raw WebSocket clients (``websockets``) and raw
TCP sockets. Every refused or misbehaving connection must cost the attacker, never the server
or a well-behaved client connected at the same time.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import json
import os
import random
import re
import selectors
import signal
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from convergence import DatabaseEvents
from support import (
    LOOPBACK,
    TIMEOUT,
    ClientProcess,
    Processes,
    ServerProcess,
    Stream,
    has_ts,
    no_traceback,
    strip_ts,
    touch,
    wait_until,
)
from websockets.asyncio.client import ClientConnection as AsyncClientConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

TOKEN = "s3cr3t"
TOKEN_ENV = "MONITOR_TOKEN"
SMALL_MAX = 65536  # --max-mensagem of the shared server: hostile messages just above it stay cheap
CLOSE_REASON_MAX = 123  # RFC 6455: bytes of UTF-8 a close reason can hold
# Characters that must never reach a console raw: they move the cursor, recolour or reorder text.
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------


def plain(lines: list[str]) -> list[str]:
    """Lines without their timestamp, where they have one (``Erro:`` lines are printed without)."""
    return [strip_ts(line) if has_ts(line) else line for line in lines]


def unsafe_chars(raw: bytes) -> list[str]:
    """Code points in ``raw`` (which must be UTF-8) that a console would act upon: C0 but \\n, DEL, C1, bidi."""
    text = raw.decode("utf-8")  # strict: an undecodable byte fails here
    found = {ch for ch in text if (ch < " " and ch != "\n") or "\x7f" <= ch <= "\x9f" or ch in BIDI}
    return sorted(f"U+{ord(ch):04X}" for ch in found)


def assert_console_safe(
    *scripts: ClientProcess | ServerProcess, streams: tuple[Stream, ...] = ("stdout", "stderr")
) -> None:
    for script in scripts:
        for stream in streams:
            assert unsafe_chars(script.raw(stream)) == [], f"{script.label} {stream}\n{script.describe()}"


def peer_of(ws: ClientConnection) -> str:
    return f"{LOOPBACK}:{ws.local_address[1]}"


def lines_about(server: ServerProcess, peer: str, since: int = 0) -> list[str]:
    """The server's status lines that name ``peer`` (127.0.0.1:PORT, not a longer port), from stderr line ``since``
    on: a server shared by many tests sees a port again once the system reuses it."""
    pattern = re.compile(rf"{re.escape(peer)}(?!\d)")
    return [strip_ts(line) for line in server.lines("stderr")[since:] if pattern.search(line)]


def closed_by_server(ws: ClientConnection) -> Close:
    """Wait for the server to close ``ws``; the close frame it sent."""
    try:
        message = ws.recv(TIMEOUT)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"connection lost without a close frame: {exc!r}"
        return exc.rcvd
    raise AssertionError(f"the server should have closed the connection; it sent {message!r}")


def hello_frame(client_id: Any = None, **changes: Any) -> str:
    """A hello (a fresh client id unless given), with some fields changed (or left out with DROP)."""
    hello: dict[str, Any] = {
        "type": "hello",
        "version": 1,
        "client_id": uuid.uuid4().hex if client_id is None else client_id,
        "name": "hostil",
        "root": "/hostil",
    }
    hello.update(changes)
    return json.dumps({key: value for key, value in hello.items() if value is not DROP})


DROP: Any = object()  # a field value meaning "leave this field out"


def event(**changes: Any) -> dict[str, Any]:
    """A valid event, with some fields changed (or left out with DROP)."""
    obj: dict[str, Any] = {
        "seq": 1,
        "event": "created",
        "path": "/hostil/a.txt",
        "is_dir": False,
        "ts": "2026-01-01T12:00:00+00:00",
        "origin": "live",
    }
    obj.update(changes)
    return {key: value for key, value in obj.items() if value is not DROP}


def batch(*events: Any) -> str:
    return json.dumps({"type": "events", "events": list(events)})


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def refused_handshake(uri: str, port: int, **kwargs: Any) -> tuple[InvalidStatus, str]:
    """Open a WebSocket the server must refuse before the upgrade; its InvalidStatus and our peer name."""
    sock = socket.create_connection((LOOPBACK, port), timeout=TIMEOUT)
    try:
        peer = f"{LOOPBACK}:{sock.getsockname()[1]}"
        with pytest.raises(InvalidStatus) as info, connect(uri, sock=sock, proxy=None, **kwargs):
            pass
    finally:
        sock.close()
    return info.value, peer


def raw_handshake(port: int, extra: list[tuple[str, str]]) -> tuple[int, str]:
    """A handshake written by hand (so headers can repeat); the HTTP status and our peer name."""
    request = (
        "GET / HTTP/1.1\r\n"
        f"Host: {LOOPBACK}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n" + "".join(f"{name}: {value}\r\n" for name, value in extra) + "\r\n"
    )
    with socket.create_connection((LOOPBACK, port), timeout=TIMEOUT) as sock:
        peer = f"{LOOPBACK}:{sock.getsockname()[1]}"
        sock.sendall(request.encode("latin-1"))
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    assert match is not None, data
    return int(match.group(1)), peer


def delivered(server: ServerProcess, directory: Path, name: str, client: str = "cli") -> str:
    """Create ``directory/name`` and wait until ``server`` shows it; the line (without timestamp)."""
    touch(directory / name)
    line = f"[{client}] arquivo criado: {directory}/{name}"
    server.wait_for_line(line)
    return line


# ---------------------------------------------------------------------------
# 1. Token.
# ---------------------------------------------------------------------------

REFUSED_401 = "token ausente ou inválido"


def refusals(server: ServerProcess, reason: str) -> list[str]:
    pattern = re.compile(rf"Aviso: conexão de 127\.0\.0\.1:\d+ recusada: {re.escape(reason)}$")
    return [line for line in server.lines("stderr") if pattern.search(line)]


def assert_fatal_401(client: ClientProcess, server: ServerProcess, directory: Path, started: float) -> None:
    """The client stops at once with exactly one Portuguese error line, after exactly one attempt."""
    assert client.wait(TIMEOUT) == 1, client.describe()
    elapsed = time.monotonic() - started
    expected = (
        f"Erro: não foi possível conectar a {server.uri}: token recusado (HTTP 401); confira --token ou {TOKEN_ENV}"
    )
    assert plain(client.lines("stderr")) == [f"Monitorando {directory} (com subdiretórios)", expected], (
        client.describe()
    )
    assert client.lines("stdout") == [], client.describe()
    assert elapsed < 15, f"{elapsed:.1f} s to give up: it should not retry\n{client.describe()}"


@pytest.mark.parametrize("mode", ["env", "flag"])
def test_token_required(procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    if mode == "env":
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        server = procs.server()
    else:
        monkeypatch.setenv(TOKEN_ENV, "isca")  # --token wins over the environment
        server = procs.server(args=["--token", TOKEN])
    dirs = {name: tmp_path / name for name in ("bom_env", "bom_flag", "errado", "sem")}
    for directory in dirs.values():
        directory.mkdir()

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    good_env = procs.client(dirs["bom_env"], server.uri, "bom_env", connected_to=server)
    monkeypatch.setenv(TOKEN_ENV, "errado-no-ambiente")  # --token wins here too
    good_flag = procs.client(dirs["bom_flag"], server.uri, "bom_flag", connected_to=server, args=["--token", TOKEN])
    monkeypatch.delenv(TOKEN_ENV)

    assert refusals(server, REFUSED_401) == []
    started = time.monotonic()
    wrong = procs.client(dirs["errado"], server.uri, "errado", args=["--token", "errado"])
    assert_fatal_401(wrong, server, dirs["errado"], started)
    wait_until(lambda: len(refusals(server, REFUSED_401)) >= 1, describe=server.describe)
    assert len(refusals(server, REFUSED_401)) == 1, server.describe()  # one attempt, no retry
    started = time.monotonic()
    missing = procs.client(dirs["sem"], server.uri, "sem")
    assert_fatal_401(missing, server, dirs["sem"], started)
    wait_until(lambda: len(refusals(server, REFUSED_401)) >= 2, describe=server.describe)
    assert len(refusals(server, REFUSED_401)) == 2, server.describe()  # one attempt, no retry

    # Raw handshakes: a plain HTTP 401 with a Bearer challenge, before any WebSocket exists.
    for authorization in [None, "Bearer errado", "Bearer isca", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN]:
        headers = None if authorization is None else {"Authorization": authorization}
        exc, peer = refused_handshake(server.uri, server.port, additional_headers=headers)
        assert exc.response.status_code == 401, authorization
        assert exc.response.headers.get_all("WWW-Authenticate") == ["Bearer"]
        assert exc.response.body == "Token ausente ou inválido.\n".encode()
        server.wait_for_line(f"Aviso: conexão de {peer} recusada: {REFUSED_401}", "stderr")
        assert lines_about(server, peer) == [f"Aviso: conexão de {peer} recusada: {REFUSED_401}"]

    with connect(server.uri, proxy=None, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        peer = peer_of(ws)
        ws.send("com token")
        server.wait_for_line(f"[{peer}] mensagem: com token")

    # The good clients were served all along.
    expected = [
        delivered(server, dirs["bom_env"], "depois.txt", "bom_env"),
        delivered(server, dirs["bom_flag"], "depois.txt", "bom_flag"),
    ]
    assert server.stripped() == [f"[{peer}] mensagem: com token", *expected], server.describe()
    for client in (good_env, good_flag):
        assert client.running()
        assert plain(client.lines("stderr"))[1:] == [f"Conectado a {server.uri}"], client.describe()
    no_traceback(server, good_env, good_flag, wrong, missing)
    for script in (server, good_env, good_flag, wrong, missing):
        assert TOKEN.encode() not in script.raw("stdout") + script.raw("stderr"), script.describe()


def test_token_that_http_cannot_carry_never_leaks(
    procs: Processes, watched: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token outside Latin-1 cannot travel in an HTTP header: work anyway, or say so, but never print it."""
    secret = "senha€"
    monkeypatch.setenv(TOKEN_ENV, secret)
    server = procs.server(wait=False)
    server.wait_for(lambda: any("ouvindo em" in line or line.startswith("Erro: ") for line in server.lines("stderr")))
    if any(line.startswith("Erro: ") for line in server.lines("stderr")):
        server.wait()  # refused at start: let it exit before asking whether it runs
    if server.running():
        server.wait_ready()
        client = procs.client(watched, server.uri, "cli")
        client.wait_for(
            lambda: not client.running() or any("Conectado a" in line for line in client.lines("stderr")),
            what="a connection or an exit",
        )
        if client.running():  # it works end to end
            delivered(server, watched, "ok.txt")
        else:
            errors = [line for line in client.lines("stderr") if line.startswith("Erro: ")]
            assert len(errors) == 1 and "token" in errors[0], client.describe()
        scripts: list[ClientProcess | ServerProcess] = [server, client]
    else:  # refused at start
        errors = [line for line in server.lines("stderr") if line.startswith("Erro: ")]
        assert len(errors) == 1 and "token" in errors[0], server.describe()
        scripts = [server]
    for script in scripts:
        for stream in ("stdout", "stderr"):
            assert secret not in script.raw(stream).decode("utf-8", "replace"), script.describe()


@pytest.mark.parametrize("header", ["Authorization", "Origin"])
def test_repeated_header_is_refused_cleanly(procs: Processes, monkeypatch: pytest.MonkeyPatch, header: str) -> None:
    """Two Authorization (or Origin) headers: a refusal like any other, logged; not an internal error."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server = procs.server()
    extra = [("Authorization", f"Bearer {TOKEN}")]
    if header == "Authorization":
        extra.append(("Authorization", f"Bearer {TOKEN}"))
    else:
        extra += [("Origin", f"http://{LOOPBACK}:{server.port}"), ("Origin", "http://evil.example")]
    status, peer = raw_handshake(server.port, extra)
    assert status in (400, 401, 403), f"HTTP {status}\n{server.describe()}"
    line = server.wait_for_line(re.compile(rf"Aviso: conexão de {re.escape(peer)} recusada: "), "stderr", 5)
    assert lines_about(server, peer) == [strip_ts(line)]
    assert server.running()


# ---------------------------------------------------------------------------
# 2. TLS.
# ---------------------------------------------------------------------------

_LISTENING_TLS = re.compile(r"Servidor WebSocket ouvindo em wss://127\.0\.0\.1:(\d+)$")


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not
    chain: Path
    key: Path


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    ca = trustme.CA()
    leaf = ca.issue_cert(LOOPBACK, "localhost")
    files = Certificates(tmp_path / "ca.pem", tmp_path / "outra_ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    files.chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


def start_tls_server(procs: Processes, certs: Certificates) -> tuple[ServerProcess, str]:
    server = procs.server(args=["--cert", str(certs.chain), "--key", str(certs.key)], wait=False)
    match = _LISTENING_TLS.search(server.wait_for_line(_LISTENING_TLS, "stderr"))
    assert match is not None
    return server, f"wss://{LOOPBACK}:{match.group(1)}"


def test_tls(procs: Processes, tmp_path: Path, certificates: Certificates) -> None:
    server, uri = start_tls_server(procs, certificates)
    port = int(uri.rsplit(":", 1)[1])
    dirs = {name: tmp_path / name for name in ("bom", "outra_ca", "sem_ca", "sem_tls")}
    for directory in dirs.values():
        directory.mkdir()

    good = procs.client(dirs["bom"], uri, "cli", connected_to=server, args=["--cafile", str(certificates.ca)])
    good.wait_for_line(f"Conectado a {uri}", "stderr")
    first = delivered(server, dirs["bom"], "seguro.txt")

    untrusted = (
        f"Erro: falha de TLS com {uri}: certificado do servidor não confiável "
        "(unable to get local issuer certificate); indique a CA com --cafile"
    )
    for name, args in [("outra_ca", ["--cafile", str(certificates.other_ca)]), ("sem_ca", [])]:
        client = procs.client(dirs[name], uri, name, args=args)
        assert client.wait(TIMEOUT) == 1, client.describe()
        assert plain(client.lines("stderr")) == [f"Monitorando {dirs[name]} (com subdiretórios)", untrusted]
        assert client.lines("stdout") == []
        no_traceback(client)

    # ws:// to a wss:// server: a transient failure with a hint, retried until stopped.
    plain_uri = f"ws://{LOOPBACK}:{port}"
    cleartext = procs.client(dirs["sem_tls"], plain_uri, "sem_tls")
    cleartext.wait_for_line(
        f"Sem conexão com {plain_uri}: resposta inválida do servidor (ele usa TLS? então a URI é {uri}); "
        "tentando novamente...",
        "stderr",
    )
    assert cleartext.stop(signal.SIGTERM) == 0, cleartext.describe()
    no_traceback(cleartext)

    # A raw client: trusted through the CA, refused by the system's CAs.
    context = ssl.create_default_context(cafile=str(certificates.ca))
    with connect(uri, ssl=context, proxy=None) as ws:
        peer = peer_of(ws)
        ws.send("por TLS")
        server.wait_for_line(f"[{peer}] mensagem: por TLS")
    with pytest.raises(ssl.SSLCertVerificationError), connect(uri, ssl=ssl.create_default_context(), proxy=None):
        pass

    second = delivered(server, dirs["bom"], "ainda_seguro.txt")
    assert server.stripped() == [first, f"[{peer}] mensagem: por TLS", second], server.describe()
    assert good.running() and server.running()
    no_traceback(server, good)


@pytest.mark.parametrize("problem", ["expirado", "outro_nome", "outro_ip"])
def test_tls_certificate_expired_or_for_another_host_gets_a_fitting_hint(
    procs: Processes, tmp_path: Path, problem: str
) -> None:
    """Signed by the CA the client trusts, but expired, or issued for a name that is not the URI's."""
    ca = trustme.CA()
    if problem == "expirado":
        now = datetime.datetime.now(datetime.UTC)
        leaf = ca.issue_cert(
            LOOPBACK, not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
        )
        hint = "o certificado do servidor expirou; ele precisa de um certificado novo"
    else:  # the URI names the server as localhost (a host name) or as 127.0.0.1 (an IP address)
        leaf = ca.issue_cert("servidor.exemplo")
        host = "localhost" if problem == "outro_nome" else LOOPBACK
        hint = f"o certificado do servidor não vale para {host}; use na URI um nome que o certificado tenha"
    certs = Certificates(tmp_path / "ca.pem", tmp_path / "outra_ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    certs.chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(certs.key))
    server, uri = start_tls_server(procs, certs)
    if problem == "outro_nome":
        uri = uri.replace(LOOPBACK, "localhost")
    watched = tmp_path / "monitorado"
    watched.mkdir()
    client = procs.client(watched, uri, "cli", args=["--cafile", str(certs.ca)])
    assert client.wait(TIMEOUT) == 1, client.describe()
    assert plain(client.lines("stderr")) == [
        f"Monitorando {watched} (com subdiretórios)",
        f"Erro: falha de TLS com {uri}: {hint}",
    ], client.describe()
    no_traceback(client)
    assert server.running()


# ---------------------------------------------------------------------------
# 3. Origin.
# ---------------------------------------------------------------------------


def test_foreign_origin_is_refused(procs: Processes) -> None:
    server = procs.server()
    port = server.port
    foreign = [
        "http://evil.example",
        "null",
        f"http://{LOOPBACK}:{port + 1}",
        f"http://{LOOPBACK}",
        f"http://{LOOPBACK}:{port}.evil.example",
        f"http://{LOOPBACK}:{port}@evil.example",
        f"http://localhost:{port}",  # another name for the same server is another origin
    ]
    for origin in foreign:
        exc, peer = refused_handshake(server.uri, port, origin=Origin(origin))
        assert exc.response.status_code == 403, origin
        assert exc.response.body == "Origem não permitida.\n".encode()
        line = f"Aviso: conexão de {peer} recusada: origem não permitida"
        server.wait_for_line(line, "stderr")
        assert lines_about(server, peer) == [line]

    with connect(server.uri, proxy=None, origin=Origin(f"http://{LOOPBACK}:{port}")) as ws:
        peer = peer_of(ws)
        ws.send("mesma origem")
        server.wait_for_line(f"[{peer}] mensagem: mesma origem")
    assert server.stripped() == [f"[{peer}] mensagem: mesma origem"]
    assert server.running()


# ---------------------------------------------------------------------------
# 5-6. Hostile messages, against one shared server and a real client connected all along.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Hub:
    server: ServerProcess
    client: ClientProcess
    watched: Path
    serial: Iterator[int]

    def deliver(self) -> str:
        """A new file from the real client, shown by the server; its line."""
        return delivered(self.server, self.watched, f"arquivo_{next(self.serial):03d}.txt")

    def assert_undisturbed(self) -> None:
        assert self.server.running() and self.client.running()
        status = plain(self.client.lines("stderr"))
        assert status == [f"Monitorando {self.watched} (com subdiretórios)", f"Conectado a {self.server.uri}"], (
            self.client.describe()
        )
        connected = [
            line for line in self.server.stripped("stderr") if re.match(r"cliente (des)?conectado: cli ", line)
        ]
        assert len(connected) == 1, self.server.describe()
        no_traceback(self.server, self.client)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("hub")
    group = Processes(base / "cwd")
    try:
        server = group.server(args=["--max-mensagem", str(SMALL_MAX)])
        watched = base / "monitorado"
        watched.mkdir()
        client = group.client(watched, server.uri, "cli", connected_to=server)
        client.wait_for_line(f"Conectado a {server.uri}", "stderr")
        yield Hub(server, client, watched, iter(range(1, 100_000)))
    finally:
        group.cleanup()


@dataclasses.dataclass(frozen=True)
class Violation:
    id: str
    frame: str | bytes
    reason: str  # what the server says (str of its ProtocolError)
    code: int = 1008


def long_value_violations() -> list[Violation]:
    """Reasons that quote a hostile value at length: more than a close frame can carry."""
    return [
        Violation(
            "tipo-longo-nao-ascii",
            json.dumps({"type": "ç" * 100}),
            f"tipo de mensagem inesperado: {'ç' * 100!r}"[:100],
        ),
        Violation(
            "evento-longo-emoji",
            batch(event(event="😀" * 40)),
            f"tipo de evento desconhecido: {'😀' * 40!r}"[:100],
        ),
        Violation(
            "origem-longa-nao-ascii",
            batch(event(origin="ã" * 90)),
            f"origem desconhecida: {'ã' * 90!r}"[:100],
        ),
    ]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


SESSION_VIOLATIONS = [
    Violation("binario", b"\x00\x01\x02", "mensagem binária; o protocolo usa texto", 1003),
    Violation("vazio", "", "mensagem não é JSON válido"),
    Violation("json-invalido", "{events", "mensagem não é JSON válido"),
    Violation("json-truncado", batch(event())[:-7], "mensagem não é JSON válido"),
    Violation(
        "inteiro-de-5000-digitos",
        '{"type": "events", "events": [{"seq": ' + "9" * 5000 + "}]}",
        "mensagem não é JSON válido",
    ),
    Violation("aninhamento-profundo", nested(20_000), "mensagem não é JSON válido"),
    Violation(
        "aninhamento-dentro-do-evento",
        batch(event()).replace('"origin"', '"x": ' + nested(20_000) + ', "origin"'),
        "mensagem não é JSON válido",
    ),
    Violation("objetos-aninhados", '{"a": ' * 9_000 + "1" + "}" * 9_000, "mensagem não é JSON válido"),
    Violation("lista", "[]", "mensagem não é um objeto JSON"),
    Violation("texto-json", '"events"', "mensagem não é um objeto JSON"),
    Violation("numero", "12", "mensagem não é um objeto JSON"),
    Violation("sem-tipo", json.dumps({"events": [event()]}), "tipo de mensagem inesperado: None"),
    Violation("tipo-desconhecido", '{"type": "reboot"}', "tipo de mensagem inesperado: 'reboot'"),
    Violation("hello-repetido", hello_frame(), "tipo de mensagem inesperado: 'hello'"),
    Violation("tipo-nao-texto", '{"type": ["events"]}', "tipo de mensagem inesperado: ['events']"),
    Violation("tipo-longo", json.dumps({"type": "A" * 500}), f"tipo de mensagem inesperado: {'A' * 500!r}"[:100]),
    Violation(
        "tipo-com-controles",
        json.dumps({"type": "\x1b[2J\u202e\x85"}),
        "tipo de mensagem inesperado: '\\x1b[2J\\u202e\\x85'",
    ),
    *long_value_violations(),
    Violation("events-ausente", '{"type": "events"}', "campo 'events' ausente ou vazio"),
    Violation("events-vazio", batch(), "campo 'events' ausente ou vazio"),
    Violation("events-objeto", '{"type": "events", "events": {"seq": 1}}', "campo 'events' ausente ou vazio"),
    Violation("evento-nao-objeto", batch(1), "evento não é um objeto JSON"),
    Violation("evento-nulo", batch(None), "evento não é um objeto JSON"),
    *[
        Violation(f"seq-{name}", batch(event(seq=value)), "campo 'seq' ausente ou fora do intervalo")
        for name, value in [
            ("ausente", DROP),
            ("zero", 0),
            ("negativa", -1),
            ("2-53-mais-1", 2**53 + 1),
            ("enorme", 10**30),
            ("booleana", True),
            ("fracionaria", 1.5),
            ("inteira-em-float", 1.0),
            ("texto", "1"),
            ("nula", None),
            ("lista", [1]),
        ]
    ],
    Violation("seq-nan", batch(event()).replace('"seq": 1', '"seq": NaN'), "campo 'seq' ausente ou fora do intervalo"),
    Violation(
        "seq-infinita", batch(event()).replace('"seq": 1', '"seq": 1e400'), "campo 'seq' ausente ou fora do intervalo"
    ),
    Violation("seq-repetida", batch(event(seq=2), event(seq=2)), "números de sequência fora de ordem"),
    Violation("seq-decrescente", batch(event(seq=3), event(seq=2)), "números de sequência fora de ordem"),
    Violation("evento-desconhecido", batch(event(event="exploded")), "tipo de evento desconhecido: 'exploded'"),
    Violation("evento-nao-texto", batch(event(event=["created"])), "tipo de evento desconhecido: ['created']"),
    Violation("evento-ausente", batch(event(event=DROP)), "tipo de evento desconhecido: None"),
    Violation("origem-desconhecida", batch(event(origin="satellite")), "origem desconhecida: 'satellite'"),
    *[
        Violation(f"is-dir-{name}", batch(event(is_dir=value)), "campo 'is_dir' ausente ou não é booleano")
        for name, value in [("ausente", DROP), ("texto", "false"), ("zero", 0), ("nulo", None)]
    ],
    Violation("ts-ausente", batch(event(ts=DROP)), "campo 'ts' ausente ou não é texto"),
    Violation("ts-numero", batch(event(ts=1767268800)), "campo 'ts' ausente ou não é texto"),
    Violation("ts-invalido", batch(event(ts="ontem")), "campo 'ts' não é uma data ISO 8601"),
    Violation("ts-sem-fuso", batch(event(ts="2026-01-01T12:00:00")), "campo 'ts' sem fuso horário"),
    Violation("ts-fora-do-intervalo", batch(event(ts="0001-01-01T00:00:00+01:00")), "campo 'ts' fora do intervalo"),
    Violation("ts-longo", batch(event(ts="2" * 20_000)), "campo 'ts' longo demais"),
    Violation("path-ausente", batch(event(path=DROP)), "campo 'path' ausente ou não é texto"),
    Violation("path-numero", batch(event(path=42)), "campo 'path' ausente ou não é texto"),
    Violation("path-16-kib-mais-1", batch(event(path="/" + "a" * 16_384)), "campo 'path' longo demais"),
    Violation("path-surrogate", batch(event(path="/hostil/\ud800")), "campo 'path' tem surrogates isolados"),
    Violation("moved-sem-destino", batch(event(event="moved")), "'dest_path' é obrigatório em 'moved' e só nele"),
    Violation(
        "created-com-destino", batch(event(dest_path="/hostil/b")), "'dest_path' é obrigatório em 'moved' e só nele"
    ),
    Violation("destino-longo", batch(event(event="moved", dest_path="b" * 16_385)), "campo 'dest_path' longo demais"),
    Violation(
        "destino-surrogate",
        batch(event(event="moved", dest_path="/\udcff")),
        "campo 'dest_path' tem surrogates isolados",
    ),
    Violation("path-b64-invalido", batch(event(path_b64="não é base64!")), "campo 'path_b64' não é base64"),
    Violation("path-b64-com-espaco", batch(event(path_b64="YW Jj")), "campo 'path_b64' não é base64"),
    Violation("path-b64-numero", batch(event(path_b64=7)), "campo 'path_b64' ausente ou não é texto"),
    Violation(
        "segundo-evento-ruim",
        batch(event(seq=1), event(seq=2, is_dir="x")),
        "campo 'is_dir' ausente ou não é booleano",
    ),
]

UNSUPPORTED_VERSION = "versão de protocolo não suportada (este servidor fala 1, 2 e 3)"
HELLO_VIOLATIONS = [
    Violation(f"versao-{name}", hello_frame(version=value), f"{UNSUPPORTED_VERSION}: {shown}")
    for name, value, shown in [
        ("4", 4, "4"),
        ("0", 0, "0"),
        ("texto", "1", "'1'"),
        ("booleana", True, "True"),
        ("float", 1.0, "1.0"),
        ("ausente", DROP, "None"),
        ("lista", [1], "[1]"),
    ]
] + [
    Violation("versao-longa", hello_frame(version="x" * 300), f"{UNSUPPORTED_VERSION}: {'x' * 300!r}"),
    Violation("client-id-ausente", hello_frame(client_id=DROP), "campo 'client_id' ausente ou não é texto"),
    Violation("client-id-vazio", hello_frame(client_id=""), "campo 'client_id' vazio"),
    Violation("client-id-numero", hello_frame(client_id=7), "campo 'client_id' ausente ou não é texto"),
    Violation("client-id-longo", hello_frame(client_id="f" * 16_385), "campo 'client_id' longo demais"),
    Violation("nome-nulo", hello_frame(name=None), "campo 'name' ausente ou não é texto"),
    Violation("nome-longo", hello_frame(name="n" * 16_385), "campo 'name' longo demais"),
    Violation("nome-surrogate", hello_frame(name="\udc80"), "campo 'name' tem surrogates isolados"),
    Violation("raiz-surrogate", hello_frame(root="/\ud800"), "campo 'root' tem surrogates isolados"),
    Violation("raiz-lista", hello_frame(root=["/"]), "campo 'root' ausente ou não é texto"),
]
HELLO_VIOLATIONS += [
    # An unhashable value once reached a dict lookup: a TypeError, closed with 1011 "erro interno".
    Violation(
        f"path-style-{name}",
        hello_frame(version=2, secret="ab" * 16, path_style=value),
        "campo 'path_style' deve ser 'posix' ou 'windows'",
    )
    for name, value in [("lista", []), ("objeto", {}), ("lista-posix", ["posix"]), ("numero", 1), ("nulo", None)]
]


def assert_violation_reported(hub: Hub, peer: str, close: Close, violation: Violation, since: int) -> None:
    """The close frame carries the code and the reason (cut to fit a close frame), and one warning is logged."""
    fits = len(violation.reason.encode()) <= CLOSE_REASON_MAX
    if fits:
        assert (close.code, close.reason) == (violation.code, violation.reason)
    else:
        assert close.code == violation.code, f"close {close.code} {close.reason!r}: expected {violation.code}"
        stem = violation.reason.split(": ", 1)[0] + ": "
        assert close.reason.startswith(stem) and violation.reason.startswith(close.reason), close.reason
        assert len(close.reason.encode()) <= CLOSE_REASON_MAX
    warning_prefix = f"Aviso: {peer} violou o protocolo: "
    hub.server.wait_for_line(re.compile(re.escape(warning_prefix)), "stderr")
    warnings = [line for line in lines_about(hub.server, peer, since) if line.startswith(warning_prefix)]
    assert len(warnings) == 1, hub.server.describe()
    logged = warnings[0][len(warning_prefix) :]
    if fits:
        assert logged == violation.reason
    else:
        assert violation.reason.startswith(logged) and logged.startswith(close.reason), logged


@pytest.mark.parametrize("violation", SESSION_VIOLATIONS, ids=lambda violation: violation.id)
def test_protocol_violation_after_hello(hub: Hub, violation: Violation) -> None:
    mark, since = len(hub.server.lines()), len(hub.server.lines("stderr"))
    client_id = uuid.uuid4().hex
    with connect(hub.server.uri, proxy=None, compression=None) as ws:
        peer = peer_of(ws)
        ws.send(hello_frame(client_id))
        assert json.loads(ws.recv(TIMEOUT)) == {"type": "welcome", "version": 1, "ack": 0}
        ws.send(violation.frame)
        close = closed_by_server(ws)
    assert_violation_reported(hub, peer, close, violation, since)
    label = f"hostil (id {client_id[:8]}, {peer})"
    hub.server.wait_for_line(f"cliente desconectado: {label}", "stderr")
    assert lines_about(hub.server, peer, since)[:2] == [
        f"cliente conectado: {label} monitorando /hostil",
        f"cliente desconectado: {label}",
    ]
    assert len(lines_about(hub.server, peer, since)) == 3
    # Nothing of the hostile session was printed; the real client's next event arrives intact.
    line = hub.deliver()
    assert hub.server.stripped()[mark:] == [line], hub.server.describe()
    hub.assert_undisturbed()


@pytest.mark.parametrize("violation", HELLO_VIOLATIONS, ids=lambda violation: violation.id)
def test_malformed_hello(hub: Hub, violation: Violation) -> None:
    mark, since = len(hub.server.lines()), len(hub.server.lines("stderr"))
    with connect(hub.server.uri, proxy=None, compression=None) as ws:
        peer = peer_of(ws)
        ws.send(violation.frame)
        close = closed_by_server(ws)
    assert_violation_reported(hub, peer, close, violation, since)
    assert len(lines_about(hub.server, peer, since)) == 1  # no "cliente conectado": it never was one
    line = hub.deliver()
    assert hub.server.stripped()[mark:] == [line], hub.server.describe()
    hub.assert_undisturbed()


TOO_BIG = f"frame with 70000 bytes exceeds limit of {SMALL_MAX} bytes"
LIMIT_CASES: dict[str, tuple[Any, bool | None, int, str]] = {
    "texto-grande": ("x" * 70_000, None, 1009, TOO_BIG),
    "binario-grande": (b"\x00" * 70_000, None, 1009, TOO_BIG),
    "fragmentos": (
        ["y" * 20_000] * 5,
        None,
        1009,
        f"frame with 20000 bytes after reading 60000 bytes exceeds limit of {SMALL_MAX} bytes",
    ),
    "utf8-invalido": (b"ok \xff\xfe", True, 1007, "invalid start byte at position 3"),
}


@pytest.mark.parametrize("case", list(LIMIT_CASES))
@pytest.mark.parametrize("session", ["protocolo", "texto", "primeira-mensagem"])
def test_message_limits(hub: Hub, session: str, case: str) -> None:
    """Over --max-mensagem (whole or in fragments): 1009; invalid UTF-8 in a text frame: 1007."""
    payload, text, code, reason = LIMIT_CASES[case]
    mark, since = len(hub.server.lines()), len(hub.server.lines("stderr"))
    client_id = uuid.uuid4().hex
    printed: list[str] = []
    with connect(hub.server.uri, proxy=None, compression=None, max_size=None) as ws:
        peer = peer_of(ws)
        if session == "protocolo":
            ws.send(hello_frame(client_id))
            assert json.loads(ws.recv(TIMEOUT))["type"] == "welcome"
        elif session == "texto":
            ws.send("olá, servidor")
            printed.append(hub.server.wait_for_line(f"[{peer}] mensagem: olá, servidor"))
        with contextlib.suppress(ConnectionClosed):  # the server may close before the last fragment
            ws.send(payload, text=text)
        close = closed_by_server(ws)
    assert (close.code, close.reason) == (code, reason)
    line = hub.deliver()
    assert hub.server.stripped()[mark:] == [*map(strip_ts, printed), line], hub.server.describe()
    expected = {
        "protocolo": [
            f"cliente conectado: hostil (id {client_id[:8]}, {peer}) monitorando /hostil",
            f"cliente desconectado: hostil (id {client_id[:8]}, {peer})",
        ],
        "texto": [f"conexão de {peer} (mensagens de texto)", f"conexão de {peer} encerrada"],
        "primeira-mensagem": [],
    }[session]
    wait_until(lambda: len(lines_about(hub.server, peer, since)) >= len(expected), describe=hub.server.describe)
    assert lines_about(hub.server, peer, since) == expected
    hub.assert_undisturbed()


def test_messages_at_the_limit_are_shown(hub: Hub) -> None:
    mark = len(hub.server.lines())
    with connect(hub.server.uri, proxy=None, compression=None) as ws:
        peer = peer_of(ws)
        ws.send("é" * (SMALL_MAX // 2))  # exactly SMALL_MAX bytes of UTF-8
        ws.send(b"\xff" * SMALL_MAX)
        ws.send(["z" * (SMALL_MAX // 4)] * 4)  # fragments adding up to exactly the limit
        expected = [
            f"[{peer}] mensagem: {'é' * (SMALL_MAX // 2)}",
            f"[{peer}] mensagem: <{SMALL_MAX} bytes binários>",
            f"[{peer}] mensagem: {'z' * SMALL_MAX}",
        ]
        hub.server.wait_for_lines(expected)
    assert hub.server.stripped()[mark:] == expected
    hub.assert_undisturbed()


# ---------------------------------------------------------------------------
# 7. Flood.
# ---------------------------------------------------------------------------

FLOOD_CONNECTIONS = 300
FLOOD_CONCURRENCY = 32
FLOOD_FRAMES = 50
FLOOD_MAX_MESSAGE = 300_000  # above the client's 256 KiB batches
FLOOD_FILES_DURING = 150
FLOOD_FILES_AFTER = 50
FLOOD_RSS_LIMIT_KIB = 150 * 1024
FLOOD_SEED = 20261125

_TEXT_POOL = (
    [chr(code) for code in range(0x20, 0x7F)] * 3
    + [chr(code) for code in range(0x00, 0x20)]
    + ["\x7f"]
    + [chr(code) for code in range(0x80, 0xA0)]
    + list(BIDI)
    + list("áçõ€ßñ中文字😀🎉\u0301\u2028\u2029\ufeff\uffff\ufffd")
    + list('{}[]":,\\')
)

FLOOD_GARBAGE: list[tuple[str | bytes, bool | None, int]] = [
    (batch(event())[:-9], None, 1008),
    (batch(event(seq=2**53 + 1)), None, 1008),
    (batch(event(seq=True)), None, 1008),
    (batch(event(seq=-1)), None, 1008),
    (nested(5000), None, 1008),
    ('{"a": ' * 3000 + "1" + "}" * 3000, None, 1008),
    (batch(event(path="p" * 16_385)), None, 1008),
    (batch(event(path="/\ud800")), None, 1008),
    ('{"type": "reboot"}', None, 1008),
    (batch(event(seq=5), event(seq=5)), None, 1008),
    (b"\x00\x01binario", None, 1003),
    ('{"type": "events", "events": [{"seq": NaN}]}', None, 1008),
    ("x" * (FLOOD_MAX_MESSAGE + 1), None, 1009),
    (b"\xc3\x28 utf-8 invalido", True, 1007),
]

FLOOD_BAD_HELLOS = [
    hello_frame(version=2),
    hello_frame(client_id=""),
    hello_frame(name="n" * 16_385),
    hello_frame(root="/\ud800"),
    hello_frame(version=True),
]

Frame = tuple[str | bytes | list[str], bool | None]  # what to send, and send()'s text flag


@dataclasses.dataclass(frozen=True)
class Plan:
    kind: str
    frames: list[Frame]
    code: int  # how the connection must end: 1000 (we close), 1006 (we abort), else the server's code


@dataclasses.dataclass
class FloodStats:
    connections: int = 0
    frames: int = 0
    codes: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    mismatches: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)


def random_text(rng: random.Random, longest: int = 120) -> str:
    return "".join(rng.choice(_TEXT_POOL) for _ in range(rng.randint(0, longest)))


def flood_plans(rng: random.Random) -> list[Plan]:
    kinds = ["texto", "binario", "protocolo", "misto", "texto", "abortar", "protocolo", "binario", "hello", "grande"]
    plans: list[Plan] = []
    for index in range(FLOOD_CONNECTIONS):
        kind = kinds[index % len(kinds)]
        frames: list[Frame]
        if kind == "texto":
            plans.append(Plan(kind, [(random_text(rng), None) for _ in range(FLOOD_FRAMES)], 1000))
        elif kind == "binario":
            frames = [(rng.randbytes(rng.randint(0, 256)), None) for _ in range(FLOOD_FRAMES)]
            plans.append(Plan(kind, frames, 1000))
        elif kind == "misto":
            frames = [(random_text(rng), None)]
            frames += [
                (random_text(rng), None) if rng.random() < 0.5 else (rng.randbytes(rng.randint(1, 64)), None)
                for _ in range(FLOOD_FRAMES - 2)
            ]
            frames.append((b"\xff" + rng.randbytes(8), True))  # not UTF-8 in a text frame
            plans.append(Plan(kind, frames, 1007))
        elif kind == "protocolo":
            client_id = f"{rng.getrandbits(128):032x}"
            frames = [(hello_frame(client_id, name=f"hostil-{index}"), None)]
            seq = 0
            for _ in range(FLOOD_FRAMES - 2):
                if seq and rng.random() < 0.2:  # resent: silently dropped by the server
                    frames.append((batch(event(seq=seq, path=f"/hostil/{index}/{seq}")), None))
                    continue
                events = []
                for _ in range(rng.randint(1, 3)):
                    seq += rng.randint(1, 3)
                    events.append(event(seq=seq, path=f"/hostil/{index}/{seq}"))
                frames.append((batch(*events), None))
            garbage, text, code = FLOOD_GARBAGE[(index // len(kinds)) % len(FLOOD_GARBAGE)]
            frames.append((garbage, text))
            plans.append(Plan(kind, frames, code))
        elif kind == "abortar":
            plans.append(Plan(kind, [(random_text(rng), None) for _ in range(FLOOD_FRAMES // 2)], 1006))
        elif kind == "hello":
            plans.append(Plan(kind, [(FLOOD_BAD_HELLOS[index % len(FLOOD_BAD_HELLOS)], None)], 1008))
        else:  # grande
            frames = [("x", None), *((random_text(rng), None) for _ in range(3))]
            size = FLOOD_MAX_MESSAGE + rng.randint(1, 50_000)
            frames.append(("g" * size, None) if index % 2 else (b"G" * size, None))
            plans.append(Plan(kind, frames, 1009))
    return plans


async def drain_until_closed(ws: AsyncClientConnection) -> None:
    """Read (and drop) whatever the server sends until it closes the connection."""
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


async def run_plan(uri: str, index: int, plan: Plan, stats: FloodStats, gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            async with async_connect(
                uri,
                proxy=None,
                compression=None,
                max_size=None,
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
                ping_interval=None,
            ) as ws:
                stats.connections += 1
                try:
                    for payload, text in plan.frames:
                        await ws.send(payload, text=text)
                        stats.frames += 1
                    if plan.code == 1006:
                        ws.transport.abort()
                    elif plan.code == 1000:
                        await ws.close()
                    else:
                        await asyncio.wait_for(drain_until_closed(ws), TIMEOUT)
                except ConnectionClosed:
                    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
                await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
                code = ws.close_code
        except (OSError, TimeoutError, InvalidStatus) as exc:
            stats.failures.append(f"#{index} {plan.kind}: {exc!r}")
            return
    assert code is not None
    stats.codes[code] += 1
    if code != plan.code:
        stats.mismatches.append(f"#{index} {plan.kind}: closed with {code}, expected {plan.code}")


async def flood(uri: str, plans: list[Plan], stats: FloodStats, create: Callable[[int], None]) -> int:
    """Run every plan; meanwhile create files as the frames go by. How many were created during the flood."""
    gate = asyncio.Semaphore(FLOOD_CONCURRENCY)
    tasks = [asyncio.create_task(run_plan(uri, index, plan, stats, gate)) for index, plan in enumerate(plans)]
    total = sum(len(plan.frames) for plan in plans)
    during = 0
    deadline = asyncio.get_running_loop().time() + 60
    for number in range(FLOOD_FILES_DURING):
        threshold = (number + 1) * (total // 2) // FLOOD_FILES_DURING  # spread over the first half
        while stats.frames < threshold and not all(task.done() for task in tasks):
            assert asyncio.get_running_loop().time() < deadline, "the flood stalled"
            await asyncio.sleep(0.005)
        during += not all(task.done() for task in tasks)
        create(number)
    await asyncio.gather(*tasks)
    return during


def test_flood_of_hostile_frames(procs: Processes, watched: Path) -> None:
    server = procs.server(json_output=True, args=["--max-mensagem", str(FLOOD_MAX_MESSAGE)])
    client = procs.client(watched, server.uri, "cli", connected_to=server)
    client.wait_for_line(f"Conectado a {server.uri}", "stderr")
    pid = server.proc.pid
    before = memory_kib(pid)
    plans = flood_plans(random.Random(FLOOD_SEED))
    names = [f"arquivo_{number:03d}.txt" for number in range(FLOOD_FILES_DURING + FLOOD_FILES_AFTER)]
    stats = FloodStats()
    started = time.monotonic()
    during = asyncio.run(flood(server.uri, plans, stats, lambda number: touch(watched / names[number])))
    flood_seconds = time.monotonic() - started
    for name in names[FLOOD_FILES_DURING:]:
        touch(watched / name)

    expected = [str(watched / name) for name in names]

    def real_records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in server.lines() if line.startswith('{"client": "cli", ')]

    wait_until(
        lambda: len(real_records()) >= len(expected),
        timeout=30,
        describe=lambda: f"{len(real_records())} of {len(expected)} events\n{server.describe()}\n{client.describe()}",
    )
    after = memory_kib(pid)
    records = real_records()
    stdout = server.raw("stdout")
    codes = dict(sorted((int(code), count) for code, count in stats.codes.items()))
    crashes = 0 if server.running() else 1
    disturbed = len([line for line in client.lines("stderr") if "perdida" in line or "Sem conexão" in line])
    figures = (
        f"flood: {stats.connections} connections, {stats.frames} frames in {flood_seconds:.1f} s, "
        f"close codes {codes}, {len(stats.failures)} failed to open, "
        f"{len(stats.mismatches)} unexpected closes; {during} files created during the flood; "
        f"server crashes {crashes}, real client disturbed {disturbed}; "
        f"server RSS {before['VmRSS']} KiB before, {after['VmRSS']} KiB after, peak {after['VmHWM']} KiB; "
        f"stdout {len(stdout)} bytes"
    )
    print(figures)

    assert server.running(), figures
    assert stats.failures == [], figures
    assert stats.mismatches == [], figures
    assert stats.connections == FLOOD_CONNECTIONS and stats.frames >= 10_000, figures
    assert during == FLOOD_FILES_DURING, figures
    # The real client: every file exactly once, in order, on its first connection.
    assert [(record["event"], record["path"]) for record in records] == [("created", path) for path in expected]
    assert [record["seq"] for record in records] == list(range(1, len(expected) + 1))
    assert plain(client.lines("stderr")) == [
        f"Monitorando {watched} (com subdiretórios)",
        f"Conectado a {server.uri}",
    ], client.describe()
    assert len([line for line in server.lines("stderr") if "cliente conectado: cli " in line]) == 1
    assert not [line for line in server.lines("stderr") if "cliente desconectado: cli " in line]
    assert not [line for line in server.lines("stderr") if "Erro" in line], server.describe()
    no_traceback(server, client)
    assert after["VmHWM"] < FLOOD_RSS_LIMIT_KIB, figures
    # Every line is JSON, and no raw control character reached the console.
    server.json_events()
    controls = sorted({f"0x{byte:02x}" for byte in stdout if (byte < 0x20 and byte != 0x0A) or byte == 0x7F})
    assert controls == [], f"raw control bytes on stdout: {controls}\n{figures}"


# ---------------------------------------------------------------------------
# 8. Half-open connections.
# ---------------------------------------------------------------------------

HALF_OPEN = 300


def wait_all_closed(sockets: list[socket.socket], timeout: float) -> dict[int, float]:
    """Wait until the peer closed each socket (EOF or reset); socket index -> when (monotonic)."""
    closed: dict[int, float] = {}
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, index)
        deadline = time.monotonic() + timeout
        while len(closed) < len(sockets):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                sock = sockets[key.data]
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed[key.data] = time.monotonic()
                    selector.unregister(sock)
    return closed


def test_half_open_connections_are_dropped(procs: Processes, watched: Path) -> None:
    server = procs.server(args=["--open-timeout", "1"])
    client = procs.client(watched, server.uri, "cli", connected_to=server)
    client.wait_for_line(f"Conectado a {server.uri}", "stderr")
    pid = server.proc.pid
    baseline = open_fds(pid)
    partial = [
        b"",  # connect and say nothing
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # half a request
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",  # all but the blank line
    ]
    sockets: list[socket.socket] = []
    opened: list[float] = []
    try:
        for index in range(HALF_OPEN):
            sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
            sockets.append(sock)
            opened.append(time.monotonic())
            if partial[index % len(partial)]:
                sock.sendall(partial[index % len(partial)])
        # Meanwhile the real client and a new WebSocket client are served.
        line = delivered(server, watched, "durante.txt")
        with connect(server.uri, proxy=None, open_timeout=TIMEOUT) as ws:
            peer = peer_of(ws)
            ws.send("ainda atendendo")
            server.wait_for_line(f"[{peer}] mensagem: ainda atendendo")
        closed = wait_all_closed(sockets, timeout=30)
    finally:
        for sock in sockets:
            sock.close()
    open_left = sorted(set(range(HALF_OPEN)) - set(closed))
    assert open_left == [], f"{len(open_left)} half-open connections never closed by the server"
    slowest = max(closed[index] - opened[index] for index in range(HALF_OPEN))
    assert slowest < 10, f"a half-open connection lasted {slowest:.1f} s with --open-timeout 1"
    wait_until(lambda: open_fds(pid) <= baseline, timeout=10, describe=lambda: f"{open_fds(pid)} fds > {baseline}")
    after = delivered(server, watched, "depois.txt")
    assert server.stripped() == [line, f"[{peer}] mensagem: ainda atendendo", after]
    assert server.running() and client.running()
    assert plain(client.lines("stderr")) == [f"Monitorando {watched} (com subdiretórios)", f"Conectado a {server.uri}"]
    no_traceback(server, client)


# ---------------------------------------------------------------------------
# 10-11. Hostile file names, on both consoles, in --json and in --banco.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class NamesHub:
    """Two clients watching one directory: one reports to a readable server with --banco, one to a --json server."""

    watched: Path
    text_server: ServerProcess
    json_server: ServerProcess
    text_client: ClientProcess
    json_client: ClientProcess
    stored: DatabaseEvents

    def log_records(self) -> list[dict[str, Any]]:
        return self.stored()


@pytest.fixture(scope="module")
def names_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamesHub]:
    base = tmp_path_factory.mktemp("nomes")
    group = Processes(base / "cwd")
    try:
        watched = base / "monitorado"
        watched.mkdir()
        database = base / "eventos.db"
        text_server = group.server(args=["--banco", str(database)], wait=False)
        json_server = group.server(json_output=True, wait=False)
        text_server.wait_ready()
        json_server.wait_ready()
        text_client = group.client(watched, text_server.uri, "cli")
        json_client = group.client(watched, json_server.uri, "cli-json")
        text_server.wait_client("cli", watched)
        json_server.wait_client("cli-json", watched)
        for client, server in ((text_client, text_server), (json_client, json_server)):
            client.wait_for_line(f"Conectado a {server.uri}", "stderr")
        yield NamesHub(watched, text_server, json_server, text_client, json_client, DatabaseEvents(database))
    finally:
        group.cleanup()


def exact_name(record: dict[str, Any]) -> bytes:
    """The exact bytes of a path, the way README says to recover them."""
    if "path_b64" in record:
        return base64.b64decode(record["path_b64"], validate=True)
    path = record["path"]
    assert isinstance(path, str)
    return os.fsencode(path)


def check_hostile_name(hub: NamesHub, name: str | bytes, shown: str) -> None:
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    full = os.fsencode(hub.watched) + b"/" + raw
    shown_path = f"{hub.watched}/{shown}"
    marks = {
        "text": len(hub.text_server.lines()),
        "json": len(hub.json_server.lines()),
        "log": len(hub.log_records()),
        "text_client": len(hub.text_client.lines()),
        "json_client": len(hub.json_client.lines()),
    }
    touch(full)

    server_line = f"[cli] arquivo criado: {shown_path}"
    client_line = f"arquivo criado: {shown_path}"
    hub.text_server.wait_for_line(server_line)
    hub.text_client.wait_for_line(client_line)
    hub.json_client.wait_for_line(client_line)
    wait_until(lambda: len(hub.json_server.lines()) > marks["json"], describe=hub.json_server.describe)
    # One event, one line, on every console.
    assert hub.text_server.stripped()[marks["text"] :] == [server_line], hub.text_server.describe()
    assert hub.text_client.stripped()[marks["text_client"] :] == [client_line], hub.text_client.describe()
    assert hub.json_client.stripped()[marks["json_client"] :] == [client_line], hub.json_client.describe()
    assert_console_safe(hub.text_server, hub.text_client, hub.json_client)
    assert_console_safe(hub.json_server, streams=("stderr",))

    # --json and --banco keep the exact bytes.
    [record] = hub.json_server.json_events()[marks["json"] :]
    [logged] = hub.log_records()[marks["log"] :]
    for found, client in ((record, "cli-json"), (logged, "cli")):
        assert (found["client"], found["event"], found["is_dir"], found["origin"]) == (client, "created", False, "live")
        assert exact_name(found) == full
        if _is_utf8(raw):
            assert found["path"] == os.fsdecode(full) and "path_b64" not in found
        else:  # README: the undecodable bytes shown as \xNN, the rest as it is
            assert found["path"] == f"{hub.watched}/{raw.decode('utf-8', 'backslashreplace')}"
    assert hub.text_server.running() and hub.json_server.running()
    assert hub.text_client.running() and hub.json_client.running()


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


HOSTILE_NAMES: list[tuple[str, str | bytes, str]] = [
    ("ansi", "\x1b[31mred", "\\x1b[31mred"),
    ("osc-titulo", "\x1b]0;owned\x07x", "\\x1b]0;owned\\x07x"),
    ("cr", "linha\rsobrescrita", "linha\\rsobrescrita"),
    ("lf", "duas\nlinhas", "duas\\nlinhas"),
    ("tab", "com\ttab", "com\\ttab"),
    ("bel", "sino\x07", "sino\\x07"),
    ("del", "apaga\x7f", "apaga\\x7f"),
    ("c1-csi-utf8", "csi\x9b31m", "csi\\x9b31m"),
    ("c1-nel-utf8", "nel\x85x", "nel\\x85x"),
    ("bidi-override", "\u202egnp.exe", "\\u202egnp.exe"),
    ("bidi-isolate", "iso\u2066x\u2069", "iso\\u2066x\\u2069"),
    ("nao-utf8", b"bad_\xff", "bad_\\xff"),
    ("c1-cru-nao-utf8", b"csi_\x9b", "csi_\\x9b"),
    ("utf8-truncado", b"trunc_\xc3", "trunc_\\xc3"),
    ("esc-e-nao-utf8", b"\x1b[2J\xfe", "\\x1b[2J\\xfe"),
]


@pytest.mark.parametrize(
    ("name", "shown"), [case[1:] for case in HOSTILE_NAMES], ids=[case[0] for case in HOSTILE_NAMES]
)
def test_hostile_file_name(names_hub: NamesHub, name: str | bytes, shown: str) -> None:
    check_hostile_name(names_hub, name, shown)


@pytest.mark.parametrize(
    "name",
    ['"><img src=x onerror=alert(1)>.txt', "<b onmouseover=alert('x')>&amp;&lt;<b>.html"],
    ids=["img-onerror", "atributo-entidades"],
)
def test_html_file_name_is_carried_intact(names_hub: NamesHub, name: str) -> None:
    check_hostile_name(names_hub, name, name)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems reject names that are not UTF-8")
def test_hostile_client_name_and_root(procs: Processes, tmp_path: Path) -> None:
    """--nome and the watched directory's own name are escaped on both consoles too."""
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/dir\x1b]0;x\x07\xff"))
    root.mkdir()
    name = "\x1b[2Jmau\u202e\udcfe"  # the last one: an undecodable byte of argv
    shown_root = f"{tmp_path}/dir\\x1b]0;x\\x07\\xff"
    shown_name = "\\x1b[2Jmau\\u202e\\xfe"
    server = procs.server()
    client = procs.client(root, server.uri, name)
    server.wait_for_line(
        re.compile(
            rf"cliente conectado: {re.escape(shown_name)} \(id [0-9a-f]{{8}}, 127\.0\.0\.1:\d+\) "
            rf"monitorando {re.escape(shown_root)}$"
        ),
        "stderr",
    )
    client.wait_for_line(f"Conectado a {server.uri}", "stderr")
    touch(os.fsencode(root) + b"/f.txt")
    server.wait_for_line(f"[{shown_name}] arquivo criado: {shown_root}/f.txt")
    client.wait_for_line(f"arquivo criado: {shown_root}/f.txt")
    assert server.stripped() == [f"[{shown_name}] arquivo criado: {shown_root}/f.txt"]
    assert client.stripped() == [f"arquivo criado: {shown_root}/f.txt"]
    assert plain(client.lines("stderr")) == [
        f"Monitorando {shown_root} (com subdiretórios)",
        f"Conectado a {server.uri}",
    ]
    assert_console_safe(server, client)
    no_traceback(server, client)
