"""Issues 13 and 14, second round: what a tester broke after the first fixes, each kind as a test.

The real servidor.py on 127.0.0.1 (port 0), driven by raw WebSocket clients (helpers of test_trust.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import LOOPBACK, SERVER_SCRIPT, TIMEOUT, script_env, strip_ts, wait_until
from test_trust import ROOT, Client, RawServer, batch, event, raw_servers, start
from test_trust import hello as hello_message
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed

__all__ = ["raw_servers"]  # the fixture, shared with test_trust.py


def pipe_bytes(server: RawServer) -> int:
    """Bytes written to the server's stdout pipe and not read yet."""
    buffer = bytearray(4)
    fcntl.ioctl(server.stdout.fileno(), termios.FIONREAD, buffer)
    return int.from_bytes(buffer, "little")


# ---------------------------------------------------------------------------
# SIGTERM with a stdout nobody reads.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", [False, True], ids=["memory", "database"])
def test_sigterm_stops_when_nobody_reads_stdout(raw_servers: list[RawServer], tmp_path: Path, database: bool) -> None:
    """The console thread blocked in write() must not hold the exit: exit 0 within a few seconds, and
    one stderr line says how many lines were left unprinted."""
    args = ["--json", *(["--banco", str(tmp_path / "r.db")] if database else [])]
    server = start(raw_servers, tmp_path, args)
    client = Client(server.uri)
    long = "d" * 200
    events = [event(seq, f"{ROOT}/{long}/{seq}") for seq in range(1, 1001)]  # ~270 KB: more than the pipe
    client.ws.send(batch(*events[:500]))
    client.ws.send(batch(*events[500:]))
    wait_until(lambda: pipe_bytes(server) >= 65536, describe=server.describe)  # the pipe is full: write() blocks
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(TIMEOUT) == 0, server.describe()
    server._reader.join(5)
    unprinted = server.stderr_with("não foram impressas")
    assert len(unprinted) == 1 and strip_ts(unprinted[0]).startswith("Aviso: "), server.describe()
    assert not server.stderr_with("Traceback") and not server.stderr_with("Fatal"), server.describe()


# ---------------------------------------------------------------------------
# The database file deleted or replaced while the server runs.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_database_file_gone_stops_acks_and_the_server(raw_servers: list[RawServer], tmp_path: Path, how: str) -> None:
    """Commits into an unlinked inode are lost at exit: nothing after it is acknowledged, one ``Erro:``
    line says why, and the server stops with exit 1 (a restart opens the file again; clients resend)."""
    database = tmp_path / "r.db"
    server = start(raw_servers, tmp_path, ["--json", "--banco", str(database)])
    server.read_stdout()
    client = Client(server.uri)
    client.send(event(1))
    if how == "deleted":
        database.unlink()
    else:
        other = tmp_path / "other.db"
        with contextlib.closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE t (x)")
        other.replace(database)
    client.ws.send(batch(event(2)))
    with pytest.raises(ConnectionClosed):  # never acknowledged: it is not in the file
        answer = client.ws.recv(TIMEOUT)
        raise AssertionError(f"unexpected {answer!r}")
    assert server.proc.wait(TIMEOUT) == 1, server.describe()
    server._reader.join(5)
    errors = [line for line in server.stderr_lines if "Erro:" in line]
    assert len(errors) == 1 and "foi apagado ou substituído" in errors[0], server.describe()
    assert not server.stderr_with("Traceback"), server.describe()


