// The live page of servidor.py: reads /ao-vivo (README, "A página ao vivo") and shows it.
// Every name from the server reaches the DOM through textContent or a text node, never as HTML.
"use strict";

(() => {
  const MAX_ROWS = 500; // event rows in the DOM at most
  const MAX_KEPT = 2000; // events kept in memory for the filters (and while paused)
  const CHART_BUCKET_MS = 5000; // one point of the events-per-second chart
  const CHART_POINTS = 60; // 60 x 5 s: the last five minutes
  const RETRY_MS = [1000, 2000, 4000, 8000, 10000];
  const TOKEN_KEY = "monitor-token"; // sessionStorage only: never the URL, never persistent storage
  const CLOSE_TOKEN = 4401; // the token is missing or wrong
  const CLOSE_REMOTE = 4403; // a viewer on another machine, and the server has no token

  const KINDS = { created: "criado", modified: "modificado", deleted: "excluído", moved: "movido" };
  const NOUNS = { file: "arquivo", dir: "diretório", symlink: "link simbólico", other: "arquivo especial" };
  const ORIGINS = {
    live: "",
    rescan: " (varredura)",
    startup: " (varredura inicial)",
    resync: " (ressincronização)",
  };

  const $ = (id) => document.getElementById(id);
  const view = {
    status: $("conexao"),
    notice: $("aviso"),
    tokenForm: $("form-token"),
    tokenInput: $("token"),
    tokenError: $("token-erro"),
    clients: $("lista-clientes"),
    noClients: $("sem-clientes"),
    events: $("eventos"),
    filterClient: $("filtro-cliente"),
    filterKind: $("filtro-tipo"),
    filterPath: $("filtro-caminho"),
    pause: $("pausa"),
    pending: $("pendentes"),
    treeClient: $("arvore-cliente"),
    treeTrail: $("arvore-caminho"),
    treeEntries: $("arvore-entradas"),
    treeNote: $("arvore-nota"),
    historyPath: $("historico-caminho"),
    historyEvents: $("historico-eventos"),
  };

  const state = {
    ws: null,
    token: null, // in memory; sessionStorage keeps it across reloads of this tab only
    attempt: 0,
    retryTimer: null,
    offlineSince: null,
    clients: new Map(), // client_id -> the server's client object
    kept: [], // events and markers, oldest first
    paused: false,
    unseen: 0, // events that arrived while paused
    rates: new Map(), // client_id -> Map(bucket -> events)
    charts: new Map(), // client_id -> its <polyline>
    nextId: 1,
    treeStack: [], // [{name, path, path_b64}] from the root down
    treeRequest: 0,
    historyRequest: 0,
  };

  // ---- Names: escaped like the server's console (servidor.py, escape) -------------------------

  function unsafe(code) {
    return (
      code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0x061c || code === 0x200e || code === 0x200f ||
      code === 0x2028 || code === 0x2029 || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)
    );
  }

  function escapeOf(code) {
    if (code === 0x09) return "\\t";
    if (code === 0x0a) return "\\n";
    if (code === 0x0d) return "\\r";
    if (code >= 0xdc80 && code <= 0xdcff) return "\\x" + (code - 0xdc00).toString(16); // an undecodable byte
    const hex = code.toString(16).padStart(code < 0x100 ? 2 : 4, "0");
    return (code < 0x100 ? "\\x" : "\\u") + hex;
  }

  // [[escaped, text], ...]: plain runs and the escapes of unsafe characters and lone surrogates.
  function pieces(text, out = []) {
    let run = "";
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0xd800 && code < 0xdc00 && i + 1 < text.length) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next < 0xe000) {
          run += text[i] + text[i + 1];
          i++;
          continue;
        }
      }
      if (unsafe(code) || (code >= 0xd800 && code < 0xe000)) {
        if (run) out.push([false, run]);
        out.push([true, escapeOf(code)]);
        run = "";
      } else {
        run += text[i];
      }
    }
    if (run) out.push([false, run]);
    return out;
  }

  // The exact bytes of a path that is not UTF-8 (its _b64 form): valid UTF-8 as text, other bytes as \xNN.
  function bytePieces(b64) {
    let bytes;
    try {
      bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    } catch (err) {
      return [[true, "\\?"]];
    }
    const out = [];
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let start = 0;
    const flush = (end) => {
      if (end > start) pieces(decoder.decode(bytes.subarray(start, end)), out);
    };
    let i = 0;
    while (i < bytes.length) {
      const length = utf8Length(bytes, i);
      if (length) {
        i += length;
      } else {
        flush(i);
        out.push([true, "\\x" + bytes[i].toString(16).padStart(2, "0")]);
        i++;
        start = i;
      }
    }
    flush(bytes.length);
    return out;
  }

  // Length of the well-formed UTF-8 sequence at i (RFC 3629), 0 if there is none.
  function utf8Length(b, i) {
    const c = b[i];
    const cont = (k) => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
      const d = b[i + 1];
      const ok = c === 0xe0 ? d >= 0xa0 : c === 0xed ? d < 0xa0 : true;
      return ok && cont(1) && cont(2) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
      const d = b[i + 1];
      const ok = c === 0xf0 ? d >= 0x90 : c === 0xf4 ? d < 0x90 : true;
      return ok && cont(1) && cont(2) && cont(3) ? 4 : 0;
    }
    return 0;
  }

  // Append a name to el: text nodes, and each escape in a <span class="esc"> so it shows.
  function appendName(el, text, b64) {
    const parts = b64 ? bytePieces(b64) : pieces(String(text ?? ""));
    for (const [escaped, part] of parts) {
      if (escaped) {
        const span = document.createElement("span");
        span.className = "esc";
        span.textContent = part;
        el.append(span);
      } else {
        el.append(document.createTextNode(part));
      }
    }
    return el;
  }

  function plainName(text, b64) {
    return (b64 ? bytePieces(b64) : pieces(String(text ?? ""))).map((p) => p[1]).join("");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- Formats ---------------------------------------------------------------------------------

  // Decimal units and a decimal comma, like the server's console: 999 B, 1,0 kB, 1,2 MB.
  function formatSize(size) {
    if (typeof size !== "number") return "";
    if (size < 1000) return `${size} B`;
    const units = ["kB", "MB", "GB", "TB", "PB", "EB"];
    let value = size / 1000;
    let unit = 0;
    while (value >= 999.95 && unit < units.length - 1) {
      value /= 1000;
      unit++;
    }
    return `${value.toFixed(1).replace(".", ",")} ${units[unit]}`;
  }

  function formatTime(iso, withDate) {
    if (!iso) return "—";
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    return withDate ? when.toLocaleString("pt-BR") : when.toLocaleTimeString("pt-BR");
  }

  function describe(ev) {
    if (ev.event === "message") return "mensagem: ";
    const noun = NOUNS[ev.type] || (ev.is_dir ? NOUNS.dir : NOUNS.file);
    const verb = (KINDS[ev.event] || String(ev.event)) + (ev.attrib ? " (atributos)" : "");
    return `${noun} ${verb}: `;
  }

  // ---- Connection ------------------------------------------------------------------------------

  function socketUrl() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ao-vivo`;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    const ws = new WebSocket(socketUrl());
    state.ws = ws;
    ws.addEventListener("message", (msg) => {
      if (state.ws === ws) receive(msg.data);
    });
    ws.addEventListener("close", (closing) => {
      if (state.ws === ws) closed(closing.code, closing.reason);
    });
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function closed(code, reason) {
    state.ws = null;
    if (code === CLOSE_TOKEN) {
      forgetToken();
      askToken(reason || "Token inválido.");
      setStatus("Token necessário", "fora");
      return;
    }
    if (code === CLOSE_REMOTE) {
      showNotice(
        `${reason || "O servidor só mostra os eventos para esta mesma máquina."} ` +
          "Para ver de outra máquina, inicie o servidor com um token (MONITOR_TOKEN ou --token)."
      );
    } else {
      if (state.offlineSince === null) state.offlineSince = new Date();
    }
    const delay = RETRY_MS[Math.min(state.attempt, RETRY_MS.length - 1)];
    state.attempt++;
    if (code !== CLOSE_REMOTE) {
      showNotice(
        `Sem conexão com o servidor desde ${state.offlineSince.toLocaleTimeString("pt-BR")}. ` +
          `Tentando reconectar em ${Math.round(delay / 1000)} s…`
      );
    }
    setStatus("Servidor fora do ar", "fora");
    state.retryTimer = setTimeout(connect, delay);
  }

  function setStatus(text, kind) {
    view.status.textContent = text;
    view.status.className = `estado ${kind || ""}`;
  }

  function showNotice(text) {
    view.notice.textContent = text;
    view.notice.hidden = !text;
  }

  // ---- Token -----------------------------------------------------------------------------------

  function storedToken() {
    if (state.token) return state.token;
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (err) {
      return null;
    }
  }

  function forgetToken() {
    state.token = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      // storage disabled: the token was in memory only
    }
  }

  function askToken(error) {
    view.tokenError.textContent = error || "";
    view.tokenError.hidden = !error;
    view.tokenForm.hidden = false;
    view.tokenInput.focus();
  }

  view.tokenForm.addEventListener("submit", (submit) => {
    submit.preventDefault(); // no navigation: the token goes over the socket only
    const token = view.tokenInput.value;
    view.tokenInput.value = "";
    if (!token) return;
    state.token = token;
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (err) {
      // storage disabled: keep it in memory
    }
    view.tokenForm.hidden = true;
    if (!send({ type: "auth", token })) connect();
  });

  // ---- Messages --------------------------------------------------------------------------------

  function receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (err) {
      return;
    }
    const handlers = {
      auth_required: onAuthRequired,
      state: onState,
      events: onEvents,
      client: onClient,
      omitted: onOmitted,
      tree: onTree,
      history: onHistory,
      error: onError,
    };
    const handler = handlers[message.type];
    if (handler) handler(message);
  }

  function onAuthRequired() {
    const token = storedToken();
    if (token) {
      state.token = token;
      send({ type: "auth", token });
    } else {
      askToken("");
      setStatus("Token necessário", "fora");
    }
  }

  function onState(message) {
    state.attempt = 0;
    state.offlineSince = null;
    showNotice("");
    view.tokenForm.hidden = true;
    setStatus("Conectado", "conectado");
    state.clients = new Map((message.clients || []).map((c) => [c.client_id, c]));
    const markers = state.kept.filter((item) => item.marker && item.fresh);
    markers.forEach((item) => (item.fresh = false));
    state.kept = (message.events || []).slice(-MAX_KEPT).concat(markers);
    renderClients();
    renderEvents();
    if (!view.treeClient.value && state.clients.size) {
      view.treeClient.value = state.clients.keys().next().value;
      chooseTreeClient();
    }
  }

  function onEvents(message) {
    const now = Date.now();
    const bucket = Math.floor(now / CHART_BUCKET_MS);
    for (const ev of message.events || []) {
      state.kept.push(ev);
      if (ev.client_id) {
        const rates = state.rates.get(ev.client_id) || new Map();
        rates.set(bucket, (rates.get(bucket) || 0) + 1);
        state.rates.set(ev.client_id, rates);
        const client = state.clients.get(ev.client_id);
        if (client) {
          client.events = Math.max(client.events || 0, ev.seq || 0); // the client numbers its events
          client.last_event = ev.ts;
        }
      }
      if (state.paused) state.unseen++;
      else showEvent(ev);
    }
    if (state.kept.length > MAX_KEPT) state.kept.splice(0, state.kept.length - MAX_KEPT);
    if (state.paused) view.pending.textContent = `${state.unseen} eventos novos enquanto pausado`;
    for (const row of view.clients.children) {
      const client = state.clients.get(row.dataset.clientId);
      if (!client) continue;
      row.querySelector(".eventos-total").textContent = String(client.events ?? 0);
      row.querySelector(".ultimo-evento").textContent = formatTime(client.last_event, true);
    }
  }

  function onClient(message) {
    const client = message.client;
    if (!client || !client.client_id) return;
    state.clients.set(client.client_id, client);
    renderClients();
  }

  function onOmitted(message) {
    const item = { marker: true, fresh: true, count: message.count, at: new Date().toISOString() };
    state.kept.push(item);
    if (!state.paused) showEvent(item);
  }

  function onError(message) {
    if (message.id && message.id === state.treeRequest) view.treeNote.textContent = message.message || "erro";
    else if (message.id && message.id === state.historyRequest) {
      view.historyPath.textContent = message.message || "erro";
    }
    else showNotice(message.message || "Erro do servidor.");
  }

  // ---- Clients ---------------------------------------------------------------------------------

  function renderClients() {
    const rows = [];
    const ordered = [...state.clients.values()].sort(
      (a, b) =>
        Number(Boolean(b.connected)) - Number(Boolean(a.connected)) ||
        String(b.last_seen).localeCompare(String(a.last_seen))
    );
    for (const c of ordered) {
      const tr = el("tr", c.connected ? "" : "desconectado");
      tr.dataset.clientId = c.client_id;
      tr.append(appendName(el("td", "nome"), c.client));
      tr.append(appendName(el("td", "caminho"), c.root));
      tr.append(el("td", "", c.connected ? c.address || "—" : "desconectado"));
      const since = c.connected ? formatTime(c.connected_since, true) : `visto em ${formatTime(c.last_seen, true)}`;
      tr.append(el("td", "", since));
      tr.append(el("td", "eventos-total", String(c.events ?? 0)));
      tr.append(el("td", "ultimo-evento", formatTime(c.last_event, true)));
      const digest =
        c.digest === "matched" ? ["confere", "confere"] : c.digest === "differs" ? ["difere", "difere"] : ["", "—"];
      tr.append(el("td", digest[0], digest[1]));
      const chart = el("td");
      chart.append(chartOf(c.client_id));
      tr.append(chart);
      rows.push(tr);
    }
    view.clients.replaceChildren(...rows);
    view.noClients.hidden = rows.length > 0;
    refreshClientSelects();
  }

  function refreshClientSelects() {
    for (const select of [view.filterClient, view.treeClient]) {
      const chosen = select.value;
      const first = select.options[0];
      const options = [first];
      for (const c of state.clients.values()) {
        const option = el("option", "", plainName(c.client));
        option.value = c.client_id;
        options.push(option);
      }
      select.replaceChildren(...options);
      select.value = state.clients.has(chosen) ? chosen : "";
    }
  }

  const SVG = "http://www.w3.org/2000/svg";

  function chartOf(clientId) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "taxa");
    svg.setAttribute("width", "120");
    svg.setAttribute("height", "24");
    svg.setAttribute("viewBox", "0 0 120 24");
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("class", "eixo");
    axis.setAttribute("x1", "0");
    axis.setAttribute("x2", "120");
    axis.setAttribute("y1", "23.5");
    axis.setAttribute("y2", "23.5");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", "serie");
    const title = document.createElementNS(SVG, "title");
    svg.append(title, axis, line);
    state.charts.set(clientId, line);
    drawChart(clientId);
    return svg;
  }

  function drawChart(clientId) {
    const line = state.charts.get(clientId);
    if (!line) return;
    const rates = state.rates.get(clientId) || new Map();
    const last = Math.floor(Date.now() / CHART_BUCKET_MS);
    const values = [];
    for (let b = last - CHART_POINTS + 1; b <= last; b++) values.push((rates.get(b) || 0) / (CHART_BUCKET_MS / 1000));
    for (const b of rates.keys()) if (b <= last - CHART_POINTS) rates.delete(b);
    const top = Math.max(1, ...values);
    const points = values.map(
      (v, i) => `${((i * 120) / (CHART_POINTS - 1)).toFixed(1)},${(22 - (v / top) * 20).toFixed(1)}`
    );
    line.setAttribute("points", points.join(" "));
    const peak = Math.max(...values);
    const shown = peak.toFixed(1).replace(".", ",");
    line.parentNode.firstChild.textContent = `máximo de ${shown} eventos/s nos últimos 5 minutos`;
  }

  setInterval(() => {
    for (const [clientId, line] of [...state.charts]) {
      if (line.isConnected) drawChart(clientId);
      else state.charts.delete(clientId); // its row was redrawn or its client is gone
    }
  }, 1000);

  // ---- Events ----------------------------------------------------------------------------------

  function matches(ev) {
    if (ev.marker) return true;
    const client = view.filterClient.value;
    const kind = view.filterKind.value;
    const text = view.filterPath.value.toLowerCase();
    if (client && ev.client_id !== client) return false;
    if (kind && ev.event !== kind) return false;
    if (text) {
      const shown = `${plainName(ev.path, ev.path_b64)} ${plainName(ev.dest_path, ev.dest_path_b64)}`.toLowerCase();
      if (!shown.includes(text)) return false;
    }
    return true;
  }

  function eventRow(ev) {
    const li = el("li");
    if (ev.marker) {
      li.className = "omitidos";
      li.textContent =
        `${ev.count} eventos omitidos: esta página ficou para trás; a lista recomeça do estado atual.`;
      return li;
    }
    li.className = `tipo-${ev.event}`;
    li.append(el("span", "hora", formatTime(ev.ts, false)));
    li.append(appendName(el("span", "cliente"), `[${ev.client ?? ""}]`));
    li.append(el("span", `tipo tipo-${ev.event}`, describe(ev)));
    if (ev.event === "message") {
      li.append(appendName(el("span", "caminho"), ev.text ?? `<${ev.data_b64 ? "bytes binários" : ""}>`));
      return li;
    }
    li.append(pathButton(ev.client_id, ev.path, ev.path_b64));
    if (ev.dest_path != null) {
      li.append(document.createTextNode(" -> "));
      li.append(pathButton(ev.client_id, ev.dest_path, ev.dest_path_b64));
    }
    if (ev.target_path != null) {
      li.append(document.createTextNode(" -> "));
      li.append(appendName(el("span", "caminho"), ev.target_path, ev.target_path_b64));
    }
    if (typeof ev.size === "number" && ev.type === "file") {
      li.append(document.createTextNode(` (${formatSize(ev.size)})`));
    }
    li.append(document.createTextNode(ORIGINS[ev.origin] || ""));
    return li;
  }

  function pathButton(clientId, path, b64) {
    const button = appendName(el("button", "link caminho"), path, b64);
    button.type = "button";
    button.title = "ver o histórico";
    button.addEventListener("click", () => requestHistory(clientId, path, b64));
    return button;
  }

  function showEvent(ev) {
    if (!matches(ev)) return;
    view.events.insertBefore(eventRow(ev), view.events.firstChild);
    while (view.events.childElementCount > MAX_ROWS) view.events.lastElementChild.remove();
  }

  function renderEvents() {
    const rows = [];
    for (let i = state.kept.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
      if (matches(state.kept[i])) rows.push(eventRow(state.kept[i]));
    }
    view.events.replaceChildren(...rows);
  }

  for (const control of [view.filterClient, view.filterKind]) control.addEventListener("change", renderEvents);
  view.filterPath.addEventListener("input", renderEvents);

  view.pause.addEventListener("click", () => {
    state.paused = !state.paused;
    view.pause.textContent = state.paused ? "Continuar" : "Pausar";
    view.pause.setAttribute("aria-pressed", String(state.paused));
    if (state.paused) {
      state.unseen = 0;
      view.pending.textContent = "pausado";
    } else {
      view.pending.textContent = "";
      renderEvents();
    }
  });

  // ---- Tree ------------------------------------------------------------------------------------

  function chooseTreeClient() {
    const clientId = view.treeClient.value;
    const client = state.clients.get(clientId);
    state.treeStack = client ? [{ name: client.root, path: client.root, path_b64: null }] : [];
    requestTree();
  }

  function requestTree() {
    const clientId = view.treeClient.value;
    const here = state.treeStack[state.treeStack.length - 1];
    renderTrail();
    if (!clientId || !here) {
      view.treeEntries.replaceChildren();
      view.treeNote.textContent = "Escolha um cliente para ver a árvore dele.";
      return;
    }
    state.treeRequest = state.nextId++;
    const request = { type: "tree", id: state.treeRequest, client_id: clientId, path: here.path };
    if (here.path_b64) request.path_b64 = here.path_b64;
    view.treeNote.textContent = "Carregando…";
    send(request);
  }

  function renderTrail() {
    const parts = state.treeStack.map((step, depth) => {
      const button = appendName(el("button", "link caminho"), step.name, depth ? step.name_b64 : null);
      button.type = "button";
      button.addEventListener("click", () => {
        state.treeStack.length = depth + 1;
        requestTree();
      });
      return button;
    });
    const joined = parts.flatMap((part, i) => (i ? [document.createTextNode(" / "), part] : [part]));
    view.treeTrail.replaceChildren(...joined);
  }

  function onTree(message) {
    if (message.id !== state.treeRequest) return;
    const rows = (message.entries || []).map((entry) => {
      const tr = el("tr");
      const name = el("td");
      const button = appendName(el("button", "link caminho"), entry.name, entry.name_b64);
      button.type = "button";
      if (entry.type === "dir") {
        button.title = "abrir a pasta";
        button.addEventListener("click", () => {
          const step = { name: entry.name, name_b64: entry.name_b64, path: entry.path, path_b64: entry.path_b64 };
          state.treeStack.push(step);
          requestTree();
        });
      } else {
        button.title = "ver o histórico";
        button.addEventListener("click", () => requestHistory(message.client_id, entry.path, entry.path_b64));
      }
      name.append(button);
      tr.append(name, el("td", "", NOUNS[entry.type] || "—"), el("td", "", formatSize(entry.size)));
      tr.append(el("td", "", formatTime(entry.mtime, true)));
      return tr;
    });
    view.treeEntries.replaceChildren(...rows);
    const count = rows.length === 1 ? "1 entrada" : `${rows.length} entradas`;
    const note = rows.length ? count : "Pasta vazia.";
    view.treeNote.textContent = message.truncated ? `${count} (lista cortada pelo servidor)` : note;
  }

  view.treeClient.addEventListener("change", chooseTreeClient);

  // ---- History ---------------------------------------------------------------------------------

  function requestHistory(clientId, path, b64) {
    if (!clientId) return;
    state.historyRequest = state.nextId++;
    const request = { type: "history", id: state.historyRequest, client_id: clientId, path };
    if (b64) request.path_b64 = b64;
    view.historyPath.replaceChildren(
      document.createTextNode("Carregando o histórico de "),
      appendName(el("span", "caminho"), path, b64)
    );
    view.historyEvents.replaceChildren();
    send(request);
    document.getElementById("historico").scrollIntoView({ block: "nearest" });
  }

  function onHistory(message) {
    if (message.id !== state.historyRequest) return;
    const events = message.events || [];
    const rows = events.map((ev) => {
      const tr = el("tr");
      tr.append(el("td", "", formatTime(ev.ts, true)), el("td", "", describe(ev).replace(/: $/, "")));
      const where = appendName(el("td", "caminho"), ev.path, ev.path_b64);
      if (ev.dest_path != null) {
        where.append(document.createTextNode(" -> "));
        appendName(where, ev.dest_path, ev.dest_path_b64);
      }
      tr.append(where, el("td", "", formatSize(ev.size)), el("td", "", ev.origin || ""));
      return tr;
    });
    view.historyEvents.replaceChildren(...rows);
    const label = events.length === 1 ? "1 evento" : `${events.length} eventos`;
    view.historyPath.replaceChildren(
      document.createTextNode(`${label}${message.truncated ? " (os mais recentes)" : ""} de `),
      appendName(el("span", "caminho"), message.path, message.path_b64)
    );
  }

  connect();
})();
