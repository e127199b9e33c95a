"""Issues 13 and 14, third round: the remaining kinds of defect the tester found, each as a test.

The real servidor.py on 127.0.0.1 (port 0), driven by raw WebSocket clients (helpers of test_trust.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from support import TIMEOUT, wait_until
from test_trust import ROOT, Client, RawServer, batch, event, frame_header, raw_servers, refused, start, ws_handshake
from test_trust import hello as hello_message
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

FAIL_COMMIT_ENV = (
    "SERVIDOR_TESTE_FALHA_COMMIT"  # servidor.FAIL_COMMIT_ENV: while the file it names exists, commits fail
)

__all__ = ["raw_servers"]  # the fixture, shared with test_trust.py


def digest(client: Client, seq: int, count: int = 0, total: int = 0) -> dict[str, object]:
    """Send a digest; the server's answer."""
    client.ws.send(json.dumps({"type": "digest", "seq": seq, "count": count, "sum": f"{total:016x}"}))
    answer: dict[str, object] = json.loads(client.ws.recv(TIMEOUT))
    return answer


# ---------------------------------------------------------------------------
# Subtrees follow the client's path style.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "moved"])
@pytest.mark.parametrize("database", [False, True], ids=["memory", "database"])
def test_windows_subtrees_go_with_their_directory(
    raw_servers: list[RawServer], tmp_path: Path, how: str, database: bool
) -> None:
    """A Windows client's directory deleted (or moved out and the destination deleted) takes its children."""
    args = ["--json", *(["--banco", str(tmp_path / "r.db")] if database else [])]
    server = start(raw_servers, tmp_path, args)
    client = Client(server.uri, root="C:\\w", path_style="windows")
    client.send(event(1, "C:\\w\\d", is_dir=True), event(2, "C:\\w\\d\\f"), event(3, "C:\\w\\d\\e", is_dir=True))
    client.send(event(4, "C:\\w\\d\\e\\g"))
    if how == "deleted":
        client.send(event(5, "C:\\w\\d", event="deleted", is_dir=True))
    else:
        client.send(event(5, "C:\\w\\d", event="moved", dest_path="C:\\w\\m", is_dir=True))
        client.send(event(6, "C:\\w\\m", event="deleted", is_dir=True))
    seq = 5 if how == "deleted" else 6
    answer = digest(client, seq)
    assert answer["type"] == "verified" and answer["count"] == 0, answer


# ---------------------------------------------------------------------------
# A digest spammer does not keep the writer thread summing trees.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", [False, True], ids=["memory", "database"])
def test_digest_spam_is_rate_limited(raw_servers: list[RawServer], tmp_path: Path, database: bool) -> None:
    """Digests sent back to back are computed at most once per DIGEST_MIN_INTERVAL (each is a full SQL sum on
    the writer thread every ack waits for): another client's acks go on, and each digest is still answered."""
    args = ["--json", "-v", *(["--banco", str(tmp_path / "r.db")] if database else [])]
    server = start(raw_servers, tmp_path, args)
    server.read_stdout()
    spammer = Client(server.uri)
    spammer.send(event(1))
    for _ in range(50):
        spammer.ws.send(json.dumps({"type": "digest", "seq": 1, "count": 1, "sum": "0" * 16}))
    honest = Client(server.uri)
    started = time.monotonic()
    for seq in range(1, 21):
        honest.send(event(seq))
    time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    computed = len(server.stderr_with("verificação de"))
    elapsed = time.monotonic() - started
    assert 1 <= computed <= 2 + elapsed / 2.0, server.describe()  # DIGEST_MIN_INTERVAL = 2 s; 50 without the limit
    answer = json.loads(spammer.ws.recv(TIMEOUT))  # answered, not refused: an honest client keeps working
    assert answer["type"] in ("verified", "resync"), answer


# ---------------------------------------------------------------------------
# The credential is committed before the welcome.
# ---------------------------------------------------------------------------


