"""Issue 14: the server trusts nothing it does not control (its stdout, its clients, its resources).

Each test is one row of the issue's table, end to end: the real servidor.py on 127.0.0.1 (port 0),
attacked by raw WebSocket clients written here. Figures (times, counts, memory) are printed with -s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest
from support import LOOPBACK, SERVER_SCRIPT, TIMEOUT, Processes, ServerProcess, script_env, wait_until
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

ROOT = "/home/x"
TS = "2026-11-25T17:03:31.118+00:00"
_LISTENING = re.compile(r"ouvindo em ws://127\.0\.0\.1:(\d+)$")


# ---------------------------------------------------------------------------
# Helpers: a server whose stdout the test controls, and a raw protocol client.
# ---------------------------------------------------------------------------


class RawServer:
    """servidor.py with its stdout left to the test (unread, closed, or read later); stderr is collected."""

    def __init__(
        self, cwd: Path, args: Sequence[str], *, env: dict[str, str] | None = None, preexec: Any = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--host", LOOPBACK, "--port", "0", *args],
            cwd=cwd,
            env={**script_env(cwd / ".cache"), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,  # noqa: PLW1509 (only resource.setrlimit, before exec)
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout: IO[bytes] = self.proc.stdout
        self.stderr_lines: list[str] = []
        self.stdout_data = bytearray()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        wait_until(lambda: self.port is not None or self.proc.poll() is not None, describe=self.describe)
        assert self.port is not None, self.describe()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def port(self) -> int | None:
        for line in list(self.stderr_lines):
            match = _LISTENING.search(line)
            if match:
                return int(match.group(1))
        return None

    @property
    def uri(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    def read_stdout(self) -> None:
        """Start draining stdout (it was stuck until now)."""

        def drain() -> None:
            while chunk := os.read(self.stdout.fileno(), 65536):
                self.stdout_data.extend(chunk)

        threading.Thread(target=drain, daemon=True).start()

    def stderr_with(self, text: str) -> list[str]:
        return [line for line in list(self.stderr_lines) if text in line]

    def describe(self) -> str:
        return f"exit {self.proc.poll()}\n" + "\n".join(self.stderr_lines[-60:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        self.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def raw_servers(tmp_path: Path) -> Iterator[list[RawServer]]:
    started: list[RawServer] = []
    yield started
    for server in started:
        server.close()


def start(raw_servers: list[RawServer], tmp_path: Path, args: Sequence[str], **kwargs: Any) -> RawServer:
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    server = RawServer(cwd, args, **kwargs)
    raw_servers.append(server)
    return server


def hello(client_id: str, secret: str | None = None, *, version: int = 2, **changes: Any) -> str:
    message: dict[str, Any] = {"type": "hello", "version": version, "client_id": client_id, "name": "pc", "root": ROOT}
    if secret is not None:
        message["secret"] = secret
    message.update(changes)
    return json.dumps(message)


def event(seq: int, path: str = "", **changes: Any) -> dict[str, Any]:
    ev = {"seq": seq, "event": "created", "path": path or f"{ROOT}/f{seq}.txt", "is_dir": False, "ts": TS}
    ev.update(changes)
    return ev


def batch(*events: dict[str, Any]) -> str:
    return json.dumps({"type": "events", "events": list(events)})


class Client:
    """One protocol connection: hello, then numbered events and their acks."""

    def __init__(
        self, uri: str, client_id: str = "", secret: str | None = "", *, version: int = 2, **hello_changes: Any
    ):
        self.client_id = client_id or uuid.uuid4().hex
        self.secret = secrets.token_hex(16) if secret == "" else secret
        self.ws: ClientConnection = connect(uri, open_timeout=TIMEOUT, close_timeout=2, max_size=None, legacy=True)
        self.ws.send(hello(self.client_id, self.secret if version >= 2 else None, version=version, **hello_changes))
        self.welcome = json.loads(self.ws.recv(TIMEOUT))
        assert self.welcome["type"] == "welcome", self.welcome

    def send(self, *events: dict[str, Any], timeout: float = TIMEOUT) -> float:
        """Send one batch; seconds until its ack."""
        started = time.monotonic()
        self.ws.send(batch(*events))
        answer = json.loads(self.ws.recv(timeout))
        assert answer == {"type": "ack", "seq": events[-1]["seq"]}, answer
        return time.monotonic() - started

    def close(self) -> None:
        self.ws.close()


def refused(uri: str, message: str, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Open a connection, send ``message``: the (code, reason) the server closes it with."""
    with connect(uri, open_timeout=TIMEOUT, close_timeout=2) as ws:
        ws.send(message)
        try:
            answer = ws.recv(timeout)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError(f"not refused; the server answered {answer!r}")