# ---------------------------------------------------------------------------
# A database of another program that happens to have user_version = 1.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        "CREATE TABLE alheia (x); PRAGMA user_version = 1;",
        "CREATE TABLE clients (id INTEGER PRIMARY KEY, nome TEXT); PRAGMA user_version = 1;",
    ],
    ids=["other-tables", "other-columns"],
)
def test_foreign_database_with_our_user_version_is_refused(tmp_path: Path, schema: str) -> None:
    """Accepted at start, it answered every client with 1011 for ever: refused at start, exit 1, one line."""
    database = tmp_path / "outro.db"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.executescript(schema)
    before = database.read_bytes()
    done = subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "--host", LOOPBACK, "--port", "0", "--banco", str(database)],
        env=script_env(tmp_path / ".cache"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Erro: ") and "banco SQLite de outro programa" in lines[0], lines
    assert database.read_bytes() == before  # nothing created in it


# ---------------------------------------------------------------------------
# --exportar: UTF-8 whatever the locale, quiet on a closed pipe, never writes.
# ---------------------------------------------------------------------------


def exported_database(servidor: ModuleType, path: Path, events: int) -> None:
    conn = servidor.open_database(str(path))
    try:
        record = servidor.Record(conn)
        hello = servidor.Hello(client_id="c1", name="ação", root="/w", version=2)
        now = datetime.datetime(2026, 11, 25, 17, 3, 31, tzinfo=datetime.UTC)
        batch = [
            servidor.Event(seq=n, event="created", path=f"/w/é{n}", is_dir=False, ts=now) for n in range(1, events + 1)
        ]
        conn.execute("BEGIN")
        record.store_events(hello, batch, now)
        conn.execute("COMMIT")
    finally:
        conn.close()


def run_export(database: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "--banco", str(database), "--exportar"],
        env={**script_env(tmp_path / ".cache"), **env},
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_export_is_utf8_whatever_the_locale(servidor: ModuleType, tmp_path: Path) -> None:
    database = tmp_path / "r.db"
    exported_database(servidor, database, 3)
    done = run_export(database, tmp_path, PYTHONIOENCODING="ascii", PYTHONUTF8="0", LC_ALL="C")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert [(line["client"], line["path"]) for line in lines] == [("ação", f"/w/é{n}") for n in (1, 2, 3)]


def test_export_into_a_closed_pipe_stops_quietly(servidor: ModuleType, tmp_path: Path) -> None:
    """``--exportar | head -1``: exit 0, nothing on stderr (no BrokenPipeError traceback)."""
    database = tmp_path / "r.db"
    exported_database(servidor, database, 20_000)  # far more than a pipe holds
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--banco", str(database), "--exportar"],
        env=script_env(tmp_path / ".cache"),
        stdout=write,
        stderr=subprocess.PIPE,
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        assert json.loads(reader.readline())["seq"] == 1
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0 and stderr == b"", stderr.decode()


@pytest.mark.parametrize("content", ["empty", "foreign"])
def test_export_never_writes_the_database(tmp_path: Path, content: str) -> None:
    """A 0-byte file (or another program's database) is refused and left exactly as it was: read-only."""
    database = tmp_path / "r.db"
    database.write_bytes(b"")
    if content == "foreign":
        with contextlib.closing(sqlite3.connect(database)) as conn:
            conn.execute("CREATE TABLE alheia (x)")
    before = database.read_bytes()
    done = run_export(database, tmp_path)
    assert done.returncode == 1 and done.stdout == b"", done.stderr
    errors = done.stderr.decode().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Erro: "), errors
    assert database.read_bytes() == before


# ---------------------------------------------------------------------------
# Strangers' hellos with one early client still connected.
# ---------------------------------------------------------------------------


def test_remembered_clients_stay_bounded_with_a_connected_head(
    servidor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The eviction walk stopped at the oldest state when it was connected, so memory grew with every
    stranger's hello. The real ClientRegistry.register, with the real writer and an in-memory record;
    a connection is a plain object (only its identity is used until it is replaced)."""
    monkeypatch.setattr(servidor, "MAX_REMEMBERED_CLIENTS", 50)

    async def scenario() -> tuple[int, bool, int]:
        writer = servidor.Writer(servidor.open_database(":memory:"), servidor.Retention(0, 0))
        with open(os.devnull, "wb") as devnull:
            console = servidor.Console(devnull, "utf-8", lambda exc: None, 1024)
            monitor = servidor.MonitorServer(servidor.Output(console, True, record=False), writer)

            def hello(client_id: str) -> Any:
                return servidor.Hello(client_id=client_id, name="pc", root="/w", version=1)

            early = await monitor.registry.register(object(), hello("early"))
            for n in range(500):
                stranger = await monitor.registry.register(object(), hello(f"stranger-{n}"))
                stranger.connection = None  # it disconnected
            remembered = len(monitor.registry.clients)
            kept = monitor.registry.clients.get("early") is early
            again = await monitor.registry.register(
                object(), hello("stranger-0")
            )  # forgotten: read back from the record
            await writer.close()
            await console.close(1.0)
            return remembered, kept, again.stored_seq

    remembered, kept, _ = asyncio.run(scenario())
    assert remembered <= 50 and kept, remembered


# ---------------------------------------------------------------------------
# Manifests: abandoned ones are dropped, big ones refused.
# ---------------------------------------------------------------------------


async def in_process_server(servidor: ModuleType, scenario: Any) -> Any:
    """The real MonitorServer, Writer (in-memory record) and websockets server on 127.0.0.1 port 0, in this
    process so the test can look into SQLite's temporary storage; ``scenario(uri, writer)`` drives it."""
    from websockets.asyncio.server import serve

    writer = servidor.Writer(servidor.open_database(":memory:"), servidor.Retention(0, 0))
    with open(os.devnull, "wb") as devnull:
        console = servidor.Console(devnull, "utf-8", lambda exc: None, 1024 * 1024)
        monitor = servidor.MonitorServer(servidor.Output(console, True, record=False), writer)
        try:
            async with serve(monitor.handler, LOOPBACK, 0, max_size=servidor.HELLO_MAX_SIZE) as server:
                port = server.sockets[0].getsockname()[1]
                return await scenario(f"ws://{LOOPBACK}:{port}", writer)
        finally:
            await writer.close()
            await console.close(1.0)


def manifest_batch(first: int, count: int) -> str:
    entries = [{"path": f"/home/x/f{n}", "is_dir": False} for n in range(first, first + count)]
    return json.dumps({"type": "manifest", "entries": entries})


def test_abandoned_manifest_is_dropped_when_its_connection_ends(servidor: ModuleType) -> None:
    async def scenario(uri: str, writer: Any) -> int:
        async with async_connect(uri) as ws:
            await ws.send(hello_message("c1", "ab" * 16))
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "manifest_begin", "seq": 0}))
            await ws.send(manifest_batch(0, 500))
            await ws.ping()  # the batch was read

        def staged(record: Any) -> int:
            return int(record.conn.execute("SELECT count(*) FROM temp.manifest").fetchone()[0])

        deadline = time.monotonic() + TIMEOUT
        while (left := await writer.read(staged)) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return int(left)

    assert asyncio.run(in_process_server(servidor, scenario)) == 0


def test_manifest_past_the_cap_is_refused(servidor: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servidor, "MAX_MANIFEST_ENTRIES", 1000)

    async def scenario(uri: str, writer: Any) -> tuple[int, str]:
        async with async_connect(uri, max_size=None) as ws:
            await ws.send(hello_message("c1", "ab" * 16))
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "manifest_begin", "seq": 0}))
            for first in range(0, 1500, 500):
                await ws.send(manifest_batch(first, 500))
            try:
                answer = await asyncio.wait_for(ws.recv(), TIMEOUT)
            except ConnectionClosed as exc:
                assert exc.rcvd is not None
                return exc.rcvd.code, exc.rcvd.reason
        raise AssertionError(f"not refused: {answer!r}")

    code, reason = asyncio.run(in_process_server(servidor, scenario))
    assert code == 1008 and "manifesto grande demais" in reason, (code, reason)
