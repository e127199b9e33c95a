"""Helpers for tests/test_limits.py (issue 11): small inotify budgets, deep trees, mounts.

Inotify budgets are given to ONE process tree, never to the machine: the client runs in a user namespace of its
own (``unshare -U -r``) whose ``/proc/sys/user/max_inotify_watches`` (and ``max_inotify_instances``) the prefix sets
first. Those limits count per user namespace, and a watch counts against its namespace and every parent one, so
the machine-wide ``fs.inotify.max_user_watches`` is never touched and nothing stays lowered if a test dies. (A
throwaway user would need the machine-wide sysctl lowered: the limit is per user, but its value is global.) Only
the user namespace is new: the client shares the network, and reaches the test server on 127.0.0.1.

Deep trees are made and removed through directory file descriptors and renames, so no path ever passes PATH_MAX
and nothing recurses (``shutil.rmtree`` recurses once per level in Python 3.11).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

WATCHES = "/proc/sys/user/max_inotify_watches"
INSTANCES = "/proc/sys/user/max_inotify_instances"


def limits_prefix(watches: int | None = None, instances: int | None = None) -> list[str]:
    """A command prefix (support.Script's ``command_prefix``) that runs the interpreter in a user namespace of its
    own with at most ``watches`` inotify watches and ``instances`` inotify instances (None: the inherited limit)."""
    settings = [
        f"echo {value} > {path}" for value, path in ((watches, WATCHES), (instances, INSTANCES)) if value is not None
    ]
    return ["unshare", "-U", "-r", "sh", "-c", "; ".join([*settings, 'exec "$@"']), "sh"]


@functools.cache
def user_namespaces() -> str:
    """Why a user namespace with its own inotify limits cannot be made here ("" when it can)."""
    if shutil.which("unshare") is None:
        return "sem o comando unshare (util-linux)"
    probe = subprocess.run([*limits_prefix(7), "cat", WATCHES], capture_output=True, text=True, timeout=10, check=False)
    if probe.returncode != 0 or probe.stdout.strip() != "7":
        return f"unshare -U recusado aqui: {probe.stderr.strip() or probe.stdout.strip()}"
    return ""


@functools.cache
def mount_namespaces() -> str:
    """Why a private mount namespace where tmpfs can be mounted cannot be made here ("" when it can)."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "sem os comandos unshare e nsenter (util-linux)"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt && umount /mnt"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return "" if probe.returncode == 0 else f"mount -t tmpfs recusado aqui: {probe.stderr.strip()}"


MOUNT_NAMESPACE_PREFIX = ["unshare", "-m", "--propagation", "private"]


def in_mounts_of(pid: int, *command: str) -> None:
    """Run ``command`` in the mount namespace of process ``pid`` (one started with MOUNT_NAMESPACE_PREFIX): its
    mounts vanish with that process, so a test that dies leaves none behind."""
    subprocess.run(["nsenter", "-t", str(pid), "-m", *command], check=True, timeout=10, capture_output=True)


def make_chain(top: Path, depth: int, name: str = "d") -> Path:
    """``top`` and ``depth - 1`` directories below it, each inside the previous, all named ``name``; returns the
    path of the deepest (which may be longer than PATH_MAX: use it through a directory fd)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth - 1):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return top.joinpath(*[name] * (depth - 1))


def create_at_depth(top: Path, depth: int, filename: str, name: str = "d") -> None:
    """Create the empty file ``filename`` in the directory ``depth - 1`` levels below ``top`` (see make_chain)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth - 1):
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open(filename, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def remove_deep(top: Path) -> None:
    """Remove ``top`` whatever its depth: every directory below it is first moved up to ``top`` under a name of its
    own, so the tree left is two levels deep."""
    if not top.exists():
        return
    count = 0
    queue = [entry.path for entry in os.scandir(top) if entry.is_dir(follow_symlinks=False)]
    while queue:
        directory = queue.pop()
        with os.scandir(directory) as entries:
            children = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        for child in children:
            flat = os.path.join(top, f".plano-{count}")
            count += 1
            os.rename(os.path.join(directory, child), flat)
            queue.append(flat)
    shutil.rmtree(top)
