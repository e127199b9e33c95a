"""The server's record end to end: the real servidor.py on 127.0.0.1, its SQLite database, protocol 2.

Protocol 2 -- the digest that proves the server's tree equals the client's, and the manifest that
repairs it -- is spoken here by ``ProtocolClient``, a small client written with websockets directly, so
each message can be chosen; tests/test_digest.py runs the real monitor_cliente.py against it.
Faults are injected at boundaries the server owns: a small tmpfs that fills up, and the test hook
``SERVIDOR_TESTE_FALHA_COMMIT`` (every COMMIT fails while the file it names exists).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import DatabaseEvents
from support import LOOPBACK, SERVER_SCRIPT, TIMEOUT, Processes, ServerProcess, script_env, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ROOT = "/w"
TS = "2026-11-25T17:03:31.118+00:00"
README = (SERVER_SCRIPT.parent / "README.md").read_text(encoding="utf-8")
NO_ACK_WINDOW = 2.5  # seconds in which an ack must NOT come (several commit retries: COMMIT_RETRY_DELAY is 1 s)
STORAGE_ERROR = "Erro: não foi possível gravar no banco: "


OPEN: list[ClientConnection] = []  # closed after each test
SECRETS: dict[str, str] = {}  # each client id's credential, so a reconnection proves the same id


@pytest.fixture(autouse=True)
def close_connections() -> Iterator[None]:
    try:
        yield
    finally:
        while OPEN:
            OPEN.pop().close()


class ProtocolClient:
    """Speaks protocol 1 or 2 over one connection; keeps the tree its events describe, as the server should."""

    def __init__(
        self, servidor: ModuleType, uri: str, *, name: str = "v2", client_id: str = "", version: int = 2
    ) -> None:
        self.servidor = servidor
        self.client_id = client_id or uuid.uuid4().hex
        self.ws: ClientConnection = connect(uri, open_timeout=TIMEOUT, close_timeout=2, legacy=True)
        OPEN.append(self.ws)
        hello = {"type": "hello", "version": version, "client_id": self.client_id, "name": name, "root": ROOT}
        if version >= 2:
            hello["secret"] = SECRETS.setdefault(self.client_id, secrets.token_hex(16))
        self.ws.send(json.dumps(hello))
        self.welcome = self.recv()
        assert self.welcome["type"] == "welcome" and self.welcome["version"] == version, self.welcome
        self.seq: int = self.welcome["ack"]
        self.tree: dict[bytes, bool] = {}

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        answer = json.loads(self.ws.recv(timeout))
        assert isinstance(answer, dict)
        return answer

    def events(self, *changes: tuple[str, str, bool] | tuple[str, str, bool, str]) -> list[dict[str, Any]]:
        """Number ``changes`` (kind, path, is_dir[, dest]) from the next seq and apply them to the tree."""
        out = []
        for change in changes:
            self.seq += 1
            kind, path, is_dir = change[0], change[1], change[2]
            dest = change[3] if len(change) == 4 else None
            event: dict[str, Any] = {"seq": self.seq, "event": kind, "path": path, "is_dir": is_dir}
            if dest is not None:
                event["dest_path"] = dest
            out.append(event | {"ts": TS, "origin": "live"})
            self.apply(kind, path.encode(), is_dir, None if dest is None else dest.encode())
        return out

    def send(self, *changes: tuple[str, str, bool] | tuple[str, str, bool, str]) -> None:
        """Send the changes as one batch and wait for its ack."""
        self.send_batch(self.events(*changes))
        assert self.recv() == {"type": "ack", "seq": self.seq}

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        self.ws.send(json.dumps({"type": "events", "events": events}))

    def apply(self, kind: str, path: bytes, is_dir: bool, dest: bytes | None) -> None:
        below = path + b"/"
        subtree = {p: d for p, d in self.tree.items() if p == path or p.startswith(below)}
        if kind in ("created", "modified"):
            self.tree[path] = is_dir
            return
        for p in subtree:
            del self.tree[p]
        if kind == "moved" and dest is not None:
            for p in [p for p in self.tree if p == dest or p.startswith(dest + b"/")]:
                del self.tree[p]
            self.tree.update({dest + p[len(path) :]: d for p, d in subtree.items()})

    def digest(self) -> Any:
        return self.servidor.Digest.of(self.tree.items())

    def check(self) -> dict[str, Any]:
        """Send the digest of the tree as of the last acked seq; the server's answer."""
        digest = self.digest()
        self.ws.send(
            json.dumps({"type": "digest", "seq": self.seq, "count": digest.count, "sum": f"{digest.sum:016x}"})
        )
        return self.recv()

    def resync(self, batch: int = 2) -> dict[str, Any]:
        """Send the whole tree as a manifest, ``batch`` entries per message; the server's answer."""
        self.ws.send(json.dumps({"type": "manifest_begin", "seq": self.seq}))
        entries = sorted(self.tree.items())
        for start in range(0, len(entries), batch):
            items = [{"path": path.decode(), "is_dir": is_dir} for path, is_dir in entries[start : start + batch]]
            self.ws.send(json.dumps({"type": "manifest", "entries": items}))
        digest = self.digest()
        self.ws.send(json.dumps({"type": "manifest_end", "count": digest.count, "sum": f"{digest.sum:016x}"}))
        return self.recv()

    def close(self) -> None:
        self.ws.close()


