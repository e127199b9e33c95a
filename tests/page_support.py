"""Browser helpers for the live page's tests: Debian's chromium driven by Playwright, the real server's page
address, and a stand-in /ao-vivo.

The tests that matter run against the real servidor.py (``page_url``). ``FakeLiveServer`` (a loopback websockets
server that serves servidor.py's own page files through its PageAssets and plays the viewer protocol from a
script the test writes) stays for what the real server does not easily produce: a viewer on another machine, an
exact ``omitted`` count, hostile names in bulk, a digest that differs.

Without chromium or Playwright the tests skip with the reason; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from support import ServerProcess
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

LOOPBACK = "127.0.0.1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 20_000  # generous for a loaded machine: every wait returns as soon as its condition holds
VIEWER_PATH = "/ao-vivo"
CLOSE_TOKEN = 4401
CLOSE_REMOTE = 4403
_PAGE_LINE = re.compile(r"Página ao vivo: (http://127\.0\.0\.1:\d+/)$")


def page_url(server: ServerProcess) -> str:
    """The real server's page address, from its start-up line."""
    match = _PAGE_LINE.search(server.wait_for_line(_PAGE_LINE, "stderr"))
    assert match is not None
    return match.group(1)


class Assets(Protocol):
    """servidor.PageAssets: the page's files as the server answers them."""

    def answer(self, request: Request) -> Response: ...


# Runs before the page's own script (CDP: not subject to the page's CSP): records what the CSP refused.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def require_browser() -> None:
    """Skip (or, with CI=true, fail) when Playwright or chromium is missing."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        problem = "Playwright não está instalado (pip install -r tests/requirements.txt)"
    if problem is None and not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        problem = f"chromium não encontrado em {CHROMIUM} (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true e os testes da página não podem rodar: {problem}")
        pytest.skip(problem)


# ---------------------------------------------------------------------------
# The stand-in server.
# ---------------------------------------------------------------------------


@dataclass
class Viewer:
    ws: ServerConnection
    authed: bool = False


@dataclass
class Script:
    """What FakeLiveServer answers. Every callable runs in the server's thread."""

    state: Callable[[], dict[str, Any]] = lambda: {"type": "state", "clients": [], "events": []}
    tree: Callable[[dict[str, Any]], dict[str, Any]] = lambda request: {"type": "tree", "entries": []}
    history: Callable[[dict[str, Any]], dict[str, Any]] = lambda request: {"type": "history", "events": []}
    token: str = ""
    remote_refused: bool = False  # play a viewer from another machine on a server without a token
    refused: tuple[int, str] | None = None  # close every viewer at once with this (code, reason)
    received: list[dict[str, Any]] = field(default_factory=list)  # every viewer message, in order


class FakeLiveServer:
    """A loopback websockets server in a thread: the page's files at /, /pagina.js, /pagina.css, and /ao-vivo.

    /ao-vivo plays the viewer protocol (PROTOCOL.md): ``auth_required`` and the ``auth`` check when
    ``script.token`` is set, then ``script.state()``; ``tree``/``history`` requests are answered by the
    script's callables (``id``, ``client_id``, ``path`` copied in). ``send`` pushes a message to every viewer.
    """

    def __init__(self, script: Script, assets: Assets) -> None:
        self.script = script
        self.assets = assets
        self.port = 0
        self.requests: list[str] = []  # paths of the HTTP requests, in order
        self._viewers: list[Viewer] = []
        self._server: Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-ao-vivo", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=TIMEOUT_MS / 1000)

    def listen(self) -> None:
        """Start listening (again, on the same port after ``go_away``)."""
        self._call(self._listen())

    async def _listen(self) -> None:
        self._server = await serve(self._handler, LOOPBACK, self.port, process_request=self._process_request)
        self.port = self._server.sockets[0].getsockname()[1]

    def go_away(self) -> None:
        """Close every connection (1001) and stop listening: the page sees the server gone."""
        self._call(self._go_away())

    async def _go_away(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._viewers.clear()

    def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every viewer that may read."""
        self._call(self._send(json.dumps(message)))

    async def _send(self, text: str) -> None:
        for viewer in list(self._viewers):
            if viewer.authed:
                try:
                    await viewer.ws.send(text)
                except ConnectionClosed:
                    pass

    def viewers(self) -> int:
        return sum(viewer.authed for viewer in self._viewers)

    def close(self) -> None:
        self.go_away()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=TIMEOUT_MS / 1000)
        self._loop.close()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request.path)
        if request.path == VIEWER_PATH:
            return None
        return self.assets.answer(request)

    async def _handler(self, ws: ServerConnection) -> None:
        viewer = Viewer(ws)
        self._viewers.append(viewer)
        script = self.script
        try:
            if script.refused is not None:
                await ws.close(*script.refused)
                return
            if script.remote_refused:
                await ws.close(CLOSE_REMOTE, "sem token, o servidor só mostra os eventos para esta máquina")
                return
            if script.token:
                await ws.send(json.dumps({"type": "auth_required"}))
                first = json.loads(await ws.recv())
                script.received.append(first)
                if first != {"type": "auth", "token": script.token}:
                    await ws.close(CLOSE_TOKEN, "token ausente ou inválido")
                    return
            viewer.authed = True
            await ws.send(json.dumps(script.state()))
            async for text in ws:
                request = json.loads(text)
                script.received.append(request)
                answer = {"tree": script.tree, "history": script.history}.get(request.get("type"))
                if answer is None:
                    await ws.send(json.dumps({"type": "error", "message": "pedido desconhecido"}))
                    continue
                reply = answer(request)
                for key in ("id", "client_id", "path", "path_b64"):
                    if key in request:
                        reply.setdefault(key, request[key])
                await ws.send(json.dumps(reply))
        except ConnectionClosed:
            pass
        finally:
            if viewer in self._viewers:
                self._viewers.remove(viewer)


# ---------------------------------------------------------------------------
# Fixture bodies (each test module declares its fixtures with these: no F811, no plugin import).
# ---------------------------------------------------------------------------


@dataclass
class Watched:
    """What the browser said while a test ran: console errors, uncaught exceptions, CSP violations."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def problems(self, page: Any, allowed: Callable[[str], bool] = lambda text: False) -> list[str]:
        csp: list[str] = page.evaluate("window.__csp || []")
        errors = [text for text in self.console_errors if not allowed(text)]
        return errors + [f"exceção: {text}" for text in self.page_errors] + [f"CSP: {text}" for text in csp]


@contextlib.contextmanager
def launched_chromium(*args: str) -> Iterator[Any]:
    """One headless Debian chromium (Playwright's own download is never used); a session fixture's body. ``args``:
    more command line switches (``--host-resolver-rules=MAP name 127.0.0.1``: a name that is not loopback)."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(args))
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def watched_page(browser: Any) -> Iterator[tuple[Any, Watched]]:
    """A fresh page (its own context: no storage shared between tests) and what the browser reports on it."""
    context = browser.new_context(locale="pt-BR", timezone_id="America/Sao_Paulo")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.add_init_script(WATCH_CSP)
    watched = Watched()
    page.on("console", watched.console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    try:
        yield page, watched
    finally:
        context.close()


@contextlib.contextmanager
def fake_live_server(script: Script, assets: Assets) -> Iterator[FakeLiveServer]:
    """A listening FakeLiveServer, closed at the end."""
    server = FakeLiveServer(script, assets)
    try:
        server.listen()
        yield server
    finally:
        server.close()
