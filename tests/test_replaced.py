"""What a person did, found by a reviewer after issue 10 landed: a file replaced by a rename from outside the
watched tree, a `--hash` that meets a FIFO, other editors' lock and auto-save files.

Real server and client subprocesses on 127.0.0.1, real temporary directories; assertions on what the server printed.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from types import ModuleType

from support import ClientProcess, Processes, ServerProcess, no_traceback, touch


def sh(command: str, cwd: Path) -> None:
    subprocess.run(["sh", "-c", command], cwd=cwd, check=True, timeout=30)


def settled_lines(server: ServerProcess, watched: Path, after: int) -> list[str]:
    """The server's lines after the first ``after`` ones, up to a sentinel file created now."""
    sentinel = watched / f"sentinela_{after}"
    touch(sentinel)
    server.wait_for_line(f"[cli] arquivo criado: {sentinel}")
    lines = [line.removeprefix("[cli] ") for line in server.stripped()[after:]]
    return lines[: lines.index(f"arquivo criado: {sentinel}")]


def start_pair(procs: Processes, watched: Path, args: list[str] | None = None) -> tuple[ServerProcess, ClientProcess]:
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=args or [])
    return server, client


def test_a_file_replaced_by_a_rename_from_outside_is_modified_live(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    """``echo novo > /tmp/x; mv /tmp/x W/t.txt`` (mktemp + mv, tempfile.mkstemp + os.replace): the kernel says
    "moved in", watchdog says "created" of a path the view already has. Before: nothing, until a restart."""
    outside = tmp_path / "fora"
    outside.mkdir()
    server, client = start_pair(procs, watched)
    (watched / "t.txt").write_text("orig\n")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/t.txt")
    before = len(server.lines())
    (outside / "x").write_text("novo conteúdo\n")
    os.replace(outside / "x", watched / "t.txt")
    assert settled_lines(server, watched, before) == [f"arquivo modificado: {watched}/t.txt"], server.describe()
    no_traceback(server, client)


def test_a_directory_replaced_by_a_rename_from_outside_is_reported(
    procs: Processes, watched: Path, tmp_path: Path
) -> None:
    """A directory moved in over an empty one of the same name: its content appears, nothing is lost."""
    outside = tmp_path / "fora"
    (outside / "d").mkdir(parents=True)
    (outside / "d" / "novo.txt").write_text("x")
    server, client = start_pair(procs, watched)
    (watched / "d").mkdir()
    server.wait_for_line(f"[cli] diretório criado: {watched}/d")
    os.replace(outside / "d", watched / "d")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/d/novo.txt")
    no_traceback(server, client)


def test_hash_never_waits_for_a_fifo(cliente: ModuleType, tmp_path: Path) -> None:
    """A file queued for --hash and swapped for a FIFO before the worker reads it: opening a FIFO for reading
    waits for a writer, which stalled every later event and the stop. The hash is simply not known."""
    path = tmp_path / "f.txt"
    path.write_text("oi\n")
    st = path.lstat()
    path.unlink()
    os.mkfifo(path)
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(cliente.sha256_of(str(path), st)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # let the stuck thread end, then fail
        with open(path, "wb"):
            pass
        raise AssertionError("sha256_of waited for a writer of a FIFO")
    assert result == [None]


def test_other_editors_lock_and_auto_save_files_are_ignored_by_default(procs: Processes, watched: Path) -> None:
    """Emacs (``#f#``, ``.#f``), LibreOffice (``.~lock.f#``), Kate (``*.kate-swp``): tool noise, like vim's swap."""
    server, client = start_pair(procs, watched)
    sh(
        "echo a > '#notas.txt#'; echo b > '.~lock.rel.odt#'; echo c > .notas.txt.kate-swp; "
        "ln -s usuario@maquina.123 .#notas.txt; echo d > notas.txt",
        watched,
    )
    assert settled_lines(server, watched, 0) == [f"arquivo criado: {watched}/notas.txt"], server.describe()
    no_traceback(server, client)
