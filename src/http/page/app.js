// flotilla's admin page: plain JS, no dependencies, served by the binary.
// Polls the admin API for the fleet, alerts, rollouts and tasks, and follows a task's
// output over the observer WebSocket, resuming from the last offset after a drop.
"use strict";

const TOKEN_KEY = "flotilla-admin-token";
const POINTS = 300;
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  cursor: null,        // the current task page's cursor (null: the first page)
  nextCursor: null,
  picked: null,        // { task, handle }
  log: null,           // the log viewer's connection state
  series: { utilization: [], queue: [], mttr: [], guard: [] },
  timers: [],
};

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = cls || "muted";
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401 || res.status === 403) throw new Unauthorized(await res.text());
  const text = await res.text();
  const doc = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((doc && doc.detail) || res.status + " " + res.statusText);
  return doc;
}

// Runs `f` every `ms`, and at once; a failure shows in the header and is tried again.
function every(ms, f) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await f();
    } catch (e) {
      if (e instanceof Unauthorized) return signOut("the server refused the token");
      setStatus("server unreachable, retrying: " + e.message, "bad");
    } finally {
      running = false;
    }
  };
  tick();
  state.timers.push(setInterval(tick, ms));
}

function push(series, value) {
  series.push([Date.now(), value]);
  if (series.length > POINTS) series.shift();
}

// A line chart of the last POINTS samples; gaps (null) break the line.
function draw(canvas, series, fixedMax) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 18;
  ctx.clearRect(0, 0, w, h);
  const values = series.map((p) => p[1]).filter((v) => v !== null);
  const max = fixedMax ?? Math.max(1, ...values) * 1.1;
  ctx.strokeStyle = "#dde1e7";
  ctx.beginPath();
  ctx.moveTo(pad, h - pad); ctx.lineTo(w - 4, h - pad);
  ctx.stroke();
  ctx.fillStyle = "#7a8396";
  ctx.font = "10px system-ui";
  ctx.fillText(max.toFixed(max < 10 ? 2 : 0), 2, 10);
  ctx.fillText("0", 2, h - pad);
  if (series.length < 2) return;
  const t0 = series[0][0], t1 = series[series.length - 1][0];
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad - 6);
  const y = (v) => h - pad - (v / max) * (h - pad - 6);
  ctx.strokeStyle = "#3b6fd6";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let pen = false;
  for (const [t, v] of series) {
    if (v === null) { pen = false; continue; }
    if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
    pen = true;
  }
  ctx.stroke();
  const last = series[series.length - 1][1];
  canvas.dataset.points = String(series.length);
  canvas.dataset.last = last === null ? "" : String(last);
}

// What the page's cost is measured by (`flotilla-bench page`): when the fleet was first
// shown (ms since navigation), and how long each refresh took, fetches and rendering.
function timed(name, started) {
  const b = document.body.dataset;
  b[name + "Ms"] = (performance.now() - started).toFixed(1);
  const first = "first" + name[0].toUpperCase() + name.slice(1) + "Ms";
  if (!b[first]) b[first] = performance.now().toFixed(1);
}

async function refreshFleet() {
  const started = performance.now();
  const [fleet, list] = await Promise.all([api("GET", "/admin/fleet"), api("GET", "/v1/instances")]);
  const i = fleet.instances;
  const states = Object.entries(i.byState).map(([s, n]) => `${n} ${esc(s)}`).join(", ") || "none";
  $("totals").innerHTML =
    `<div><b>${i.total}</b>instances (${states})</div>` +
    `<div><b>${i.running}/${i.slots}</b>slots busy</div>` +
    `<div><b>${fleet.queue.total}</b>queued${fleet.queue.oldestWaitMs !== null ? `, oldest ${(fleet.queue.oldestWaitMs / 1000).toFixed(1)} s` : ""}</div>` +
    `<div><b>${fleet.observers}</b>observers</div>`;
  push(state.series.utilization, i.utilization);
  push(state.series.queue, fleet.queue.total);
  draw($("chart-utilization"), state.series.utilization, 1);
  draw($("chart-queue"), state.series.queue);
  const rows = list.instances.map((inst) => {
    const util = inst.slots ? inst.running.length / inst.slots : 0;
    const actions = inst.state === "failed" ? "" :
      ["cordon", "uncordon", "drain", "restart"]
        .map((a) => `<button data-id="${esc(inst.id)}" data-action="${a}">${a}</button>`).join(" ");
    const cls = inst.state === "ready" ? "good" : inst.state === "failed" ? "bad" : "warn";
    return `<tr data-id="${esc(inst.id)}"><td>${esc(inst.id)}</td>` +
      `<td class="${cls}" data-state="${esc(inst.state)}">${esc(inst.state)}${inst.reason ? ": " + esc(inst.reason) : ""}</td>` +
      `<td>${inst.slots}</td><td>${inst.running.length}</td>` +
      `<td><meter min="0" max="1" value="${util}"></meter> ${Math.round(util * 100)} %</td>` +
      `<td>${esc(inst.capabilities.join(", "))}</td><td>${actions}</td></tr>`;
  });
  const body = $("instances").tBodies[0];
  body.innerHTML = rows.join("");
  $("instances").dataset.count = String(list.instances.length);
  document.body.dataset.fleetUpdatedAt = String(Date.now());
  timed("fleet", started);
  setStatus("live · updated " + new Date().toLocaleTimeString(), "muted");
}

