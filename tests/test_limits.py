"""The watcher never goes deaf without saying so (issue 11): inotify limits, deep trees, mounts, polling, FIFOs.

End to end: the real scripts on 127.0.0.1, real directories. Each test names the row of the issue it shows. The
inotify limits are those of a user namespace made for the client alone (see limits_support), never the machine's.
Each failed on the client before issue 11.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import assert_no_event_twice, disk_tree, make_tree, wait_converged, write_file
from limits_support import (
    MOUNT_NAMESPACE_PREFIX,
    create_at_depth,
    in_mounts_of,
    limits_prefix,
    make_chain,
    mount_namespaces,
    remove_deep,
    user_namespaces,
)
from support import TIMEOUT, ClientProcess, Processes, ServerProcess, no_traceback, touch

# The console lines chosen for issue 11 (/work/notes/l11/DESIGN.md, "Console").
WATCH_LIMIT = re.compile(
    r"Aviso: limite de inotify atingido \((?P<limit>[^)]*)\): (?P<count>\d+) diretório\(s\) sem monitoramento ao vivo, "
    r"cobertos por uma varredura a cada [\d,]+ s \(completa a cada [\d,]+ s\)\. Para aumentar: sudo sysctl "
    r"fs\.inotify\.max_user_watches=\d+$"
)
WATCH_LIMIT_LEFT = "Limite de inotify: todos os diretórios voltaram ao monitoramento ao vivo."
NOTHING_WATCHABLE = re.compile(
    r"^Erro: limite de inotify atingido \((?P<limit>[^)]*)\): nada em (?P<root>.+) pode ser monitorado\. "
    r"Para aumentar: sudo sysctl fs\.inotify\.max_user_watches=\d+$"
)
NO_INSTANCE = re.compile(
    r"^Erro: limite de instâncias de inotify atingido \((?P<limit>[^)]*)\): nada em (?P<root>.+) pode ser "
    r"monitorado\. Para aumentar: sudo sysctl fs\.inotify\.max_user_instances=\d+$"
)
SIZE = r"( \(\d+(?:,\d)? [kMGTPE]?B\))?"  # the size the server appends to a file's line
PATH_TOO_LONG = re.compile(r"Aviso: caminhos longos demais \(o sistema aceita até \d+ bytes\): ")


def shown(server: ServerProcess, kind: str, path: Path, noun: str = "arquivo") -> re.Pattern[str]:
    """A server line for ``path``, from a live event or a scan (``(varredura)``), with or without its size."""
    return re.compile(rf"\[cli\] {noun} {kind}: {re.escape(str(path))}( \(varredura\))?{SIZE}$")


def wait_shown(server: ServerProcess, kind: str, paths: list[Path], timeout: float = TIMEOUT) -> None:
    """Wait until the server showed ``kind`` for every path (live or from a scan)."""
    wanted = {str(path) for path in paths}
    line = re.compile(rf"^\[cli\] arquivo {kind}: (.*?)( \(varredura\))?{SIZE}$")

    def missing() -> set[str]:
        found = {match.group(1) for text in server.stripped() if (match := line.match(text))}
        return wanted - found

    server.wait_for(lambda: not missing(), timeout, f"{kind} lines for {len(wanted)} paths")


def start_client(
    procs: Processes,
    watched: Path,
    server: ServerProcess,
    args: list[str] | None = None,
    command_prefix: list[str] | None = None,
) -> ClientProcess:
    """Start a client and wait until the server shows it connected; fails at once if the client exits first
    (e.g. a flag it does not know), instead of waiting out the deadline."""
    client = procs.client(watched, server.uri, "cli", args=args or [], command_prefix=command_prefix or [])
    client.wait_for_line(re.compile(r"Conectado a "), "stderr")
    client.id_prefix = server.wait_client("cli", watched)
    return client


def needs(reason: str) -> None:
    """Skip when a namespace cannot be made here: never in CI, which runs as root and must run these tests."""
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def deep_cleanup(tmp_path: Path) -> Iterator[None]:
    """tmp_path may hold a tree deeper than shutil.rmtree (pytest's cleanup) can remove: remove it here."""
    yield
    remove_deep(tmp_path)


# ---------------------------------------------------------------------------
# Rows 1-3: deep trees.
# ---------------------------------------------------------------------------


@pytest.mark.usefixtures("deep_cleanup")
def test_deep_chain_moved_in_keeps_every_later_change(procs: Processes, tmp_path: Path, watched: Path) -> None:
    """Row 1: 1,500 nested directories made outside the tree, then moved in: watchdog's thread died (RecursionError
    in os.walk) and nothing more was heard. Every later change is heard, at the root and at the bottom."""
    make_chain(tmp_path / "fora", 1500)
    server = procs.server()
    client = start_client(procs, watched, server)
    os.rename(tmp_path / "fora", watched / "fundo")
    server.wait_for_line(shown(server, "criado", watched / "fundo", "diretório"))

    later = [watched / f"depois{i}.txt" for i in range(6)]
    for path in later:
        touch(path)
    create_at_depth(watched / "fundo", 1500, "no_fundo.txt")
    wait_shown(server, "criado", [*later, watched.joinpath("fundo", *["d"] * 1499, "no_fundo.txt")])
    assert client.running(), client.describe()
    assert not [line for line in client.stripped("stderr") if line.startswith("Erro")], client.describe()
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


@pytest.mark.usefixtures("deep_cleanup")
def test_deep_tree_present_at_start(procs: Processes, watched: Path) -> None:
    """Row 2: a tree 1,000 levels deep at start gave a RecursionError traceback and exit 1. It starts, hears the
    bottom, keeps its state file (a flat encoding, no recursion) and reports an offline change there at restart."""
    make_chain(watched / "d", 1000)
    bottom = watched.joinpath(*["d"] * 1000)
    server = procs.server()
    client = start_client(procs, watched, server)
    create_at_depth(watched / "d", 1000, "vivo.txt")
    server.wait_for_line(shown(server, "criado", bottom / "vivo.txt"))
    assert client.stop(signal.SIGTERM) == 0
    assert not [line for line in client.stripped("stderr") if line.startswith("Aviso")], client.describe()

    create_at_depth(watched / "d", 1000, "parado.txt")
    again = start_client(procs, watched, server)
    server.wait_for_line(f"[cli] arquivo criado: {bottom / 'parado.txt'} (varredura inicial)")
    assert again.stop(signal.SIGTERM) == 0
    no_traceback(client, again, server)


@pytest.mark.usefixtures("deep_cleanup")
def test_deeper_than_path_max_created_while_running(procs: Processes, watched: Path) -> None:
    """Row 3: 3,000 levels created while running (past PATH_MAX) ended in an ENAMETOOLONG traceback and exit 1.
    No traceback; it keeps running and hearing the rest; the part it cannot reach is said once."""
    server = procs.server()
    client = start_client(procs, watched, server)
    make_chain(watched / "d", 3000)
    client.wait_for_line(PATH_TOO_LONG, "stderr")
    touch(watched / "depois.txt")
    server.wait_for_line(shown(server, "criado", watched / "depois.txt"))
    assert client.running(), client.describe()
    assert client.stop(signal.SIGTERM) == 0
    assert sum(bool(PATH_TOO_LONG.search(line)) for line in client.lines("stderr")) == 1, client.describe()
    no_traceback(client, server)


# ---------------------------------------------------------------------------
# Row 4: a filesystem mounted inside the tree while the client is idle.
# ---------------------------------------------------------------------------


def test_mount_inside_the_tree_is_noticed_while_idle(procs: Processes, watched: Path) -> None:
    """Row 4: ``mount -t tmpfs tmpfs R/d; touch R/d/x`` while idle was never reported until an unrelated change.
    The mount is noticed and its content reported within a few seconds; so is the unmount.

    The client runs in a private mount namespace: the mount exists only there and vanishes with it."""
    needs(mount_namespaces())
    (watched / "d").mkdir()
    touch(watched / "d" / "por_baixo.txt")  # hidden by the mount
    server = procs.server()
    client = start_client(procs, watched, server, command_prefix=MOUNT_NAMESPACE_PREFIX)
    pid = client.proc.pid
    mounted = False
    try:
        in_mounts_of(pid, "mount", "-t", "tmpfs", "tmpfs", str(watched / "d"))
        mounted = True
        in_mounts_of(pid, "touch", str(watched / "d" / "x"))
        server.wait_for_line(shown(server, "criado", watched / "d" / "x"), timeout=10)
        server.wait_for_line(shown(server, "excluído", watched / "d" / "por_baixo.txt"), timeout=10)
        in_mounts_of(pid, "umount", str(watched / "d"))
        mounted = False
        server.wait_for_line(shown(server, "excluído", watched / "d" / "x"), timeout=10)
        server.wait_for_line(shown(server, "criado", watched / "d" / "por_baixo.txt"), timeout=10)
    finally:
        if mounted and client.running():
            in_mounts_of(pid, "umount", "-l", str(watched / "d"))
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_bind_mount_inside_the_tree_hears_both_paths_live(procs: Processes, watched: Path) -> None:
    """``mount --bind R/a R/b``: one directory under two paths. inotify watches it once, so watchdog names each
    change under one path only; the other came seconds later from the idle check with a "não percebida" warning.
    Each change is shown live under both paths, and nothing is found missing."""
    needs(mount_namespaces())
    (watched / "a" / "sub").mkdir(parents=True)
    (watched / "b").mkdir()
    server = procs.server()
    client = start_client(procs, watched, server, command_prefix=MOUNT_NAMESPACE_PREFIX)
    pid = client.proc.pid
    mounted = False
    try:
        in_mounts_of(pid, "mount", "--bind", str(watched / "a"), str(watched / "b"))
        mounted = True
        server.wait_for_line(shown(server, "criado", watched / "b" / "sub", noun="diretório"), timeout=10)
        in_mounts_of(pid, "sh", "-c", f"echo x > {watched / 'a' / 'x'}; echo y > {watched / 'b' / 'sub' / 'y'}")
        for path in ("a/x", "b/x", "a/sub/y", "b/sub/y"):
            server.wait_for_line(shown(server, "criado", watched / path), timeout=10)
        in_mounts_of(pid, "rm", str(watched / "b" / "x"))
        for path in ("a/x", "b/x"):
            server.wait_for_line(shown(server, "excluído", watched / path), timeout=10)
    finally:
        if mounted and client.running():
            in_mounts_of(pid, "umount", "-l", str(watched / "b"))
    assert client.stop(signal.SIGTERM) == 0
    assert not any("não percebida" in line for line in client.lines("stderr")), client.describe()
    no_traceback(client, server)


# ---------------------------------------------------------------------------
# Rows 5-6: the inotify watch and instance limits.
# ---------------------------------------------------------------------------


def limited_client(procs: Processes, watched: Path, server: ServerProcess, **limits: int) -> ClientProcess:
    needs(user_namespaces())
    return start_client(procs, watched, server, command_prefix=limits_prefix(**limits))


def raise_watch_limit(client: ClientProcess, watches: int) -> None:
    """What a user's ``sysctl`` would do, inside the client's own user namespace."""
    command = f"echo {watches} > /proc/sys/user/max_inotify_watches"
    in_namespace = ["nsenter", "-t", str(client.proc.pid), "-U", "--preserve-credentials", "sh", "-c", command]
    subprocess.run(in_namespace, check=True, timeout=10, capture_output=True)


def test_watch_limit_reached_while_running_then_left(procs: Processes, watched: Path) -> None:
    """Rows 5 and the degraded mode: with 300 watches, 500 new directories left 203 of 500 changes unreported and
    said nothing. One line names the limit and the fix; every change is reported (the directories without a watch
    by periodic scans); once watches are available again the client says so and hears them live."""
    server = procs.server()
    client = limited_client(procs, watched, server, watches=300)
    directories = [watched / f"dir{i:03}" for i in range(500)]
    for directory in directories:
        directory.mkdir()
    files = [directory / "f.txt" for directory in directories]
    for path in files:
        touch(path)
    warning = client.wait_for_line(WATCH_LIMIT, "stderr")
    match = WATCH_LIMIT.search(warning)
    assert match is not None and "= 300" in match.group("limit"), warning
    assert 150 <= int(match.group("count")) <= 300, warning
    wait_shown(server, "criado", files)

    raise_watch_limit(client, 100_000)
    client.wait_for_line(WATCH_LIMIT_LEFT, "stderr", timeout=90)
    touch(directories[-1] / "ao_vivo.txt")  # the last directory never had a watch before
    server.wait_for_line(f"[cli] arquivo criado: {directories[-1] / 'ao_vivo.txt'}")
    assert sum(bool(WATCH_LIMIT.search(line)) for line in client.lines("stderr")) == 1, client.describe()
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_watch_limit_reached_at_start_with_room_for_the_root(procs: Processes, watched: Path) -> None:
    """Row 6, part of the tree watchable: the same line at start; it runs, and every change is reported."""
    directories = [watched / f"dir{i:03}" for i in range(400)]
    for directory in directories:
        directory.mkdir()
    server = procs.server()
    client = limited_client(procs, watched, server, watches=100)
    client.wait_for_line(WATCH_LIMIT, "stderr")
    files = [directory / "g.txt" for directory in directories]
    for path in files:
        touch(path)
    wait_shown(server, "criado", files)
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_watch_limit_leaves_nothing_to_watch_at_start(procs: Processes, watched: Path) -> None:
    """Row 6, nothing watchable: was ``Erro: não foi possível monitorar …: disco cheio`` (ENOSPC read as a full
    disk). One Portuguese line naming the limit and the fix, exit 1."""
    needs(user_namespaces())
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", command_prefix=limits_prefix(watches=0))
    assert client.wait() == 1, client.describe()
    lines = [line for line in client.lines("stderr") if "Erro" in line]
    assert len(lines) == 1 and NOTHING_WATCHABLE.search(lines[0]), client.describe()
    no_traceback(client)


def test_instance_limit_at_start(procs: Processes, watched: Path) -> None:
    """Row 6 for the instance limit: inotify_init's EMFILE was a traceback. One line naming it and the fix, exit 1."""
    needs(user_namespaces())
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", command_prefix=limits_prefix(instances=0))
    assert client.wait() == 1, client.describe()
    lines = [line for line in client.lines("stderr") if "Erro" in line]
    assert len(lines) == 1 and NO_INSTANCE.search(lines[0]), client.describe()
    no_traceback(client)


# ---------------------------------------------------------------------------
# Row 7: FIFOs where the state file goes.
# ---------------------------------------------------------------------------


def test_state_file_fifo_is_refused(procs: Processes, tmp_path: Path, watched: Path) -> None:
    """Row 7: ``--estado`` naming a FIFO is refused at once (only regular files). Already so before issue 11."""
    os.mkfifo(tmp_path / "estado")
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", args=["--estado", str(tmp_path / "estado")])
    assert client.wait() == 1, client.describe()
    assert client.lines("stderr") == [
        f"Erro: o arquivo de estado precisa ser um arquivo comum: {tmp_path / 'estado'}"
    ], client.describe()


def test_fifo_where_the_state_file_is_written_does_not_hang(procs: Processes, tmp_path: Path, watched: Path) -> None:
    """Row 7's kind: a FIFO at ``<estado>.tmp`` (the name it is written through) hung the start and SIGTERM; then
    it made every save fail (review 12: with a raw ENXIO), and the next start sent again what the server had.
    The client's own temporary name: the FIFO is replaced, the state saved, nothing said twice."""
    os.mkfifo(tmp_path / "estado.json.tmp")
    server = procs.server()
    client = start_client(procs, watched, server, args=["--estado", str(tmp_path / "estado.json")])
    touch(watched / "a.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched / 'a.txt'}")
    assert client.stop(signal.SIGTERM) == 0
    assert not [line for line in client.stripped("stderr") if line.startswith("Aviso")], client.describe()
    assert (tmp_path / "estado.json").is_file() and not (tmp_path / "estado.json.tmp").exists()
    again = start_client(procs, watched, server, args=["--estado", str(tmp_path / "estado.json")])
    touch(watched / "b.txt")
    server.wait_for_line(f"[cli] arquivo criado: {watched / 'b.txt'}")
    assert again.stop(signal.SIGTERM) == 0
    assert sum("arquivo criado" in line for line in server.stripped()) == 2, server.describe()
    no_traceback(client, again, server)


def test_fifo_in_the_state_folder_does_not_hang(
    procs: Processes, watched: Path, cliente: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 7's kind: a FIFO in the default state folder, named like this directory's state for another server,
    hung the start (read to say "the state is of another server"). It is not a state file: skipped."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(procs.cwd / ".cache"))
    mine = Path(cliente.default_state_path(str(watched), "ws://localhost:1"))
    mine.parent.mkdir(parents=True)
    os.mkfifo(mine.parent / (mine.name.partition("-")[0] + "-ffffffffffffffff.json"))
    server = procs.server()
    client = start_client(procs, watched, server)
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


# ---------------------------------------------------------------------------
# --polling SEGUNDOS: watchdog's PollingObserver (network filesystems, containers).
# ---------------------------------------------------------------------------

POLLING = ["--polling", "0.2"]


@pytest.mark.parametrize("behaviour", ["created", "modified", "deleted", "moved"])
def test_polling_mode(procs: Processes, watched: Path, behaviour: str) -> None:
    """The e2e basics with --polling: the same lines, except that a move may appear as deleted + created."""
    server = procs.server()
    client = start_client(procs, watched, server, args=POLLING)
    path = watched / "a.txt"
    touch(path)
    server.wait_for_line(shown(server, "criado", path))
    if behaviour == "modified":
        write_file(path, b"mais\n")
        server.wait_for_line(shown(server, "modificado", path))
    elif behaviour == "deleted":
        path.unlink()
        server.wait_for_line(shown(server, "excluído", path))
    elif behaviour == "moved":
        path.rename(watched / "b.txt")
        moved = re.compile(rf"\[cli\] arquivo movido: {re.escape(str(path))} -> {re.escape(str(watched / 'b.txt'))}")

        def seen() -> bool:
            lines = server.stripped()
            split = any(shown(server, "excluído", path).search(line) for line in lines) and any(
                shown(server, "criado", watched / "b.txt").search(line) for line in lines
            )
            return split or any(moved.search(line) for line in lines)

        server.wait_for(seen, TIMEOUT, "the move (or deleted + created)")
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_polling_mode_converges(procs: Processes, watched: Path) -> None:
    """A burst of directories and files with --polling: the server's view converges to the disk, nothing twice."""
    server = procs.server(json_output=True)
    client = start_client(procs, watched, server, args=POLLING)
    make_tree(watched, 20, 25)
    (watched / "n000_0").rename(watched / "renomeado")
    events, _ = wait_converged(server.json_events, watched, context=lambda: procs.describe())
    assert_no_event_twice(events)
    assert disk_tree(watched)
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_polled_move_of_a_directory_is_one_move_and_a_reused_inode_no_move(procs: Processes, watched: Path) -> None:
    """``mv a A`` (a with files) with --polling: before, ``diretório criado: A (varredura)``, a deleted file and the
    move (the poll's file moves and its directory move came in two bursts). ``rmdir x; touch y``: before, a made-up
    ``diretório movido x -> y`` when y got x's inode."""
    (watched / "a").mkdir()
    for number in range(3):
        write_file(watched / "a" / f"f{number}", b"x")
    (watched / "x").mkdir()
    server = procs.server()
    client = start_client(procs, watched, server, args=POLLING)
    sentinel = watched / "sentinela_1"
    (watched / "a").rename(watched / "A")
    touch(sentinel)
    server.wait_for_line(shown(server, "criado", sentinel))
    lines = [line.removeprefix("[cli] ") for line in server.stripped()]
    assert lines[: lines.index(f"arquivo criado: {sentinel}")] == [f"diretório movido: {watched}/a -> {watched}/A"], (
        server.describe()
    )
    (watched / "x").rmdir()
    touch(watched / "y")
    server.wait_for_line(shown(server, "criado", watched / "y"))
    server.wait_for_line(shown(server, "excluído", watched / "x", "diretório"))
    lines = [line.removeprefix("[cli] ") for line in server.stripped()]
    lines = lines[lines.index(f"arquivo criado: {sentinel}") + 1 :]
    assert sorted(lines) == [f"arquivo criado: {watched}/y", f"diretório excluído: {watched}/x"], server.describe()
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_a_polled_move_that_changes_the_type_is_deleted_and_created(cliente: ModuleType, tmp_path: Path) -> None:
    touch(tmp_path / "y")
    (tmp_path / "d").mkdir()
    events = [
        moved(cliente, f"{tmp_path}/x", f"{tmp_path}/y", True),
        moved(cliente, f"{tmp_path}/f", f"{tmp_path}/d", False),
    ]
    folded = cliente.retype_polled(events)
    assert [(type(e).__name__, e.src_path) for e in folded] == [
        ("DirDeletedEvent", f"{tmp_path}/x"),
        ("FileCreatedEvent", f"{tmp_path}/y"),
        ("FileDeletedEvent", f"{tmp_path}/f"),
        ("DirCreatedEvent", f"{tmp_path}/d"),
    ]
    same = moved(cliente, f"{tmp_path}/z", f"{tmp_path}/d", True)
    assert cliente.retype_polled([same]) == [same]


def test_a_polls_events_are_gathered_across_bursts(cliente: ModuleType) -> None:
    """The file moves of ``mv a b`` in one burst, the directory's move in the next: folded together."""
    import asyncio

    got: list[list[object]] = []

    async def run() -> None:
        done = asyncio.Event()

        def consume(events: list[object]) -> None:
            got.append(events)
            done.set()

        gather = cliente.PollGather(consume)
        gather.add([moved(cliente, "/r/a/f", "/r/b/f", False)])
        await asyncio.sleep(0)
        gather.add([moved(cliente, "/r/a", "/r/b", True)])
        await asyncio.wait_for(done.wait(), 5.0)

    asyncio.run(run())
    assert [[(e.src_path, e.dest_path) for e in events] for events in got] == [[("/r/a", "/r/b")]]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Idle is not deaf: the periodic consistency check.
# ---------------------------------------------------------------------------


def test_idle_check_repairs_a_silent_loss(procs: Processes, watched: Path) -> None:
    """A write through a shared mmap, the file kept open, sends no inotify event at all (no IN_MODIFY, no
    IN_CLOSE_WRITE yet): only the consistency check can see it, and it reports it within its bound."""
    path = watched / "mapeado.bin"
    write_file(path, b"a" * 4096)
    server = procs.server()
    client = start_client(procs, watched, server, args=["--verificacao", "2"])
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, 4096) as mapped:
            mapped[:4] = b"bbbb"
            server.wait_for_line(shown(server, "modificado", path), timeout=15)
    finally:
        os.close(fd)
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_idle_check_repairs_within_one_interval(procs: Processes, watched: Path) -> None:
    """The idle check that finds a difference looks again CHECKPOINT_SECOND_LOOK later: before, that second look
    waited for the next idle check (a bound of 2 x --verificacao, about 20 s here; now about 11 s)."""
    path = watched / "mapeado.bin"
    write_file(path, b"a" * 4096)
    server = procs.server()
    client = start_client(procs, watched, server, args=["--verificacao", "10"])
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, 4096) as mapped:
            mapped[:4] = b"bbbb"  # no event: only the idle check, at about 10 s, sees it
            server.wait_for_line(shown(server, "modificado", path), timeout=16)  # well before 20 s, well after 11
    finally:
        os.close(fd)
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


