// hallhub console: fills the page from the JSON API and keeps it live over SSE.
// Plain browser JavaScript, served by the hub: no framework, no CDN.
"use strict";

const M = JSON.parse(document.getElementById("messages").textContent);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const USER = document.querySelector('meta[name="user"]').content;
const PAGE = document.body.dataset.page;
const DEVICE = document.body.dataset.device;
const RECONNECT_MS = 2000;

function t(key) {
  return M[key] || key;
}

async function api(path, method = "GET", body = undefined) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    options.headers["X-CSRF-Token"] = CSRF;
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, options);
  let data = null;
  try {
    data = await response.json();
  } catch (_ignored) {
    data = null;
  }
  return { status: response.status, data };
}

function cell(content) {
  const td = document.createElement("td");
  if (content instanceof Node) {
    td.appendChild(content);
  } else {
    td.textContent = content === null || content === undefined ? "–" : String(content);
  }
  return td;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      cells.forEach((content) => tr.appendChild(cell(content)));
      return tr;
    })
  );
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
}

function values(obj) {
  return Object.entries(obj || {})
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

function stateOf(device) {
  if (device.state === "pending") return "pending";
  return device.online ? "online" : "offline";
}

// -- pages ---------------------------------------------------------------------------

async function showOverview() {
  const [devices, alerts, sync, queue, ratings] = await Promise.all([
    api("/api/devices"),
    api("/api/alerts?active=1"),
    api("/api/sync"),
    api("/api/queue"),
    api("/api/ratings/today"),
  ]);
  const open = alerts.data.alerts.filter((a) => a.state !== "resolved");
  open.sort((a, b) => (a.severity === "urgent" ? -1 : 0) - (b.severity === "urgent" ? -1 : 0));
  setText("figure-alarms", String(open.length));
  fillTable(
    "open-alarms",
    open.map((a) => [a.alert_id, a.severity, a.device_id, a.message, a.state])
  );
  const places = new Map();
  for (const d of devices.data.devices) {
    const key = `${d.floor ?? "–"}|${d.zone || "–"}`;
    const place = places.get(key) || { floor: d.floor ?? "–", zone: d.zone || "–", on: 0, off: 0 };
    if (d.online) place.on += 1;
    else place.off += 1;
    places.set(key, place);
  }
  const byPlace = [...places.values()].sort(
    (a, b) => String(a.floor).localeCompare(String(b.floor)) || a.zone.localeCompare(b.zone)
  );
  fillTable("health", byPlace.map((p) => [p.floor, p.zone, p.on, p.off]));
  setText("figure-queue", queue.status === 200
    ? String(queue.data.categories.reduce((n, c) => n + c.waiting, 0)) : t("not_available"));
  setText("figure-ratings", ratings.status === 200
    ? values(ratings.data.levels) || "0" : t("not_available"));
  const lags = Object.values(sync.data.lag_seconds || {}).filter((v) => v !== null);
  setText("figure-lag", sync.data.configured ? `${Math.max(0, ...lags)} s` : t("sync.not_configured"));
}

async function showDevices() {
  const { data } = await api("/api/devices");
  const search = document.getElementById("device-search").value.trim().toLowerCase();
  const wanted = document.getElementById("device-state").value;
  const shown = data.devices.filter((d) => {
    const text = `${d.device_id} ${d.kind} ${d.zone} ${d.model}`.toLowerCase();
    return (!search || text.includes(search)) && (!wanted || stateOf(d) === wanted);
  });
  fillTable(
    "devices",
    shown.map((d) => [
      link(`/ui/devices/${encodeURIComponent(d.device_id)}`, d.device_id),
      d.kind, d.floor, d.zone, t(`state.${stateOf(d)}`), values(d.last_values),
    ])
  );
  const pending = data.devices.filter((d) => stateOf(d) === "pending");
  fillTable(
    "pending",
    pending.map((d) => [
      d.device_id, d.kind, d.zone,
      button(`${t("action.commission")} ${d.device_id}`, () => commission(d)),
    ])
  );
}

async function commission(device) {
  const result = await api(`/api/devices/${encodeURIComponent(device.device_id)}/commission`, "POST", {});
  if (result.status === 404) window.alert(t("not_available"));
  else if (result.status >= 400) window.alert(`${t("result.failed")}: ${result.data?.error}`);
  await refresh();
}

function drawChart(points) {
  const series = [];
  for (const p of points) {
    const numeric = Object.entries(p.values).find(([k, v]) => typeof v === "number" && k !== "ts");
    if (numeric) series.push({ at: p.at, field: numeric[0], value: numeric[1] });
  }
  const holder = document.getElementById("chart");
  holder.replaceChildren();
  if (series.length === 0) {
    holder.textContent = "–";
    return;
  }
  const width = 600, height = 160, pad = 24;
  const xs = series.map((s) => s.at), ys = series.map((s) => s.value);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${series[0].field}: ${y0} – ${y1}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", series.map((s) => `${sx(s.at)},${sy(s.value)}`).join(" "));
  line.setAttribute("class", "series");
  svg.appendChild(line);
  for (const [y, label] of [[y0, String(y0)], [y1, String(y1)]]) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "2");
    text.setAttribute("y", String(sy(y)));
    text.textContent = label;
    svg.appendChild(text);
  }
  holder.appendChild(svg);
}

