"""Benchmarks for issue 11: the idle consistency check's CPU and the degraded mode's cost and delay.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/limits.py                 # everything, 100,000 files in 1,100 directories
    .venv/bin/python tests/bench/limits.py --quick         # 10,000 files, short windows
    .venv/bin/python tests/bench/limits.py --only scan,idle,degraded --tmpdir /var/tmp --keep

What is measured (a markdown table on stdout, progress on stderr; everything on 127.0.0.1, in temporary
directories, every process started here stopped whatever happens; a script, not a pytest test):

1. ``scan``: in this process, on the tree (100 top directories x 10 subdirectories x 100 empty files): the client's
   own ``scan_tree`` (wall and CPU, median of 5), ``View.diff`` of two identical trees with modifications reported,
   a directory-mtime sweep (one ``lstat`` per directory, compared with the last), and reading
   ``/proc/self/fdinfo`` of an inotify instance watching every directory. Each as CPU % at the intervals the
   design proposes (sweep every 5 s, full check every 300 s) and at 60 / 30 s.
2. ``idle``: the real client on that tree, once connected and past its first checkpoint: its CPU % (utime + stime
   from /proc) over an idle window of 60 s (--quick: 15 s), and its RSS; then again with ``--verificacao 10``
   (an idle check every 10 s), from which the CPU of one idle check and its share at the default interval.
3. ``degraded``: the real client in a user namespace of its own whose inotify watch limit is half the tree's
   directories (never the machine's limit; see tests/limits_support.py): the warning's delay after start, then a
   probe file created in each of 20 directories chosen at random — the detection delay of each (p50 / max) —, the
   duration of the degraded mode's scans (the client's -v lines) and the client's CPU % over an idle window while
   degraded. Skipped with a reason when ``unshare -U`` is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from limits_support import limits_prefix, user_namespaces  # noqa: E402
from support import Processes, touch  # noqa: E402

ROOT = TESTS.parent
Row = tuple[str, str, str]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_monitor_cliente", ROOT / "monitor_cliente.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_tree(root: Path, tops: int, subs: int, files: int) -> list[str]:
    """tops x subs directories of ``files`` empty files each; every directory's path, root first."""
    directories = [str(root)]
    root.mkdir()
    for top in range(tops):
        top_dir = root / f"d{top:03}"
        top_dir.mkdir()
        directories.append(str(top_dir))
        for sub in range(subs):
            sub_dir = top_dir / f"s{sub:02}"
            sub_dir.mkdir()
            directories.append(str(sub_dir))
            for number in range(files):
                os.close(os.open(sub_dir / f"f{number:03}", os.O_CREAT | os.O_WRONLY, 0o644))
    return directories


def timed(function: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``runs`` calls."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


def percent(cpu: float, interval: float) -> str:
    return f"{cpu / interval * 100:.2f} %"


def inotify_fds(pid: str = "self") -> set[str]:
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:inotify":
                found.add(name)
    return found


def watched_inodes(pid: int) -> set[tuple[int, int]]:
    """(device, inode) of every directory process ``pid`` watches, from the kernel's list (fdinfo)."""
    found = set()
    for fd in inotify_fds(str(pid)):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as file:
            for line in file:
                if line.startswith("inotify wd:"):
                    fields = dict(field.split(":", 1) for field in line.split()[1:4])
                    sdev = int(fields["sdev"], 16)
                    found.add((os.makedev(sdev >> 20, sdev & 0xFFFFF), int(fields["ino"], 16)))
    return found


def unwatched(pid: int, directories: list[str]) -> list[str]:
    watched = watched_inodes(pid)
    out = []
    for path in directories:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) not in watched:
            out.append(path)
    return out


