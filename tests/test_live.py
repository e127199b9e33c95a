"""The live page's server side without a browser: the HTTP answers on the server's port and /ao-vivo spoken by raw
websockets clients against the real servidor.py (README, "A página ao vivo")."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import re
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import LOOPBACK, TIMEOUT, Processes, ServerProcess, touch, wait_until
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

ROOT = "/home/ana/w"
TS = "2026-11-29T14:23:51.123+00:00"
MTIME = "2026-11-29T14:23:50.000001+00:00"
VIEWER = "/ao-vivo"
NOT_LOCAL = "nome de host não permitido sem token"
_PAGE_LINE = re.compile(r"Página ao vivo: (http://127\.0\.0\.1:\d+/)$")


def page_url(server: ServerProcess) -> str:
    """The page's address, from the server's start-up line."""
    match = _PAGE_LINE.search(server.wait_for_line(_PAGE_LINE, "stderr"))
    assert match is not None
    return match.group(1)


def viewer(server: ServerProcess, **options: Any) -> ClientConnection:
    return connect(
        f"{server.uri}{VIEWER}", open_timeout=TIMEOUT, close_timeout=2, max_size=None, legacy=True, **options
    )


def receive(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout))
    return message


def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Read until the server closes: its (code, reason)."""
    try:
        while True:
            ws.recv(timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason


def get(server: ServerProcess, path: str, method: str = "GET", **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=TIMEOUT)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


class ProtocolClient:
    """A monitor client of protocol 3 written here: hello, batches of events, their acks."""

    def __init__(self, server: ServerProcess, name: str = "notebook", root: str = ROOT) -> None:
        self.client_id = uuid.uuid4().hex
        self.ws = connect(server.uri, open_timeout=TIMEOUT, close_timeout=2, max_size=None, legacy=True)
        hello = {"type": "hello", "version": 3, "client_id": self.client_id, "name": name, "root": root}
        self.ws.send(json.dumps(hello | {"secret": secrets.token_hex(16)}))
        assert receive(self.ws)["type"] == "welcome"
        self.seq = 0

    def send(self, *events: dict[str, Any]) -> None:
        """One batch (each event numbered here); waits for its ack."""
        for ev in events:
            self.seq += 1
            ev["seq"] = self.seq
        self.ws.send(json.dumps({"type": "events", "events": list(events)}))
        assert receive(self.ws) == {"type": "ack", "seq": self.seq}


def event(path: str, kind: str = "created", **extra: Any) -> dict[str, Any]:
    ev = {"event": kind, "path": path, "is_dir": False, "type": "file", "size": 1234, "mtime": MTIME, "mode": "0644"}
    return ev | {"ts": TS, "origin": "live"} | extra


@pytest.fixture
def server(procs: Processes) -> ServerProcess:
    return procs.server()


# ---------------------------------------------------------------------------
# The HTTP side: the page's files, nothing else.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/", "text/html"), ("/pagina.js", "text/javascript"), ("/pagina.css", "text/css"), ("/?x=1", "text/html")],
)
def test_the_page_files_are_served_with_strict_headers(
    servidor: ModuleType, server: ServerProcess, path: str, content_type: str
) -> None:
    response = get(server, path)
    assert response.status == 200
    assert response.getheader("Content-Type") == f"{content_type}; charset=utf-8"
    assert response.getheader("Content-Security-Policy") == servidor.PAGE_CSP
    assert "script-src 'self'" in servidor.PAGE_CSP and "unsafe-inline" not in servidor.PAGE_CSP
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Cache-Control") == "no-cache"
    assert len(response.headers.get_all("Content-Length") or []) == 1
    etag = response.getheader("ETag")
    assert etag and re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = get(server, path, **{"If-None-Match": etag})
    assert again.status == 304 and again.getheader("ETag") == etag
    assert get(server, path, **{"If-None-Match": '"outro"'}).status == 200


def test_the_page_is_the_script_s_own_files(servidor: ModuleType, server: ServerProcess) -> None:
    for path, (_, text) in servidor.PAGE_FILES.items():
        conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=TIMEOUT)
        conn.request("GET", path)
        assert conn.getresponse().read() == text.encode("utf-8")
        conn.close()


