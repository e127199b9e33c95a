"""The client's persistent identity (issue 14, client side), end to end with the real scripts on 127.0.0.1.

The client_id and its secret live in the state file: a restarted client (even after kill -9) is the same
client to the server and continues its seq from the welcome; deleting the state file makes a new identity,
said once; a state file of the previous format keeps its tree and gains an identity; a process claiming
the id without the secret never disturbs the real client; a refused identity (4001) ends the client with
one clear line; a full server (1013) is retried with one warning.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import Burst, StdoutEvents, assert_no_event_twice, state_tree, wait_converged, write_file
from support import (
    TIMEOUT,
    ClientProcess,
    Processes,
    Script,
    no_traceback,
    previous_state_text,
    touch,
    wait_until,
)
from test_digest import VersionOneServer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection

NEW_IDENTITY = re.compile(r"Identidade nova deste cliente \(id ([0-9a-f]{32})\), guardada em (.+) \((.+)\); ")


def read_state(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(path.read_text(encoding="ascii"))
    return state


def said(script: Script, text: str) -> bool:
    """Whether a line of the script's stderr contains ``text``."""
    return any(text in line for line in script.lines("stderr"))


def new_identity_lines(client: ClientProcess) -> list[re.Match[str]]:
    return [match for line in client.lines("stderr") if (match := NEW_IDENTITY.search(line))]


def refused(uri: str, hello: dict[str, Any]) -> tuple[int | None, str | None]:
    """The close code and reason the server answers ``hello`` with."""
    with connect(uri) as ws:
        ws.send(json.dumps(hello))
        try:
            ws.recv(TIMEOUT)
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (None, None)
    raise AssertionError(f"the server welcomed {hello!r}")


@pytest.mark.timeout(180)
def test_client_killed_mid_burst_and_restarted_continues_its_seqs(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True)
    first = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(state)])
    shown = StdoutEvents(server)
    client_id = read_state(state)["client_id"]  # written at start-up, before the server heard of it
    resume = threading.Event()
    burst = Burst(watched / "rajada", 3000, per_dir=200, pause_after=1500, resume=resume)
    burst.start()
    wait_until(lambda: len(shown()) >= 300, describe=procs.describe)
    first.proc.send_signal(signal.SIGKILL)  # mid-burst: events queued and in flight are lost with it
    assert first.wait() == -signal.SIGKILL
    assert burst.created < burst.count
    resume.set()  # the second half while no client runs
    burst.join_checked()

    second = procs.client(watched, server.uri, "cli2", connected_to=server, args=["--estado", str(state)])
    events, _ = wait_converged(shown, watched, context=procs.describe)
    figures = assert_no_event_twice(events)  # nothing shown twice
    assert {record["client_id"] for record in events} == {client_id}  # one client, the same id after the restart
    seqs = [record["seq"] for record in events]
    assert seqs == list(range(1, len(seqs) + 1)), "seqs must continue, never restart or repeat"
    of_first = [record["seq"] for record in events if record["client"] == "cli"]
    of_second = [record["seq"] for record in events if record["client"] == "cli2"]
    assert of_first and of_second and min(of_second) == max(of_first) + 1  # the welcome's ack + 1
    assert figures["by_origin"]["startup"] > 0
    assert not new_identity_lines(second), second.describe()
    assert read_state(state)["client_id"] == client_id
    wait_until(lambda: read_state(state)["seq"] == seqs[-1], 60.0, procs.describe)  # the next checkpoint
    assert second.stop() == 0
    no_traceback(second, server)


def test_restarted_client_keeps_its_identity_and_verifies_without_a_resync(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    """The server kept the tree of the earlier run: nothing changed, nothing to resend; changes made while the client
    was stopped are sent at start-up, and the digest agrees (no manifest)."""
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True, args=["-v"])
    first = procs.client(watched, server.uri, "cli", connected_to=server, args=["-v", "--estado", str(state)])
    assert [said[3] for said in new_identity_lines(first)] == ["primeira execução"]  # with -v only
    (watched / "d").mkdir()
    for name in ["a.txt", "d/b.txt", "d/c.txt"]:
        write_file(watched / name)
    shown = StdoutEvents(server)
    wait_converged(shown, watched, context=procs.describe)
    wait_until(lambda: said(first, "verificação: a árvore do servidor confere"), 60.0, procs.describe)
    assert first.stop() == 0
    stopped_at = read_state(state)["seq"]
    assert stopped_at == max(record["seq"] for record in shown())
    assert stat.S_IMODE(state.stat().st_mode) == 0o600  # it holds the secret

    (watched / "d" / "c.txt").unlink()
    write_file(watched / "novo.txt")
    second = procs.client(watched, server.uri, "cli", args=["-v", "--estado", str(state)])
    second.wait_for_line(f"Conectado a {server.uri}", "stderr")
    events, _ = wait_converged(shown, watched, context=procs.describe)
    startup = [(r["event"], r["path"], r["seq"]) for r in events if r["origin"] == "startup"]
    assert startup == [  # deletions first, numbered after the last seq of the earlier run
        ("deleted", f"{watched}/d/c.txt", stopped_at + 1),
        ("created", f"{watched}/novo.txt", stopped_at + 2),
    ], second.describe()
    # 3 entries left (d, a.txt, d/b.txt) plus novo.txt: the server's tree from both runs, verified as is.
    wait_until(lambda: said(second, ", 4 entradas)"), 60.0, procs.describe)
    assert not said(second, "Ressincronização") and not said(server, "ressincronização de")
    assert not new_identity_lines(second)
    assert {r["client_id"] for r in events} == {read_state(state)["client_id"]}
    assert second.stop() == 0
    no_traceback(first, second, server)