def answer(kind: str, seq: int, digest: Any) -> dict[str, Any]:
    return {"type": kind, "seq": seq, "count": digest.count, "sum": f"{digest.sum:016x}"}


def read_database(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows from the server's database, read by another connection (WAL: the server keeps writing)."""
    with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        return conn.execute(sql, args).fetchall()


def stored_seqs(path: Path, client_id: str) -> list[int]:
    rows = read_database(
        path,
        "SELECT e.seq FROM events AS e JOIN clients AS c ON c.id = e.client WHERE c.client_id = ? ORDER BY e.id",
        client_id,
    )
    return [row[0] for row in rows]


def server_tree(path: Path, client_id: str) -> dict[bytes, bool]:
    rows = read_database(
        path,
        "SELECT t.path, t.is_dir FROM tree AS t JOIN clients AS c ON c.id = t.client WHERE c.client_id = ?",
        client_id,
    )
    return {row[0]: bool(row[1]) for row in rows}


def printed(server: ServerProcess, origin: str | None = None) -> list[tuple[Any, ...]]:
    """(seq, event, path) of every --json record, optionally of one origin."""
    return [
        (r["seq"], r["event"], r["path"])
        for r in server.json_events()
        if r.get("client_id") and (origin is None or r["origin"] == origin)
    ]


def stderr_lines(server: ServerProcess, text: str) -> list[str]:
    return [line for line in server.lines("stderr") if text in line]


def no_traceback(server: ServerProcess) -> None:
    assert b"Traceback" not in server.raw("stderr"), server.describe()


def assert_no_ack(client: ProtocolClient, seconds: float = NO_ACK_WINDOW) -> None:
    with pytest.raises(TimeoutError):
        raise AssertionError(f"the server answered while it could not commit: {client.recv(seconds)}")


# ---------------------------------------------------------------------------
# Protocol 2: the digest proves the trees agree; a divergence is repaired by a manifest.
# ---------------------------------------------------------------------------


def test_rows_deleted_behind_the_servers_back_are_restored_by_a_resync(
    servidor: ModuleType, procs: Processes, tmp_path: Path
) -> None:
    database = tmp_path / "eventos.db"
    server = procs.server(json_output=True, args=["--banco", str(database), "-v"])
    client = ProtocolClient(servidor, server.uri)
    assert client.welcome == {"type": "welcome", "version": 2, "ack": 0}
    client.send(("created", "/w/d", True), *[("created", f"/w/d/f{n}", False) for n in range(10)])
    client.send(("created", "/w/g", False), ("moved", "/w/d", True, "/w/e"), ("deleted", "/w/e/f0", False))
    assert len(client.tree) == 11
    assert client.check() == answer("verified", client.seq, client.digest())
    assert server_tree(database, client.client_id) == client.tree
    server.wait_for_line(re.compile(r"verificação de v2 \(id [0-9a-f]{8}\): a árvore confere \(seq 14;"), "stderr")

    # Behind the server's back: two entries go, a stray one appears.
    stray = b"/w/fantasma"
    with contextlib.closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("DELETE FROM tree WHERE path IN (?, ?)", (b"/w/e/f1", b"/w/e/f2"))
        key = conn.execute("SELECT id FROM clients WHERE client_id = ?", (client.client_id,)).fetchone()[0]
        value = servidor.entry_hash(stray, False)
        conn.execute(
            "INSERT INTO tree (client, path, is_dir, hash) VALUES (?, ?, 0, ?)",
            (key, stray, value - 2**64 if value >= 2**63 else value),
        )
    wrong = servidor.Digest.of([*[(p, d) for p, d in client.tree.items() if p not in (b"/w/e/f1", b"/w/e/f2")]])
    wrong = servidor.Digest(wrong.count + 1, (wrong.sum + value) % 2**64)
    assert client.check() == answer("resync", client.seq, wrong)
    assert client.resync(batch=3) == answer("verified", client.seq, client.digest())

    assert server_tree(database, client.client_id) == client.tree
    expected = [(None, "deleted", "/w/fantasma"), (None, "created", "/w/e/f1"), (None, "created", "/w/e/f2")]
    wait_until(lambda: printed(server, "resync") == expected, describe=server.describe)
    [line] = stderr_lines(server, "ressincronização de v2")
    assert re.search(
        r"ressincronização de v2 \(id [0-9a-f]{8}\): 2 criados, 1 excluídos; a árvore tem 11 entradas", line
    )
    stored = read_database(database, "SELECT seq, event, path, origin FROM events WHERE origin = 'resync' ORDER BY id")
    assert stored == [(seq, kind, path, "resync") for seq, kind, path in expected]
    assert client.check() == answer("verified", client.seq, client.digest())
    # Live events go on after a resync, numbered as before.
    client.send(("created", "/w/depois", False))
    assert client.check() == answer("verified", client.seq, client.digest())
    assert len(printed(server, "live")) == client.seq
    client.close()
    assert server.stop() == 0
    no_traceback(server)


def test_in_memory_server_catches_a_corrupted_client_view(servidor: ModuleType, procs: Processes) -> None:
    """No --banco: the same digest and resync, on the in-memory database."""
    server = procs.server(json_output=True, args=["-v"])
    client = ProtocolClient(servidor, server.uri, name="mem")
    client.send(*[("created", f"/w/f{n}", False) for n in range(5)])
    assert client.check() == answer("verified", 5, client.digest())
    good = client.digest()
    # The client's view goes wrong in memory: one entry lost, one made up, one changes type.
    del client.tree[b"/w/f1"]
    client.tree[b"/w/inventado"] = False
    client.tree[b"/w/f2"] = True
    assert client.check() == answer("resync", 5, good)
    assert client.resync() == answer("verified", 5, client.digest())
    expected = {
        (None, "deleted", "/w/f1"),
        (None, "deleted", "/w/f2"),
        (None, "created", "/w/f2"),
        (None, "created", "/w/inventado"),
    }
    wait_until(lambda: set(printed(server, "resync")) == expected, describe=server.describe)
    assert len(printed(server, "resync")) == 4
    assert client.check() == answer("verified", 5, client.digest())
    server.wait_for_line(re.compile(r"a árvore difere, pedindo ressincronização"), "stderr")
    client.close()
    no_traceback(server)


def test_version_1_is_answered_in_version_1_and_has_no_digest(servidor: ModuleType, procs: Processes) -> None:
    server = procs.server(json_output=True)
    client = ProtocolClient(servidor, server.uri, name="v1", version=1)
    assert client.welcome == {"type": "welcome", "version": 1, "ack": 0}
    client.send(("created", "/w/a", False))
    client.ws.send(json.dumps({"type": "digest", "seq": 1, "count": 1, "sum": "0" * 16}))
    with pytest.raises(ConnectionClosed) as caught:
        client.recv()
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1008, "tipo de mensagem inesperado: 'digest'")
    assert printed(server) == [(1, "created", "/w/a")]