def json_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def rss_peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


# ---------------------------------------------------------------------------
# Row 1: a stuck stdout reader stalls nothing that does not depend on printing.
# ---------------------------------------------------------------------------


def fill_stdout(client: Client, events: int) -> None:
    """Send ``events`` events in batches of 500 with long paths: far more than a pipe holds (64 KiB)."""
    long = "d" * 200
    for first in range(1, events + 1, 500):
        client.send(*[event(seq, f"{ROOT}/{long}/{seq}") for seq in range(first, first + 500)])


def test_stuck_stdout_with_database_stalls_nothing(raw_servers: list[RawServer], tmp_path: Path) -> None:
    """--banco: the console is a mirror. 5,000 events (1.2 MB) into an unread pipe are all acked; a new
    client's handshake and ack and a ping stay fast; the dropped lines are said once when stdout moves."""
    server = start(raw_servers, tmp_path, ["--json", "--banco", str(tmp_path / "r.db")])
    first = Client(server.uri)
    started = time.monotonic()
    fill_stdout(first, 5000)
    filled = time.monotonic() - started
    started = time.monotonic()
    second = Client(server.uri)
    handshake = time.monotonic() - started
    ack = second.send(event(1))
    started = time.monotonic()
    assert second.ws.ping().wait(TIMEOUT)
    pong = time.monotonic() - started
    print(
        f"\nstdout stuck, --banco: 5,000 events acked in {filled:.2f} s; handshake {handshake * 1000:.0f} ms, "
        f"ack {ack * 1000:.0f} ms, pong {pong * 1000:.0f} ms"
    )
    assert max(handshake, ack, pong) < 2.0  # measured ~10 ms; the old server waited 5-14 s here
    server.read_stdout()
    second.send(event(2))
    wait_until(lambda: bool(server.stderr_with("linhas omitidas no console")), describe=server.describe)
    omitted = server.stderr_with("linhas omitidas no console")
    assert len(omitted) == 1, omitted
    dropped = int(re.search(r"(\d+) linhas omitidas", omitted[0]).group(1))  # type: ignore[union-attr]
    # The warning follows the last write to the pipe, but this test's drain thread may not have read it yet.
    wait_until(lambda: bytes(server.stdout_data).count(b"\n") + dropped >= 5002, describe=server.describe)
    shown = json_lines(bytes(server.stdout_data))
    print(f"lines shown {len(shown)}, omitted {dropped}")
    assert len(shown) + dropped == 5002 and dropped > 0
    assert len({(line["client_id"], line["seq"]) for line in shown}) == len(shown)  # none twice
    assert not server.stderr_with("Traceback")


def test_stuck_stdout_without_database_waits_only_for_printing(raw_servers: list[RawServer], tmp_path: Path) -> None:
    """No --banco: printing is the record, so acks wait for the print; handshakes and pings do not."""
    server = start(raw_servers, tmp_path, ["--json"])
    first = Client(server.uri)
    long = "d" * 200
    events = [event(seq, f"{ROOT}/{long}/{seq}") for seq in range(1, 1001)]  # ~270 KB: more than the pipe
    first.ws.send(batch(*events[:500]))
    first.ws.send(batch(*events[500:]))
    with pytest.raises(TimeoutError):  # not printed, so not acknowledged
        while True:
            answer = json.loads(first.ws.recv(1.5))
            assert answer["seq"] < 1000, answer
    started = time.monotonic()
    second = Client(server.uri)
    handshake = time.monotonic() - started
    started = time.monotonic()
    assert second.ws.ping().wait(TIMEOUT)
    pong = time.monotonic() - started
    print(f"\nstdout stuck, no --banco: handshake {handshake * 1000:.0f} ms, pong {pong * 1000:.0f} ms")
    assert max(handshake, pong) < 2.0
    server.read_stdout()
    wait_until(lambda: json.loads(first.ws.recv(TIMEOUT))["seq"] == 1000)
    wait_until(lambda: bytes(server.stdout_data).count(b"\n") >= 1000)
    assert [line["seq"] for line in json_lines(bytes(server.stdout_data))] == list(range(1, 1001))