def test_deleted_state_file_gives_a_new_identity_said_once(procs: Processes, watched: Path, tmp_path: Path) -> None:
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True)
    shown = StdoutEvents(server)

    def run(name: str, touched: str) -> tuple[ClientProcess, dict[str, Any]]:
        client = procs.client(watched, server.uri, name, args=["--estado", str(state)])
        client.wait_for_line(f"Conectado a {server.uri}", "stderr")  # watching, the view loaded
        touch(watched / touched)
        wait_until(lambda: any(r["path"].endswith(touched) for r in shown()), describe=procs.describe)
        assert client.stop() == 0
        [record] = [r for r in shown() if r["path"].endswith(touched)]
        return client, record

    first, one = run("cli", "um.txt")
    assert not new_identity_lines(first)  # a first run has nothing to say (with -v: "primeira execução")
    again, two = run("cli", "dois.txt")
    assert not new_identity_lines(again)
    assert (two["client_id"], two["seq"]) == (one["client_id"], one["seq"] + 1)

    state.unlink()
    third, three = run("cli", "tres.txt")
    [said] = new_identity_lines(third)  # said once, in one line
    assert said[1] == three["client_id"] != one["client_id"]
    assert said[2] == str(state) and said[3] == "o arquivo de estado foi apagado"
    assert three["seq"] == 1  # a new client to the server: its numbers start over
    assert read_state(state)["client_id"] == three["client_id"]
    no_traceback(first, again, third)


def test_state_file_of_the_previous_format_is_migrated(
    procs: Processes, watched: Path, tmp_path: Path, cliente: ModuleType
) -> None:
    """Format 3 (no identity): the tree is kept (what changed while stopped is still reported), an identity is added."""
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True)
    write_file(watched / "conhecido.txt")
    (watched / "apagado.txt").touch()
    tree = {"conhecido.txt": cliente.fingerprint((watched / "conhecido.txt").stat()), "apagado.txt": None}
    state.write_text(previous_state_text(str(watched), f"ws://localhost:{server.port}/", tree), encoding="ascii")
    state.chmod(0o644)
    (watched / "apagado.txt").unlink()
    write_file(watched / "novo.txt")

    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(state)])
    client.wait_for_line("Varredura inicial: 2 mudança(s) desde a última execução.", "stderr")
    shown = StdoutEvents(server)
    events, _ = wait_converged(shown, watched, start=[str(watched / "conhecido.txt")], context=procs.describe)
    assert sorted((r["event"], r["path"], r["origin"]) for r in events) == [
        ("created", f"{watched}/novo.txt", "startup"),
        ("deleted", f"{watched}/apagado.txt", "startup"),
    ]
    [said] = new_identity_lines(client)
    assert said[3] == "o arquivo de estado não tinha uma"
    saved = read_state(state)
    assert saved["version"] == 6 and saved["client_id"] == said[1] == events[0]["client_id"]
    assert "conhecido.txt" in state_tree(saved)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert client.stop() == 0
    no_traceback(client)


