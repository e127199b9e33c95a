"""Shared fixtures: the two scripts loaded by path, as a user would copy them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