def test_welcome_waits_for_the_claim_commit(raw_servers: list[RawServer], tmp_path: Path) -> None:
    """No welcome while the first contact of a credential is not committed (a kill -9 would forget it): while
    commits fail the hello is refused with 1013 within CLAIM_TIMEOUT; once they work the claim is on disk."""
    flag = tmp_path / "falhar-commit"
    flag.touch()
    database = tmp_path / "r.db"
    server = start(raw_servers, tmp_path, ["--json", "--banco", str(database)], env={FAIL_COMMIT_ENV: str(flag)})
    server.read_stdout()
    client_id, secret = uuid.uuid4().hex, secrets.token_hex(16)
    started = time.monotonic()
    code, reason = refused(server.uri, hello_message(client_id, secret), timeout=TIMEOUT + 15)
    assert code == 1013 and "tente mais tarde" in reason, (code, reason, server.describe())
    assert time.monotonic() - started < 15
    flag.unlink()
    client = Client(server.uri, client_id, secret)  # the retry: welcome only once the claim is committed
    with contextlib.closing(sqlite3.connect(database)) as conn:
        (stored,) = conn.execute("SELECT secret_hash FROM clients WHERE client_id = ?", (client_id,)).fetchone()
    assert stored == hashlib.sha256(secret.encode("ascii")).digest()
    client.send(event(1))


# ---------------------------------------------------------------------------
# A global budget of bytes awaiting their commit.
# ---------------------------------------------------------------------------


