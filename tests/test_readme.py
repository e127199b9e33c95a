"""The README says what the scripts do: its commands, options, constants and defaults are checked here."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def quick_start_commands() -> list[str]:
    section = README.split("## Início rápido", 1)[1].split("\n#", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("       ")]


def table_rows(script: str) -> list[list[str]]:
    """The rows of the configuration table of ``script`` (cells without backticks)."""
    heading = "Servidor" if script == "servidor.py" else "Cliente"
    section = README.split(f"Configuração do {heading} (`{script}`):", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("constante", "---"):
            rows.append(cells)
    return rows


def help_defaults(module: ModuleType) -> dict[str, str]:
    """Each option of ``module``'s parser -> the default its --help shows (``padrão: X``), as text."""
    parser = module.build_parser()
    formatter = parser._get_formatter()
    shown = {}
    for action in parser._actions:
        match = re.search(r"\(padrão: ([^)]*)\)$", formatter._expand_help(action)) if action.help else None
        for option in action.option_strings:
            if match:
                shown[option] = match.group(1)
    return shown


def help_text(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    start, tests = quick_start_commands()
    assert "servidor.py" in start and "monitor_cliente.py" in start and "requirements.txt" in start
    assert tests == (
        "python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt && .venv/bin/python -m pytest"
    )
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pattern = re.search(r"grep -m1 -E '([^']+)' README.md", ci)
    assert pattern is not None
    matching = [line.strip() for line in README.splitlines() if re.search(pattern.group(1), line)]
    assert matching[0] == tests  # the line CI extracts and runs is the README's test command


@pytest.mark.parametrize(("script", "fixture"), [("servidor.py", "servidor"), ("monitor_cliente.py", "cliente")])
def test_documented_options_constants_and_defaults_are_real(
    script: str, fixture: str, request: pytest.FixtureRequest
) -> None:
    module: ModuleType = request.getfixturevalue(fixture)
    shown = help_text(script)
    defaults_shown = help_defaults(module)
    rows = table_rows(script)
    assert len(rows) >= 6
    for constants, options, default, _ in rows:
        for option in re.findall(r"--[a-z-]+", options):
            assert option in shown, f"{option} documented but not in --help of {script}"
            if re.fullmatch(r"\d[\d.]*|[a-z]+://\S+|localhost", default):  # a literal: --help shows the same text
                assert defaults_shown.get(option) == default, (
                    f"{option}: README says {default}, --help of {script} says {defaults_shown.get(option)}"
                )
            elif default in ("nenhum", "desligado"):
                assert option not in defaults_shown, f"{option}: README says {default}, --help shows a default"
        names = re.findall(r"\b[A-Z][A-Z_]+\b|directory_to_monitor", constants)
        defaults = [text.strip() for text in default.split(" (")[0].split(",")]
        for name, text in zip(names, defaults * len(names) if len(defaults) == 1 else defaults, strict=True):
            value = getattr(module, name)
            if re.fullmatch(r"\d[\d.]*", text):
                assert float(text) == float(value), f"{name}: README says {text}, {script} has {value!r}"
            elif isinstance(value, str) and value:
                assert text == value, f"{name}: README says {text}, {script} has {value!r}"
            else:  # "nenhum", or a default found at run time (hostname, cache folder, system CAs)
                assert value == "", f"{name}: README says {text}, {script} has {value!r}"


def test_readme_defaults_for_the_user_facing_constants(servidor: ModuleType, cliente: ModuleType) -> None:
    assert (servidor.HOST, servidor.PORT) == ("localhost", 8765)
    assert cliente.SERVER_URI == "ws://localhost:8765"  # loopback by default: works on one machine
    assert cliente.directory_to_monitor == "."
    assert "ws://localhost:8765" in README and "directory_to_monitor" in README


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.timeout(60)
def test_quick_start_command_runs_the_pair_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    """The first command, minus the install, in a fresh folder: changes appear; Ctrl-C ends both with 0.

    The copies get a free port in their constants (PORT, SERVER_URI), as a user edits them: 8765 itself may be
    taken by anything else running on this machine.
    """
    start = quick_start_commands()[0]
    run_part = start.split(" && ", 2)[2]  # after the venv and the pip install
    port = free_port()
    for script, constant in (
        ("servidor.py", "PORT = 8765"),
        ("monitor_cliente.py", 'SERVER_URI = "ws://localhost:8765"'),
    ):
        text = (ROOT / script).read_text(encoding="utf-8")
        assert text.count(f"\n{constant}  #") + text.count(f"\n{constant}\n") == 1, constant
        (tmp_path / script).write_text(text.replace(constant, constant.replace("8765", str(port)), 1), encoding="utf-8")
    if sys.prefix != sys.base_prefix:  # the test runs in a venv: the command's .venv is that one
        (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    else:
        (tmp_path / ".venv" / "bin").mkdir(parents=True)
        (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / ".cache"), PYTHONUNBUFFERED="1")
    output = tmp_path.parent / f"{tmp_path.name}-output.txt"  # outside the watched folder
    with open(output, "wb") as sink:
        proc = subprocess.Popen(
            ["bash", "-c", run_part],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while f"Conectado a ws://localhost:{port}" not in output.read_text(errors="replace"):
                assert time.monotonic() < deadline, output.read_text(errors="replace")
                time.sleep(0.05)
            (tmp_path / "novo_arquivo.txt").write_text("olá\n")
            expected = f"] arquivo criado: {tmp_path}/novo_arquivo.txt"
            while expected not in output.read_text(errors="replace"):
                assert time.monotonic() < deadline, output.read_text(errors="replace")
                time.sleep(0.05)
            before_ctrl_c = len(output.read_text(errors="replace"))
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = output.read_text(errors="replace")
    assert "Servidor encerrado." in text and "Monitor encerrado." in text
    assert "Traceback" not in text
    # Ctrl-C reaches the client alone (the server ignores it, as the command asks): the client stops first,
    # then the command's kill stops the server, so the client never sees its server go away.
    # (Before it, the client may have tried once before the server listened: both start at the same time.)
    for noise in ("reconectando", "Sem conexão", "recusada", "perdida"):
        assert noise not in text[before_ctrl_c:], text
    assert text.index("Monitor encerrado.") < text.index("Encerrando o servidor..."), text


def test_both_scripts_share_their_words_and_escapes(servidor: ModuleType, cliente: ModuleType) -> None:
    """Each script stands alone, so these tables are written twice; they must never drift apart."""
    assert servidor._ARGPARSE_PT == cliente._ARGPARSE_PT
    assert servidor._ESCAPES == cliente._ESCAPES
    assert servidor._VERBS == cliente._VERBS
    assert servidor._ORIGIN_NOTES.items() >= cliente._ORIGIN_NOTES.items()  # the server adds "resync"
    assert cliente.PROTOCOL_VERSION in servidor.PROTOCOL_VERSIONS
    assert servidor.TOKEN_ENV == cliente.TOKEN_ENV


@pytest.mark.parametrize("fixture", ["servidor", "cliente"])
def test_old_libraries_get_a_clear_message(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    module: ModuleType = request.getfixturevalue(fixture)
    assert module.missing_requirements() is None  # what this suite runs with
    monkeypatch.setattr(module.importlib.metadata, "version", lambda name: "16.1.1")
    message = module.missing_requirements()
    assert message is not None and message.startswith("websockets 16.1.1 é antigo demais")
    assert "websockets >= 17.0" in message and "Python >= 3.11" in message


def systemd_units() -> list[str]:
    """The ```ini blocks of the README's section "Rodando como serviço (systemd)"."""
    section = README.split("# Rodando como serviço (systemd)", 1)[1].split("\n# ", 1)[0]
    return re.findall(r"```ini\n(.*?)```", section, re.DOTALL)


def test_the_service_section_has_a_unit_for_each_script() -> None:
    units = systemd_units()
    assert len(units) == 2
    for unit, script in zip(units, ("servidor.py", "monitor_cliente.py"), strict=True):
        [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
        assert exec_start.startswith(f"ExecStart=/opt/monitor/.venv/bin/python /opt/monitor/{script} "), exec_start
        assert "EnvironmentFile=" in unit and "Restart=on-failure" in unit and "RestartPreventExitStatus=2" in unit
        assert "--token" not in unit  # the token comes from the environment file, never the command line


@pytest.mark.parametrize("index", [0, 1], ids=["servidor", "cliente"])
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path, index: int) -> None:
    """Each unit, its ExecStart pointed at this interpreter and this repository's scripts, is valid for systemd."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing in CI")
        pytest.skip("systemd-analyze is not installed here")
    unit = systemd_units()[index]
    for script in ("servidor.py", "monitor_cliente.py"):
        unit = unit.replace(f"/opt/monitor/{script}", str(ROOT / script))
    unit = unit.replace("/opt/monitor/.venv/bin/python", sys.executable)
    assert "/opt/monitor" not in unit
    path = tmp_path / ("monitor-servidor.service" if index == 0 else "monitor-cliente.service")
    path.write_text(unit, encoding="utf-8")
    result = subprocess.run(
        [tool, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
