"""Benchmarks of the live page (issue 15): one command, one markdown table.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/page.py            # 3 runs per figure (~2 minutes)
    .venv/bin/python tests/bench/page.py --runs 1
    .venv/bin/python tests/bench/page.py --ingest --compare /tmp/servidor_antigo.py   # only 1.'s ingest, alternated

What is measured (each figure: min / median / max over the runs), everything on 127.0.0.1, in temporary folders:

1. ``files``: the issue's figure: a 10,000-file burst written (1 KiB each, by this process) in a folder that a real
   monitor_cliente.py watches, through ``servidor.py --banco``, until the database has a ``created`` event for
   every file; files/s with no page and with 10 pages reading (raw /ao-vivo clients in a separate process, reading
   everything). The drop is 1 - with/without; the issue's bar is <= 10 %. ``ingest``: the server's own ingest
   path, without the client and watchdog in front of it (a harsher figure): a protocol 3 client in this process
   sends 10,000 created events (batches of 500, each waiting for its ack) to ``servidor.py --banco`` (fresh
   file); events/s from the first batch to the last ack, without and with the 10 pages, whose own count of events
   received is checked.
   The server's CPU time per event (utime + stime) separates its own cost from the machine's: the pages' process
   and the sender share the same cores.
2. ``latency``: Debian's chromium (Playwright) shows the real page; the client sends one event every 10 ms
   (100 events/s, 500 events); per event, the page's Date.now() when its row entered the DOM (a MutationObserver
   installed before the page's script) minus the wall-clock time just before the client sent it: an upper bound
   of "arrival at the server -> DOM" (it also holds the server's commit). p50 / p99; the bar is p99 <= 100 ms.
3. ``memory``: the server's VmRSS with no page, then with 30 idle pages open (each got its state of 200 events
   with long paths): (difference) / 30 = memory per page. Then the same 30 pages never read while a 20,000-event
   burst goes through: VmHWM growth / 30 = the bounded backlog per stalled page (VIEWER_BACKLOG_BYTES).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "servidor.py"
CLIENT = REPO / "monitor_cliente.py"
LOOPBACK = "127.0.0.1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = "/home/bench/w"
_LISTENING = re.compile(rb"ouvindo em ws://127\.0\.0\.1:(\d+)")


def start_server(folder: Path, *args: str, script: Path = SERVER) -> tuple[subprocess.Popen[bytes], int]:
    log = open(folder / "stderr.txt", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, str(script), "--host", LOOPBACK, "--port", "0", "--banco", str(folder / "e.db"), *args],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _LISTENING.search((folder / "stderr.txt").read_bytes())
        if found:
            return proc, int(found.group(1))
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("o servidor não ficou pronto")


def status_kb(pid: int, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match is not None
    return int(match.group(1))


def event(seq: int, path: str) -> dict[str, Any]:
    return {"seq": seq, "event": "created", "path": path, "is_dir": False, "type": "file", "size": 1024,
            "mtime": "2026-11-29T14:23:50.000001+00:00", "mode": "0644", "ts": "2026-11-29T14:23:51.123+00:00",
            "origin": "live"}  # fmt: skip


async def hello(uri: str) -> ClientConnection:
    ws = await connect(uri, max_size=None)
    message = {"type": "hello", "version": 3, "client_id": uuid.uuid4().hex, "name": "bench", "root": ROOT}
    await ws.send(json.dumps(message | {"secret": secrets.token_hex(16)}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def burst(uri: str, count: int, batch: int = 500, path: str = ROOT + "/f{}") -> float:
    """Send ``count`` events; seconds from the first batch to the last ack."""
    ws = await hello(uri)
    started = time.perf_counter()
    for first in range(1, count + 1, batch):
        seqs = range(first, min(count, first + batch - 1) + 1)
        await ws.send(json.dumps({"type": "events", "events": [event(n, path.format(n)) for n in seqs]}))
        assert json.loads(await ws.recv()) == {"type": "ack", "seq": seqs[-1]}
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed


# -- pages in another process (so they never share this process's CPU with the sender) ------------------------------


async def pages_main(uri: str, count: int, read: bool) -> None:
    """Open ``count`` pages; say "ready"; read everything (or nothing) until stdin closes; print events seen."""
    pages = [await connect(uri + "/ao-vivo", max_size=None, max_queue=None if read else 1) for _ in range(count)]
    for ws in pages:
        assert json.loads(await ws.recv())["type"] == "state"
    seen = [0] * count

    async def reader(index: int, ws: ClientConnection) -> None:
        async for text in ws:
            if isinstance(text, str) and text.startswith('{"type": "events"'):
                seen[index] += text.count('"client_id": ')  # cheap: the pages' CPU is not the server's

    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(pages)] if read else []
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    print(json.dumps(seen), flush=True)


class Pages:
    def __init__(self, uri: str, count: int, read: bool = True) -> None:
        args = [sys.executable, __file__, "_pages", uri, str(count), "1" if read else "0"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == b"ready"

    def close(self) -> list[int]:
        out, _ = self.proc.communicate(b"", timeout=60)
        seen: list[int] = json.loads(out.decode().strip().splitlines()[-1])
        return seen


# -- the figures -------------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_run(viewers: int, script: Path = SERVER) -> tuple[float, float]:
    """(events/s, the server's CPU µs per event) for a 10k burst with ``viewers`` pages reading."""
    with tempfile.TemporaryDirectory() as folder:
        proc, port = start_server(Path(folder), script=script)
        uri = f"ws://{LOOPBACK}:{port}"
        try:
            pages = Pages(uri, viewers) if viewers else None
            cpu = cpu_seconds(proc.pid)
            elapsed = asyncio.run(burst(uri, 10_000))
            cpu = cpu_seconds(proc.pid) - cpu
            if pages is not None:
                time.sleep(1)
                seen = pages.close()
                assert all(n == 10_000 for n in seen), seen
        finally:
            proc.terminate()
            proc.wait(30)
    return 10_000 / elapsed, cpu / 10_000 * 1e6


def files_run(viewers: int, count: int = 10_000) -> tuple[float, float]:
    """Files/s of a real burst: ``count`` files of 1 KiB written in a watched folder, through monitor_cliente.py,
    until the server's database holds an event for each (polled every 20 ms), with ``viewers`` pages reading."""
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        watch = base / "w"
        watch.mkdir()
        proc, port = start_server(base)
        uri = f"ws://{LOOPBACK}:{port}"
        argv = [sys.executable, str(CLIENT), str(watch), "--servidor", uri, "--nome", "bench", "-q"]
        client = subprocess.Popen([*argv, "--estado", str(base / "st.json")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        pages: Pages | None = None
        try:
            deadline = time.monotonic() + 30
            while b"cliente conectado" not in (base / "stderr.txt").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.02)
            pages = Pages(uri, viewers) if viewers else None
            database = sqlite3.connect(f"file:{base / 'e.db'}?mode=ro", uri=True)
            started, cpu = time.perf_counter(), cpu_seconds(proc.pid)
            data = b"x" * 1024
            for n in range(count):
                with open(watch / f"f{n}", "wb") as out:
                    out.write(data)
            sql = "SELECT count(DISTINCT path) FROM events WHERE event = 'created'"
            while database.execute(sql).fetchone()[0] < count:
                if time.perf_counter() - started > 300:
                    raise SystemExit("a rajada não convergiu em 300 s")
                time.sleep(0.02)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(proc.pid) - cpu
            database.close()
        finally:
            if pages is not None:
                pages.close()
            client.terminate()
            client.wait(30)
            proc.terminate()
            proc.wait(30)
    return count / elapsed, cpu / count * 1e6


LATENCY_OBSERVER = """
window.__rows = [];
new MutationObserver((changes) => {
  const now = Date.now();
  for (const change of changes) for (const node of change.addedNodes) {
    if (node.nodeName === "LI") window.__rows.push([node.textContent, now]);
  }
}).observe(document, { childList: true, subtree: true });
"""


def latency_run() -> list[float]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        proc, port = start_server(Path(folder))
        uri = f"ws://{LOOPBACK}:{port}"
        sent: dict[int, float] = {}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page()
                page.add_init_script(LATENCY_OBSERVER)
                page.goto(f"http://{LOOPBACK}:{port}/")
                page.wait_for_selector("#conexao.conectado")

                async def paced() -> None:
                    ws = await hello(uri)
                    start = time.perf_counter()
                    for n in range(1, 501):
                        await asyncio.sleep(max(0.0, start + n * 0.01 - time.perf_counter()))
                        sent[n] = time.time() * 1000
                        await ws.send(json.dumps({"type": "events", "events": [event(n, f"{ROOT}/lat-{n}.x")]}))
                        await ws.recv()
                    await ws.close()

                sender = threading.Thread(target=asyncio.run, args=(paced(),))  # Playwright's loop runs here
                sender.start()
                while sender.is_alive():
                    page.wait_for_timeout(100)  # the browser keeps working while the events come
                page.wait_for_function("window.__rows.filter(r => r[0].includes('lat-500.x')).length > 0")
                rows = page.evaluate("window.__rows")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
    shown: dict[int, float] = {}
    for text, when in rows:
        match = re.search(r"lat-(\d+)\.x", text)
        if match and int(match.group(1)) not in shown:
            shown[int(match.group(1))] = when
    return [shown[n] - sent[n] for n in sent if n in shown]


def memory_run() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        proc, port = start_server(Path(folder))
        uri = f"ws://{LOOPBACK}:{port}"
        try:
            asyncio.run(burst(uri, 200, path=ROOT + "/" + "d" * 1000 + "/{}"))  # a heavy state: 200 long paths
            time.sleep(0.5)
            before = status_kb(proc.pid, "VmRSS")
            idle = Pages(uri, 30)
            time.sleep(1)
            per_page = (status_kb(proc.pid, "VmRSS") - before) / 30
            idle.close()
            time.sleep(0.5)
            peak_before = status_kb(proc.pid, "VmHWM")
            stalled = Pages(uri, 30, read=False)
            asyncio.run(burst(uri, 20_000, path=ROOT + "/" + "e" * 500 + "/{}"))
            per_stalled = (status_kb(proc.pid, "VmHWM") - peak_before) / 30
            stalled.proc.kill()
            stalled.proc.wait()
        finally:
            proc.terminate()
            proc.wait(30)
    return per_page, per_stalled


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))) + f" {unit}"