# ---------------------------------------------------------------------------
# Row 2: stdout closed.
# ---------------------------------------------------------------------------


def test_closed_stdout_without_database_stops_with_exit_1(raw_servers: list[RawServer], tmp_path: Path) -> None:
    server = start(raw_servers, tmp_path, ["--json"])
    server.stdout.close()  # like `| head -1` after its line
    client = Client(server.uri)
    client.ws.send(batch(event(1)))
    with pytest.raises(ConnectionClosed):  # never acknowledged: it was not printed
        answer = client.ws.recv(TIMEOUT)
        raise AssertionError(f"unexpected {answer!r}")
    assert server.proc.wait(TIMEOUT) == 1
    server._reader.join(5)
    errors = [line for line in server.stderr_lines if line.startswith("Erro:")]
    assert errors == [
        "Erro: a saída padrão foi fechada; sem --banco ela é o registro dos eventos, então o servidor parou "
        "(nada mais foi confirmado)"
    ], server.describe()
    assert not server.stderr_with("Traceback") and not server.stderr_with("Broken pipe")


def test_closed_stdout_with_database_keeps_serving(raw_servers: list[RawServer], tmp_path: Path) -> None:
    database = tmp_path / "r.db"
    server = start(raw_servers, tmp_path, ["--json", "--banco", str(database)])
    server.stdout.close()
    client = Client(server.uri)
    for seq in range(1, 21):
        client.send(event(seq))  # every one acked: the database is the record
    wait_until(lambda: bool(server.stderr_with("a saída padrão foi fechada")), describe=server.describe)
    client.send(event(21))
    assert len(server.stderr_with("a saída padrão foi fechada")) == 1, server.describe()
    assert server.proc.poll() is None
    with contextlib.closing(__import__("sqlite3").connect(database)) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (21, 21)
    assert not server.stderr_with("Traceback") and not server.stderr_with("1011")


# ---------------------------------------------------------------------------
# Row 3: a client id cannot be claimed without its credential.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", [False, True], ids=["memoria", "banco"])
def test_client_id_cannot_be_claimed(procs: Processes, tmp_path: Path, database: bool) -> None:
    server = procs.server(json_output=True, args=["--banco", str(tmp_path / "r.db")] if database else [])
    real = Client(server.uri)
    real.send(event(1))
    cid = real.client_id
    wrong = secrets.token_hex(16)
    attacks = {
        "segredo errado": hello(cid, wrong),
        "versão 1, sem segredo": hello(cid, version=1),
    }
    for label, message in attacks.items():
        code, reason = refused(server.uri, message)
        assert (code, reason) == (4001, "credencial ausente ou errada para este client_id"), label
    code, reason = refused(server.uri, hello(cid))  # version 2 without "secret": a malformed hello
    assert code == 1008 and "campo 'secret'" in reason
    real.send(event(2))  # the real client never noticed: same connection, acked as before
    wait_until(lambda: len(server.json_events()) >= 2)  # with --banco the console is a mirror: acks do not wait
    shown = server.json_events()
    assert [(line["client_id"], line["seq"]) for line in shown] == [(cid, 1), (cid, 2)]
    real.close()
    # Persistent identity: the same id and secret later get welcome ack = 2, so the next seq is 3.
    again = Client(server.uri, cid, real.secret)
    assert again.welcome["ack"] == 2
    again.send(event(3))
    assert refused(server.uri, hello(cid, wrong))[0] == 4001
    # Ids that never sent a secret (version 1 clients) work as before.
    old = Client(server.uri, version=1)
    old.send(event(1))
    old.close()
    assert Client(server.uri, old.client_id, version=1).welcome["ack"] == 1
    wait_until(lambda: len(server.json_events()) >= 4)
    assert len(server.json_events()) == 4