@pytest.mark.parametrize("path", ["/nada", "/ao-vivo", "/pagina.js/", "/../servidor.py", "/index.html"])
def test_other_paths_get_404(server: ServerProcess, path: str) -> None:
    response = get(server, path)
    assert response.status == 404
    assert response.getheader("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_get_405(server: ServerProcess, method: str) -> None:
    response = get(server, "/", method)
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"


@pytest.mark.parametrize("path", ["/", "/pagina.js", "/pagina.css", "/nada"])
def test_head_answers_like_get_without_a_body(server: ServerProcess, path: str) -> None:
    full = get(server, path)
    conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=TIMEOUT)
    conn.request("HEAD", path)
    head = conn.getresponse()
    assert head.read() == b""
    conn.close()
    assert head.status == full.status
    for name in ("Content-Type", "Content-Length", "ETag", "Content-Security-Policy", "X-Content-Type-Options"):
        assert head.getheader(name) == full.getheader(name), name


def test_a_monitor_client_still_connects_on_the_same_port_and_path(server: ServerProcess) -> None:
    client = ProtocolClient(server)
    client.send(event(f"{ROOT}/a.txt"))
    server.wait_for_line(re.compile(r"\[notebook\] arquivo criado: /home/ana/w/a\.txt \(1,2 kB\)$"))


def test_the_start_up_line_gives_the_page_s_address(server: ServerProcess) -> None:
    assert page_url(server) == f"http://127.0.0.1:{server.port}/"


# ---------------------------------------------------------------------------
# /ao-vivo: who may watch.
# ---------------------------------------------------------------------------


def test_a_local_viewer_without_token_gets_the_state_at_once(server: ServerProcess) -> None:
    with viewer(server) as ws:
        state = receive(ws)
    assert state["type"] == "state"
    assert state["server"] == {"version": "1.0.0", "protocol": 3, "database": False, "token": False}
    assert state["clients"] == [] and state["events"] == []


def test_another_site_s_page_is_refused_and_the_page_s_own_origin_allowed(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        viewer(server, origin=Origin("http://evil.example"))
    assert refused.value.response.status_code == 403
    with viewer(server, origin=Origin(f"http://{LOOPBACK}:{server.port}")) as ws:
        assert receive(ws)["type"] == "state"


def test_without_token_a_foreign_host_name_is_closed_4403_with_how_to_allow_it(server: ServerProcess) -> None:
    """DNS rebinding (evil.example resolving to 127.0.0.1) or a page opened from another machine: the handshake is
    accepted so that the page can show why, then closed at once with 4403, nothing sent before; the refusals of a
    retrying page are one stderr line per WARNING_INTERVAL, not one per attempt."""
    for host in ("evil.example", "127.0.0.1.nip.io", "meu-servidor.example"):
        sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
        with connect(
            f"ws://{host}:{server.port}{VIEWER}", sock=sock, origin=Origin(f"http://{host}:{server.port}")
        ) as ws:
            code, reason = closed_with(ws)  # no message before the close: closed_with would fail on none
        assert code == 4403 and "--token" in reason and "só atende esta máquina" in reason
    for host in ("localhost", "127.0.0.2", "[::1]"):
        sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
        with connect(f"ws://{host}:{server.port}{VIEWER}", sock=sock) as ws:
            assert receive(ws)["type"] == "state"
    refusals = [line for line in server.lines("stderr") if "recusad" in line]
    assert len(refusals) == 1, refusals


def test_without_token_nothing_reaches_a_foreign_host_name_before_the_close(server: ServerProcess) -> None:
    sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
    with connect(f"ws://evil.example:{server.port}{VIEWER}", sock=sock) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_with_a_token_nothing_is_sent_before_it_and_a_wrong_one_is_closed_4401(procs: Processes) -> None:
    token = "s3gredo-da-pagina-" + secrets.token_hex(4)
    server = procs.server(args=["--token", token])
    bearer = {"Authorization": f"Bearer {token}"}
    client = connect(server.uri, additional_headers=bearer, open_timeout=TIMEOUT, legacy=True)
    client.send("oi do cliente")  # a plain text message: stored, and a page would see it
    server.wait_for_line(re.compile(r"mensagem: oi do cliente$"))
    # The header rule is the monitor clients': a page's /ao-vivo is asked in-band, header or not.
    with viewer(server, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert receive(ws) == {"type": "auth_required"}
        with pytest.raises(TimeoutError):
            ws.recv(0.5)  # nothing else before the token
        wrong = "errado-" + secrets.token_hex(4)
        ws.send(json.dumps({"type": "auth", "token": wrong}))
        assert closed_with(ws) == (4401, "token ausente ou inválido")
    for message in ("lixo", json.dumps({"type": "tree", "id": 1, "client_id": "x", "path": "/"})):
        with viewer(server) as ws:
            assert receive(ws) == {"type": "auth_required"}
            ws.send(message)
            assert closed_with(ws)[0] == 4401
    with viewer(server) as ws:
        assert receive(ws) == {"type": "auth_required"}
        ws.send(json.dumps({"type": "auth", "token": token}))
        state = receive(ws)
        assert state["type"] == "state" and state["server"]["token"] is True
        assert [ev["text"] for ev in state["events"]] == ["oi do cliente"]
    assert wrong not in server.raw("stderr").decode() and token not in server.raw("stderr").decode()
    refusals = [line for line in server.lines("stderr") if "páginas ao vivo recusadas" in line]
    assert len(refusals) == 1, refusals  # three refused pages, one line a minute (a page retries every few s)
    client.close()


def test_with_a_token_the_host_name_is_not_checked(procs: Processes) -> None:
    server = procs.server(args=["--token", "t0ken"])
    sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
    with connect(f"ws://meu-servidor.example:{server.port}{VIEWER}", sock=sock) as ws:
        assert receive(ws) == {"type": "auth_required"}


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("::ffff:127.0.0.1", True), ("::ffff:127.8.0.1", True), ("::1", True),
     ("localhost", True), ("LOCALHOST", True), ("::ffff:8.8.8.8", False), ("::", False), ("0.0.0.0", False),
     ("evil.example", False)],
)  # fmt: skip
def test_loopback_peers_include_ipv4_mapped_ones(servidor: ModuleType, host: str, expected: bool) -> None:
    assert servidor.is_loopback(host) is expected