async function showDevice() {
  const id = encodeURIComponent(DEVICE);
  const [devices, history, settings] = await Promise.all([
    api("/api/devices"), api(`/api/devices/${id}/history`), api(`/api/devices/${id}/settings`),
  ]);
  const device = devices.data.devices.find((d) => d.device_id === DEVICE);
  if (!device) {
    setText("device-health", t("not_available"));
    return;
  }
  setText("device-health", `${t(`state.${stateOf(device)}`)} · ${device.reason} · ${when(device.last_seen)}`);
  setText("device-drift", device.drift ? values(device.drift) : t("device.no_drift"));
  fillTable("last-values", Object.entries(device.last_values).map(([k, v]) => [k, JSON.stringify(v)]));
  if (history.status === 200) drawChart(history.data.points);
  if (settings.status === 200) {
    fillTable("settings", settings.data.settings.map((s) => [s.name, JSON.stringify(s.value), s.source]));
  }
}

async function sendCommand(event) {
  event.preventDefault();
  const command = document.getElementById("command-name").value;
  const result = await api(`/api/devices/${encodeURIComponent(DEVICE)}/commands`, "POST", { command });
  const text = result.status === 404 ? t("not_available")
    : result.status < 400 ? t("result.done") : `${t("result.failed")}: ${result.data?.error}`;
  setText("command-result", text);
}

async function alertAction(alert, action) {
  const result = await api(`/api/alerts/${alert.alert_id}/${action}`, "POST", { by: USER });
  if (result.status >= 400) window.alert(`${t("result.failed")}: ${result.data?.error}`);
  await refresh();
}

async function showAlerts() {
  const { data } = await api("/api/alerts?active=1");
  fillTable(
    "alerts",
    data.alerts.map((a) => {
      const actions = document.createElement("span");
      if (a.state === "open") {
        actions.appendChild(button(`${t("action.acknowledge")} #${a.alert_id}`, () => alertAction(a, "acknowledge")));
      }
      actions.appendChild(button(`${t("action.resolve")} #${a.alert_id}`, () => alertAction(a, "resolve")));
      return [a.alert_id, a.severity, a.team, a.device_id, a.message, a.state, a.count, actions];
    })
  );
}

async function silence(event) {
  event.preventDefault();
  const body = {
    scope: document.getElementById("silence-scope").value,
    value: document.getElementById("silence-value").value,
    duration: Number(document.getElementById("silence-minutes").value) * 60,
    by: USER,
  };
  const result = await api("/api/silences", "POST", body);
  setText("silence-result", result.status < 400 ? t("result.done") : `${t("result.failed")}: ${result.data?.error}`);
}

async function showQueue() {
  const { status, data } = await api("/api/queue");
  if (status !== 200) {
    setText("queue-status", t("not_available"));
    return;
  }
  setText("issued-today", String(data.tickets_issued_today));
  fillTable("categories", data.categories.map((c) => [`${c.name} (${c.category})`, c.waiting, c.average_wait_s]));
  fillTable("windows", data.windows.map((w) => [w.window, w.state, w.serving]));
}

