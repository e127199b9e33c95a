"""Issue 12, the client side: batches through watchdog, no event built to be dropped, cheaper encoding.

- The watchdog internals the batched path reads are still there (a watchdog release that changes them fails
  here, loudly, while the client itself falls back to the stock path with a -v line).
- In process: BatchingObserver, next to watchdog's stock Observer on the same directory, builds the same events
  (less DirModifiedEvent and the made-up moves of a moved directory's children) and hands them over in batches.
- fold_writes and the hand-written encode_event, against json.dumps on fuzzed changes with hostile names.
- End to end, on both paths (batched, and stock by MONITOR_STOCK_WATCHDOG=1): a representative subset of the
  convergence scenarios, replayed by tests/convergence.py.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from convergence import (
    Burst,
    StdoutEvents,
    assert_no_event_twice,
    disk_tree,
    make_tree,
    replay,
    wait_converged,
    write_file,
)
from hypothesis import example, given
from hypothesis import strategies as st
from support import ClientProcess, Processes, ServerProcess, no_traceback, wait_until
from watchdog import events as wd
from watchdog.observers import Observer

STOCK_ENV = "MONITOR_STOCK_WATCHDOG"
FALLBACK_LINE = "emissor em lotes desligado"


@pytest.fixture(autouse=True)
def batched_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STOCK_ENV, raising=False)


# ---------------------------------------------------------------------------
# 1. What the batched path relies on.
# ---------------------------------------------------------------------------


def test_watchdog_internals_the_batched_path_reads_are_still_there(cliente: ModuleType) -> None:
    """If this fails after a watchdog upgrade, the client still works (stock path, said with -v) but has lost
    the batched emitter: adapt BatchingInotifyEmitter / take_ready / batching_unsupported to the new release."""
    assert cliente.batching_unsupported() == ""
    observer = cliente.new_inotify_observer(first=True)
    assert isinstance(observer, cliente.BatchingObserver)
    observer.stop()  # never started: its inotify reader thread was
    observer.on_thread_stop()


def test_stock_path_forced_by_the_environment(
    cliente: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(STOCK_ENV, "1")
    assert cliente.batching_unsupported() == f"{STOCK_ENV}=1"
    with caplog.at_level(logging.DEBUG, logger="monitor"):
        observer = cliente.new_inotify_observer(first=True)
        cliente.new_inotify_observer(first=False)  # a restart: said once
    assert not isinstance(observer, cliente.BatchingObserver)
    assert [r.getMessage() for r in caplog.records if FALLBACK_LINE in r.getMessage()] == [
        f"{FALLBACK_LINE} ({STOCK_ENV}=1): usando o caminho padrão do watchdog, evento por evento."
    ]
    monkeypatch.setenv(STOCK_ENV, "0")
    assert cliente.batching_unsupported() == ""


def test_take_ready_stops_at_a_move_source_still_waiting(cliente: ModuleType) -> None:
    from watchdog.utils.delayed_queue import DelayedQueue

    queue: DelayedQueue[str] = DelayedQueue(60.0)
    for name, delay in [("a", False), ("b", False), ("from", True), ("c", False)]:
        queue.put(name, delay=delay)
    assert cliente.take_ready(queue) == ["a", "b"]
    assert cliente.take_ready(queue) == []
    queue.delay = 0.0  # its wait is over: what get() would return now
    assert cliente.take_ready(queue) == ["from", "c"]


# ---------------------------------------------------------------------------
# 2. In process: the batched observer against the stock one, on the same directory.
# ---------------------------------------------------------------------------


class Recording(wd.FileSystemEventHandler):
    """Keeps every event, and the size of each batch (a plain handler gets dispatch() per event)."""

    def __init__(self) -> None:
        self.events: list[wd.FileSystemEvent] = []
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def on_any_event(self, event: wd.FileSystemEvent) -> None:
        with self._lock:
            self.events.append(event)

    def dispatch_batch(self, events: list[wd.FileSystemEvent]) -> None:
        with self._lock:
            self.events.extend(events)
            self.batches.append(len(events))

    def snapshot(self) -> list[wd.FileSystemEvent]:
        with self._lock:
            return list(self.events)


def batching_on(cliente: ModuleType, tmp_path: Path) -> tuple[Path, Recording, Any]:
    """A BatchingObserver started on a new ``tmp_path/w`` (recursive, the client's filter), recording what it says."""
    root = tmp_path / "w"
    root.mkdir()
    handler = Recording()
    observer = cliente.BatchingObserver()
    observer.schedule(handler, str(root), recursive=True, event_filter=cliente.WATCHED_EVENTS)
    observer.start()
    return root, handler, observer


def comparable(events: list[wd.FileSystemEvent]) -> list[tuple[str, str, str, bool, bool]]:
    """What the Recorder reads of an event; made-up moves of a moved directory's children left out (the
    Recorder drops them: the directory's move says it all)."""
    return [
        (e.event_type, os.fsdecode(e.src_path), os.fsdecode(e.dest_path), e.is_directory, e.is_synthetic)
        for e in events
        if not (e.event_type == "moved" and e.is_synthetic)
    ]


def test_batched_observer_builds_the_stock_events_in_batches(cliente: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "w"
    outside = tmp_path / "fora"
    root.mkdir()
    make_tree(outside / "entrada", dirs=3, files_per_dir=5)
    stock, batched = Recording(), Recording()
    observers = [Observer(), cliente.BatchingObserver()]
    for observer, handler in zip(observers, (stock, batched), strict=True):
        observer.schedule(handler, str(root), recursive=True, event_filter=cliente.WATCHED_EVENTS)
        observer.start()
    (emitter,) = observers[1].emitters

    def burst() -> None:
        """300 new files (900 inotify events, folded by the reader) while the batched emitter is held (its lock):
        it may have taken a first batch; once the reader has queued the rest (the queue stops growing), one wake-up
        takes them all."""
        with emitter._lock:
            for index in range(300):
                write_file(root / f"f{index:03d}.txt")
            waiting = emitter._inotify._move_event_grouper._queue._queue
            sizes = [-1]

            def settled() -> bool:
                sizes.append(len(waiting))
                return sizes[-5:] == [sizes[-1]] * 5

            wait_until(settled, describe=lambda: str(sizes[-5:]))

    steps: list[Callable[[], object]] = [
        burst,
        functools.partial(os.chmod, root / "f000.txt", 0o600),
        functools.partial(os.rename, root / "f001.txt", root / "renomeado.txt"),
        functools.partial(os.rename, outside / "entrada", root / "entrou"),  # its content: made-up creations
        functools.partial(os.rename, root / "entrou", root / "movido"),
        functools.partial((root / "novo").mkdir),  # one at a time: mkdir -p races watchdog's walk (both paths)
        functools.partial((root / "novo" / "sub").mkdir),
        functools.partial(write_file, root / "novo" / "sub" / "x.txt"),
        functools.partial(os.rename, root / "f002.txt", outside / "saiu.txt"),  # out: a deletion, after a delay
        functools.partial(os.unlink, root / "f003.txt"),
        functools.partial(shutil.rmtree, root / "movido"),
    ]

    def said(handler: Recording) -> list[tuple[str, str, str, bool, bool]]:
        # The reader folds the writes and closes of a file created in the same read (fold_raw_writes), as the
        # handler does for a batch (fold_writes): compared once both are folded.
        return comparable(cliente.fold_writes(handler.snapshot()))

    def agree(before: int) -> bool:
        """Both have seen the step: the stock one has new events and the two agree."""
        return len(stock.snapshot()) > before and said(stock) == said(batched)

    def differences() -> str:
        return f"stock {said(stock)[-5:]}\nbatched {said(batched)[-5:]}"

    try:
        for step in steps:
            before = len(stock.snapshot())
            step()
            wait_until(functools.partial(agree, before), timeout=10.0, describe=differences)
    finally:
        for observer in observers:
            observer.stop()
            observer.join(5)
    assert not any(type(e) is wd.DirModifiedEvent for e in batched.events)
    assert not any(e.event_type == "moved" and e.is_synthetic for e in batched.events)
    # The burst in one or two batches: 300 creations at least (the writes the reader folded are not there).
    assert sum(batched.batches[:2]) >= 300, batched.batches[:5]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # watchdog's, in its reader thread (the client logs them)
def test_a_directory_watched_already_is_not_walked_again(cliente: ModuleType, tmp_path: Path) -> None:
    """WalkOnceWatchGroup: a chain of 1,500 new directories made faster than it is read is heard in seconds (stock
    re-walks each level's subtree: quadratic); a new directory in the place of one moved out is watched anew."""
    from limits_support import make_chain, remove_deep

    root = tmp_path / "w"
    root.mkdir()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(cliente.WALK_RECURSION)  # as the client does: watchdog's walks recurse once per level
    handler = Recording()
    observer = cliente.BatchingObserver()
    observer.schedule(handler, str(root), recursive=True, event_filter=cliente.WATCHED_EVENTS)
    observer.start()

    def seen(path: Path, kind: str = "created") -> bool:
        return any(e.event_type == kind and os.fsdecode(e.src_path) == str(path) for e in handler.snapshot())

    try:
        make_chain(root / "d", 1500)
        write_file(root / "depois.txt")
        wait_until(
            functools.partial(seen, root / "depois.txt"), timeout=30.0, describe=lambda: str(len(handler.events))
        )
        (root / "a").mkdir()
        wait_until(functools.partial(seen, root / "a"))
        os.rename(root / "a", tmp_path / "fora")
        (root / "a").mkdir()  # the old watch still follows the one moved out, under this name
        write_file(root / "a" / "x.txt")
        wait_until(functools.partial(seen, root / "a" / "x.txt"), describe=lambda: str(handler.snapshot()[-5:]))
        write_file(tmp_path / "fora" / "fantasma.txt")  # the one moved out: whatever watchdog says, not as a/...
        write_file(root / "a" / "y.txt")
        wait_until(functools.partial(seen, root / "a" / "y.txt"))
    finally:
        observer.stop()
        observer.join(5)
        remove_deep(tmp_path)  # deeper than pytest's cleanup (shutil.rmtree) can remove
        sys.setrecursionlimit(limit)
    chain = {os.fsdecode(e.src_path) for e in handler.events if e.is_directory and e.event_type == "created"}
    assert len(chain) >= 1000  # past PATH_MAX the names cannot be listed; the rest is heard


def test_a_directory_renamed_while_it_is_walked_is_walked_under_its_new_name(
    cliente: ModuleType, tmp_path: Path
) -> None:
    """``mkdir -p x/a/b; echo > x/a/b/f; echo > x/g; mv x y``, 200 times, faster than the reader: a new directory
    renamed before (or while) watchdog listed it, whose watch follows it, is listed again under its new name when
    its move comes (stock does not: ``y/a/b/f`` was never said, 1 to 40 paths per run here, until the client's next
    check); a directory moved in is said before what its walk finds in it (stock: after, and the view made it up).
    What the events say, replayed, is the disk's; no event below a directory comes before its creation or move."""
    root, handler, observer = batching_on(cliente, tmp_path)
    kinds = {"created": "created", "deleted": "deleted", "moved": "moved", "modified": "modified"}

    def replayed() -> set[str]:
        records = [
            {"event": kinds[e.event_type], "path": os.fsdecode(e.src_path), "dest_path": os.fsdecode(e.dest_path)}
            for e in handler.snapshot()
            if e.event_type in kinds and not (e.event_type == "modified" and e.is_directory)
        ]
        return replay(records, root=str(root))

    try:
        for index in range(200):
            x = root / f"x{index}"
            os.makedirs(x / "a" / "b")
            write_file(x / "a" / "b" / "f")
            write_file(x / "g")
            os.rename(x, root / f"y{index}")
        expected = disk_tree(root)
        wait_until(lambda: replayed() == expected, 10.0, lambda: str(sorted(replayed() ^ expected)[:10]))
    finally:
        observer.stop()
        observer.join(5)
    said: set[str] = {str(root)}  # what the events said so far (nothing is deleted here)
    for event in handler.events:
        src = os.fsdecode(event.src_path)
        if event.event_type in ("created", "moved"):
            path = os.fsdecode(event.dest_path) if event.event_type == "moved" else src
            assert os.path.dirname(path) in said, f"{event} before its directory"
            said.add(path)
            if event.event_type == "moved":
                said |= {path + p[len(src) :] for p in said if p.startswith(src + os.sep)}


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
27 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 27 0:40 / /mnt/com\\040espa\\303\\247o rw - xfs /dev/sdb rw
31 27 0:41 / /home rw master:3 - btrfs /dev/sdc rw
32 27 0:42 / /rede rw - nfs4 servidor:/x rw
33 27 0:43 / /fuse rw - fuse.sshfs a@b: rw
34 27 0:44 / /merged rw - overlay overlay rw
"""


def test_counting_devices_are_those_of_filesystems_that_count_subdirectories(cliente: ModuleType) -> None:
    """Only ext2/3/4, xfs and tmpfs say in a directory's link count how many subdirectories it has; btrfs (always
    1), network, FUSE and overlay filesystems are listed as ever (a mount point with escaped spaces and optional
    fields before " - " is read right)."""
    assert cliente.counting_devices(MOUNTINFO) == {"0:23", "253:0", "0:40"}
    assert cliente.counting_devices("") == frozenset()
    assert cliente.counting_devices("garbage\n1 2\n") == frozenset()


def test_the_first_walk_watches_every_directory_and_lists_only_those_with_subdirectories(
    cliente: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WalkOnceWatchGroup's first walk: every directory is watched (a chain, leaves with files, an empty one, a
    link to a directory is not followed), and, where the filesystem counts subdirectories, the leaves are never
    listed; a subdirectory made in a leaf after the start is heard, and so is a file in it."""
    root = tmp_path / "w"
    for directory in ("a/b/c/d", "folhas/f1", "folhas/f2", "vazio", "x/y"):
        (root / directory).mkdir(parents=True)
    for name in ("a/1.txt", "a/b/c/d/2.txt", "folhas/f1/3.txt", "folhas/f2/4.txt", "x/y/5.txt"):
        write_file(root / name)
    (root / "link").symlink_to(root / "a")
    every = {str(root)} | {str(p) for p in root.rglob("*") if p.is_dir() and not p.is_symlink()}
    listed: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: Any) -> Any:
        listed.append(os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(cliente.os, "scandir", recording_scandir)
    handler = Recording()
    observer = cliente.BatchingObserver()
    observer.schedule(handler, str(root), recursive=True, event_filter=cliente.WATCHED_EVENTS)
    observer.start()
    try:
        (emitter,) = observer.emitters
        watched = {os.fsdecode(p) for p in emitter._inotify._active_callbacks_by_path}
        assert watched == every
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            counting = cliente.counting_devices(file.read())
        device = os.stat(root).st_dev
        if f"{os.major(device)}:{os.minor(device)}" in counting:
            leaves = {d for d in every if not any(p.startswith(d + os.sep) for p in every)}
            assert set(listed) == every - leaves, listed
        (root / "folhas" / "f1" / "nova").mkdir()
        wait_until(
            lambda: str(root / "folhas" / "f1" / "nova") in {os.fsdecode(e.src_path) for e in handler.snapshot()}
        )
        write_file(root / "folhas" / "f1" / "nova" / "6.txt")
        target = str(root / "folhas" / "f1" / "nova" / "6.txt")
        wait_until(lambda: target in {os.fsdecode(e.src_path) for e in handler.snapshot()})
    finally:
        observer.stop()
        observer.join(5)


# ---------------------------------------------------------------------------
# 3. fold_writes.
# ---------------------------------------------------------------------------


def test_fold_writes_keeps_one_event_per_new_file(cliente: ModuleType) -> None:
    created, modified, attrib = wd.FileCreatedEvent, wd.FileModifiedEvent, wd.FileAttribEvent
    closed = wd.FileClosedEvent
    batch = [
        created("/w/a"),
        modified("/w/a"),
        attrib("/w/a"),
        closed("/w/a"),  # written and closed: its creation says it all
        modified("/w/old"),  # not created in this batch: kept
        closed("/w/old"),  # ...and its close too (the Settler's)
        wd.FileDeletedEvent("/w/a"),
        created("/w/a"),
        modified("/w/a"),
        closed("/w/a"),
        wd.FileMovedEvent("/w/b", "/w/a"),  # something else now at /w/a: its writes are news
        modified("/w/a"),
        created("/w/d/c"),
        wd.DirMovedEvent("/w/d", "/w/e"),
        modified("/w/d/c"),
        created("/w/z"),
        wd.DirCreatedEvent("/w/n"),  # a new directory changes nothing for /w/z
        modified("/w/z"),
        closed("/w/z"),
    ]
    kept = cliente.fold_writes(batch)
    assert kept == [batch[i] for i in (0, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16)]


# Raw inotify records (wd, mask, cookie, name) against the watchdog events the batched path builds of them.
IN = {"modify": 0x2, "attrib": 0x4, "close": 0x8, "from": 0x40, "to": 0x80, "create": 0x100, "delete": 0x200}
DIR = 0x40000000
RAW_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "modify", "attrib", "close", "delete", "move", "mkdir", "rmdir"]),
        st.sampled_from([b"a", b"b"]),
    ),
    max_size=14,
)