@pytest.mark.parametrize("version", [4, 5])
def test_state_file_of_a_previous_format_is_migrated_with_its_identity(
    procs: Processes, watched: Path, tmp_path: Path, cliente: ModuleType, version: int
) -> None:
    """Format 4 (before issue 10: a (mtime, size) fingerprint per file, no types) and 5 (issue 10's: a FileInfo
    per file, the tree nested), as those clients wrote them: nothing is discarded. The unchanged file, directory
    and symbolic link are not reported; what changed while stopped is, once; the next save writes format 6."""
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True)
    (watched / "d").mkdir()
    write_file(watched / "d" / "igual.txt")
    write_file(watched / "muda.txt", b"antes\n")
    (watched / "link").symlink_to("muda.txt")
    info = cliente.fingerprint if version == 4 else cliente.file_info
    tree = {name: info((watched / name).lstat()) for name in ["muda.txt", "link"]}
    tree["d"] = {"igual.txt": info((watched / "d" / "igual.txt").lstat())}
    identity = cliente.Identity.new()
    fields = {
        "version": version,
        "root": str(watched),
        "server": f"ws://localhost:{server.port}/",
        "client_id": identity.client_id,
        "secret": identity.secret,
        "seq": 0,
        "count": 0,
        "sum": "0000000000000000",
        "held": [],
        "tree": tree,
    }
    state.write_text(json.dumps(fields, separators=(",", ":")), encoding="ascii")
    write_file(watched / "muda.txt", b"depois, maior\n")

    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(state)])
    client.wait_for_line("Varredura inicial: 1 mudança(s) desde a última execução.", "stderr")
    shown = StdoutEvents(server)
    wait_until(lambda: len(shown()) == 1, describe=procs.describe)
    assert [(r["event"], r["path"], r["origin"], r["client_id"]) for r in shown()] == [
        ("modified", f"{watched}/muda.txt", "startup", identity.client_id)
    ]
    assert client.stop() == 0
    saved = read_state(state)
    assert saved["version"] == 6 and saved["client_id"] == identity.client_id
    assert isinstance(saved["tree"], list) and set(state_tree(saved)) == {"d", "muda.txt", "link"}
    assert set(state_tree(saved)["d"]) == {"igual.txt"}
    assert not new_identity_lines(client)
    no_traceback(client)


def test_a_process_with_the_wrong_secret_never_disturbs_the_real_client(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True)
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(state)])
    shown = StdoutEvents(server)
    touch(watched / "antes.txt")
    wait_until(lambda: len(shown()) == 1, describe=procs.describe)
    client_id = shown()[0]["client_id"]  # what anyone reading --json learns
    hello = {"type": "hello", "client_id": client_id, "name": "intruso", "root": str(watched)}
    wrong = {**hello, "version": 2, "secret": secrets.token_hex(16)}
    old = {**hello, "version": 1}
    for attempt in (wrong, old):
        assert refused(server.uri, attempt) == (4001, "credencial ausente ou errada para este client_id")
    touch(watched / "depois.txt")
    wait_until(lambda: len(shown()) == 2, describe=procs.describe)
    assert [(r["client"], r["client_id"], r["seq"]) for r in shown()] == [("cli", client_id, 1), ("cli", client_id, 2)]
    assert not said(client, "perdida") and not said(client, "Erro"), client.describe()
    assert client.running() and client.stop() == 0
    no_traceback(client, server)


def test_refused_identity_ends_the_client_with_one_clear_line(procs: Processes, watched: Path, tmp_path: Path) -> None:
    state = tmp_path / "estado.json"
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(state)])
    assert client.stop() == 0
    saved = read_state(state)
    state.write_text(json.dumps({**saved, "secret": secrets.token_hex(16)}), encoding="ascii")  # not the one it sent

    refused_client = procs.client(watched, server.uri, "cli", args=["--estado", str(state)])
    assert refused_client.wait() == 1, refused_client.describe()
    assert refused_client.lines("stderr")[-1] == (
        "Erro: o servidor recusou a identidade deste cliente (credencial ausente ou errada para este client_id); "
        f"ele guarda outro segredo para o id {saved['client_id']}. Se este arquivo de estado foi copiado ou "
        f"restaurado, ou outro cliente tomou o id, apague {state} para começar com uma identidade nova (o servidor "
        "verá um cliente novo)"
    )
    state.unlink()  # what the line says to do
    fresh = procs.client(watched, server.uri, "cli", args=["--estado", str(state)])
    fresh.wait_for_line(f"Conectado a {server.uri}", "stderr")
    assert read_state(state)["client_id"] != saved["client_id"]
    assert fresh.stop() == 0
    no_traceback(refused_client)


class FullServer(VersionOneServer):
    """Refuses the first ``full`` hellos with 1013 (as servidor.py does when its in-memory record has no room),
    then welcomes the client (version 2) and acks its events."""

    def __init__(self, full: int) -> None:
        self.full = full
        super().__init__()

    def _handler(self, ws: ServerConnection) -> None:
        hello = json.loads(ws.recv())
        self.hellos.append(hello)
        if len(self.hellos) <= self.full:
            ws.close(1013, "o servidor não tem espaço para clientes novos")
            return
        ws.send(json.dumps({"type": "welcome", "version": 2, "ack": 0}))
        for text in ws:
            message = json.loads(text)
            if message.get("type") == "events":
                self.events += message["events"]
                ws.send(json.dumps({"type": "ack", "seq": message["events"][-1]["seq"]}))


@pytest.fixture
def full_server() -> Iterator[FullServer]:
    server = FullServer(full=3)
    with server:
        yield server