def test_credential_race_has_one_winner(procs: Processes) -> None:
    """Two first hellos for one id with different secrets, at once: one is welcomed, the other refused."""
    server = procs.server()
    cid = uuid.uuid4().hex

    async def claim(secret: str) -> str:
        async with async_connect(server.uri) as ws:
            await ws.send(hello(cid, secret))
            try:
                return json.loads(await ws.recv())["type"]  # type: ignore[no-any-return]
            except ConnectionClosed as exc:
                return str(exc.rcvd.code if exc.rcvd else None)

    async def both() -> list[str]:
        return await asyncio.gather(*(claim(secrets.token_hex(16)) for _ in range(8)))

    results = asyncio.run(both())
    assert sorted(results).count("welcome") == 1 and results.count("4001") == 7, results


def test_parse_hello_credential_and_caps(servidor: ModuleType) -> None:
    base = {"type": "hello", "version": 2, "client_id": "x", "name": "n", "root": "/w", "secret": "a" * 32}
    parsed = servidor.parse_hello(json.dumps(base))
    assert parsed.secret_hash == __import__("hashlib").sha256(b"a" * 32).digest()
    for secret in ["a" * 31, "A" * 32, "g" * 32, 5, None, "a" * 129]:
        with pytest.raises(servidor.ProtocolError, match="campo 'secret'"):
            servidor.parse_hello(json.dumps({**base, "secret": secret}))
    assert servidor.parse_hello(json.dumps({**base, "version": 1})).secret_hash is None


# ---------------------------------------------------------------------------
# Row 4: paths are absolute and under the declared root.
# ---------------------------------------------------------------------------

BAD_PATHS = {
    "etc-shadow": event(1, "/etc/shadow"),
    "dot-dot": event(1, f"{ROOT}/../../../etc/passwd"),
    "relative-dot-dot": event(1, "../../../etc/passwd"),
    "empty": event(1, ""),
    "relative": event(1, "relative/path"),
    "sibling-prefix": event(1, "/home/xy/a"),
    "move-outside": event(1, f"{ROOT}/a", event="moved", dest_path="/tmp/a"),
    "b64-outside": event(1, f"{ROOT}/a", path_b64=base64.b64encode(b"/etc/\xff").decode()),
}
BAD_PATHS["empty"]["path"] = ""


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    group = Processes(tmp_path_factory.mktemp("trust") / "cwd")
    try:
        yield group.server(json_output=True)
    finally:
        group.cleanup()


@pytest.mark.parametrize("bad", list(BAD_PATHS.values()), ids=list(BAD_PATHS))
def test_paths_outside_the_root_are_refused(shared_server: ServerProcess, bad: dict[str, Any]) -> None:
    client = Client(shared_server.uri)
    client.ws.send(batch(event(1), bad | {"seq": 2}))
    with pytest.raises(ConnectionClosed) as caught:
        raise AssertionError(client.ws.recv(TIMEOUT))
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008
    assert caught.value.rcvd.reason.startswith("caminho fora da raiz do cliente")
    assert client.client_id not in {line["client_id"] for line in shared_server.json_events()}  # nothing of it shown


def test_paths_under_the_root_are_accepted(shared_server: ServerProcess) -> None:
    client = Client(shared_server.uri)
    client.send(event(1, ROOT), event(2, f"{ROOT}/a/b.txt"), event(3, f"{ROOT}/c/.d"), event(4, f"{ROOT}/a..b"))
    windows = Client(shared_server.uri, root="C:\\Users\\x", path_style="windows")
    windows.send(event(1, "C:\\Users\\x\\a.txt"), event(2, "c:\\users\\X\\b"), event(3, "C:/Users/x/c"))
    for bad in ["C:\\Windows\\x", "\\Users\\x\\a", "D:\\Users\\x\\a", "C:\\Users\\x\\..\\y", "Users\\x\\a"]:
        probe = Client(shared_server.uri, root="C:\\Users\\x", path_style="windows")
        probe.ws.send(batch(event(1, bad)))
        with pytest.raises(ConnectionClosed) as caught:
            raise AssertionError(probe.ws.recv(TIMEOUT))
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008, bad
    old_windows = Client(shared_server.uri, version=1, root="C:\\dados")  # version 1: the style from the root
    old_windows.send(event(1, "C:\\dados\\a.txt"))
    assert refused(shared_server.uri, hello(uuid.uuid4().hex, "a" * 32, root="relative"))[0] == 1008


