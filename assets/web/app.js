// trainyard's web page: a client of the JSON API, as curl is. The token lives in this tab
// (sessionStorage) and goes out as a bearer header, never in a URL; event streams are read
// with fetch (EventSource cannot send headers). No framework, no build step.
"use strict";

const TOKEN_KEY = "trainyard.token";
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "stopped_early"];
const ACTIVE = new Set(["queued", "running"]);
let me = null;            // GET /me
let specDocs = null;      // GET /spec
let viewAbort = null;     // ends the current view's streams and timers
let charts = [];          // the current view's uPlot charts, for resizing

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});
const pct = (x) => (x === null || x === undefined ? "—" : (100 * x).toFixed(1) + " %");
const fmtLoss = (x) => (x === null || x === undefined ? "—" : Number(x).toPrecision(4));
const jobLabel = (j) => j.name || j.id.slice(0, 8);
/// The signed-in user's role: "student", "instructor" or "admin" (an older server says only admin).
const roleOf = (u) => (u && u.role) || (u && u.admin ? "admin" : "student");
/// Whether the signed-in user reads everyone's jobs, sweeps and the class (instructors, admins).
const readsEveryone = () => roleOf(me) !== "student";
/// Whether the signed-in user may cancel or resume what `owner` owns (their own; an admin's anyone's).
const mayManage = (owner) => owner === me.name || roleOf(me) === "admin";

function ago(iso) {
  if (!iso) return "—";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
/// Seconds waited, as people say it ("40 s", "12 min", "2.5 h").
function waited(s) {
  if (s === null || s === undefined) return "—";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function until(iso) {
  if (!iso) return "—";
  const s = (Date.parse(iso) - Date.now()) / 1000;
  if (s <= 0) return "now";
  if (s < 60) return "in " + Math.round(s) + " s";
  if (s < 3600) return "in " + Math.round(s / 60) + " min";
  return "in " + (s / 3600).toFixed(1) + " h";
}

/// "12 s ago" and "in 6 s" that stay true: the spans are redrawn every few seconds.
function agoSpan(iso) { return h("span", { "data-ago": iso || "", title: iso || "", text: ago(iso) }); }
function untilSpan(iso) { return h("span", { "data-until": iso || "", title: iso || "", text: until(iso) }); }
setInterval(() => {
  for (const el of document.querySelectorAll("[data-ago]")) el.textContent = ago(el.dataset.ago || null);
  for (const el of document.querySelectorAll("[data-until]")) el.textContent = until(el.dataset.until || null);
}, 2000);

function flash(message, bad) {
  const f = $("#flash");
  f.textContent = message || "";
  f.className = bad ? "bad" : "";
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the server answered ${status}`);
    this.status = status;
    this.code = e.code;
    this.field = e.field;
    this.fields = e.fields || [];
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }
function authHeaders(extra) { return Object.assign({ Authorization: "Bearer " + token() }, extra || {}); }

/// A request body already written as JSON text, sent as it is.
class RawJson { constructor(text) { this.text = text; } }

/// JSON with integers past 2^53 (a 17-digit seed) kept as their digits: a double would show
/// 12345678901234567 as ...568. (The source text is there in browsers since 2023; without
/// it the number is read as JSON.parse reads it.)
function parseJson(text) {
  return JSON.parse(text, (k, v, ctx) =>
    typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v) && ctx && /^-?[0-9]+$/.test(ctx.source) ? ctx.source : v);
}

function isJson(text) { try { JSON.parse(text); return true; } catch { return false; } }

/// A typed number as JSON text, or why it is not one. Integers must be digits (an optional
/// minus: the server names the range); numbers a finite decimal (".5" and "5." read as 0.5
/// and 5). Hexadecimal, "Infinity" and 1e999 are refused, quoting what was typed.
function numberText(raw, integer) {
  if (integer) {
    if (!/^-?[0-9]+$/.test(raw)) return { error: `must be a whole number written in digits; got "${raw}"` };
    // N.B.: past u64 the server would read a double and quote that, not what was typed.
    if (BigInt(raw) > 18446744073709551615n || BigInt(raw) < -9223372036854775808n) {
      return { error: `is larger than any setting takes; got "${raw}"` };
    }
    return { text: raw.replace(/^(-?)0+(?=[0-9])/, "$1").replace(/^-0$/, "0") };
  }
  if (!/^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(raw)) {
    return { error: `must be a decimal number such as 0.01 or 1e-3; got "${raw}"` };
  }
  if (!Number.isFinite(Number(raw))) return { error: `must be a finite number; got "${raw}"` };
  if (Number(raw) === 0 && /[1-9]/.test(raw.split(/[eE]/)[0])) return { error: `is too small to be told from 0; got "${raw}"` };
  const text = raw.replace(/^\+/, "").replace(/^(-?)\./, "$10.").replace(/^(-?)0+(?=[0-9])/, "$1").replace(/\.(?=[eE]|$)/, "");
  return { text };
}

async function api(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = body instanceof RawJson ? body.text : JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const isJson = (r.headers.get("content-type") || "").includes("json");
  const data = isJson ? parseJson(await r.text()) : null;
  if (r.status === 401 && path !== "/me") {
    signOut("Your token is no longer valid (revoked or re-issued); sign in again.");
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/// Fetches a file with the token and saves it under the server's file name.
async function download(path, fallbackName) {
  try {
    const r = await fetch(path, { headers: authHeaders() });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    const blob = await r.blob();
    const cd = r.headers.get("content-disposition") || "";
    const m = /filename="?([^";]+)"?/.exec(cd);
    const a = h("a", { href: URL.createObjectURL(blob), download: m ? m[1] : fallbackName });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    flash("Download failed: " + e.message, true);
  }
}

/// Reads a Server-Sent Events stream with fetch, reconnecting with Last-Event-ID until
/// `signal` aborts or the stream sends `done`. `onEvent(type, data)`.
async function stream(path, onEvent, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const r = await fetch(path, { headers, signal });
      if (r.status === 404 || r.status === 401) return;
      if (!r.ok) { await sleep(r.status === 429 ? 10000 : 3000, signal); continue; }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const c = line.indexOf(":");
            const k = c < 0 ? line : line.slice(0, c);
            const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
            if (k === "event") type = v;
            else if (k === "data") data += (data ? "\n" : "") + v;
            else if (k === "id") id = v;
          }
          if (id !== null) lastId = id;
          if (!data) continue;
          let parsed;
          try { parsed = JSON.parse(data); } catch { continue; }
          onEvent(type, parsed);
          if (type === "done") return;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await sleep(2000, signal);
  }
}

// ---------- sign in and out, routing ----------

let pendingFlash = null;  // what the next view flashes (a submission's "Submitted …", kept across the hash change)
let signedOut = null;     // what the sign-in form says after a sign-out (kept across the hash change)
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  signedOut = message;
  // N.B.: changing the hash routes again (hashchange); routing now as well would draw the
  // form twice, the second time without the message.
  if (location.hash && location.hash !== "#/") location.hash = "#/"; else route();
}

function renderSignIn(message) {
  $("#nav").hidden = true;
  $("#who").hidden = true;
  const error = h("p", { class: "error", id: "token-error", role: "alert" });
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true,
                             "aria-describedby": "token-help token-error" });
  const form = h("form", { class: "card signin", id: "sign-in" },
    h("h1", { text: "Sign in" }),
    h("div", { class: "field" },
      h("label", { for: "token", text: "Your token" }), input,
      h("span", { class: "help", id: "token-help",
                  text: "The token your lab admin gave you (trainyard users add NAME prints it). It stays in this browser tab only." }),
      error),
    h("p", {}, h("button", { type: "submit", text: "Sign in" })));
  const said = message || signedOut;
  signedOut = null;
  if (said) {
    error.textContent = said;
    if (said === "Signed out.") error.className = "notice";
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      me = await api("GET", "/me");
      route();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      error.textContent = e.status === 401 ? "That token is not valid (unknown or revoked)." : e.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });
  show(form);
  input.focus();
}

function show(...nodes) {
  const view = $("#view");
  // N.B.: a view leaves out what it lacks as null, which must not show as "null".
  view.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), query: new URLSearchParams(query || "") };
}

async function route(message) {
  if (viewAbort) viewAbort.abort();
  viewAbort = new AbortController();
  charts = [];
  const said = message || pendingFlash;
  pendingFlash = null;
  flash(said && token() ? said : "");
  if (!token()) return renderSignIn(message);
  try {
    if (!me) me = await api("GET", "/me");
  } catch (e) {
    if (e.status === 401) return signOut("That token is not valid (unknown or revoked).");
    flash("The server does not answer: " + e.message, true);
    return;
  }
  $("#nav").hidden = false;
  $("#who").hidden = false;
  const role = roleOf(me);
  $("#who-name").textContent = me.name + (role === "student" ? "" : ` (${role})`);
  $("#nav-admin").hidden = !me.admin;
  $("#nav-class").hidden = !readsEveryone();
  const { parts, query } = parseHash();
  const section = parts[0] || "jobs";
  for (const a of document.querySelectorAll("[data-nav]")) {
    const current = a.dataset.nav === section || (a.dataset.nav === "sweeps" && section === "sweep") ||
                    (a.dataset.nav === "jobs" && section === "job");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const signal = viewAbort.signal;
  try {
    if (section === "jobs") await viewJobs(query, signal);
    else if (section === "job" && parts[1]) await viewJob(parts[1], signal);
    else if (section === "submit") await viewSubmit(query);
    else if (section === "compare") await viewCompare(query, signal);
    else if (section === "sweeps") await viewSweeps();
    else if (section === "sweep" && parts[1]) await viewSweep(parts[1], signal);
    else if (section === "admin") await viewAdmin(signal);
    else if (section === "class") await viewClass(parts[1] || "cifar10-assignment", signal);
    else show(h("h1", { text: "Not found" }), h("p", {}, h("a", { href: "#/", text: "Back to my jobs" })));
  } catch (e) {
    if (signal.aborted) return;
    // N.B.: another user's job (or sweep) is a 404, as a missing one is: say so plainly.
    if (e.status === 404 && section === "class") {
      show(h("h1", { text: "No such assignment" }), h("p", { class: "error", text: e.message }),
        h("p", {}, h("a", { href: "#/class", text: "Back to the class" })));
    } else if (e.status === 404) {
      const what = section === "sweep" ? "sweep" : "job";
      show(h("h1", { text: `No such ${what}` }), h("p", { class: "error", text: `${e.message}: it does not exist, or it is not yours.` }),
        h("p", {}, h("a", { href: section === "sweep" ? "#/sweeps" : "#/", text: section === "sweep" ? "Back to the sweeps" : "Back to my jobs" })));
    } else {
      show(h("h1", { text: "Something went wrong" }), h("p", { class: "error", text: e.message }));
    }
  }
}

// ---------- my jobs ----------

/// The job's report from inside the epoch under way; null when none, or when it comes from
/// an epoch that has since been recorded (stale).
function liveProgress(j) {
  return j.progress && j.progress.epoch > j.epochs_done ? j.progress : null;
}

/// Jobs of a sweep that have ended, from its status counts.
function finishedOf(counts) {
  return (counts.succeeded || 0) + (counts.failed || 0) + (counts.cancelled || 0) + (counts.stopped_early || 0);
}

function statusBadge(s) { return h("span", { class: "status " + s, text: s.replace("_", " ") }); }
/// A job's status, and beside it "diverged" when its loss became non-finite: a run that
/// "succeeded" at chance level must not read as a result.
function jobBadges(j) {
  return [statusBadge(j.status), j.diverged ? [" ", h("span", { class: "status diverged", text: "diverged",
    title: `the loss was not finite from epoch ${j.diverged_at}: these numbers mean little` })] : null];
}

function progressCell(j) {
  if (j.status === "running") {
    const p = liveProgress(j);
    const within = p ? p.fraction : 0;
    const label = p ? `epoch ${p.epoch}: ${Math.round(100 * within)} %` : `epoch ${j.epochs_done + 1} starting`;
    return h("div", { class: "bar" },
      h("progress", { max: "1", value: String(within), "aria-label": `progress in ${label}` }),
      h("span", { class: "small", text: label }));
  }
  if (j.status === "queued") {
    const where = j.queue_position ? `#${j.queue_position} in queue` : "queued";
    if (j.waiting_for) return h("span", { class: "small error", title: j.waiting_for, text: `${where}, waiting: ${j.waiting_for}` });
    return h("span", { class: "small muted" }, where, j.estimated_start ? [", starts ", untilSpan(j.estimated_start)] : null);
  }
  return h("span", { class: "muted", text: "—" });
}

async function viewJobs(query, signal) {
  const filter = query.get("status") || "";
  // One user's jobs (#/jobs?owner=NAME, from the class view), for those who read everyone's.
  const owner = readsEveryone() ? query.get("owner") || "" : "";
  const hashFor = (status) => {
    const q = new URLSearchParams();
    if (status) q.set("status", status);
    if (owner) q.set("owner", owner);
    return owner ? `#/jobs?${q}` : status ? `#/?${q}` : "#/";
  };
  const rows = new Map();   // id -> job
  const selected = new Set();
  const tbody = h("tbody");
  const select = h("select", { id: "status-filter" },
    h("option", { value: "", text: "every status" }),
    STATUSES.map((s) => h("option", { value: s, selected: s === filter, text: s.replace("_", " ") })));
  select.addEventListener("change", () => { location.hash = hashFor(select.value); });
  const compareBtn = h("button", { type: "button", class: "secondary", disabled: true, text: "Compare selected",
    onclick: () => { location.hash = "#/compare?jobs=" + [...selected].join(","); } });
  const cancelAll = h("button", { type: "button", class: "danger", id: "cancel-queued", text: "Cancel all my queued jobs", hidden: Boolean(owner && owner !== me.name),
    onclick: async () => {
      if (!confirm("Cancel every job of yours that is still queued?")) return;
      try {
        const r = await api("POST", "/jobs/cancel", { status: "queued" });
        flash(`Cancelled ${r.cancelled} queued job(s).`);
        await load(true);
      } catch (e) { flash(e.message, true); }
    } });
  const more = h("button", { type: "button", class: "secondary", hidden: true, text: "Show older jobs" });
  const empty = h("p", { class: "muted", hidden: true, id: "no-jobs" },
    owner && owner !== me.name ? `${owner} has no jobs${filter ? " " + filter.replace("_", " ") : ""}.` :
      ["No jobs yet. ", h("a", { href: "#/submit", text: "Submit one" }), "."]);
  // Instructors and admins read every user's jobs: the owner shows (unless one user's are listed).
  const admin = readsEveryone() && !owner;
  const table = h("div", { class: "table-wrap" }, h("table", { id: "jobs" },
    h("caption", { class: "skip", text: "Jobs" }),
    h("thead", {}, h("tr", {},
      h("th", {}, h("span", { class: "skip", text: "Select" })),
      h("th", { text: "Job" }), admin ? h("th", { text: "Owner" }) : null, h("th", { text: "Status" }),
      h("th", { text: "Progress" }), h("th", { class: "num", text: "Epochs" }), h("th", { class: "num", text: "Test acc." }),
      h("th", { class: "hide-narrow", text: "Group" }), h("th", { class: "hide-narrow", text: "Submitted" }),
      h("th", {}, h("span", { class: "skip", text: "Actions" })))),
    tbody));

  function renderRow(j) {
    const check = h("input", { type: "checkbox", "aria-label": "select " + jobLabel(j) + " to compare", checked: selected.has(j.id) });
    check.addEventListener("change", () => {
      if (check.checked) selected.add(j.id); else selected.delete(j.id);
      compareBtn.disabled = selected.size === 0;
    });
    // N.B.: an instructor reads others' jobs but may not cancel them (the server says 403).
    const cancel = ACTIVE.has(j.status) && mayManage(j.owner)
      ? h("button", { type: "button", class: "danger", "data-cancel": j.id, "aria-label": "cancel " + jobLabel(j), text: "Cancel",
          onclick: async () => {
            try { await api("POST", `/jobs/${j.id}/cancel`); await refresh(j.id); } catch (e) { flash(e.message, true); }
          } })
      : null;
    const tr = h("tr", { "data-job": j.id, "data-status": j.status },
      h("td", {}, check),
      h("td", {}, h("a", { href: `#/job/${j.id}`, text: jobLabel(j) }),
        h("div", { class: "small muted", text: `${j.network || j.spec.model}, batch ${j.spec.batch_size}, lr ${j.spec.lr}` })),
      admin ? h("td", { text: j.owner }) : null,
      h("td", {}, jobBadges(j)),
      h("td", { class: "progress" }, progressCell(j)),
      h("td", { class: "num", text: `${j.epochs_done} / ${j.epochs_total}` }),
      h("td", { class: "num acc", text: pct(j.last_epoch && j.last_epoch.test_acc) }),
      h("td", { class: "hide-narrow small", text: !j.group ? "—" : j.group.size > 1 ? `${j.group.id.slice(0, 8)} (${j.group.size} jobs)` : "alone" }),
      h("td", { class: "hide-narrow small" }, agoSpan(j.created_at)),
      h("td", {}, cancel));
    return tr;
  }
  function put(j, prepend) {
    if ((filter && j.status !== filter) || (owner && j.owner !== owner)) {
      const old = tbody.querySelector(`tr[data-job="${j.id}"]`);
      if (old) old.remove();
      rows.delete(j.id);
      return;
    }
    rows.set(j.id, j);
    const tr = renderRow(j);
    const old = tbody.querySelector(`tr[data-job="${j.id}"]`);
    if (old) old.replaceWith(tr); else if (prepend) tbody.prepend(tr); else tbody.append(tr);
    empty.hidden = rows.size > 0;
  }
  let cursor = null;
  async function load(reset) {
    const q = new URLSearchParams({ limit: "50" });
    if (filter) q.set("status", filter);
    if (owner) q.set("owner", owner);
    if (!reset && cursor) q.set("cursor", cursor);
    const page = await api("GET", "/jobs?" + q);
    if (reset) { tbody.replaceChildren(); rows.clear(); }
    page.jobs.forEach((j) => put(j, false));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    empty.hidden = rows.size > 0;
  }
  const pending = new Map();
  async function refresh(id) {
    try {
      const j = await api("GET", `/jobs/${id}`);
      put(j, !rows.has(id));
    } catch (e) { /* gone or not ours */ }
  }
  function refreshSoon(id) {
    if (pending.has(id)) return;
    pending.set(id, setTimeout(() => { pending.delete(id); refresh(id); }, 250));
  }
  more.addEventListener("click", () => load(false).catch((e) => flash(e.message, true)));
  const title = owner ? (owner === me.name ? "My jobs" : `${owner}'s jobs`) : admin ? "Jobs (every user's)" : "My jobs";
  show(h("h1", { class: "wrap-name", text: title }),
    owner ? h("p", { class: "small" }, h("a", { href: "#/", text: "Every user's jobs" })) : null,
    h("div", { class: "toolbar" },
      h("label", { for: "status-filter", text: "Show" }), select,
      h("span", { class: "spacer" }), compareBtn, cancelAll,
      h("a", { class: "button", href: "#/submit", text: "Submit a job" })),
    table, empty, h("p", {}, more));
  await load(true);
  // Live: progress moves the bars in place; other events re-read the job.
  stream("/events", (type, data) => {
    if (type === "progress" && rows.has(data.job)) {
      const j = Object.assign({}, rows.get(data.job), { progress: data, status: "running" });
      rows.set(j.id, j);
      const cell = tbody.querySelector(`tr[data-job="${j.id}"] td.progress`);
      if (cell) cell.replaceChildren(progressCell(j));
    } else if (data.job) {
      refreshSoon(data.job);
    }
  }, signal);
  // Ages and queue estimates age too.
  (async () => {
    while (!signal.aborted) {
      await sleep(30000, signal);
      if (!signal.aborted) rows.forEach((j) => put(j, false));
    }
  })();
}

// ---------- one job ----------

/// Tick labels with as many decimals as the step between ticks needs (so none repeat).
function tickFormat(percent) {
  return (u, vals) => {
    const step = vals.length > 1 ? Math.abs(vals[1] - vals[0]) : 1;
    // Enough decimals that every tick reads as its value (a step of 0.25 needs two).
    let digits = 0;
    while (digits < 6 && Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) > 1e-6 * 10 ** digits) digits++;
    return vals.map((v) => (v === null ? "" : v.toFixed(digits) + (percent ? " %" : "")));
  };
}