async function refreshAlerts() {
  const doc = await api("GET", "/admin/alerts");
  const byName = Object.fromEntries(doc.alerts.map((a) => [a.alert, a]));
  push(state.series.mttr, byName["mttr-high"] ? byName["mttr-high"].value : null);
  push(state.series.guard, byName["guard-violations"] ? byName["guard-violations"].value : null);
  draw($("chart-mttr"), state.series.mttr);
  draw($("chart-guard"), state.series.guard);
  $("alerts").tBodies[0].innerHTML = doc.alerts.map((a) => {
    const cls = a.state === "firing" ? "bad" : a.state === "pending" ? "warn" : "muted";
    const value = a.value === null ? "no data" : Number(a.value).toFixed(3);
    return `<tr data-alert="${esc(a.alert)}"><td>${esc(a.alert)}</td><td class="${cls}">${esc(a.state)}</td>` +
      `<td>${value}</td><td>${a.fires} ${a.threshold}</td><td>${esc(a.reason)}</td><td>${esc(a.since)}</td></tr>`;
  }).join("");
}

async function refreshRollout() {
  const doc = await api("GET", "/admin/rollout");
  $("rollout").innerHTML = doc.components.map((c) => {
    const gates = c.gates.map((g) =>
      `<li class="${g.pass ? "good" : "bad"}">${g.pass ? "pass" : "fail"} · ${esc(g.gate)}: ${esc(g.detail)}</li>`).join("");
    const last = c.changes.length ? c.changes[c.changes.length - 1] : null;
    const history = last ? `last change ${esc(last.from)} → ${esc(last.to)} by ${esc(last.by)} at ${esc(last.at)}${last.automatic ? " (automatic rollback)" : ""}` : "no change recorded";
    return `<div class="component" data-component="${esc(c.component)}"><b>${esc(c.component)}</b>: ` +
      `<span data-phase="${esc(c.phase)}">${esc(c.phase)}</span>` +
      (c.next ? ` — gates to ${esc(c.next)}:` : " — full") +
      `<div class="muted">limited: ${esc(c.limitedMeans)}; ${history}</div><ul>${gates}</ul></div>`;
  }).join("");
}

function taskQuery() {
  const q = new URLSearchParams({ limit: "100" });
  if ($("task-state").value) q.set("state", $("task-state").value);
  if ($("task-prefix").value.trim()) q.set("idPrefix", $("task-prefix").value.trim());
  if (state.cursor) q.set("cursor", state.cursor);
  return q.toString();
}

async function refreshTasks() {
  const started = performance.now();
  const page = await api("GET", "/admin/tasks?" + taskQuery());
  state.nextCursor = page.nextCursor;
  $("task-next").disabled = !page.nextCursor;
  $("task-page").textContent = `${page.tasks.length} task(s) on this page` + (page.nextCursor ? ", more after" : "");
  $("tasks").tBodies[0].innerHTML = page.tasks.map((t) => {
    const argv = (t.request && t.request.argv) ? t.request.argv.join(" ") : "";
    const picked = state.picked && state.picked.task === t.id ? " picked" : "";
    return `<tr class="${picked}" data-task="${esc(t.id)}" data-handle="${esc(t.handle)}"><td>${esc(t.id)}</td>` +
      `<td>${esc(t.state)}</td><td>${esc(t.instance)}</td><td>${t.attempts}/${t.maxAttempts}</td>` +
      `<td><code>${esc(argv.length > 80 ? argv.slice(0, 80) + "…" : argv)}</code></td><td>${esc(t.createdAt)}</td><td>${esc(t.reason)}</td></tr>`;
  }).join("");
  $("tasks").dataset.count = String(page.tasks.length);
  timed("tasks", started);
}