async function showRatings() {
  const { status, data } = await api("/api/ratings/today");
  if (status !== 200) {
    setText("ratings-status", t("not_available"));
    return;
  }
  setText("unrated", String(data.unrated));
  fillTable("distribution", Object.entries(data.levels).map(([level, n]) => [level, n]));
  fillTable("bad-ratings", data.bad.map((b) => [b.rating_id, b.window, b.level, b.contact_due, b.fix_due]));
}

async function showSync() {
  const { data } = await api("/api/sync");
  setText("sync-status", data.configured ? `${data.link?.state || ""}` : t("sync.not_configured"));
  fillTable(
    "lanes",
    Object.entries(data.lanes).map(([lane, row]) => [lane, row.backlog, data.lag_seconds[lane], when(row.last_ack_at)])
  );
  const aside = data.set_aside;
  fillTable("set-aside", [
    [t("sync.quarantined"), "", aside.quarantined_open],
    [t("sync.dead_lettered"), "", aside.dead_lettered],
    ...aside.quarantine.map((q) => [`${t("sync.quarantined")} ${q.event_id || ""}`, q.reason, 1]),
    ...aside.dead_letters.map((q) => [`${t("sync.dead_lettered")} ${q.event_id || ""}`, q.reason, 1]),
  ]);
}

async function switchRule(rule) {
  const action = rule.enabled ? "disable" : "enable";
  const result = await api(`/api/rules/${encodeURIComponent(rule.id)}/${action}`, "POST", {});
  if (result.status >= 400) window.alert(`${t("result.failed")}: ${result.data?.error}`);
  await refresh();
}

async function showRules() {
  const { data } = await api("/api/rules");
  fillTable(
    "rules",
    data.rules.map((r) => [
      r.id, r.description, r.enabled ? "✓" : "✗",
      button(`${t(r.enabled ? "action.disable" : "action.enable")} ${r.id}`, () => switchRule(r)),
    ])
  );
}

async function checkRules(preview) {
  const body = {
    rules: document.getElementById("rule-text").value,
    from: document.getElementById("rule-from").value,
    to: document.getElementById("rule-to").value,
  };
  const result = await api(preview ? "/api/rules/preview" : "/api/rules/validate", "POST", body);
  const head = result.status < 300 ? t("rules.valid") : t("rules.invalid");
  setText("rule-result", `${head}\n${JSON.stringify(result.data, null, 2)}`);
}

const SHOW = {
  overview: showOverview, devices: showDevices, device: showDevice, alerts: showAlerts,
  queue: showQueue, ratings: showRatings, sync: showSync, rules: showRules,
};

async function refresh() {
  try {
    await SHOW[PAGE]();
    document.body.dataset.refreshed = String(Date.now());
  } catch (error) {
    console.error("refresh failed", error);
  }
}

// -- live updates --------------------------------------------------------------------

let pending = null;

function refreshSoon() {
  if (pending === null) {
    pending = setTimeout(() => {
      pending = null;
      refresh();
    }, 250);
  }
}

function connectLive() {
  const banner = document.getElementById("live-banner");
  const source = new EventSource("/api/events/stream");
  source.addEventListener("hello", () => {
    banner.hidden = true;
    document.body.dataset.live = "up";
    refreshSoon();
  });
  source.addEventListener("event", refreshSoon);
  source.addEventListener("change", refreshSoon);
  source.addEventListener("alerts", refreshSoon);
  source.onerror = () => {
    source.close();
    banner.hidden = false;
    document.body.dataset.live = "down";
    setTimeout(connectLive, RECONNECT_MS);
  };
}

// -- wiring --------------------------------------------------------------------------

function on(id, event, handler) {
  const node = document.getElementById(id);
  if (node) node.addEventListener(event, handler);
}

on("device-search", "input", refreshSoon);
on("device-state", "change", refreshSoon);
on("command-form", "submit", sendCommand);
on("silence-form", "submit", silence);
on("rule-validate", "click", () => checkRules(false));
on("rule-preview", "click", () => checkRules(true));
on("language", "change", async (event) => {
  await api("/api/session/language", "POST", { language: event.target.value });
  window.location.reload();
});
on("logout", "click", async () => {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": CSRF } });
  window.location.href = "/login";
});

refresh();
connectLive();
