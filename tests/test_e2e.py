"""End to end: the real servidor.py and monitor_cliente.py as subprocesses, on 127.0.0.1, real directories.

Files whose creation must show up as exactly one "criado" line are created empty with
O_CREAT|O_EXCL (no write, so the kernel reports no modification): writing content at
creation may or may not add a "modificado" line, depending on whether the client had
already sent the "criado" when the write arrived.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import (
    CLIENT_SCRIPT,
    LOOPBACK,
    SERVER_SCRIPT,
    TIMEOUT,
    ClientProcess,
    Processes,
    ServerProcess,
    free_port,
    no_traceback,
    script_env,
    strip_ts,
    touch,
    wait_until,
)
from websockets.sync.client import connect


def created_paths(server: ServerProcess) -> set[str]:
    return {record["path"] for record in server.json_events() if record.get("event") == "created"}


# ---------------------------------------------------------------------------
# 1. The examples: created, modified, deleted.
# ---------------------------------------------------------------------------


def test_created_modified_deleted(procs: Processes, watched: Path) -> None:
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server)

    touch(watched / "novo_arquivo.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/novo_arquivo.txt")

    modified = watched / "arquivo_modificado.txt"
    touch(modified)
    server.wait_for_line(f"[cli] arquivo criado: {modified}")
    with modified.open("a", encoding="utf-8") as stream:
        stream.write("mais uma linha\n")
    server.wait_for_line(f"[cli] arquivo modificado: {modified}")

    deleted = watched / "arquivo_excluido.txt"
    touch(deleted)
    server.wait_for_line(f"[cli] arquivo criado: {deleted}")
    deleted.unlink()
    server.wait_for_line(f"[cli] arquivo excluído: {deleted}")

    expected = [
        f"arquivo criado: {watched}/novo_arquivo.txt",
        f"arquivo criado: {modified}",
        f"arquivo modificado: {modified}",
        f"arquivo criado: {deleted}",
        f"arquivo excluído: {deleted}",
    ]
    assert server.stripped() == [f"[cli] {line}" for line in expected], server.describe()
    client.wait_for_lines(expected)
    assert client.stripped() == expected, client.describe()

    assert client.stop(signal.SIGTERM) == 0
    assert server.stop(signal.SIGTERM) == 0
    status = client.stripped("stderr")
    assert status[:2] == [f"Monitorando {watched} (com subdiretórios)", f"Conectado a {server.uri}"], client.describe()
    assert status[-1] == "Monitor encerrado.", client.describe()
    assert not [line for line in status if line.startswith(("Aviso", "Erro", "Traceback"))], client.describe()


# ---------------------------------------------------------------------------
# 2. Renames.
# ---------------------------------------------------------------------------


def test_rename_file_and_directory(procs: Processes, watched: Path) -> None:
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server)

    before, after = watched / "antes.txt", watched / "depois.txt"
    touch(before)
    server.wait_for_line(f"[cli] arquivo criado: {before}")
    before.rename(after)
    server.wait_for_line(f"[cli] arquivo movido: {before} -> {after}")

    # A directory with a file and a subdirectory holding another file, each seen before the next.
    old, new = watched / "pasta_a", watched / "pasta_b"
    old.mkdir()
    server.wait_for_line(f"[cli] diretório criado: {old}")
    touch(old / "filho1.txt")
    server.wait_for_line(f"[cli] arquivo criado: {old}/filho1.txt")
    (old / "sub").mkdir()
    server.wait_for_line(f"[cli] diretório criado: {old}/sub")
    touch(old / "sub" / "filho2.txt")
    server.wait_for_line(f"[cli] arquivo criado: {old}/sub/filho2.txt")

    old.rename(new)
    server.wait_for_line(f"[cli] diretório movido: {old} -> {new}")
    # The children now live under the new name and are still watched.
    touch(new / "sub" / "sentinela.txt")
    server.wait_for_line(f"[cli] arquivo criado: {new}/sub/sentinela.txt")

    expected = [
        f"arquivo criado: {before}",
        f"arquivo movido: {before} -> {after}",
        f"diretório criado: {old}",
        f"arquivo criado: {old}/filho1.txt",
        f"diretório criado: {old}/sub",
        f"arquivo criado: {old}/sub/filho2.txt",
        f"diretório movido: {old} -> {new}",  # one line: no per-child moves
        f"arquivo criado: {new}/sub/sentinela.txt",
    ]
    assert server.stripped() == [f"[cli] {line}" for line in expected], server.describe()
    client.wait_for_lines(expected)
    assert client.stripped() == expected, client.describe()


# ---------------------------------------------------------------------------
# 3. A burst: mkdir -p then 1,000 files at once.
# ---------------------------------------------------------------------------


def test_burst_of_files_in_new_nested_directories(procs: Processes, watched: Path) -> None:
    server = procs.server(json_output=True)
    client = procs.client(watched, server.uri, "cli", connected_to=server)

    deepest = watched / "a" / "b" / "c"
    deepest.mkdir(parents=True)
    files = [deepest / f"arquivo_{index:04d}.txt" for index in range(1000)]
    for path in files:
        with path.open("w", encoding="utf-8") as stream:
            stream.write(f"{path.name}\n")

    expected = {str(watched / "a"), str(watched / "a" / "b"), str(deepest)} | {str(path) for path in files}

    def describe() -> str:
        missing = sorted(expected - created_paths(server))
        return f"{len(missing)} paths never arrived, e.g. {missing[:5]}\n{server.describe()}\n{client.describe()}"

    wait_until(lambda: expected <= created_paths(server), timeout=30.0, describe=describe)
    records = server.json_events()
    assert created_paths(server) == expected
    directories = {record["path"] for record in records if record["event"] == "created" and record["is_dir"]}
    assert directories == {str(watched / "a"), str(watched / "a" / "b"), str(deepest)}
    assert {record["event"] for record in records} <= {"created", "modified"}
    keys = [(record["client_id"], record["seq"]) for record in records]
    assert len(keys) == len(set(keys)), "an event was printed twice"
    assert [record["seq"] for record in records] == sorted(record["seq"] for record in records)


# ---------------------------------------------------------------------------
# 4. Two clients at once.
# ---------------------------------------------------------------------------


def test_two_clients_keep_their_names_ids_and_paths(procs: Processes, tmp_path: Path) -> None:
    server = procs.server(json_output=True)
    dirs = {"alfa": tmp_path / "dir_alfa", "beta": tmp_path / "dir_beta"}
    clients = {}
    for name, directory in dirs.items():
        directory.mkdir()
        clients[name] = procs.client(directory, server.uri, name, connected_to=server)

    count = 20
    for index in range(count):
        for directory in dirs.values():
            touch(directory / f"f{index:02d}.txt")
    expected = {
        name: [str(directory / f"f{index:02d}.txt") for index in range(count)] for name, directory in dirs.items()
    }
    wait_until(
        lambda: created_paths(server) >= set(expected["alfa"]) | set(expected["beta"]),
        describe=server.describe,
    )

    records = server.json_events()
    assert {record["client"] for record in records} == {"alfa", "beta"}
    ids = {}
    for name, directory in dirs.items():
        own = [record for record in records if record["client"] == name]
        assert [record["path"] for record in own] == expected[name]
        assert all(record["event"] == "created" and record["is_dir"] is False for record in own)
        assert all(record["path"].startswith(f"{directory}/") for record in own)
        assert [record["seq"] for record in own] == list(range(1, count + 1))
        client_ids = {record["client_id"] for record in own}
        assert len(client_ids) == 1, client_ids
        ids[name] = client_ids.pop()
        prefix = clients[name].id_prefix
        assert prefix is not None and ids[name].startswith(prefix)
    assert ids["alfa"] != ids["beta"]


# ---------------------------------------------------------------------------
# 5. Plain text messages from a generic websocket client.
# ---------------------------------------------------------------------------


def test_plain_text_messages_are_printed_escaped(procs: Processes) -> None:
    server = procs.server()
    with connect(server.uri) as ws:
        peer = f"{LOOPBACK}:{ws.local_address[1]}"
        ws.send("olá, servidor")
        ws.send("\x1b[31mvermelho")
        server.wait_for_line(f"[{peer}] mensagem: \\x1b[31mvermelho")
    server.wait_for_line(f"conexão de {peer} encerrada", "stderr")
    assert server.stripped() == [
        f"[{peer}] mensagem: olá, servidor",
        f"[{peer}] mensagem: \\x1b[31mvermelho",
    ]
    assert b"\x1b" not in server.raw("stdout")
    assert b"\x1b" not in server.raw("stderr")
    assert server.stop(signal.SIGINT) == 0


def test_plain_text_messages_in_json(procs: Processes) -> None:
    server = procs.server(json_output=True)
    with connect(server.uri) as ws:
        peer = f"{LOOPBACK}:{ws.local_address[1]}"
        ws.send("olá, servidor")
        ws.send("\x1b[31mvermelho")
        wait_until(lambda: len(server.lines()) >= 2, describe=server.describe)
    records = server.json_events()
    for record in records:
        ts = datetime.datetime.fromisoformat(record.pop("ts"))
        assert ts.tzinfo is not None
    assert records == [
        {"client": peer, "client_id": None, "event": "message", "text": "olá, servidor"},
        {"client": peer, "client_id": None, "event": "message", "text": "\x1b[31mvermelho"},
    ]
    assert b"\x1b" not in server.raw("stdout")


# ---------------------------------------------------------------------------
# 6. The server starts after the client.
# ---------------------------------------------------------------------------


def test_server_started_after_the_client_receives_everything(procs: Processes, watched: Path) -> None:
    port = free_port()
    uri = f"ws://{LOOPBACK}:{port}"
    client = procs.client(watched, uri, "cli")
    client.wait_for_line(
        f"Sem conexão com {uri}: conexão recusada (o servidor está rodando?); tentando novamente...", "stderr"
    )
    names = [f"antes_do_servidor_{index}.txt" for index in range(10)]
    for name in names:
        touch(watched / name)
    expected = [f"arquivo criado: {watched}/{name}" for name in names]
    client.wait_for_lines(expected)  # noticed (and queued) while no server exists

    server = procs.server(port=port)
    assert server.port == port
    server.wait_client("cli", watched)
    server.wait_for_lines(f"[cli] {line}" for line in expected)
    assert server.stripped() == [f"[cli] {line}" for line in expected], server.describe()
    client.wait_for_line(f"Conectado a {uri}", "stderr")
    assert client.stripped() == expected
    assert client.stop(signal.SIGINT) == 0
    no_traceback(client)
    assert strip_ts(client.lines("stderr")[-1]) == "Monitor encerrado."


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_server_restart_receives_changes_made_while_it_was_down(
    procs: Processes, watched: Path, sig: signal.Signals
) -> None:
    """The module docstring's promise: a server that restarts still receives every change."""
    first = procs.server()
    client = procs.client(watched, first.uri, "cli", connected_to=first)
    touch(watched / "antes.txt")
    first.wait_for_line(f"[cli] arquivo criado: {watched}/antes.txt")

    code = first.stop(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), first.describe()
    why = "código 1001" if sig == signal.SIGTERM else "conexão interrompida"  # 1001: "going away"
    client.wait_for_line(f"Conexão com {first.uri} perdida ({why}); reconectando...", "stderr")
    client.wait_for_line(re.compile(rf"Sem conexão com {re.escape(first.uri)}: "), "stderr")
    names = ["durante_1.txt", "durante_2.txt"]
    for name in names:
        touch(watched / name)
    expected = [f"arquivo criado: {watched}/{name}" for name in names]
    client.wait_for_lines(expected)

    second = procs.server(port=first.port)
    second.wait_client("cli", watched)
    second.wait_for_lines(f"[cli] {line}" for line in expected)
    delivered = [f"[cli] {line}" for line in expected]
    # The second server keeps nothing of the first (no --banco): the client's next digest (protocol 2) shows it
    # lacks antes.txt, and the resync adds it, marked as such (README, "Protocolo").
    resynced = [*delivered, f"[cli] arquivo criado: {watched}/antes.txt (ressincronização)"]
    settled = [resynced]
    if sig == signal.SIGKILL:
        # Killed right after printing, the first server may never have sent the ack for antes.txt:
        # the client then sends it again (at-least-once), and only it; the digest then agrees.
        settled.append([f"[cli] arquivo criado: {watched}/antes.txt", *delivered])
    wait_until(lambda: second.stripped() in settled, timeout=60.0, describe=second.describe)
    assert client.running()
    no_traceback(client)