def test_manifest_entries_outside_the_root_are_refused(shared_server: ServerProcess) -> None:
    client = Client(shared_server.uri)
    client.ws.send(json.dumps({"type": "manifest_begin", "seq": 0}))
    client.ws.send(json.dumps({"type": "manifest", "entries": [{"path": "/etc/passwd", "is_dir": False}]}))
    with pytest.raises(ConnectionClosed) as caught:
        raise AssertionError(client.ws.recv(TIMEOUT))
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008


def test_inside_root_function(servidor: ModuleType) -> None:
    inside = servidor.inside_root
    assert inside("/w", "/w", "posix") and inside("/w/a", "/w/", "posix") and inside("/a", "/", "posix")
    assert (
        not inside("/w/../x", "/w", "posix") and not inside("/wx", "/w", "posix") and not inside("w/a", "/w", "posix")
    )
    assert inside("C:\\W\\a", "c:\\w", "windows") and not inside("C:\\W\\..\\a", "C:\\W", "windows")


# ---------------------------------------------------------------------------
# Row 5: strangers cannot evict a client's dedup state.
# ---------------------------------------------------------------------------


async def many_hellos(uri: str, count: int, parallel: int = 64) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate, async_connect(uri, open_timeout=TIMEOUT) as ws:
            await ws.send(hello(uuid.uuid4().hex, version=1))
            try:
                kind = json.loads(await ws.recv())["type"]
            except ConnectionClosed as exc:
                kind = str(exc.rcvd.code if exc.rcvd else None)
            outcomes[kind] = outcomes.get(kind, 0) + 1

    await asyncio.gather(*(one() for _ in range(count)))
    return outcomes


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database", [False, True], ids=["memoria", "banco"])
def test_strangers_cannot_evict_dedup_state(
    procs: Processes, tmp_path: Path, servidor: ModuleType, database: bool
) -> None:
    server = procs.server(json_output=True, args=["--banco", str(tmp_path / "r.db")] if database else [])
    old = Client(server.uri)
    events = [event(seq) for seq in range(1, 11)]
    old.send(*events)
    old.close()
    started = time.monotonic()
    outcomes = asyncio.run(many_hellos(server.uri, 12_000))
    print(f"\n12,000 hellos in {time.monotonic() - started:.1f} s: {outcomes}")
    if database:
        assert outcomes == {"welcome": 12_000}
    else:  # the in-memory record keeps MEMORY_MAX_CLIENTS ids and refuses new ones past it, never evicting
        assert outcomes == {
            "welcome": servidor.MEMORY_MAX_CLIENTS - 1,
            "1013": 12_000 - servidor.MEMORY_MAX_CLIENTS + 1,
        }
        said = [line for line in server.lines("stderr") if "clientes novos recusados" in line]
        assert len(said) == 1, said  # rate-limited: one line, not 2,001
    again = Client(server.uri, old.client_id, old.secret)
    assert again.welcome["ack"] == 10
    again.send(*events)  # resent: acked, not shown again
    again.send(event(11))
    wait_until(lambda: len(server.json_events()) >= 11)
    assert [line["seq"] for line in server.json_events()] == list(range(1, 12))


