#include "proxy/status_page.h"

namespace skproxy {
namespace {

// Graphs: connections open (by data path), bytes/s by who moved them (kernel, user space), data-path
// switches/s and errors/s, over the last 120 samples. Every value the page shows is also written into a
// data- attribute, so a test (or a script) can read what the page computed without parsing pixels.
constexpr char kPage[] = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>skproxy status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em 2em;background:#fafafa;color:#222}
h1{font-size:1.4em;margin:.2em 0}.ok{color:#080}.bad{color:#c00}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:1em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em}
.card h2{font-size:1em;margin:0 0 .3em}canvas{width:100%;height:160px}
.legend span{margin-right:1em}table{border-collapse:collapse;margin-top:1em;background:#fff}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
</style></head><body>
<h1>skproxy <span id="ready" data-ready="">…</span></h1>
<div>updated <span id="updates" data-count="0">0</span> times; <span id="summary"></span></div>
<div class="grid">
<div class="card"><h2>Connections open</h2><canvas id="g-conns" width="440" height="160" data-last=""></canvas>
<div class="legend"><span style="color:#1565c0">■ kernel path</span><span style="color:#ef6c00">■ user space</span></div></div>
<div class="card"><h2>Bytes per second</h2><canvas id="g-bytes" width="440" height="160" data-last=""></canvas>
<div class="legend"><span style="color:#1565c0">■ kernel</span><span style="color:#ef6c00">■ user space</span></div></div>
<div class="card"><h2>Data-path switches per second</h2><canvas id="g-switches" width="440" height="160" data-last=""></canvas>
<div class="legend"><span style="color:#1565c0">■ into the kernel path</span><span style="color:#ef6c00">■ gate to user space</span></div></div>
<div class="card"><h2>Errors per second</h2><canvas id="g-errors" width="440" height="160" data-last=""></canvas>
<div class="legend"><span style="color:#c62828">■ connect failures</span><span style="color:#6a1b9a">■ pipe + resource errors</span></div></div>
</div>
<table id="clusters"><thead><tr><th>cluster</th><th>endpoint</th><th>weight</th><th>health</th><th>open</th><th>connect failures</th></tr></thead><tbody></tbody></table>
<table id="listeners"><thead><tr><th>listener</th><th>address</th><th>cluster</th><th>open (kernel / user)</th><th>total</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const N = 120, series = {conns: [], bytes: [], switches: [], errors: []};
let previous = null, updates = 0;
function parse(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({name: m[1], labels, value: parseFloat(m[4])});
  }
  return out;
}
function sum(samples, name, filter) {
  let s = 0;
  for (const x of samples) {
    if (x.name !== name) continue;
    if (filter && !Object.entries(filter).every(([k, v]) => x.labels[k] === v)) continue;
    s += x.value;
  }
  return s;
}
function push(key, values) { series[key].push(values); if (series[key].length > N) series[key].shift(); }
function draw(id, key, colors, format) {
  const c = document.getElementById(id), g = c.getContext("2d"), data = series[key];
  g.clearRect(0, 0, c.width, c.height);
  let peak = 0;
  for (const v of data) for (const x of v) peak = Math.max(peak, x);
  const max = Math.max(peak, 1);
  g.fillStyle = "#888"; g.font = "11px sans-serif"; g.fillText(format(max), 4, 12);
  colors.forEach((color, i) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    data.forEach((v, j) => {
      const x = (j / (N - 1)) * (c.width - 2) + 1, y = c.height - 2 - (v[i] / max) * (c.height - 20);
      j ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  });
  const last = data.length ? data[data.length - 1] : [];
  c.dataset.last = last.map(format).join(" / ");
  c.dataset.peak = format(peak);  // the highest value on the graph now
}
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i] + "/s";
}
const plain = n => (Math.round(n * 10) / 10).toString();
function text(tag, value) { const e = document.createElement(tag); e.textContent = value; return e; }
function row(cells) { const tr = document.createElement("tr"); for (const c of cells) tr.appendChild(text("td", c)); return tr; }
async function tick() {
  try {
    const [m, cfg, ready] = await Promise.all([
      fetch("/metrics", {cache: "no-store"}).then(r => r.text()),
      fetch("/config", {cache: "no-store"}).then(r => r.json()),
      fetch("/ready", {cache: "no-store"}).then(r => r.status)]);
    const s = parse(m), now = performance.now() / 1000;
    const counters = {
      kernel: sum(s, "skproxy_bytes_total", {path: "kernel"}), user: sum(s, "skproxy_bytes_total", {path: "user"}),
      promoted: sum(s, "skproxy_datapath_switches_total"), gated: sum(s, "skproxy_gate_switches_total"),
      connect: sum(s, "skproxy_upstream_connect_failures_total"),
      other: sum(s, "skproxy_pipe_errors_total") + sum(s, "skproxy_resource_errors_total")};
    push("conns", [sum(s, "skproxy_connections_active", {datapath: "sockmap"}),
                   sum(s, "skproxy_connections_active", {datapath: "userspace"})]);
    if (previous) {
      const dt = Math.max(now - previous.time, 0.001), rate = k => Math.max(0, counters[k] - previous.counters[k]) / dt;
      push("bytes", [rate("kernel"), rate("user")]);
      push("switches", [rate("promoted"), rate("gated")]);
      push("errors", [rate("connect"), rate("other")]);
    }
    previous = {time: now, counters};
    draw("g-conns", "conns", ["#1565c0", "#ef6c00"], plain);
    draw("g-bytes", "bytes", ["#1565c0", "#ef6c00"], bytes);
    draw("g-switches", "switches", ["#1565c0", "#ef6c00"], plain);
    draw("g-errors", "errors", ["#c62828", "#6a1b9a"], plain);
    const r = document.getElementById("ready");
    r.textContent = ready === 200 ? "ready" : "not ready"; r.className = ready === 200 ? "ok" : "bad";
    r.dataset.ready = ready === 200 ? "true" : "false";
    document.getElementById("summary").textContent = "datapath " + cfg.datapath + ", " +
      sum(s, "skproxy_sockmap_entries") + " of " + sum(s, "skproxy_sockmap_capacity") + " sockhash entries, " +
      sum(s, "skproxy_reloads_total", {result: "success"}) + " reloads";
    const cb = document.querySelector("#clusters tbody"); cb.replaceChildren();
    for (const c of cfg.clusters) for (const e of c.endpoints) {
      const at = {cluster: c.name, endpoint: e.address};
      const known = s.some(x => x.name === "skproxy_endpoint_healthy" && x.labels.cluster === c.name &&
                                x.labels.endpoint === e.address);
      const healthy = sum(s, "skproxy_endpoint_healthy", at) > 0;
      cb.appendChild(row([c.name, e.address, plain(e.weight),
                          !known ? "unknown" : healthy ? "healthy" : "out",
                          plain(sum(s, "skproxy_endpoint_connections_active", at)),
                          plain(sum(s, "skproxy_endpoint_connect_failures_total", at))]));
    }
    const lb = document.querySelector("#listeners tbody"); lb.replaceChildren();
    for (const l of cfg.listeners)
      lb.appendChild(row([l.name, l.address, l.cluster,
        plain(sum(s, "skproxy_connections_active", {listener: l.name, datapath: "sockmap"})) + " / " +
        plain(sum(s, "skproxy_connections_active", {listener: l.name, datapath: "userspace"})),
        plain(sum(s, "skproxy_connections_total", {listener: l.name}))]));
    updates++;
    const u = document.getElementById("updates"); u.textContent = updates; u.dataset.count = updates;
  } catch (e) {
    const r = document.getElementById("ready"); r.textContent = "unreachable"; r.className = "bad"; r.dataset.ready = "false";
  }
  setTimeout(tick, 1000);
}
tick();
</script></body></html>
)html";

}  // namespace

std::string_view StatusPageHtml() { return kPage; }

}  // namespace skproxy