def test_an_unknown_version_is_refused_with_the_versions_spoken(procs: Processes) -> None:
    server = procs.server()
    with connect(server.uri, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"type": "hello", "version": 4, "client_id": "x", "name": "n", "root": ROOT}))
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(TIMEOUT)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1008
    assert caught.value.rcvd.reason == "versão de protocolo não suportada (este servidor fala 1, 2 e 3): 4"


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(['{"type":"manifest","entries":[]}'], id="manifest-sem-begin"),
        pytest.param(['{"type":"manifest_end","count":0,"sum":"0000000000000000"}'], id="end-sem-begin"),
        pytest.param(
            [
                '{"type":"manifest_begin","seq":0}',
                '{"type":"events","events":[{"seq":1,"event":"created","path":"/w/a","is_dir":false,'
                f'"ts":"{TS}"}}]}}',
            ],
            id="eventos-no-manifesto",
        ),
        pytest.param(
            ['{"type":"manifest_begin","seq":0}', '{"type":"manifest_end","count":1,"sum":"0000000000000001"}'],
            id="manifesto-incompleto",
        ),
    ],
)
def test_manifest_out_of_order_closes_with_a_reason(
    servidor: ModuleType, procs: Processes, messages: list[str]
) -> None:
    server = procs.server()
    client = ProtocolClient(servidor, server.uri)
    for message in messages:
        client.ws.send(message)
    with pytest.raises(ConnectionClosed) as caught:
        client.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008, caught.value
    other = ProtocolClient(servidor, server.uri, name="outro")  # the server goes on
    other.send(("created", "/w/x", False))
    assert other.check()["type"] == "verified"


