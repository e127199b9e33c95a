"""Ignore patterns written the way a user means them, and the tool caches ignored by default (review 1, item 7).

Before: ``--ignorar ./build`` and ``--ignorar 'a//b'`` were accepted and never matched (build/x and a/b/y shown);
``.hypothesis/`` (a test tool's cache) was shown. End to end: the real scripts on 127.0.0.1.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import ModuleType

import pytest
from convergence import write_file
from support import Processes, no_traceback
from test_limits import start_client

ROOT = "/w"


@pytest.mark.parametrize(
    ("pattern", "parts"),
    [
        ("./build", ("build", True, False)),  # the path "build" (relative to the root), not any name
        ("././build/", ("build", True, True)),
        ("a//b", ("a/b", True, False)),
        ("a/./b//", ("a/b", True, True)),
        ("docs/.", ("docs", False, True)),  # like "docs/"
        ("build/", ("build", False, True)),
        ("*.swp", ("*.swp", False, False)),
        (".", None),
        ("./", None),
        ("a/../b", None),
    ],
)
def test_pattern_parts(cliente: ModuleType, pattern: str, parts: tuple[str, bool, bool] | None) -> None:
    assert cliente.pattern_parts(pattern) == parts


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("./build", "build/x", False, True),
        ("./build", "sub/build", True, False),  # "./": relative to the root
        ("a//b", "a/b/y", False, True),
        ("a//b", "a/b", False, True),
        ("docs/.", "docs", True, True),
        ("docs/.", "docs", False, False),  # a trailing "/.": directories only, like "/"
        ("x/./y", "x/y", True, True),
    ],
)
def test_a_pattern_matches_as_a_user_means_it(
    cliente: ModuleType, pattern: str, path: str, is_dir: bool, expected: bool
) -> None:
    rules = cliente.IgnoreRules(ROOT, [pattern])
    assert rules.ignored(f"{ROOT}/{path}", is_dir) is expected
    if expected:
        assert list(rules.matched) == [pattern]


def test_a_constant_pattern_that_can_never_match_is_left_out(cliente: ModuleType) -> None:
    rules = cliente.IgnoreRules(ROOT, [".", "./", "ok"])
    assert rules.patterns == ("ok",)


@pytest.mark.parametrize("pattern", [".", "./", ".//", "/./"])
def test_a_pattern_without_a_name_is_refused(procs: Processes, watched: Path, pattern: str) -> None:
    client = procs.client(watched, "ws://127.0.0.1:9", "cli", args=["--ignorar", pattern])
    assert client.wait() == 2, client.describe()
    errors = [line for line in client.lines("stderr") if "erro:" in line]
    assert len(errors) == 1 and "argumento --ignorar: padrão vazio" in errors[0], client.describe()
    no_traceback(client)


@pytest.mark.parametrize("cache", [".hypothesis/constants", ".nox/py311", ".eggs/pkg.egg", ".ipynb_checkpoints"])
def test_patterns_as_users_write_them_and_tool_caches_are_ignored(procs: Processes, watched: Path, cache: str) -> None:
    server = procs.server()
    client = start_client(procs, watched, server, args=["--ignorar", "./build", "--ignorar", "a//b"])
    for directory in ("build", "a/b", "sub/build", cache):
        (watched / directory).mkdir(parents=True, exist_ok=True)
    write_file(watched / "build" / "x")
    write_file(watched / "a" / "b" / "y")
    write_file(watched / "sub" / "build" / "z")  # "./build" is the root's build only
    write_file(watched / cache / "dados")
    write_file(watched / "sentinela")
    server.wait_for_line(f"[cli] arquivo criado: {watched}/sentinela")
    lines = sorted(line.removeprefix("[cli] ") for line in server.stripped())
    assert lines == sorted(
        [
            f"arquivo criado: {watched}/sentinela",
            f"diretório criado: {watched}/a",
            f"diretório criado: {watched}/sub",
            f"diretório criado: {watched}/sub/build",
            f"arquivo criado: {watched}/sub/build/z",
        ]
    ), server.describe()
    assert client.stop(signal.SIGTERM) == 0
    no_traceback(client, server)


@pytest.mark.parametrize("patterns", [["build/", "*.tmp"], ["build/", "*.tmp", "docs/rascunho"]])
def test_ignored_answers_the_same_once_a_directory_is_known_clean(cliente: ModuleType, patterns: list[str]) -> None:
    """IgnoreRules.ignored remembers directories that are not ignored (an event there matches only its own name):
    every answer is the one a fresh IgnoreRules gives, in any order, a directory-only pattern on a file and a
    path pattern (with "/") included."""
    paths = [
        ("src/a.txt", False),
        ("src/b.tmp", False),
        ("src/build", True),
        ("src/build", False),
        ("src/build/x.txt", False),
        ("docs/rascunho", False),
        ("docs/rascunho/y", False),
        ("docs/final", False),
        ("a.txt", False),
        ("build", True),
    ]
    rules = cliente.IgnoreRules(ROOT, patterns)
    for _ in range(2):  # the second time, every parent is known
        for path, is_dir in paths:
            full = f"{ROOT}/{path}"
            fresh = cliente.IgnoreRules(ROOT, patterns).ignored(full, is_dir)
            assert rules.ignored(full, is_dir) == fresh, (path, is_dir)
    assert rules.ignored(f"{ROOT}/src/build", True) and not rules.ignored(f"{ROOT}/src/build", False)
