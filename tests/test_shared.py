"""The section both scripts share: identical to the byte, defined once per script, and what it provides."""

from __future__ import annotations

import argparse
import ast
import difflib
import logging
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("servidor.py", "monitor_cliente.py")
BEGIN = "# Shared section: begin."
END = "# Shared section: end."


def shared_section(text: str) -> str:
    """The text from the banner that opens the shared section to the banner that closes it, both included."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.startswith(END)]
    assert len(begins) == 1 and len(ends) == 1, f"one {BEGIN!r} and one {END!r} line expected"
    first, last = begins[0] - 1, ends[0] + 1  # the ===== rules around each marker line
    assert first < last and lines[first].startswith("# ====") and lines[last].startswith("# ====")
    return "".join(lines[first : last + 1])


def script_text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def test_the_shared_section_is_identical_in_both_scripts() -> None:
    server, client = (shared_section(script_text(name)) for name in SCRIPTS)
    assert len(server.splitlines()) > 100  # the markers enclose the real thing
    diff = "".join(difflib.unified_diff(server.splitlines(True), client.splitlines(True), *SCRIPTS))
    assert server.encode("utf-8") == client.encode("utf-8"), diff


def test_a_one_byte_difference_is_caught() -> None:
    text = script_text("servidor.py")
    section = shared_section(text)
    changed = text.replace("return text.translate(_ESCAPES)", "return text.translate(_ESCAPES) ", 1)
    assert changed != text
    assert shared_section(changed) != section


def top_level_names(source: str) -> list[str]:
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


@pytest.mark.parametrize("script", SCRIPTS)
def test_nothing_of_the_shared_section_is_defined_again_outside_it(script: str) -> None:
    text = script_text(script)
    section = shared_section(text)
    before, after = text.split(section)
    shared = set(top_level_names(section))
    outside = top_level_names(before + after)
    assert shared.isdisjoint(outside), sorted(shared.intersection(outside))


@pytest.mark.parametrize("fixture", ["servidor", "cliente"])
def test_building_the_parser_leaves_argparse_alone(fixture: str, request: pytest.FixtureRequest) -> None:
    """The Portuguese words are installed once, by main(), not as a side effect of building a parser."""
    module: ModuleType = request.getfixturevalue(fixture)
    before = argparse._  # type: ignore[attr-defined]
    module.build_parser()
    assert argparse._ is before  # type: ignore[attr-defined]


@pytest.mark.parametrize("script", SCRIPTS)
def test_quiet_and_verbose_exclude_each_other(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / script), "-q", "-v"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"{script}: erro: argumento -v/--verbose: não pode ser usado junto com -q/--quiet"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("fixture", ["servidor", "cliente"])
def test_one_formatter_gives_the_prefixes(fixture: str, request: pytest.FixtureRequest) -> None:
    module: ModuleType = request.getfixturevalue(fixture)

    def shown(level: int, message: str, **extra: str) -> str:
        record = logging.LogRecord("x", level, __file__, 1, message, None, None)
        record.__dict__.update(extra)
        return str(module.ConsoleFormatter(stamp=False).format(record))

    assert shown(logging.DEBUG, "detalhe") == "detalhe"
    assert shown(logging.INFO, "Conectado") == "Conectado"
    assert shown(logging.WARNING, "sem permissão") == "Aviso: sem permissão"
    assert shown(logging.ERROR, "falhou") == "Erro: falhou"
    assert shown(logging.CRITICAL, "falhou") == "Erro: falhou"
    assert shown(logging.WARNING, "Sem conexão com x", **module.NO_PREFIX) == "Sem conexão com x"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    stamped = module.ConsoleFormatter().format(record)
    assert (
        stamped.endswith(" Aviso: a b") and stamped[4] == "-" and len(stamped) == len("2024-05-06 07:08:09 Aviso: a b")
    )


def test_protocol_errors_carry_their_close_code(servidor: ModuleType) -> None:
    with pytest.raises(servidor.ProtocolError) as binary:
        servidor.parse_events(b'{"type":"events"}')
    assert binary.value.code == servidor.CLOSE_UNSUPPORTED == 1003
    with pytest.raises(servidor.ProtocolError) as text:
        servidor.parse_events('{"type":"events"}')
    assert text.value.code == servidor.CLOSE_POLICY == 1008


@pytest.mark.parametrize("fixture", ["servidor", "cliente"])
def test_token_from_flag_environment_or_constant(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    module: ModuleType = request.getfixturevalue(fixture)
    monkeypatch.delenv(module.TOKEN_ENV, raising=False)
    assert module.token_from(None) == module.TOKEN == ""
    monkeypatch.setattr(module, "TOKEN", "constante")
    assert module.token_from(None) == "constante"
    monkeypatch.setenv(module.TOKEN_ENV, "ambiente")
    assert module.token_from(None) == "ambiente"
    assert module.token_from("flag") == "flag"
    assert module.token_from("") == ""  # an empty flag turns the token off
    for bad in ("com espaço", "acentuação", "tab\t", "\x7f"):
        with pytest.raises(ValueError, match="só pode ter caracteres ASCII visíveis"):
            module.token_from(bad)