# ---------------------------------------------------------------------------
# The pure parts behind the rows (the client's own functions, ``now`` passed in).
# ---------------------------------------------------------------------------


def test_coverage_enters_scans_retries_and_leaves(cliente: ModuleType) -> None:
    coverage = cliente.Coverage()
    assert coverage.update([], 0.0) == "" and not coverage.scan_due(0.0)
    assert coverage.update(["/r/a", "/r/a/b", "/r/c"], 10.0) == "entered"
    assert coverage.uncovered == ["/r/a", "/r/c"] and coverage.count == 3
    assert coverage.scan_due(10.0)
    coverage.scanned(10.0, 0.5)  # a slow scan spaces the next ones: 200 times its duration
    assert coverage.interval == 100.0 and not coverage.scan_due(109.9) and coverage.scan_due(110.0)
    # Between full scans, a look at the directories' mtimes every DEGRADED_SCAN_INTERVAL.
    assert coverage.look_due(10.0) and not coverage.look_due(14.9) and coverage.look_due(15.0)
    coverage.scanned(35.0, 0.01)
    assert coverage.interval == cliente.DEGRADED_SCAN_INTERVAL
    first = 10.0 + cliente.DEGRADED_RETRY_MIN
    assert not coverage.retry_due(first - 0.1) and coverage.retry_due(first)
    coverage.retried(first)
    second = first + 2 * cliente.DEGRADED_RETRY_MIN  # the delay doubles
    assert not coverage.retry_due(second - 0.1) and coverage.retry_due(second)
    coverage.retry_now(first + 1)  # the limit was raised
    assert coverage.retry_due(first + 1)
    assert coverage.update(["/r/a", "/r/a/b", "/r/c"], 25.0) == ""  # still degraded, the same: said once
    assert coverage.update(["/r/c"], 26.0) == "changed" and coverage.count == 1  # some got watches back: said
    assert coverage.update(["/r/c", "/r/d"], 26.5) == "changed" and coverage.count == 2  # more lost theirs
    assert coverage.update([], 27.0) == "left" and not coverage.scan_due(1e9) and not coverage.retry_due(1e9)