function makeChart(container, title, series, yLabel, percent) {
  // N.B.: a canvas says nothing to a screen reader; the page's table holds the same numbers.
  const box = h("figure", { class: "chart", role: "group", "aria-label": `${title} by epoch (chart; the numbers are in the table)` },
    h("h3", { text: title }));
  container.append(box);
  const width = () => Math.max(240, box.clientWidth - 16);
  let zoomed = false;
  const opts = {
    width: width(), height: 240,
    // Fitted to the data (as the server's figures), never below 0 or, for accuracy, past 100 %.
    scales: { x: { time: false }, y: { range: (u, min, max) => {
      if (min === null || max === null) return percent ? [0, 100] : [0, 1];
      const pad = Math.max((max - min) * 0.1, percent ? 1 : Math.abs(max) * 0.02 || 0.01);
      return [Math.max(0, min - pad), percent ? Math.min(100, max + pad) : max + pad];
    } } },
    axes: [
      { label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? v : "")) },
      { label: yLabel, size: 64, values: tickFormat(percent) },
    ],
    series: [{ label: "epoch" }, ...series.map((s) => Object.assign({ width: 2, points: { show: true, size: 6 } }, s))],
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    hooks: { setSelect: [(u) => { if (u.select.width > 0) zoomed = true; }] },
  };
  const data = [[], ...series.map(() => [])];
  const u = new uPlot(opts, data, box);
  u.over.addEventListener("dblclick", () => { zoomed = false; });
  const chart = {
    u, box,
    // Keeps the reader's zoom (a drag) and the series they hid (a legend click).
    set(d) { u.setData(d, !zoomed); },
    resize() { u.setSize({ width: width(), height: 240 }); },
  };
  let lastWidth = width();
  new ResizeObserver(() => {
    if (width() !== lastWidth) { lastWidth = width(); chart.resize(); }
  }).observe(box);
  charts.push(chart);
  return chart;
}

function specTable(spec, parameters, network) {
  const dl = h("dl", { class: "kv" });
  if (network) dl.append(h("dt", { text: "network" }), h("dd", { text: network }));
  for (const [k, v] of Object.entries(spec)) {
    if (v === null) continue;
    // The layers one per line, as written (a layer is a name or an object of options).
    const shown = k === "layers" ? h("pre", { class: "layers", text: v.map((l) => JSON.stringify(l)).join("\n") })
      : Array.isArray(v) ? (v.length ? v.join(", ") : "none") : typeof v === "object" ? JSON.stringify(v) : String(v);
    dl.append(h("dt", { text: k }), h("dd", {}, shown));
  }
  dl.append(h("dt", { text: "parameters" }), h("dd", { text: Number(parameters).toLocaleString("en") }));
  return dl;
}

async function viewJob(id, signal) {
  let job = await api("GET", `/jobs/${id}`);
  const rows = new Map(); // epoch -> metrics row
  const head = h("div");
  const progress = h("div", { id: "job-progress" });
  const chartsBox = h("div", { class: "charts", id: "charts" });
  const epochsNote = h("p", { class: "muted", id: "epochs-note" });
  const lossNote = h("p", { class: "error", id: "loss-note", role: "status" });
  const table = h("tbody");
  show(head, progress, lossNote, chartsBox, epochsNote,
    h("h2", { text: "Epochs" }),
    h("div", { class: "table-wrap" }, h("table", { id: "epochs" },
      h("thead", {}, h("tr", {}, ["epoch", "train loss", "test loss", "train acc.", "test acc.", "lr", "seconds"].map((t, i) =>
        h("th", { class: i ? "num" : "", text: t })))), table)),
    h("h2", { text: "Spec" }), h("div", { class: "card" }, specTable(job.spec, job.parameters, job.network)));
  const loss = makeChart(chartsBox, "Loss", [
    { label: "train", stroke: "#2456c7" }, { label: "test", stroke: "#d1495b", dash: [6, 4] }], "loss", false);
  const trainAcc = makeChart(chartsBox, "Training accuracy", [{ label: "train", stroke: "#2456c7" }], "accuracy", true);
  const testAcc = makeChart(chartsBox, "Test accuracy", [{ label: "test", stroke: "#d1495b" }], "accuracy", true);

  function renderHead() {
    const active = ACTIVE.has(job.status);
    const done = job.epochs_done > 0;
    const links = [
      ["Metrics (CSV)", `/jobs/${id}/metrics?format=csv`, `${id}.csv`],
      ["Metrics (JSON)", `/jobs/${id}/metrics`, `${id}.json`],
      ["Figure (PNG)", `/jobs/${id}/plot?format=png`, `${id}.png`],
      ["Figure (SVG)", `/jobs/${id}/plot?format=svg`, `${id}.svg`],
    ];
    if (done) links.push(["Weights (safetensors)", `/jobs/${id}/model`, `${id}.safetensors`]);
    head.replaceChildren(
      h("h1", {}, jobLabel(job), " ", jobBadges(job)),
      h("div", { class: "card" },
        h("dl", { class: "kv" },
          h("dt", { text: "id" }), h("dd", { text: job.id }),
          h("dt", { text: "owner" }), h("dd", { text: job.owner }),
          h("dt", { text: "epochs" }), h("dd", { id: "epochs-done", text: `${job.epochs_done} of ${job.epochs_total}` }),
          h("dt", { text: "submitted" }), h("dd", {}, agoSpan(job.created_at), ` (${job.created_at})`),
          job.started_at ? [h("dt", { text: "started" }), h("dd", {}, agoSpan(job.started_at))] : null,
          job.finished_at ? [h("dt", { text: "finished" }), h("dd", {}, agoSpan(job.finished_at))] : null,
          job.device ? [h("dt", { text: "device" }), h("dd", { text: job.worker ? `${job.device} (${job.worker})` : job.device })] : null,
          job.group ? [h("dt", { text: "group" }), h("dd", { text: job.group.size > 1 ? `${job.group.id.slice(0, 8)}: ${job.group.size} jobs trained together` : "trained alone" })] : null,
          job.status === "queued" ? [h("dt", { text: "queue" }), h("dd", {}, `position ${job.queue_position ?? "—"}, starts `, untilSpan(job.estimated_start))] : null,
          job.waiting_for ? [h("dt", { text: "waiting for" }), h("dd", { class: "error", id: "waiting-for", text: job.waiting_for })] : null,
          job.notice ? [h("dt", { text: "notice" }), h("dd", { text: job.notice })] : null,
          job.stopped_because ? [h("dt", { text: "stopped early" }), h("dd", { id: "stopped-because", text: job.stopped_because })] : null,
          job.error ? [h("dt", { text: "error" }), h("dd", { class: "error", text: job.error })] : null),
        h("div", { class: "toolbar" },
          active && mayManage(job.owner) ? h("button", { type: "button", class: "danger", id: "cancel-job", text: "Cancel this job",
            onclick: async () => {
              try { job = await api("POST", `/jobs/${id}/cancel`); renderHead(); } catch (e) { flash(e.message, true); }
            } }) : null,
          // A trial its search stopped early trains on; the view starts afresh (its stream ended).
          job.status === "stopped_early" && mayManage(job.owner) ? h("button", { type: "button", class: "secondary", id: "resume-job", text: "Resume",
            title: "Queue it again: it trains on from its checkpoint to its epochs, and its search's rule judges it no more",
            onclick: async () => {
              try { await api("POST", `/jobs/${id}/resume`); route(`Resumed ${jobLabel(job)}: it is queued again.`); } catch (e) { flash(e.message, true); }
            } }) : null,
          h("a", { class: "button secondary", href: `#/compare?jobs=${id}`, text: "Compare with…" }),
          h("a", { class: "button secondary", id: "resubmit", href: `#/submit?from=${id}`, text: "Submit a variant…" })),
        h("div", { class: "downloads", "aria-label": "Downloads" },
          h("span", { class: "muted", text: "Download:" }),
          links.map(([label, path, name]) => h("button", { type: "button", class: "secondary", text: label,
            onclick: () => download(path, name) })))));
    if (job.status === "running") renderProgress(); else progress.replaceChildren();
  }
  function renderProgress() {
    const p = liveProgress(job);
    if (!p) { progress.replaceChildren(h("p", { class: "muted", text: `Epoch ${job.epochs_done + 1} is starting…` })); return; }
    progress.replaceChildren(h("div", { class: "card bar" },
      h("label", { for: "epoch-bar", text: `Epoch ${p.epoch} of ${job.epochs_total}` }),
      h("progress", { id: "epoch-bar", max: "1", value: String(p.fraction) }),
      h("span", { text: `${Math.round(100 * p.fraction)} % · ${Math.round(p.samples_per_second)} images/s · epoch ends ${until(p.epoch_eta)}, job ${until(p.eta)}` })));
  }
  function redraw() {
    const e = [...rows.keys()].sort((a, b) => a - b);
    const col = (k, f) => e.map((n) => { const v = rows.get(n)[k]; return v === null || v === undefined ? null : f(v); });
    const id_ = (v) => v, p100 = (v) => 100 * v;
    loss.set([e, col("train_loss", id_), col("test_loss", id_)]);
    trainAcc.set([e, col("train_acc", p100)]);
    testAcc.set([e, col("test_acc", p100)]);
    table.replaceChildren(...e.map((n) => {
      const r = rows.get(n);
      return h("tr", {}, h("td", { text: n }), h("td", { class: "num", text: fmtLoss(r.train_loss) }),
        h("td", { class: "num", text: fmtLoss(r.test_loss) }), h("td", { class: "num", text: pct(r.train_acc) }),
        h("td", { class: "num", text: pct(r.test_acc) }),
        h("td", { class: "num", text: r.lr === null || r.lr === undefined ? "" : Number(r.lr.toPrecision(3)).toString() }),
        h("td", { class: "num", text: r.seconds >= 10 ? r.seconds.toFixed(1) : Number(r.seconds.toPrecision(2)).toString() }));
    }));
    const bad = e.find((n) => rows.get(n).train_loss === null || rows.get(n).test_loss === null);
    lossNote.textContent = bad === undefined ? "" : e.every((n) => rows.get(n).train_loss === null)
      ? `The loss was not finite (NaN or infinite) from epoch ${bad}: the run diverged, and its accuracies mean little.`
      : `The loss was not finite in epoch ${bad}: the gaps in the loss lines.`;
    epochsNote.textContent = e.length === 0 ? "No epoch has finished yet; the charts grow as epochs land." :
      e.length === 1 ? "One epoch so far: each chart shows it as a single point." :
      "Drag across a chart to zoom, double-click to zoom out; click a legend entry to hide its line.";
  }
  renderHead();
  redraw();
  stream(`/jobs/${id}/events`, (type, data) => {
    if (type === "epoch") {
      rows.set(data.epoch, data);
      job.epochs_done = Math.max(job.epochs_done, data.epoch);
      const d = $("#epochs-done");
      if (d) d.textContent = `${job.epochs_done} of ${job.epochs_total}`;
      if (job.status === "running") renderProgress();
      redraw();
    } else if (type === "progress") {
      job.progress = data;
      if (job.status === "running") renderProgress();
    } else if (type === "status") {
      if (data.status !== job.status) api("GET", `/jobs/${id}`).then((j) => { job = j; renderHead(); }).catch(() => {});
    } else if (type === "done") {
      job = data;
      renderHead();
    }
  }, signal);
}

