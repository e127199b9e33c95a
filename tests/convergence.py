"""The convergence check behind "nothing lost": replaying what the server showed gives the tree on disk.

README.md, "Como a visão do servidor fica igual ao disco": repeating the events the server
printed (``--json``) or stored (``--banco``) -- ``created`` adds a path, ``deleted`` removes it
and everything below it, ``moved`` carries it and everything below it to the destination --
yields the tree the server knows. Once the disk is quiet that tree must equal the real one,
and no (client_id, seq) may have been shown twice.

Also here: incremental readers for the server's output and database, fast file generators for the
workloads, and the per-test figures written to $CONVERGENCE_FIGURES (one JSON line per test).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from support import Script

EventRecord = dict[str, Any]
ReadEvents = Callable[[], list[EventRecord]]

POLL_INTERVAL = 0.05  # at least; a slow check (100,000 paths) waits as long as it took, to leave the CPU to the scripts
SHOWN_PATHS = 20  # missing/extra paths quoted in a failure message
FIGURES_ENV = "CONVERGENCE_FIGURES"
PAYLOAD = b"x" * 1023 + b"\n"  # 1 KiB
ORIGINS = ("live", "rescan", "startup")


# ---------------------------------------------------------------------------
# Records.
# ---------------------------------------------------------------------------


def record_path(record: Mapping[str, Any], key: str = "path") -> str:
    """The exact path of an event record: ``<key>_b64`` decoded when present (names that are not UTF-8)."""
    raw = record.get(f"{key}_b64")
    if raw is not None:
        assert isinstance(raw, str), f"{key}_b64 is not text: {record!r}"
        return os.fsdecode(base64.b64decode(raw, validate=True))
    value = record.get(key)
    assert isinstance(value, str), f"event record without a text {key!r}: {record!r}"
    return value


def is_protocol_event(record: Mapping[str, Any]) -> bool:
    """An event of a monitor client (not a plain text ``message``)."""
    return record.get("event") != "message" and record.get("client_id") is not None


def event_key(record: Mapping[str, Any]) -> tuple[str, int]:
    client_id, seq = record.get("client_id"), record.get("seq")
    assert isinstance(client_id, str) and isinstance(seq, int), f"event record without client_id/seq: {record!r}"
    return client_id, seq


# ---------------------------------------------------------------------------
# replay(): the tree the server knows.
# ---------------------------------------------------------------------------


class _Node:
    __slots__ = ("children", "present")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.present = False


class _Tree:
    """A set of absolute paths kept as a trie, so that removing or moving a subtree costs one step."""

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self.top = _Node()
        for path in paths:
            self.add(path)

    @staticmethod
    def _parts(path: str) -> list[str]:
        return path.split(os.sep)

    def _node(self, parts: list[str], create: bool) -> _Node | None:
        node = self.top
        for name in parts:
            child = node.children.get(name)
            if child is None:
                if not create:
                    return None
                child = node.children[name] = _Node()
            node = child
        return node

    def add(self, path: str) -> None:
        node = self._node(self._parts(path), create=True)
        assert node is not None
        node.present = True

    def detach(self, path: str) -> _Node | None:
        """Remove ``path`` and everything below it; the removed subtree (None if there was nothing)."""
        parts = self._parts(path)
        parent = self._node(parts[:-1], create=False)
        if parent is None:
            return None
        return parent.children.pop(parts[-1], None)

    def attach(self, path: str, node: _Node) -> None:
        parts = self._parts(path)
        parent = self._node(parts[:-1], create=True)
        assert parent is not None
        parent.children[parts[-1]] = node

    def paths(self) -> set[str]:
        out: set[str] = set()
        stack: list[tuple[list[str], _Node]] = [([], self.top)]
        while stack:
            parts, node = stack.pop()
            for name, child in node.children.items():
                child_parts = [*parts, name]
                if child.present:
                    out.add(os.sep.join(child_parts))
                if child.children:
                    stack.append((child_parts, child))
        return out


def replay(events: Iterable[Mapping[str, Any]], start: Iterable[str] = (), *, root: str | None = None) -> set[str]:
    """Apply the server's event records, in order, to ``start`` (a set of absolute paths).

    ``created`` and ``modified`` add the path; ``deleted`` removes it and everything below it;
    ``moved`` removes the source and the destination (each with its subtree), then puts the
    source's subtree under the destination. ``message`` records are ignored. With ``root``
    (the watched directory, never part of the tree), a ``deleted`` root empties the tree and a
    ``created`` root adds nothing.
    """
    tree = _Tree(start)
    root = os.fspath(root).rstrip(os.sep) if root is not None else None
    for record in events:
        kind = record.get("event")
        if kind == "message":
            continue
        path = record_path(record)
        if kind in ("created", "modified"):
            if path != root:
                tree.add(path)
        elif kind == "deleted":
            tree.detach(path)
        elif kind == "moved":
            dest = record_path(record, "dest_path")
            node = tree.detach(path)
            tree.detach(dest)
            if node is not None and dest != root:
                tree.attach(dest, node)
        else:
            raise AssertionError(f"unknown event kind in record: {record!r}")
    return tree.paths()


def state_tree(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The tree of a client's state file (its JSON) as nested dicts: format 6 keeps one row per directory,
    ``[parent row, name, [file names], [their info]]``; older formats the nested dicts themselves."""
    rows = obj["tree"]
    if isinstance(rows, dict):
        return rows
    nodes: list[dict[str, Any]] = []
    for parent, name, names, infos in rows:
        node: dict[str, Any] = dict(zip(names, infos, strict=True))
        if nodes:
            nodes[parent][name] = node
        nodes.append(node)
    return nodes[0]