def test_directory_stamps_move_when_an_entry_changes(cliente: ModuleType, tmp_path: Path) -> None:
    """What the degraded mode's look reads: a directory's mtime moves when an entry is created, renamed or deleted
    in it (not when a file in it is written: the full scans see that)."""
    (tmp_path / "d").mkdir()
    write_file(tmp_path / "d" / "f", b"1")
    first = cliente.directory_stamps([str(tmp_path / "d"), str(tmp_path / "gone")])
    assert first[str(tmp_path / "gone")] is None
    os.utime(tmp_path / "d", ns=(0, 0))  # a known mtime: no clock granularity in the way
    before = cliente.directory_stamps([str(tmp_path / "d")])
    write_file(tmp_path / "d" / "f", b"22")
    assert cliente.directory_stamps([str(tmp_path / "d")]) == before
    (tmp_path / "d" / "f").rename(tmp_path / "d" / "g")
    assert cliente.directory_stamps([str(tmp_path / "d")]) != before


def test_topmost_keeps_directories_not_below_another(cliente: ModuleType) -> None:
    assert cliente.topmost(["/r/a/b", "/r/a-x", "/r/a", "/r/a-x/y", "/r/b/c"]) == ["/r/a", "/r/a-x", "/r/b/c"]


def test_inotify_limit_line_names_the_limit_in_force_and_the_fix(cliente: ModuleType) -> None:
    line = cliente.describe_inotify_limit("watches", 192536, 300)
    assert line == (
        "(user.max_inotify_watches = 300 neste namespace; fs.inotify.max_user_watches = 192536): {}. "
        "Para aumentar: sudo sysctl fs.inotify.max_user_watches=524288"
    )
    assert cliente.describe_inotify_limit("watches", 8192, 1000000).startswith("(fs.inotify.max_user_watches = 8192)")
    assert cliente.describe_inotify_limit("instances", 4096, None).endswith("fs.inotify.max_user_instances=8192")