def raw_records(steps: list[tuple[str, bytes]]) -> list[tuple[int, int, int, bytes]]:
    records = []
    for cookie, (what, name) in enumerate(steps, 1):
        if what == "move":  # a rename inside the watch: a pair of records with one cookie
            records += [(1, IN["from"], cookie, name), (1, IN["to"], cookie, b"c" + name)]
        elif what in ("mkdir", "rmdir"):
            records.append((1, (IN["create"] if what == "mkdir" else IN["delete"]) | DIR, 0, b"d" + name))
        else:
            records.append((1, IN[what], 0, name))
    return records


def as_watchdog(records: list[tuple[int, int, int, bytes]]) -> list[wd.FileSystemEvent]:
    """What the batched emitter builds of raw records (a from/to pair: one move; a file's creation not marked
    closed by fold_raw_writes: a FileOpenedEvent after it)."""
    kinds = {
        IN["create"]: wd.FileCreatedEvent,
        IN["modify"]: wd.FileModifiedEvent,
        IN["attrib"]: wd.FileAttribEvent,
        IN["close"]: wd.FileClosedEvent,
        IN["delete"]: wd.FileDeletedEvent,
        IN["create"] | DIR: wd.DirCreatedEvent,
        IN["delete"] | DIR: wd.DirDeletedEvent,
    }
    out: list[wd.FileSystemEvent] = []
    for index, (_, mask, _, name) in enumerate(records):
        path = "/w/" + name.decode()
        if mask == IN["from"]:
            out.append(wd.FileMovedEvent(path, "/w/" + records[index + 1][3].decode()))
        elif mask == IN["create"] | IN["close"]:
            out.append(wd.FileCreatedEvent(path))
        elif mask != IN["to"]:
            out.append(kinds[mask](path))
            if mask == IN["create"]:
                out.append(wd.FileOpenedEvent(path))
    return out


