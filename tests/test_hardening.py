"""Issues 13 and 14, second round: what a tester broke after the first fixes, each kind as a test.

The real servidor.py on 127.0.0.1 (port 0), driven by raw WebSocket clients (helpers of test_trust.py).
"""

from __future__ import annotations

import fcntl
import signal
import termios
from pathlib import Path

import pytest
from support import TIMEOUT, strip_ts, wait_until
from test_trust import ROOT, Client, RawServer, batch, event, raw_servers, start

__all__ = ["raw_servers"]  # the fixture, shared with test_trust.py


def pipe_bytes(server: RawServer) -> int:
    """Bytes written to the server's stdout pipe and not read yet."""
    buffer = bytearray(4)
    fcntl.ioctl(server.stdout.fileno(), termios.FIONREAD, buffer)
    return int.from_bytes(buffer, "little")


# ---------------------------------------------------------------------------
# SIGTERM with a stdout nobody reads.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", [False, True], ids=["memory", "database"])
def test_sigterm_stops_when_nobody_reads_stdout(raw_servers: list[RawServer], tmp_path: Path, database: bool) -> None:
    """The console thread blocked in write() must not hold the exit: exit 0 within a few seconds, and
    one stderr line says how many lines were left unprinted."""
    args = ["--json", *(["--banco", str(tmp_path / "r.db")] if database else [])]
    server = start(raw_servers, tmp_path, args)
    client = Client(server.uri)
    long = "d" * 200
    events = [event(seq, f"{ROOT}/{long}/{seq}") for seq in range(1, 1001)]  # ~270 KB: more than the pipe
    client.ws.send(batch(*events[:500]))
    client.ws.send(batch(*events[500:]))
    wait_until(lambda: pipe_bytes(server) >= 65536, describe=server.describe)  # the pipe is full: write() blocks
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(TIMEOUT) == 0, server.describe()
    server._reader.join(5)
    unprinted = server.stderr_with("não foram impressas")
    assert len(unprinted) == 1 and strip_ts(unprinted[0]).startswith("Aviso: "), server.describe()
    assert not server.stderr_with("Traceback") and not server.stderr_with("Fatal"), server.describe()