def test_a_full_server_is_retried_with_one_warning(procs: Processes, watched: Path, full_server: FullServer) -> None:
    client = procs.client(watched, full_server.uri, "cli")
    client.wait_for_line(f"Conectado a {full_server.uri}", "stderr", timeout=30.0)
    touch(watched / "a.txt")
    wait_until(lambda: len(full_server.events) == 1, describe=client.describe)
    warnings = [line for line in client.lines("stderr") if "não aceitou este cliente agora" in line]
    assert len(warnings) == 1, client.describe()
    assert warnings[0].endswith(
        f"Aviso: o servidor {full_server.uri} não aceitou este cliente agora (o servidor não tem espaço para clientes "
        "novos); tentando de novo..."
    )
    assert len(full_server.hellos) == 4
    assert len({hello["client_id"] for hello in full_server.hellos}) == 1  # the same identity each time
    assert client.stop() == 0
    no_traceback(client)


def test_hello_says_the_root_and_the_path_style(procs: Processes, watched: Path, full_server: FullServer) -> None:
    client = procs.client(watched, full_server.uri, "cli")
    client.wait_for_line(f"Conectado a {full_server.uri}", "stderr", timeout=30.0)
    hello = full_server.hellos[-1]
    assert hello["root"] == os.path.abspath(watched) and hello["version"] == 3
    assert hello.get("path_style", "posix") == "posix"  # "windows" on Windows
    assert re.fullmatch("[0-9a-f]{32}", hello["secret"])
    assert client.stop() == 0


@pytest.mark.timeout(180)
def test_events_unconfirmed_at_stop_are_resent_under_their_seqs_never_shown_twice(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    """Stopped while the server is frozen (SIGSTOP): the batch waits in the server's socket buffer, unconfirmed.
    The server stores it once thawed; the restarted client sends it again under the same seqs (the state file
    keeps them), and the server drops them as already seen. Before: shown again as "(varredura inicial)"."""
    state = tmp_path / "estado.json"
    server = procs.server(json_output=True)
    first = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(state)])
    shown = StdoutEvents(server)
    wait_until(state.exists, describe=procs.describe)
    # The server says "cliente conectado" before it writes the welcome: frozen in between, the client never has a
    # session, sends nothing, and its batch cannot wait in the server's buffer. Its own line comes after the welcome.
    first.wait_for_line(f"Conectado a {server.uri}", "stderr")
    names = [f"f{index:02d}.txt" for index in range(20)]
    server.proc.send_signal(signal.SIGSTOP)
    try:
        for name in names:
            touch(watched / name)
        for name in names:
            first.wait_for_line(f"arquivo criado: {watched}/{name}")
        assert first.stop(signal.SIGINT, timeout=TIMEOUT) == 0
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert said(first, "20 evento(s) sem confirmação do servidor; serão reenviados na próxima execução."), (
        first.describe()
    )
    saved = read_state(state)
    assert [seq for seq, _ in saved["pending"]] == list(range(saved["seq"] + 1, saved["seq"] + 21))
    wait_until(lambda: len(shown()) >= 20, describe=procs.describe)  # the thawed server stores the batch

    touch(watched / "depois.txt")  # made while no client runs: reported at start-up, after the 20
    second = procs.client(watched, server.uri, "cli", args=["--estado", str(state)])
    second.wait_for_line(f"Conectado a {server.uri}", "stderr")
    events, _ = wait_converged(shown, watched, context=procs.describe)
    assert_no_event_twice(events)
    created = [record["path"] for record in events if record["event"] == "created"]
    assert sorted(created) == sorted(f"{watched}/{name}" for name in [*names, "depois.txt"]), procs.describe()
    assert [record["origin"] for record in events if record["path"] == f"{watched}/depois.txt"] == ["startup"]
    wait_until(lambda: "pending" not in read_state(state), 60.0, procs.describe)  # the next checkpoint
    assert second.stop() == 0
    no_traceback(first, second, server)


def test_state_with_pending_events_round_trips_and_a_file_without_them_loads_as_before(cliente: ModuleType) -> None:
    identity = cliente.Identity.new()
    event = json.dumps({"seq": 8, "event": "created", "path": "/r/a"})
    saved = cliente.SavedState({"a": None}, identity, 7, cliente.Held(), ((8, event),))
    text = cliente.encode_state("/r", "ws://localhost:8765/", saved)
    assert cliente.decode_state(text, "/r", "ws://localhost:8765/") == saved
    without = dict(json.loads(text))
    del without["pending"]
    loaded = cliente.decode_state(json.dumps(without), "/r", "ws://localhost:8765/")
    assert loaded is not None and loaded.pending == () and loaded.seq == 7
    for bad in ([[7, event]], [[8, "{}"]], [[9, event]], "x", [[8, 1]]):
        assert cliente.decode_state(json.dumps({**without, "pending": bad}), "/r", "ws://localhost:8765/") is None