def test_bytes_awaiting_commit_have_a_global_budget(raw_servers: list[RawServer], tmp_path: Path) -> None:
    """While commits fail, each connection may have MAX_PENDING_BATCHES batches in memory; over all connections
    the bytes awaiting their commit stay under MAX_PENDING_BYTES (64 MiB): past it the server stops reading
    every connection, and once commits work again everything is acknowledged."""
    flag = tmp_path / "falhar-commit"
    database = tmp_path / "r.db"
    server = start(raw_servers, tmp_path, ["-v", "--banco", str(database)], env={FAIL_COMMIT_ENV: str(flag)})
    server.read_stdout()
    clients = [Client(server.uri) for _ in range(6)]  # their credentials committed
    flag.touch()
    long = "p" * 900

    def flood(client: Client) -> None:
        for b in range(16):
            client.ws.send(batch(*[event(b * 1000 + n + 1, f"{ROOT}/{long}{n}") for n in range(1000)]))

    threads = [threading.Thread(target=flood, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    wait_until(lambda: bool(server.stderr_with("leitura pausada")), describe=server.describe)
    flag.unlink()
    for thread in threads:
        thread.join(TIMEOUT)
    for client in clients:
        while (answer := json.loads(client.ws.recv(TIMEOUT * 3)))["seq"] != 16_000:
            assert answer["type"] == "ack", answer


# ---------------------------------------------------------------------------
# An incomplete message after the hello times out too.
# ---------------------------------------------------------------------------


def test_incomplete_message_after_hello_times_out(raw_servers: list[RawServer], tmp_path: Path) -> None:
    """A frame begun after a valid hello and never finished (memory held for nothing) closes the connection
    with 1008 after --open-timeout seconds, like a half-sent hello; an idle client is not closed."""
    server = start(raw_servers, tmp_path, ["--json", "--open-timeout", "1"])
    server.read_stdout()
    idle = Client(server.uri)
    assert server.port is not None
    sock = ws_handshake(server.port)
    message = hello_message(uuid.uuid4().hex, secrets.token_hex(16), root=ROOT).encode()
    sock.sendall(frame_header(len(message)) + message)
    sock.settimeout(TIMEOUT)
    received = b""
    while b"welcome" not in received:
        received += sock.recv(65536)
    sock.sendall(frame_header(500_000) + b"a" * 100_000)  # a batch that never ends
    started = time.monotonic()
    with contextlib.suppress(OSError):
        while b"incompleta" not in received and (chunk := sock.recv(65536)):
            received += chunk
    sock.close()
    assert b"welcome" in received and b"\x88" in received and b"\x03\xf0" in received, received[-200:]  # 1008
    assert b"incompleta" in received and time.monotonic() - started < 10
    idle.send(event(1))  # an idle connection with nothing half-sent lives on


# ---------------------------------------------------------------------------
# Paths: only normalised ones, and a path_b64 that says what the path shows.
# ---------------------------------------------------------------------------


def closed_with(client: Client, *events: dict[str, object]) -> tuple[int, str]:
    client.ws.send(batch(*events))
    try:
        answer = client.ws.recv(TIMEOUT)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError(f"not refused; the server answered {answer!r}")


POSIX_UNNORMALISED = [f"{ROOT}/", f"{ROOT}//x", f"{ROOT}/./x", f"{ROOT}/x/", f"{ROOT}/x/.", "//home/x/y"]
WINDOWS_UNNORMALISED = ["C:\\w\\", "C:\\w\\\\x", "C:\\w\\.\\x", "C:\\w\\x\\", "C:\\w\\x\\."]


@pytest.mark.parametrize("database", [False, True], ids=["memory", "database"])
def test_unnormalised_and_mismatched_paths_are_refused(
    raw_servers: list[RawServer], tmp_path: Path, database: bool
) -> None:
    """One file, one name in the tree: "/w/x/" or "/w//x" would be a second entry for "/w/x" (never deleted
    with it). A path_b64 whose bytes, shown as \\xNN, are not the path would print one name and store another."""
    args = ["--json", *(["--banco", str(tmp_path / "r.db")] if database else [])]
    server = start(raw_servers, tmp_path, args)
    for path in POSIX_UNNORMALISED:
        code, reason = closed_with(Client(server.uri), event(1, path))
        assert code == 1008 and "não normalizado" in reason, (path, code, reason)
    for path in WINDOWS_UNNORMALISED:
        client = Client(server.uri, root="C:\\w", path_style="windows")
        code, reason = closed_with(client, event(1, path))
        assert code == 1008 and "não normalizado" in reason, (path, code, reason)
    hidden = base64.b64encode(f"{ROOT}/outro_\xff".encode("latin-1")).decode()
    code, reason = closed_with(Client(server.uri), event(1, f"{ROOT}/b_\\xff", path_b64=hidden))
    assert code == 1008 and "path_b64" in reason, (code, reason)
    good = base64.b64encode(f"{ROOT}/b_".encode() + b"\xff").decode()
    fine = Client(server.uri)
    fine.send(event(1, f"{ROOT}/b_\\xff", path_b64=good), event(2, f"{ROOT}/.oculto"), event(3, f"{ROOT}/a..b"))
    windows = Client(server.uri, root="C:\\w", path_style="windows")
    windows.send(event(1, "C:\\w\\a"), event(2, "C:/w/b"), event(3, "C:\\w"))


# ---------------------------------------------------------------------------
# Line and paragraph separators are escaped in the readable output.
# ---------------------------------------------------------------------------


def test_line_separators_are_escaped(raw_servers: list[RawServer], tmp_path: Path, servidor: ModuleType) -> None:
    """U+2028/U+2029 break the line in many terminals and log viewers: a file name cannot forge a second line.
    The escape table is shared (monitor_cliente.py has the same one, tests/test_shared.py)."""
    assert servidor.escape("a\u2028b\u2029c") == "a\\u2028b\\u2029c"
    server = start(raw_servers, tmp_path, [])
    client = Client(server.uri)
    client.send(event(1, f"{ROOT}/a\u2028[12:00:00] falso\u2029b"))
    server.read_stdout()
    wait_until(lambda: b"falso" in server.stdout_data, describe=server.describe)
    text = server.stdout_data.decode()
    assert "\u2028" not in text and "\u2029" not in text and "a\\u2028[12:00:00] falso\\u2029b" in text, text


# ---------------------------------------------------------------------------
# Plain text messages shown but not stored: said once, not silently.
# ---------------------------------------------------------------------------


def test_full_text_backlog_is_said_once(raw_servers: list[RawServer], tmp_path: Path) -> None:
    """While commits fail, past MAX_PENDING_TEXTS (10,000) waiting texts the rest are shown but not stored:
    one stderr line says so (rate-limited: not one per message)."""
    flag = tmp_path / "falhar-commit"
    flag.touch()
    server = start(raw_servers, tmp_path, ["--banco", str(tmp_path / "r.db")], env={FAIL_COMMIT_ENV: str(flag)})
    server.read_stdout()
    with connect(server.uri, open_timeout=TIMEOUT, close_timeout=2) as ws:
        for n in range(10_300):
            ws.send(f"texto {n}")
        ws.send("último")
        wait_until(lambda: "último".encode() in server.stdout_data, describe=server.describe)
    lines = server.stderr_with("sem ser gravadas")
    assert len(lines) == 1 and "Aviso: " in lines[0], server.describe()


def test_websockets_still_shows_a_partial_message(servidor: ModuleType) -> None:
    """The incomplete-message timeout reads two non-public attributes of websockets' Protocol: if a release
    changes them the server only loses that timeout (said at -v); this test says so loudly."""
    from websockets.server import ServerProtocol

    assert servidor.partial_message_visible(ServerProtocol())