# ---------------------------------------------------------------------------
# Row 6: caps on id, name and root.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "longest"), [("client_id", 64), ("name", 256), ("root", 4096)], ids=["id", "nome", "raiz"]
)
def test_hello_field_caps(shared_server: ServerProcess, field: str, longest: int) -> None:
    value = ("/" if field == "root" else "") + "a" * (longest - (1 if field == "root" else 0))
    fields: dict[str, Any] = {"client_id": uuid.uuid4().hex, "name": "pc", "root": ROOT, field: value}
    at_cap = json.loads(connect_and_hello(shared_server.uri, hello(fields.pop("client_id"), "a" * 32, **fields)))
    assert at_cap["type"] == "welcome"
    fields = {"client_id": uuid.uuid4().hex, "name": "pc", "root": ROOT, field: value + "a"}
    code, reason = refused(shared_server.uri, hello(fields.pop("client_id"), "a" * 32, **fields))
    assert (code, reason) == (1008, f"campo '{field}' longo demais (máximo {longest} caracteres)")
    code, reason = refused(shared_server.uri, hello(uuid.uuid4().hex, "a" * 32, name="n" * 16_384))
    assert (code, reason) == (1008, "campo 'name' longo demais (máximo 256 caracteres)")


def connect_and_hello(uri: str, message: str) -> str:
    with connect(uri, open_timeout=TIMEOUT) as ws:
        ws.send(message)
        answer = ws.recv(TIMEOUT)
    assert isinstance(answer, str)
    return answer


# ---------------------------------------------------------------------------
# Row 7: a global memory budget.
# ---------------------------------------------------------------------------