def disk_tree(root: str | os.PathLike[str]) -> set[str]:
    """Every path below ``root`` (directories, files, symbolic links as entries, never followed); not root itself."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(os.fspath(root), followlinks=False):
        out.update(os.path.join(dirpath, name) for name in dirnames)
        out.update(os.path.join(dirpath, name) for name in filenames)
    return out


def describe_difference(replayed: set[str], disk: set[str]) -> str:
    missing = sorted(disk - replayed)  # on disk, never reported
    extra = sorted(replayed - disk)  # reported, not on disk
    return (
        f"the replayed events give {len(replayed)} paths, the disk has {len(disk)}\n"
        f"{len(missing)} on disk but missing from the replay, e.g. {missing[:SHOWN_PATHS]!r}\n"
        f"{len(extra)} in the replay but not on disk, e.g. {extra[:SHOWN_PATHS]!r}"
    )


def wait_converged(
    read_events: ReadEvents,
    root: str | os.PathLike[str],
    start: Iterable[str] = (),
    timeout: float = 60.0,
    *,
    stable_for: float = 1.0,
    context: Callable[[], str] | None = None,
) -> tuple[list[EventRecord], set[str]]:
    """Poll until replaying ``read_events()`` over ``start`` gives ``disk_tree(root)``, for ``stable_for`` s in a row.

    Holding for a while catches a late event that would undo the agreement (a wrong repair).
    Returns the events and the tree at that point; AssertionError after ``timeout`` s, with the
    counts and up to SHOWN_PATHS missing and extra paths (and ``context()``, e.g. the processes' output).
    """
    root_text = os.fspath(root)
    base = frozenset(start)
    deadline = time.monotonic() + timeout
    agreed_since: float | None = None
    while True:
        began = time.monotonic()
        events = read_events()
        replayed = replay(events, base, root=root_text)
        disk = disk_tree(root_text)
        now = time.monotonic()
        if replayed == disk:
            agreed_since = began if agreed_since is None else agreed_since
            if now - agreed_since >= stable_for:
                return events, disk
        else:
            agreed_since = None
        if now >= deadline:
            details = context() if context is not None else ""
            raise AssertionError(
                f"the server's view did not converge to the disk within {timeout:g} s "
                f"({len(events)} events)\n{describe_difference(replayed, disk)}\n{details}"
            )
        time.sleep(max(POLL_INTERVAL, now - began))


# ---------------------------------------------------------------------------
# Shown twice, and the figures.
# ---------------------------------------------------------------------------


class Figures(TypedDict):
    events: int
    by_origin: dict[str, int]
    shown_twice: int


def event_figures(events: Iterable[Mapping[str, Any]]) -> tuple[Figures, list[tuple[str, int]]]:
    """Counts of the protocol events (in all and by origin) and the (client_id, seq) seen more than once."""
    keys: collections.Counter[tuple[str, int]] = collections.Counter()
    origins: collections.Counter[str] = collections.Counter()
    for record in events:
        if is_protocol_event(record):
            keys[event_key(record)] += 1
            origins[str(record.get("origin"))] += 1
    twice = sorted(key for key, count in keys.items() if count > 1)
    by_origin = {origin: origins.get(origin, 0) for origin in ORIGINS}
    by_origin.update({origin: count for origin, count in origins.items() if origin not in ORIGINS})
    figures: Figures = {
        "events": sum(keys.values()),
        "by_origin": by_origin,
        "shown_twice": sum(count - 1 for count in keys.values() if count > 1),
    }
    return figures, twice


def assert_no_event_twice(events: Iterable[Mapping[str, Any]], what: str = "events") -> Figures:
    """No (client_id, seq) appears twice; the figures (events, by origin, shown twice = 0)."""
    figures, twice = event_figures(events)
    assert not twice, f"{len(twice)} {what} shown more than once, e.g. {twice[:SHOWN_PATHS]!r}"
    return figures


def record_figures(test: str, figures: Mapping[str, Any]) -> str:
    """Append ``{"test": test, **figures}`` as a JSON line to $CONVERGENCE_FIGURES (if set); the line."""
    line = json.dumps({"test": test, **figures}, ensure_ascii=False, sort_keys=False)
    target = os.environ.get(FIGURES_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")
    return line


# ---------------------------------------------------------------------------
# Reading what the server showed, incrementally (100,000 lines are re-read on every poll otherwise).
# ---------------------------------------------------------------------------


class StdoutEvents:
    """The ``--json`` stdout of one or more servers, in that order, as event records."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self._records: list[list[EventRecord]] = [[] for _ in scripts]

    def __call__(self) -> list[EventRecord]:
        out: list[EventRecord] = []
        for script, records in zip(self.scripts, self._records, strict=True):
            lines = script.lines("stdout")
            for index in range(len(records), len(lines)):
                line = lines[index]
                try:
                    record = json.loads(line)
                except ValueError:
                    if index == len(lines) - 1 and script.proc.poll() == -signal.SIGKILL:
                        continue  # the last line, torn by kill -9 while the console was writing it
                    raise AssertionError(f"stdout line is not JSON: {line!r}\n{script.describe()}") from None
                assert isinstance(record, dict), f"stdout line is not a JSON object: {line!r}"
                records.append(record)
            out.extend(records)
        return out


class DatabaseEvents:
    """The events in the server's ``--banco`` database, oldest first, as ``--json`` records (README's export)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.records: list[EventRecord] = []
        self._last_id = 0

    def __call__(self) -> list[EventRecord]:
        if not self.path.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT e.id, c.name, c.client_id, e.seq, e.event, e.path, e.dest_path, e.is_dir, e.ts, e.origin,"
                " e.path_b64, e.dest_path_b64 FROM events AS e JOIN clients AS c ON c.id = e.client"
                " WHERE e.id > ? ORDER BY e.id",
                (self._last_id,),
            ).fetchall()
        for row_id, name, client_id, seq, kind, path, dest, is_dir, ts, origin, path_b64, dest_b64 in rows:
            record: EventRecord = {"client": name, "client_id": client_id, "seq": seq, "event": kind, "path": path}
            if dest is not None:
                record["dest_path"] = dest
            record |= {"is_dir": bool(is_dir), "ts": ts, "origin": origin}
            if path_b64 is not None:
                record["path_b64"] = path_b64
            if dest_b64 is not None:
                record["dest_path_b64"] = dest_b64
            self.records.append(record)
            self._last_id = row_id
        return list(self.records)


# ---------------------------------------------------------------------------
# Workloads.
# ---------------------------------------------------------------------------


def write_file(path: str | bytes | os.PathLike[str], data: bytes = PAYLOAD) -> None:
    """Create (or truncate) a file and write ``data`` in one system call."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def burst_paths(directory: Path, count: int, per_dir: int | None = None) -> Iterator[tuple[Path | None, Path]]:
    """(directory to create first or None, file) for ``count`` files, ``per_dir`` per subdirectory."""
    for index in range(count):
        if per_dir is None:
            yield (directory if index == 0 else None), directory / f"f{index:06d}.dat"
        else:
            sub = directory / f"d{index // per_dir:04d}"
            yield (sub if index % per_dir == 0 else None), sub / f"f{index:06d}.dat"


class Burst(threading.Thread):
    """Creates ``count`` 1 KiB files in a background thread, creating ``directory`` (and subdirectories) as it goes.

    With ``pause_after``, it stops after that many files until ``resume`` is set, so that something
    can happen (a server killed) in the middle of the burst. ``created`` tells how far it got;
    ``join_checked`` re-raises whatever the thread raised.
    """

    def __init__(
        self,
        directory: Path,
        count: int,
        *,
        per_dir: int | None = None,
        pause_after: int | None = None,
        resume: threading.Event | None = None,
        resume_timeout: float = 60.0,
    ) -> None:
        super().__init__(name="burst", daemon=True)
        self.directory = directory
        self.count = count
        self.per_dir = per_dir
        self.pause_after = pause_after
        self.resume = resume
        self.resume_timeout = resume_timeout
        self.created = 0
        self.paused = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for index, (new_dir, path) in enumerate(burst_paths(self.directory, self.count, self.per_dir)):
                if index == self.pause_after and self.resume is not None:
                    self.paused.set()
                    if not self.resume.wait(self.resume_timeout):
                        raise TimeoutError(f"burst: not resumed within {self.resume_timeout:g} s")
                if new_dir is not None:
                    new_dir.mkdir(parents=True, exist_ok=True)
                write_file(path)
                self.created = index + 1
        except BaseException as exc:  # re-raised in the test's thread by join_checked
            self.error = exc

    def join_checked(self, timeout: float = 120.0) -> None:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"burst still running after {timeout:g} s ({self.created} of {self.count} files)")
        if self.error is not None:
            raise AssertionError(f"burst failed after {self.created} files: {self.error!r}") from self.error


def make_tree(directory: Path, dirs: int, files_per_dir: int, depth: int = 2) -> list[Path]:
    """``dirs`` directories nested ``depth`` deep (d00/s00/...), ``files_per_dir`` 1 KiB files in each; the files."""
    files: list[Path] = []
    for index in range(dirs):
        sub = directory.joinpath(*[f"n{index:03d}_{level}" for level in range(depth)])
        sub.mkdir(parents=True, exist_ok=True)
        for number in range(files_per_dir):
            path = sub / f"arquivo_{number:04d}.txt"
            write_file(path, f"{index} {number}\n".encode() + PAYLOAD)
            files.append(path)
    return files