# ---------------------------------------------------------------------------
# Acknowledged means committed: injected commit failures and a full disk.
# ---------------------------------------------------------------------------


@pytest.fixture
def failing_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A flag file: while it exists, the servers started by this test cannot COMMIT."""
    flag = tmp_path / "falhar-commit"
    flag.touch()
    monkeypatch.setenv("SERVIDOR_TESTE_FALHA_COMMIT", str(flag))
    return flag


def test_failed_commits_ack_nothing_and_recover(
    servidor: ModuleType, procs: Processes, tmp_path: Path, failing_commits: Path
) -> None:
    database = tmp_path / "eventos.db"
    server = procs.server(json_output=True, args=["--banco", str(database)])
    client = ProtocolClient(servidor, server.uri, name="cli", version=1)
    client.send_batch(client.events(*[("created", f"/w/f{n}", False) for n in range(3)]))
    assert_no_ack(client)
    client.send_batch(client.events(("created", "/w/f3", False)))
    assert_no_ack(client, 1.5)
    server.wait_for_line(re.compile(re.escape(STORAGE_ERROR)), "stderr")
    [line] = stderr_lines(server, STORAGE_ERROR)  # one line, not one per retry
    assert line.endswith(
        "erro de entrada/saída no disco (SQLITE_IOERR); nada foi confirmado, nova tentativa a cada 1 s"
    ), line
    assert server.lines() == [], "an event was printed before it was committed"
    assert stored_seqs(database, client.client_id) == []
    # The rest of the server lives: a handshake and another client's hello are answered (a version 1 one: a
    # new credential waits for its commit, test_hardening2.py::test_welcome_waits_for_the_claim_commit).
    other = ProtocolClient(servidor, server.uri, name="outro", version=1)
    assert other.welcome["ack"] == 0

    failing_commits.unlink()
    assert client.recv() == {"type": "ack", "seq": 4}
    wait_until(lambda: len(server.lines()) == 4, describe=server.describe)
    assert printed(server) == [(n + 1, "created", f"/w/f{n}") for n in range(4)]
    assert stored_seqs(database, client.client_id) == [1, 2, 3, 4]
    server.wait_for_line(re.compile(r"o banco voltou a gravar, depois de \d+ tentativas sem sucesso"), "stderr")

    # The client resends everything on a new connection: acked, never stored or shown twice.
    client.close()
    again = ProtocolClient(servidor, server.uri, name="cli", client_id=client.client_id, version=1)
    assert again.welcome["ack"] == 4
    again.ws.send(json.dumps({"type": "events", "events": client_batch_again(client)}))
    assert again.recv() == {"type": "ack", "seq": 4}
    assert stored_seqs(database, client.client_id) == [1, 2, 3, 4]
    assert server.stop() == 0
    assert len(server.lines()) == 4
    no_traceback(server)


def client_batch_again(client: ProtocolClient) -> list[dict[str, Any]]:
    return [
        {"seq": n + 1, "event": "created", "path": f"/w/f{n}", "is_dir": False, "ts": TS, "origin": "live"}
        for n in range(4)
    ]


def test_server_killed_while_commits_fail_loses_nothing(
    servidor: ModuleType, procs: Processes, tmp_path: Path, failing_commits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "eventos.db"
    first = procs.server(json_output=True, args=["--banco", str(database)])
    client = ProtocolClient(servidor, first.uri, name="cli", version=1)
    events = client.events(*[("created", f"/w/f{n}", False) for n in range(5)])
    client.send_batch(events)
    assert_no_ack(client)
    first.proc.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert first.lines() == [] and stored_seqs(database, client.client_id) == []

    monkeypatch.delenv("SERVIDOR_TESTE_FALHA_COMMIT")
    second = procs.server(json_output=True, args=["--banco", str(database)])
    again = ProtocolClient(servidor, second.uri, name="cli", client_id=client.client_id, version=1)
    assert again.welcome["ack"] == 0  # nothing was acknowledged, so the client still has everything
    again.send_batch(events)
    assert again.recv() == {"type": "ack", "seq": 5}
    wait_until(lambda: len(second.lines()) == 5, describe=second.describe)
    assert printed(second) == [(n + 1, "created", f"/w/f{n}") for n in range(5)]
    assert stored_seqs(database, client.client_id) == [1, 2, 3, 4, 5]


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``directory``; skip when not permitted (fail under CI=true)."""
    directory.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = directory / "enchimento"
    with filler.open("wb") as stream:
        try:
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.mark.timeout(120)
def test_full_disk_acks_nothing_uncommitted_and_recovers(
    servidor: ModuleType, procs: Processes, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "disco", "3m") as disk:
        database = disk / "eventos.db"
        server = procs.server(json_output=True, args=["--banco", str(database)])
        client = ProtocolClient(servidor, server.uri, name="cli", version=1)
        client.send(*[("created", f"/w/antes{n}", False) for n in range(100)])
        filler = fill(disk)

        long = "x" * 200
        acked = client.seq
        for _ in range(200):  # ~40 MB of events at most: far more than the disk holds
            client.send_batch(client.events(*[("created", f"/w/{long}/{client.seq + n}", False) for n in range(500)]))
            try:
                reply = client.recv(NO_ACK_WINDOW)
            except TimeoutError:
                break
            assert reply == {"type": "ack", "seq": client.seq}
            acked = client.seq
        else:
            pytest.fail("the disk never filled up")
        server.wait_for_line(re.compile(re.escape(STORAGE_ERROR) + r"disco cheio"), "stderr")
        assert len(stderr_lines(server, STORAGE_ERROR)) == 1, server.describe()
        # Every acked event is in the database; the unacked batch is not.
        assert stored_seqs(database, client.client_id) == list(range(1, acked + 1))
        assert len(printed(server)) == acked
        assert server.running()

        filler.unlink()
        assert client.recv() == {"type": "ack", "seq": client.seq}
        client.send(("created", "/w/depois", False))
        assert stored_seqs(database, client.client_id) == list(range(1, client.seq + 1))
        wait_until(lambda: len(server.lines()) == client.seq, describe=server.describe)
        assert [seq for seq, _, _ in printed(server)] == list(range(1, client.seq + 1))
        client.close()
        assert server.stop() == 0
        no_traceback(server)


