"""Benchmarks of the server's record (SQLite): start-up on a large database, size, digest and resync cost.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/record.py                 # 10M stored events, 1M-entry digest (~5 minutes)
    .venv/bin/python tests/bench/record.py --events 1000000 --quick

What is measured (one run each; everything on 127.0.0.1 and in a temporary directory):

1. ``start-up``: a database with N events (1,000 clients; paths like ``/bench/c0042/sub/f0001234.txt``)
   written directly with sqlite3 through servidor.py's own schema; then ``servidor.py --banco`` is started
   on it: time from spawn to "ouvindo em", then to a hello's welcome (the ack comes from the clients table);
   the server's peak RSS (VmHWM). The same on an empty database, for comparison.
2. ``size``: the database file (after a checkpoint) divided by the number of events, per million events.
3. ``digest``: the server's digest of one client's tree of 100,000 and 1,000,000 entries (the SQL sum the
   server runs for each ``digest`` message), and the client side: ``Digest.of`` over the same entries
   (a full recount; the incremental update is one ``entry_hash`` per change, also timed).
4. ``client_digest``: the real client's View (monitor_cliente.py) on a tree of 100,000 and 1,000,000 files
   (100 directories), best of 3: View.apply per creation (digest included), the digest's own part of it
   (``View._hold``: one ``entry_hash``, and a set insertion when a start-up scan was never sent), the full
   recount (``View.held_entries``, what a manifest walks), encoding the whole manifest (``encode_manifest``:
   time and bytes), and deleting a 1/100 subtree (every path in it hashed again).
5. ``resync``: a client with 100,000 entries sends its manifest (batches of 1,000) to a real server that has
   (a) none of them (100,000 differences printed) and (b) the same tree but 100 entries (100 differences):
   time from ``manifest_begin`` to ``verified``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = ROOT / "servidor.py"
CLIENT_SCRIPT = ROOT / "monitor_cliente.py"
LISTENING = re.compile(r"ouvindo em ws://127\.0\.0\.1:(\d+)")
TS = "2026-11-25T17:03:31.118+00:00"


def load_server(script: Path = SERVER_SCRIPT) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def generate(servidor: ModuleType, path: Path, events: int, clients: int = 1000) -> float:
    """A database of ``events`` events over ``clients`` clients, made by SQLite itself; seconds taken."""
    started = time.perf_counter()
    servidor.open_database(str(path)).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO clients (client_id, name, root, protocol, first_seen, last_seen, last_seq)"
        " VALUES (?, ?, ?, 1, ?, ?, ?)",
        [(f"{n:032x}", f"maquina-{n}", f"/bench/c{n:04d}", TS, TS, events // clients) for n in range(clients)],
    )
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)"
        " INSERT INTO events (client, seq, event, path, is_dir, ts, origin, stored_at)"
        " SELECT i % ?1 + 1, i / ?1 + 1, 'created',"
        " printf('/bench/c%04d/sub/f%07d.txt', i % ?1, i / ?1), 0, ?2, 'live', 1790000000 + i / 1000 FROM n",
        (clients, TS, events - 1),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def hello_welcome(port: int, client_id: str) -> dict[str, Any]:
    async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 2, "client_id": client_id, "name": "b", "root": "/b"}))
        answer = json.loads(await ws.recv())
        assert isinstance(answer, dict)
        return answer


def spawn_server(database: Path, stdout: IO[str] | int) -> tuple[subprocess.Popen[str], int]:
    """servidor.py --json --banco DATABASE on a free port of 127.0.0.1, once it listens; (process, port)."""
    argv = [sys.executable, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", "0", "--json", "--banco"]
    proc = subprocess.Popen([*argv, str(database)], stdout=stdout, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = LISTENING.search(line)
        if match:
            return proc, int(match.group(1))
    proc.wait(30)
    raise RuntimeError("the server did not start")


def start_up(database: Path, client_id: str) -> dict[str, float]:
    started = time.perf_counter()
    proc, port = spawn_server(database, subprocess.DEVNULL)
    try:
        listening = time.perf_counter() - started
        welcome = asyncio.run(hello_welcome(port, client_id))
        return {
            "listening_s": listening,
            "welcome_s": time.perf_counter() - started,
            "welcome_ack": welcome["ack"],
            "rss_peak_mb": peak_rss_mb(proc.pid),
        }
    finally:
        proc.terminate()
        proc.wait(30)


def bench_start_up(servidor: ModuleType, base: Path, events: int) -> dict[str, Any]:
    empty = base / "vazio.db"
    servidor.open_database(str(empty)).close()
    log("start-up on an empty database")
    results: dict[str, Any] = {"empty": start_up(empty, f"{1:032x}")}
    big = base / "grande.db"
    log(f"generating {events:,} events")
    results["generate_s"] = generate(servidor, big, events)
    size = big.stat().st_size
    results["db_bytes"] = size
    results["mb_per_million_events"] = size / 1e6 / (events / 1e6)
    log(f"start-up on {events:,} events ({size / 1e6:,.0f} MB)")
    results["big"] = start_up(big, f"{42:032x}")
    return results


def bench_digest(servidor: ModuleType, base: Path, sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sizes:
        path = base / f"arvore-{size}.db"
        conn = servidor.open_database(str(path))
        record = servidor.Record(conn)
        hello = servidor.Hello("d" * 32, "d", "/d", 2)
        now = datetime.datetime.now(datetime.UTC)
        entries = [(f"/d/sub{n % 100:03d}/f{n:07d}.txt".encode(), False) for n in range(size)]
        conn.execute("BEGIN")
        key, _ = record.register(hello, now)
        for start in range(0, size, 10_000):
            record.tree.stage(key, entries[start : start + 10_000])
        record.tree.replace(key)
        conn.execute("COMMIT")
        started = time.perf_counter()
        server_digest = record.tree.digest(key)
        server_s = time.perf_counter() - started
        started = time.perf_counter()
        client_digest = servidor.Digest.of(entries)
        client_s = time.perf_counter() - started
        assert server_digest == client_digest
        started = time.perf_counter()
        for entry_path, is_dir in entries[:100_000]:
            servidor.entry_hash(entry_path, is_dir)
        per_change_us = (time.perf_counter() - started) / min(size, 100_000) * 1e6
        conn.close()
        out[str(size)] = {"server_s": server_s, "client_full_s": client_s, "client_per_change_us": per_change_us}
        log(f"digest {size:,}: server {server_s:.3f} s, client {client_s:.3f} s, {per_change_us:.2f} µs/change")
    return out


def keep_best(best: dict[str, float], name: str, value: float) -> None:
    best[name] = min(best.get(name, value), value)


def bench_client_digest(cliente: ModuleType, sizes: list[int], runs: int = 3) -> dict[str, Any]:
    """The client's side of the digest, on the real View (see the module docstring, part 4); the best of ``runs``."""
    out: dict[str, Any] = {}
    for size in sizes:
        changes = [cliente.Change("created", f"/d/sub{n:03d}", True) for n in range(100)]
        changes += [cliente.Change("created", f"/d/sub{n % 100:03d}/f{n:07d}.txt", False) for n in range(size)]
        best: dict[str, float] = {}
        keep = functools.partial(keep_best, best)
        for _ in range(runs):
            view = cliente.View("/d")
            started = time.perf_counter()
            for change in changes:
                view.apply(change)
            keep("apply_us_per_change", (time.perf_counter() - started) / len(changes) * 1e6)
            for held in (None, set[int]()):  # the server holds every entry / a start-up scan was never sent
                alone = cliente.View("/d")
                alone._held = held
                started = time.perf_counter()
                for change in changes:
                    alone._hold(change.path, change.is_dir)  # the digest's own work in each apply
                name = "digest_us_per_change" if held is None else "digest_us_per_change_after_scan"
                keep(name, (time.perf_counter() - started) / len(changes) * 1e6)
            started = time.perf_counter()
            count = sum(1 for _ in view.held_entries())
            keep("recount_s", time.perf_counter() - started)
            assert count == len(changes) and view.digest()[0] == count
            started = time.perf_counter()
            messages, _, _ = cliente.encode_manifest(0, view.held_entries())
            keep("manifest_s", time.perf_counter() - started)
            best["manifest_mb"] = sum(len(message) for message in messages) / 1e6
            started = time.perf_counter()
            view.apply(cliente.Change("deleted", "/d/sub042", True))
            keep("delete_subtree_ms", (time.perf_counter() - started) * 1e3)
        best["subtree_entries"] = size // 100 + 1
        out[str(size)] = best
        log(f"client digest {size:,}: " + ", ".join(f"{key} {value:.3g}" for key, value in best.items()))
    return out


