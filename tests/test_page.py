"""The live page in a real browser (Debian's chromium, through Playwright): what a person watching sees.

Phase 1: the page talks to FakeLiveServer (tests/page_support.py), which plays the /ao-vivo protocol; the
tests only use the page's URL and the protocol's messages, so they can be pointed at servidor.py itself.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from page_support import (
    CSP,
    PAGE_DIR,
    FakeLiveServer,
    Script,
    Watched,
    fake_live_server,
    launched_chromium,
    watched_page,
)

if os.environ.get("CI") != "true":  # in CI a missing Playwright fails the collection instead
    pytest.importorskip("playwright.sync_api", reason="Playwright não está instalado")
from playwright.sync_api import Page, expect  # noqa: E402

BrowserPage = tuple[Page, Watched]
ROOT = "/home/ana/projeto"
NOW = datetime.datetime(2026, 11, 29, 14, 23, 51, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    with launched_chromium() as browser:
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
def live_server(live_script: Script) -> Iterator[FakeLiveServer]:
    with fake_live_server(live_script) as server:
        yield server


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


def open_page(page: Page, server: FakeLiveServer) -> None:
    page.goto(server.url)
    expect(page.locator("#conexao")).to_have_text("Conectado")


def rows(page: Page) -> Any:
    return page.locator("#eventos li")


def assert_clean(page: Page, watched: Watched) -> None:
    problems = watched.problems(page)
    assert problems == [], problems


# ---------------------------------------------------------------------------


def test_page_loads_with_no_errors_and_strict_headers(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer, tmp_path: Path
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client(), recent=[event(f"{ROOT}/antes.txt", 1)])
    response = page.goto(live_server.url)
    assert response is not None and response.status == 200
    headers = response.headers
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache" and headers["etag"]
    expect(page.locator("#conexao")).to_have_text("Conectado")
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#lista-clientes tr")).to_have_count(1)
    expect(page.locator("#lista-clientes tr td").nth(0)).to_have_text("notebook")
    expect(page.locator("#lista-clientes tr td").nth(6)).to_have_text("confere")
    assert live_server.requests[:3] == ["/", "/pagina.css", "/pagina.js"] or set(live_server.requests[:3]) == {
        "/",
        "/pagina.css",
        "/pagina.js",
    }
    page.screenshot(path=str(tmp_path / "pagina.png"), full_page=True)
    assert (tmp_path / "pagina.png").stat().st_size > 0
    assert_clean(page, watched)


def test_an_event_appears_newest_first_and_counts_for_its_client(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    open_page(page, live_server)
    live_server.send(events(event(f"{ROOT}/um.txt", 1)))
    live_server.send(events(event(f"{ROOT}/dois.txt", 2, "modified", size=1_200_000)))
    expect(rows(page)).to_have_count(2)
    expect(rows(page).nth(0)).to_contain_text(f"arquivo modificado: {ROOT}/dois.txt (1,2 MB)")
    expect(rows(page).nth(1)).to_contain_text(f"arquivo criado: {ROOT}/um.txt (1,2 kB)")
    expect(page.locator("#lista-clientes .eventos-total")).to_have_text("2")
    expect(page.locator("#lista-clientes polyline")).to_have_attribute("points", re.compile(r"\d"))
    assert_clean(page, watched)


def test_filters_by_client_kind_and_path_text(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    other = "b" * 32
    live_script.state = lambda: state(client(), client(other, "servidor-2"))
    open_page(page, live_server)
    live_server.send(
        events(
            event(f"{ROOT}/relatorio.txt", 1),
            event(f"{ROOT}/foto.png", 2, "deleted"),
            event("/srv/dados/relatorio.csv", 1, client_id=other, client="servidor-2"),
        )
    )
    expect(rows(page)).to_have_count(3)
    page.select_option("#filtro-cliente", other)
    expect(rows(page)).to_have_count(1)
    expect(rows(page).nth(0)).to_contain_text("/srv/dados/relatorio.csv")
    page.select_option("#filtro-cliente", "")
    page.select_option("#filtro-tipo", "deleted")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).nth(0)).to_contain_text("arquivo excluído")
    page.select_option("#filtro-tipo", "")
    page.fill("#filtro-caminho", "RELATORIO")
    expect(rows(page)).to_have_count(2)
    page.fill("#filtro-caminho", "")
    expect(rows(page)).to_have_count(3)
    assert_clean(page, watched)


def test_pause_holds_the_list_and_continue_shows_what_came(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    open_page(page, live_server)
    live_server.send(events(event(f"{ROOT}/a.txt", 1)))
    expect(rows(page)).to_have_count(1)
    page.click("#pausa")
    expect(page.locator("#pausa")).to_have_text("Continuar")
    live_server.send(events(event(f"{ROOT}/b.txt", 2), event(f"{ROOT}/c.txt", 3)))
    expect(page.locator("#pendentes")).to_have_text("2 eventos novos enquanto pausado")
    expect(rows(page)).to_have_count(1)
    page.click("#pausa")
    expect(rows(page)).to_have_count(3)
    expect(rows(page).nth(0)).to_contain_text("c.txt")
    assert_clean(page, watched)


def test_the_list_stays_bounded(browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    open_page(page, live_server)
    live_server.send(events(*(event(f"{ROOT}/f{seq}", seq) for seq in range(1, 701))))
    expect(rows(page).nth(0)).to_contain_text(f"{ROOT}/f700")
    expect(rows(page)).to_have_count(500)
    assert_clean(page, watched)


def test_tree_browses_directories_and_a_file_shows_its_history(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())

    def tree(request: dict[str, Any]) -> dict[str, Any]:
        if request["path"] == ROOT:
            entries = [
                {"name": "docs", "path": f"{ROOT}/docs", "type": "dir", "mtime": NOW.isoformat()},
                {
                    "name": "leia.txt",
                    "path": f"{ROOT}/leia.txt",
                    "type": "file",
                    "size": 2500,
                    "mtime": NOW.isoformat(),
                },
            ]
        else:
            entries = [{"name": "nota.md", "path": f"{ROOT}/docs/nota.md", "type": "file", "size": 10}]
        return {"type": "tree", "entries": entries, "truncated": False}

    def history(request: dict[str, Any]) -> dict[str, Any]:
        path = request["path"]
        found = [event(path, 3, "modified", size=2500), event(path, 1, "created", size=0)]
        return {"type": "history", "events": found, "truncated": False}

    live_script.tree, live_script.history = tree, history
    open_page(page, live_server)
    entries = page.locator("#arvore-entradas tr")
    expect(entries).to_have_count(2)
    expect(entries.nth(1)).to_contain_text("leia.txt")
    expect(entries.nth(1)).to_contain_text("2,5 kB")
    expect(entries.nth(1)).to_contain_text("29/11/2026")  # mtime, local time of the context (São Paulo)
    page.locator("#arvore-entradas button", has_text="docs").click()
    expect(entries).to_have_count(1)
    expect(entries.nth(0)).to_contain_text("nota.md")
    expect(page.locator("#arvore-caminho button")).to_have_count(2)
    page.locator("#arvore-entradas button", has_text="nota.md").click()
    history_rows = page.locator("#historico-eventos tr")
    expect(history_rows).to_have_count(2)
    expect(history_rows.nth(0)).to_contain_text("arquivo modificado")
    expect(page.locator("#historico-caminho")).to_contain_text(f"2 eventos de {ROOT}/docs/nota.md")
    requests = [(r["type"], r["path"]) for r in live_script.received]
    assert requests == [("tree", ROOT), ("tree", f"{ROOT}/docs"), ("history", f"{ROOT}/docs/nota.md")]
    page.locator("#arvore-caminho button").nth(0).click()
    expect(entries).to_have_count(2)
    assert_clean(page, watched)


def test_a_stream_path_opens_its_history(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client())
    live_script.history = lambda request: {"type": "history", "events": [event(request["path"], 1)]}
    open_page(page, live_server)
    live_server.send(events(event(f"{ROOT}/x.txt", 1)))
    rows(page).nth(0).locator("button.caminho").click()
    expect(page.locator("#historico-eventos tr")).to_have_count(1)
    assert live_script.received[-1] == {"type": "history", "id": 2, "client_id": "a" * 32, "path": f"{ROOT}/x.txt"}
    assert_clean(page, watched)


HTML_NAMES = ['"><img src=x onerror=window.__pwned=1>.txt', "<b onmouseover=window.__pwned=1>&amp;&lt;<b>.html"]


def test_html_in_names_is_text_and_runs_nothing(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    hostile = HTML_NAMES[0]
    live_script.state = lambda: state(client(name=f"<img src=x onerror=window.__pwned=1>{hostile}"))
    live_script.tree = lambda request: {
        "type": "tree",
        "entries": [{"name": n, "path": f"{ROOT}/{n}", "type": "file"} for n in HTML_NAMES],
    }
    live_script.history = lambda request: {"type": "history", "events": [event(request["path"], 1)]}
    open_page(page, live_server)
    live_server.send(events(*(event(f"{ROOT}/{name}", seq) for seq, name in enumerate(HTML_NAMES, 1))))
    expect(rows(page)).to_have_count(2)
    expect(rows(page).nth(1)).to_contain_text(f"{ROOT}/{HTML_NAMES[0]}")
    expect(rows(page).nth(0)).to_contain_text(f"{ROOT}/{HTML_NAMES[1]}")
    expect(page.locator("#arvore-entradas tr")).to_have_count(2)
    page.locator("#arvore-entradas button").nth(0).click()
    expect(page.locator("#historico-eventos tr")).to_have_count(1)
    expect(page.locator("#lista-clientes td").nth(0)).to_have_text(f"<img src=x onerror=window.__pwned=1>{hostile}")
    assert page.locator("main img, main b").count() == 0  # no element made of a name
    assert page.evaluate("window.__pwned") is None
    assert_clean(page, watched)  # a handler that got into the DOM would also show as a CSP violation


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


def test_token_is_asked_kept_in_session_only_and_a_wrong_one_is_refused(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.token = "s3gredo-do-servidor"
    live_script.state = lambda: state(client())
    page.goto(live_server.url)
    expect(page.locator("#form-token")).to_be_visible()
    expect(page.locator("#conexao")).to_have_text("Token necessário")
    page.fill("#token", "errado")
    page.click("#form-token button")
    expect(page.locator("#token-erro")).to_have_text("token ausente ou inválido")
    assert live_server.viewers() == 0
    page.fill("#token", live_script.token)
    page.click("#form-token button")
    expect(page.locator("#conexao")).to_have_text("Conectado")
    expect(page.locator("#form-token")).to_be_hidden()
    assert [m["token"] for m in live_script.received if m["type"] == "auth"] == ["errado", live_script.token]
    assert live_script.token not in page.url
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('monitor-token')") == live_script.token
    page.reload()  # the same tab: the token is sent again without asking
    expect(page.locator("#conexao")).to_have_text("Conectado")
    assert [m["token"] for m in live_script.received if m["type"] == "auth"][-1] == live_script.token
    assert_clean(page, watched)


def test_a_remote_viewer_without_token_is_told_how_to_allow_it(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.remote_refused = True
    page.goto(live_server.url)
    expect(page.locator("#aviso")).to_contain_text("inicie o servidor com um token (MONITOR_TOKEN ou --token)")
    assert_clean(page, watched)


def test_the_page_says_when_the_server_is_gone_and_reconnects(
    browser_page: BrowserPage, live_script: Script, live_server: FakeLiveServer
) -> None:
    page, watched = browser_page
    live_script.state = lambda: state(client(), recent=[event(f"{ROOT}/antes.txt", 1)])
    open_page(page, live_server)
    live_server.go_away()
    expect(page.locator("#aviso")).to_contain_text("Sem conexão com o servidor desde")
    expect(page.locator("#conexao")).to_have_text("Servidor fora do ar")
    live_script.state = lambda: state(client(), recent=[event(f"{ROOT}/antes.txt", 1), event(f"{ROOT}/depois.txt", 2)])
    live_server.listen()
    expect(page.locator("#conexao")).to_have_text("Conectado")
    expect(page.locator("#aviso")).to_be_hidden()
    expect(rows(page)).to_have_count(2)
    live_server.send(events(event(f"{ROOT}/novo.txt", 3)))
    expect(rows(page).nth(0)).to_contain_text("novo.txt")
    # The attempts while the server was away are the only console errors (Chromium logs a refused WebSocket).
    problems = watched.problems(page, allowed=lambda text: "WebSocket connection to" in text)
    assert problems == [], problems


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


def test_the_page_files_hold_no_inline_script_or_style() -> None:
    """The CSP refuses inline code; this says so before a browser does (and keeps names out of innerHTML)."""
    html = (PAGE_DIR / "pagina.html").read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html and " style=" not in html and re.search(r"\son\w+=", html) is None
    script = (PAGE_DIR / "pagina.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script
    assert "localStorage" not in script