// ---------- compare ----------

const METRICS = { test_acc: ["Test accuracy", true], train_acc: ["Training accuracy", true], test_loss: ["Test loss", false], train_loss: ["Training loss", false], lr: ["Learning rate", false] };
/// The server's figures' colours (matplotlib's tab10, then tab20's lighter partners, dashed
/// here), so the page and the PNG name each job alike; a comparison holds at most 20.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"];

async function viewCompare(query, signal) {
  const chosen = new Set((query.get("jobs") || "").split(",").filter(Boolean));
  const metric = METRICS[query.get("metric")] ? query.get("metric") : "test_acc";
  const list = await api("GET", "/jobs?limit=100");
  const known = new Map(list.jobs.map((j) => [j.id, j]));
  for (const id of chosen) {
    if (!known.has(id)) {
      try { known.set(id, await api("GET", `/jobs/${id}`)); } catch { chosen.delete(id); }
    }
  }
  const picker = h("fieldset", { class: "picker", id: "compare-picker" }, h("legend", { text: "Jobs" }),
    [...known.values()].map((j) => h("label", {},
      h("input", { type: "checkbox", value: j.id, checked: chosen.has(j.id) }), " ",
      `${jobLabel(j)} — ${j.network || j.spec.model}, batch ${j.spec.batch_size}, lr ${j.spec.lr} (${j.status}, ${j.epochs_done}/${j.epochs_total})`)));
  const metricSel = h("select", { id: "compare-metric" },
    Object.entries(METRICS).map(([k, [t]]) => h("option", { value: k, selected: k === metric, text: t })));
  const apply = () => {
    const ids = [...picker.querySelectorAll("input:checked")].map((i) => i.value);
    location.hash = `#/compare?jobs=${ids.join(",")}&metric=${metricSel.value}`;
  };
  picker.addEventListener("change", apply);
  metricSel.addEventListener("change", apply);
  const chartsBox = h("div", { class: "charts" });
  const ids = [...chosen];
  const plotQuery = `jobs=${ids.join(",")}&metric=${metric === "train_loss" || metric === "test_loss" ? "loss" : metric}`;
  show(h("h1", { text: "Compare jobs" }),
    h("div", { class: "card" }, picker,
      h("div", { class: "toolbar" }, h("label", { for: "compare-metric", text: "Metric" }), metricSel)),
    ids.length === 0 ? h("p", { class: "muted", text: "Tick the jobs to overlay." }) : chartsBox,
    ids.length ? h("div", { class: "downloads" }, h("span", { class: "muted", text: "The server's figure:" }),
      h("button", { type: "button", class: "secondary", text: "PNG", onclick: () => download(`/plot?${plotQuery}&format=png`, "comparison.png") }),
      h("button", { type: "button", class: "secondary", text: "SVG", onclick: () => download(`/plot?${plotQuery}&format=svg`, "comparison.svg") })) : null);
  if (!ids.length) return;
  const [title, percent] = METRICS[metric];
  // N.B.: the server names the jobs, as its figures do (GET /compare).
  const labels = (await api("GET", `/compare?jobs=${ids.join(",")}`)).jobs.map((j) => j.label);
  const chart = makeChart(chartsBox, title, ids.map((id, i) => ({ label: labels[i], stroke: PALETTE[i % PALETTE.length], dash: i >= 10 ? [8, 4] : undefined })),
    percent ? "accuracy" : "loss", percent);
  const byJob = ids.map(() => new Map());
  const redraw = () => {
    const xs = [...new Set(byJob.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
    chart.set([xs, ...byJob.map((m) => xs.map((x) => {
      const r = m.get(x); const v = r && r[metric];
      return v === null || v === undefined ? null : percent ? 100 * v : v;
    }))]);
  };
  // One stream for them all (a user may hold only a few open): what exists now from
  // /metrics, then each new epoch as /events reports it.
  const index = new Map(ids.map((id, i) => [id, i]));
  stream("/events", (type, data) => {
    if (type === "epoch" && index.has(data.job)) { byJob[index.get(data.job)].set(data.epoch, data); redraw(); }
  }, signal);
  await Promise.all(ids.map(async (id, i) => {
    const m = await api("GET", `/jobs/${id}/metrics`);
    m.epochs.forEach((row) => byJob[i].set(row.epoch, row));
  }));
  redraw();
}

// ---------- submit ----------

// What an empty text field stands for: its default ("drawn" for the seed, "all" images).
function placeholderOf(f, dflt) {
  if (dflt === null || dflt === undefined) return f.name === "seed" ? "drawn" : f.name === "train_limit" ? "all" : "";
  if (Array.isArray(dflt)) return dflt.join(", ");
  return typeof dflt === "object" ? JSON.stringify(dflt) : String(dflt);
}

// One dataset in words: its shape, classes and splits, and whether it is on the server.
function datasetLine(d) {
  const classes = d.num_classes <= 10 ? ` (${d.classes.join(", ")})` : "";
  const here = d.state === "present" ? "on this server" : `${d.state}${d.why ? ": " + d.why : ""}`;
  return `${d.title}: ${d.shape.join("×")} images, ${d.num_classes} classes${classes}; ` +
    `${d.train_images.toLocaleString("en")} training and ${d.test_images.toLocaleString("en")} test images; ${here}.`;
}

async function viewSubmit(query) {
  if (!specDocs) specDocs = await api("GET", "/spec");
  // N.B.: asked afresh each time: a dataset fetched or imported since shows as it is now.
  const datasets = (await api("GET", "/datasets")).datasets;
  const form = h("form", { id: "submit-form", class: "card", novalidate: true });
  const inputs = {};
  const errors = {};
  const wraps = {};
  const grid = h("div", { class: "fields" });
  for (const f of specDocs.fields) {
    const id = "f-" + f.name;
    let input;
    const described = `${id}-help ${id}-error`;
    if (f.input === "choice" && f.name === "dataset") {
      // Each dataset by its name and title, and its state when it is not here yet.
      const known = new Map(datasets.map((d) => [d.name, d]));
      input = h("select", { id, name: f.name, "aria-describedby": described },
        f.choices.map((c) => {
          const d = known.get(c);
          const text = d ? `${c} (${d.title}${d.state === "present" ? "" : ", " + d.state})` : c;
          return h("option", { value: c, selected: c === f.default, text });
        }));
    } else if (f.input === "choice") {
      input = h("select", { id, name: f.name, "aria-describedby": described },
        f.choices.map((c) => h("option", { value: c, selected: c === f.default, text: c })));
    } else if (f.input === "boolean") {
      input = h("select", { id, name: f.name, "aria-describedby": described },
        h("option", { value: "false", text: "no" }), h("option", { value: "true", text: "yes" }));
    } else if (f.input === "augment") {
      input = h("select", { id, name: f.name, "aria-describedby": described },
        h("option", { value: "false", text: "none" }), h("option", { value: "true", text: "crops and flips" }),
        h("option", { value: "random_resized_crop", text: "random resized crops" }),
        h("option", { value: "horizontal_flip", text: "horizontal flips" }));
    } else if (f.input === "layers") {
      // A JSON list of layers; the server names what does not fit (layers[3].conv2d.kernel).
      input = h("textarea", { id, name: f.name, "aria-describedby": described, rows: 6, spellcheck: "false",
        placeholder: '[{"conv2d": {"out": 16, "kernel": 3, "padding": 1}}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 10}]' });
    } else {
      const attrs = { id, name: f.name, "aria-describedby": described, placeholder: placeholderOf(f, f.default) };
      // N.B.: text, not type=number: a browser's number field drops what it cannot read
      // ("0,01" becomes "001"), so the server would get another number than the one typed.
      // What is typed is sent; the server's message names what is wrong.
      attrs.type = "text";
      if (f.input === "integer" || f.input === "number") {
        Object.assign(attrs, { inputmode: f.input === "integer" ? "numeric" : "decimal", autocomplete: "off" });
      }
      input = h("input", attrs);
    }
    inputs[f.name] = input;
    errors[f.name] = h("span", { class: "error", id: `${id}-error`, role: "alert" });
    const top = f.name === "epochs" && me.limits ? Math.min(f.max, me.limits.max_epochs_per_job) : f.max;
    const range = f.input === "integer" && f.max !== null ? ` From ${f.min} to ${top}.` : "";
    const shown = Array.isArray(f.default) ? (f.default.length ? f.default.join(", ") : "none") : f.default;
    const dflt = f.default === null || f.defaults ? "" : ` Default: ${shown}.`;
    wraps[f.name] = h("div", { class: "field", "data-field": f.name },
      h("label", { for: id, text: f.name.replace("_", " ") }), input,
      h("span", { class: "help", id: `${id}-help`, text: f.help + range + dflt }), errors[f.name]);
    grid.append(wraps[f.name]);
  }
  // A field shows when it applies to the model and the optimiser chosen; a setting whose
  // default is the optimiser's shows that one's as its placeholder.
  const applies = () => {
    const model = inputs.model.value;
    const opt = inputs.optimizer.value;
    for (const f of specDocs.fields) {
      wraps[f.name].hidden = (f.models.length > 0 && !f.models.includes(model)) ||
        (f.optimizers.length > 0 && !f.optimizers.includes(opt));
      if (f.defaults && inputs[f.name].tagName === "INPUT") {
        inputs[f.name].placeholder = placeholderOf(f, opt in f.defaults ? f.defaults[opt] : f.default);
      }
    }
  };
  inputs.model.addEventListener("change", applies);
  inputs.optimizer.addEventListener("change", applies);
  // The dataset chosen, in words, under its field.
  const dataInfo = h("span", { class: "help", id: "dataset-info", "aria-live": "polite" });
  wraps.dataset.append(dataInfo);
  const showDataset = () => {
    const d = datasets.find((x) => x.name === inputs.dataset.value);
    dataInfo.textContent = d ? datasetLine(d) : "";
  };
  inputs.dataset.addEventListener("change", showDataset);
  showDataset();
  // "Submit a variant": the form starts from another job's spec (its seed left to be drawn).
  const from = query.get("from");
  let base = null;
  if (from) {
    try { base = await api("GET", `/jobs/${from}`); } catch (e) { flash(`Could not load that job: ${e.message}`, true); }
  }
  if (base) {
    for (const f of specDocs.fields) {
      const v = base.spec[f.name];
      if (v === null || v === undefined || f.name === "seed") continue;
      if (f.input === "layers" || (f.input === "schedule" && typeof v !== "string")) {
        inputs[f.name].value = JSON.stringify(v);
      } else if (f.input === "augment") {
        inputs[f.name].value = v === true || (Array.isArray(v) && v.length === 2) ? "true" : Array.isArray(v) && v.length === 1 ? v[0] : "false";
      } else {
        inputs[f.name].value = Array.isArray(v) ? v.join(", ") : String(v);
      }
    }
    if (base.name) inputs.name.value = base.name + " (variant)";
  }
  applies();
  // Recipes that teach: each sets the optimiser's fields (the rest of the form stays).
  const RECIPES = [
    { id: "recipe-sgd", text: "The tutorial's SGD", set: { optimizer: "sgd", lr: "0.001", momentum: "0.9", lr_schedule: "" } },
    { id: "recipe-adam", text: "Adam at 1e-3", set: { optimizer: "adam", lr: "0.001", lr_schedule: "" } },
    { id: "recipe-mnist", text: "The MNIST example's recipe (Adadelta, StepLR)",
      set: { optimizer: "adadelta", lr: "1.0", lr_schedule: '{"step": {"every": 1, "gamma": 0.7}}' } },
  ];
  const recipes = h("div", { class: "toolbar", id: "optimizer-recipes", role: "group", "aria-label": "optimiser recipes" },
    h("span", { class: "help", text: "Start from:" }),
    RECIPES.map((r) => h("button", { type: "button", class: "secondary", id: r.id, text: r.text, onclick: () => {
      for (const f of specDocs.fields) {
        if (f.optimizers.length > 0 || f.name === "weight_decay" || f.name === "warmup_epochs") inputs[f.name].value = f.input === "boolean" ? "false" : "";
      }
      for (const [k, v] of Object.entries(r.set)) inputs[k].value = v;
      clearErrors();
      applies();
      planSoon();
    } })));
  const formError = h("p", { class: "error", role: "alert", id: "form-error" });
  form.append(h("h2", { text: "One job" }), recipes, grid, formError,
    h("div", { class: "toolbar" }, h("button", { type: "submit", id: "submit-job", text: "Submit" }),
      h("button", { type: "reset", class: "secondary", text: "Reset to defaults" })));
  form.addEventListener("reset", () => setTimeout(() => { applies(); clearErrors(); }, 0));
  function clearErrors() {
    formError.textContent = "";
    for (const k of Object.keys(errors)) { errors[k].textContent = ""; inputs[k].removeAttribute("aria-invalid"); }
  }
  // The spec as JSON text and the fields that do not read. N.B.: numbers go into the text as
  // typed (never through a JS double: 12345678901234567 would arrive as ...568), and what is
  // not a decimal number is refused here, beside its field, quoting what was typed.
  function collect() {
    const parts = [];
    const problems = {};
    for (const f of specDocs.fields) {
      if (wraps[f.name].hidden) continue;
      const raw = inputs[f.name].value.trim();
      if (raw === "") continue;
      let text;
      if (f.input === "integer" || f.input === "number") {
        const n = numberText(raw, f.input === "integer");
        if (n.error) { problems[f.name] = n.error; continue; }
        text = n.text;
      } else if (f.input === "widths" || f.input === "numbers") {
        const items = raw.replace(/^\[|\]$/g, "").split(/[\s,]+/).filter(Boolean).map((x) => numberText(x, f.input === "widths"));
        const bad = items.find((n) => n.error);
        if (bad) { problems[f.name] = bad.error; continue; }
        text = "[" + items.map((n) => n.text).join(", ") + "]";
      } else if (f.input === "boolean") text = raw === "true" ? "true" : "false";
      else if (f.input === "schedule" || f.input === "layers") text = isJson(raw) ? raw : JSON.stringify(raw);
      else if (f.input === "augment") text = raw === "true" ? "true" : raw === "false" ? "false" : JSON.stringify([raw]);
      else text = JSON.stringify(raw);
      parts.push([f.name, text]);
    }
    return { body: new RawJson("{" + parts.map(([k, t]) => JSON.stringify(k) + ": " + t).join(", ") + "}"), problems, parts };
  }
  function showProblems(problems) {
    let first = null;
    for (const [k, message] of Object.entries(problems)) {
      errors[k].textContent = message;
      inputs[k].setAttribute("aria-invalid", "true");
      first = first || inputs[k];
    }
    return first;
  }
  // The network as the server plans it (POST /spec/check), shown as one types: each layer's
  // output and parameters, the total and the memory estimate, or what does not fit.
  const plan = h("div", { id: "network-plan", class: "small", "aria-live": "polite" });
  grid.after(h("section", { class: "plan-box", "aria-label": "the network" }, h("h3", { text: "Network" }), plan));
  let planTimer = null;
  let planSeq = 0;
  // One's own list, edited layer by layer: the textarea holds the list; the rows below move,
  // remove and add layers in it (options are edited in the JSON).
  const TEMPLATES = {
    conv2d: { conv2d: { out: 16, kernel: 3, padding: 1 } }, maxpool2d: { maxpool2d: 2 }, avgpool2d: { avgpool2d: 2 },
    linear: { linear: 10 }, dropout: { dropout: 0.5 },
    residual: { residual: [{ conv2d: { out: 16, kernel: 3, padding: 1 } }, "batchnorm", "relu"] },
  };
  const ownLayers = () => {
    try { const v = JSON.parse(inputs.layers.value); return Array.isArray(v) ? v : null; } catch { return null; }
  };
  // One layer per line, so the list reads as the network does.
  const showLayers = (list) => "[\n" + list.map((l) => "  " + JSON.stringify(l)).join(",\n") + "\n]";
  const setLayers = (list) => { inputs.layers.value = showLayers(list); planSoon(); };
  const kindOf = (l) => (typeof l === "string" ? l : l && typeof l === "object" ? Object.keys(l)[0] : String(l));
  function editor(net) {
    const list = ownLayers();
    if (!list) return null;
    const planned = new Map((net ? net.layers : []).map((l) => [l.path, l]));
    const move = (i, j) => { const l = list.slice(); [l[i], l[j]] = [l[j], l[i]]; setLayers(l); };
    const kinds = specDocs.layers.map((d) => d.name);
    const pick = h("select", { id: "add-layer-kind", "aria-label": "layer to add" },
      kinds.map((k) => h("option", { value: k, text: k })));
    return h("table", { class: "plan", id: "layer-editor" },
      h("tr", {}, h("th", { text: "layer" }), h("th", { text: "gives" }), h("th", { text: "parameters" }), h("th", { text: "" })),
      list.map((l, i) => {
        const p = planned.get(`layers[${i}]`);
        return h("tr", { "data-layer": i },
          h("td", { text: `[${i}] ${kindOf(l)}` }), h("td", { text: p ? p.output.join("×") : "?" }),
          h("td", { text: p ? p.parameters.toLocaleString("en") : "" }),
          h("td", {},
            h("button", { type: "button", class: "icon", title: "move up", "aria-label": `move layer ${i} up`, disabled: i === 0, text: "↑", onclick: () => move(i, i - 1) }),
            h("button", { type: "button", class: "icon", title: "move down", "aria-label": `move layer ${i} down`, disabled: i === list.length - 1, text: "↓", onclick: () => move(i, i + 1) }),
            h("button", { type: "button", class: "icon", title: "remove", "aria-label": `remove layer ${i}`, text: "✕", onclick: () => setLayers(list.filter((_, k) => k !== i)) })));
      }),
      h("tr", {}, h("td", { colspan: 4 }, pick, " ",
        h("button", { type: "button", class: "secondary", id: "add-layer", text: "Add layer",
          onclick: () => setLayers([...list, TEMPLATES[pick.value] || pick.value]) }))));
  }
  async function showPlan() {
    const seq = ++planSeq;
    const own = inputs.model.value === "custom";
    let checked;
    const { body, problems } = collect();
    if (Object.keys(problems).length) {
      if (seq !== planSeq) return;
      plan.replaceChildren(...Object.entries(problems).map(([k, m]) => h("p", { class: "error", text: `${k}: ${m}` })));
      return;
    }
    try {
      checked = await api("POST", "/spec/check", body);
    } catch (e) {
      if (seq !== planSeq) return;
      // A spec that does not read: its errors, as a submit would show them.
      const fields = e.fields.length ? e.fields : [{ field: e.field || "spec", message: e.message }];
      plan.replaceChildren(...[own ? editor(null) : null,
        ...fields.map((f) => h("p", { class: "error", text: `${f.field}: ${f.message}` }))].filter(Boolean));
      return;
    }
    if (seq !== planSeq) return;
    plan.replaceChildren();
    const net = checked.network;
    if (own) {
      const table = editor(net);
      if (table) plan.append(table);
    } else {
      plan.append(h("table", { class: "plan" },
        h("tr", {}, h("th", { text: "layer" }), h("th", { text: "gives" }), h("th", { text: "parameters" })),
        net.layers.map((l) => h("tr", {},
          h("td", { text: `${l.path.replace(/^layers/, "")} ${kindOf(l.layer)}` }),
          h("td", { text: l.output.join("×") }), h("td", { text: l.parameters.toLocaleString("en") })))));
    }
    plan.append(h("p", { text: `${net.summary}: ${net.parameters.toLocaleString("en")} parameters, about ${net.memory_mb} MB to train.` }));
    if (!own) {
      // A named model as the starting point of one's own list.
      plan.append(h("button", { type: "button", class: "secondary", id: "edit-layers", text: "Edit these layers",
        onclick: () => {
          inputs.model.value = "custom";
          applies();
          inputs.layers.value = showLayers(checked.spec.layers);
          inputs.layers.focus();
          planSoon();
        } }));
    }
    for (const e of checked.errors) plan.append(h("p", { class: "error", text: `${e.field}: ${e.message}` }));
  }
  const planSoon = () => { clearTimeout(planTimer); planTimer = setTimeout(showPlan, 300); };
  form.addEventListener("input", planSoon);
  inputs.model.addEventListener("change", planSoon);
  planSoon();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const { body, problems } = collect();
    const refused = showProblems(problems);
    if (refused) { refused.focus(); return; }
    try {
      const job = await api("POST", "/jobs", body);
      pendingFlash = `Submitted ${jobLabel(job)}.`;
      location.hash = `#/job/${job.id}`;
    } catch (e) {
      const fields = e.fields.length ? e.fields : e.field ? [{ field: e.field, message: e.message }] : [];
      let first = null;
      for (const fe of fields) {
        // A layer's error (layers[3].conv2d.kernel) shows under the layers field, with its path.
        const field = fe.field.startsWith("layers") ? "layers" : fe.field;
        if (errors[field]) {
          const shown = field === fe.field ? fe.message : `${fe.field}: ${fe.message}`;
          errors[field].textContent = errors[field].textContent ? `${errors[field].textContent} ${shown}` : shown;
          inputs[field].setAttribute("aria-invalid", "true");
          first = first || inputs[field];
        }
      }
      if (first) first.focus();
      else formError.textContent = e.message;
    }
  });

  // A search: the job above as every trial's base, some of its settings sampled instead, and
  // a rule that stops the trials that do not learn. Numbers go as typed, as above; what the
  // server refuses shows beside its field (a base setting's under the form above).
  const DIMS = [
    { key: "lr", kind: "log_uniform", on: true, low: "0.0001", high: "1",
      help: "Log-uniform: as many trials between 0.0001 and 0.001 as between 0.1 and 1." },
    { key: "momentum", kind: "uniform", on: false, low: "0.5", high: "0.99",
      help: "Uniform: every value in the range equally likely (SGD's momentum)." },
    { key: "batch_size", kind: "choice", on: false, list: "4, 16, 64",
      help: "One of these whole numbers, each as likely." },
  ];
  const sIn = {};   // the search form's inputs
  const sErr = {};  // its error spans, by the server's field (search.lr, trials, early_stop.reduction…)
  const errorSpan = (id, key) => (sErr[key] = h("span", { class: "error", id: `${id}-error`, role: "alert" }));
  const numberInput = (id, value, integer, extra) => h("input", Object.assign({ id, type: "text", value: value || null,
    inputmode: integer ? "numeric" : "decimal", autocomplete: "off", "aria-describedby": `${id}-help ${id}-error` }, extra || {}));
  const dimFields = DIMS.map((d) => {
    const id = `s-${d.key}`;
    const on = sIn[`${d.key}-on`] = h("input", { type: "checkbox", id: `${id}-on`, checked: d.on });
    let inputs;
    if (d.kind === "choice") {
      sIn[`${d.key}-list`] = numberInput(`${id}-list`, d.list, true, { "aria-label": `${d.key}: the values`, "aria-describedby": `${id}-help ${id}-error` });
      inputs = [sIn[`${d.key}-list`]];
    } else {
      sIn[`${d.key}-low`] = numberInput(`${id}-low`, d.low, false, { "aria-label": `${d.key}: low end`, size: 8, "aria-describedby": `${id}-help ${id}-error` });
      sIn[`${d.key}-high`] = numberInput(`${id}-high`, d.high, false, { "aria-label": `${d.key}: high end`, size: 8, "aria-describedby": `${id}-help ${id}-error` });
      inputs = [sIn[`${d.key}-low`], h("span", { class: "muted", text: " to " }), sIn[`${d.key}-high`]];
    }
    const wrap = h("div", { class: "field dim", "data-dim": d.key },
      h("label", { for: `${id}-on`, class: "check" }, on, ` search ${d.key.replace("_", " ")}`),
      h("div", { class: "range" }, inputs),
      h("span", { class: "help", id: `${id}-help`, text: d.help }), errorSpan(id, `search.${d.key}`));
    const enable = () => {
      for (const i of inputs) if (i.tagName === "INPUT") i.disabled = !on.checked;
      wrap.classList.toggle("off", !on.checked);
    };
    on.addEventListener("change", enable);
    enable();
    return wrap;
  });
  sIn.trials = numberInput("s-trials", "9", true);
  sIn.seed = numberInput("s-seed", "", true, { placeholder: "drawn" });
  sIn.name = h("input", { id: "s-name", type: "text", placeholder: "Search over …", "aria-describedby": "s-name-error" });
  sIn.rule = h("select", { id: "s-rule", "aria-describedby": "s-rule-help s-rule-error" },
    h("option", { value: "none", text: "none: every trial trains all its epochs" }),
    h("option", { value: "asha", selected: true, text: "ASHA (successive halving)" }),
    h("option", { value: "median", text: "the median rule" }));
  sIn.metric = h("select", { id: "s-metric", "aria-describedby": "s-metric-error" },
    Object.entries(METRIC_WORDS).map(([k, t]) => h("option", { value: k, text: `${k} (${t})` })));
  sIn.grace = numberInput("s-grace", "1", true);
  sIn.reduction = numberInput("s-reduction", "3", true);
  sIn.min_trials = numberInput("s-min_trials", "3", true);
  const field = (id, label, input, key, help) => h("div", { class: "field", "data-search-field": key },
    h("label", { for: id, text: label }), input, help ? h("span", { class: "help", id: `${id}-help`, text: help }) : null, errorSpan(id, key));
  const ruleFields = {
    metric: field("s-metric", "judged by", sIn.metric, "early_stop.metric", "Accuracies are better higher, losses lower."),
    grace: field("s-grace", "grace epochs", sIn.grace, "early_stop.grace_epochs", "No trial is stopped before this epoch (ASHA's first rung). Fewer than the trials' epochs."),
    reduction: field("s-reduction", "reduction", sIn.reduction, "early_stop.reduction", "ASHA keeps the top 1/reduction at each rung; rungs at grace × reduction^k epochs. From 2 to 10."),
    min_trials: field("s-min_trials", "min trials", sIn.min_trials, "early_stop.min_trials", "Others that must have reached an epoch before the median rule judges a trial there."),
  };
  const ruleShown = () => {
    const rule = sIn.rule.value;
    ruleFields.metric.hidden = ruleFields.grace.hidden = rule === "none";
    ruleFields.reduction.hidden = rule !== "asha";
    ruleFields.min_trials.hidden = rule !== "median";
  };
  sIn.rule.addEventListener("change", ruleShown);
  ruleShown();
  const searchError = h("p", { class: "error", id: "search-error", role: "alert" });
  const searchCost = h("p", { class: "help", id: "search-cost", "aria-live": "polite" });
  const searchForm = h("form", { id: "search-form", class: "card", novalidate: true },
    h("h2", { text: "A search" }),
    h("p", { class: "help", id: "search-help",
      text: "Trains several trials, each the job above (its settings, epochs and data) with the settings ticked here sampled afresh; " +
            "a ticked setting replaces what the form above says for it. An early-stopping rule ends the trials that fall behind, and says why; you may resume any of them." }),
    h("div", { class: "fields" }, dimFields,
      field("s-trials", "trials", sIn.trials, "trials", "How many points to sample: 1 to 100."),
      field("s-seed", "sampling seed", sIn.seed, "seed", "The same seed samples the same trials. Empty: drawn, and shown on the search's page."),
      field("s-name", "search name", sIn.name, "name", null)),
    h("h3", { text: "Early stopping" }),
    h("div", { class: "fields" },
      field("s-rule", "rule", sIn.rule, "early_stop", "ASHA compares trials at rungs (epochs grace, grace × reduction, …); the median rule stops a trial worse than the median of the others at the same epoch."),
      ruleFields.metric, ruleFields.grace, ruleFields.reduction, ruleFields.min_trials),
    searchError, searchCost,
    h("div", { class: "toolbar" }, h("button", { type: "submit", id: "submit-search", text: "Start the search" })));
  // The search's request as JSON text, numbers as typed, or what does not read (by field).
  function searchBody() {
    const problems = {};
    const searched = [];
    const dims = [];
    for (const d of DIMS) {
      if (!sIn[`${d.key}-on`].checked) continue;
      searched.push(d.key);
      const key = `search.${d.key}`;
      if (d.kind === "choice") {
        const raw = sIn[`${d.key}-list`].value.trim();
        const items = raw.replace(/^\[|\]$/g, "").split(/[\s,]+/).filter(Boolean).map((x) => numberText(x, true));
        const bad = items.find((n) => n.error);
        if (!items.length) problems[key] = "list the values to choose from, e.g. 4, 16, 64";
        else if (bad) problems[key] = `each value ${bad.error}`;
        else dims.push(`${JSON.stringify(d.key)}: {"choice": [${items.map((n) => n.text).join(", ")}]}`);
      } else {
        const lo = sIn[`${d.key}-low`].value.trim(), hi = sIn[`${d.key}-high`].value.trim();
        if (!lo || !hi) { problems[key] = "give both ends of the range"; continue; }
        const a = numberText(lo, false), b = numberText(hi, false);
        if (a.error || b.error) { problems[key] = `${a.error ? "the low end " + a.error : "the high end " + b.error}`; continue; }
        dims.push(`${JSON.stringify(d.key)}: {${JSON.stringify(d.kind)}: [${a.text}, ${b.text}]}`);
      }
    }
    if (!searched.length) problems[`search.${DIMS[0].key}`] = "tick at least one setting to search";
    const parts = [];
    const whole = (input, key, name, required) => {
      const raw = input.value.trim();
      if (!raw) { if (required) problems[key] = `${name} is needed: a whole number`; return null; }
      const n = numberText(raw, true);
      if (n.error) { problems[key] = n.error; return null; }
      return n.text;
    };
    const name = sIn.name.value.trim();
    if (name) parts.push(`"name": ${JSON.stringify(name)}`);
    const trials = whole(sIn.trials, "trials", "the number of trials", true);
    const seed = whole(sIn.seed, "seed", "the seed", false);
    const rule = sIn.rule.value;
    let earlyStop = null;
    if (rule !== "none") {
      const args = [`"metric": ${JSON.stringify(sIn.metric.value)}`];
      const grace = whole(sIn.grace, "early_stop.grace_epochs", "grace epochs", false);
      if (grace !== null) args.push(`"grace_epochs": ${grace}`);
      const extra = rule === "asha" ? "reduction" : "min_trials";
      const n = whole(sIn[extra], `early_stop.${extra}`, extra.replace("_", " "), false);
      if (n !== null) args.push(`${JSON.stringify(extra)}: ${n}`);
      earlyStop = `{${JSON.stringify(rule)}: {${args.join(", ")}}}`;
    }
    // The base: the form above, less its name (the trials are named by their points) and the
    // settings searched here.
    const above = collect();
    const base = above.parts.filter(([k]) => k !== "name" && !searched.includes(k));
    parts.push(`"base": {${base.map(([k, t]) => JSON.stringify(k) + ": " + t).join(", ")}}`);
    parts.push(`"search": {${dims.join(", ")}}`);
    if (trials !== null) parts.push(`"trials": ${trials}`);
    if (seed !== null) parts.push(`"seed": ${seed}`);
    if (earlyStop) parts.push(`"early_stop": ${earlyStop}`);
    const aboveProblems = Object.fromEntries(Object.entries(above.problems).filter(([k]) => !searched.includes(k)));
    return { body: new RawJson(`{${parts.join(", ")}}`), problems, aboveProblems };
  }
  function clearSearchErrors() {
    searchError.textContent = "";
    for (const span of Object.values(sErr)) span.textContent = "";
    for (const i of searchForm.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
  }
  // Each error beside its field: the search's own, or a base setting's under the form above;
  // the rest (a field this form has not) above the button. Returns the first field to focus.
  function showSearchErrors(list) {
    let first = null;
    const loose = [];
    let above = false;
    for (const fe of list) {
      // "search.lr (value 12)": a sampled value the spec refuses; "early_stop.asha.reduction".
      const key = fe.field.replace(/ \(.*\)$/, "").replace(/^early_stop\.(asha|median)\./, "early_stop.");
      const text = key === fe.field.replace(/^early_stop\.(asha|median)\./, "early_stop.") ? fe.message : `${fe.field}: ${fe.message}`;
      const span = sErr[key];
      const bare = key.replace(/^base\./, "");
      const own = bare.startsWith("layers") ? "layers" : bare;
      if (span) {
        span.textContent = span.textContent ? `${span.textContent} ${text}` : text;
        const wrap = span.parentElement;
        for (const i of wrap.querySelectorAll("input, select")) i.setAttribute("aria-invalid", "true");
        first = first || wrap.querySelector("input:not([type=checkbox]):not(:disabled), select") || wrap.querySelector("input");
      } else if (errors[own] && (key.startsWith("base.") || key === fe.field)) {
        const shown = own === bare ? fe.message : `${bare}: ${fe.message}`;
        errors[own].textContent = errors[own].textContent ? `${errors[own].textContent} ${shown}` : shown;
        inputs[own].setAttribute("aria-invalid", "true");
        above = true;
      } else {
        loose.push(`${fe.field}: ${fe.message}`);
      }
    }
    if (above) loose.unshift("Some of the trials' settings (the form above) are refused: see the messages under those fields.");
    searchError.textContent = loose.join(" ");
    return first;
  }
  let searchTimer = null;
  let searchSeq = 0;
  // What the search would queue and, if no trial stopped early, how long it would take here.
  const showSearchCost = async () => {
    const seq = ++searchSeq;
    const { body, problems, aboveProblems } = searchBody();
    if (Object.keys(problems).length || Object.keys(aboveProblems).length) { searchCost.textContent = ""; return; }
    try {
      const c = await api("POST", "/sweeps/check", body);
      if (seq !== searchSeq) return;
      const n = c.jobs.length;
      const epochs = c.jobs.reduce((a, j) => a + j.epochs, 0);
      searchCost.textContent = `${n} trial${n === 1 ? "" : "s"}, ${epochs} epochs if none stops early` +
        (c.estimated_seconds !== null ? `: at most about ${waited(c.estimated_seconds)} on this box.` : "; no time estimate yet (nothing like them has run here).");
      if (!c.accepted) searchCost.textContent += " " + c.errors.map((e) => `${e.field}: ${e.message}`).join(" ");
    } catch (e) {
      if (seq !== searchSeq) return;
      const fields = e.fields && e.fields.length ? e.fields : [{ field: e.field || "search", message: e.message }];
      searchCost.textContent = "Not a search the server takes yet: " + fields.map((f) => `${f.field}: ${f.message}`).join("; ");
    }
  };
  const searchSoon = () => { clearTimeout(searchTimer); searchTimer = setTimeout(showSearchCost, 400); };
  searchForm.addEventListener("input", searchSoon);
  searchForm.addEventListener("change", searchSoon);
  // A field edited since the last try no longer shows that try's error.
  const editedField = (ev) => {
    const wrap = ev.target.closest(".field");
    if (!wrap) return;
    for (const span of wrap.querySelectorAll(".error")) span.textContent = "";
    for (const i of wrap.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
  };
  searchForm.addEventListener("input", editedField);
  searchForm.addEventListener("change", editedField);
  form.addEventListener("input", searchSoon);
  searchSoon();
  searchForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearSearchErrors();
    clearErrors();
    const { body, problems, aboveProblems } = searchBody();
    const mine = showSearchErrors(Object.entries(problems).map(([field, message]) => ({ field, message })));
    const theirs = showProblems(aboveProblems);
    if (theirs) searchError.textContent = "Some of the trials' settings (the form above) do not read: see the messages under those fields.";
    if (mine || theirs) { (mine || theirs).focus(); return; }
    try {
      const s = await api("POST", "/sweeps", body);
      pendingFlash = `Started ${s.name || "the search"}: ${s.jobs.length} trial${s.jobs.length === 1 ? "" : "s"}.`;
      location.hash = `#/sweep/${s.id}`;
    } catch (e) {
      const fields = e.fields && e.fields.length ? e.fields : e.field ? [{ field: e.field, message: e.message }] : [];
      const first = showSearchErrors(fields);
      if (first) first.focus();
      else if (!searchError.textContent) searchError.textContent = e.message;
    }
  });

  const presetEpochs = h("input", { id: "preset-epochs", type: "text", inputmode: "numeric", autocomplete: "off", value: "50", "aria-describedby": "preset-help preset-error" });
  const presetLimit = h("input", { id: "preset-limit", type: "text", inputmode: "numeric", autocomplete: "off", placeholder: "all 50,000", "aria-describedby": "preset-help preset-error" });
  const presetLrSearch = h("input", { type: "checkbox", id: "preset-lr-search", "aria-describedby": "preset-lr-search-help" });
  const presetError = h("span", { class: "error", id: "preset-error", role: "alert" });
  const presetCost = h("p", { id: "preset-cost", class: "help", "aria-live": "polite" });
  const preset = h("form", { id: "preset-form", class: "card" },
    h("h2", { text: "The whole assignment" }),
    h("p", { id: "preset-help", class: "help",
      text: "Queues the CIFAR-10 assignment as one sweep: linear, MLP with and without ReLU, the tutorial's CNN; batch sizes 1, 4, 1000; learning rates 10, 0.1, 0.01, 0.0001; augmentation; MSE. Its report compares them. Or compare optimisers on the tutorial's CNN: SGD, SGD on a cosine schedule, Adam, AdamW, and the MNIST example's Adadelta recipe." }),
    h("div", { class: "fields" },
      h("div", { class: "field" }, h("label", { for: "preset-epochs", text: "epochs per job" }), presetEpochs,
        h("span", { class: "help", text: "Default: 50 (the assignment's)." })),
      h("div", { class: "field" }, h("label", { for: "preset-limit", text: "training images" }), presetLimit,
        h("span", { class: "help", text: "The first N training images only, for a quick try. Default: all 50,000." })),
      h("div", { class: "field" }, h("label", { for: "preset-lr-search", class: "check" }, presetLrSearch, " search learning rates (lr_search)"),
        h("span", { class: "help", id: "preset-lr-search-help",
          text: "The assignment only: instead of its four fixed rates, 9 trials with lr sampled log-uniformly in [0.0001, 10], ASHA (test accuracy, grace 1 epoch, reduction 3) stopping those that fall behind." }))),
    presetError, presetCost,
    h("div", { class: "toolbar" }, h("button", { type: "submit", id: "submit-preset", value: "cifar10-assignment", text: "Queue the assignment" }),
      h("button", { type: "submit", class: "secondary", id: "submit-optimizers", value: "optimizers",
        title: "The tutorial CNN with SGD, SGD on a cosine schedule, Adam and AdamW at 1e-3, and the MNIST example's Adadelta recipe",
        text: "Queue the optimisers comparison" })));
  // The preset's request as typed (numbers as their digits), or why it is not one.
  const presetBody = (which) => {
    const epochs = numberText(presetEpochs.value.trim() || "50", true);
    if (epochs.error) return { error: `epochs per job ${epochs.error}` };
    const rawLimit = presetLimit.value.trim();
    const limit = rawLimit ? numberText(rawLimit, true) : null;
    if (limit && limit.error) return { error: `training images ${limit.error}` };
    const overrides = `"epochs": ${epochs.text}` + (limit ? `, "train_limit": ${limit.text}` : "");
    // N.B.: sent whichever preset is asked for: the server says which one has rates to search.
    const lrSearch = presetLrSearch.checked ? `, "lr_search": true` : "";
    return { body: new RawJson(`{"preset": ${JSON.stringify(which)}, "overrides": {${overrides}}${lrSearch}}`) };
  };
  // How long the assignment would take here, from the queue's estimates, as one types.
  // N.B.: as the search's: an answer that a later edit's has overtaken is dropped, else a slow
  // answer to the form as it was overwrites the one to the form as it is.
  let costTimer = null;
  let costSeq = 0;
  const showCost = async () => {
    const seq = ++costSeq;
    const p = presetBody("cifar10-assignment");
    if (p.error) { presetCost.textContent = ""; return; }
    try {
      const c = await api("POST", "/sweeps/check", p.body);
      if (seq !== costSeq) return;
      const n = c.jobs.length;
      presetCost.textContent = c.estimated_seconds !== null
        ? `The assignment is ${n} jobs: about ${waited(c.estimated_seconds)} on this box (${c.workers} worker${c.workers === 1 ? "" : "s"}, from the epochs of jobs like them that ran here).`
        : `The assignment is ${n} jobs; no time estimate yet: ${c.without_estimate} of them are like no job that has run on this box.`;
      if (!c.accepted) presetCost.textContent += " " + c.errors.map((e) => `${e.field}: ${e.message}`).join(" ");
    } catch (e) { if (seq === costSeq) presetCost.textContent = e.message; }
  };
  preset.addEventListener("input", () => { clearTimeout(costTimer); costTimer = setTimeout(showCost, 300); });
  showCost();
  preset.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    presetError.textContent = "";
    presetEpochs.removeAttribute("aria-invalid");
    try {
      const which = ev.submitter && ev.submitter.value ? ev.submitter.value : "cifar10-assignment";
      const p = presetBody(which);
      if (p.error) throw new Error(p.error);
      const s = await api("POST", "/sweeps", p.body);
      location.hash = `#/sweep/${s.id}`;
    } catch (e) {
      presetError.textContent = e.message;
      presetEpochs.setAttribute("aria-invalid", "true");
      presetEpochs.focus();
    }
  });
  show(h("h1", { text: "Submit" }),
    base ? h("p", { class: "muted" }, "Starting from ", h("a", { href: `#/job/${base.id}`, text: jobLabel(base) }), "'s settings; the seed will be drawn anew.") : null,
    form, searchForm, preset);
}