# ---------------------------------------------------------------------------
# Export, and what the README promises of start-up.
# ---------------------------------------------------------------------------


def export(database: Path) -> subprocess.CompletedProcess[bytes]:
    """``servidor.py --banco DATABASE --exportar``, run to its end (check=True)."""
    return subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "--banco", str(database), "--exportar"],
        capture_output=True,
        env=script_env(),
        timeout=TIMEOUT,
        check=True,
    )


def test_export_gives_the_json_lines_that_were_printed(servidor: ModuleType, procs: Processes, tmp_path: Path) -> None:
    database = tmp_path / "eventos.db"
    server = procs.server(json_output=True, args=["--banco", str(database)])
    client = ProtocolClient(servidor, server.uri, name="exp ção")
    client.send(("created", "/w/a", True), ("created", "/w/a/b.txt", False), ("moved", "/w/a", True, "/w/c"))
    wait_until(lambda: len(server.lines()) == 3, describe=server.describe)
    assert server.stop() == 0
    exported = export(database)
    assert exported.stdout.decode().splitlines() == server.lines()
    assert DatabaseEvents(database)() == server.json_events()
    # The README's sqlite3 one-liner gives the same records (with null for the fields --json leaves out).
    [query] = re.findall(r'^ +sqlite3 eventos\.db "(SELECT json_object\(.*)"$', README, re.MULTILINE)
    shown = [json.loads(row[0]) for row in read_database(database, query)]
    assert [{k: v for k, v in row.items() if v is not None} for row in shown] == server.json_events()


