"""First run and daily use (issue 9): every message clear, every exit clean.

End to end where it is about what a user sees: the real scripts on 127.0.0.1, real directories.
Each test names the row of the issue it shows.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import http.server
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import watchdog
from support import (
    CLIENT_SCRIPT,
    LOOPBACK,
    SERVER_SCRIPT,
    TIMEOUT,
    Processes,
    Script,
    ServerProcess,
    free_port,
    has_ts,
    no_traceback,
    previous_state_text,
    script_env,
    strip_ts,
    touch,
    wait_until,
)
from websockets.sync.client import connect

SCRIPTS = [SERVER_SCRIPT, CLIENT_SCRIPT]
MISSING = "Erro: falta a biblioteca {} — instale com: pip install websockets watchdog"


def plain(lines: list[str]) -> list[str]:
    return [strip_ts(line) if has_ts(line) else line for line in lines]


def assert_single_error(script: Script, expected: str) -> None:
    assert script.wait() == 1, script.describe()
    assert script.lines("stderr") == [expected], script.describe()
    assert script.lines("stdout") == [], script.describe()


# ---------------------------------------------------------------------------
# The libraries are not installed.
# ---------------------------------------------------------------------------

# Runs a script as __main__ in an interpreter where importing ``blocked`` (and its submodules) fails.
BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc
    import runpy
    import sys

    blocked = sys.argv.pop(1)

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == blocked or name.startswith(blocked + "."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
    """
)


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=script_env(cwd / ".cache"), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
@pytest.mark.parametrize("args", [[], ["--help"]], ids=["sem_opcoes", "help"])
def test_without_the_libraries_one_portuguese_line(tmp_path: Path, script: Path, args: list[str]) -> None:
    """-S -I: no site-packages at all, as with a Python where nothing was installed yet."""
    result = run([sys.executable, "-S", "-I", str(script), *args], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", MISSING.format("websockets") + "\n")


def test_without_watchdog_the_client_names_it(tmp_path: Path) -> None:
    result = run([sys.executable, "-I", "-c", BLOCKED_RUN, "watchdog", str(CLIENT_SCRIPT)], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", MISSING.format("watchdog") + "\n")


# Runs a script as __main__ with the folder sys.argv[1] (a fake old library) first on sys.path.
OLD_LIBRARY_RUN = textwrap.dedent(
    """
    import runpy
    import sys

    sys.path.insert(0, sys.argv.pop(1))
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
    """
)


@pytest.mark.parametrize(
    ("library", "version", "files", "shown"),
    [
        ("websockets", "10.4", {"__init__.py": "", "client.py": ""}, "websockets 10.4"),  # no websockets.asyncio
        ("watchdog", "0.9.0", {"__init__.py": "", "events.py": ""}, "watchdog 0.9.0"),  # a name it lacks
        ("websockets", None, {"__init__.py": "", "client.py": ""}, "websockets (de versão desconhecida)"),
    ],
    ids=["websockets-sem-asyncio", "watchdog-sem-um-nome", "sem-metadados"],
)
def test_a_library_too_old_to_import_is_named_with_its_version(
    tmp_path: Path, library: str, version: str | None, files: dict[str, str], shown: str
) -> None:
    """Before: "falta a biblioteca websockets" (ModuleNotFoundError for websockets.asyncio), or a traceback (an
    ImportError of a name an older version does not have)."""
    fake = tmp_path / "antigas"
    (fake / library).mkdir(parents=True)
    for name, text in files.items():
        (fake / library / name).write_text(text, encoding="utf-8")
    if version is not None:
        info = fake / f"{library}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {library}\nVersion: {version}\n")
    isolated = []
    if version is None:  # no site-packages, so no installed metadata either; watchdog copied beside the fake
        isolated = ["-S"]
        shutil.copytree(Path(watchdog.__file__).parent, fake / "watchdog", ignore=shutil.ignore_patterns("*.pyc"))
    scripts = [CLIENT_SCRIPT, SERVER_SCRIPT] if library == "websockets" else [CLIENT_SCRIPT]  # the server: no watchdog
    for script in scripts:
        result = run([sys.executable, *isolated, "-c", OLD_LIBRARY_RUN, str(fake), str(script), "--help"], tmp_path)
        assert (script.name, result.returncode, result.stdout, result.stderr) == (
            script.name,
            1,
            "",
            f"Erro: {shown} é antigo demais; este script precisa de uma versão mais nova: "
            "pip install -U websockets watchdog\n",
        )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_imported_without_the_libraries_the_error_is_raised(tmp_path: Path, script: Path) -> None:
    """Only a script run by a user turns it into a sentence: an importer gets the real exception."""
    load = f"import runpy; runpy.run_path({str(script)!r}, run_name='imported')"
    result = run([sys.executable, "-S", "-I", "-c", load], tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "ModuleNotFoundError: No module named 'websockets'"


# ---------------------------------------------------------------------------
# A URI with a port out of range.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["ws://localhost:99999", "ws://localhost:porta", "ws://[::1"])
def test_uri_that_urllib_rejects_is_one_error_line(procs: Processes, watched: Path, uri: str) -> None:
    client = procs.client(watched, uri, "cli")
    expected = f"Erro: URI do servidor inválida: {uri!r} (exemplo: ws://localhost:8765)"
    if uri == "ws://localhost:99999":
        expected = f"Erro: URI do servidor inválida: {uri!r} (a porta vai de 1 a 65535)"
    assert_single_error(client, expected)


# ---------------------------------------------------------------------------
# monitor_cliente.py DIR | head -2
# ---------------------------------------------------------------------------


def test_closed_stdout_says_so_once_and_keeps_delivering(procs: Processes, watched: Path, tmp_path: Path) -> None:
    server = procs.server()
    stderr_path = tmp_path / "cliente.stderr"
    argv = [sys.executable, str(CLIENT_SCRIPT), str(watched), "--servidor", server.uri, "--nome", "cli"]
    with open(stderr_path, "wb") as stderr:
        client = subprocess.Popen(argv, env=script_env(tmp_path / ".cache"), stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert client.stdout is not None
        head = subprocess.Popen(["head", "-2"], stdin=client.stdout, stdout=subprocess.PIPE)
        client.stdout.close()  # head alone reads it now, as in a shell pipeline
        server.wait_client("cli", watched)
        names = [f"f{index}.txt" for index in range(7)]
        for name in names[:2]:
            touch(watched / name)
            server.wait_for_line(f"[cli] arquivo criado: {watched}/{name}")
        shown, _ = head.communicate(timeout=TIMEOUT)
        assert [strip_ts(line) for line in shown.decode().splitlines()] == [
            f"arquivo criado: {watched}/{name}" for name in names[:2]
        ]
        for name in names[2:]:  # the first of these meets the closed pipe
            touch(watched / name)
        server.wait_for_lines(f"[cli] arquivo criado: {watched}/{name}" for name in names)
        warning = (
            "Aviso: a saída padrão foi fechada; as mudanças deixam de aparecer aqui, mas continuam sendo enviadas."
        )
        wait_until(lambda: warning in stderr_path.read_text(), describe=stderr_path.read_text)
        touch(watched / "depois.txt")
        server.wait_for_line(f"[cli] arquivo criado: {watched}/depois.txt")
        client.send_signal(signal.SIGTERM)
        assert client.wait(TIMEOUT) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    status = plain(stderr_path.read_text().splitlines())
    assert status.count(warning) == 1, status
    assert status[-1] == "Monitor encerrado.", status
    assert "Traceback" not in stderr_path.read_text() and "Exception" not in stderr_path.read_text()


def test_no_stdout_at_all_is_fine_too(procs: Processes, watched: Path) -> None:
    """Started with its standard output closed (``>&-``): Python has no sys.stdout; the changes still go out."""
    server = procs.server()
    closing = ["sh", "-c", 'exec "$@" >&-', "sh"]
    client = procs.client(watched, server.uri, "cli", connected_to=server, command_prefix=closing)
    touch(watched / "a.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/a.txt")
    assert client.stop() == 0, client.describe()
    no_traceback(client)
    assert plain(client.lines("stderr"))[-1] == "Monitor encerrado.", client.describe()


# ---------------------------------------------------------------------------
# Ctrl-C: a SIGINT ignored at start stays ignored (what the quick start relies on).
# ---------------------------------------------------------------------------


def test_server_started_with_sigint_ignored_keeps_running_on_sigint(tmp_path: Path) -> None:
    ignoring = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]  # what the quick start's `trap "" INT` does
    server = Script("servidor", SERVER_SCRIPT, ["--host", LOOPBACK, "--port", "0"], tmp_path, command_prefix=ignoring)
    try:
        line = server.wait_for_line(re.compile(r"ouvindo em ws://127\.0\.0\.1:(\d+)$"), "stderr")
        port = line.rsplit(":", 1)[1]
        server.proc.send_signal(signal.SIGINT)
        with connect(f"ws://{LOOPBACK}:{port}") as ws:  # served after the SIGINT: it changed nothing
            ws.send("ainda aqui")
            server.wait_for_line(re.compile(r"mensagem: ainda aqui$"))
        assert server.running()
        assert server.stop(signal.SIGTERM) == 0
        assert plain(server.lines("stderr"))[-2:] == ["Encerrando o servidor...", "Servidor encerrado."]
        no_traceback(server)
    finally:
        server.kill()


# ---------------------------------------------------------------------------
# Exits: a signal before the event loop runs, a frozen server, a scan that takes long.
# ---------------------------------------------------------------------------

# Calls main() with a signal sent to itself while the command line is being read: before the loop exists.
EARLY_SIGNAL = textwrap.dedent(
    """
    import importlib.util, os, signal, sys

    spec = importlib.util.spec_from_file_location("script_under_test", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    real = module.build_parser

    def build_parser():
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
        return real()

    module.build_parser = build_parser
    sys.exit(module.main(sys.argv[3:]))
    """
)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_signal_before_the_loop_exits_quietly_with_0(tmp_path: Path, script: Path, sig: str, watched: Path) -> None:
    args = ["--port", "0"] if script == SERVER_SCRIPT else [str(watched), "--servidor", f"ws://{LOOPBACK}:1"]
    result = run([sys.executable, "-c", EARLY_SIGNAL, str(script), sig, *args], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_ctrl_c_with_a_frozen_server_does_not_wait_for_its_close(procs: Processes, watched: Path) -> None:
    """Before: the close waited --keepalive seconds (here 60) for a server that never answers."""
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["--keepalive", "60"])
    client.wait_for_line(f"Conectado a {server.uri}", "stderr")
    server.proc.send_signal(signal.SIGSTOP)
    try:
        touch(watched / "pendente.txt")
        client.wait_for_line(f"arquivo criado: {watched}/pendente.txt")
        assert client.stop(signal.SIGINT, timeout=TIMEOUT) == 0  # flush (5 s) + close (1 s), not 60 s
    finally:
        server.proc.send_signal(signal.SIGCONT)
    status = plain(client.lines("stderr"))
    assert status[-3:] == [
        "Encerrando: entregando os eventos pendentes...",
        "Aviso: 1 evento(s) sem confirmação do servidor; serão reenviados na próxima execução.",
        "Monitor encerrado.",
    ], client.describe()
    no_traceback(client)


def test_scan_tree_stops_when_asked(cliente: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    stop = threading.Event()
    assert cliente.scan_tree(str(tmp_path), frozenset(), stop) is not None
    stop.set()
    with pytest.raises(cliente.Interrupted):
        cliente.scan_tree(str(tmp_path), frozenset(), stop)


def test_stop_during_the_initial_scan_does_not_wait_for_it(
    cliente: ModuleType, watched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan that would take as long as it likes (a tree of millions of files): the stop ends it.

    Fault injection at our own boundary: scan_tree stands for a huge tree, ending only when told to stop.
    """
    entered = threading.Event()

    def endless_scan(root: str, skip: frozenset[str], stop: threading.Event | None = None, *ignore: object) -> object:
        entered.set()
        assert stop is not None, "the initial scan cannot be interrupted"
        if not stop.wait(TIMEOUT * 2):
            raise AssertionError("never told to stop")
        raise cliente.Interrupted

    monkeypatch.setattr(cliente, "scan_tree", endless_scan)
    settings = cliente.Settings(
        uri=f"ws://{LOOPBACK}:{free_port()}", root=str(watched), name="cli", quiet=True, state_file=""
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(cliente.MonitorClient(settings).run(stop))
        while not entered.is_set():
            assert not run.done(), run
            await asyncio.sleep(0.01)
        stop.set()
        done, _ = await asyncio.wait({run}, timeout=TIMEOUT)
        assert done, "run() still waits for the initial scan"
        run.result()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------
# Connection hints: what answered at that address.
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def serving(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    """Run ``server`` in a thread of this test; its port while it runs."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@contextlib.contextmanager
def http_server(directory: Path, protocol: str) -> Iterator[int]:
    """python -m http.server, on 127.0.0.1 (a free port), in a thread of this test."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = protocol

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(
        http.server.ThreadingHTTPServer((LOOPBACK, 0), functools.partial(Handler, directory=str(directory)))
    ) as port:
        yield port


@pytest.mark.parametrize(
    ("protocol", "path", "why"),
    [
        ("HTTP/1.0", "", "o endereço responde HTTP, mas não é um servidor deste monitor"),  # python -m http.server
        ("HTTP/1.1", "/nada", "o endereço responde HTTP 404, mas não é um servidor deste monitor"),
    ],
    ids=["http.server", "http11_404"],
)
def test_an_http_server_that_is_not_a_monitor(
    procs: Processes, watched: Path, tmp_path: Path, protocol: str, path: str, why: str
) -> None:
    with http_server(tmp_path, protocol) as port:
        uri = f"ws://{LOOPBACK}:{port}{path}"
        client = procs.client(watched, uri, "cli")
        assert client.wait() == 1, client.describe()
    assert plain(client.lines("stderr")) == [
        f"Monitorando {watched} (com subdiretórios)",
        f"Erro: não foi possível conectar a {uri}: {why} (confira o endereço e a porta)",
    ], client.describe()
    no_traceback(client)


@contextlib.contextmanager
def redirecting_server(status: int, location: str) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 (a free port) that answers every request with ``status`` to ``location``
    (``{port}`` in it: its own port)."""
    where: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Location", where[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    where.append(location.format(port=server.server_address[1]))
    with serving(server) as port:
        yield port


@pytest.mark.parametrize(
    ("status", "location", "target"),
    [
        (301, f"ws://{LOOPBACK}:1/", f"ws://{LOOPBACK}:1/"),  # nothing listens there: before, "conexão recusada"
        (302, "/outro", f"ws://{LOOPBACK}:{{port}}/outro"),
        (307, "ws://localhost:{port}/", "ws://localhost:{port}/"),  # to itself: before, "more than 10 redirects"
    ],
    ids=["301-para-outra-porta", "302-relativo", "307-para-si-mesmo"],
)
def test_a_redirect_is_said_with_its_target_and_not_followed(
    procs: Processes, watched: Path, status: int, location: str, target: str
) -> None:
    with redirecting_server(status, location) as port:
        uri = f"ws://{LOOPBACK}:{port}"
        client = procs.client(watched, uri, "cli")
        assert client.wait() == 1, client.describe()
    assert plain(client.lines("stderr"))[-1] == (
        f"Erro: não foi possível conectar a {uri}: o servidor redirecionou para {target.format(port=port)} "
        f"(HTTP {status}); este monitor não segue redirecionamentos: se esse é o servidor certo, use-o em --servidor"
    ), client.describe()
    no_traceback(client)


def test_wss_to_a_plain_server_says_why_and_keeps_trying(procs: Processes, watched: Path) -> None:
    """A bare reset at the TLS hello is what a ws:// server does to a wss:// URI, but also what a proxy without
    its backend does: the likely cause is said on each attempt, and the client keeps trying (nothing is lost)."""
    server = procs.server()
    uri = f"wss://{LOOPBACK}:{server.port}"
    client = procs.client(watched, uri, "cli")
    expected = f"Sem conexão com {uri}: o servidor não fala TLS? então a URI é {server.uri}; tentando novamente..."
    client.wait_for_line(lambda line: line.endswith(expected), stream="stderr")
    assert client.running()
    assert client.stop(signal.SIGTERM) == 0, client.describe()
    no_traceback(client)
    assert server.running()


def test_wss_to_an_http_server_is_one_line_and_stops(procs: Processes, watched: Path, tmp_path: Path) -> None:
    with http_server(tmp_path, "HTTP/1.0") as port:
        uri = f"wss://{LOOPBACK}:{port}"
        client = procs.client(watched, uri, "cli")
        assert client.wait() == 1, client.describe()
    assert plain(client.lines("stderr"))[-1] == (
        f"Erro: falha de TLS com {uri}: o servidor não fala TLS? então a URI é ws://{LOOPBACK}:{port}"
    ), client.describe()


def test_nothing_listening_says_refused(procs: Processes, watched: Path) -> None:
    uri = f"ws://{LOOPBACK}:{free_port()}"
    client = procs.client(watched, uri, "cli")
    client.wait_for_line(
        f"Sem conexão com {uri}: conexão recusada (o servidor está rodando?); tentando novamente...", "stderr"
    )
    assert client.stop() == 0


def test_describe_connect_error_fits_what_was_found(cliente: ModuleType) -> None:
    """The same hints, without a network: the shapes websockets and ssl give them."""
    uri = "wss://servidor.exemplo:8765"
    expired = ssl.SSLCertVerificationError(1, "certificate verify failed")
    expired.verify_code, expired.verify_message = 10, "certificate has expired"
    assert cliente.describe_connect_error(expired, uri) == (
        "o certificado do servidor expirou; ele precisa de um certificado novo"
    )
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_code, mismatch.verify_message = 62, "Hostname mismatch"
    assert cliente.describe_connect_error(mismatch, uri).startswith(
        "o certificado do servidor não vale para servidor.exemplo;"
    )
    assert cliente.describe_connect_error(ConnectionResetError(), uri) == (
        "o servidor não fala TLS? então a URI é ws://servidor.exemplo:8765"
    )
    assert cliente.describe_connect_error(ConnectionResetError(104, "Connection reset by peer"), "ws://h:1") == (
        "conexão interrompida pelo outro lado"  # Portuguese, never the English strerror
    )


# ---------------------------------------------------------------------------
# --estado: only a regular file in an existing folder.
# ---------------------------------------------------------------------------


def test_state_file_in_a_missing_folder_is_an_error_and_creates_nothing(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "naoexiste"
    client = procs.client(watched, f"ws://{LOOPBACK}:1", "cli", args=["--estado", str(missing / "st.json")])
    assert_single_error(client, f"Erro: a pasta do arquivo de estado não existe: {missing}")
    assert not missing.exists()


@pytest.mark.parametrize("kind", ["fifo", "diretorio"])
def test_state_file_must_be_a_regular_file(procs: Processes, watched: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "estado"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    client = procs.client(watched, f"ws://{LOOPBACK}:1", "cli", args=["--estado", str(path)])
    assert_single_error(client, f"Erro: o arquivo de estado precisa ser um arquivo comum: {path}")


@pytest.mark.parametrize("target_exists", [True, False], ids=["link", "link-pendente"])
def test_state_file_behind_a_symlink_is_written_to_its_target(
    procs: Processes, watched: Path, tmp_path: Path, target_exists: bool
) -> None:
    """Before: the link was replaced by a regular file (a dangling one too). Now the state goes to the target."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "estado.json"
    if target_exists:
        target.write_text("{}", encoding="ascii")  # not a state: replaced by one, through the link
    link = tmp_path / "estado-link.json"
    link.symlink_to(target)
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["--estado", str(link)])
    wait_until(lambda: '"client_id"' in target.read_text(encoding="ascii") if target.exists() else False)
    touch(watched / "a.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/a.txt")
    assert client.stop() == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"a.txt"' in target.read_text(encoding="ascii")
    assert not (tmp_path / "estado-link.json.tmp").exists() and not (tmp_path / "estado-link.json.lock").exists()
    no_traceback(client)


CHECK_STATE_FILE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import monitor_cliente
    try:
        monitor_cliente.validate_state_file(sys.argv[2])
    except monitor_cliente.FatalError as exc:
        print(exc)
    """
)


@pytest.mark.parametrize("case", ["arquivo-somente-leitura", "pasta-somente-leitura"])
def test_state_file_we_cannot_write_is_refused_at_start(tmp_path: Path, case: str) -> None:
    """Before: a 0444 state file was silently replaced (its mode changed). Modes do not bind root: as root the
    check runs as ``nobody`` (setpriv), in a folder of its own that nobody can read."""
    folder = Path(tempfile.mkdtemp(prefix="estado-"))
    try:
        path = folder / "estado.json"
        if case == "arquivo-somente-leitura":
            folder.chmod(0o777)
            path.write_text("{}", encoding="ascii")
            path.chmod(0o444)
            expected = f"sem permissão para gravar o arquivo de estado {path}"
        else:
            folder.chmod(0o555)
            expected = f"sem permissão para gravar na pasta do arquivo de estado: {folder}"
        command = [sys.executable, "-c", CHECK_STATE_FILE, str(Path(__file__).parent.parent), str(path)]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("root without setpriv: modes do not apply")
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        assert result.stdout.strip() == expected, result
        assert stat.S_IMODE(path.stat().st_mode) == 0o444 if path.exists() else True
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------
# One client per state file.
# ---------------------------------------------------------------------------


def test_a_second_client_on_the_same_directory_and_server_is_refused(procs: Processes, watched: Path) -> None:
    server = procs.server()
    first = procs.client(watched, server.uri, "um", connected_to=server)
    second = procs.client(watched, server.uri, "dois")
    assert second.wait() == 1, second.describe()
    [error] = [line for line in second.lines("stderr") if line.startswith("Erro:")]
    assert re.fullmatch(
        r"Erro: outro monitor_cliente já usa o arquivo de estado .+/monitor_cliente/[0-9a-f]{16}-[0-9a-f]{16}\.json "
        r"\(o mesmo diretório e servidor\); pare o outro ou indique outro arquivo com --estado",
        error,
    ), second.describe()
    assert not [line for line in second.lines("stderr") if "Aviso" in line], second.describe()
    touch(watched / "depois.txt")
    server.wait_for_line(f"[um] arquivo criado: {watched}/depois.txt")
    assert first.stop() == 0
    # Once the first one stopped, the lock is free again.
    third = procs.client(watched, server.uri, "tres", connected_to=server)
    assert third.stop() == 0
    no_traceback(first, second, third)


# ---------------------------------------------------------------------------
# The state file is keyed by the server's address, however it is spelled.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ws://localhost:8765", "ws://127.0.0.1:8765"),
        ("ws://localhost:8765", "ws://[::1]:8765/"),
        ("ws://LocalHost:8765", "ws://127.1.2.3:8765"),
        ("ws://Exemplo.COM", "ws://exemplo.com:80/"),
        ("wss://exemplo.com/", "wss://exemplo.com:443"),
        ("ws://exemplo.com/a?b=1", "ws://EXEMPLO.com:80/a?b=1"),
    ],
)
def test_one_server_spelled_two_ways_is_one_address(cliente: ModuleType, one: str, other: str) -> None:
    assert cliente.server_address(one) == cliente.server_address(other)
    assert cliente.default_state_path("/w", one) == cliente.default_state_path("/w", other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ws://localhost:8765", "ws://localhost:8766"),
        ("ws://localhost:8765", "wss://localhost:8765"),
        ("ws://exemplo.com/a", "ws://exemplo.com/b"),
        ("ws://exemplo.com", "ws://localhost"),
    ],
)
def test_different_servers_are_different_addresses(cliente: ModuleType, one: str, other: str) -> None:
    assert cliente.server_address(one) != cliente.server_address(other)


def test_state_file_keeps_reading_the_old_spelling(cliente: ModuleType) -> None:
    """A state file of version 1.0.0 stored the URI as typed: it still counts for the same server."""
    tree = {"a.txt": 1}
    old = previous_state_text("/w", "ws://127.0.0.1:8765", tree)  # what 1.0.0 wrote for that URI
    migrated = cliente.SavedState({"a.txt": cliente.pack_info("file", 1, None)})  # format 3: migrated
    assert cliente.decode_state(old, "/w", cliente.server_address("ws://localhost:8765")) == migrated
    assert cliente.decode_state(old, "/w", cliente.server_address("ws://localhost:8766")) is None
    state = cliente.SavedState(tree, cliente.Identity.new())
    new = cliente.encode_state("/w", cliente.server_address("ws://127.0.0.1:8765"), state)
    assert '"server":"ws://localhost:8765/"' in new
    assert cliente.stored_server(new) == "ws://localhost:8765/"


def startup_lines(server: ServerProcess, name: str) -> list[str]:
    return [line for line in server.stripped() if line.startswith(f"[{name}] ") and "(varredura inicial)" in line]


def test_restart_with_another_spelling_of_the_server_reports_what_changed(procs: Processes, watched: Path) -> None:
    server = procs.server()
    as_ip = f"ws://127.0.0.1:{server.port}"
    first = procs.client(watched, as_ip, "cli", connected_to=server)
    touch(watched / "antes.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/antes.txt")
    assert first.stop() == 0  # the last checkpoint saves the state: the server has everything

    touch(watched / "parado.txt")  # while no client runs
    as_name = f"ws://localhost:{server.port}"
    second = procs.client(watched, as_name, "cli2", connected_to=server)
    server.wait_for_line(f"[cli2] arquivo criado: {watched}/parado.txt (varredura inicial)")
    second.wait_for_line("Varredura inicial: 1 mudança(s) desde a última execução.", "stderr")
    assert startup_lines(server, "cli2") == [f"[cli2] arquivo criado: {watched}/parado.txt (varredura inicial)"]
    assert not [line for line in second.lines("stderr") if "Aviso" in line], second.describe()
    assert second.stop() == 0


def test_first_run_with_another_server_says_which_one_the_directory_has(procs: Processes, watched: Path) -> None:
    one = procs.server()
    first = procs.client(watched, one.uri, "cli", connected_to=one)
    assert first.stop() == 0
    other = procs.server()
    second = procs.client(watched, other.uri, "cli2", connected_to=other)
    expected = (
        f"Aviso: primeira execução deste diretório com ws://localhost:{other.port}/; o estado que ele tem é de "
        f"outro endereço, ws://localhost:{one.port}/: o que mudou enquanto o cliente estava parado não será "
        "relatado (se é o mesmo servidor, use a mesma URI)"
    )
    assert [line for line in plain(second.lines("stderr")) if line.startswith("Aviso")] == [expected]
    assert second.stop() == 0
    # Its own state file exists now: the next run is not a first run, and says nothing.
    third = procs.client(watched, other.uri, "cli3", connected_to=other)
    assert third.stop() == 0
    assert not [line for line in third.lines("stderr") if "Aviso" in line], third.describe()


def test_state_file_of_the_previous_version_is_picked_up(
    procs: Processes, watched: Path, cliente: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrades lose nothing: the 1.0.0 state file (its old name, the URI as typed) is moved and used."""
    server = procs.server()
    monkeypatch.setenv("XDG_CACHE_HOME", str(procs.cwd / ".cache"))  # where the client's cache is
    legacy = Path(cliente.legacy_state_path(str(watched), server.uri))
    legacy.parent.mkdir(parents=True)
    touch(watched / "conhecido.txt")
    info = cliente.fingerprint((watched / "conhecido.txt").stat())
    legacy.write_text(previous_state_text(str(watched), server.uri, {"conhecido.txt": info}))
    touch(watched / "novo.txt")

    client = procs.client(watched, server.uri, "cli", connected_to=server)
    server.wait_for_line(f"[cli] arquivo criado: {watched}/novo.txt (varredura inicial)")
    client.wait_for_line("Varredura inicial: 1 mudança(s) desde a última execução.", "stderr")
    assert startup_lines(server, "cli") == [f"[cli] arquivo criado: {watched}/novo.txt (varredura inicial)"]
    assert not legacy.exists()
    assert Path(cliente.default_state_path(str(watched), server.uri)).is_file()
    assert client.stop() == 0


# ---------------------------------------------------------------------------
# -q and -v.
# ---------------------------------------------------------------------------


def test_quiet_hides_the_changes_but_not_the_connection_lost_and_recovered(procs: Processes, watched: Path) -> None:
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["-q"])
    client.wait_for_line(f"Conectado a {server.uri}", "stderr")
    touch(watched / "a.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/a.txt")
    assert server.stop() == 0
    client.wait_for_line(f"Conexão com {server.uri} perdida (código 1001); reconectando...", "stderr")
    client.wait_for_line(re.compile(rf"Sem conexão com {re.escape(server.uri)}: "), "stderr")
    again = procs.server(port=server.port)
    again.wait_client("cli", watched)
    wait_until(lambda: plain(client.lines("stderr")).count(f"Conectado a {server.uri}") == 2, describe=client.describe)
    assert client.stop() == 0
    assert client.lines("stdout") == []
    status = plain(client.lines("stderr"))
    assert status[0] == f"Monitorando {watched} (com subdiretórios)"
    # The restarted server (in memory) forgot a.txt: a verification that was under way may end during the flush.
    end = status.index("Encerrando: entregando os eventos pendentes...")
    assert status[-1] == "Monitor encerrado."
    assert all(line.startswith("Ressincronização com o servidor: ") for line in status[end + 1 : -1]), status


# websockets' own debug lines: "= connection is OPEN", "> TEXT '…' [N bytes]", "< TEXT …".
LIBRARY_LINE = re.compile(r"^(= connection is|> TEXT|< TEXT|> GET|< HTTP/1\.1|Using selector)")


def test_verbose_shows_our_diagnostics_and_only_vv_the_libraries(procs: Processes, watched: Path) -> None:
    server = procs.server()
    one = procs.client(watched, server.uri, "cli", connected_to=server, args=["-v"])
    touch(watched / "a.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/a.txt")
    one.wait_for_line(re.compile(r"varredura de verificação: \d+ ms$"), "stderr")
    assert one.stop() == 0
    status = plain(one.lines("stderr"))
    assert any(re.fullmatch(r"arquivo de estado: .+\.json \(ainda não existe: primeira execução\)", s) for s in status)
    assert any(re.fullmatch(r"varredura inicial: \d+ ms", line) for line in status), one.describe()
    assert any(re.fullmatch(r"estado gravado: .+\.json \(\d+ bytes, \d+ ms\)", line) for line in status)
    assert not [line for line in status if LIBRARY_LINE.search(line)], one.describe()

    two = procs.client(watched, server.uri, "cli2", connected_to=server, args=["-vv"])
    two.wait_for_line(re.compile(r"= connection is OPEN"), "stderr")
    assert two.stop() == 0
    status = plain(two.lines("stderr"))
    assert any(re.fullmatch(r"arquivo de estado: .+\.json \(\d+ bytes\)", line) for line in status), two.describe()
    assert any(line.startswith("> TEXT") for line in status), two.describe()


# ---------------------------------------------------------------------------
# --help shows the numbers as the README writes them.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "shown"), [(SERVER_SCRIPT, "20"), (CLIENT_SCRIPT, "20")])
def test_help_shows_whole_numbers_without_a_decimal_point(tmp_path: Path, script: Path, shown: str) -> None:
    result = run([sys.executable, str(script), "--help"], tmp_path)
    text = " ".join(result.stdout.split())
    assert f"(padrão: {shown})" in text and "(padrão: 20.0)" not in text, result.stdout


# ---------------------------------------------------------------------------
# Other systems: nothing Linux-only runs unguarded.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_posix_only_calls_sit_behind_checks(script: Path) -> None:
    """The scripts must at least start on macOS and Windows: fcntl only behind a platform check, no uid, and /proc
    only where Linux alone is asked (the client's inotify limits, watches and mounts) and its absence caught."""
    source = script.read_text(encoding="utf-8")
    assert "getuid" not in source and "geteuid" not in source
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    reads = {
        id(node): node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/proc" in node.value
        if id(node) not in docstrings
    }
    guarded = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and {id(node) for node in ast.walk(function)} & reads.keys():
            caught = [
                handler
                for node in ast.walk(function)
                if isinstance(node, ast.Try)
                for handler in node.handlers
                if handler.type is not None and "OSError" in ast.unparse(handler.type)
            ]
            assert caught, f"{script.name}: {function.name} reads /proc without catching OSError"
            guarded |= {id(node) for node in ast.walk(function)} & reads.keys()
    assert guarded == reads.keys(), [ast.unparse(reads[key]) for key in reads.keys() - guarded]
    imports = [line for line in source.splitlines() if re.search(r"\bimport fcntl\b", line)]
    assert imports in ([], ["    import fcntl  # POSIX only: one client per state file (see StateFile.lock)"])
    if imports:
        assert 'if sys.platform != "win32":\n    import fcntl' in source
        assert 'if sys.platform == "win32":' in source  # and its use, behind the same check