# ---------------------------------------------------------------------------
# 7. The --json record of a created file.
# ---------------------------------------------------------------------------


def test_json_record_of_a_created_file(procs: Processes, watched: Path) -> None:
    server = procs.server(json_output=True)
    procs.client(watched, server.uri, "cli", connected_to=server)
    before = datetime.datetime.now(datetime.UTC)
    touch(watched / "registro.txt")
    wait_until(lambda: len(server.lines()) >= 1, describe=server.describe)
    after = datetime.datetime.now(datetime.UTC)

    [record] = server.json_events()
    assert list(record) == [
        *("client", "client_id", "seq", "event", "path", "is_dir"),
        *("type", "size", "mtime", "mode", "ts", "origin"),
    ]
    assert (record["type"], record["size"], record["mode"]) == (
        "file",
        0,
        f"{(watched / 'registro.txt').stat().st_mode & 0o7777:04o}",
    )
    mtime_ns = (watched / "registro.txt").stat().st_mtime_ns
    assert datetime.datetime.fromisoformat(record["mtime"]) == datetime.datetime.fromtimestamp(
        mtime_ns // 10**9, datetime.UTC
    ).replace(microsecond=mtime_ns % 10**9 // 1000)
    assert record["client"] == "cli"
    assert isinstance(record["client_id"], str) and re.fullmatch(r"[0-9a-f]{32}", record["client_id"])
    assert type(record["seq"]) is int and record["seq"] >= 1
    assert record["event"] == "created"
    assert record["path"] == f"{watched}/registro.txt"
    assert record["is_dir"] is False
    assert record["origin"] == "live"
    ts = datetime.datetime.fromisoformat(record["ts"])
    assert ts.tzinfo is not None
    assert before - datetime.timedelta(seconds=1) <= ts <= after + datetime.timedelta(seconds=1)


# ---------------------------------------------------------------------------
# 8. Errors: one "Erro:" line, exit 1.
# ---------------------------------------------------------------------------


def assert_single_error(script: ClientProcess | ServerProcess, expected: str) -> None:
    assert script.wait() == 1, script.describe()
    assert script.lines("stderr") == [expected], script.describe()
    assert script.lines("stdout") == [], script.describe()


def test_error_missing_directory(procs: Processes, tmp_path: Path) -> None:
    missing = tmp_path / "nao_existe"
    client = procs.client(missing, f"ws://{LOOPBACK}:{free_port()}", "cli")
    assert_single_error(client, f"Erro: o diretório não existe: {missing}")


def test_error_port_in_use(procs: Processes) -> None:
    first = procs.server()
    second = procs.server(port=first.port, wait=False)
    assert_single_error(
        second, f"Erro: a porta {first.port} já está em uso em {LOOPBACK}; feche o outro programa ou use --port"
    )
    assert first.running()


def test_error_bad_uri(procs: Processes, watched: Path) -> None:
    client = procs.client(watched, "http://x", "cli")
    assert_single_error(client, "Erro: URI do servidor inválida: 'http://x' (exemplo: ws://localhost:8765)")


# ---------------------------------------------------------------------------
# 9. SIGINT and SIGTERM: exit 0, no traceback.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("case", ["servidor", "servidor_com_cliente", "cliente_conectado", "cliente_sem_servidor"])
def test_signal_stops_cleanly(procs: Processes, watched: Path, case: str, sig: signal.Signals) -> None:
    if case == "cliente_sem_servidor":
        uri = f"ws://{LOOPBACK}:{free_port()}"
        client = procs.client(watched, uri, "cli")
        client.wait_for_line(re.compile(rf"Sem conexão com {re.escape(uri)}: "), "stderr")
        assert client.stop(sig) == 0, client.describe()
        no_traceback(client)
        assert strip_ts(client.lines("stderr")[-1]) == "Monitor encerrado."
        return

    server = procs.server()
    if case == "servidor":
        assert server.stop(sig) == 0, server.describe()
        no_traceback(server)
        assert [strip_ts(line) for line in server.lines("stderr")[-2:]] == [
            "Encerrando o servidor...",
            "Servidor encerrado.",
        ], server.describe()
        return

    client = procs.client(watched, server.uri, "cli", connected_to=server)
    client.wait_for_line(f"Conectado a {server.uri}", "stderr")
    if case == "servidor_com_cliente":
        assert server.stop(sig) == 0, server.describe()
        no_traceback(server)
        assert strip_ts(server.lines("stderr")[-1]) == "Servidor encerrado."
        client.wait_for_line(re.compile(rf"Sem conexão com {re.escape(server.uri)}: "), "stderr")
        assert client.running()
        return

    assert client.stop(sig) == 0, client.describe()
    no_traceback(client)
    assert strip_ts(client.lines("stderr")[-1]) == "Monitor encerrado."
    server.wait_for_line(re.compile(r"cliente desconectado: cli \(id "), "stderr")
    assert server.running()


# ---------------------------------------------------------------------------
# 10. Importing a script by path runs nothing.
# ---------------------------------------------------------------------------

IMPORT_CHECK = textwrap.dedent(
    """
    import importlib.util
    import os
    import sys
    import threading

    spec = importlib.util.spec_from_file_location("script_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert callable(module.main)
    assert threading.active_count() == 1, threading.enumerate()
    sockets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            sockets.append(fd)
    assert not sockets, sockets
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open sockets")
@pytest.mark.parametrize("script", [SERVER_SCRIPT, CLIENT_SCRIPT], ids=lambda path: path.name)
def test_import_by_path_runs_nothing(tmp_path: Path, script: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, str(script)],
        cwd=tmp_path,
        env=script_env(tmp_path / ".cache"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


# ---------------------------------------------------------------------------
# 11. A file name that is not UTF-8.
# ---------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems reject names that are not UTF-8")
@pytest.mark.parametrize("json_output", [False, True], ids=["texto", "json"])
def test_non_utf8_file_name(procs: Processes, watched: Path, json_output: bool) -> None:
    server = procs.server(json_output=json_output)
    client = procs.client(watched, server.uri, "cli", connected_to=server)
    raw_path = os.fsencode(watched) + b"/bad_\xff.txt"
    touch(raw_path)
    shown = f"{watched}/bad_\\xff.txt"  # a literal backslash, x, f, f

    if json_output:
        wait_until(lambda: len(server.lines()) >= 1, describe=server.describe)
        [record] = server.json_events()
        expected: dict[str, Any] = {"event": "created", "path": shown, "is_dir": False}
        assert {key: record[key] for key in expected} == expected
        assert base64.b64decode(record["path_b64"], validate=True) == raw_path
        assert "dest_path_b64" not in record
    else:
        server.wait_for_line(f"[cli] arquivo criado: {shown}")
    client.wait_for_line(f"arquivo criado: {shown}")

    # Both keep working: a normal file still arrives.
    touch(watched / "normal.txt")
    if json_output:
        wait_until(lambda: len(server.lines()) >= 2, describe=server.describe)
        assert server.json_events()[1]["path"] == f"{watched}/normal.txt"
        assert "path_b64" not in server.json_events()[1]
    else:
        server.wait_for_line(f"[cli] arquivo criado: {watched}/normal.txt")
        assert server.stripped() == [f"[cli] arquivo criado: {shown}", f"[cli] arquivo criado: {watched}/normal.txt"]
    assert server.running() and client.running()
    server.raw("stdout").decode("utf-8")  # strict: no raw undecodable byte was printed
    client.raw("stdout").decode("utf-8")
    assert client.stop() == 0 and server.stop() == 0
    no_traceback(client)
    no_traceback(server)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems reject names that are not UTF-8")
def test_non_utf8_rename_in_json(procs: Processes, watched: Path) -> None:
    server = procs.server(json_output=True)
    procs.client(watched, server.uri, "cli", connected_to=server)
    source = os.fsencode(watched) + b"/velho_\xfe.txt"
    destination = os.fsencode(watched) + b"/novo_\xfd.txt"
    touch(source)
    wait_until(lambda: len(server.lines()) >= 1, describe=server.describe)
    os.rename(source, destination)
    wait_until(lambda: len(server.lines()) >= 2, describe=server.describe)

    created, moved = server.json_events()
    assert (created["event"], created["path"]) == ("created", f"{watched}/velho_\\xfe.txt")
    assert base64.b64decode(created["path_b64"]) == source
    assert (moved["event"], moved["path"], moved["dest_path"]) == (
        "moved",
        f"{watched}/velho_\\xfe.txt",
        f"{watched}/novo_\\xfd.txt",
    )
    assert base64.b64decode(moved["path_b64"]) == source
    assert base64.b64decode(moved["dest_path_b64"]) == destination
