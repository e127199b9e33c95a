"""The server's console under a burst, end to end: with ``--banco`` stdout is a mirror that drops lines only when
its reader is stuck or too slow, never because the console thread lags behind the loop for a moment."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from support import Processes, no_traceback, wait_until


def test_a_burst_into_a_reader_that_keeps_up_drops_no_line(procs: Processes, watched: Path, tmp_path: Path) -> None:
    """20,000 files at once, server ``--banco --json`` read by a pipe that keeps up: every line is printed. Before,
    the 1 MiB console budget counted what this thread had not written yet (it lags behind the loop in a burst, the
    GIL is the loop's), and 2,000 to 6,000 of the lines were said omitted although stdout never stopped."""
    server = procs.server(json_output=True, args=["--banco", str(tmp_path / "eventos.db")])
    client = procs.client(watched, server.uri, "cli", connected_to=server, args=["-q"])
    for index in range(20_000):
        (watched / f"f{index:05d}").write_bytes(b"x" * 1024)

    def omitted() -> list[str]:
        return [line for line in server.lines("stderr") if "linhas omitidas" in line]

    def created() -> int:
        return sum(json.loads(line).get("event") == "created" for line in server.lines() if line.startswith("{"))

    wait_until(
        lambda: created() >= 20_000 or bool(omitted()),
        timeout=60,
        describe=server.describe,
    )
    assert not omitted(), server.describe()
    assert created() == 20_000
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)
