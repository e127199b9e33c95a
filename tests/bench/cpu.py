"""Client CPU per file in a burst (issue 12): watchdog's stock path against the batched one, runs alternated.

Usage, from the repository root, with the project's virtualenv::

    .venv/bin/python tests/bench/cpu.py                       # 10k files, 5 runs of each path (~2 minutes)
    .venv/bin/python tests/bench/cpu.py --files 100000 --runs 1
    .venv/bin/python tests/bench/cpu.py --before b0fa258      # adds that commit's client as a third path

What is measured: a generator (a separate Python process) writes ``--files`` files of 1 KiB into one fresh
directory as fast as it can; G = its own time from the first write to the last close. The pair watches:
``servidor.py --json`` to a file, ``monitor_cliente.py -q --assentar 0`` (settle off, so the figures measure CPU)
with a fresh ``--estado``; the burst starts once the server has logged the client as connected. T = from the
generator's first write until the server's output names every file (polled every 20 ms). CPU = the client's
utime + stime over the same span (/proc/PID/stat), per file in µs. Lost = files never shown within
``--deadline``; twice = a path shown created more than once (1 s after the last one arrived).

Paths: ``new`` (the batched emitter), ``stock`` (the same script with MONITOR_STOCK_WATCHDOG=1: watchdog's
stock emitter and observer, one event at a time) and, with ``--before REV``, that commit's monitor_cliente.py.
Runs alternate between the paths (new, stock, new, stock...) so a loaded machine weighs on both alike; the
table gives median [min-max] and the load average before and after. Everything runs on 127.0.0.1 in temporary
directories; every process started here is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GENERATOR = """
import os, sys, time
root, count = sys.argv[1], int(sys.argv[2])
payload = b"x" * 1023 + b"\\n"
started = time.monotonic()
for index in range(count):
    fd = os.open(os.path.join(root, f"f{index:07d}.dat"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, payload)
    os.close(fd)
print(time.monotonic() - started)
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_line(stream: IO[bytes], needle: str, what: str) -> str:
    while True:
        line = stream.readline().decode()
        if not line:
            raise RuntimeError(f"{what} ended before saying {needle!r}")
        if needle in line:
            return line


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_run(base: Path, client: Path, stock: bool, count: int, deadline: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(dir=base))
    watch = work / "w"
    watch.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(work / "cache"))
    env.pop("MONITOR_STOCK_WATCHDOG", None)
    if stock:
        env["MONITOR_STOCK_WATCHDOG"] = "1"
    out_path = work / "servidor.jsonl"
    with out_path.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "servidor.py"), "--host", "127.0.0.1", "--port", "0", "--json"],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
    procs = [server]
    try:
        assert server.stderr is not None
        port = int(wait_line(server.stderr, "ouvindo em ws://127.0.0.1:", "the server").rsplit(":", 1)[1])
        argv = [sys.executable, str(client), str(watch), "--servidor", f"ws://127.0.0.1:{port}", "-q"]
        argv += ["--nome", "bench", "--assentar", "0", "--estado", str(work / "estado.json")]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        procs.append(proc)
        wait_line(server.stderr, "cliente conectado", "the server")
        time.sleep(0.5)
        cpu_before = cpu_seconds(proc.pid)
        started = time.monotonic()
        generator = subprocess.run(
            [sys.executable, "-c", GENERATOR, str(watch), str(count)], capture_output=True, check=True, text=True
        )
        generated = float(generator.stdout)
        created: dict[str, int] = {}
        offset = 0
        finished = 0.0
        while time.monotonic() < started + deadline:
            with out_path.open("rb") as stream:
                stream.seek(offset)
                data = stream.read()
            complete = data.rfind(b"\n") + 1
            offset += complete
            for line in data[:complete].splitlines():
                record = json.loads(line)
                if record.get("event") == "created":
                    created[record["path"]] = created.get(record["path"], 0) + 1
            if len(created) >= count and not finished:
                finished = time.monotonic()
                cpu = cpu_seconds(proc.pid) - cpu_before
            if finished and time.monotonic() > finished + 1:
                break
            time.sleep(0.02)
        if not finished:
            finished, cpu = time.monotonic(), cpu_seconds(proc.pid) - cpu_before
        return {
            "T": finished - started,
            "G": generated,
            "cpu_us": cpu / count * 1e6,
            "lost": count - len(created),
            "twice": sum(n - 1 for n in created.values()),
        }
    finally:
        for each in reversed(procs):
            stop(each)
        if server.stderr is not None:
            server.stderr.close()


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each path (default 5)")
    parser.add_argument("--before", metavar="REV", help="also run this git revision's monitor_cliente.py")
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-cpu-", dir=args.tmpdir))
    client = ROOT / "monitor_cliente.py"
    paths: list[tuple[str, Path, bool]] = [("new", client, False), ("stock", client, True)]
    if args.before:
        old = base / "monitor_cliente_before.py"
        old.write_bytes(
            subprocess.run(
                ["git", "show", f"{args.before}:monitor_cliente.py"], check=True, capture_output=True, cwd=ROOT
            ).stdout
        )
        paths.append((f"before ({args.before})", old, False))
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in paths}
    try:
        for run in range(args.runs):
            for name, script, stock in paths:
                result = one_run(base, script, stock, args.files, args.deadline)
                results[name].append(result)
                print(f"run {run + 1} {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in result.items()), file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)  # tens of thousands of files (in RAM with --tmpdir /dev/shm)
    load_after = os.getloadavg()
    print(f"\n{args.files:,} files of 1 KiB in one directory, --assentar 0, {args.runs} runs per path, alternated")
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), {os.cpu_count()} CPUs\n")
    print("| path | client CPU µs/file | T s | G s | T/G | lost | twice |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        ratio = [r["T"] / r["G"] for r in runs]
        cells = [
            spread([r["cpu_us"] for r in runs], 0),
            spread([r["T"] for r in runs]),
            spread([r["G"] for r in runs]),
            spread(ratio, 1),
            str(int(sum(r["lost"] for r in runs))),
            str(int(sum(r["twice"] for r in runs))),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