def ingest_only(runs: int, other: Path | None) -> int:
    """The server's CPU per event of the ingest figure, without and with 10 pages (old and new, alternated)."""
    scripts = {"antes": other, "depois": SERVER} if other else {"atual": SERVER}
    cpu: dict[tuple[str, int], list[float]] = {(name, pages): [] for name in scripts for pages in (0, 10)}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    for _ in range(runs):
        for pages in (0, 10):
            for name, script in scripts.items():
                cpu[name, pages].append(ingest_run(pages, script)[1])
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    print("| ingest, 10k events, `--banco`: server CPU per event | " + " | ".join(scripts) + " |")
    print("|---|" + "---:|" * len(scripts))
    for pages in (0, 10):
        cells = " | ".join(spread(cpu[name, pages], "µs", 1) for name in scripts)
        print(f"| {'no page' if not pages else f'{pages} pages reading'} | {cells} |")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_pages":
        asyncio.run(pages_main(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ingest", action="store_true", help="only the ingest figures (server CPU per event)")
    parser.add_argument("--compare", type=Path, help="with --ingest: another servidor.py, run alternately")
    args = parser.parse_args()
    runs = args.runs
    if args.ingest:
        return ingest_only(runs, args.compare)
    files = [(files_run(0), files_run(10)) for _ in range(runs)]
    ingest = [(ingest_run(0), ingest_run(10)) for _ in range(runs)]
    alone, watched = [a[0] for a, _ in ingest], [w[0] for _, w in ingest]
    drop = [1 - w / a for a, w in zip(alone, watched, strict=True)]
    p50s, p99s = [], []
    for _ in range(runs):
        latencies = sorted(latency_run())
        p50s.append(statistics.median(latencies))
        p99s.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])
    memory = [memory_run() for _ in range(runs)]
    print("| figure | min / median / max |")
    print("|---|---|")
    files_drop = [100 * (1 - w[0] / a[0]) for a, w in files]
    print(f"| 10k-file burst through monitor_cliente.py, no page | {spread([a[0] for a, _ in files], 'files/s')} |")
    print(f"| 10k-file burst, 10 pages reading | {spread([w[0] for _, w in files], 'files/s')} |")
    print(f"| 10k-file burst: throughput drop with 10 pages (bar <= 10 %) | {spread(files_drop, '%', 1)} |")
    print(f"| 10k-file burst: server CPU per file, no page | {spread([a[1] for a, _ in files], 'µs', 1)} |")
    print(f"| 10k-file burst: server CPU per file, 10 pages | {spread([w[1] for _, w in files], 'µs', 1)} |")
    print(f"| ingest, 10k events, no page | {spread(alone, 'ev/s')} |")
    print(f"| ingest, 10k events, 10 pages reading | {spread(watched, 'ev/s')} |")
    print(f"| throughput drop with 10 pages (bar <= 10 %) | {spread([d * 100 for d in drop], '%', 1)} |")
    print(f"| server CPU per event, no page | {spread([a[1] for a, _ in ingest], 'µs', 1)} |")
    print(f"| server CPU per event, 10 pages reading | {spread([w[1] for _, w in ingest], 'µs', 1)} |")
    print(f"| event -> DOM at 100 ev/s, p50 | {spread(p50s, 'ms', 1)} |")
    print(f"| event -> DOM at 100 ev/s, p99 (bar <= 100 ms) | {spread(p99s, 'ms', 1)} |")
    print(f"| server memory per idle page (state of 200 long paths) | {spread([m[0] for m in memory], 'kB')} |")
    print(f"| server peak growth per stalled page, 20k burst | {spread([m[1] for m in memory], 'kB')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