// ---------- sweeps ----------

async function viewSweeps() {
  const { sweeps } = await api("GET", "/sweeps");
  show(h("h1", { text: "Sweeps" }),
    sweeps.length === 0 ? h("p", { class: "muted" }, "No sweeps yet. ", h("a", { href: "#/submit", text: "Queue the assignment" }), ".") :
    h("div", { class: "table-wrap" }, h("table", { id: "sweeps" },
      h("thead", {}, h("tr", {}, h("th", { text: "Sweep" }), h("th", { text: "Progress" }), h("th", { text: "Created" }))),
      h("tbody", {}, sweeps.map((s) => {
        const c = s.status_counts || {};
        const total = Object.values(c).reduce((a, b) => a + b, 0);
        const finished = finishedOf(c);
        return h("tr", {},
          h("td", {}, h("a", { href: `#/sweep/${s.id}`, text: s.name || s.id.slice(0, 8) })),
          h("td", {}, h("div", { class: "bar" },
            h("progress", { max: String(total || 1), value: String(finished), "aria-label": `${finished} of ${total} jobs finished` }),
            h("span", { class: "small", text: `${finished} / ${total}` + (c.running ? `, ${c.running} running` : "") + (c.failed ? `, ${c.failed} failed` : "") +
              (c.stopped_early ? `, ${c.stopped_early} stopped early` : "") }))),
          h("td", {}, agoSpan(s.created_at)));
      })))));
}