def bench_scan(tree: Path, directories: list[str], rows: list[Row]) -> None:
    client = load_client()
    found = client.scan_tree(str(tree), frozenset())
    assert found is not None
    disk, _ = found
    wall, cpu = timed(lambda: client.scan_tree(str(tree), frozenset()), 5)
    rows.append(("scan_tree (full)", f"{wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU", ""))
    view = client.View(str(tree))
    view.load_tree(disk)
    diff_wall, diff_cpu = timed(lambda: view.diff(disk, "rescan", report_modified=True), 3)
    rows.append(("View.diff, identical trees", f"{diff_wall * 1000:.0f} ms wall, {diff_cpu * 1000:.0f} ms CPU", ""))
    full = cpu + diff_cpu
    rows.append(
        (
            "full check (scan + diff)",
            f"{full * 1000:.0f} ms CPU",
            f"every 300 s: {percent(full, 300)}; 60 s: {percent(full, 60)}; 30 s: {percent(full, 30)}",
        )
    )
    mtimes = {path: os.lstat(path).st_mtime_ns for path in directories}

    def sweep() -> int:
        changed = 0
        for path, seen in mtimes.items():
            try:
                changed += os.lstat(path).st_mtime_ns != seen
            except OSError:
                changed += 1
        return changed

    sweep_wall, sweep_cpu = timed(sweep, 9)
    rows.append(
        (
            f"directory-mtime sweep ({len(directories)} lstat)",
            f"{sweep_wall * 1000:.1f} ms wall, {sweep_cpu * 1000:.1f} ms CPU",
            f"every 5 s: {percent(sweep_cpu, 5)}",
        )
    )
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    before = inotify_fds()
    observer = Observer()
    observer.schedule(FileSystemEventHandler(), str(tree), recursive=True)
    started = time.perf_counter()
    observer.start()
    start_wall = time.perf_counter() - started
    try:
        (fd,) = inotify_fds() - before

        def census() -> int:
            with open(f"/proc/self/fdinfo/{fd}", "rb") as file:
                return file.read().count(b"inotify wd:")

        census_wall, census_cpu = timed(census, 9)
        rows.append(
            (
                f"census: /proc/self/fdinfo ({census()} watches)",
                f"{census_wall * 1000:.2f} ms wall, {census_cpu * 1000:.2f} ms CPU",
                f"watchdog's start (all watches): {start_wall * 1000:.0f} ms",
            )
        )
    finally:
        observer.stop()
        observer.join()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_cpu(pid: int, window: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started) * 100


def bench_idle(tree: Path, work: Path, window: float, rows: list[Row], check: float | None = None) -> tuple[float, int]:
    """The client's CPU % over an idle window (with ``--verificacao check`` when given), and how many idle checks
    ran in it (its -v lines)."""
    procs = Processes(work / f"idle{check or ''}")
    try:
        server = procs.server()
        args = ["-v", *(["--verificacao", f"{check:g}"] if check else [])]
        client = procs.client(tree, server.uri, "bench", connected_to=server, args=args)
        probe = tree / f"sonda_idle{check or ''}.txt"
        touch(probe)
        server.wait_for_line(re.compile(re.escape(str(probe))), timeout=120)
        time.sleep(10)  # past the checkpoint that saves the state after the probe
        before = len([line for line in client.lines("stderr") if "varredura de verificação:" in line])
        usage = idle_cpu(client.proc.pid, window)
        checks = len([line for line in client.lines("stderr") if "varredura de verificação:" in line]) - before
        what = f"client idle, --verificacao {check:g}" if check else "client idle (real process, defaults)"
        note = f"RSS {rss_mb(client.proc.pid):.0f} MB; {checks} idle check(s) in the window"
        rows.append((what, f"{usage:.2f} % CPU over {window:g} s", note))
        return usage, checks
    finally:
        procs.cleanup()


def bench_idle_check(tree: Path, work: Path, window: float, rows: list[Row]) -> None:
    """One idle check's CPU, from the difference an idle check every 10 s makes, and its share every 300 s."""
    base, _ = bench_idle(tree, work, window, rows)
    checked, checks = bench_idle(tree, work, window, rows, check=10.0)
    per_check = max(0.0, checked - base) / 100 * window / max(checks, 1)
    rows.append(
        (
            "idle check (full scan + diff)",
            f"{per_check * 1000:.0f} ms CPU each",
            f"every 300 s (the default): {per_check / 300 * 100:.2f} % CPU",
        )
    )