def moved(cliente: ModuleType, src: str, dest: str, is_dir: bool) -> object:
    return (cliente.DirMovedEvent if is_dir else cliente.FileMovedEvent)(src, dest)


def test_polled_moves_come_parents_first_without_the_implied_ones(cliente: ModuleType) -> None:
    """watchdog's PollingEmitter reports ``mv a b`` (with a/sub/f) children first, each a move of its own."""
    modified = cliente.FileModifiedEvent("/r/x")
    events = [
        modified,
        moved(cliente, "/r/a/sub/f", "/r/b/sub/f", False),
        moved(cliente, "/r/a/sub", "/r/b/sub", True),
        moved(cliente, "/r/a/sub/g", "/r/elsewhere/g", False),  # moved out of it as well: not implied
        moved(cliente, "/r/a", "/r/b", True),
    ]
    folded = cliente.fold_polled_moves(events)
    assert [(e.event_type, e.src_path, getattr(e, "dest_path", "")) for e in folded] == [
        ("modified", "/r/x", ""),
        ("moved", "/r/a", "/r/b"),
        ("moved", "/r/a/sub/g", "/r/elsewhere/g"),
    ]
    assert cliente.fold_polled_moves([modified]) == [modified]


def test_mount_points_below_the_root_from_mountinfo(cliente: ModuleType) -> None:
    text = (
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 0:40 / /w/d rw - tmpfs tmpfs rw\n"
        "41 22 0:41 / /w/com\\040espa\\134o rw - tmpfs tmpfs rw\n"
        "42 22 0:42 / /wx rw - tmpfs tmpfs rw\n"
    )
    assert cliente.parse_mountinfo(text, "/w") == {"/w/d", "/w/com espa\\o"}