def ws_handshake(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    return sock


def frame_header(length: int) -> bytes:
    """A masked text frame header announcing ``length`` bytes (mask key zero: payload sent as is)."""
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0"


@pytest.mark.timeout(180)
def test_half_open_frames_stay_within_the_memory_budget(procs: Processes) -> None:
    """1,000 connections each sending 1 MiB - 1 of a 1 MiB frame before any hello, then 900 holding 64 KiB - 1
    of a frame just under the pre-hello limit: the server's peak RSS stays under 200 MB."""
    server = procs.server(args=["--open-timeout", "30"])
    sockets = []
    payload = b"a" * (1024 * 1024 - 1)
    for _ in range(1000):
        sock = ws_handshake(server.port)
        with contextlib.suppress(OSError):
            sock.sendall(frame_header(1024 * 1024) + payload)
        sockets.append(sock)
    big = rss_peak_mb(server.proc.pid)
    for sock in sockets:
        sock.close()
    held = []
    for _ in range(900):
        sock = ws_handshake(server.port)
        sock.sendall(frame_header(64 * 1024) + b"a" * (64 * 1024 - 1))
        held.append(sock)
    time.sleep(1)  # the frames are in flight: let the server read them
    small = rss_peak_mb(server.proc.pid)
    print(f"\npeak RSS: after 1,000 x (1 MiB - 1) {big:.1f} MB; with 900 x (64 KiB - 1) held {small:.1f} MB")
    assert big < 200 and small < 200
    # After a valid hello the full limit applies: a 600 KB batch is accepted.
    client = Client(server.uri)
    client.send(*[event(seq, f"{ROOT}/{'p' * 500}/{seq}") for seq in range(1, 1001)])
    for sock in held:
        sock.close()


def test_slow_hello_times_out(procs: Processes) -> None:
    server = procs.server(args=["--open-timeout", "1"])
    with connect(server.uri) as ws:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(TIMEOUT)
        waited = time.monotonic() - started
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008
    assert caught.value.rcvd.reason == "nenhuma mensagem completa em 1 s" and waited < 5


def test_pre_hello_limit_and_text_sessions(procs: Processes) -> None:
    server = procs.server()
    with connect(server.uri, max_size=None) as ws:
        ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(TIMEOUT)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


# ---------------------------------------------------------------------------
# Row 8: the connection cap under RLIMIT_NOFILE.
# ---------------------------------------------------------------------------


def low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


async def open_many(uri: str, count: int) -> tuple[list[Any], dict[str, int], float]:
    outcomes: dict[str, int] = {}
    slowest = 0.0
    opened: list[Any] = []

    async def one() -> None:
        nonlocal slowest
        started = time.monotonic()
        try:
            ws = await async_connect(uri, open_timeout=TIMEOUT)
            opened.append(ws)
            kind = "aberta"
        except InvalidStatus as exc:
            kind = str(exc.response.status_code)
        except (OSError, TimeoutError) as exc:
            kind = type(exc).__name__
        slowest = max(slowest, time.monotonic() - started)
        outcomes[kind] = outcomes.get(kind, 0) + 1

    await asyncio.gather(*(one() for _ in range(count)))
    return opened, outcomes, slowest


@pytest.mark.timeout(120)
def test_connection_cap_under_the_open_file_limit(raw_servers: list[RawServer], tmp_path: Path) -> None:
    server = start(raw_servers, tmp_path, [], preexec=low_nofile)
    server.read_stdout()
    started = time.monotonic()

    async def scenario() -> tuple[dict[str, int], float, bool]:
        opened, outcomes, slowest = await open_many(server.uri, 400)
        for ws in opened[:10]:
            await ws.close()
        await asyncio.sleep(0.5)
        async with async_connect(server.uri) as ws:  # room again: served
            await ws.send("olá")
            ok = True
        for ws in opened[10:]:
            await ws.close()
        return outcomes, slowest, ok

    outcomes, slowest, ok = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    print(
        f"\nRLIMIT_NOFILE 256, 400 connections: {outcomes}, slowest {slowest:.2f} s, {len(server.stderr_lines)} "
        f"stderr lines in {elapsed:.1f} s"
    )
    # The cap is 256 - FD_RESERVE = 192 open connections, handshakes in flight included: never more.
    assert 100 <= outcomes.get("aberta", 0) <= 192 and outcomes.get("aberta", 0) + outcomes.get("503", 0) == 400
    assert slowest < 5 and ok
    assert len(server.stderr_with("servidor cheio")) == 1
    assert len(server.stderr_with("limite de arquivos abertos (256")) == 1
    assert len(server.stderr_lines) < 50 and not server.stderr_with("Traceback")


# ---------------------------------------------------------------------------
# Row 9: --json is UTF-8 whatever the locale; readable output never crashes.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "texto"])
def test_output_whatever_the_locale(raw_servers: list[RawServer], tmp_path: Path, encoding: str, as_json: bool) -> None:
    server = start(raw_servers, tmp_path, ["--json"] if as_json else [], env={"PYTHONIOENCODING": encoding})
    server.read_stdout()
    client = Client(server.uri, name="ação")
    names = [f"{ROOT}/ação.txt", f"{ROOT}/日本.txt", f"{ROOT}/emoji-😀", f"{ROOT}/plain"]
    client.send(*[event(seq, path) for seq, path in enumerate(names, 1)])
    wait_until(lambda: bytes(server.stdout_data).count(b"\n") >= 4)
    lines = bytes(server.stdout_data).splitlines()
    assert len(lines) == 4
    if as_json:
        assert [json.loads(line.decode("utf-8"))["path"] for line in lines] == names
        assert {json.loads(line.decode("utf-8"))["client"] for line in lines} == {"ação"}
    else:
        text = [line.decode(encoding) for line in lines]
        assert all("arquivo criado" in line for line in text)
        assert text[0].endswith(f"{ROOT}/ação.txt" if encoding == "latin-1" else f"{ROOT}/a\\xe7\\xe3o.txt")


# ---------------------------------------------------------------------------
# Row 10: localhost serves both loopback families.
# ---------------------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="sem IPv6 (::1) nesta máquina")
def test_localhost_serves_both_loopbacks(procs: Processes) -> None:
    server = procs.server(args=["--host", "localhost"])
    server.wait_for_line(re.compile(r"ouvindo em ws://\[::1\]:\d+$"), "stderr")
    bound = [line for line in server.stripped("stderr") if "ouvindo em" in line]
    assert bound == [
        f"Servidor WebSocket ouvindo em ws://127.0.0.1:{server.port}",
        f"Servidor WebSocket ouvindo em ws://[::1]:{server.port}",
    ]
    for uri in (f"ws://[::1]:{server.port}", f"ws://127.0.0.1:{server.port}", f"ws://localhost:{server.port}"):
        assert Client(uri).welcome["ack"] == 0
