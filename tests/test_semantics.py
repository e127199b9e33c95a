"""What a person did, not what the kernel saw (issue 10): settling, pure parts.

net_effect turns a window of View changes into their net effect per path; Settler holds them for
the window (explicit times: no clock). The property tests pin "never lose a change": replaying
the net effect gives the server the same tree as replaying every raw change.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import replay as server_replay
from convergence import write_file
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ClientProcess, Processes, ServerProcess, no_traceback, touch

ROOT = "/w"


def C(cliente: ModuleType, kind: str, path: str, is_dir: bool = False, dest: str | None = None, **kw: Any) -> Any:
    return cliente.Change(kind, f"{ROOT}/{path}", is_dir, f"{ROOT}/{dest}" if dest else None, **kw)


def said(changes: list[Any]) -> list[tuple[Any, ...]]:
    """(kind, path relative to ROOT[, dest][, "attrib"]) of each change, to compare in a readable way."""
    out: list[tuple[Any, ...]] = []
    for change in changes:
        item: tuple[Any, ...] = (change.kind, change.path[len(ROOT) + 1 :])
        if change.dest_path is not None:
            item += (change.dest_path[len(ROOT) + 1 :],)
        if change.attrib:
            item += ("attrib",)
        out.append(item)
    return out


def through_view(cliente: ModuleType, ops: list[tuple[Any, ...]], known: tuple[str, ...] | list[str] = ()) -> list[Any]:
    """What View.apply returns for ``ops`` ((kind, path, is_dir[, dest][, attrib])), ``known`` files there first."""
    view = cliente.View(ROOT)
    for path in known:
        view.apply(C(cliente, "created", path))
    out: list[Any] = []
    for kind, path, is_dir, *rest in ops:
        dest = rest[0] if rest and isinstance(rest[0], str) else None
        attrib = bool(rest) and rest[-1] == "attrib"
        out += view.apply(C(cliente, kind, path, is_dir, dest, attrib=attrib))
    return out


# ---------------------------------------------------------------------------
# net_effect: the rules, one by one.
# ---------------------------------------------------------------------------

CASES: dict[str, tuple[list[str], list[tuple[Any, ...]], list[tuple[Any, ...]]]] = {
    # sed -i: a temporary file, written, its mode set, renamed over the original.
    "sed_i": (
        ["config.ini"],
        [
            ("created", "sedAbC123", False),
            ("modified", "sedAbC123", False),
            ("modified", "sedAbC123", False, "attrib"),
            ("moved", "sedAbC123", False, "config.ini"),
        ],
        [("modified", "config.ini")],
    ),
    # An editor saving a new file through a temporary name: created, never the temporary name.
    "save_new_file_atomically": (
        [],
        [
            ("created", ".novo.txt.tmp", False),
            ("modified", ".novo.txt.tmp", False),
            ("moved", ".novo.txt.tmp", False, "novo.txt"),
        ],
        [("created", "novo.txt")],
    ),
    "download": (
        [],
        [("created", "download.bin", False), *[("modified", "download.bin", False)] * 30],
        [("created", "download.bin")],
    ),
    "writes_merge": (["a"], [("modified", "a", False)] * 3, [("modified", "a")]),
    "created_then_deleted": ([], [("created", "a", False), ("modified", "a", False), ("deleted", "a", False)], []),
    "modified_then_deleted": (["a"], [("modified", "a", False), ("deleted", "a", False)], [("deleted", "a")]),
    # vim (backupcopy=no): the file renamed to its backup, written anew, the backup deleted.
    "vim_backup_rename": (
        ["f.txt"],
        [
            ("moved", "f.txt", False, "f.txt~"),
            ("created", "f.txt", False),
            ("modified", "f.txt", False),
            ("deleted", "f.txt~", False),
        ],
        [("modified", "f.txt")],
    ),
    "deleted_then_created_is_a_save": (["a"], [("deleted", "a", False), ("created", "a", False)], [("modified", "a")]),
    "move_survives": (["a"], [("moved", "a", False, "b")], [("moved", "a", "b")]),
    "move_then_write": (
        ["a"],
        [("moved", "a", False, "b"), ("modified", "b", False)],
        [("moved", "a", "b"), ("modified", "b")],
    ),
    "move_chain_is_one_move": (["a"], [("moved", "a", False, "b"), ("moved", "b", False, "c")], [("moved", "a", "c")]),
    "move_and_back_is_nothing": (["a"], [("moved", "a", False, "b"), ("moved", "b", False, "a")], []),
    "move_then_new_file_at_the_source": (
        ["a"],
        [("moved", "a", False, "b"), ("created", "a", False)],
        [("moved", "a", "b"), ("created", "a")],
    ),
    "move_over_an_existing_file": (["a", "b"], [("moved", "a", False, "b")], [("moved", "a", "b")]),
    "rotation_moves_in_order": (
        ["log", "log.1"],
        [("moved", "log.1", False, "log.2"), ("moved", "log", False, "log.1"), ("created", "log", False)],
        [("moved", "log.1", "log.2"), ("moved", "log", "log.1"), ("created", "log")],
    ),
    "chmod_is_attrib": (["a"], [("modified", "a", False, "attrib")] * 2, [("modified", "a", "attrib")]),
    "chmod_and_write_is_a_write": (
        ["a"],
        [("modified", "a", False, "attrib"), ("modified", "a", False)],
        [("modified", "a")],
    ),
    "mkdir_and_rmdir_is_nothing": (
        [],
        [("created", "d", True), ("created", "d/f", False), ("deleted", "d/f", False), ("deleted", "d", True)],
        [],
    ),
    "directories_stay_in_place": (
        [],
        [("created", "d", True), ("created", "d/f", False), ("modified", "d/f", False), ("moved", "d", True, "e")],
        [("created", "d"), ("created", "d/f"), ("moved", "d", "e")],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_net_effect_says_what_a_person_did(cliente: ModuleType, case: str) -> None:
    known, ops, expected = CASES[case]
    raw = through_view(cliente, ops, known)
    net = cliente.net_effect(raw)
    assert said(net) == expected
    start = {f"{ROOT}/{path}" for path in known}
    assert server_replay(records(net), start, root=ROOT) == server_replay(records(raw), start, root=ROOT)


def test_a_swap_through_a_temporary_name_stays_raw(cliente: ModuleType) -> None:
    """a <-> b through t: no order of two moves says it, so the three raw moves go out."""
    ops = [("moved", "a", False, "t"), ("moved", "b", False, "a"), ("moved", "t", False, "b")]
    raw = through_view(cliente, ops, ["a", "b"])
    assert said(cliente.net_effect(raw)) == said(raw)


def test_scans_are_never_merged(cliente: ModuleType) -> None:
    found = [C(cliente, "created", "a", origin="rescan"), C(cliente, "deleted", "a", origin="rescan")]
    assert cliente.net_effect(found) == found


def test_a_deletion_keeps_the_type_the_view_knew(cliente: ModuleType) -> None:
    raw = [C(cliente, "modified", "l"), C(cliente, "deleted", "l", file_type="symlink")]
    assert cliente.net_effect(raw) == [C(cliente, "deleted", "l", file_type="symlink")]


# ---------------------------------------------------------------------------
# Never lose a change: the net effect replays to the same tree, whatever the sequence.
# ---------------------------------------------------------------------------

NAMES = ["a", "b", "c"]
rel_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
operations = st.lists(
    st.tuples(
        st.sampled_from(["created", "modified", "deleted", "moved"]), rel_paths, st.booleans(), rel_paths, st.booleans()
    ),
    max_size=40,
)


def records(changes: list[Any]) -> list[dict[str, Any]]:
    return [{"event": c.kind, "path": c.path, "dest_path": c.dest_path} for c in changes]


@settings(max_examples=400, deadline=None, database=None)
@given(operations, operations, st.lists(st.integers(0, 40), max_size=4))
def test_the_net_effect_replays_to_the_same_tree(
    cliente: ModuleType, start: list[Any], ops: list[Any], cuts: list[int]
) -> None:
    view = cliente.View(ROOT)
    for kind, rel, is_dir, _, _ in start:
        if kind in ("created", "deleted"):
            view.apply(C(cliente, kind, rel, is_dir))
    known = {path for path, _ in _flatten(view.top)}
    raw: list[Any] = []
    for kind, rel, is_dir, dest, attrib in ops:
        if kind == "moved" and (dest == rel or dest.startswith(rel + "/")):
            continue  # a directory cannot be moved into itself
        raw += view.apply(C(cliente, kind, rel, is_dir, dest if kind == "moved" else None, attrib=attrib))
    # Held in windows cut anywhere: each window's net effect, in order.
    net: list[Any] = []
    edges = [0, *sorted(min(cut, len(raw)) for cut in cuts), len(raw)]
    for begin, end in zip(edges, edges[1:], strict=False):
        net += cliente.net_effect(raw[begin:end])
    assert server_replay(records(net), known, root=ROOT) == server_replay(records(raw), known, root=ROOT)
    assert server_replay(records(net), known, root=ROOT) == {path for path, _ in _flatten(view.top)}
    assert len(net) <= len(raw)


def _flatten(top: dict[str, Any], prefix: str = ROOT + "/") -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for name, node in top.items():
        out.append((prefix + name, isinstance(node, dict)))
        if isinstance(node, dict):
            out += _flatten(node, prefix + name + "/")
    return out


# ---------------------------------------------------------------------------
# Settler: the window and the longest hold, with explicit times.
# ---------------------------------------------------------------------------


def test_settler_holds_until_quiet_for_the_window(cliente: ModuleType) -> None:
    settler = cliente.Settler(0.1, 1.0)
    assert settler.add([C(cliente, "created", "a")], 10.0) == []
    assert settler.deadline() == pytest.approx(10.1)
    assert settler.add([C(cliente, "modified", "a")], 10.05) == []
    assert not settler.due(10.1) and settler.due(10.15)
    changes, busy = settler.take(10.2)
    assert said(changes) == [("created", "a")]
    assert busy == frozenset()
    assert len(settler) == 0 and settler.deadline() is None


def test_settler_lets_a_path_that_keeps_changing_out_after_max_hold(cliente: ModuleType) -> None:
    settler = cliente.Settler(0.1, 1.0)
    now = 0.0
    while now < 1.0:
        settler.add([C(cliente, "modified", "download.bin")], now)
        now = round(now + 0.05, 2)
    assert settler.due(1.0)
    changes, busy = settler.take(1.0)
    assert said(changes) == [("modified", "download.bin")]
    assert busy == {f"{ROOT}/download.bin"}  # still being written: not worth hashing


def test_settler_window_zero_passes_everything_at_once(cliente: ModuleType) -> None:
    settler = cliente.Settler(0.0, 1.0)
    raw = [C(cliente, "created", "a"), C(cliente, "modified", "a")]
    assert settler.add(raw, 0.0) == raw
    assert len(settler) == 0 and settler.deadline() is None


def test_settle_defaults_come_from_the_constants(cliente: ModuleType) -> None:
    settler = cliente.Settler()
    assert (settler.window, settler.max_hold) == (cliente.SETTLE, cliente.SETTLE_MAX_HOLD)
    assert 0.05 <= cliente.SETTLE <= 0.25


# ---------------------------------------------------------------------------
# End to end: the rows of issue 10's table, real scripts, exactly what the server printed.
# ---------------------------------------------------------------------------


def sh(command: str, cwd: Path) -> None:
    subprocess.run(["sh", "-c", command], cwd=cwd, check=True, timeout=60)


def settled_lines(server: ServerProcess, watched: Path, after: int) -> list[str]:
    """The server's lines (without the client's name) printed after the first ``after`` ones, up to a sentinel file
    created now: anything the actions before caused comes before it."""
    sentinel = watched / f"sentinela_{after}"
    touch(sentinel)
    server.wait_for_line(f"[cli] arquivo criado: {sentinel}")
    lines = [line.removeprefix("[cli] ") for line in server.stripped()[after:]]
    return lines[: lines.index(f"arquivo criado: {sentinel}")]


def start_pair(procs: Processes, watched: Path, args: list[str] = ()) -> tuple[ServerProcess, ClientProcess]:  # type: ignore[assignment]
    server = procs.server()
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=list(args))
    return server, client


def test_row_sed_i_is_one_modified(procs: Processes, watched: Path) -> None:
    """``echo porta=1 > config.ini; sed -i s/1/2/ config.ini``: before, ``created sedAbC123``, ``moved sedAbC123 ->
    config.ini``."""
    server, client = start_pair(procs, watched)
    sh("echo porta=1 > config.ini", watched)
    server.wait_for_line(f"[cli] arquivo criado: {watched}/config.ini")
    sh("sed -i s/1/2/ config.ini", watched)
    assert settled_lines(server, watched, 1) == [f"arquivo modificado: {watched}/config.ini"], server.describe()
    no_traceback(server, client)


def test_row_download_is_created_then_a_few_modified(procs: Processes, watched: Path) -> None:
    """64 writes of 1 MiB 50 ms apart: before, 1 created + 63-64 modified."""
    server, client = start_pair(procs, watched)
    started = time.monotonic()
    sh("for i in $(seq 64); do head -c 1M /dev/zero; sleep 0.05; done > download.bin", watched)
    took = time.monotonic() - started
    lines = settled_lines(server, watched, 0)
    path = f"{watched}/download.bin"
    assert lines[0] == f"arquivo criado: {path}", server.describe()
    assert set(lines[1:]) <= {f"arquivo modificado: {path}"}, server.describe()
    # One modified per SETTLE_MAX_HOLD at most while it is written, and the last one (3.2 s of sleeps: 3 or 4).
    assert len(lines) - 1 <= int(took / 1.0) + 1, (took, server.describe())
    if took < 4.0:
        assert len(lines) - 1 <= 3, (took, server.describe())
    no_traceback(server, client)


def test_row_saves_300_ms_apart_are_one_modified_each(procs: Processes, watched: Path) -> None:
    """``for i in $(seq 20); do echo v$i > app.conf; sleep 0.3; done``: before, 21-23 modified."""
    server, client = start_pair(procs, watched)
    sh("echo v0 > app.conf", watched)
    server.wait_for_line(f"[cli] arquivo criado: {watched}/app.conf")
    sh("for i in $(seq 20); do echo v$i > app.conf; sleep 0.3; done", watched)
    assert settled_lines(server, watched, 1) == [f"arquivo modificado: {watched}/app.conf"] * 20, server.describe()
    no_traceback(server, client)


@pytest.mark.parametrize(("settle", "gap", "expected"), [("0.5", 0.05, 1), ("0.05", 0.5, 5)], ids=["merged", "apart"])
def test_explicit_settle_merges_writes_inside_the_window_only(
    procs: Processes, watched: Path, settle: str, gap: float, expected: int
) -> None:
    server, client = start_pair(procs, watched, ["--assentar", settle, "--assentar-max", "10"])
    path = watched / "f.txt"
    write_file(path, b"0")
    server.wait_for_line(f"[cli] arquivo criado: {path}")
    for index in range(5):
        time.sleep(gap)  # the gap between two writes, well inside or well outside the window
        write_file(path, str(index).encode())
    assert settled_lines(server, watched, 1) == [f"arquivo modificado: {path}"] * expected, server.describe()
    no_traceback(server, client)


def test_settle_zero_sends_every_raw_event(procs: Processes, watched: Path) -> None:
    server, client = start_pair(procs, watched, ["--assentar", "0"])
    sh("echo porta=1 > config.ini && sed -i s/1/2/ config.ini", watched)
    lines = settled_lines(server, watched, 0)
    assert lines[0] == f"arquivo criado: {watched}/config.ini", server.describe()
    assert any(line.startswith(f"arquivo movido: {watched}/sed") for line in lines), server.describe()
    no_traceback(server, client)


def test_held_changes_go_out_live_at_sigterm(procs: Processes, watched: Path) -> None:
    """A window longer than the test: SIGTERM sends what is held at once, as live events."""
    server, client = start_pair(procs, watched, ["--assentar", "30", "--assentar-max", "60"])
    write_file(watched / "a.txt")
    time.sleep(0.3)  # the event reached the client (and is held: nothing on the server yet)
    assert server.lines() == [], server.describe()
    assert client.stop(signal.SIGTERM) == 0
    server.wait_for_line(f"[cli] arquivo criado: {watched}/a.txt")
    no_traceback(server, client)