def test_bind_mounts_of_the_tree_from_mountinfo(cliente: ModuleType) -> None:
    """A bind mount's source is found through the mount that holds its root (proc(5): field 4)."""
    text = (
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 22 8:1 /w/a /w/b rw - ext4 /dev/sda1 rw\n"  # mount --bind /w/a /w/b
        "41 22 8:1 /elsewhere /w/c rw - ext4 /dev/sda1 rw\n"  # from outside the tree: not an alias
        "42 22 0:42 / /w/t rw - tmpfs tmpfs rw\n"
        "43 22 0:42 /d /w/u rw - tmpfs tmpfs rw\n"  # a part of the tmpfs mounted at /w/t
        "44 22 8:1 /w/a /x rw - ext4 /dev/sda1 rw\n"  # mounted outside the tree: not ours
    )
    assert cliente.bind_sources(text, "/w") == [("/w/b", "/w/a"), ("/w/u", "/w/t/d")]


def test_aliases_mirror_changes_under_the_other_path(cliente: ModuleType) -> None:
    Change = cliente.Change
    aliases = cliente.Aliases([("/w/b", "/w/a")])
    assert aliases.mirrored(Change("created", "/w/a/x", False)) == Change("created", "/w/b/x", False)
    assert aliases.mirrored(Change("deleted", "/w/b", True)) == Change("deleted", "/w/a", True)
    assert aliases.mirrored(Change("moved", "/w/a/x", False, "/w/a/y")) == Change("moved", "/w/b/x", False, "/w/b/y")
    assert aliases.mirrored(Change("moved", "/w/a/x", False, "/w/z")) == Change("deleted", "/w/b/x", False)
    assert aliases.mirrored(Change("moved", "/w/z", False, "/w/b/x")) == Change("created", "/w/a/x", False)
    assert aliases.mirrored(Change("created", "/w/ab", False)) is None
    assert not cliente.Aliases()
    # watchdog says a change under one path: both go out; said under both (two watches): not twice.
    a_x, b_x = Change("created", "/w/a/x", False), Change("created", "/w/b/x", False)
    assert list(aliases.expand([a_x, None])) == [a_x, b_x]
    assert list(aliases.expand([a_x, b_x])) == [a_x, b_x]
    assert list(cliente.Aliases().expand([None, a_x])) == [a_x]


