"""Shared fixtures: the two scripts loaded by path, as a user would copy them."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from support import Processes

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str) -> ModuleType:
    """Import ``<name>.py`` from the repository root by path (nothing runs at import)."""
    path = ROOT / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def servidor() -> ModuleType:
    return load_script("servidor")


@pytest.fixture(scope="session")
def cliente() -> ModuleType:
    return load_script("monitor_cliente")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Factory for servers and clients run from a scratch working directory; all killed at teardown.

    XDG_CACHE_HOME points inside it, so the client's default state file stays in the test's folder.
    """
    group = Processes(tmp_path / "cwd")
    try:
        yield group
    finally:
        group.cleanup()


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    """The directory a test's client watches."""
    directory = tmp_path / "monitorado"
    directory.mkdir()
    return directory


def pytest_configure(config: pytest.Config) -> None:
    """The tests send SIGINT as a terminal's Ctrl-C would, and the scripts keep a SIGINT that was ignored when they
    started (the Unix convention): so none of them may inherit an ignored SIGINT from however pytest was started
    (nohup, a background job of a script). Python turns the default handler back into SIG_DFL in each child."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Hypothesis keeps no example database, and its caches stay in tests/ (the top level is the two scripts).
set_hypothesis_home_dir(str(ROOT / "tests" / ".hypothesis"))
settings.register_profile("projeto", database=None)
settings.load_profile("projeto")