/// A preset's sweep's figure, a section at a time, with the class's band behind each run's
/// test accuracy ("compare me with the class": the median and middle half of the other
/// students' runs, no names). On by default, as the server's band is; a server that turned
/// it off answers 403, and the checkbox goes. `draw()` draws it again (live results).
function sweepFigure(s, signal) {
  const keys = [];
  for (const j of s.jobs) for (const x of j.sections || []) if (!keys.includes(x.section)) keys.push(x.section);
  if (!keys.length) return null;
  const mine = s.owner === me.name;
  const sel = h("select", { id: "sweep-section" }, keys.map((k) => h("option", { value: k, text: k.replace("_", " ") })));
  // N.B.: the band is of test accuracy; the other panels show without it.
  const metric = h("select", { id: "sweep-metric" },
    [["test_acc", "test accuracy"], ["all", "loss and accuracies"], ["train_acc", "training accuracy"], ["loss", "loss"]]
      .map(([k, t]) => h("option", { value: k, text: t })));
  const withClass = h("input", { type: "checkbox", id: "compare-class", checked: true, "aria-describedby": "compare-class-help" });
  const classBox = h("p", { class: "check-box" },
    h("label", { for: "compare-class", class: "check" }, withClass, mine ? " compare me with the class" : ` compare ${s.owner} with the class`),
    h("span", { class: "small muted", id: "compare-class-help",
      text: "The band behind each run's test accuracy: the other students' median and middle half (25–75 %) at each epoch, where enough of them have run it; no names." }));
  const im = apiImage({ id: "sweep-figure", alt: "" }, signal);
  const note = h("p", { class: "small muted", role: "status", text: "Drawing…" });
  const box = h("figure", { class: "figure" }, im.img, note);
  let drawing = false, again = false;
  async function draw() {
    if (drawing) { again = true; return; }
    drawing = true;
    const banded = !classBox.hidden && withClass.checked;
    const p = new URLSearchParams({ section: sel.value, metric: metric.value, format: "png", ...figureSize(box, 0.55) });
    if (banded) p.set("class", "true");
    im.img.alt = `${s.owner}'s runs of section ${sel.value}: ${metric.selectedOptions[0].text} by epoch` +
      (banded && metric.value !== "loss" && metric.value !== "train_acc" ? ", over the class's median and middle half of test accuracy" : "");
    try {
      if (await im.load(`/sweeps/${s.id}/plot?${p}`)) { note.textContent = ""; note.className = "small muted"; }
    } catch (e) {
      if (!signal.aborted) {
        // N.B.: the band is off on this server: plain figures, and no checkbox to tick.
        if (banded && e.status === 403) { classBox.hidden = true; again = true; } else {
          note.textContent = `The figure could not be drawn: ${e.message}`;
          note.className = "small error";
        }
      }
    } finally { drawing = false; }
    if (again && !signal.aborted) { again = false; draw(); }
  }
  // The sections in the assignment's order, by their titles (its class view says them; the
  // jobs' order alone puts a section whose first job is shared where that job is).
  api("GET", `/class/${encodeURIComponent(s.definition.preset)}`).then((c) => {
    const titles = new Map(c.assignment.sections.map((x, i) => [x.key, [i, x.title]]));
    const at = (k) => (titles.has(k) ? titles.get(k)[0] : 1000 + keys.indexOf(k));
    const was = sel.value;
    sel.replaceChildren(...keys.slice().sort((x, y) => at(x) - at(y)).map((k) =>
      h("option", { value: k, selected: k === was, text: titles.has(k) ? titles.get(k)[1] : k.replace("_", " ") })));
  }).catch(() => { /* the keys it has */ });
  sel.addEventListener("change", draw);
  metric.addEventListener("change", draw);
  withClass.addEventListener("change", draw);
  const node = h("section", { class: "card", id: "sweep-figures", "aria-labelledby": "sweep-figures-title" },
    h("h2", { id: "sweep-figures-title", text: "Figures" }),
    h("div", { class: "toolbar" }, h("label", { for: "sweep-section", text: "Section" }), sel,
      h("label", { for: "sweep-metric", text: "Showing" }), metric),
    classBox, box);
  return { node, draw };
}