def test_state_file_helpers_never_open_a_fifo(cliente: ModuleType, tmp_path: Path) -> None:
    """open_regular refuses at once what is not a regular file (a FIFO would block the open until a writer came)."""
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="não é um arquivo comum"):
        cliente.open_regular(str(tmp_path / "fifo"), os.O_RDONLY)
    assert cliente.peek_server(str(tmp_path / "fifo")) is None
    # What is at <estado>.tmp (the client's own name, written before its rename) and is not a regular file is
    # replaced, never opened nor followed: a FIFO, a link (its target untouched); a directory there is said.
    (tmp_path / "alvo").write_text("do usuário")
    for make in (lambda p: os.mkfifo(p), lambda p: p.symlink_to(tmp_path / "alvo")):
        make(tmp_path / "estado.json.tmp")
        fd, size = cliente.start_state(str(tmp_path / "estado.json"), ["{", "}"])
        cliente.commit_state(str(tmp_path / "estado.json"), fd)
        assert (tmp_path / "estado.json").read_text() == "{}" and size == 2
    assert (tmp_path / "alvo").read_text() == "do usuário"
    (tmp_path / "estado.json.tmp").mkdir()
    with pytest.raises(OSError, match="não é um arquivo comum"):
        cliente.start_state(str(tmp_path / "estado.json"), ["{}"])


