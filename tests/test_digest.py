"""Protocol 2 from the client's side, end to end: the real monitor_cliente.py proves with a digest that the
server's tree equals its own, and a divergence is repaired by a manifest.

The real scripts run on 127.0.0.1 (port 0) over real directories. Divergences are made at boundaries the
tests own: rows deleted from the server's ``--banco`` file with sqlite3 while it runs; an in-process
MonitorClient whose outbox drops one change after the View took it (the View and what was sent disagree)
and whose digest is then scrambled in memory; a small websockets server in the test that speaks only
protocol 1, as servidor.py did before protocol 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import DatabaseEvents, StdoutEvents, disk_tree, record_path, replay, wait_converged, write_file
from support import ClientProcess, Processes, ServerProcess, StandInServer, no_traceback, wait_until
from test_convergence import InProcessClient
from websockets.sync.server import ServerConnection

VERIFIED = re.compile(r"verificação: a árvore do servidor confere com a deste cliente \(seq (\d+), (\d+) entradas\)$")
RESYNCED = re.compile(
    r"Ressincronização com o servidor: ele tinha (\d+) entrada\(s\) desta árvore, este cliente (\d+); "
    r"manifesto enviado, as árvores agora conferem \(\d+\.\d\d s\)\.$"
)


def client_row(database: Path) -> tuple[int, int | None, str | None]:
    """(last_seq, digest_matched, verified_at) of the only client in the server's database."""
    with contextlib.closing(sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        [(last_seq, matched, verified_at)] = conn.execute(
            "SELECT last_seq, digest_matched, verified_at FROM clients"
        ).fetchall()
    return int(last_seq), matched, verified_at


def server_tree(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        return {path.decode() for (path,) in conn.execute("SELECT path FROM tree")}


def verified_lines(client: ClientProcess) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for line in client.lines("stderr") if (m := VERIFIED.search(line))]


def resync_records(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["event"], record_path(r)) for r in events if r.get("origin") == "resync")


def test_client_and_server_agree_by_digest_after_a_burst(procs: Processes, watched: Path, tmp_path: Path) -> None:
    database = tmp_path / "eventos.db"
    server = procs.server(json_output=True, args=["--banco", str(database), "-v"])
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["-v"])
    for index in range(20):
        (watched / f"d{index:02d}").mkdir()
        for number in range(50):
            write_file(watched / f"d{index:02d}" / f"f{number:02d}.txt")
    (watched / "d00").rename(watched / "movido")  # a subtree moves...
    shutil.rmtree(watched / "d01")  # ...and one goes
    _, tree = wait_converged(DatabaseEvents(database), watched, context=procs.describe)

    # The client's -v line, the server's -v line and the clients table all say the trees agree, as of the last seq.
    wait_until(lambda: client_row(database)[0] > 0 and client_row(database)[1] == 1, describe=procs.describe)
    last_seq = client_row(database)[0]
    wait_until(lambda: (last_seq, len(tree)) in verified_lines(client), timeout=60.0, describe=client.describe)
    server.wait_for_line(
        re.compile(rf"verificação de cli \(id [0-9a-f]{{8}}\): a árvore confere \(seq {last_seq}; servidor: "),
        "stderr",
    )
    assert client_row(database) == (last_seq, 1, client_row(database)[2]) and client_row(database)[2]
    assert server_tree(database) == tree == disk_tree(watched)
    assert resync_records(server.json_events()) == []
    assert not any("Ressincronização" in line for line in client.lines("stderr"))
    no_traceback(client, server)