async function viewSweep(id, signal) {
  let s = await api("GET", `/sweeps/${id}`);
  const summary = h("div", { id: "sweep-summary" });
  const tbody = h("tbody");
  const cancel = h("button", { type: "button", class: "danger", text: "Cancel the sweep", onclick: async () => {
    try { s = await api("POST", `/sweeps/${id}/cancel`); update(); } catch (e) { flash(e.message, true); }
  } });
  const reread = async () => {
    try { s = await api("GET", `/sweeps/${id}`); update(); } catch { /* keep what is shown */ }
  };
  // A search's panel (null for a sweep that samples nothing and stops nothing early).
  const panel = s.search ? searchPanel(s, reread) : null;
  // An assignment's (a preset's) figure, beside the class (null for other sweeps).
  const figure = s.definition && s.definition.preset ? sweepFigure(s, signal) : null;
  // N.B.: when every job is a trial, the panel's trials table lists them all, with more.
  const jobsTable = h("div", { class: "table-wrap", hidden: panel !== null && s.jobs.every((j) => j.trial) },
    h("table", { id: "sweep-jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Section", "Status", "Epochs", "Best test acc."].map((t, i) => h("th", { class: i > 2 ? "num" : "", text: t })))),
      tbody));
  // The parts that change are updated in place, so reading (or keyboard focus) is not lost.
  function update() {
    const counts = s.status_counts || {};
    const total = s.jobs.length;
    const finished = finishedOf(counts);
    cancel.hidden = (counts.queued || 0) + (counts.running || 0) === 0 || !mayManage(s.owner);
    summary.replaceChildren(
      h("div", { class: "bar" }, h("label", { for: "sweep-bar", text: `${finished} of ${total} jobs finished` }),
        h("progress", { id: "sweep-bar", max: String(total), value: String(finished) })),
      h("p", { class: "small muted", text: STATUSES.filter((k) => counts[k]).map((k) => `${counts[k]} ${k.replace("_", " ")}`).join(", ") }));
    tbody.replaceChildren(...s.jobs.map((j) => h("tr", { "data-job": j.id, "data-status": j.status },
      h("td", {}, h("a", { href: `#/job/${j.id}`, text: j.name || Object.entries(j.point || {}).map(([k, v]) => `${k}=${v}`).join(", ") || j.id.slice(0, 8) })),
      h("td", { class: "small", text: [...new Set(j.sections.map((x) => x.label))].join("; ") }),
      h("td", { class: "wrap" }, jobBadges(j), stoppedNote(j, reread, mayManage(s.owner))),
      h("td", { class: "num", text: `${j.epochs_done} / ${j.epochs_total}` }),
      h("td", { class: "num", text: pct(j.best_test_acc) }))));
    if (panel) panel.update(s);
  }
  show(h("h1", { text: s.name || `Sweep ${s.id.slice(0, 8)}` }),
    h("div", { class: "card" }, summary,
      h("div", { class: "toolbar" },
        h("button", { type: "button", class: "secondary", text: "Report (HTML)", onclick: () => download(`/sweeps/${id}/report`, "report.html") }),
        h("button", { type: "button", class: "secondary", id: "report-zip", text: "Report (Markdown + figures, zip)", onclick: () => download(`/sweeps/${id}/report?format=zip`, "report.zip") }),
        h("button", { type: "button", class: "secondary", text: "Figure (PNG)", onclick: () => download(`/sweeps/${id}/plot?format=png`, "sweep.png") }),
        h("a", { class: "button secondary", id: "compare-sweep", href: `#/compare?jobs=${s.jobs.map((j) => j.id).join(",")}`, text: "Compare its jobs" }),
        cancel)),
    figure ? figure.node : null,
    panel ? panel.node : null,
    jobsTable);
  update();
  if (panel) panel.drawn();
  if (figure) figure.draw();
  const mine = new Set(s.jobs.map((j) => j.id));
  let queued = null, redraw = null;
  stream("/events", (type, data) => {
    if (type === "progress" || !mine.has(data.job) || queued) return;
    // At most one re-read a second, however many epochs land at once; the figure (drawn by
    // the server) at most once every two.
    queued = setTimeout(async () => {
      await reread();
      if (figure && !redraw) redraw = setTimeout(() => { redraw = null; figure.draw(); }, 2000);
      queued = null;
    }, 1000);
  }, signal);
}

// ---------- a sweep's search ----------

const METRIC_WORDS = { test_acc: "test accuracy", train_acc: "training accuracy", test_loss: "test loss", train_loss: "training loss" };
const isAccuracy = (metric) => metric === "test_acc" || metric === "train_acc";
const fmtMetric = (metric, v) => (isAccuracy(metric) ? pct(v) : fmtLoss(v));
/// The colours of the search's scatter: trials that ran (or run) on, and those stopped early.
const RAN = "#2456c7", STOPPED = "#8a94a6";

/// A distribution as words: "log-uniform in [0.0001, 1]".
function distributionWords(d) {
  const [kind, args] = Object.entries(d || {})[0] || [];
  const list = Array.isArray(args) ? args.map((v) => (typeof v === "string" ? v : JSON.stringify(v))) : [];
  if (kind === "log_uniform") return `log-uniform in [${list.join(", ")}]`;
  if (kind === "uniform") return `uniform in [${list.join(", ")}]`;
  if (kind === "int_uniform") return `a whole number from ${list[0]} to ${list[1]}`;
  if (kind === "choice") return `one of ${list.join(", ")}`;
  return JSON.stringify(d);
}

/// The early-stopping rule as words, with ASHA's rungs below the trials' epochs.
function ruleWords(rule, epochs) {
  if (!rule) return "No early stopping: every trial trains all its epochs.";
  if (rule.asha) {
    const { metric, grace_epochs: grace, reduction } = rule.asha;
    const rungs = [];
    for (let e = grace; e < epochs && rungs.length < 20; e *= reduction) rungs.push(e);
    const at = rungs.length > 1 ? `at epochs ${rungs.join(", ")} (its rungs)` : `at epoch ${rungs[0] || grace} (its rung)`;
    return `ASHA (asynchronous successive halving) on ${METRIC_WORDS[metric] || metric}: ${at}, a trial goes on only if it ranks in the top 1/${reduction} of the trials that have reached that rung so far (the first always goes on); the others stop early.`;
  }
  if (rule.median) {
    const { metric, grace_epochs: grace, min_trials: min } = rule.median;
    return `The median stopping rule on ${METRIC_WORDS[metric] || metric}: from epoch ${grace} on, a trial stops when its best so far is worse than the median of the other trials' running averages at the same epoch (once ${min} other${min === 1 ? " has" : "s have"} reached it).`;
  }
  return JSON.stringify(rule);
}

/// What stopped a trial early, and a button that trains it on; resumed trials say so.
function stoppedNote(t, reread, manage = true) {
  if (t.status === "stopped_early") {
    const where = t.rung !== null && t.rung !== undefined ? `stopped early at rung ${t.rung}` : `stopped early after epoch ${t.epochs_done}`;
    const resume = h("button", { type: "button", class: "secondary", "data-resume": t.id, "aria-label": `resume ${t.label || t.name || t.id.slice(0, 8)}`,
      text: "Resume", title: "Queue it again: it trains on from its checkpoint to its epochs, and the rule judges it no more",
      onclick: async () => {
        resume.disabled = true;
        try {
          await api("POST", `/jobs/${t.id}/resume`);
          flash(`Resumed ${t.label || t.name || t.id.slice(0, 8)}: it is queued again.`);
          await reread();
        } catch (e) { flash(e.message, true); resume.disabled = false; }
      } });
    return h("div", { class: "stopped" }, h("strong", { class: "stopped-at", text: where }),
      t.stopped_because ? h("div", { class: "small muted reason", text: t.stopped_because }) : null, manage ? resume : null);
  }
  if (t.resumed) return h("div", { class: "small muted", text: "resumed after it stopped early" });
  return null;
}

/// The fields a scatter can put on x: the searched ones (or, for a grid, its points'
/// fields) whose every value is a number; log-uniform ones on a log scale.
function numericFields(search) {
  const dists = new Map(search.space.map(([k, d]) => [k, d]));
  const keys = [...dists.keys()];
  for (const t of search.trials) for (const k of Object.keys(t.point || {})) if (!keys.includes(k)) keys.push(k);
  return keys.filter((k) => {
    const vs = search.trials.map((t) => (t.point || {})[k]).filter((v) => v !== undefined && v !== null);
    return vs.length > 0 && vs.every((v) => typeof v === "number");
  }).map((k) => {
    const d = dists.get(k);
    const vs = search.trials.map((t) => (t.point || {})[k]).filter((v) => typeof v === "number");
    const log = d ? "log_uniform" in d : vs.every((v) => v > 0) && Math.max(...vs) / Math.min(...vs) >= 100;
    return { key: k, log, words: d ? distributionWords(d) : "" };
  });
}

/// A log axis' ticks: the powers of ten in its range (one at least), labelled as people
/// write them: 0.001, 1, 100, 1e-6.
function decades(u, axis, min, max) {
  const out = [];
  for (let e = Math.ceil(Math.log10(min) - 1e-9); 10 ** e <= max * (1 + 1e-9); e++) out.push(10 ** e);
  return out.length ? out : [min];
}
const decadeText = (v) => (v === null ? "" : v >= 1e-3 && v < 1e5 ? String(Number(v.toPrecision(6))) : v.toExponential(0).replace("e+", "e"));

/// The chart of a searched setting (x) against each trial's best value of the metric (y):
/// points only, trials stopped early in their own colour.
function scatterChart(box, field, metric) {
  const percent = isAccuracy(metric);
  const width = () => Math.max(240, box.clientWidth - 16);
  const dot = (colour, fill) => ({ show: true, size: 9, width: 1.5, stroke: colour, fill });
  const opts = {
    width: width(), height: 260,
    scales: {
      // A log scale a quarter of a decade wider than the points, so none sits on the edge.
      x: field.log ? { time: false, distr: 3, log: 10, range: (u, min, max) => (min === null || max === null ? [0.1, 10]
        : [min / 10 ** 0.25, max * 10 ** 0.25]) } : { time: false },
      y: { range: (u, min, max) => {
        if (min === null || max === null) return percent ? [0, 100] : [0, 1];
        const pad = Math.max((max - min) * 0.1, percent ? 1 : Math.abs(max) * 0.02 || 0.01);
        return [Math.max(0, min - pad), percent ? Math.min(100, max + pad) : max + pad];
      } },
    },
    axes: [
      field.log ? { label: `${field.key} (log scale)`, splits: decades, values: (u, vals) => vals.map(decadeText) } : { label: field.key },
      { label: `best ${METRIC_WORDS[metric] || metric}`, size: 64, values: tickFormat(percent) },
    ],
    series: [
      { label: field.key, value: (u, v) => (v === null || v === undefined ? "—" : String(v)) },
      { label: "ran on", stroke: RAN, paths: () => null, points: dot(RAN, RAN),
        value: (u, v) => (v === null || v === undefined ? "—" : percent ? v.toFixed(1) + " %" : fmtLoss(v)) },
      { label: "stopped early", stroke: STOPPED, paths: () => null, points: dot(STOPPED, "#fff"),
        value: (u, v) => (v === null || v === undefined ? "—" : percent ? v.toFixed(1) + " %" : fmtLoss(v)) },
    ],
    cursor: { drag: { x: false, y: false }, points: { size: 11 } },
    legend: { live: true },
  };
  const u = new uPlot(opts, [[], [], []], box);
  const chart = {
    u, box, field: field.key,
    set(search) {
      const rows = search.trials
        .map((t) => ({ x: (t.point || {})[field.key], y: t.best, stopped: t.status === "stopped_early" }))
        .filter((r) => typeof r.x === "number" && r.y !== null && r.y !== undefined && (!field.log || r.x > 0))
        .sort((a, b) => a.x - b.x);
      const y = (r) => (percent ? 100 * r.y : r.y);
      u.setData([rows.map((r) => r.x), rows.map((r) => (r.stopped ? null : y(r))), rows.map((r) => (r.stopped ? y(r) : null))]);
    },
    resize() { u.setSize({ width: width(), height: 260 }); },
  };
  let lastWidth = width();
  new ResizeObserver(() => {
    if (width() !== lastWidth) { lastWidth = width(); chart.resize(); }
  }).observe(box);
  return chart;
}

