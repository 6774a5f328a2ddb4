"""The report page's inline style sheet and script (no external resource of any kind).

The script keeps the page's state in the URL fragment, so a state can be linked to and tested
without a server: ``#methods=a,b`` (methods shown), ``sort=KEY`` and ``dir=asc|desc`` (metrics
table order), ``example=I`` (enlarged example). It mirrors the state on ``<body>`` as
``data-shown``, ``data-sort`` and ``data-example``.
"""

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee8; --bg: #ffffff; --panel: #f5f7fb; --accent: #2251a3; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; padding: 0 24px 40px; }
header { padding: 18px 0 8px; border-bottom: 2px solid var(--accent); margin-bottom: 14px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
.muted { color: var(--muted); }
.verdict { background: var(--panel); border-left: 4px solid var(--accent); padding: 10px 14px; border-radius: 4px; }
.verdict p { margin: 0 0 6px; font-size: 15px; }
.verdict ul { margin: 4px 0 0 18px; padding: 0; color: var(--muted); }
#controls { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; padding: 8px 10px;
            background: var(--panel); border-radius: 4px; position: sticky; top: 0; z-index: 5;
            border: 1px solid var(--line); }
#controls label { white-space: nowrap; cursor: pointer; }
#controls button { font: inherit; padding: 1px 8px; cursor: pointer; }
table { border-collapse: collapse; }
#metrics th, #metrics td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; }
#metrics th { background: var(--panel); cursor: pointer; user-select: none; white-space: nowrap; }
#metrics th[data-sort]::after { content: " \\2195"; color: var(--muted); font-size: 11px; }
#metrics td:first-child, #metrics th:first-child { text-align: left; }
#metrics td.sanity { text-align: left; white-space: nowrap; }
#metrics td.sanity svg { vertical-align: middle; }
#metrics td { padding-top: 2px; padding-bottom: 2px; }
.small { font-size: 11px; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; margin-left: 4px; }
.badge.pass { background: #dcf2e2; color: #17612d; } .badge.fail { background: #fbdcdc; color: #8a1c1c; }
.badge.partial { background: #fdf0cf; color: #7a5600; } .badge.na { background: #eceff4; color: var(--muted); }
.examples th { font-weight: 600; font-size: 12px; padding: 4px; text-align: center; max-width: 120px; }
.examples td { padding: 3px; text-align: center; vertical-align: middle; border-bottom: 1px solid var(--line); }
.examples tr.example { cursor: zoom-in; }
.examples tr.example:hover { background: var(--panel); }
.examples img { width: 96px; height: 96px; image-rendering: pixelated; display: block; margin: auto; }
.examples td.pred { text-align: left; font-size: 12px; min-width: 110px; }
.examples td.text { text-align: left; max-width: 360px; }
[hidden] { display: none !important; }
#modal { position: fixed; inset: 0; background: rgba(20, 24, 33, 0.82); z-index: 10; overflow: auto;
         padding: 30px; cursor: zoom-out; }
#modal .card { background: #fff; border-radius: 6px; padding: 14px; display: inline-block; min-width: 60%; }
#modal img { width: 240px; height: 240px; image-rendering: pixelated; }
#modal .grid { display: flex; flex-wrap: wrap; gap: 10px; }
#modal figure { margin: 0; text-align: center; font-size: 13px; }
.legend { display: inline-block; vertical-align: middle; }
footer { margin-top: 26px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
code { background: var(--panel); padding: 0 3px; border-radius: 3px; }
"""

JS = r"""
(function () {
  "use strict";
  var body = document.body;
  var all = Array.prototype.map.call(document.querySelectorAll("input[data-toggle]"), function (b) {
    return b.getAttribute("data-toggle");
  });
  function readState() {
    var text = (location.hash || "").replace(/^#/, "") || (location.search || "").replace(/^\?/, "");
    var state = {};
    text.split("&").forEach(function (part) {
      if (!part) return;
      var i = part.indexOf("=");
      var key = i < 0 ? part : part.slice(0, i);
      state[decodeURIComponent(key)] = i < 0 ? "" : decodeURIComponent(part.slice(i + 1));
    });
    return state;
  }
  function writeState(state) {
    var parts = [];
    Object.keys(state).forEach(function (k) {
      if (state[k] !== undefined && state[k] !== null) parts.push(k + "=" + encodeURIComponent(state[k]));
    });
    try { history.replaceState(null, "", "#" + parts.join("&")); } catch (e) { /* file:// in some browsers */ }
  }
  var state = readState();
  function shownMethods() {
    if (state.methods === undefined) return all.slice();
    return state.methods.split(",").filter(function (m) { return all.indexOf(m) >= 0; });
  }
  function applyMethods() {
    var shown = shownMethods();
    document.querySelectorAll("[data-method]").forEach(function (el) {
      el.hidden = shown.indexOf(el.getAttribute("data-method")) < 0;
    });
    document.querySelectorAll("input[data-toggle]").forEach(function (b) {
      b.checked = shown.indexOf(b.getAttribute("data-toggle")) >= 0;
      b.toggleAttribute("checked", b.checked);  // the attribute too: the state is visible in the DOM
    });
    body.setAttribute("data-shown", shown.join(","));
  }
  function value(row, key) {
    var v = row.getAttribute("data-v-" + key);
    if (key === "method") return v;
    var f = parseFloat(v);
    return isNaN(f) ? null : f;
  }
  function applySort() {
    var key = state.sort;
    if (!key) return;
    var desc = state.dir === "desc";
    var tbody = document.querySelector("#metrics tbody");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = value(a, key), y = value(b, key);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      var c = x < y ? -1 : x > y ? 1 : 0;
      return desc ? -c : c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    body.setAttribute("data-sort", key + ":" + (desc ? "desc" : "asc"));
  }
  var modal = document.getElementById("modal");
  function applyExample() {
    var i = state.example;
    var row = i === undefined ? null : document.querySelector("tr.example[data-example='" + i + "']");
    if (!row) { modal.hidden = true; modal.innerHTML = ""; body.removeAttribute("data-example"); return; }
    var card = document.createElement("div");
    card.className = "card";
    var head = document.createElement("h2");
    head.textContent = row.getAttribute("data-title");
    card.appendChild(head);
    var grid = document.createElement("div");
    grid.className = "grid";
    Array.prototype.forEach.call(row.cells, function (cell) {
      if (cell.hidden || cell.classList.contains("pred")) return;
      var fig = document.createElement("figure");
      fig.innerHTML = cell.innerHTML;
      var cap = document.createElement("figcaption");
      cap.textContent = cell.getAttribute("data-caption") || "";
      fig.appendChild(cap);
      grid.appendChild(fig);
    });
    card.appendChild(grid);
    modal.innerHTML = "";
    modal.appendChild(card);
    modal.hidden = false;
    body.setAttribute("data-example", i);
  }
  document.querySelectorAll("input[data-toggle]").forEach(function (b) {
    b.addEventListener("change", function () {
      var shown = all.filter(function (m) {
        return document.querySelector("input[data-toggle='" + m + "']").checked;
      });
      state.methods = shown.join(",");
      writeState(state);
      applyMethods();
    });
  });
  document.querySelectorAll("button[data-all]").forEach(function (b) {
    b.addEventListener("click", function () {
      state.methods = b.getAttribute("data-all") === "1" ? all.join(",") : "";
      writeState(state);
      applyMethods();
    });
  });
  document.querySelectorAll("#metrics th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      state.dir = state.sort === key && state.dir !== "desc" ? "desc" : "asc";
      state.sort = key;
      writeState(state);
      applySort();
    });
  });
  document.querySelectorAll("tr.example").forEach(function (row) {
    row.addEventListener("click", function () {
      state.example = row.getAttribute("data-example");
      writeState(state);
      applyExample();
    });
  });
  modal.addEventListener("click", function () { delete state.example; writeState(state); applyExample(); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { delete state.example; writeState(state); applyExample(); }
  });
  window.addEventListener("hashchange", function () { state = readState(); applyMethods(); applySort(); applyExample(); });
  applyMethods();
  applySort();
  applyExample();
  body.setAttribute("data-ready", "1");
})();
"""