def test_a_save_cancelled_in_its_fsync_ends_before_the_next_one(
    cliente: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 12, item 3: a stop cancels a checkpoint while its fsync runs in a worker thread, which goes on and
    renames <estado>.tmp at its end; the last save (at shutdown) writes <estado>.tmp again. It waits for the first
    to end, so the file is the last save's, whole (fault injection: a slow commit_state, our boundary)."""
    real = cliente.commit_state
    slow = threading.Event()

    def slow_commit(path: str, fd: int) -> None:
        if not slow.is_set():
            slow.set()
            time.sleep(0.3)
        real(path, fd)

    monkeypatch.setattr(cliente, "commit_state", slow_commit)
    path = tmp_path / "estado.json"

    async def saves() -> None:
        state = cliente.StateFile(str(path), "/w", "ws://localhost:8765/")
        first = asyncio.create_task(state.save({"a": None}, cliente.Held(), 1))
        while not slow.is_set():
            await asyncio.sleep(0.01)
        first.cancel()
        await state.save({"b": None}, cliente.Held(), 2)

    asyncio.run(saves())
    saved = cliente.decode_state(path.read_text(), "/w", "ws://localhost:8765/")
    assert saved is not None and saved.tree == {"b": None} and saved.seq == 2
    assert not (tmp_path / "estado.json.tmp").exists()


def test_scan_leaves_out_paths_past_path_max(cliente: ModuleType, tmp_path: Path) -> None:
    """A chain deeper than PATH_MAX: the scan neither raises nor recurses; what is too long is said, not kept."""
    bottom = make_chain(tmp_path / "d", 2100)
    assert len(os.fsencode(str(bottom))) > cliente.PATH_MAX
    too_deep: list[str] = []
    result = cliente.scan_tree(str(tmp_path), frozenset(), None, None, too_deep)
    assert result is not None
    node, depth = result[0], 0
    while node:
        [(name, node)] = node.items()
        depth += 1
    assert len(too_deep) == 1 and depth == too_deep[0][len(str(tmp_path)) :].count(os.sep)
    assert len(os.fsencode(too_deep[0])) < cliente.PATH_MAX <= len(os.fsencode(too_deep[0] + "/d"))
    remove_deep(tmp_path / "d")


# ---------------------------------------------------------------------------
# A dying watcher: paced restarts, one message per kind of death (issue 11, review).
# ---------------------------------------------------------------------------


def test_a_thread_death_is_said_once_per_exception_type(cliente: ModuleType, tmp_path: Path, caplog: Any) -> None:
    """Each restart names its threads anew: the message is keyed on the exception's type, not on its text."""
    import logging

    caplog.set_level(logging.WARNING, logger="monitor")
    watcher = cliente.Watcher(str(tmp_path), cliente.FileSystemEventHandler())
    woken: list[int] = []
    for thread in ["Thread-1", "Thread-2", "Thread-3"]:
        watcher.died("RecursionError", f"RecursionError na thread {thread} do watchdog", lambda: woken.append(1))
    watcher.died("OSError", "OSError na thread Thread-4 do watchdog", lambda: woken.append(1))
    said = [record.getMessage() for record in caplog.records if record.name == "monitor"]
    assert said == [
        "o monitoramento ao vivo parou (RecursionError na thread Thread-1 do watchdog); reiniciando com uma varredura.",
        "o monitoramento ao vivo parou (OSError na thread Thread-4 do watchdog); reiniciando com uma varredura.",
    ]
    assert len(woken) == 4


def test_restarts_are_paced(cliente: ModuleType) -> None:
    delay = cliente.restart_delay
    assert delay(float("-inf"), 100.0) == 0.0  # the first one at once
    assert delay(100.0, 100.0) == cliente.RESTART_PACE == 1.0
    assert delay(100.0, 100.4) == pytest.approx(0.6)
    assert delay(100.0, 101.5) == 0.0
    assert delay(100.0, 50.0) == 1.0  # never longer than the pace, whatever the clock says
