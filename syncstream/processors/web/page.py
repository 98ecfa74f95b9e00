"""The web view's page: the live picture, an output selector and a stats panel.

One self-contained HTML document (no external scripts, styles or fonts, so it works
offline and leaks nothing). The picture is an ``<img>`` on ``stream.mjpg``; the panel
fetches ``stats`` about once a second and writes every value with ``textContent``, never
as HTML, since camera and processor names come from configuration files.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

__all__ = ["PAGE_TEMPLATE", "render_page"]

#: The page, with ``$title`` and ``$outputs`` (a JSON list of output names) to fill in.
PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #1d1f21; color: #ddd; }
  header { display: flex; gap: 1.5em; align-items: center; padding: .5em 1em;
           background: #111; }
  h1 { font-size: 1.1em; margin: 0; }
  main { display: flex; flex-wrap: wrap; gap: 1em; padding: 1em; align-items: flex-start; }
  #view { display: block; max-width: 100%; background: #000; }
  #stats { min-width: 20em; }
  #stats dl { display: grid; grid-template-columns: auto auto; gap: .1em 1em; margin: 0; }
  #stats dt { color: #999; }
  #stats dd { margin: 0; font-variant-numeric: tabular-nums; }
  table { border-collapse: collapse; margin-top: .8em; }
  th, td { padding: .1em .6em; text-align: right; font-variant-numeric: tabular-nums; }
  th:first-child, td:first-child { text-align: left; }
  th { color: #999; font-weight: normal; }
  #status.down { color: #f66; }
</style>
</head>
<body>
<header>
  <h1>$title</h1>
  <label>output <select id="output"></select></label>
  <span id="status">connecting</span>
</header>
<main>
  <img id="view" alt="live picture">
  <section id="stats">
    <dl>
      <dt>frame set</dt><dd id="set-seq">-</dd>
      <dt>sets/s</dt><dd id="sets-per-second">-</dd>
      <dt>skew p50 / p95</dt><dd id="skew">-</dd>
      <dt>latency p50 / p95</dt><dd id="latency">-</dd>
      <dt>aligned by</dt><dd id="clock">-</dd>
      <dt>missing</dt><dd id="missing">-</dd>
      <dt>web clients</dt><dd id="web-clients">-</dd>
      <dt>pictures sent / dropped</dt><dd id="web-pictures">-</dd>
    </dl>
    <table id="cameras"><thead><tr>
      <th>camera</th><th>state</th><th>fps</th><th>latency p50</th><th>clock error</th>
      <th>dropped</th>
    </tr></thead><tbody></tbody></table>
    <table id="processors"><thead><tr>
      <th>processor</th><th>processed</th><th>skipped</th><th>errors</th><th>mean</th>
    </tr></thead><tbody></tbody></table>
    <table id="outputs"><thead><tr>
      <th>output</th><th>size</th><th>encoded</th><th>encode</th><th>JPEG</th>
    </tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
const OUTPUTS = $outputs;
const view = document.getElementById("view");
const select = document.getElementById("output");
const ms = (s) => (s === null || s === undefined ? "-" : (s * 1000).toFixed(1) + " ms");
const pair = (a, b) => ms(a) + " / " + ms(b);
// signed: +1.3 ms under a second, -2.50 s from one on
const signed = (s) => (s === null || s === undefined ? "-" : (s < 0 ? "" : "+")
  + (Math.abs(s) < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s"));
const put = (id, text) => { document.getElementById(id).textContent = String(text); };

function show(name) {
  view.src = "stream.mjpg?output=" + encodeURIComponent(name) + "&t=" + Date.now();
  history.replaceState(null, "", "?output=" + encodeURIComponent(name));
}
for (const name of OUTPUTS) {
  const option = document.createElement("option");
  option.value = name;
  option.textContent = name;
  select.appendChild(option);
}
const asked = new URLSearchParams(location.search).get("output");
select.value = OUTPUTS.includes(asked) ? asked : OUTPUTS[0];
select.addEventListener("change", () => show(select.value));
// a stream that ends (server restarted, output closed) is asked for again
view.addEventListener("error", () => setTimeout(() => show(select.value), 2000));
// after the load event: a stream never finishes loading, the page would never be loaded
if (document.readyState === "complete") show(select.value);
else window.addEventListener("load", () => show(select.value));

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function render(stats) {
  const group = stats.group, set = stats.frameset, web = stats.web;
  put("set-seq", set ? set.seq : "-");
  put("missing", set ? (set.missing.join(", ") || "none") : "-");
  put("sets-per-second", group ? group.sets_per_second.toFixed(1) : "-");
  put("skew", group ? pair(group.skew_p50, group.skew_p95) : "-");
  put("latency", group ? pair(group.latency_p50, group.latency_p95) : "-");
  put("clock", group ? group.clock : (set ? set.clock : "-"));
  put("web-clients", web.clients.length);
  put("web-pictures", web.sent + " / " + web.dropped);
  fill("cameras", group ? Object.values(group.cameras).map((c) => [
    c.name, c.stream.state + (c.stream.waiting_for ? " (" + c.stream.waiting_for + ")" : ""),
    c.stream.fps.toFixed(1), ms(c.stream.latency_p50),
    signed(c.stream.clock_error) + (c.off_clock ? " (off)" : ""), c.dropped,
  ]) : []);
  fill("processors", group ? Object.values(group.processors).map((p) => [
    p.name, p.processed, p.skipped, p.errors, ms(p.mean_time),
  ]) : []);
  fill("outputs", Object.values(web.outputs).map((o) => [
    o.name, o.width === null ? "-" : o.width + "x" + o.height, o.encoded,
    ms(o.encode_time_mean), o.jpeg_bytes === null ? "-" : (o.jpeg_bytes / 1024).toFixed(0) + " KiB",
  ]));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const reply = await fetch("stats", { cache: "no-store" });
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    render(await reply.json());
    status.textContent = "live";
    status.className = "";
  } catch (error) {
    status.textContent = "no answer from the server (" + error.message + ")";
    status.className = "down";
  }
  setTimeout(refresh, 1000);
}
refresh();
</script>
</body>
</html>
"""


def render_page(title: str, outputs: Sequence[str]) -> bytes:
    """The page for ``outputs`` (the first shown by default), as UTF-8."""
    # "<" escaped inside the script, so a name cannot close the <script> element
    values = {
        "title": html.escape(title),
        "outputs": json.dumps(list(outputs)).replace("<", "\\u003c"),
    }
    page = re.sub(r"\$(title|outputs)", lambda match: values[match.group(1)], PAGE_TEMPLATE)
    return page.encode("utf-8")