def test_rows_deleted_behind_the_servers_back_are_restored_at_the_next_digest(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    database = tmp_path / "eventos.db"
    server = procs.server(json_output=True, args=["--banco", str(database), "-v"])
    client = procs.client(watched, server.uri, "cli", connected_to=server)  # the resync line is not -v only
    (watched / "pasta").mkdir()
    for number in range(10):
        write_file(watched / "pasta" / f"f{number}.txt")
    _, tree = wait_converged(DatabaseEvents(database), watched, context=procs.describe)
    wait_until(lambda: client_row(database)[1] == 1, timeout=60.0, describe=procs.describe)

    # Behind the server's back: two entries go, a stray one appears.
    gone = [f"{watched}/pasta/f3.txt", f"{watched}/pasta/f7.txt"]
    stray = f"{watched}/fantasma"
    with contextlib.closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("DELETE FROM tree WHERE path IN (?, ?)", [path.encode() for path in gone])
        conn.execute(
            "INSERT INTO tree (client, path, is_dir, hash) SELECT id, ?, 0, 42 FROM clients", (stray.encode(),)
        )
    assert server_tree(database) == tree - set(gone) | {stray}

    write_file(watched / "depois.txt")  # the next change brings the next checkpoint, and its digest
    line = client.wait_for_line(RESYNCED, "stderr", timeout=60.0)
    match = RESYNCED.search(line)
    assert match is not None and (int(match[1]), int(match[2])) == (len(tree) + 1 - 2 + 1, len(tree) + 1)
    expected = [("created", gone[0]), ("created", gone[1]), ("deleted", stray)]
    wait_until(lambda: resync_records(server.json_events()) == expected, describe=procs.describe)
    server.wait_for_line(re.compile(r"ressincronização de cli \(id [0-9a-f]{8}\): 2 criados, 1 excluídos; "), "stderr")
    assert server_tree(database) == disk_tree(watched)
    wait_until(lambda: client_row(database)[1] == 1, describe=procs.describe)
    # Only the differences were shown; replaying everything the server stored still gives the disk.
    assert len(resync_records(server.json_events())) == 3
    assert replay(DatabaseEvents(database)(), root=str(watched)) == disk_tree(watched)
    assert sum("Ressincronização" in line for line in client.lines("stderr")) == 1
    no_traceback(client, server)


def test_a_client_whose_view_went_wrong_is_caught_by_the_digest(
    cliente: ModuleType,
    procs: Processes,
    watched: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In process: the View takes a change that never leaves the client, then its digest is scrambled."""
    caplog.set_level(logging.DEBUG, logger="monitor")
    server = procs.server(json_output=True, args=["-v"])  # in memory: the same digest and resync
    shown = StdoutEvents(server)
    settings = cliente.Settings(
        uri=server.uri, root=str(watched), name="cli", quiet=True, state_file=str(tmp_path / "estado.json")
    )
    monitor = cliente.MonitorClient(settings)

    def messages() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == "monitor"]

    def describe() -> str:
        return "\n".join(["--- in-process client log:", *messages(), procs.describe()])

    def resyncs() -> list[str]:
        return [m for m in messages() if RESYNCED.search(m)]

    runner = InProcessClient(monitor)
    runner.start()
    try:
        server.wait_client("cli", watched)
        for number in range(5):
            write_file(watched / f"a{number}.txt")
        wait_converged(shown, watched, context=describe)

        # Fault: the outbox loses one change the View has taken (a lost event no scan can see).
        lost = f"{watched}/perdido.txt"
        add = monitor.outbox.add
        monitor.outbox.add = lambda change, ts, *meta: False if change.path == lost else add(change, ts, *meta)
        write_file(Path(lost))
        write_file(watched / "outro.txt")
        wait_until(lambda: f"{watched}/outro.txt" in replay(shown(), root=str(watched)), describe=describe)
        wait_until(lambda: len(resyncs()) == 1, timeout=60.0, describe=describe)
        assert RESYNCED.search(resyncs()[0]) is not None
        assert [(int(m[1]), int(m[2])) for m in map(RESYNCED.search, resyncs()) if m] == [(6, 7)]
        wait_until(lambda: resync_records(shown()) == [("created", lost)], describe=describe)
        wait_converged(shown, watched, context=describe)
        mismatch = re.compile(
            r"a árvore do servidor difere \(servidor: seq \d+, 6 entradas; cliente: seq \d+, 7 entradas"
        )
        assert any(mismatch.search(m) for m in messages()), describe()

        # Fault: the digest itself goes wrong in memory; the manifest recounts it, and the server changes nothing.
        loop = runner._loop
        assert loop is not None
        loop.call_soon_threadsafe(lambda: setattr(monitor.view._server, "_sum", monitor.view._server._sum ^ 1))
        write_file(watched / "mais.txt")
        wait_until(lambda: len(resyncs()) == 2, timeout=60.0, describe=describe)
        server.wait_for_line(
            re.compile(r"ressincronização de cli \(id [0-9a-f]{8}\): 0 criados, 0 excluídos"), "stderr"
        )
        assert resync_records(shown()) == [("created", lost)]
        # From then on the digests agree again.
        write_file(watched / "ultimo.txt")
        agreed = re.compile(r"confere com a deste cliente \(seq \d+, 9 entradas\)$")
        wait_until(lambda: any(agreed.search(m) for m in messages()), 60.0, describe)
    finally:
        runner.stop()
    assert len(resyncs()) == 2
    no_traceback(server)


# ---------------------------------------------------------------------------
# A server that speaks only protocol 1, as servidor.py did before protocol 2 (its words, exactly).
# ---------------------------------------------------------------------------


class VersionOneServer(StandInServer):
    """Answers hello version 1 with welcome and each batch with its ack; refuses any other version the way the
    old servidor.py did (1008, ``versão de protocolo não suportada: 2``) -- or, with ``speaks``, the way a server
    that names its versions does. Anything but events after the welcome is recorded and closes (1008)."""

    def __init__(self, speaks: str = "") -> None:
        self.speaks = speaks
        self.hellos: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.unexpected: list[dict[str, Any]] = []
        self._last: dict[str, int] = {}
        super().__init__("servidor-v1")

    def _handler(self, ws: ServerConnection) -> None:
        hello = json.loads(ws.recv())
        self.hellos.append(hello)
        if hello.get("version") != 1 or self.speaks:
            ws.close(1008, f"versão de protocolo não suportada{self.speaks}: {hello.get('version')!r}")
            return
        client_id = hello["client_id"]
        ws.send(json.dumps({"type": "welcome", "version": 1, "ack": self._last.get(client_id, 0)}))
        for text in ws:
            message = json.loads(text)
            if message.get("type") != "events":
                self.unexpected.append(message)
                ws.close(1008, f"tipo de mensagem inesperado: {message.get('type')!r}")
                return
            fresh = [ev for ev in message["events"] if ev["seq"] > self._last.get(client_id, 0)]
            self.events += fresh
            self._last[client_id] = message["events"][-1]["seq"]
            ws.send(json.dumps({"type": "ack", "seq": self._last[client_id]}))


@pytest.fixture
def old_server() -> Iterator[VersionOneServer]:
    with VersionOneServer() as server:
        yield server


def test_an_upgraded_client_keeps_working_with_a_server_that_speaks_only_version_1(
    procs: Processes, watched: Path, tmp_path: Path, old_server: VersionOneServer
) -> None:
    state = tmp_path / "estado.json"
    client = procs.client(watched, old_server.uri, "cli", args=["-v", "--estado", str(state)])
    client.wait_for_line(f"Conectado a {old_server.uri}", "stderr")
    for number in range(30):
        write_file(watched / f"f{number:02d}.txt")
    wait_until(lambda: replay(old_server.events, root=str(watched)) == disk_tree(watched), describe=client.describe)
    # A checkpoint ran (the state file holds the last file); had it sent a digest, the server would have seen
    # it before the next event, and closed.
    wait_until(lambda: state.exists() and "f29.txt" in state.read_text(encoding="ascii"), 60.0, client.describe)
    write_file(watched / "depois.txt")
    wait_until(lambda: replay(old_server.events, root=str(watched)) == disk_tree(watched), describe=client.describe)
    assert old_server.unexpected == []
    assert [hello["version"] for hello in old_server.hellos] == [3, 1]
    seqs = [ev["seq"] for ev in old_server.events]
    assert seqs == list(range(1, len(seqs) + 1))  # each event once, in order
    fallback = "fala só até a versão 1 do protocolo (ainda não foi atualizado): os eventos seguem, sem a verificação"
    assert sum(fallback in line for line in client.lines("stderr")) == 1, client.describe()
    assert client.running() and not any("Erro" in line for line in client.lines("stderr"))
    assert client.stop() == 0
    no_traceback(client)


def test_a_server_that_speaks_neither_version_is_a_clear_error(procs: Processes, watched: Path) -> None:
    with VersionOneServer(speaks=" (este servidor fala 4)") as newer:
        uri = newer.uri
        client = procs.client(watched, uri, "cli")
        assert client.wait() == 1
    assert [hello["version"] for hello in newer.hellos] == [3]
    assert client.lines("stderr")[-1] == (
        f"Erro: o servidor {uri} não fala a versão 3 do protocolo deste cliente (versão de protocolo não "
        "suportada (este servidor fala 4): 3); atualize este cliente"
    )
    no_traceback(client)


def test_the_real_server_refuses_nothing_the_client_says(procs: Processes, watched: Path) -> None:
    """Today's server speaks 2: no fallback, the digest is used (the first -v line after the first checkpoint)."""
    server: ServerProcess = procs.server(args=["-v"])
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["-v"])
    write_file(watched / "a.txt")
    # One entry; its seq is 1 or 2 (write_file may also bring a "modified").
    wait_until(lambda: any(count == 1 for _, count in verified_lines(client)), timeout=60.0, describe=procs.describe)
    assert not any("fala só a versão 1" in line for line in client.lines("stderr"))
