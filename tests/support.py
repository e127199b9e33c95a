"""Helpers for the end-to-end tests: run the real scripts as subprocesses and watch their output.

Every wait polls a condition against a deadline and returns as soon as it holds; a wait
that times out raises AssertionError with the captured output of the process(es) involved.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

from websockets.sync.server import Server, ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = ROOT / "servidor.py"
CLIENT_SCRIPT = ROOT / "monitor_cliente.py"
LOOPBACK = "127.0.0.1"
TIMEOUT = 20.0  # generous for a loaded machine: every wait returns as soon as its condition holds
POLL_INTERVAL = 0.02
SHOWN_LINES = 80  # lines per stream quoted in a failure message

Stream = Literal["stdout", "stderr"]
LineMatch = str | re.Pattern[str] | Callable[[str], bool]

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ")
_LISTENING = re.compile(r"Servidor WebSocket ouvindo em ws://127\.0\.0\.1:(\d+)$")


def strip_ts(line: str) -> str:
    """``line`` without its ``YYYY-MM-DD HH:MM:SS `` prefix; AssertionError if it has none."""
    match = _TIMESTAMP.match(line)
    if match is None:
        raise AssertionError(f"line without a 'YYYY-MM-DD HH:MM:SS ' prefix: {line!r}")
    return line[match.end() :]


def has_ts(line: str) -> bool:
    return _TIMESTAMP.match(line) is not None


# The human size a server line ends with for a file of protocol 3 (servidor.human_size): `` (1,2 MB)``.
_SIZE = re.compile(r" \(\d+(?:,\d)? [kMGTPE]?B\)$")


def without_size(line: str) -> str:
    """``line`` without the file size the server appends (for tests about paths and kinds, not sizes)."""
    return _SIZE.sub("", line)


def _shown(line: str) -> str:
    return strip_ts(line) if has_ts(line) else line


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = TIMEOUT,
    describe: str | Callable[[], str] = "",
) -> None:
    """Poll ``predicate`` until it is true; AssertionError with ``describe`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            details = describe() if callable(describe) else describe
            raise AssertionError(f"condition not met within {timeout:g} s\n{details}")
        time.sleep(POLL_INTERVAL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def script_env(cache_dir: Path | None = None) -> dict[str, str]:
    """The scripts' environment; ``cache_dir`` keeps any per-user cache (XDG_CACHE_HOME) inside the test."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["XDG_CACHE_HOME"] = str(cache_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONUTF8"] = "1"  # same encodings whatever the machine's locale
    env.pop("PYTHONWARNINGS", None)
    return env


def _matcher(match: LineMatch) -> Callable[[str], bool]:
    """A str matches a line exactly once its timestamp (if any) is removed, with or without the file size the
    server appends (unless ``match`` names one); a pattern searches."""
    if isinstance(match, str):
        return lambda line: _shown(line) == match or without_size(_shown(line)) == match
    if isinstance(match, re.Pattern):
        pattern = match
        return lambda line: pattern.search(line) is not None
    return match


class Script:
    """One of the scripts running as a subprocess, its stdout and stderr read by background threads."""

    def __init__(
        self, label: str, script: Path, args: Sequence[str], cwd: Path, *, command_prefix: Sequence[str] = ()
    ) -> None:
        self.label = label
        # command_prefix: a command that runs the interpreter, e.g. setpriv to run as another user.
        self.argv = [*command_prefix, sys.executable, str(script), *args]
        self._cond = threading.Condition(threading.RLock())
        self._lines: dict[Stream, list[str]] = {"stdout": [], "stderr": []}
        self._raw: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._eof: dict[Stream, bool] = {"stdout": False, "stderr": False}
        self._closed = False
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=script_env(cwd / ".cache"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pipes: list[IO[bytes]] = [self.proc.stdout, self.proc.stderr]
        self._readers = [
            threading.Thread(target=self._read, args=(name, pipe), name=f"{label}-{name}", daemon=True)
            for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    # -- reading -----------------------------------------------------------

    def _read(self, stream: Stream, pipe: IO[bytes]) -> None:
        fd = pipe.fileno()
        partial = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *complete, partial = (partial + chunk).split(b"\n")
            with self._cond:
                self._raw[stream] += chunk
                # "replace", never "backslashreplace": a raw invalid byte must not pass for an escape.
                self._lines[stream].extend(line.decode("utf-8", "replace") for line in complete)
                self._cond.notify_all()
        with self._cond:
            if partial:
                self._lines[stream].append(partial.decode("utf-8", "replace"))
            self._eof[stream] = True
            self._cond.notify_all()

    def lines(self, stream: Stream = "stdout") -> list[str]:
        """Every complete line so far, without the newline."""
        with self._cond:
            return list(self._lines[stream])

    def stripped(self, stream: Stream = "stdout", *, sizes: bool = False) -> list[str]:
        """Every line so far without its timestamp prefix (each line must have one), and without the file size
        the server appends unless ``sizes``."""
        lines = [strip_ts(line) for line in self.lines(stream)]
        return lines if sizes else [without_size(line) for line in lines]

    def raw(self, stream: Stream = "stdout") -> bytes:
        """Exactly the bytes the process wrote so far."""
        with self._cond:
            return bytes(self._raw[stream])

    def json_events(self) -> list[dict[str, Any]]:
        """stdout parsed as one JSON object per line (``--json``)."""
        records: list[dict[str, Any]] = []
        for line in self.lines("stdout"):
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"stdout line is not JSON: {line!r}\n{self.describe()}") from None
            assert isinstance(record, dict), f"stdout line is not a JSON object: {line!r}"
            records.append(record)
        return records

    def describe(self) -> str:
        """The command, exit status and (the end of) both streams, for failure messages."""
        with self._cond:
            parts = [f"--- {self.label}: {' '.join(self.argv)} (exit code {self.proc.returncode})"]
            for stream in ("stdout", "stderr"):
                lines = self._lines[stream]
                skipped = max(0, len(lines) - SHOWN_LINES)
                parts.append(f"[{stream}: {len(lines)} lines" + (f", first {skipped} omitted]" if skipped else "]"))
                parts.extend(lines[skipped:])
        return "\n".join(parts)

    # -- waiting -----------------------------------------------------------

    def wait_for(self, check: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
        """Wait until ``check()`` (called with the output lock held) is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                if all(self._eof.values()):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(5)  # for the exit code in the message
                    raise AssertionError(f"{self.label} ended its output before {what}\n{self.describe()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.label}: no {what} within {timeout:g} s\n{self.describe()}")
                self._cond.wait(remaining)

    def wait_for_line(self, match: LineMatch, stream: Stream = "stdout", timeout: float = TIMEOUT) -> str:
        """The first line (already printed or still to come) that matches; see ``_matcher``."""
        matches = _matcher(match)
        found: list[str] = []

        def check() -> bool:
            line = next((line for line in self._lines[stream] if matches(line)), None)
            if line is not None:
                found.append(line)
            return line is not None

        shown = match if isinstance(match, str) else getattr(match, "pattern", match)
        self.wait_for(check, timeout, f"{stream} line matching {shown!r}")
        return found[0]

    def wait_for_lines(self, expected: Iterable[str], stream: Stream = "stdout", timeout: float = TIMEOUT) -> None:
        """Wait until every line of ``expected`` (compared without timestamps) has been printed."""
        wanted = set(expected)

        def seen_lines() -> set[str]:
            shown = [_shown(line) for line in self._lines[stream]]
            return {*shown, *map(without_size, shown)}

        def check() -> bool:
            return wanted <= seen_lines()

        def what() -> str:
            with self._cond:
                seen = seen_lines()
            missing = sorted(wanted - seen)
            return f"{len(missing)} of {len(wanted)} expected {stream} lines, e.g. {missing[:5]!r}"

        try:
            self.wait_for(check, timeout, f"{len(wanted)} expected {stream} lines")
        except AssertionError as exc:
            raise AssertionError(f"missing {what()}\n{exc}") from None

    # -- stopping ----------------------------------------------------------

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit on its own; its exit code (AssertionError on timeout)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.label} did not exit within {timeout:g} s\n{self.describe()}") from None
        self._close()
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Send ``sig`` (if still running) and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """Teardown: SIGKILL if still running, then reap it and close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        for reader in self._readers:
            reader.join(TIMEOUT)
        for pipe in self._pipes:
            pipe.close()
        self._closed = True

    def __enter__(self) -> Script:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class ServerProcess(Script):
    """``servidor.py --host 127.0.0.1 --port PORT [--json]``."""

    def __init__(self, cwd: Path, *, port: int = 0, json_output: bool = False, args: Sequence[str] = ()) -> None:
        argv = ["--host", LOOPBACK, "--port", str(port), *(["--json"] if json_output else []), *args]
        super().__init__("servidor", SERVER_SCRIPT, argv, cwd)
        self._port: int | None = None

    def wait_ready(self, timeout: float = TIMEOUT) -> int:
        """Wait for the "ouvindo em ws://127.0.0.1:PORT" log line; the port it names."""
        line = self.wait_for_line(_LISTENING, "stderr", timeout)
        match = _LISTENING.search(line)
        assert match is not None
        self._port = int(match.group(1))
        return self._port

    @property
    def port(self) -> int:
        if self._port is None:
            raise AssertionError("the server's port is unknown: call wait_ready() first")
        return self._port

    @property
    def uri(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    def wait_client(self, name: str, root: Path | str, timeout: float = TIMEOUT) -> str:
        """Wait until client ``name`` watching ``root`` has said hello; the 8-character id it showed."""
        pattern = re.compile(
            rf"cliente conectado: {re.escape(name)} \(id ([0-9a-f]{{8}}), 127\.0\.0\.1:\d+\) "
            rf"monitorando {re.escape(str(root))}$"
        )
        match = pattern.search(self.wait_for_line(pattern, "stderr", timeout))
        assert match is not None
        return match.group(1)


class ClientProcess(Script):
    """``monitor_cliente.py DIR --servidor URI --nome NAME``."""

    def __init__(
        self,
        cwd: Path,
        directory: Path | str,
        uri: str,
        name: str,
        args: Sequence[str] = (),
        *,
        command_prefix: Sequence[str] = (),
    ) -> None:
        super().__init__(
            f"cliente {name}",
            CLIENT_SCRIPT,
            [str(directory), "--servidor", uri, "--nome", name, *args],
            cwd,
            command_prefix=command_prefix,
        )
        self.name = name
        self.directory = str(directory)
        self.id_prefix: str | None = None


class StandInServer:
    """A websockets server on 127.0.0.1 in a thread, standing in for servidor.py where a test must see (or
    shape) exactly what the client sends; a subclass answers in ``_handler``. Use it as a context manager."""

    def __init__(self, thread_name: str) -> None:
        self._server: Server = serve(self._handler, LOOPBACK, 0)
        self._thread = threading.Thread(target=self._server.serve_forever, name=thread_name, daemon=True)

    @property
    def uri(self) -> str:
        return f"ws://{LOOPBACK}:{self._server.socket.getsockname()[1]}"

    def _handler(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(TIMEOUT)


def no_traceback(*scripts: Script) -> None:
    """No traceback reached a user: neither stream of any of ``scripts`` holds one."""
    for script in scripts:
        for stream in ("stdout", "stderr"):
            assert b"Traceback" not in script.raw(stream), script.describe()


class Processes:
    """Starts scripts for one test and kills whatever is left at teardown (the fixture's factory)."""

    def __init__(self, cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd
        self.started: list[Script] = []

    def server(
        self, *, port: int = 0, json_output: bool = False, args: Sequence[str] = (), wait: bool = True
    ) -> ServerProcess:
        """Start a server on 127.0.0.1:``port`` (0: any free port) and, by default, wait until it listens."""
        server = ServerProcess(self.cwd, port=port, json_output=json_output, args=args)
        self.started.append(server)
        if wait:
            server.wait_ready()
        return server

    def client(
        self,
        directory: Path | str,
        uri: str,
        name: str,
        *,
        connected_to: ServerProcess | None = None,
        args: Sequence[str] = (),
        command_prefix: Sequence[str] = (),
    ) -> ClientProcess:
        """Start a client; with ``connected_to``, wait until that server shows it connected.

        ``command_prefix`` runs it through another command (e.g. setpriv, as another user).
        """
        client = ClientProcess(self.cwd, directory, uri, name, args, command_prefix=command_prefix)
        self.started.append(client)
        if connected_to is not None:
            client.id_prefix = connected_to.wait_client(name, directory)
        return client

    def describe(self) -> str:
        return "\n".join(script.describe() for script in self.started)

    def cleanup(self) -> None:
        for script in reversed(self.started):
            script.kill()


def touch(path: Path | bytes) -> None:
    """Create an empty file: one "created" event and no "modified"."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def previous_state_text(root: str, server: str, tree: dict[str, Any]) -> str:
    """A state file as the client wrote it before it kept an identity (format 3, also 1.0.0's): the tree only."""
    return json.dumps({"version": 3, "root": root, "server": server, "tree": tree}, separators=(",", ":"))


def client_state(cache: Path) -> dict[str, Any]:
    """The one state file a client left under the cache folder ``cache`` (its XDG_CACHE_HOME), as JSON."""
    files = sorted((cache / "monitor_cliente").glob("*.json"))
    assert len(files) == 1, files
    state: dict[str, Any] = json.loads(files[0].read_text(encoding="ascii"))
    return state