@pytest.mark.parametrize(
    ("headers", "token", "expected"),
    [
        ({"Host": "localhost:8765"}, "", None),
        ({"Host": "127.0.0.1:8765", "Origin": "http://127.0.0.1:8765"}, "", None),
        ({"Host": "[::1]:8765", "Origin": "http://[::1]:8765"}, "", None),
        ({"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}, "", None),  # 4403 in the session
        ({"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}, "t", None),
        ({"Host": "localhost:8765", "Origin": "http://evil.example"}, "t", (403, "origem não permitida")),
        ({"Host": "localhost:8765", "Authorization": "Bearer errado"}, "t", None),  # the token goes in-band
        ({}, "", None),
    ],
)  # fmt: skip
def test_check_viewer(
    servidor: ModuleType, headers: dict[str, str], token: str, expected: tuple[int, str] | None
) -> None:
    assert servidor.check_viewer(Headers(headers), token) == expected


@pytest.mark.parametrize(
    ("address", "token", "refused"),
    [(("127.0.0.1", 1), "", False), (("::ffff:127.0.0.1", 1, 0, 0), "", False), (("::1", 1, 0, 0), "", False),
     (("203.0.113.5", 1), "", True), (("2001:db8::1", 1, 0, 0), "", True), (("203.0.113.5", 1), "t", False)],
)  # fmt: skip
def test_without_token_a_viewer_on_another_machine_is_refused(
    servidor: ModuleType, address: tuple[Any, ...], token: str, refused: bool
) -> None:
    """(Documentation addresses, RFC 5737 and RFC 3849: never connected to.) The session closes such a page with
    4403 and a reason the page shows."""
    assert servidor.remote_viewer_refused(address, token) is refused
    assert servidor.remote_viewer_refused(address, token, "evil.example:8765") is not bool(token)


def test_the_warning_for_a_non_local_host_without_token_says_how_to_allow_remote_viewing(
    servidor: ModuleType,
) -> None:
    assert servidor.page_url("0.0.0.0", 8765) == "http://localhost:8765/"
    assert servidor.page_url("localhost", 8765, secure=True) == "https://localhost:8765/"
    assert servidor.page_url("::1", 9) == "http://[::1]:9/"


# ---------------------------------------------------------------------------
# /ao-vivo: what a page gets.
# ---------------------------------------------------------------------------


def test_events_reach_a_viewer_byte_for_byte_as_the_json_lines(procs: Processes) -> None:
    server = procs.server(json_output=True)
    client = ProtocolClient(server, name="<b>nb</b>")
    client.send(event(f"{ROOT}/antes.txt"))
    with viewer(server) as ws:
        state = receive(ws)
        assert [c["client"] for c in state["clients"]] == ["<b>nb</b>"]
        assert state["clients"][0]["connected"] is True and state["clients"][0]["events"] == 1
        assert [ev["path"] for ev in state["events"]] == [f"{ROOT}/antes.txt"]
        names = [f"{ROOT}/a\u202egnp.exe", f'{ROOT}/"><img src=x onerror=alert(1)>.txt', f"{ROOT}/ç\x1b[31m"]
        client.send(*(event(name) for name in names))
        client.send(event(f"{ROOT}/b", "moved", dest_path=f"{ROOT}/c"))
        first, second = ws.recv(TIMEOUT), ws.recv(TIMEOUT)
        server.wait_for(lambda: len(server.lines()) == 5)
        lines = server.lines()
        assert first == '{"type": "events", "events": [' + ", ".join(lines[1:4]) + "]}"
        assert second == '{"type": "events", "events": [' + lines[4] + "]}"
        client.ws.close()
        change = receive(ws)
        assert change["type"] == "client" and change["client"]["connected"] is False
        assert change["client"]["events"] == 5 and change["client"]["address"] is None


def test_a_text_message_reaches_a_viewer_as_its_json_record(procs: Processes) -> None:
    server = procs.server(json_output=True)
    with viewer(server) as ws:
        assert receive(ws)["type"] == "state"
        with connect(server.uri) as plain:
            plain.send("olá <b>")
            message = ws.recv(TIMEOUT)
        server.wait_for(lambda: len(server.lines()) == 1)
        assert message == '{"type": "events", "events": [' + server.lines()[0] + "]}"


@pytest.mark.parametrize("database", [False, True], ids=["memoria", "banco"])
def test_tree_and_history_come_from_the_record(procs: Processes, tmp_path: Path, database: bool) -> None:
    server = procs.server(args=["--banco", str(tmp_path / "e.db")] if database else [])
    client = ProtocolClient(server)
    bad = base64.b64encode(ROOT.encode() + b"/ruim_\xff").decode()
    client.send(
        event(f"{ROOT}/docs", is_dir=True, type="dir", size=None),
        event(f"{ROOT}/docs/nota.md", size=10),
        event(f"{ROOT}/docs/fundo/x/y.txt"),  # a directory that has no row of its own (created by a resync, a v1)
        event(f"{ROOT}/leia.txt", size=2500),
        event(f"{ROOT}/docs.txt"),
        event(f"{ROOT}/ruim_\\xff", path_b64=bad),
        event(f"{ROOT}/velho.md", size=12),
    )
    client.send(event(f"{ROOT}/docs/nota.md", "modified", size=11))
    client.send(event(f"{ROOT}/velho.md", "moved", dest_path=f"{ROOT}/docs/nota.md"))
    with viewer(server) as ws:
        assert receive(ws)["type"] == "state"
        ws.send(json.dumps({"type": "tree", "id": 7, "client_id": client.client_id, "path": ROOT}))
        tree = receive(ws)
        assert {k: tree[k] for k in ("type", "id", "client_id", "path", "truncated")} == {
            "type": "tree", "id": 7, "client_id": client.client_id, "path": ROOT, "truncated": False
        }  # fmt: skip
        shown = [(e["name"], e["type"], e.get("size"), e.get("name_b64")) for e in tree["entries"]]
        assert shown == [
            ("docs", "dir", None, None),
            ("docs.txt", "file", 1234, None),
            ("leia.txt", "file", 2500, None),
            ("ruim_\\xff", "file", 1234, base64.b64encode(b"ruim_\xff").decode()),
        ]
        assert tree["entries"][2]["mtime"] == MTIME and tree["entries"][2]["path"] == f"{ROOT}/leia.txt"
        ws.send(json.dumps({"type": "tree", "id": 8, "client_id": client.client_id, "path": f"{ROOT}/docs"}))
        inner = receive(ws)
        assert [(e["name"], e["type"]) for e in inner["entries"]] == [("fundo", "dir"), ("nota.md", "file")]
        assert "size" not in inner["entries"][0] and "mtime" not in inner["entries"][0]
        request = {"type": "history", "id": 9, "client_id": client.client_id, "path": f"{ROOT}/docs/nota.md"}
        ws.send(json.dumps(request))
        history = receive(ws)
        assert history["id"] == 9 and history["truncated"] is False
        assert [(ev["event"], ev["seq"]) for ev in history["events"]] == [("moved", 9), ("modified", 8), ("created", 2)]
        ws.send(json.dumps(request | {"id": 10, "path": f"{ROOT}/ruim_\\xff", "path_b64": bad}))
        assert [ev["seq"] for ev in receive(ws)["events"]] == [6]
        ws.send(json.dumps(request | {"id": 11, "path": f"{ROOT}/ruim_\\xff"}))  # the text alone: another path
        assert receive(ws)["events"] == []
        ws.send(json.dumps(request | {"id": 12, "client_id": "f" * 32}))
        assert receive(ws) == {"type": "error", "message": "cliente desconhecido", "id": 12}


def test_a_long_directory_is_cut_and_says_so(servidor: ModuleType, server: ServerProcess) -> None:
    client = ProtocolClient(server)
    count = servidor.VIEWER_MAX_ENTRIES + 5
    for first in range(0, count, 500):
        client.send(*(event(f"{ROOT}/f{n:05d}") for n in range(first, min(count, first + 500))))
    with viewer(server) as ws:
        assert receive(ws)["type"] == "state"
        ws.send(json.dumps({"type": "tree", "id": 1, "client_id": client.client_id, "path": ROOT}))
        tree = receive(ws)
    assert tree["truncated"] is True and len(tree["entries"]) == servidor.VIEWER_MAX_ENTRIES
    assert tree["entries"][0]["name"] == "f00000"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("lixo", 1008),
        (json.dumps({"type": "apagar", "id": 1}), 1008),
        (json.dumps({"type": "tree", "id": 0, "client_id": "x", "path": "/"}), 1008),
        (json.dumps({"type": "tree", "id": 1, "client_id": "x"}), 1008),
        (b"\x00\x01", 1003),
    ],  # an 'auth' to a tokenless server is answered, not closed: test_a_tokenless_server_tells_...
    ids=["nao-json", "tipo-desconhecido", "id-zero", "sem-caminho", "binaria"],
)
def test_a_bad_viewer_message_closes_only_that_viewer(server: ServerProcess, message: str | bytes, code: int) -> None:
    client = ProtocolClient(server)
    with viewer(server) as ws, viewer(server) as other:
        assert receive(ws)["type"] == "state" and receive(other)["type"] == "state"
        ws.send(message)
        assert closed_with(ws)[0] == code
        client.send(event(f"{ROOT}/depois.txt"))
        assert receive(other)["events"][0]["path"] == f"{ROOT}/depois.txt"
    assert "lixo" not in server.raw("stderr").decode()


def test_a_viewer_that_never_reads_gets_omitted_and_a_fresh_state_and_slows_no_client(
    servidor: ModuleType, server: ServerProcess
) -> None:
    """The server's queue for one page stays bounded; the monitor client's acks keep coming meanwhile."""
    client = ProtocolClient(server)
    stalled = viewer(server, max_queue=1)  # reads one message, then leaves the rest in TCP
    assert receive(stalled)["type"] == "state"
    long = "d" * 1500
    started = time.monotonic()
    sent = 0
    while sent * 1600 < 3 * servidor.VIEWER_BACKLOG_BYTES + 16 * 1024 * 1024:  # past the backlog and the buffers
        client.send(*(event(f"{ROOT}/{long}/{sent + n}") for n in range(400)))  # each waits for its ack
        sent += 400
    elapsed = time.monotonic() - started
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not any(m["type"] == "state" for m in messages[1:]) and time.monotonic() < deadline:
        messages.append(receive(stalled))
    kinds = [m["type"] for m in messages]
    assert "omitted" in kinds, kinds
    omitted = kinds.index("omitted")
    assert kinds[omitted + 1] == "state"
    assert messages[omitted]["count"] > 0
    assert len(messages[omitted + 1]["events"]) == servidor.VIEWER_RECENT_EVENTS
    stalled.close()
    assert sent > 0 and elapsed < 10 * TIMEOUT


def test_too_many_viewers_are_told_to_try_later(servidor: ModuleType, server: ServerProcess) -> None:
    opened = [viewer(server) for _ in range(servidor.MAX_VIEWERS)]
    try:
        for ws in opened:
            assert receive(ws)["type"] == "state"
        with viewer(server) as extra:
            assert closed_with(extra) == (1013, "muitas páginas abertas; tente mais tarde")
        opened.pop().close()
        wait_until(lambda: _opens(server))
    finally:
        for ws in opened:
            ws.close()


def test_silent_sockets_before_the_token_do_not_count_against_the_viewer_cap(
    servidor: ModuleType, procs: Processes
) -> None:
    token = "t0ken-" + secrets.token_hex(4)
    server = procs.server(args=["--token", token])
    silent = [viewer(server) for _ in range(servidor.MAX_VIEWERS + 1)]
    try:
        for ws in silent:
            assert receive(ws) == {"type": "auth_required"}
        with viewer(server) as ws:
            assert receive(ws) == {"type": "auth_required"}
            ws.send(json.dumps({"type": "auth", "token": token}))
            assert receive(ws)["type"] == "state"
    finally:
        for ws in silent:
            ws.close()


def _opens(server: ServerProcess) -> bool:
    with viewer(server) as ws:
        try:
            return bool(receive(ws, 2)["type"] == "state")
        except ConnectionClosed:
            return False


def test_recent_clients_and_events_come_from_the_record_after_a_restart(procs: Processes, tmp_path: Path) -> None:
    database = str(tmp_path / "e.db")
    first = procs.server(args=["--banco", database])
    client = ProtocolClient(first, name="antigo")
    client.send(event(f"{ROOT}/a.txt"), event(f"{ROOT}/b.txt"))
    client.ws.close()
    assert first.stop() == 0
    second = procs.server(args=["--banco", database])
    with viewer(second) as ws:
        state = receive(ws)
    assert [(c["client"], c["connected"], c["events"], c["address"]) for c in state["clients"]] == [
        ("antigo", False, 2, None)
    ]
    assert [ev["path"] for ev in state["events"]] == [f"{ROOT}/a.txt", f"{ROOT}/b.txt"]  # read once from the record
    assert state["server"]["database"] is True


def test_a_touched_file_on_a_real_client_reaches_a_viewer(procs: Processes, watched: Path) -> None:
    server = procs.server()
    procs.client(watched, server.uri, "notebook", connected_to=server)
    with viewer(server) as ws:
        assert [c["client"] for c in receive(ws)["clients"]] == ["notebook"]
        touch(watched / "novo.txt")
        deadline = time.monotonic() + TIMEOUT
        paths: list[str] = []
        while f"{watched}/novo.txt" not in paths and time.monotonic() < deadline:
            message = receive(ws)
            paths += [ev["path"] for ev in message.get("events", [])]
        assert f"{watched}/novo.txt" in paths


def test_the_page_files_hold_no_inline_script_or_style(servidor: ModuleType) -> None:
    """The CSP refuses inline code; this says so before a browser does (and keeps names out of innerHTML)."""
    html = servidor.PAGE_HTML
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html and " style=" not in html and re.search(r"\son\w+=", html) is None
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in servidor.PAGE_JS
    assert "localStorage" not in servidor.PAGE_JS


def test_a_repeated_host_header_gets_400(servidor: ModuleType) -> None:
    twice = Headers([("Host", "localhost:8765"), ("Host", "evil.example:8765")])
    assert servidor.check_viewer(twice, "") == (400, "cabeçalho repetido")
    assert servidor.check_request(Headers([*twice.raw_items(), ("Origin", "http://localhost:8765")]), "") == (
        400,
        "cabeçalho repetido",
    )


def test_a_viewer_queue_merges_what_waits_and_stays_bounded(servidor: ModuleType) -> None:
    """ViewerQueue alone: events waiting for a page are merged into one message; past VIEWER_BACKLOG_BYTES they
    become ``omitted`` with their exact count and a fresh state; the bytes it counts go back to 0 once sent."""
    sent: list[bytes] = []

    class Sink:  # what the queue uses of a connection: send, and its address for a log line
        remote_address = (LOOPBACK, 1)

        async def send(self, data: bytes, text: bool | None = None) -> None:
            assert text is True
            sent.append(data)

    async def scenario() -> Any:
        queue = servidor.ViewerQueue(Sink(), lambda: '{"type": "state"}')
        queue.put_events(["1", "2"], b'{"type": "events", "events": [1, 2]}')
        queue.put_events(["3"], b'{"type": "events", "events": [3]}')  # the page is behind: merged
        sender = asyncio.create_task(queue.run())
        await asyncio.sleep(0.01)
        assert sent == [b'{"type": "events", "events": [1, 2, 3]}'] and queue._size == 0
        half = b"x" * (servidor.VIEWER_BACKLOG_BYTES // 2 + 1)
        queue.put_events(["a"], half)
        queue.put_events(["b", "c"], half)  # past the limit: both batches omitted
        queue.put_events(["d"], b'{"type": "events", "events": ["d"]}')
        await asyncio.sleep(0.01)
        sender.cancel()
        return queue

    queue = asyncio.run(scenario())
    assert sent[1:] == [
        b'{"type": "omitted", "count": 3}',
        b'{"type": "state"}',
        b'{"type": "events", "events": ["d"]}',
    ]
    assert queue.omitted == 3 and queue._size == 0


def test_without_token_a_browser_s_monitor_handshake_needs_a_loopback_host_name(server: ServerProcess) -> None:
    """DNS rebinding on the monitor path: a page of evil.example (resolved to 127.0.0.1) sends Origin equal to its
    Host; without a token it must not say hello. A Python client sends no Origin and passes by any name."""
    for host in ("evil.example", "127.0.0.1.nip.io"):
        sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{host}:{server.port}/", sock=sock, origin=Origin(f"http://{host}:{server.port}"))
        assert refused.value.response.status_code == 403
        assert b"Nome de host n" in refused.value.response.body
    sock = socket.create_connection((LOOPBACK, server.port), timeout=TIMEOUT)
    with connect(f"ws://evil.example:{server.port}/", sock=sock) as ws:  # no Origin: a monitor client
        ws.send("oi sem origem")
        server.wait_for_line(re.compile(r"mensagem: oi sem origem$"))
    with connect(server.uri, origin=Origin(f"http://{LOOPBACK}:{server.port}")) as ws:
        ws.send("oi de localhost")
        server.wait_for_line(re.compile(r"mensagem: oi de localhost$"))
    assert "evil.example" not in "".join(line for line in server.lines("stdout") if "mensagem" in line)


def test_check_request_asks_a_loopback_host_of_a_browser_only_without_token(servidor: ModuleType) -> None:
    rebinding = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}
    assert servidor.check_request(Headers(rebinding), "") == (403, NOT_LOCAL)
    assert servidor.check_request(Headers(rebinding | {"Authorization": "Bearer t"}), "t") is None
    assert servidor.check_request(Headers({"Host": "evil.example:8765"}), "") is None


def vv_logs(procs: Processes, spell: Callable[[str], str]) -> tuple[str, str, str]:
    """A ``-vv`` server with a token, a monitor's hello with a secret and a page's auth, their JSON texts passed
    through ``spell`` (how the keys are written); (the stderr text, the token, the secret)."""
    token = "s3gredo-vv-" + secrets.token_hex(8)
    server = procs.server(args=["-vv", "--token", token])
    bearer = {"Authorization": f"Bearer {token}"}
    secret = secrets.token_hex(16)
    with connect(server.uri, additional_headers=bearer, open_timeout=TIMEOUT, legacy=True) as client:
        hello = {"type": "hello", "version": 3, "client_id": uuid.uuid4().hex, "name": "n", "root": ROOT}
        client.send(spell(json.dumps(hello | {"secret": secret})))
        assert receive(client)["type"] == "welcome"
    with viewer(server) as ws:
        assert receive(ws) == {"type": "auth_required"}
        ws.send(spell(json.dumps({"type": "auth", "token": token})))
        assert receive(ws)["type"] == "state"
    wait_until(lambda: server.raw("stderr").count(b"***") >= 3)  # the header, the hello, the auth
    return server.raw("stderr").decode("utf-8", "replace"), token, secret


def test_with_vv_no_token_secret_or_authorization_reaches_stderr(procs: Processes) -> None:
    logs, token, secret = vv_logs(procs, lambda text: text)
    assert token not in logs and secret not in logs and secret[:16] not in logs and secret[-16:] not in logs
    assert '"secret": "***' in logs and '"token": "***' in logs


def test_with_vv_a_key_spelled_with_json_escapes_is_hidden_too(procs: Processes) -> None:
    """``"\\u0073ecret"`` and ``"\\u0074oken"`` are the keys secret and token to the server (it accepts them):
    their values stay out of stderr like the plain spellings'."""
    logs, token, secret = vv_logs(
        procs, lambda text: text.replace('"secret"', '"\\u0073ecret"').replace('"token"', '"\\u0074\\u006Fken"')
    )
    assert token not in logs and secret not in logs and secret[:16] not in logs and secret[-16:] not in logs


def test_a_stop_does_not_wait_for_a_viewer_that_never_reads(servidor: ModuleType, procs: Processes) -> None:
    """A page that never reads (a small receive buffer, nothing read) while a burst fills its socket: SIGTERM still
    exits 0 in a few seconds (not the 20 s keepalive of the close)."""
    server = procs.server()
    client = ProtocolClient(server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((LOOPBACK, server.port))
    stalled = connect(
        f"{server.uri}{VIEWER}", sock=sock, max_queue=1, open_timeout=TIMEOUT, close_timeout=1, legacy=True
    )
    assert receive(stalled)["type"] == "state"
    long = "s" * 1500
    for start in range(0, 6000, 400):  # ~9 MB of events: past the page's socket buffers
        client.send(*(event(f"{ROOT}/{long}/{start + n}") for n in range(400)))
    assert server.stop(signal.SIGTERM, timeout=6) == 0
    stalled.close()


def test_a_tokenless_server_tells_a_viewer_s_auth_it_needs_none(server: ServerProcess) -> None:
    with viewer(server) as ws:
        assert receive(ws)["type"] == "state"
        ws.send(json.dumps({"type": "auth", "token": "qualquer"}))
        answer = receive(ws)
        assert answer["type"] == "error" and "este servidor não usa token" in answer["message"]
        ws.send(json.dumps({"type": "tree", "id": 1, "client_id": "x" * 32, "path": "/"}))
        assert receive(ws) == {"type": "error", "message": "cliente desconhecido", "id": 1}  # still served
    assert "qualquer" not in server.raw("stderr").decode()


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b'{"type":"auth","token":"abc"}', b'{"type":"auth","token":"***"}'),
        (b'{"secret": "x\\"y", "a": 1}', b'{"secret": "***", "a": 1}'),
        (b'{"Access_Token":"zz","name":"n"}', b'{"Access_Token":"***","name":"n"}'),
        (
            b'{"userPassword":"q","X-Auth":"r","PASSWORD":"s"}',
            b'{"userPassword":"***","X-Auth":"***","PASSWORD":"***"}',
        ),
        (b'{"nested":{"api_secret_key":"k"}}', b'{"nested":{"api_secret_key":"***"}}'),
        (b'{"type":"token","path":"/w/secret"}', b'{"type":"token","path":"/w/secret"}'),  # values are not keys
        # A key spelled with JSON escapes is the same key to json.loads (and to the server): hidden all the same.
        (b'{"\\u0073ecret": "abc", "a": 1}', b'{"\\u0073ecret": "***", "a": 1}'),
        (b'{"type":"auth","\\u0074oken":"abc"}', b'{"type":"auth","\\u0074oken":"***"}'),
        (b'{"\\u0074\\u006F\\u006b\\u0065\\u006E":"abc"}', b'{"\\u0074\\u006F\\u006b\\u0065\\u006E":"***"}'),
        (b'{"SE\\u0043RET":"abc"}', b'{"SE\\u0043RET":"***"}'),
        (b'{"x_pass\\u0077ord_y" : "abc"}', b'{"x_pass\\u0077ord_y" : "***"}'),
        (b'{"\\u0041uth":"abc"}', b'{"\\u0041uth":"***"}'),
        (b'{"path":"\\u0074oken"}', b'{"path":"\\u0074oken"}'),
        (b'{"a":"b"}', b'{"a":"b"}'),
    ],
)
def test_redaction_hides_any_key_naming_a_credential(servidor: ModuleType, data: bytes, shown: bytes) -> None:
    record = logging.LogRecord("websockets.server", logging.DEBUG, "", 0, "> %s", (Frame(Opcode.TEXT, data),), None)
    assert servidor.SecretRedaction().filter(record)
    assert isinstance(record.args, tuple) and isinstance(record.args[0], Frame)
    assert record.args[0].data == shown