def bench_degraded(tree: Path, directories: list[str], work: Path, window: float, rows: list[Row]) -> None:
    reason = user_namespaces()
    if reason:
        rows.append(("degraded mode", "unavailable", reason))
        return
    procs = Processes(work / "degraded")
    try:
        server = procs.server()
        budget = len(directories) // 2
        started = time.monotonic()
        client = procs.client(
            tree, server.uri, "bench", connected_to=server, args=["-v"], command_prefix=limits_prefix(budget)
        )
        try:
            client.wait_for_line(re.compile("limite de inotify atingido"), "stderr", timeout=60)
            rows.append(("degraded: warning after start", f"{time.monotonic() - started:.1f} s", f"budget {budget}"))
        except AssertionError:
            rows.append(("degraded: warning after start", "never (60 s)", f"budget {budget}"))
        uncovered = unwatched(client.proc.pid, directories)
        rows.append(("degraded: directories without a watch", f"{len(uncovered)} of {len(directories)}", "fdinfo"))
        # Probes at random phases of the scan interval: 4 rounds of 5, each after a random pause.
        rng = random.Random(11)
        delays: list[float] = []
        for round_number in range(4):
            time.sleep(rng.uniform(0, 30))
            chosen = rng.sample(uncovered, min(5, len(uncovered)))
            probes = [Path(d) / f"sonda{round_number}.txt" for d in chosen]
            created = time.monotonic()
            for probe in probes:
                touch(probe)
            seen: dict[Path, float] = {}
            while len(seen) < len(probes) and time.monotonic() < created + 90:
                output = "\n".join(server.lines())
                for probe in probes:
                    if probe not in seen and str(probe) in output:
                        seen[probe] = time.monotonic() - created
                time.sleep(0.05)
            delays += [seen.get(probe, float("inf")) for probe in probes]
        delays = delays or [float("nan")]
        shown = f"p50 {statistics.median(delays):.2f} s, max {max(delays):.2f} s"
        rows.append(
            (
                "degraded: detection delay (20 probes, 4 rounds at random phases)",
                shown,
                f"{sum(d == float('inf') for d in delays)} never",
            )
        )
        usage = idle_cpu(client.proc.pid, window)
        rows.append(("degraded: client idle", f"{usage:.2f} % CPU over {window:g} s", ""))
        scans = [
            float(match.group(1))
            for line in client.lines("stderr")
            if (match := re.search(r"varredura do modo degradado: \d+ mudança\(s\), (\d+) ms", line))
        ]
        if scans:
            interval = re.search(r"uma varredura a cada ([\d,]+) s", "\n".join(client.lines("stderr")))
            rows.append(
                (
                    "degraded: one scan of the unwatched part",
                    f"median {statistics.median(scans):.0f} ms, max {max(scans):.0f} ms ({len(scans)} scans)",
                    f"interval announced: {interval.group(1) if interval else '?'} s",
                )
            )
    finally:
        procs.cleanup()


@contextlib.contextmanager
def workspace(tmpdir: str | None, keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="bench_limits_", dir=tmpdir))
    try:
        yield work
    finally:
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="scan,idle,degraded")
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    tops, files, window = (10, 100, 15.0) if args.quick else (100, 100, 60.0)
    rows: list[Row] = []
    with workspace(args.tmpdir, args.keep) as work:
        tree = work / "arvore"
        log(f"making {tops * 10 * files:,} files in {tops * 11 + 1} directories...")
        directories = make_tree(tree, tops, 10, files)
        try:  # the figures measured so far are printed even if a later part fails
            if "scan" in only:
                bench_scan(tree, directories, rows)
            if "idle" in only:
                bench_idle_check(tree, work, window, rows)
            if "degraded" in only:
                bench_degraded(tree, directories, work, window, rows)
        finally:
            print(f"| measure ({tops * 10 * files:,} files, {len(directories):,} directories) | figure | note |")
            print("|---|---|---|")
            for name, figure, note in rows:
                print(f"| {name} | {figure} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
