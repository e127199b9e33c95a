"""--polling: an entry replaced by one of another type is deleted + created, live (review 1 of issue 11, item 4).

watchdog's poll matches paths by inode, and ext4 gives a freed inode to the next entry made: ``rm f; mkdir f`` came
as "arquivo modificado: f", ``rmdir d; mkfifo d`` as nothing (a directory's "modified" was filtered out), each
repaired seconds later by a check with a "não percebida" warning. End to end: the real scripts on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from convergence import write_file
from support import Processes, no_traceback, touch
from test_limits import start_client

POLLING = ["--polling", "0.2"]


def _file_to_dir(w: Path) -> None:
    (w / "f3").unlink()
    (w / "f3").mkdir()


def _dir_to_fifo(w: Path) -> None:
    (w / "d2").rmdir()
    os.mkfifo(w / "d2")


def _dir_to_symlink(w: Path) -> None:
    (w / "d3").rmdir()
    os.symlink("x", w / "d3")


def _dir_with_child_to_file(w: Path) -> None:
    (w / "d1" / "s").rmdir()
    (w / "d1").rmdir()
    write_file(w / "d1", b"x\n")


def _file_to_symlink(w: Path) -> None:
    (w / "f1").unlink()
    os.symlink("/etc", w / "f1")


def _symlink_to_file(w: Path) -> None:
    (w / "l1").unlink()
    write_file(w / "l1", b"real\n")


# (what the person does, the lines that must be shown live, lines that may be shown too, extra client flags)
ROWS: dict[str, tuple[Callable[[Path], None], set[str], set[str], list[str]]] = {
    "rm f3; mkdir f3": (_file_to_dir, {"arquivo excluído: f3", "diretório criado: f3"}, set(), []),
    "rmdir d2; mkfifo d2": (_dir_to_fifo, {"diretório excluído: d2", "arquivo especial criado: d2"}, set(), []),
    "rmdir d3; ln -s x d3": (_dir_to_symlink, {"diretório excluído: d3", "link simbólico criado: d3 -> x"}, set(), []),
    "rm -r d1; echo x > d1": (
        _dir_with_child_to_file,
        {"diretório excluído: d1", "arquivo criado: d1"},
        {"diretório excluído: d1/s"},
        [],
    ),
    # Between two non-directories the View says what the path was (raw events: the settle rule is another's).
    "rm f1; ln -s /etc f1": (
        _file_to_symlink,
        {"arquivo excluído: f1", "link simbólico criado: f1 -> /etc"},
        set(),
        ["--assentar", "0"],
    ),
    "rm l1; echo real > l1": (
        _symlink_to_file,
        {"link simbólico excluído: l1", "arquivo criado: l1"},
        set(),
        ["--assentar", "0"],
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_a_type_change_is_deleted_and_created_live(procs: Processes, watched: Path, row: str) -> None:
    action, wanted, allowed, flags = ROWS[row]
    touch(watched / "f3")
    touch(watched / "f1")
    os.symlink("alvo", watched / "l1")
    for name in ("d2", "d3", "d1/s"):
        (watched / name).mkdir(parents=True)
    server = procs.server()
    client = start_client(procs, watched, server, args=[*POLLING, *flags])
    before = len(server.stripped())
    action(watched)
    prefix = "[cli] "

    def said() -> list[str]:
        return [line.removeprefix(prefix).replace(f"{watched}/", "") for line in server.stripped()[before:]]

    server.wait_for(lambda: wanted <= set(said()), what=f"the lines {sorted(wanted)} (live)")
    sentinel = watched / "sentinela"
    touch(sentinel)
    server.wait_for(lambda: "arquivo criado: sentinela" in said(), what="the sentinel")
    lines = [line for line in said() if line != "arquivo criado: sentinela"]
    assert wanted <= set(lines) <= wanted | allowed and len(lines) == len(set(lines)), server.describe()
    assert not [line for line in client.lines("stderr") if "não percebida" in line], client.describe()
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


def test_retype_polled(cliente: ModuleType, tmp_path: Path) -> None:
    """The pure part: a poll's "modified" (or "attrib") of a path now of another type is deleted + created, once;
    a directory's own "modified" otherwise dropped (noise); a file's kept; what the View says for non-directories."""
    ev = cliente
    (tmp_path / "was_file").mkdir()
    touch(tmp_path / "was_dir")
    (tmp_path / "still_dir").mkdir()
    touch(tmp_path / "plain")
    os.symlink("x", tmp_path / "link")
    p = {name: str(tmp_path / name) for name in ("was_file", "was_dir", "still_dir", "plain", "link", "gone")}
    events = [
        ev.FileModifiedEvent(p["was_file"]),
        ev.FileAttribEvent(p["was_file"]),
        ev.DirModifiedEvent(p["was_dir"]),
        ev.DirAttribEvent(p["was_dir"]),
        ev.DirModifiedEvent(p["still_dir"]),
        ev.FileModifiedEvent(p["plain"]),
        ev.FileModifiedEvent(p["link"]),
        ev.FileModifiedEvent(p["gone"]),
        ev.DirModifiedEvent(p["gone"]),
    ]
    known = {p["link"]: "file", p["plain"]: "file"}
    out = cliente.retype_polled(events, known.get)
    assert [(type(e).__name__, e.src_path) for e in out] == [
        ("FileDeletedEvent", p["was_file"]),
        ("DirCreatedEvent", p["was_file"]),
        ("DirDeletedEvent", p["was_dir"]),
        ("FileCreatedEvent", p["was_dir"]),
        ("FileModifiedEvent", p["plain"]),
        ("FileDeletedEvent", p["link"]),
        ("FileCreatedEvent", p["link"]),
        ("FileModifiedEvent", p["gone"]),
    ]
    assert cliente.retype_polled(events[-4:-3]) == events[-4:-3]  # the View does not know: kept


def test_a_polls_deletion_comes_before_what_was_made_at_its_path(cliente: ModuleType) -> None:
    """watchdog's poll queues files' events before directories': ``rmdir d; mkfifo d`` (a new inode) came as the
    FIFO's creation, then the directory's deletion (the View then deleted the FIFO)."""
    ev = cliente
    events = [
        ev.FileDeletedEvent("/r/d/x"),
        ev.FileCreatedEvent("/r/d"),
        ev.FileCreatedEvent("/r/e"),
        ev.DirDeletedEvent("/r/d"),
        ev.DirDeletedEvent("/r/gone"),
    ]
    out = cliente.retype_polled(events)
    assert [(type(e).__name__, e.src_path) for e in out] == [
        ("FileDeletedEvent", "/r/d/x"),
        ("DirDeletedEvent", "/r/d"),
        ("FileCreatedEvent", "/r/d"),
        ("FileCreatedEvent", "/r/e"),
        ("DirDeletedEvent", "/r/gone"),
    ]