@pytest.mark.parametrize("key", ["secret", "token", "password", "auth"])
def test_redaction_hides_a_key_however_json_spells_it(servidor: ModuleType, key: str) -> None:
    """Every letter of the key escaped, in either case of the letter and of its hex digits."""
    for spell in (lambda c: f"\\u{ord(c):04x}", lambda c: f"\\u{ord(c.upper()):04X}"):
        spelled = "".join(map(spell, key))
        data = f'{{"{spelled}": "VALOR", "a": 1}}'.encode()
        assert json.loads(data) in ({key: "VALOR", "a": 1}, {key.upper(): "VALOR", "a": 1})
        record = logging.LogRecord("websockets.server", logging.DEBUG, "", 0, "< %s", (Frame(Opcode.TEXT, data),), None)
        assert servidor.SecretRedaction().filter(record)
        assert isinstance(record.args, tuple) and isinstance(record.args[0], Frame)
        assert b"VALOR" not in record.args[0].data


@pytest.mark.parametrize(
    ("header", "hidden"),
    [("Authorization", True), ("proxy-authorization", True), ("Cookie", True), ("Set-Cookie", True),
     ("X-Auth-Token", True), ("X-Api-Secret", True), ("X-Password", True), ("Sec-WebSocket-Key", False),
     ("Host", False), ("Origin", False)],
)  # fmt: skip
def test_redaction_hides_any_header_naming_a_credential(servidor: ModuleType, header: str, hidden: bool) -> None:
    record = logging.LogRecord("websockets.server", logging.DEBUG, "", 0, "< %s: %s", (header, "valor"), None)
    assert servidor.SecretRedaction().filter(record)
    assert record.args == (header, "***" if hidden else "valor")
