"""Benchmark of the server's CPU per event in a burst (issue 12, item 4): one command, one markdown table.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/server.py                          # 10k and 100k events, 3 runs each
    .venv/bin/python tests/bench/server.py --events 10000 --runs 5
    .venv/bin/python tests/bench/server.py --compare /tmp/servidor_old.py   # old and new, alternated per run

What is measured, everything on 127.0.0.1 and in a temporary folder: a real ``servidor.py`` (stdout to a file) and,
in this process, a protocol 3 client that sends N ``created`` events shaped like the real client's
(``encode_event``: compact ASCII JSON, a distinct path, size and mtime per file, ``ts`` advancing 1 ms every 10
events) in batches of 1,000 (BATCH_MAX_EVENTS), up to 20,000 unacknowledged (MAX_IN_FLIGHT), as monitor_cliente.py
does in a burst. The batches are encoded before the clock starts. The figure is the server's utime + stime
(/proc/PID/stat: every thread) from the first batch sent until the last ack arrived and stdout holds every line,
divided by N: its cost per event, whatever the machine's other load (the sender shares the cores).

Configurations: ``--json`` (no --banco: the printed line is the record, acks wait for it), ``--banco --json``
(a fresh SQLite file; stdout mirrors it) and ``--banco`` (readable lines). Each run checks that nothing was lost:
N lines printed, and with --banco N rows stored.
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
import time
import uuid
from pathlib import Path

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "servidor.py"
LOOPBACK = "127.0.0.1"
ROOT = "/home/bench/w"
BATCH = 1000  # monitor_cliente.BATCH_MAX_EVENTS
IN_FLIGHT = 20_000  # monitor_cliente.MAX_IN_FLIGHT
_LISTENING = re.compile(rb"ouvindo em ws://127\.0\.0\.1:(\d+)")
_OMITTED = re.compile(rb"(\d+) linhas omitidas no console")
CONFIGS = {"json": ["--json"], "banco-json": ["--banco", "{db}", "--json"], "banco": ["--banco", "{db}"]}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def encode_event(seq: int) -> str:
    """What monitor_cliente.encode_event writes for a new 1 KiB file (key order and format included)."""
    ms = seq // 10
    ts = f"2026-11-29T14:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}+00:00"
    mtime = f"2026-11-29T14:23:{seq // 1_000_000 % 60:02d}.{seq % 1_000_000:06d}+00:00"
    obj = {"seq": seq, "event": "created", "path": f"{ROOT}/dir{seq // 1000:03d}/arquivo-{seq:07d}.txt",
           "is_dir": False, "type": "file", "size": 1000 + seq % 97, "mtime": mtime, "mode": "0644", "ts": ts,
           "origin": "live"}  # fmt: skip
    return json.dumps(obj, separators=(",", ":"))


def batches(count: int) -> list[tuple[int, str]]:
    """(last seq, message) per batch of BATCH events, as monitor_cliente.encode_batch joins them."""
    out = []
    for first in range(1, count + 1, BATCH):
        last = min(count, first + BATCH - 1)
        out.append((last, '{"type":"events","events":[' + ",".join(map(encode_event, range(first, last + 1))) + "]}"))
    return out


async def send_all(uri: str, messages: list[tuple[int, str]], pid: int) -> float:
    """Hello, then every batch with at most IN_FLIGHT events unacknowledged, until the last ack; the server's
    CPU seconds when the first batch went."""
    async with connect(uri, max_size=None) as ws:
        hello = {"type": "hello", "version": 3, "client_id": uuid.uuid4().hex, "name": "bench", "root": ROOT}
        await ws.send(json.dumps(hello | {"secret": secrets.token_hex(16)}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        last = messages[-1][0]
        acked = 0
        progress = asyncio.Event()

        async def reader() -> None:
            nonlocal acked
            while acked < last:
                answer = json.loads(await ws.recv())
                assert answer["type"] == "ack", answer
                acked = answer["seq"]
                progress.set()

        started = cpu_seconds(pid)
        task = asyncio.create_task(reader())
        for seq, message in messages:
            while seq - acked > IN_FLIGHT:
                progress.clear()
                await progress.wait()
            await ws.send(message)
        await task
        return started


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def shown(folder: Path) -> int:
    """Lines printed, plus those the server said it omitted (with --banco a console that lags drops its mirror)."""
    omitted = sum(map(int, _OMITTED.findall((folder / "stderr.txt").read_bytes())))
    return count_lines(folder / "stdout.txt") + omitted


def run(script: Path, config: str, messages: list[tuple[int, str]]) -> float:
    """Server CPU microseconds per event for one run; SystemExit if anything was lost."""
    count = messages[-1][0]
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        folder = Path(tmp)
        db = folder / "e.db"
        args = [arg.format(db=db) for arg in CONFIGS[config]]
        out = (folder / "stdout.txt").open("wb")
        err = (folder / "stderr.txt").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(script), "--host", LOOPBACK, "--port", "0", *args], stdout=out, stderr=err
        )
        try:
            deadline = time.monotonic() + 30
            while not (found := _LISTENING.search((folder / "stderr.txt").read_bytes())):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("o servidor não ficou pronto")
                time.sleep(0.02)
            started = asyncio.run(send_all(f"ws://{LOOPBACK}:{int(found.group(1))}", messages, proc.pid))
            deadline = time.monotonic() + 60  # with --banco stdout mirrors the record: lines may still be on their way
            while shown(folder) < count and time.monotonic() < deadline:
                time.sleep(0.01)
            cpu = cpu_seconds(proc.pid) - started
        finally:
            proc.terminate()
            proc.wait(30)
            out.close()
            err.close()
        printed = shown(folder)
        if printed != count or ("--banco" not in args and count_lines(folder / "stdout.txt") != count):
            raise SystemExit(f"{config}: {printed} linhas impressas ou omitidas de {count} eventos")
        if "--banco" in args:
            with sqlite3.connect(db) as conn:
                (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()
            if stored != count:
                raise SystemExit(f"{config}: {stored} eventos no banco de {count}")
    return cpu / count * 1e6


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="10000,100000", help="events per burst, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--compare", type=Path, help="another servidor.py, run alternately with this one")
    args = parser.parse_args()
    scripts = {"antes": args.compare, "depois": SERVER} if args.compare else {"atual": SERVER}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    rows = []
    for count in map(int, args.events.split(",")):
        messages = batches(count)
        for config in args.configs.split(","):
            figures: dict[str, list[float]] = {name: [] for name in scripts}
            for index in range(args.runs):
                for name, script in scripts.items():
                    figures[name].append(run(script, config, messages))
                    print(f"{count} {config} {name} run {index + 1}: {figures[name][-1]:.1f} µs", file=sys.stderr)
            rows.append((count, config, {name: spread(values) for name, values in figures.items()}))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    print("| events | configuration | " + " | ".join(f"{name}: µs/event, median (min–max)" for name in scripts) + " |")
    print("|---:|---|" + "---:|" * len(scripts))
    for count, config, cells in rows:
        flags = " ".join(CONFIGS[config]).replace(" {db}", "")
        print(f"| {count:,} | `{flags}` | " + " | ".join(cells.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
