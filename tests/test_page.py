"""The live page in a real browser (Debian's chromium, through Playwright): what a person watching sees.

The tests that matter run against the real servidor.py (a subprocess on 127.0.0.1, port 0) fed by a real
monitor_cliente.py watching a temporary directory. A few use the stand-in FakeLiveServer (tests/page_support.py)
for what the real server does not easily produce: a viewer on another machine, an exact ``omitted`` marker,
hostile names in bulk, a digest that differs.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from page_support import (
    FakeLiveServer,
    Script,
    Watched,
    fake_live_server,
    launched_chromium,
    page_url,
    watched_page,
)
from support import Processes, ServerProcess, free_port

if os.environ.get("CI") != "true":  # in CI a missing Playwright fails the collection instead
    pytest.importorskip("playwright.sync_api", reason="Playwright não está instalado")
from playwright.sync_api import Page, expect  # noqa: E402

BrowserPage = tuple[Page, Watched]
REMOTE_NAME = "meu-servidor.example"
ROOT = "/home/ana/projeto"
NOW = datetime.datetime(2026, 11, 29, 14, 23, 51, tzinfo=datetime.UTC)
PAGE_DEADLINE_MS = 30_000  # a file written -> the page: generous (the speed is a benchmark figure, tests/bench/page.py)


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    # REMOTE_NAME reaches loopback but is not a loopback name: a page opened as from another machine.
    with launched_chromium(f"--host-resolver-rules=MAP {REMOTE_NAME} 127.0.0.1") as browser:
        yield browser


@pytest.fixture
def browser_page(chromium_browser: Any) -> Iterator[BrowserPage]:
    with watched_page(chromium_browser) as opened:
        yield opened


@pytest.fixture
def live_script() -> Script:
    """What the stand-in server plays; a test changes it before opening the page."""
    return Script()


@pytest.fixture
def live_server(live_script: Script, servidor: ModuleType) -> Iterator[FakeLiveServer]:
    with fake_live_server(live_script, servidor.PageAssets(servidor.PAGE_FILES)) as server:
        yield server


def real_server(procs: Processes, watched: Path, *args: str, name: str = "notebook") -> tuple[ServerProcess, str]:
    """servidor.py and a monitor_cliente.py watching ``watched``, connected: (the server, the page's address)."""
    server = procs.server(args=args)
    procs.client(watched, server.uri, name, connected_to=server, args=["-q"])
    return server, page_url(server)


def write(path: Path, text: str = "conteúdo") -> None:
    path.write_text(text, encoding="utf-8")


def client(client_id: str = "a" * 32, name: str = "notebook", **extra: Any) -> dict[str, Any]:
    """A client object of the ``state`` message (PROTOCOL.md)."""
    record = {
        "client_id": client_id,
        "client": name,
        "root": ROOT,
        "path_style": "posix",
        "address": "127.0.0.1:50000",
        "connected": True,
        "connected_since": NOW.isoformat(),
        "last_seen": NOW.isoformat(),
        "events": 0,
        "last_event": None,
        "digest": "matched",
        "verified_at": NOW.isoformat(),
    }
    return record | extra


def event(path: str, seq: int, kind: str = "created", client_id: str = "a" * 32, **extra: Any) -> dict[str, Any]:
    """A ``--json`` record (protocol v3 keys), as /ao-vivo sends it."""
    record: dict[str, Any] = {"client": "notebook", "client_id": client_id, "seq": seq, "event": kind}
    record["path"] = path
    record |= {"is_dir": False, "type": "file", "size": 1234, "mtime": NOW.isoformat(), "mode": "0644"}
    record |= {"ts": (NOW + datetime.timedelta(seconds=seq)).isoformat(timespec="milliseconds"), "origin": "live"}
    return record | extra


def events(*records: dict[str, Any]) -> dict[str, Any]:
    return {"type": "events", "events": list(records)}


def state(*clients: dict[str, Any], recent: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "state", "clients": list(clients), "events": recent or []}


def open_page(page: Page, where: FakeLiveServer | str) -> None:
    page.goto(where if isinstance(where, str) else where.url)
    expect(page.locator("#conexao")).to_have_text("Conectado")


def row_with(page: Page, text: str | re.Pattern[str]) -> Any:
    return rows(page).filter(has_text=text)


def rows(page: Page) -> Any:
    return page.locator("#eventos li")


def assert_clean(page: Page, watched: Watched) -> None:
    problems = watched.problems(page)
    assert problems == [], problems


# ---------------------------------------------------------------------------


def test_the_list_stays_bounded(browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    open_page(page, live_server)
    live_server.send(events(*(event(f"{ROOT}/f{seq}", seq) for seq in range(1, 701))))
    expect(rows(page).nth(0)).to_contain_text(f"{ROOT}/f700")
    expect(rows(page)).to_have_count(500)
    assert_clean(page, watched)


def test_a_stream_path_opens_its_history(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    live_script.history = lambda request: {
        "type": "history",
        "events": [event(request["path"], 2, origin="rescan"), event(request["path"], 1, origin="live")],
    }
    open_page(page, live_server)
    live_server.send(events(event(f"{ROOT}/x.txt", 1)))
    rows(page).nth(0).locator("button.caminho").click()
    expect(page.locator("#historico-eventos tr")).to_have_count(2)
    # The "Origem" column speaks Portuguese, as the stream does: never the wire's "rescan"/"live".
    expect(page.locator("#historico-eventos tr td:nth-child(5)")).to_have_text(["varredura", "ao vivo"])
    assert live_script.received[-1] == {"type": "history", "id": 2, "client_id": "a" * 32, "path": f"{ROOT}/x.txt"}
    assert_clean(page, watched)


HTML_NAMES = ['"><img src=x onerror=window.__pwned=1>.txt', "<b onmouseover=window.__pwned=1>&amp;&lt;<b>.html"]


def hostile_names() -> list[tuple[str, str | bytes]]:
    return [
        ("ansi", "\x1b[31mred"),
        ("osc-titulo", "\x1b]0;owned\x07x"),
        ("cr-lf-tab", "linha\rduas\nlinhas\tcom tab"),
        ("del-c1", "apaga\x7f csi\x9b31m nel\x85x"),
        ("bidi-override", "\u202egnp.exe"),
        ("bidi-isolate-marcas", "iso\u2066x\u2069 \u200e\u200f\u061c"),
        ("separadores", "linha\u2028paragrafo\u2029"),
        ("surrogate-sozinho", "meio\udcfe"),
        ("nao-utf8", b"bad_\xff"),
        ("utf8-truncado", b"trunc_\xc3"),
        ("esc-e-nao-utf8", b"\x1b[2J\xfe"),
        ("overlong", b"over\xc0\xafx"),
        ("surrogate-em-utf8", b"sur\xed\xa0\x80x"),
        ("acentos-validos", "ação é ótima 😀"),
    ]


@pytest.mark.parametrize("name", [case[1] for case in hostile_names()], ids=[case[0] for case in hostile_names()])
def test_control_and_bidi_characters_show_escaped_like_the_console(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer, servidor: ModuleType, name: str | bytes
) -> None:
    page, watched = browser_page
    if isinstance(name, bytes):  # not UTF-8: the exact bytes travel in path_b64
        full = ROOT.encode() + b"/" + name
        text, b64 = servidor.wire_path(full)
        console = servidor.escape(full.decode("utf-8", "surrogateescape"))
    else:  # a lone surrogate travels as a JSON \\udcfe escape, as json.dumps writes it
        text, b64 = f"{ROOT}/{name}", None
        console = servidor.escape(text)
    live_script.state = lambda: state(client())
    open_page(page, live_server)
    record = event(text, 1)
    if b64 is not None:
        record["path_b64"] = b64
    live_server.send(events(record))
    button = rows(page).nth(0).locator("button.caminho")
    expect(button).to_have_text(console)
    shown = button.inner_text()
    assert not re.search("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]", shown)
    if console != text:
        assert button.locator(".esc").count() > 0  # each escape set apart, so it is seen as one
    assert_clean(page, watched)


def test_a_remote_viewer_without_token_is_told_how_to_allow_it(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.remote_refused = True
    page.goto(live_server.url)
    expect(page.locator("#aviso")).to_contain_text("inicie o servidor com um token (MONITOR_TOKEN ou --token)")
    assert_clean(page, watched)


def test_a_refused_page_says_why_and_does_not_retry_at_once(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    page.clock.install()
    live_script.remote_refused = True
    page.goto(live_server.url)
    expect(page.locator("#aviso")).to_contain_text("só mostra os eventos para esta máquina")
    expect(page.locator("#conexao")).to_have_text("Acesso recusado")
    page.clock.run_for(30_000)  # the offline back-off would have retried five times by now
    assert live_server.requests.count("/ao-vivo") == 1, live_server.requests
    assert_clean(page, watched)


def test_a_page_by_a_name_that_is_not_loopback_is_told_to_set_a_token(
    browser_page: BrowserPage, procs: Processes, watched: Path
) -> None:
    """The real server without a token, its page opened by a name that is not loopback (as from another machine,
    or DNS rebinding): /ao-vivo is closed with 4403 and its reason, which the page shows; no "fora do ar"."""
    page, seen = browser_page
    _server, url = real_server(procs, watched)
    page.goto(url.replace("127.0.0.1", REMOTE_NAME))
    expect(page.locator("#aviso")).to_contain_text("inicie o servidor com --token")
    expect(page.locator("#conexao")).to_have_text("Acesso recusado")
    expect(page.locator("#lista-clientes li")).to_have_count(0)
    assert_clean(page, seen)


def test_a_close_with_a_reason_shows_the_reason_not_server_gone(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.refused = (1013, "muitas páginas abertas; tente mais tarde")
    page.goto(live_server.url)
    expect(page.locator("#aviso")).to_contain_text("muitas páginas abertas; tente mais tarde")
    expect(page.locator("#conexao")).to_have_text("Conexão recusada")
    assert_clean(page, watched)


def test_omitted_events_are_said_and_a_fresh_state_follows(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    open_page(page, live_server)
    live_server.send(events(event(f"{ROOT}/a.txt", 1)))
    live_server.send({"type": "omitted", "count": 1234})
    expect(rows(page).nth(0)).to_contain_text("1234 eventos omitidos")
    live_server.send(state(client(events=5000), recent=[event(f"{ROOT}/z.txt", 5000)]))
    expect(rows(page)).to_have_count(2)
    expect(rows(page).nth(1)).to_contain_text("z.txt")
    expect(rows(page).nth(0)).to_contain_text("1234 eventos omitidos")
    expect(page.locator("#lista-clientes .eventos-total")).to_have_text("5000")
    assert_clean(page, watched)


def test_client_status_changes_and_the_rate_chart(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client(digest=None))
    open_page(page, live_server)
    expect(page.locator("#lista-clientes td").nth(6)).to_have_text("—")
    live_server.send({"type": "client", "client": client(digest="differs")})
    expect(page.locator("#lista-clientes td").nth(6)).to_have_text("difere")
    live_server.send(events(*(event(f"{ROOT}/f{seq}", seq) for seq in range(1, 51))))
    title = page.locator("#lista-clientes svg title")
    expect(title).to_have_text(re.compile(r"máximo de 10,0 eventos/s"))  # 50 events in one 5 s bucket
    live_server.send({"type": "client", "client": client(connected=False, address=None)})
    expect(page.locator("#lista-clientes td").nth(2)).to_have_text("desconectado")
    assert_clean(page, watched)


# ---------------------------------------------------------------------------
# Against the real server, fed by a real client.
# ---------------------------------------------------------------------------


def test_page_loads_with_no_errors_strict_headers_and_the_client_listed(
    browser_page: BrowserPage, procs: Processes, watched: Path, tmp_path: Path, servidor: ModuleType
) -> None:
    page, seen = browser_page
    server, url = real_server(procs, watched)
    write(watched / "antes.txt")
    server.wait_for_line(re.compile(r"\[notebook\] arquivo criado: .*antes\.txt( \(.*\))?$"))
    response = page.goto(url)
    assert response is not None and response.status == 200
    headers = response.headers
    assert headers["content-security-policy"] == servidor.PAGE_CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache" and headers["etag"]
    expect(page.locator("#conexao")).to_have_text("Conectado")
    expect(row_with(page, f"arquivo criado: {watched}/antes.txt")).to_have_count(1)  # the state's recent events
    first_row = page.locator("#lista-clientes tr").nth(0)
    expect(first_row.locator("td").nth(0)).to_have_text("notebook")
    expect(first_row.locator("td").nth(1)).to_have_text(str(watched))
    expect(first_row.locator("td").nth(2)).to_have_text(re.compile(r"^127\.0\.0\.1:\d+$"))
    page.screenshot(path=str(tmp_path / "pagina.png"), full_page=True)
    assert (tmp_path / "pagina.png").stat().st_size > 0
    assert_clean(page, seen)


def test_a_file_written_on_a_watched_directory_appears_on_the_page(
    browser_page: BrowserPage, procs: Processes, watched: Path
) -> None:
    page, seen = browser_page
    _, url = real_server(procs, watched)
    open_page(page, url)
    write(watched / "relatorio.txt")
    expect(row_with(page, f"arquivo criado: {watched}/relatorio.txt")).to_have_count(1, timeout=PAGE_DEADLINE_MS)
    (watched / "relatorio.txt").rename(watched / "final.txt")
    moved = row_with(page, f"arquivo movido: {watched}/relatorio.txt -> {watched}/final.txt")
    expect(moved).to_have_count(1, timeout=PAGE_DEADLINE_MS)
    expect(rows(page).nth(0)).to_contain_text("final.txt")  # newest first
    expect(page.locator("#lista-clientes .eventos-total")).not_to_have_text("0")
    expect(page.locator("#lista-clientes polyline")).to_have_attribute("points", re.compile(r"\d"))
    assert_clean(page, seen)


def test_filters_and_pause_on_a_real_stream(
    browser_page: BrowserPage, procs: Processes, watched: Path, tmp_path: Path
) -> None:
    page, seen = browser_page
    server, url = real_server(procs, watched)
    other = tmp_path / "outro"
    other.mkdir()
    procs.client(other, server.uri, "servidor-2", connected_to=server, args=["-q"])
    open_page(page, url)
    expect(page.locator("#lista-clientes tr")).to_have_count(2)
    write(watched / "relatorio.txt")
    write(watched / "foto.png")
    write(other / "relatorio.csv")
    expect(row_with(page, f"{other}/relatorio.csv")).not_to_have_count(0, timeout=PAGE_DEADLINE_MS)
    expect(row_with(page, f"{watched}/foto.png")).not_to_have_count(0, timeout=PAGE_DEADLINE_MS)
    (watched / "foto.png").unlink()
    expect(row_with(page, f"arquivo excluído: {watched}/foto.png")).to_have_count(1, timeout=PAGE_DEADLINE_MS)
    option = page.locator("#filtro-cliente option", has_text="servidor-2")
    page.select_option("#filtro-cliente", option.get_attribute("value"))
    expect(rows(page).filter(has_not_text=str(other))).to_have_count(0)
    expect(row_with(page, f"{other}/relatorio.csv")).not_to_have_count(0)
    page.select_option("#filtro-cliente", "")
    page.select_option("#filtro-tipo", "deleted")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).nth(0)).to_contain_text(f"arquivo excluído: {watched}/foto.png")
    page.select_option("#filtro-tipo", "")
    page.fill("#filtro-caminho", "RELATORIO")
    expect(rows(page).filter(has_not_text=re.compile("relatorio", re.IGNORECASE))).to_have_count(0)
    expect(row_with(page, "relatorio.txt")).not_to_have_count(0)
    expect(row_with(page, "relatorio.csv")).not_to_have_count(0)
    page.fill("#filtro-caminho", "")
    shown = rows(page).count()
    page.click("#pausa")
    expect(page.locator("#pausa")).to_have_text("Continuar")
    write(watched / "durante-a-pausa.txt")
    expect(page.locator("#pendentes")).to_have_text(re.compile(r"^[1-9]\d* eventos novos enquanto pausado$"))
    expect(row_with(page, "durante-a-pausa.txt")).to_have_count(0)
    assert rows(page).count() == shown
    page.click("#pausa")
    expect(row_with(page, "durante-a-pausa.txt")).not_to_have_count(0)
    assert_clean(page, seen)


@pytest.mark.parametrize("database", [False, True], ids=["memoria", "banco"])
def test_the_tree_browses_and_a_path_shows_its_history(
    browser_page: BrowserPage, procs: Processes, watched: Path, tmp_path: Path, database: bool
) -> None:
    page, seen = browser_page
    server, url = real_server(procs, watched, *(["--banco", str(tmp_path / "e.db")] if database else []))
    (watched / "docs").mkdir()
    write(watched / "docs" / "nota.md", "1")
    write(watched / "leia.txt", "x" * 2500)
    server.wait_for_line(re.compile(r"\[notebook\] arquivo criado: .*/leia\.txt( \(.*\))?$"))
    server.wait_for_line(re.compile(r"\[notebook\] arquivo criado: .*/docs/nota\.md( \(.*\))?$"))
    write(watched / "docs" / "nota.md", "12")  # a second event for its history
    server.wait_for_line(re.compile(r"\[notebook\] arquivo modificado: .*/docs/nota\.md( \(.*\))?$"))
    open_page(page, url)
    entries = page.locator("#arvore-entradas tr")
    expect(entries).to_have_count(2)  # the only client is chosen; its root listed, sorted by name
    expect(entries.nth(0)).to_contain_text("docs")
    expect(entries.nth(0)).to_contain_text("diretório")
    expect(entries.nth(1)).to_contain_text("leia.txt")
    page.locator("#arvore-entradas button", has_text="docs").click()
    expect(entries).to_have_count(1)
    expect(entries.nth(0)).to_contain_text("nota.md")
    expect(page.locator("#arvore-caminho button")).to_have_count(2)
    page.locator("#arvore-entradas button", has_text="nota.md").click()
    history = page.locator("#historico-eventos tr")
    expect(history.filter(has_text="arquivo criado")).not_to_have_count(0)
    expect(history.nth(0)).to_contain_text("arquivo modificado")
    expect(page.locator("#historico-caminho")).to_contain_text(f"de {watched}/docs/nota.md")
    page.locator("#arvore-caminho button").nth(0).click()
    expect(entries).to_have_count(2)
    row_with(page, "leia.txt").nth(0).locator("button.caminho").click()  # a path in the stream: its history
    expect(page.locator("#historico-caminho")).to_contain_text(f"de {watched}/leia.txt")
    expect(history.filter(has_text="arquivo criado")).to_have_count(1)
    expect(history.filter(has_text="nota.md")).to_have_count(0)
    assert_clean(page, seen)


HTML_NAMES = ['"><img src=x onerror=window.__pwned=1>.txt', "<b onmouseover=window.__pwned=1>&amp;&lt;<b>.html"]


def test_a_file_named_with_html_is_text_and_runs_nothing(
    browser_page: BrowserPage, procs: Processes, watched: Path
) -> None:
    page, seen = browser_page
    hostile_client = "<img src=x onerror=window.__pwned=1>"
    _, url = real_server(procs, watched, name=hostile_client)
    open_page(page, url)
    for name in HTML_NAMES:
        write(watched / name)
    for name in HTML_NAMES:
        expect(row_with(page, f"{watched}/{name}")).not_to_have_count(0, timeout=PAGE_DEADLINE_MS)
    expect(page.locator("#lista-clientes td").nth(0)).to_have_text(hostile_client)
    page.select_option("#arvore-cliente", "")
    page.select_option("#arvore-cliente", index=1)
    expect(page.locator("#arvore-entradas tr")).to_have_count(2)
    page.locator("#arvore-entradas button").nth(0).click()
    expect(page.locator("#historico-eventos tr")).not_to_have_count(0)
    expect(page.locator("#historico-eventos tr").nth(0)).to_contain_text(f"{watched}/{HTML_NAMES[0]}")
    assert page.locator("main img, main b").count() == 0  # no element made of a name
    assert page.evaluate("window.__pwned") is None
    assert_clean(page, seen)  # a handler that got into the DOM would also show as a CSP violation


def test_without_the_token_the_page_asks_and_ao_vivo_refuses(
    browser_page: BrowserPage, procs: Processes, watched: Path
) -> None:
    page, seen = browser_page
    token = "s3gredo-do-servidor"
    server = procs.server(args=["--token", token])
    procs.client(watched, server.uri, "notebook", connected_to=server, args=["-q", "--token", token])
    page.goto(page_url(server))
    expect(page.locator("#form-token")).to_be_visible()
    expect(page.locator("#conexao")).to_have_text("Token necessário")
    expect(page.locator("#lista-clientes tr")).to_have_count(0)  # nothing before the token
    page.fill("#token", "errado")
    page.click("#form-token button")
    expect(page.locator("#token-erro")).to_have_text("token ausente ou inválido")
    expect(page.locator("#lista-clientes tr")).to_have_count(0)
    page.fill("#token", token)
    page.click("#form-token button")
    expect(page.locator("#conexao")).to_have_text("Conectado")
    expect(page.locator("#form-token")).to_be_hidden()
    expect(page.locator("#lista-clientes td").nth(0)).to_have_text("notebook")
    assert token not in page.url
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('monitor-token')") == token
    page.reload()  # the same tab: the token is sent again without asking
    expect(page.locator("#conexao")).to_have_text("Conectado")
    write(watched / "com-token.txt")
    expect(row_with(page, "com-token.txt")).not_to_have_count(0, timeout=PAGE_DEADLINE_MS)
    logs = server.raw("stderr").decode("utf-8")
    assert token not in logs and "errado" not in logs
    assert re.search(r"páginas ao vivo recusadas; a última, de 127\.0\.0\.1:\d+: token ausente ou inválido", logs)
    assert_clean(page, seen)


def test_the_page_says_when_the_server_is_gone_and_reconnects(
    browser_page: BrowserPage, procs: Processes, watched: Path, tmp_path: Path
) -> None:
    page, seen = browser_page
    port, database = free_port(), str(tmp_path / "e.db")
    server = procs.server(port=port, args=["--banco", database])
    procs.client(watched, server.uri, "notebook", connected_to=server, args=["-q"])
    open_page(page, page_url(server))
    write(watched / "antes.txt")
    expect(row_with(page, "antes.txt")).not_to_have_count(0, timeout=PAGE_DEADLINE_MS)
    assert server.stop(signal.SIGTERM) == 0
    expect(page.locator("#aviso")).to_contain_text("Sem conexão com o servidor desde")
    expect(page.locator("#conexao")).to_have_text("Servidor fora do ar")
    again = procs.server(port=port, args=["--banco", database])
    expect(page.locator("#conexao")).to_have_text("Conectado", timeout=PAGE_DEADLINE_MS)
    expect(page.locator("#aviso")).to_be_hidden()
    expect(row_with(page, "antes.txt")).not_to_have_count(0)  # the record's latest events, after the restart
    again.wait_client("notebook", watched)  # the client came back by itself
    write(watched / "depois.txt")
    expect(row_with(page, "depois.txt")).not_to_have_count(0, timeout=PAGE_DEADLINE_MS)
    # The attempts while the server was away are the only console errors (Chromium logs a refused WebSocket).
    problems = seen.problems(page, allowed=lambda text: "WebSocket connection to" in text)
    assert problems == [], problems