def test_one_instant_in_two_offsets_keeps_each_text_live_stored_and_exported(
    servidor: ModuleType, procs: Processes, tmp_path: Path
) -> None:
    """The same ts written with two UTC offsets is shown, stored and exported as each was sent, in either order
    and across runs (the server's caches were keyed by the datetime, equal for the same instant)."""
    database = tmp_path / "eventos.db"
    utc, brt = "2026-11-29T14:23:00.123+00:00", "2026-11-29T11:23:00.123-03:00"
    sent: list[str] = []

    def run(*order: str) -> None:
        """One server run on the database: one batch, the ts of each event as given, as printed."""
        server = procs.server(json_output=True, args=["--banco", str(database)])
        client = ProtocolClient(servidor, server.uri, client_id="c" * 32)
        events = client.events(*((("created", f"/w/{len(sent) + n}", False)) for n in range(len(order))))
        for event, ts in zip(events, order, strict=True):
            event["ts"] = ts
        client.send_batch(events)
        assert client.recv() == {"type": "ack", "seq": client.seq}
        sent.extend(order)
        wait_until(lambda: len(server.lines()) == len(order), describe=server.describe)
        assert [event["ts"] for event in server.json_events()] == list(order)
        client.close()
        assert server.stop() == 0

    run(utc, brt)
    run(brt, utc)
    assert [row[0] for row in read_database(database, "SELECT ts FROM events ORDER BY id")] == sent
    exported = export(database)
    assert [json.loads(line)["ts"] for line in exported.stdout.decode().splitlines()] == sent


def test_export_needs_an_existing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nao-existe.db"
    result = subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "--banco", str(missing), "--exportar"],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Erro: --exportar precisa de um --banco que exista")
    assert not missing.exists()


def test_a_database_that_cannot_be_opened_fails_the_start(procs: Processes, tmp_path: Path) -> None:
    server = procs.server(args=["--banco", str(tmp_path / "nao" / "existe.db")], wait=False)
    assert server.wait() == 1
    assert server.lines("stderr")[-1].startswith("Erro: não foi possível abrir o banco"), server.describe()


def test_history_survives_a_restart_but_is_not_read_at_start(
    servidor: ModuleType, procs: Processes, tmp_path: Path
) -> None:
    database = tmp_path / "eventos.db"
    first = procs.server(args=["--banco", str(database), "--host", LOOPBACK])
    client = ProtocolClient(servidor, first.uri, name="cli")
    client.send(*[("created", f"/w/f{n}", False) for n in range(50)])
    assert first.stop() == 0
    second = procs.server(json_output=True, args=["--banco", str(database)])
    again = ProtocolClient(servidor, second.uri, name="cli", client_id=client.client_id)
    assert again.welcome["ack"] == 50
    again.tree = dict(client.tree)
    again.seq = 50
    assert again.check() == answer("verified", 50, again.digest())