@given(RAW_STEPS)
@example([("create", b"a"), ("modify", b"a"), ("modify", b"a"), ("close", b"a"), ("modify", b"a")])
@example([("create", b"a"), ("modify", b"a"), ("move", b"a"), ("modify", b"ca"), ("create", b"a"), ("close", b"a")])
@example([("create", b"a"), ("rmdir", b"a"), ("modify", b"a"), ("close", b"a")])
def test_fold_raw_writes_is_fold_writes_before_the_events_are_built(
    cliente: ModuleType, steps: list[tuple[str, bytes]]
) -> None:
    """fold_raw_writes (the reader thread, on what one read gave) keeps exactly the records whose events
    fold_writes keeps: folding first builds the same batch, once instead of three times per new file."""
    records = raw_records(steps)
    folded = cliente.fold_raw_writes(records)
    marked = {
        (wd_, mask & ~IN["close"], cookie, name) if mask & IN["create"] else (wd_, mask, cookie, name)
        for wd_, mask, cookie, name in folded
    }
    assert marked <= set(records)
    assert [repr(e) for e in as_watchdog(folded)] == [repr(e) for e in cliente.fold_writes(as_watchdog(records))]


def test_the_reader_folds_and_hands_each_read_over_at_once(cliente: ModuleType, tmp_path: Path) -> None:
    """FoldingInotifyFD and the watch group's gathering, against the kernel: 3,000 new files written and closed
    (9,000 inotify events) come out as 3,000 creations in order, none twice; a move, a deletion and a new
    directory between them keep their places."""
    root, handler, observer = batching_on(cliente, tmp_path)
    try:
        for index in range(3000):
            write_file(root / f"f{index:04d}")
            if index == 1000:
                os.rename(root / "f0500", root / "movido")
                os.unlink(root / "f0501")
                (root / "sub").mkdir()
        write_file(root / "sub" / "fim")
        wait_until(lambda: any(os.fsdecode(e.src_path).endswith("fim") for e in handler.snapshot()), timeout=30)
    finally:
        observer.stop()
        observer.join(5)
    said = [(e.event_type, os.fsdecode(e.src_path).removeprefix(f"{root}/")) for e in handler.events]
    created = [path for kind, path in said if kind == "created" and path.startswith("f")]
    assert created == [f"f{index:04d}" for index in range(3000)]
    assert said.index(("moved", "f0500")) < said.index(("deleted", "f0501")) < said.index(("created", "sub"))
    assert said.index(("created", "f1000")) < said.index(("moved", "f0500")) < said.index(("created", "f1001"))