/// A search's panel: its rule, seed and the epochs stopping saved, its best trial, the ASHA
/// rungs, a scatter of setting against result, and its trials, each stopped one with why
/// and a Resume button. `node` to show; `update(sweep)` as the sweep is read again; `drawn()`
/// once it is in the page (the chart needs its width).
function searchPanel(sweep, reread) {
  const search0 = sweep.search;
  const metric = search0.metric;
  const facts = h("dl", { class: "kv", id: "search-facts" });
  const rungsBox = h("div", { id: "search-rungs-box" });
  const trialsBody = h("tbody");
  const fields = numericFields(search0);
  const pick = h("select", { id: "search-x", "aria-label": "setting on the x axis" },
    fields.map((f) => h("option", { value: f.key, text: f.key })));
  const figure = h("figure", { class: "chart scatter", id: "search-chart", role: "group",
    "aria-label": `each trial's setting against its best ${METRIC_WORDS[metric] || metric} (chart; the numbers are in the trials table)` },
  h("h3", { text: `Best ${METRIC_WORDS[metric] || metric} by setting` }),
  h("div", { class: "toolbar small" },
    fields.length > 1 ? [h("label", { for: "search-x", text: "x axis" }), pick] : null,
    h("span", { class: "key" }, h("span", { class: "dot ran" }), "ran on (or running)"),
    h("span", { class: "key" }, h("span", { class: "dot stopped" }), "stopped early")));
  let chart = null;
  let current = sweep;
  const draw = () => {
    const field = fields.find((f) => f.key === pick.value) || fields[0];
    if (!field) return;
    if (chart) {
      chart.u.destroy();
      charts = charts.filter((c) => c !== chart);
    }
    chart = scatterChart(figure, field, metric);
    charts.push(chart);
    chart.set(current.search);
  };
  pick.addEventListener("change", draw);
  const node = h("section", { class: "card search-panel", id: "search-panel", "aria-labelledby": "search-title" },
    h("h2", { id: "search-title", text: "Search" }),
    h("p", { id: "search-rule" }),
    facts,
    h("div", { class: "search-grid" },
      fields.length ? figure : h("p", { class: "muted", text: "No searched setting is a number: nothing to chart." }),
      rungsBox),
    h("h3", { text: "Trials" }),
    h("div", { class: "table-wrap" }, h("table", { id: "search-trials" },
      h("thead", {}, h("tr", {}, h("th", { text: "Trial" }), h("th", { text: "Status" }),
        h("th", { class: "num", text: "Epochs" }), h("th", { class: "num", text: `Best ${METRIC_WORDS[metric] || metric}` }),
        h("th", { text: "Early stopping" }))),
      trialsBody)));
  function update(s) {
    current = s;
    const search = s.search;
    if (!search) return;
    const resumed = new Map(s.jobs.map((j) => [j.id, j.resumed]));
    const most = Math.max(0, ...search.trials.map((t) => t.epochs_total));
    $("#search-rule", node).textContent = ruleWords(search.early_stop, most);
    const share = search.epochs_full > 0 ? (100 * search.epochs_saved / search.epochs_full).toFixed(0) : "0";
    const best = search.best;
    facts.replaceChildren(...[
      search.space.length ? [h("dt", { text: "space" }), h("dd", { id: "search-space" },
        search.space.map(([k, d], i) => [i ? "; " : null, h("code", { text: k }), " ", distributionWords(d)]))] : null,
      h("dt", { text: "trials" }), h("dd", { text: `${search.trials.length}` }),
      h("dt", { text: "sampling seed" }), h("dd", { id: "search-seed", text: search.sampling_seed === null || search.sampling_seed === undefined ? "— (nothing sampled)" : String(search.sampling_seed) }),
      h("dt", { text: "epochs" }), h("dd", { id: "search-epochs",
        text: `${search.epochs_run} run of the ${search.epochs_full} the trials would train in full; ${search.epochs_saved} saved by stopping early (${share} %)` }),
      h("dt", { text: "best trial" }), h("dd", { id: "search-best" },
        best ? [h("a", { href: `#/job/${best.id}`, text: best.label }),
          `: ${METRIC_WORDS[metric] || metric} ${fmtMetric(metric, best.best)}` + (best.best_epoch ? ` at epoch ${best.best_epoch}` : "")]
          : h("span", { class: "muted", text: "none yet: no trial has finished an epoch" }))].flat().filter(Boolean));
    rungsBox.replaceChildren(
      h("h3", { text: "Rungs" }),
      search.rungs.length === 0
        ? h("p", { class: "muted small", id: "search-no-rungs",
            text: search.early_stop && search.early_stop.asha ? "No trial has reached a rung yet." : "The rule has no rungs: each trial is judged epoch by epoch." })
        : h("div", { class: "table-wrap" }, h("table", { id: "search-rungs" },
            h("thead", {}, h("tr", {}, ["Rung", "Epoch", "Trials reached", "Went on", "Stopped"].map((t, i) => h("th", { class: i ? "num" : "", text: t })))),
            h("tbody", {}, search.rungs.map((r) => {
              const on = r.trials.filter((t) => t.promoted).length;
              return h("tr", { "data-rung": r.rung },
                h("td", { text: r.rung }), h("td", { class: "num", text: r.epoch }),
                h("td", { class: "num", text: r.trials.length }), h("td", { class: "num", text: on }),
                h("td", { class: "num", text: r.trials.length - on }));
            })))));
    trialsBody.replaceChildren(...search.trials.map((t) => {
      const row = Object.assign({}, t, { resumed: resumed.get(t.id) });
      return h("tr", { "data-job": t.id, "data-status": t.status, class: best && best.id === t.id ? "best" : null },
        h("td", {}, h("a", { href: `#/job/${t.id}`, text: t.label })),
        h("td", {}, statusBadge(t.status)),
        h("td", { class: "num", text: `${t.epochs_done} / ${t.epochs_total}` }),
        h("td", { class: "num", text: fmtMetric(metric, t.best) + (t.best_epoch ? ` (epoch ${t.best_epoch})` : "") }),
        h("td", { class: "wrap" }, stoppedNote(row, reread, mayManage(s.owner))));
    }));
    if (chart) chart.set(search);
  }
  return { node, update, drawn: draw };
}

// ---------- the class ----------

/// The assignments a class view can show: the presets.
const ASSIGNMENTS = [["cifar10-assignment", "The CIFAR-10 assignment"], ["optimizers", "Optimisers on the tutorial CNN"]];

/// An image the server draws, fetched with the token (an <img src> cannot send one) and
/// shown from a blob URL. A newer load replaces the image only once it has decoded, so a
/// figure that follows live results does not flicker; an older load that ends late is
/// dropped. `load(path)` throws the server's refusal (an ApiError) for the caller to say.
function apiImage(attrs, signal) {
  const img = h("img", Object.assign({ hidden: true }, attrs));
  let url = null;
  let seq = 0;
  const forget = () => { if (url) URL.revokeObjectURL(url); url = null; };
  if (signal) signal.addEventListener("abort", forget, { once: true });
  return {
    img,
    async load(path) {
      const mine = ++seq;
      const r = await fetch(path, { headers: authHeaders(), signal });
      if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
      const next = URL.createObjectURL(await r.blob());
      try { const probe = new Image(); probe.src = next; await probe.decode(); } catch { /* shown as it is */ }
      if (mine !== seq || (signal && signal.aborted)) { URL.revokeObjectURL(next); return false; }
      forget();
      url = next;
      img.src = next;
      img.hidden = false;
      return true;
    },
    clear() { seq++; forget(); img.removeAttribute("src"); img.hidden = true; },
  };
}

/// A section's short name for a column head: "6. lr" from "6. Learning rate" and key "lr".
function sectionHead(s) {
  const n = /^(\d+)\./.exec(s.title);
  return (n ? n[1] + ". " : "") + s.key.replace("_", " ");
}

/// A run's final test accuracy as a whole percent, for the table's compact cells.
const pct0 = (x) => (x === null || x === undefined ? "—" : String(Math.round(100 * x)));

/// A server figure's size for the box it shows in: as wide as the box (so its text reads at
/// the size drawn), `ratio` as high, within what the server draws (300 to 2000 pixels).
function figureSize(box, ratio) {
  const w = Math.round(Math.min(2000, Math.max(300, (box.clientWidth || 1000) - 2)));
  return { width: String(w), height: String(Math.round(Math.min(2000, Math.max(200, w * ratio)))) };
}

/// The mean of a section's runs' final test accuracy in a student's row (null: none yet).
function sectionMean(row, key) {
  const vs = row.runs.filter((r) => r.section === key && r.final_test_acc !== null && r.final_test_acc !== undefined)
    .map((r) => r.final_test_acc);
  return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : null;
}

