"""SECONDS flags: a decimal comma as the console writes it ("0,5 s"), and --polling's floor (review 1, item 8).

Before: ``--polling 0,5`` was refused ("valor inválido (float)") and ``--polling 0.000001`` accepted (a walk of the
tree without pause: 86 % of a core on 52 entries). End to end: the real scripts on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import ModuleType

import pytest
from support import Processes, no_traceback
from test_limits import start_client

SECONDS_FLAGS = {
    "--assentar": "settle",
    "--assentar-max": "settle_max_hold",
    "--keepalive": "keepalive",
    "--polling": "polling",
    "--verificacao": "idle_check",
}


@pytest.mark.parametrize("flag", list(SECONDS_FLAGS))
@pytest.mark.parametrize(("text", "value"), [("0,5", 0.5), ("0.5", 0.5), ("2", 2.0), ("1,25", 1.25)])
def test_every_seconds_flag_takes_a_decimal_comma(cliente: ModuleType, flag: str, text: str, value: float) -> None:
    cliente.speak_portuguese_argparse()
    args = cliente.build_parser().parse_args([flag, text])
    assert getattr(args, SECONDS_FLAGS[flag]) == value


@pytest.mark.parametrize("text", ["0,5x", "1,000.5", "", "meio"])
def test_a_value_that_is_no_number_of_seconds(cliente: ModuleType, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="não é um número de segundos"):
        cliente.seconds(text)


def test_help_says_seconds_take_a_comma(procs: Processes, watched: Path) -> None:
    client = procs.client(watched, "ws://127.0.0.1:9", "cli", args=["--help"])
    assert client.wait() == 0, client.describe()
    text = " ".join(" ".join(client.lines()).split())
    assert "SEGUNDOS aceitam vírgula ou ponto decimal (0,5 ou 0.5)" in text
    assert "no mínimo 0,1" in text


@pytest.mark.parametrize("value", ["0.000001", "0,05", "0.099", "1e-9", "1e10", "nan", "inf", "-1"])
def test_polling_outside_its_range_is_refused(procs: Processes, watched: Path, value: str) -> None:
    """Below POLLING_MIN each walk spun a core; ``--polling 1e10`` was accepted and watchdog's thread died at each of
    its waits (a restart storm, issue 11): both refused with exit 2."""
    client = procs.client(watched, "ws://127.0.0.1:9", "cli", args=["--polling", value])
    assert client.wait() == 2, client.describe()
    [line] = client.lines("stderr")
    assert line.startswith("Erro: --polling precisa ser 0 (inotify) ou um número de segundos de 0,1 a "), line
    no_traceback(client)


def test_polling_with_a_decimal_comma_runs(procs: Processes, watched: Path) -> None:
    server = procs.server()
    client = start_client(procs, watched, server, args=["--polling", "0,5", "--assentar", "0,1"])
    assert any("por varredura a cada 0,5 s" in line for line in client.lines("stderr")), client.describe()
    (watched / "a.txt").write_bytes(b"x")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/a.txt")
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)