def test_the_bridge_hands_a_burst_over_in_slices(cliente: ModuleType) -> None:
    """ThreadBridge.drain gives the loop DRAIN_MAX_EVENTS events at a time, in order, and lets what else is
    ready run between two slices (the sender sends the first part of a burst while the rest is read)."""
    got: list[object] = []

    async def burst() -> None:
        loop = asyncio.get_running_loop()

        def consume(events: list[object]) -> None:
            got.append(len(events))
            got.extend(events)

        bridge = cliente.ThreadBridge(loop, consume)
        events = [wd.FileCreatedEvent(f"/w/{index}") for index in range(2 * cliente.DRAIN_MAX_EVENTS + 5)]
        bridge.push_all(events[:10])
        bridge.push_all(events[10:])
        loop.call_soon(lambda: loop.call_soon(got.append, "sender"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert [e for e in got if not isinstance(e, int | str)] == events

    asyncio.run(burst())
    sizes = [e for e in got if isinstance(e, int) or e == "sender"]
    assert sizes[0] == cliente.DRAIN_MAX_EVENTS and sizes[-1] == 5 and "sender" in sizes[1:-1]


def test_fold_writes_keeps_one_write_of_a_new_file_not_closed_yet(cliente: ModuleType) -> None:
    """A download: created and written, not closed in the batch: one write stays, so that the Settler holds it
    until its close (review 1, item 3); its close in a later batch is kept. A creation not closed keeps its
    FileOpenedEvent (its creator holds it: not hashed yet); one closed in the batch loses it."""
    created, modified, closed, opened = (
        wd.FileCreatedEvent,
        wd.FileModifiedEvent,
        wd.FileClosedEvent,
        wd.FileOpenedEvent,
    )
    batch = [created("/w/d.bin"), modified("/w/d.bin"), modified("/w/d.bin"), created("/w/t"), closed("/w/t")]
    assert cliente.fold_writes(batch) == [batch[0], batch[1], batch[3]]
    assert cliente.fold_writes([modified("/w/d.bin"), closed("/w/d.bin")]) == [modified("/w/d.bin"), closed("/w/d.bin")]
    batch = [created("/w/a"), opened("/w/a"), created("/w/b"), opened("/w/b"), modified("/w/b"), closed("/w/b")]
    assert cliente.fold_writes(batch) == [batch[0], batch[1], batch[2]]
    assert cliente.writes_and_closes([modified("/w/d.bin"), closed("/w/d.bin"), modified("/w/e")]) == (
        frozenset({"/w/e"}),
        frozenset({"/w/d.bin"}),
        frozenset(),
        False,
    )
    said = [created("/w/a"), opened("/w/a"), created("/w/g"), opened("/w/g"), wd.FileDeletedEvent("/w/g")]
    assert cliente.writes_and_closes(said) == (frozenset(), frozenset(), frozenset({"/w/a"}), False)
    said = [modified("/w/app.log"), wd.FileMovedEvent("/w/app.log", "/w/app.log.1")]  # renamed while open
    assert cliente.writes_and_closes(said) == (frozenset({"/w/app.log.1"}), frozenset(), frozenset(), False)
    # Its directory moved (or deleted): what was said below it goes with it (review of stop 12: closed under the
    # old name, it stayed open under the new one, and the follow-up of its hash never had it).
    said = [closed("/w/x/f"), modified("/w/x/g"), wd.DirMovedEvent("/w/x", "/w/y"), closed("/w/z/h")]
    said += [wd.DirDeletedEvent("/w/z")]
    assert cliente.writes_and_closes(said) == (frozenset({"/w/y/g"}), frozenset({"/w/y/f"}), frozenset(), False)
    # The kernel overflowed between them: what was open before may have lost its close; what came after is news.
    said = [created("/w/a"), opened("/w/a"), cliente.KernelOverflowEvent("/w"), modified("/w/b")]
    assert cliente.writes_and_closes(said) == (frozenset({"/w/b"}), frozenset({"/w/a"}), frozenset(), True)


def test_fold_raw_writes_marks_a_creation_closed_in_its_read(cliente: ModuleType) -> None:
    """IN_CLOSE_WRITE joins the creation's mask of a file closed in the same read; one still open keeps its
    plain IN_CREATE (the emitter then adds a FileOpenedEvent: not hashed until its close)."""
    records = [(1, IN["create"], 0, b"a"), (1, IN["modify"], 0, b"a"), (1, IN["close"], 0, b"a")]
    records += [(1, IN["create"], 0, b"b"), (1, IN["modify"], 0, b"b")]
    records += [(1, IN["create"], 0, b"t"), (1, IN["attrib"], 0, b"t"), (1, IN["close"], 0, b"t")]
    assert cliente.fold_raw_writes(records) == [
        (1, IN["create"] | IN["close"], 0, b"a"),
        (1, IN["create"], 0, b"b"),
        (1, IN["modify"], 0, b"b"),
        (1, IN["create"] | IN["close"], 0, b"t"),
    ]


# ---------------------------------------------------------------------------
# 4. encode_event against json.dumps.
# ---------------------------------------------------------------------------


def reference_encode(cliente: ModuleType, seq: int, change: Any, ts: str, meta: Any) -> str:
    """encode_event as it was, through json.dumps (the keys in the protocol's order)."""
    path, path_b64 = cliente.wire_path(change.path)
    obj: dict[str, Any] = {"seq": seq, "event": change.kind, "path": path}
    if change.dest_path is not None:
        obj["dest_path"], dest_b64 = cliente.wire_path(change.dest_path)
        if dest_b64 is not None:
            obj["dest_path_b64"] = dest_b64
    if path_b64 is not None:
        obj["path_b64"] = path_b64
    obj["is_dir"] = change.is_dir
    obj["type"] = meta.type if meta is not None else change.file_type or ("dir" if change.is_dir else "file")
    if meta is not None and change.kind != "deleted":
        for key in ("size", "mtime", "mode"):
            if getattr(meta, key) is not None:
                obj[key] = getattr(meta, key)
        if meta.target_path is not None:
            obj["target_path"], target_b64 = cliente.wire_path(meta.target_path)
            if target_b64 is not None:
                obj["target_path_b64"] = target_b64
        if meta.sha256 is not None:
            obj["sha256"] = meta.sha256
    if change.attrib and change.kind == "modified":
        obj["attrib"] = True
    obj["ts"] = ts
    obj["origin"] = change.origin
    return json.dumps(obj, separators=(",", ":"))


# Hostile names: quotes, backslashes, control characters, DEL, U+2028/2029, astral characters, lone surrogates
# (undecodable bytes as watchdog hands them over: surrogateescape), and plain ASCII.
HOSTILE = st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", "é", "😀", "\udcff", "/"])
NAMES = st.lists(st.one_of(HOSTILE, st.characters(codec="utf-8"), st.characters(), st.text(max_size=3)), max_size=8)
PATHS = NAMES.map(lambda parts: "/w/" + "".join(parts))
RAW_PATHS = st.binary(max_size=12).map(lambda raw: os.fsdecode(b"/w/" + raw))  # any bytes, as watchdog decodes them
ANY_PATH = st.one_of(PATHS, RAW_PATHS)


@given(
    seq=st.integers(min_value=1, max_value=2**63),
    kind=st.sampled_from(["created", "modified", "deleted", "moved"]),
    path=ANY_PATH,
    dest=st.none() | ANY_PATH,
    is_dir=st.booleans(),
    attrib=st.booleans(),
    origin=st.sampled_from(["live", "rescan", "startup", "resync"]),
    file_type=st.none() | st.sampled_from(["file", "dir", "symlink", "other"]),
    meta=st.none()
    | st.tuples(
        st.sampled_from(["file", "dir", "symlink", "other"]),
        st.none() | st.integers(min_value=0, max_value=2**64),
        st.none() | st.text(max_size=30),
        st.none() | st.sampled_from(["0644", "0755", "7777", "0000"]),
        st.none() | ANY_PATH,
        st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    ),
    ts=st.text(max_size=30),
)
@example(
    seq=1, kind="moved", path="/w/\udc80\"\\\u2028", dest="/w/\x00é", is_dir=False, attrib=False, origin="live",
    file_type=None, meta=("symlink", 3, "2026-01-01T00:00:00.000000+00:00", "0777", "/\udcfe\n", None),
    ts="2026-01-01T00:00:00.000+00:00",
)  # fmt: skip
def test_encode_event_is_json_dumps_byte_for_byte(
    cliente: ModuleType,
    seq: int,
    kind: str,
    path: str,
    dest: str | None,
    is_dir: bool,
    attrib: bool,
    origin: str,
    file_type: str | None,
    meta: tuple[Any, ...] | None,
    ts: str,
) -> None:
    change = cliente.Change(
        kind, path, is_dir, dest if kind == "moved" else None, origin, attrib=attrib, file_type=file_type
    )
    metadata = cliente.Metadata(*meta) if meta is not None else None
    text = cliente.encode_event(seq, change, ts, metadata)
    assert text == reference_encode(cliente, seq, change, ts, metadata)
    assert text.isascii()
    decoded = json.loads(text)
    if "path_b64" in decoded:
        assert os.fsdecode(base64.b64decode(decoded["path_b64"])) == path


# ---------------------------------------------------------------------------
# 5. End to end, on both paths.
# ---------------------------------------------------------------------------

PATHS_E2E = {"batched": {}, "stock": {STOCK_ENV: "1"}}


@pytest.fixture(params=list(PATHS_E2E))
def watchdog_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The client's watchdog path: batched (the default) or stock (MONITOR_STOCK_WATCHDOG=1)."""
    for name, value in PATHS_E2E[request.param].items():
        monkeypatch.setenv(name, value)
    return str(request.param)


def start_pair(
    procs: Processes, watched: Path, path: str, args: list[str]
) -> tuple[ServerProcess, ClientProcess, StdoutEvents]:
    server = procs.server(json_output=True)
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["-v", *args])
    # The stock path says so once with -v; the batched one says nothing.
    if path == "stock":
        wait_until(lambda: any(FALLBACK_LINE in line for line in client.lines("stderr")), describe=client.describe)
    else:
        assert not any(FALLBACK_LINE in line for line in client.lines("stderr")), client.describe()
    return server, client, StdoutEvents(server)


@pytest.mark.parametrize("settle", [["--assentar", "0"], []], ids=["assentar-0", "assentar-padrao"])
@pytest.mark.timeout(180)
def test_burst_converges_on_both_paths(procs: Processes, watched: Path, watchdog_path: str, settle: list[str]) -> None:
    server, client, events = start_pair(procs, watched, watchdog_path, settle)
    burst = Burst(watched / "rajada", 5_000, per_dir=500)
    burst.run()
    if burst.error is not None:
        raise burst.error
    flat = [watched / f"solto_{index:04d}.dat" for index in range(2_000)]
    for path in flat:
        write_file(path)
    shown, tree = wait_converged(events, watched, timeout=120.0, context=procs.describe)
    assert len(tree) == 5_000 + 10 + 1 + 2_000
    assert_no_event_twice(shown)
    no_traceback(server, client)


@pytest.mark.timeout(120)
def test_everyday_workloads_converge_on_both_paths(
    procs: Processes, watched: Path, tmp_path: Path, watchdog_path: str
) -> None:
    """A tarball extracted, edits by rename-over, moves in, out and within, a tree removed: each converges."""
    server, client, events = start_pair(procs, watched, watchdog_path, ["--assentar", "0"])
    source = tmp_path / "fonte" / "projeto"
    make_tree(source, dirs=20, files_per_dir=20, depth=3)
    tarball = tmp_path / "projeto.tar"
    with tarfile.open(tarball, "w") as archive:
        archive.add(source, arcname="projeto")
    outside = tmp_path / "fora"
    make_tree(outside / "entrada", dirs=5, files_per_dir=10)
    texts = watched / "textos"

    def edits() -> None:
        texts.mkdir()
        for edit in range(100):
            path = texts / f"texto_{edit % 10}.txt"
            temporary = path.with_name(f".{path.name}.{edit}.tmp")
            write_file(temporary, f"versão {edit}\n".encode())
            os.replace(temporary, path)

    tar = shutil.which("tar")
    steps: list[Callable[[], object]] = [
        (
            functools.partial(subprocess.run, [tar, "-xf", str(tarball), "-C", str(watched)], check=True, timeout=60)
            if tar
            else functools.partial(tarfile.open(tarball).extractall, watched, filter="data")
        ),
        edits,
        functools.partial(os.rename, outside / "entrada", watched / "projeto" / "entrou"),
        functools.partial(os.rename, watched / "projeto" / "n000_0", tmp_path / "fora" / "saiu"),
        functools.partial(os.rename, watched / "projeto" / "n001_0", watched / "movido"),
        functools.partial(os.rename, tmp_path / "fora" / "saiu", watched / "movido" / "voltou"),
        functools.partial(shutil.rmtree, watched / "projeto"),
    ]
    for step in steps:
        step()
        shown, _ = wait_converged(events, watched, context=procs.describe)
    assert_no_event_twice(shown)
    no_traceback(server, client)


@pytest.mark.timeout(180)
def test_kernel_overflow_repaired_on_both_paths(procs: Processes, watched: Path, watchdog_path: str) -> None:
    """The client frozen (SIGSTOP) while 10,000 files (20,000 events) go into watched directories: the kernel's
    queue (16,384) overflows, watchdog's reader says so, and a rescan brings back what was dropped."""
    server, client, events = start_pair(procs, watched, watchdog_path, ["--assentar", "0"])
    for index in range(10):
        (watched / "rajada" / f"d{index:04d}").mkdir(parents=True)
    wait_converged(events, watched, context=procs.describe)
    burst = Burst(watched / "rajada", 10_000, per_dir=1_000)
    client.proc.send_signal(signal.SIGSTOP)
    try:
        burst.run()
    finally:
        client.proc.send_signal(signal.SIGCONT)
    if burst.error is not None:
        raise burst.error
    shown, tree = wait_converged(events, watched, timeout=150.0, context=procs.describe)
    assert len(tree) == 10_000 + 10 + 1
    assert any("a fila de eventos do kernel transbordou" in line for line in client.lines("stderr")), client.describe()
    assert_no_event_twice(shown)
    no_traceback(server, client)