async function viewClass(key, signal) {
  if (!readsEveryone()) {
    show(h("h1", { text: "Class" }),
      h("p", { text: "The class view is for instructors and admins. Your own results beside the class's are on your assignment's sweep page (\"compare me with the class\")." }),
      h("p", {}, h("a", { href: "#/sweeps", text: "Your sweeps" })));
    return;
  }
  const base = `/class/${encodeURIComponent(key)}`;
  let data = await api("GET", base);
  const a = data.assignment;
  // What the reader chose stays as the table and figures are read again: the order, and
  // whose flags are open.
  let sortKey = "student", sortDir = 1;
  const openFlags = new Set();
  const pick = h("select", { id: "class-assignment", "aria-label": "assignment" },
    ASSIGNMENTS.map(([k, t]) => h("option", { value: k, selected: k === a.key, text: t })));
  pick.addEventListener("change", () => { location.hash = `#/class/${pick.value}`; });
  const facts = h("p", { id: "class-facts", class: "muted" });
  const nameFilter = h("input", { id: "class-filter", type: "search", placeholder: "a student's name", autocomplete: "off" });
  const flagged = h("input", { id: "class-flagged", type: "checkbox" });
  const shown = h("span", { id: "class-shown", class: "small muted", "aria-live": "polite" });
  const empty = h("p", { id: "class-empty", class: "muted", hidden: true, text: "No student has submitted this assignment yet." });
  const tbody = h("tbody");
  const tfoot = h("tfoot");
  // Columns: [key, heading, numeric, the value a row sorts by, tooltip].
  const columns = [
    ["student", "Student", false, (r) => r.student],
    ["submitted", "Submitted", false, (r) => r.created_at],
    ["completion", "Completion", true, (r) => r.completion, "runs finished (succeeded, or stopped early by the search's rule) of all its runs"],
    ["running", "Running", true, (r) => r.jobs.running],
    ["queued", "Queued", true, (r) => r.jobs.queued],
    ["failed", "Failed", true, (r) => r.jobs.failed],
    ["diverged", "Diverged", true, (r) => r.jobs.diverged, "runs whose loss became NaN or infinite"],
    ["flags", "Flags", true, (r) => r.flags.length, "what may need a look: failed, diverged, at chance, few epochs, far from the class's median"],
    ...a.sections.map((s) => [`section:${s.key}`, sectionHead(s), true, (r) => sectionMean(r, s.key),
      `${s.title}: each run's final test accuracy in %, as ${s.runs.join(" / ")}; sorted by their mean`]),
  ];
  const heads = columns.map(([k, text, numeric, , help]) => {
    const button = h("button", { type: "button", class: "sort", "data-sort": k, title: help || null, text,
      onclick: () => {
        if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = numeric && k !== "completion" ? -1 : 1; }
        render();
      } });
    return h("th", { class: (numeric ? "num" : "") + (k.startsWith("section:") ? " section" : "") + (k === "student" ? " student" : ""),
      "data-col": k, scope: "col" }, button);
  });
  const table = h("div", { class: "table-wrap" }, h("table", { id: "class-table" },
    h("caption", { class: "skip", text: `${a.title}: a row per student` }),
    h("thead", {}, h("tr", {}, heads)), tbody, tfoot));

  // One student's row.
  function rowOf(r) {
    const finished = (r.jobs.succeeded || 0) + (r.jobs.stopped_early || 0);
    const flagText = r.flags.map((f) => f.message).join("\n");
    const earlier = r.earlier_sweeps.length;
    return h("tr", { "data-student": r.student, "data-flags": r.flags.length },
      h("th", { scope: "row", class: "student" },
        h("a", { href: `#/sweep/${r.sweep}`, class: "name", title: `${r.student}'s sweep`, text: r.student }),
        h("div", { class: "small" },
          h("a", { href: `#/jobs?owner=${encodeURIComponent(r.student)}`, "data-jobs": r.student, text: "jobs" }),
          earlier ? h("span", { class: "muted", title: r.earlier_sweeps.map((e) => `${e.id.slice(0, 8)} (${e.created_at})`).join("\n"),
            text: ` · ${earlier} earlier submission${earlier === 1 ? "" : "s"}` }) : null)),
      h("td", { class: "small" }, agoSpan(r.created_at)),
      h("td", { class: "completion" }, h("div", { class: "bar" },
        h("progress", { max: String(r.jobs.total || 1), value: String(finished), "aria-label": `${r.student}: ${finished} of ${r.jobs.total} runs finished` }),
        h("span", { class: "small", text: `${finished}/${r.jobs.total}` }))),
      h("td", { class: "num", text: r.jobs.running || "—" }),
      h("td", { class: "num", text: r.jobs.queued || "—" }),
      h("td", { class: "num" + (r.jobs.failed ? " bad" : ""), text: r.jobs.failed || "—" }),
      h("td", { class: "num" + (r.jobs.diverged ? " bad" : ""), text: r.jobs.diverged || "—" }),
      h("td", { class: "num flags" }, r.flags.length === 0 ? h("span", { class: "muted", text: "—" }) :
        h("details", { open: openFlags.has(r.student),
          ontoggle: (ev) => { if (ev.target.open) openFlags.add(r.student); else openFlags.delete(r.student); } }, h("summary", { title: flagText, "aria-label": `${r.flags.length} flag${r.flags.length === 1 ? "" : "s"}: ${flagText}`,
          text: `${r.flags.length} ⚑` }),
        h("ul", {}, r.flags.map((f) => h("li", { "data-kind": f.kind, text: f.message }))))),
      a.sections.map((s) => {
        const cells = r.runs.filter((c) => c.section === s.key);
        return h("td", { class: "num section", "data-section": s.key,
          title: cells.map((c) => `${c.label}: ${pct(c.final_test_acc)}${c.best_test_acc !== null ? ` (best ${pct(c.best_test_acc)})` : ""}, ${c.status.replace("_", " ")}, ${c.epochs_done}/${c.epochs_total} epochs${c.diverged ? ", diverged" : ""}`).join("\n") },
        cells.length === 0 ? "—" : cells.flatMap((c, i) => [i ? h("span", { class: "sep", text: " / " }) : null,
          h("span", { class: c.diverged ? "bad" : ACTIVE.has(c.status) ? "muted" : null, text: pct0(c.final_test_acc) })]));
      }));
  }
  // The class's medians under the rows: each run's median final test accuracy.
  function footOf() {
    const byRun = new Map(data.runs.map((r) => [`${r.section}\u0000${r.label}`, r]));
    return h("tr", { class: "median" },
      h("th", { scope: "row", class: "student", text: "class median" }),
      h("td", { colspan: 7, class: "small muted", text: "each run's median final test accuracy, % (middle half in the tooltip)" }),
      a.sections.map((s) => {
        const rs = s.runs.map((l) => byRun.get(`${s.key}\u0000${l}`) || { label: l, final_test_acc: null });
        return h("td", { class: "num section",
          title: rs.map((r) => `${r.label}: ` + (r.final_test_acc ? `median ${pct(r.final_test_acc.median)}, middle half ${pct(r.final_test_acc.q1)} to ${pct(r.final_test_acc.q3)}, ${r.final_test_acc.n} student${r.final_test_acc.n === 1 ? "" : "s"}` : "none finished yet")).join("\n"),
          text: rs.map((r) => pct0(r.final_test_acc && r.final_test_acc.median)).join(" / ") });
      }));
  }
  function render() {
    const col = columns.find((c) => c[0] === sortKey) || columns[0];
    const [, , numeric, value] = col;
    const needle = nameFilter.value.trim().toLowerCase();
    const rows = data.students
      .filter((r) => (!needle || r.student.toLowerCase().includes(needle)) && (!flagged.checked || r.flags.length > 0))
      .sort((x, y) => {
        const vx = value(x), vy = value(y);
        // N.B.: rows with nothing to sort by go last, whichever the direction.
        if (vx === null || vy === null) return vx === null ? (vy === null ? 0 : 1) : -1;
        const d = numeric ? vx - vy : String(vx).localeCompare(String(vy));
        return d * sortDir || x.student.localeCompare(y.student);
      });
    tbody.replaceChildren(...rows.map(rowOf));
    tfoot.replaceChildren(...(data.students.length ? [footOf()] : []));
    for (const th of heads) {
      const k = th.dataset.col;
      if (k === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending"); else th.removeAttribute("aria-sort");
    }
    const n = data.students.length;
    facts.textContent = n === 0 ? "Nobody has submitted it yet." :
      `${n} student${n === 1 ? "" : "s"} submitted it; ${data.students.filter((r) => r.completion >= 1).length} finished every run; ` +
      `${data.students.filter((r) => r.flags.length).length} with flags. Each student's newest submission counts.`;
    shown.textContent = n && rows.length !== n ? `showing ${rows.length} of ${n}` : "";
    empty.hidden = n > 0;
    table.hidden = n === 0;
    figures.hidden = n === 0;
    if (n > 0 && rows.length === 0) tbody.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted", text: "No student matches the filter." })));
  }
  nameFilter.addEventListener("input", render);
  nameFilter.addEventListener("change", render);
  flagged.addEventListener("change", render);

  // The figures: a section's curves across the class (one student highlighted, or none), and
  // its spread of final test accuracy.
  const sectionSel = h("select", { id: "class-section" }, a.sections.map((s) => h("option", { value: s.key, text: s.title })));
  const metricSel = h("select", { id: "class-metric" }, Object.entries(METRIC_WORDS).map(([k, t]) => h("option", { value: k, text: t })));
  const studentSel = h("select", { id: "class-student" });
  const curves = apiImage({ id: "class-curves", alt: "" }, signal);
  const final = apiImage({ id: "class-final", alt: "" }, signal);
  const curvesNote = h("p", { class: "small muted", role: "status" });
  const finalNote = h("p", { class: "small muted", role: "status" });
  const curvesBox = h("figure", { class: "figure" }, curves.img, curvesNote,
    h("figcaption", { class: "small muted", text: "Each run of the section: every student a thin grey line over the class's median and middle half (25–75 %); the student highlighted in colour." }));
  const finalBox = h("figure", { class: "figure" }, final.img, finalNote,
    h("figcaption", { class: "small muted", text: "Each run's final test accuracy: a box of the class's middle half, a dot per student." }));
  const fillStudents = () => {
    const was = studentSel.value;
    studentSel.replaceChildren(h("option", { value: "", text: "nobody highlighted" }),
      ...data.students.map((r) => r.student).sort().map((s) => h("option", { value: s, selected: s === was, text: s })));
  };
  // One drawing at a time: asked for meanwhile, it draws again once that one is shown.
  let drawing = false, again = false;
  async function draw() {
    if (data.students.length === 0) return;
    if (drawing) { again = true; return; }
    drawing = true;
    const q = (kind) => {
      const size = figureSize(kind === "final" ? finalBox : curvesBox, kind === "final" ? 0.5 : 0.6);
      const p = new URLSearchParams({ section: sectionSel.value, kind, format: "png", ...size });
      if (kind === "curves") p.set("metric", metricSel.value);
      if (studentSel.value) p.set("student", studentSel.value);
      return `${base}/plot?${p}`;
    };
    const section = sectionSel.selectedOptions[0].text;
    const who = studentSel.value ? `, ${studentSel.value} highlighted` : "";
    curves.img.alt = `${section}: each student's ${METRIC_WORDS[metricSel.value]} by epoch over the class's median and middle half${who}`;
    final.img.alt = `${section}: each run's final test accuracy across the class${who}`;
    const one = async (im, note, path) => {
      try { if (await im.load(path)) { note.textContent = ""; note.className = "small muted"; } } catch (e) {
        if (signal.aborted) return;
        note.textContent = `The figure could not be drawn: ${e.message}`;
        note.className = "small error";
      }
    };
    if (!curves.img.src) curvesNote.textContent = "Drawing…";
    if (!final.img.src) finalNote.textContent = "Drawing…";
    try {
      await Promise.all([one(curves, curvesNote, q("curves")), one(final, finalNote, q("final"))]);
    } finally { drawing = false; }
    if (again && !signal.aborted) { again = false; draw(); }
  }
  sectionSel.addEventListener("change", draw);
  metricSel.addEventListener("change", draw);
  studentSel.addEventListener("change", draw);
  const figures = h("section", { class: "card", id: "class-figures", "aria-labelledby": "class-figures-title" },
    h("h2", { id: "class-figures-title", text: "Figures" }),
    h("div", { class: "toolbar" },
      h("label", { for: "class-section", text: "Section" }), sectionSel,
      h("label", { for: "class-metric", text: "Curves of" }), metricSel,
      h("label", { for: "class-student", text: "Highlight" }), studentSel),
    h("div", { class: "class-figures" }, curvesBox, finalBox));

  show(h("div", { class: "toolbar class-head" },
    h("h1", { id: "class-title", text: a.title }), h("span", { class: "spacer" }), pick),
  facts,
  h("div", { class: "toolbar" },
    h("label", { for: "class-filter", text: "Student" }), nameFilter,
    h("label", { for: "class-flagged", class: "check" }, flagged, " only flagged"), shown,
    h("span", { class: "spacer" }),
    h("button", { type: "button", class: "secondary", id: "class-csv", text: "Download CSV",
      onclick: () => download(`${base}?format=csv`, `class-${a.key}.csv`) }),
    h("button", { type: "button", class: "secondary", id: "class-report", text: "Class report (HTML)",
      onclick: () => download(`${base}/report`, `class-${a.key}-report.html`) }),
    h("button", { type: "button", class: "secondary", id: "class-report-zip", text: "Class report (Markdown + figures, zip)",
      onclick: () => download(`${base}/report?format=zip`, `class-${a.key}-report.zip`) })),
  empty, table,
  h("p", { class: "small muted", text: "Click a column's heading to sort by it (again: the other way); a student's name opens their sweep. A section's cell lists its runs' final test accuracy in %, in the assignment's order; hover for the runs' names." }),
  figures);
  fillStudents();
  render();
  draw();

  // Live: results land as jobs train and finish; the table and figures are read again, at
  // most once every two seconds however many events arrive.
  let timer = null, last = 0, seen = JSON.stringify(data);
  const refresh = async () => {
    timer = null;
    last = Date.now();
    let next;
    try { next = await api("GET", base); } catch { return; }
    // N.B.: unchanged, nothing is redrawn (the reader's focus and scroll stay where they are).
    const text = JSON.stringify(next);
    if (signal.aborted || text === seen) return;
    seen = text;
    data = next;
    fillStudents();
    render();
    draw();
  };
  stream("/events", (type) => {
    if (type === "progress" || timer) return;
    timer = setTimeout(refresh, Math.max(0, 2000 - (Date.now() - last)));
  }, signal);
  signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
}

// ---------- admin ----------

async function viewAdmin(signal) {
  if (!me.admin) { show(h("h1", { text: "Admins only" })); return; }
  const queueBox = h("div"), workersBox = h("div"), usersBox = h("div");
  const tokenBox = h("div", { id: "new-token", "aria-live": "polite" });
  const newName = h("input", { id: "new-user", type: "text", pattern: "[a-z0-9._\\-]{1,64}", "aria-describedby": "new-user-help new-user-error" });
  const newRole = h("select", { id: "new-role", "aria-describedby": "new-role-help" },
    h("option", { value: "student", selected: true, text: "student" }),
    h("option", { value: "instructor", text: "instructor" }),
    h("option", { value: "admin", text: "admin" }));
  const newError = h("span", { class: "error", id: "new-user-error", role: "alert" });
  // N.B.: novalidate: the field's pattern is checked here, so the message says what is allowed.
  const addForm = h("form", { class: "card", id: "add-user", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "new-user", text: "New user's name" }), newName,
      h("span", { class: "help", id: "new-user-help", text: "1 to 64 characters of a-z, 0-9, '.', '_' and '-'." }), newError),
    h("div", { class: "field" }, h("label", { for: "new-role", text: "Role" }), newRole,
      h("span", { class: "help", id: "new-role-help",
        text: "A student sees their own jobs; an instructor reads everyone's jobs, sweeps and the class view but cancels only their own; an admin also cancels any job, sets priorities and manages users." })),
    h("button", { type: "submit", text: "Add user" }));
  const showToken = (u) => tokenBox.replaceChildren(h("div", { class: "card" },
    h("p", {}, h("strong", { text: `${u.name}'s token` }), " — shown only this once; give it to them now:"),
    h("p", { class: "token", text: u.token }),
    h("button", { type: "button", class: "secondary", text: "Copy", onclick: () => navigator.clipboard && navigator.clipboard.writeText(u.token) })));
  addForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    newError.textContent = "";
    newName.removeAttribute("aria-invalid");
    if (newName.validity.patternMismatch || !newName.value.trim()) {
      newError.textContent = `A name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'; got "${newName.value}".`;
      newName.setAttribute("aria-invalid", "true");
      newName.focus();
      return;
    }
    try {
      const u = await api("POST", "/users", { name: newName.value.trim(), role: newRole.value });
      showToken(u);
      newName.value = "";
      newRole.value = "student";
      await loadUsers();
    } catch (e) { newError.textContent = e.message; newName.setAttribute("aria-invalid", "true"); newName.focus(); }
  });
  async function loadQueue() {
    const q = await api("GET", "/queue");
    // What holds jobs back (a dataset missing, say), each naming its dataset.
    const held = q.problems.map((p) => h("p", { class: "error", "data-problem": p.dataset || "",
      text: `${p.dataset ? p.dataset + ": " : ""}${p.message}` }));
    queueBox.replaceChildren(...held, q.jobs.length === 0 ? h("p", { class: "muted", text: "Nothing queued or running." }) :
      h("div", { class: "table-wrap" }, h("table", { id: "queue" },
        h("thead", {}, h("tr", {}, ["#", "Owner", "Model", "Dataset", "Status", "Priority", "Epochs", "Waited", "Starts"].map((t) => h("th", { text: t })))),
        h("tbody", {}, q.jobs.map((j) => h("tr", {},
          h("td", { text: j.position ?? "—" }), h("td", { text: j.owner }),
          h("td", {}, j.id ? h("a", { href: `#/job/${j.id}`, text: j.model }) : j.model),
          h("td", { text: j.dataset ?? "—" }),
          h("td", {}, statusBadge(j.status)), h("td", { class: "num", text: j.priority }),
          h("td", { class: "num", text: `${j.epochs_done} / ${j.epochs_total}` }),
          h("td", { class: "num", text: waited(j.waited_seconds) }),
          h("td", {}, j.status === "running" ? "running" : untilSpan(j.estimated_start))))))));
  }
  const jobLinks = (ids) => ids.length === 0 ? "—"
    : ids.flatMap((id, i) => [i ? ", " : null, h("a", { href: `#/job/${id}`, text: id.slice(0, 8) })]);
  async function loadWorkers() {
    const w = await api("GET", "/workers");
    workersBox.replaceChildren(w.workers.length === 0 ? h("p", { class: "muted", text: "No worker has reported." }) :
      h("div", { class: "table-wrap" }, h("table", { id: "workers" },
        h("thead", {}, h("tr", {}, ["Worker", "Host", "Device", "State", "Current jobs", "Last heard"].map((t) => h("th", { text: t })))),
        h("tbody", {}, w.workers.map((x) => h("tr", {},
          h("td", { text: x.name }), h("td", { text: x.host }), h("td", { text: x.device }),
          h("td", { text: x.state }),
          h("td", {}, jobLinks(x.jobs && x.jobs.length ? x.jobs : x.job_id ? [x.job_id] : [])),
          h("td", {}, agoSpan(x.last_heartbeat))))))));
  }
  async function loadUsers() {
    const { users } = await api("GET", "/users");
    usersBox.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "users" },
      h("thead", {}, h("tr", {}, ["Name", "Role", "Created", "Token", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, users.map((u) => h("tr", { "data-user": u.name },
        h("td", { text: u.name }), h("td", { class: "role", text: roleOf(u) }), h("td", {}, agoSpan(u.created_at)),
        h("td", {}, u.revoked_at ? ["revoked ", agoSpan(u.revoked_at)] : "valid"),
        h("td", {},
          u.name === me.name ? h("span", { class: "small muted", text: "you" }) : h("button", { type: "button", class: "secondary", "aria-label": `re-issue ${u.name}'s token`, text: "Re-issue token",
            onclick: async () => {
              if (!confirm(`Give ${u.name} a new token? Their old one stops working at once.`)) return;
              try { showToken(await api("POST", `/users/${encodeURIComponent(u.name)}/token`)); await loadUsers(); } catch (e) { flash(e.message, true); }
            } }), " ",
          u.revoked_at || u.name === me.name ? null : h("button", { type: "button", class: "danger", "aria-label": `revoke ${u.name}`, text: "Revoke",
            onclick: async () => {
              if (!confirm(`Revoke ${u.name}'s token? Their jobs stay.`)) return;
              try { await api("POST", `/users/${encodeURIComponent(u.name)}/revoke`); await loadUsers(); } catch (e) { flash(e.message, true); }
            } }))))))));
  }
  show(h("h1", { text: "Admin" }),
    h("h2", { text: "Queue, in fair-share order" }), queueBox,
    h("h2", { text: "Workers" }), workersBox,
    h("h2", { text: "Users" }), tokenBox, usersBox, addForm);
  await Promise.all([loadQueue(), loadWorkers(), loadUsers()]);
  while (!signal.aborted) {
    await sleep(5000, signal);
    if (!signal.aborted) await Promise.all([loadQueue(), loadWorkers()]).catch(() => {});
  }
}

// ---------- start ----------

// For a look from the browser's console (and the browser tests): the current view's charts.
window.trainyard = { charts: () => charts.map((c) => c.u) };

window.addEventListener("hashchange", () => route());
document.addEventListener("DOMContentLoaded", () => {
  $("#sign-out").addEventListener("click", () => signOut("Signed out."));
  route();
});
