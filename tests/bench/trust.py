"""Benchmark of issue 14: a well-behaved client's ack latency and the server's memory under hostile load.

    .venv/bin/python tests/bench/trust.py            # 90 s per scenario
    .venv/bin/python tests/bench/trust.py --quick    # 10 s per scenario

For the server with --banco and without it (the in-memory default), three loads: (a) stdout never read,
(b) 1,000 connections each holding 64 KiB - 1 of a frame before any hello (re-opened when the server
drops them; --max-conexoes 1100, so the well-behaved client fits beside them), (c) another client
flooding batches of 1,000 events as fast as its acks come. Meanwhile the well-behaved client sends one
event every 20 ms and times each ack. Without --banco, printing is part of the record, so with stdout
stuck no ack can come: there the handshake + hello + ping round trip is timed instead.
Everything on 127.0.0.1. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent.parent
SERVER = ROOT / "servidor.py"
TS = "2026-11-25T17:03:31.118+00:00"
LISTENING = re.compile(r"ouvindo em ws://127\.0\.0\.1:(\d+)$")


def start_server(args: list[str], cwd: str) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SERVER),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--json",
            "--open-timeout",
            "60",
            "--max-conexoes",
            "1100",
            *args,
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUTF8": "1"},
    )
    assert proc.stderr is not None
    for raw in proc.stderr:
        match = LISTENING.search(raw.decode("utf-8", "replace").rstrip())
        if match:
            threading.Thread(target=lambda: proc.stderr.read() if proc.stderr else None, daemon=True).start()
            return proc, int(match.group(1))
    raise SystemExit("o servidor não iniciou")


def drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(fd, 65536), b"")], daemon=True).start()


def peak_rss_mb(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def hello(client_id: str) -> str:
    return json.dumps(
        {"type": "hello", "version": 2, "client_id": client_id, "name": "bench", "root": "/b", "secret": "ab" * 16}
    )


def events(first: int, count: int) -> str:
    batch = [
        {"seq": seq, "event": "created", "path": f"/b/{seq}.txt", "is_dir": False, "ts": TS}
        for seq in range(first, first + count)
    ]
    return json.dumps({"type": "events", "events": batch})


def well_behaved(port: int, seconds: float, acks: bool) -> list[float]:
    """Latencies (ms): of each ack (one event every 20 ms), or of handshake + hello + ping when ``acks`` is off."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    if not acks:
        while time.monotonic() < deadline:
            started = time.monotonic()
            with connect(f"ws://127.0.0.1:{port}", open_timeout=30) as ws:
                ws.send(hello(uuid.uuid4().hex))
                ws.recv(30)
                ws.ping().wait(30)
            latencies.append((time.monotonic() - started) * 1000)
            time.sleep(0.02)
        return latencies
    with connect(f"ws://127.0.0.1:{port}", open_timeout=30) as ws:
        ws.send(hello(uuid.uuid4().hex))
        ws.recv(30)
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            started = time.monotonic()
            ws.send(events(seq, 1))
            json.loads(ws.recv(30))
            latencies.append((time.monotonic() - started) * 1000)
            time.sleep(0.02)
    return latencies


def flood(port: int, seconds: float) -> None:
    with connect(f"ws://127.0.0.1:{port}", open_timeout=30, max_size=None) as ws:
        ws.send(hello(uuid.uuid4().hex))
        ws.recv(30)
        seq, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            ws.send(events(seq + 1, 1000))
            seq += 1000
            ws.recv(60)


def half_open(port: int, count: int, seconds: float) -> None:
    """Hold ``count`` connections, each with 64 KiB - 1 of a frame sent and never finished."""
    held: list[socket.socket] = []
    header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 64 * 1024) + b"\0\0\0\0"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = [sock for sock in held if sock.fileno() != -1]
        while len(held) < count and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(
                    f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                sock.recv(4096)
                sock.sendall(header + b"a" * (64 * 1024 - 1))
                held.append(sock)
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
    for sock in held:
        sock.close()


def scenario(load: str, database: bool, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(["--banco", f"{tmp}/b.db"] if database else [], tmp)
        if load != "stdout":
            drain(proc)
        helper: multiprocessing.Process | None = None
        if load == "frames":
            helper = multiprocessing.Process(target=half_open, args=(port, 1000, seconds + 5))
        elif load == "flood":
            helper = multiprocessing.Process(target=flood, args=(port, seconds + 5))
        if helper is not None:
            helper.start()
            time.sleep(3)  # the load is in place
        elif load == "stdout":
            flood_briefly = multiprocessing.Process(target=flood, args=(port, 2))
            flood_briefly.start()  # fills the pipe (without --banco, it then waits for its acks)
            time.sleep(3)
        acks = database or load != "stdout"
        latencies = well_behaved(port, seconds, acks)
        rss = peak_rss_mb(proc.pid)
        if helper is not None:
            helper.terminate()
            helper.join()
        if load == "stdout":
            flood_briefly.terminate()
            flood_briefly.join()
        proc.kill()
        proc.wait()
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "load": load,
        "database": database,
        "what": "ack" if acks else "handshake+hello+ping",
        "n": len(latencies),
        "p50": quantiles[49],
        "p99": quantiles[98],
        "max": max(latencies),
        "rss": rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 s por cenário em vez de 90 s")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else 90.0
    names = {"stdout": "(a) stdout parado", "frames": "(b) 1.000 quadros pela metade", "flood": "(c) inundação"}
    print("| carga | registro | medida | amostras | p50 (ms) | p99 (ms) | máx (ms) | RSS máx do servidor (MB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for load in ("stdout", "frames", "flood"):
        for database in (True, False):
            row = scenario(load, database, seconds)
            print(
                f"| {names[load]} | {'--banco' if database else 'memória'} | {row['what']} | {row['n']} | "
                f"{row['p50']:.1f} | {row['p99']:.1f} | {row['max']:.1f} | {row['rss']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