async def send_manifest(port: int, client_id: str, paths: list[str], servidor: ModuleType) -> float:
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        hello = {"type": "hello", "version": 2, "client_id": client_id, "name": "r", "root": "/r"}
        await ws.send(json.dumps(hello))
        seq = json.loads(await ws.recv())["ack"]
        digest = servidor.Digest.of((path.encode(), False) for path in paths)
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "manifest_begin", "seq": seq}))
        for start in range(0, len(paths), 1000):
            entries = [{"path": path, "is_dir": False} for path in paths[start : start + 1000]]
            await ws.send(json.dumps({"type": "manifest", "entries": entries}))
        await ws.send(json.dumps({"type": "manifest_end", "count": digest.count, "sum": f"{digest.sum:016x}"}))
        answer = json.loads(await ws.recv())
        elapsed = time.perf_counter() - started
        assert answer["type"] == "verified" and answer["count"] == len(paths), answer
        return elapsed


def bench_resync(servidor: ModuleType, base: Path, size: int) -> dict[str, Any]:
    out = (base / "resync.jsonl").open("w")
    proc, port = spawn_server(base / "resync.db", out)
    try:
        client_id = uuid.uuid4().hex
        paths = [f"/r/sub{n % 100:03d}/f{n:07d}.txt" for n in range(size)]
        all_new = asyncio.run(send_manifest(port, client_id, paths, servidor))
        log(f"resync of {size:,} entries, all new: {all_new:.2f} s")
        changed = paths[100:] + [f"/r/outro/f{n}.txt" for n in range(100)]
        hundred = asyncio.run(send_manifest(port, client_id, changed, servidor))
        log(f"resync of {size:,} entries, 200 differences: {hundred:.2f} s")
        return {"all_new_s": all_new, "200_differences_s": hundred, "server_rss_peak_mb": peak_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()


PARTS = ["start_up", "digest", "client_digest", "resync"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of the server's record (see the docstring).")
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the start-up database")
    parser.add_argument("--quick", action="store_true", help="digest of 100k only, resync of 10k")
    parser.add_argument("--tmpdir", default=None, help="where the databases go")
    parser.add_argument("--json-out", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    args = parser.parse_args(argv)
    parts = args.only or PARTS
    servidor = load_server()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-banco-", dir=args.tmpdir) as tmp:
        base = Path(tmp)
        if "start_up" in parts:
            figures["start_up"] = bench_start_up(servidor, base, args.events)
        if "digest" in parts:
            figures["digest"] = bench_digest(servidor, base, sizes)
        if "client_digest" in parts:
            figures["client_digest"] = bench_client_digest(load_server(CLIENT_SCRIPT), sizes)
        if "resync" in parts:
            figures["resync"] = bench_resync(servidor, base, 10_000 if args.quick else 100_000)
    figures["machine"] = {"cores": os.cpu_count(), "load": os.getloadavg(), "sqlite": sqlite3.sqlite_version}
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
