"""Benchmarks of issue 10 (settle, metadata, --hash): one command, one markdown table.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/semantics.py              # 10k burst, latency, metadata, hash (~2 minutes)
    .venv/bin/python tests/bench/semantics.py --burst 100000 --runs 1

What is measured (each figure: median over ``--runs``, default 3):

1. burst: N files of 1 KiB written as fast as Python can (in this process, into a fresh directory), the pair
   watching: server ``--json`` to a file, client ``-q`` with ``--assentar 0`` and with the default settle.
   G = the generation's time; T = from the first write until the server's output names every file (polled
   every 20 ms). T/G near 1: the pair keeps up.
2. latency: one file written every 100 ms, 100 times; from just before the write to the arrival of its
   server line on a pipe: p50 / p99, with ``--assentar 0`` and with the default (expected: the window + ~2 ms).
3. metadata: the client's own cost per event, in process: Recorder's lstat + metadata_of + encode_event with
   metadata, against encode_event alone (µs per event, 10,000 files).
4. --hash: sha256_of on a 200 MB file just written (page cache warm): MB/s (1 MB = 10^6 bytes).

Everything runs on 127.0.0.1 in temporary directories; every process started here is stopped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = b"x" * 1023 + b"\n"


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_cliente", ROOT / "monitor_cliente.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Pair:
    """servidor.py --json (stdout to a file or a pipe) and monitor_cliente.py -q on ``watch``."""

    def __init__(self, work: Path, watch: Path, client_args: list[str], *, pipe: bool = False) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(work / "cache"))
        self.out_path = work / "servidor.jsonl"
        self._out: IO[bytes] | None = None if pipe else self.out_path.open("wb")
        self.server = subprocess.Popen(
            [sys.executable, str(ROOT / "servidor.py"), "--host", "127.0.0.1", "--port", "0", "--json"],
            stdout=subprocess.PIPE if pipe else self._out,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.server.stderr is not None
        port = None
        while port is None:
            line = self.server.stderr.readline().decode()
            if not line:
                raise RuntimeError("the server ended before listening")
            if "ouvindo em ws://127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
        self.client = subprocess.Popen(
            [sys.executable, str(ROOT / "monitor_cliente.py"), str(watch), "--servidor", f"ws://127.0.0.1:{port}"]
            + ["-q", "--nome", "bench", *client_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        while True:
            line = self.server.stderr.readline().decode()
            if "cliente conectado" in line:
                break
            if not line:
                raise RuntimeError("the server ended before the client connected")
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self.server.stderr is not None
        for _ in self.server.stderr:
            pass

    def stop(self) -> None:
        for proc in (self.client, self.server):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._out is not None:
            self._out.close()


def burst(base: Path, count: int, client_args: list[str]) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(dir=base))
    watch = work / "w"
    watch.mkdir()
    pair = Pair(work, watch, client_args)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        for index in range(count):
            fd = os.open(watch / f"f{index:06d}.dat", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, PAYLOAD)
            os.close(fd)
        generated = time.monotonic() - started
        seen: set[str] = set()
        offset = 0
        deadline = started + 300
        while len(seen) < count and time.monotonic() < deadline:
            with pair.out_path.open("rb") as stream:
                stream.seek(offset)
                data = stream.read()
            complete = data.rfind(b"\n") + 1
            offset += complete
            for line in data[:complete].splitlines():
                record = json.loads(line)
                if record.get("event") == "created":
                    seen.add(record["path"])
            if len(seen) < count:
                time.sleep(0.02)
        took = time.monotonic() - started
        if len(seen) < count:
            raise RuntimeError(f"{count - len(seen)} files never shown")
        return took, generated
    finally:
        pair.stop()


def latency(base: Path, client_args: list[str], count: int = 100) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(dir=base))
    watch = work / "w"
    watch.mkdir()
    pair = Pair(work, watch, client_args, pipe=True)
    arrived: dict[str, float] = {}
    cond = threading.Condition()

    def read() -> None:
        assert pair.server.stdout is not None
        for line in pair.server.stdout:
            now = time.monotonic()
            record = json.loads(line)
            with cond:
                arrived.setdefault(record.get("path", ""), now)
                cond.notify_all()

    threading.Thread(target=read, daemon=True).start()
    try:
        time.sleep(0.5)
        delays = []
        for index in range(count):
            path = str(watch / f"l{index:04d}.txt")
            began = time.monotonic()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"x\n")
            os.close(fd)
            with cond:
                cond.wait_for(lambda path=path: path in arrived, 10)  # type: ignore[misc]
            delays.append((arrived[path] - began) * 1000)
            time.sleep(0.1)
        delays.sort()
        return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]
    finally:
        pair.stop()


def metadata_cost(cliente: ModuleType, base: Path, count: int = 10_000) -> tuple[float, float]:
    """µs per event: encode_event alone, and lstat + metadata_of + encode_event with the metadata."""
    directory = Path(tempfile.mkdtemp(dir=base))
    paths = []
    for index in range(count):
        path = directory / f"m{index:05d}.txt"
        path.write_bytes(PAYLOAD)
        paths.append(str(path))
    changes = [cliente.Change("created", path, False) for path in paths]
    ts = "2026-11-29T14:23:51.123+00:00"
    started = time.perf_counter()
    for seq, change in enumerate(changes):
        cliente.encode_event(seq, change, ts)
    plain = time.perf_counter() - started
    started = time.perf_counter()
    for seq, change in enumerate(changes):
        cliente.encode_event(seq, change, ts, cliente.metadata_of(os.lstat(change.path)))
    full = time.perf_counter() - started
    return plain / count * 1e6, full / count * 1e6


def hash_rate(cliente: ModuleType, base: Path, size: int = 200_000_000) -> float:
    path = Path(tempfile.mkdtemp(dir=base)) / "grande.bin"
    with path.open("wb") as stream:
        chunk = os.urandom(1 << 20)
        for _ in range(size // len(chunk)):
            stream.write(chunk)
    st = os.lstat(path)
    started = time.perf_counter()
    assert cliente.sha256_of(str(path), st) is not None
    return st.st_size / (time.perf_counter() - started) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of settle, metadata and --hash (see the docstring).")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burst", type=int, default=10_000, help="files in the burst")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    cliente = load_client()
    modes = {"--assentar 0": ["--assentar", "0"], f"padrão ({cliente.SETTLE:g} s)": []}
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bench_semantica_") as tmp:
        base = Path(tmp)
        for name, flags in modes.items():
            runs = [burst(base, args.burst, flags) for _ in range(args.runs)]
            t = statistics.median(r[0] for r in runs)
            g = statistics.median(r[1] for r in runs)
            ratio = statistics.median(r[0] / r[1] for r in runs)
            rows.append(f"| burst {args.burst:,} arquivos, {name} | T {t:.2f} s, G {g:.2f} s, T/G {ratio:.2f} |")
            print(rows[-1], file=sys.stderr)
        for name, flags in modes.items():
            runs_l = [latency(base, flags) for _ in range(args.runs)]
            p50 = statistics.median(r[0] for r in runs_l)
            p99 = statistics.median(r[1] for r in runs_l)
            rows.append(f"| latência, {name} | p50 {p50:.1f} ms, p99 {p99:.1f} ms |")
            print(rows[-1], file=sys.stderr)
        costs = [metadata_cost(cliente, base) for _ in range(args.runs)]
        plain, full = statistics.median(c[0] for c in costs), statistics.median(c[1] for c in costs)
        rows.append(
            f"| metadados por evento | {full - plain:.1f} µs (codificar: {plain:.1f} µs; com lstat: {full:.1f} µs) |"
        )
        rate = statistics.median(hash_rate(cliente, base) for _ in range(args.runs))
        rows.append(f"| --hash (SHA-256, cache quente) | {rate:,.0f} MB/s |")
    print(
        f"Máquina: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {args.runs} execuções, mediana\n"
    )
    print("| medida | resultado |\n|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