// The log viewer: one WebSocket at a time, resumed from the last offset after a drop.
function follow(task, handle) {
  if (state.log) state.log.stop();
  $("log").textContent = "";
  $("log-title").textContent = task;
  const log = { handle, last: 0, ended: false, stopped: false, socket: null, wait: 500, connects: 0 };
  state.log = log;
  log.stop = () => { log.stopped = true; if (log.socket) log.socket.close(); };
  const show = (text) => { $("log-state").textContent = text; };
  const append = (text, cls) => {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    const pre = $("log");
    pre.appendChild(span);
    while (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
    pre.scrollTop = pre.scrollHeight;
  };
  const connect = async () => {
    if (log.stopped || log.ended) return;
    let token;
    try {
      token = (await api("POST", `/admin/handles/${encodeURIComponent(handle)}/observer-token`)).token;
    } catch (e) {
      show(`cannot follow yet (${e.message}); retrying`);
      return setTimeout(connect, log.wait = Math.min(log.wait * 2, 5000));
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/v1/handles/${encodeURIComponent(handle)}/stream?from=${log.last}&token=${encodeURIComponent(token)}`;
    const socket = new WebSocket(url);
    log.socket = socket;
    log.connects += 1;
    $("log").dataset.connects = String(log.connects);
    socket.onopen = () => { log.wait = 500; show(`following from offset ${log.last}`); };
    socket.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      log.last = Math.max(log.last, f.offset);
      $("log").dataset.last = String(log.last);
      const data = f.encoding === "base64" ? atob(f.data) : f.data;
      if (f.kind === "stdout") append(data);
      else if (f.kind === "stderr") append(data, "stderr");
      else if (f.kind === "status") {
        log.ended = true;
        append(`[${f.status.state}${f.status.exitCode !== null ? ", exit " + f.status.exitCode : ""}]\n`, "meta");
      } else if (f.kind === "gap") append(`[offsets ${f.gap.first}–${f.gap.last} not shown: ${f.gap.reason}]\n`, "meta");
      else if (f.kind === "truncated") append(`[output before offset ${f.truncated.first} removed: ${f.truncated.reason}]\n`, "meta");
      else append(`[${f.kind}] ${data}\n`, "meta");
    };
    socket.onclose = () => {
      if (log.stopped) return;
      if (log.ended) return show(`ended at offset ${log.last}`);
      show(`connection dropped at offset ${log.last}; resuming`);
      setTimeout(connect, log.wait);
      log.wait = Math.min(log.wait * 2, 5000);
    };
  };
  connect();
}

function startApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  every(1000, refreshFleet);
  every(2000, refreshAlerts);
  every(2000, async () => { if (!state.cursor) await refreshTasks(); });
  every(15000, refreshRollout);
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.log) state.log.stop();
  $("app").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  setStatus("not signed in");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    try {
      await api("GET", "/admin/fleet");
    } catch (e) {
      return signOut(e instanceof Unauthorized ? "that token was refused" : "the server did not answer: " + e.message);
    }
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token").value = "";
    startApp();
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("instances").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    b.disabled = true;
    try {
      await api("POST", `/admin/instances/${encodeURIComponent(b.dataset.id)}/${b.dataset.action}`);
      await refreshFleet();
    } catch (e) {
      setStatus(`${b.dataset.action} ${b.dataset.id}: ${e.message}`, "bad");
    }
  });
  $("tasks").addEventListener("click", (ev) => {
    const row = ev.target.closest("tr[data-task]");
    if (!row) return;
    state.picked = { task: row.dataset.task, handle: row.dataset.handle };
    for (const r of $("tasks").tBodies[0].rows) r.classList.toggle("picked", r === row);
    follow(row.dataset.task, row.dataset.handle);
  });
  const shown = (e) => setStatus("tasks: " + e.message, "bad");
  const firstPage = () => { state.cursor = null; refreshTasks().catch(shown); };
  $("task-first").addEventListener("click", firstPage);
  $("task-state").addEventListener("change", firstPage);
  $("task-prefix").addEventListener("change", firstPage);
  $("task-next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursor = state.nextCursor;
    refreshTasks().catch(shown);
  });
  if (state.token) startApp(); else signOut("");
});
