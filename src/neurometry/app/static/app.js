// neurometry dashboard: a hash-routed page that draws the JSON API of `neurometry serve` as tables and SVG.
// Everything read from the store is inserted as text (esc / textContent), never as markup.
"use strict";

const page = document.getElementById("page");
const tooltip = document.getElementById("tooltip");
const SVG = "http://www.w3.org/2000/svg";

// -- helpers ---------------------------------------------------------------------------------------
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return esc(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
  return Number(value.toPrecision(digits)).toString();
}
async function api(path, options) {
  const response = await fetch(path, options);
  let body;
  try { body = await response.json(); } catch { body = { error: `the server answered ${response.status}` }; }
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}
function showError(error) {
  page.innerHTML = `<p class="error">${esc(error.message || error)}</p>`;
}
function table(columns, rows, options = {}) {
  const left = options.left ?? 1, raw = options.raw || [];  // raw columns hold markup made here, left-aligned
  const head = columns.map((c, i) => `<th class="${i < left || raw.includes(i) ? "l" : ""}">${esc(c)}</th>`).join("");
  const body = rows.map((r, k) => {
    const link = options.links ? ` class="link" data-href="${esc(options.links[k])}"` : "";
    return `<tr${link}>` + r.map((v, i) => raw.includes(i) ? `<td class="l">${v}</td>` : `<td class="${i < left ? "l" : ""}">${fmt(v)}</td>`).join("") + "</tr>";
  }).join("");
  return `<div class="scroll"><table><tr>${head}</tr>${body}</table></div>`;
}
function wireLinks(root = page) {
  root.querySelectorAll("tr.link").forEach((tr) => tr.addEventListener("click", () => { location.hash = tr.dataset.href; }));
}
function pager(listing, go) {
  const div = document.createElement("div");
  div.className = "pager controls";
  div.innerHTML = `<button data-p="${listing.page - 1}" ${listing.page <= 1 ? "disabled" : ""}>‹ previous</button>
    <span>page ${listing.page} of ${listing.pages} (${listing.total} in all)</span>
    <button data-p="${listing.page + 1}" ${listing.page >= listing.pages ? "disabled" : ""}>next ›</button>`;
  div.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => go(Number(b.dataset.p))));
  return div;
}
function hashParams() {
  const [path, query] = location.hash.slice(1).split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || "") };
}
function setQuery(base, values) {
  const query = new URLSearchParams(values);
  for (const [k, v] of [...query.entries()]) if (v === "" || v === "1" && k === "page") query.delete(k);
  location.hash = base + (query.toString() ? `?${query}` : "");
}
function context(example, peak) {
  const strength = peak > 0 ? Math.min(1, Math.max(0, example.activation / peak)) : 0;
  const style = `background:rgba(230,120,20,${(0.15 + 0.75 * strength).toFixed(2)})`;
  if (example.text !== undefined) {
    return `<span class="ctx"><span class="tok" style="${style}" title="${fmt(example.activation)}">${esc(example.text)}</span></span>`;
  }
  return `<span class="ctx">${esc(example.left)}<span class="tok" style="${style}" title="${fmt(example.activation)}">${esc(example.token)}</span>${esc(example.right)}</span>`;
}

// -- SVG charts ------------------------------------------------------------------------------------
// An SVG element (svg, line, text, ...): made in the SVG namespace, so it draws.
function el(tag, attrs = {}, parent = null) {
  return attach(document.createElementNS(SVG, tag), attrs, parent);
}
// An HTML element (section, div, ...): an HTML tag made in the SVG namespace is never rendered.
function htmlEl(tag, attrs = {}, parent = null) {
  return attach(document.createElement(tag), attrs, parent);
}
function attach(node, attrs, parent) {
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function showTip(event, text) {
  tooltip.textContent = text;
  tooltip.hidden = false;
  tooltip.style.left = `${event.clientX + 12}px`;
  tooltip.style.top = `${event.clientY + 12}px`;
}
function hideTip() { tooltip.hidden = true; }
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
function extent(values) {
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  return [lo, hi];
}
// Round tick values (steps of 1, 2 or 5 times a power of ten) within [lo, hi], about five of them.
function niceTicks(lo, hi) {
  const raw = (hi - lo) / 5, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= 0.75 * raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}
function wrap(svg, title) {
  const div = document.createElement("div");
  div.className = "chart";
  if (title) div.innerHTML = `<div><b>${esc(title)}</b></div>`;
  div.appendChild(svg);
  return div;
}

// One or more series over categorical x (points in depth order), with optional bands and a baseline; a series
// with `dashed` is a grey reference line without dots or legend entry.
function lineChart({ labels, series, baseline = null, yLabel = "", xLabel = "", width = 520, height = 260, title = "" }) {
  const m = { l: 52, r: 36, t: 10, b: xLabel ? 70 : 58 };
  const svg = el("svg", { width, height, class: "plot line" });
  const all = series.flatMap((s) => [...s.y, ...(s.lo || []), ...(s.hi || [])]).concat(baseline === null ? [] : [baseline]);
  const [lo, hi] = extent(all);
  const x = (i) => m.l + (labels.length === 1 ? 0.5 : i / (labels.length - 1)) * (width - m.l - m.r);
  const y = (v) => m.t + (1 - (v - lo) / (hi - lo)) * (height - m.t - m.b);
  el("line", { x1: m.l, x2: m.l, y1: m.t, y2: height - m.b, stroke: "#888" }, svg);
  el("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, stroke: "#888" }, svg);
  for (const v of niceTicks(lo, hi)) {
    el("line", { x1: m.l, x2: width - m.r, y1: y(v), y2: y(v), stroke: "#eee" }, svg);
    el("text", { x: m.l - 4, y: y(v) + 3, "text-anchor": "end" }, svg).textContent = fmt(v, 3);
  }
  const step = Math.max(1, Math.ceil(labels.length / 16));
  labels.forEach((label, i) => {
    if (i % step) return;
    el("text", { x: x(i), y: height - m.b + 12, transform: `rotate(40 ${x(i)} ${height - m.b + 12})` }, svg).textContent = label;
  });
  if (xLabel) el("text", { x: m.l + (width - m.l - m.r) / 2, y: height - 4, "text-anchor": "middle", class: "x-label" }, svg).textContent = xLabel;
  if (yLabel) el("text", { x: 12, y: m.t + (height - m.t - m.b) / 2, transform: `rotate(-90 12 ${m.t + (height - m.t - m.b) / 2})`, "text-anchor": "middle" }, svg).textContent = yLabel;
  if (baseline !== null) {
    el("line", { x1: m.l, x2: width - m.r, y1: y(baseline), y2: y(baseline), stroke: "#777", "stroke-dasharray": "4 3" }, svg);
  }
  series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length];
    if (s.lo && s.hi) {
      const up = s.hi.map((v, i) => v === null ? null : `${x(i)},${y(v)}`).filter(Boolean);
      const down = s.lo.map((v, i) => v === null ? null : `${x(i)},${y(v)}`).filter(Boolean).reverse();
      if (up.length) el("polygon", { points: up.concat(down).join(" "), fill: color, opacity: 0.18 }, svg);
    }
    const pts = s.y.map((v, i) => v === null ? null : `${x(i)},${y(v)}`).filter(Boolean);
    if (s.dashed) {  // a reference line (chance): grey, dashed, no dots
      if (pts.length) el("polyline", { points: pts.join(" "), fill: "none", stroke: "#777", "stroke-dasharray": "4 3", class: "reference" }, svg);
      return;
    }
    if (pts.length) el("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.8 }, svg);
    s.y.forEach((v, i) => {
      if (v === null) return;
      const dot = el("circle", { cx: x(i), cy: y(v), r: 3, fill: color }, svg);
      dot.addEventListener("mousemove", (e) => showTip(e, `${s.name ? s.name + "\n" : ""}${labels[i]}: ${fmt(v)}`
        + (s.lo && s.lo[i] !== null ? `\ninterval ${fmt(s.lo[i])} … ${fmt(s.hi[i])}` : "")));
      dot.addEventListener("mouseleave", hideTip);
    });
  });
  if (series.length > 1) {
    series.forEach((s, k) => {
      if (s.dashed) return;  // named in the page's note
      el("rect", { x: width - m.r - 150, y: m.t + 4 + 13 * k, width: 9, height: 9, fill: PALETTE[k % PALETTE.length] }, svg);
      el("text", { x: width - m.r - 137, y: m.t + 12 + 13 * k }, svg).textContent = s.name;
    });
  }
  return wrap(svg, title);
}

// A matrix as coloured cells with hover values; onClick(i, j) when a cell is clicked.
function heatmap({ rows, cols, values, tip, onClick, title = "", cell = 0, labelEvery = 1 }) {
  const size = cell || Math.max(8, Math.min(36, Math.floor(460 / Math.max(rows.length, cols.length))));
  const m = { l: 90, t: 10, r: 70, b: 80 };
  const width = m.l + size * cols.length + m.r, height = m.t + size * rows.length + m.b;
  const svg = el("svg", { width, height, class: "plot heatmap" });
  const [lo, hi] = extent(values.flat());
  rows.forEach((r, i) => {
    el("text", { x: m.l - 4, y: m.t + size * i + size / 2 + 3, "text-anchor": "end" }, svg).textContent = r;
    cols.forEach((c, j) => {
      const v = values[i][j];
      const rect = el("rect", { class: "cell", x: m.l + size * j, y: m.t + size * i, width: size, height: size,
        fill: v === null ? "#ddd" : viridis((v - lo) / (hi - lo)), "data-i": i, "data-j": j }, svg);
      rect.addEventListener("mousemove", (e) => showTip(e, tip(i, j)));
      rect.addEventListener("mouseleave", hideTip);
      if (onClick) rect.addEventListener("click", () => onClick(i, j));
    });
  });
  cols.forEach((c, j) => {
    if (j % labelEvery && j !== cols.length - 1) return;
    const cx = m.l + size * j + size / 2, cy = m.t + size * rows.length + 6;
    el("text", { x: cx, y: cy, transform: `rotate(50 ${cx} ${cy})` }, svg).textContent = c;
  });
  const barX = m.l + size * cols.length + 14, barH = size * rows.length;
  for (let k = 0; k < 32; k++) {
    el("rect", { x: barX, y: m.t + barH * (1 - (k + 1) / 32), width: 10, height: barH / 32 + 0.5, fill: viridis(k / 31) }, svg);
  }
  el("text", { x: barX + 14, y: m.t + 8 }, svg).textContent = fmt(hi, 3);
  el("text", { x: barX + 14, y: m.t + barH }, svg).textContent = fmt(lo, 3);
  return wrap(svg, title);
}

// Curves over training steps: numeric x (symlog when the steps span two decades or more), optional log y,
// over the shaded phases (each a rect.phase; the first step of every later phase a dashed line.boundary).
const PHASE_COLOURS = ["#dbe9f6", "#fde3c8", "#dcefd9", "#f3d9e8", "#e9e4f4", "#f6f2c9"];
function stepChart({ series, phases = [], logY = false, yLabel = "", width = 600, height = 280, title = "" }) {
  const m = { l: 56, r: 16, t: 10, b: 40 };
  const svg = el("svg", { width, height, class: "plot steps" });
  const xs = series.flatMap((s) => s.x).concat(phases.flatMap((p) => [p.start_step, p.end_step]));
  const positive = xs.filter((v) => v > 0);
  const small = positive.length ? Math.min(...positive) : 1;
  const symlog = positive.length > 0 && Math.max(...positive) / small >= 100;
  const lin = Math.max(small, 1);
  const tx = (v) => symlog ? Math.sign(v) * Math.log10(1 + Math.abs(v) / lin) : v;
  const [x0, x1] = extent(xs.map(tx));
  const usable = (v) => v !== null && Number.isFinite(v) && (!logY || v > 0);
  const ty = (v) => logY ? Math.log10(v) : v;
  const [y0, y1] = extent(series.flatMap((s) => s.y).filter(usable).map(ty));
  const X = (v) => m.l + ((tx(v) - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (v) => m.t + (1 - (ty(v) - y0) / (y1 - y0)) * (height - m.t - m.b);
  phases.forEach((p, i) => {
    const end = i + 1 < phases.length ? phases[i + 1].start_step : p.end_step;
    const rect = el("rect", { class: "phase", x: X(p.start_step), y: m.t, width: Math.max(2, X(end) - X(p.start_step)),
      height: height - m.t - m.b, fill: PHASE_COLOURS[i % PHASE_COLOURS.length], "data-start": p.start_step, "data-end": p.end_step }, svg);
    rect.addEventListener("mousemove", (e) => showTip(e, `phase ${i + 1}: steps ${fmt(p.start_step)} … ${fmt(p.end_step)}\n${p.n_points} checkpoints, mean ${fmt(p.mean)}`));
    rect.addEventListener("mouseleave", hideTip);
  });
  phases.slice(1).forEach((p) => {
    el("line", { class: "boundary", x1: X(p.start_step), x2: X(p.start_step), y1: m.t, y2: height - m.b, stroke: "#555",
      "stroke-dasharray": "4 3", "data-step": p.start_step }, svg);
  });
  el("line", { x1: m.l, x2: m.l, y1: m.t, y2: height - m.b, stroke: "#888" }, svg);
  el("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, stroke: "#888" }, svg);
  let yTicks = niceTicks(y0, y1);
  if (logY) {
    const decades = [];
    for (let k = Math.ceil(y0); k <= Math.floor(y1); k++) decades.push(10 ** k);
    yTicks = decades.length >= 2 ? decades : niceTicks(10 ** y0, 10 ** y1).filter((v) => v > 0);
  }
  for (const v of yTicks) {
    if (ty(v) < y0 - 1e-9 || ty(v) > y1 + 1e-9) continue;
    el("line", { x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v), stroke: "#eee" }, svg);
    el("text", { x: m.l - 4, y: Y(v) + 3, "text-anchor": "end" }, svg).textContent = fmt(v, 3);
  }
  let xTicks = niceTicks(x0, x1).filter((v) => Number.isInteger(v) || x1 - x0 < 5);
  if (symlog) {
    xTicks = xs.some((v) => v <= 0) ? [0] : [];
    for (let k = Math.ceil(Math.log10(small)); 10 ** k <= Math.max(...positive); k++) xTicks.push(10 ** k);
  }
  for (const v of xTicks) el("text", { x: X(v), y: height - m.b + 13, "text-anchor": "middle" }, svg).textContent = fmt(v, 3);
  el("text", { x: m.l + (width - m.l - m.r) / 2, y: height - 6, "text-anchor": "middle" }, svg).textContent = symlog ? "step (symlog)" : "step";
  if (yLabel) el("text", { x: 12, y: m.t + (height - m.t - m.b) / 2, transform: `rotate(-90 12 ${m.t + (height - m.t - m.b) / 2})`, "text-anchor": "middle" }, svg).textContent = yLabel;
  series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length];
    const pts = s.x.map((x, i) => usable(s.y[i]) ? `${X(x)},${Y(s.y[i])}` : null).filter(Boolean);
    if (pts.length) el("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.8 }, svg);
    s.x.forEach((x, i) => {
      if (!usable(s.y[i])) return;
      const dot = el("circle", { cx: X(x), cy: Y(s.y[i]), r: 2.5, fill: color }, svg);
      dot.addEventListener("mousemove", (e) => showTip(e, `${s.name}\nstep ${fmt(x)}: ${fmt(s.y[i])}`));
      dot.addEventListener("mouseleave", hideTip);
    });
    el("rect", { x: width - m.r - 150, y: m.t + 4 + 13 * k, width: 9, height: 9, fill: color }, svg);
    el("text", { x: width - m.r - 137, y: m.t + 12 + 13 * k }, svg).textContent = s.name;
  });
  return wrap(svg, title);
}

function histogram({ counts, edges, xLabel = "", width = 520, height = 200, title = "" }) {
  const m = { l: 40, r: 10, t: 10, b: 34 };
  const svg = el("svg", { width, height, class: "plot histogram" });
  const top = Math.max(1, ...counts);
  const w = (width - m.l - m.r) / counts.length;
  counts.forEach((c, k) => {
    const h = (c / top) * (height - m.t - m.b);
    const bar = el("rect", { x: m.l + k * w, y: height - m.b - h, width: Math.max(1, w - 1), height: h, fill: "#d0781f" }, svg);
    bar.addEventListener("mousemove", (e) => showTip(e, `${fmt(edges[k], 3)} … ${fmt(edges[k + 1], 3)}: ${c}`));
    bar.addEventListener("mouseleave", hideTip);
  });
  el("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, stroke: "#888" }, svg);
  [0, Math.floor(counts.length / 2), counts.length].forEach((k) => {
    el("text", { x: m.l + k * w, y: height - m.b + 12, "text-anchor": "middle" }, svg).textContent = fmt(edges[k], 3);
  });
  el("text", { x: m.l - 4, y: m.t + 8, "text-anchor": "end" }, svg).textContent = String(top);
  el("text", { x: m.l + (width - m.l - m.r) / 2, y: height - 4, "text-anchor": "middle" }, svg).textContent = xLabel;
  return wrap(svg, title);
}

// -- pages -----------------------------------------------------------------------------------------
let summaryCache = null;
async function summary() {
  summaryCache = summaryCache || await api("/api/summary");
  return summaryCache;
}

async function runsPage() {
  summaryCache = null;  // a record may have committed more rows since
  const s = await summary();
  page.innerHTML = `<h1>Runs</h1>`;
  if (!s.runs.length) { page.innerHTML += `<p class="note">This store holds no runs yet: record one with <code>neurometry record</code>.</p>`; return; }
  const runs = s.runs.filter((r) => r.series === null);  // a series' checkpoints are listed over training
  page.innerHTML += runs.length ? table(["run", "model", "reduce", "dtype", "points", "inputs", "rows", "status"],
    runs.map((r) => [r.run, r.model, r.reduce, r.dtype, r.points, `${r.committed_inputs} / ${r.inputs}`, `${r.committed_rows} / ${r.rows}`, r.status]),
    { links: runs.map((r) => `#/run/${encodeURIComponent(r.run)}`) }) : `<p class="note">Every run of this store is a checkpoint of a series.</p>`;
  if (s.series.length) {
    page.innerHTML += `<h2>Series</h2><p class="note">runs ordered by training step, one per checkpoint: click a series for its curves over training</p>`
      + table(["series", "model", "checkpoints", "complete", "steps"], s.series.map((x) => [x.series, x.model, x.checkpoints, x.complete, `${x.first_step} … ${x.last_step}`]),
        { links: s.series.map((x) => `#/training/${encodeURIComponent(x.series)}`) });
  }
  const kinds = Object.entries(s.results);
  page.innerHTML += `<h2>Results in the catalog</h2>` + (kinds.length
    ? table(["kind", "records"], kinds, { links: kinds.map(([k]) => ({ compare: "#/comparisons", probe: "#/probes", encode: "#/probes", sae_features: "#/features", steer_sweep: "#/steer", measure: "#/", training: "#/training", phases: "#/training", lab: "#/training", fixed_point_search: "#/dynamics", lyapunov: "#/dynamics", reading_fit: "#/reading", truth_probe: "#/detect", truth_transfer: "#/detect" }[k] || `#/results/${encodeURIComponent(k)}`)) })
    : `<p class="note">No results yet: run <code>neurometry measure</code>, <code>compare</code>, <code>probe</code> or <code>sae</code> on this store.</p>`);
  wireLinks();
}

async function runPage(run) {
  const data = await api(`/api/runs/${encodeURIComponent(run)}/points`);
  page.innerHTML = `<h1>Run ${esc(run)}</h1><p class="note">points in depth order; click a point with one feature axis for its neurons</p>`;
  if (data.measures.length) {
    page.insertAdjacentHTML("beforeend", `<h2>Measures against depth</h2><div class="charts" id="measure-charts"></div>`);
    const charts = document.getElementById("measure-charts");
    const labels = data.points.map((p) => p.point);
    data.measures.forEach((name, k) => {
      const y = data.points.map((p) => p.values[k]);
      if (y.some((v) => v !== null)) charts.appendChild(lineChart({ labels, series: [{ name, y }], xLabel: "point", width: 360, height: 220, title: name }));
    });
  }
  page.insertAdjacentHTML("beforeend", "<h2>Points</h2>" + table(["point", "module", "kind", "shape", "dtype", "rows", ...data.measures],
    data.points.map((p) => [p.point, p.module, p.kind, p.shape.join(" x "), p.dtype, p.rows, ...p.values]),
    { left: 5, links: data.points.map((p) => p.shape.length === 1 ? `#/neurons/${encodeURIComponent(run)}/${encodeURIComponent(p.point)}` : "") }));
  page.querySelectorAll('tr.link[data-href=""]').forEach((tr) => tr.classList.remove("link"));
  wireLinks();
}

async function comparisonsPage() {
  const list = await api("/api/comparisons");
  page.innerHTML = `<h1>Comparisons</h1>`;
  if (!list.length) { page.innerHTML += `<p class="note">No comparisons saved: run <code>neurometry compare</code> on this store.</p>`; return; }
  for (const c of list) {
    const section = document.createElement("section");
    section.innerHTML = `<h2>${esc(c.metric)}: run ${esc(c.run)} against ${esc(c.against)}</h2>
      <p class="note">${esc(Object.entries(c.params).filter(([k]) => k !== "source_b").map(([k, v]) => `${k}=${v}`).join(", "))}</p>`;
    const tip = (i, j) => `${c.points_a[i]} × ${c.points_b[j]}\n${c.metric} = ${fmt(c.values[i][j])}`
      + (c.ci_low[i][j] !== null ? `\ninterval ${fmt(c.ci_low[i][j])} … ${fmt(c.ci_high[i][j])}` : "")
      + (c.p_value[i][j] !== null ? `\np = ${fmt(c.p_value[i][j], 3)}` : "");
    const detail = document.createElement("p");
    detail.className = "note detail";
    detail.textContent = "click a cell for its numbers";
    if (c.points_a.length > 1 && c.points_b.length > 1 && c.points_b.length >= c.points_a.length / 4) {
      section.appendChild(heatmap({ rows: c.points_a, cols: c.points_b, values: c.values, tip,
        onClick: (i, j) => { detail.textContent = tip(i, j).replace(/\n/g, " · "); } }));
    } else {
      const series = c.points_b.map((b, j) => ({ name: b, y: c.values.map((row) => row[j]),
        lo: c.ci_low.map((row) => row[j]), hi: c.ci_high.map((row) => row[j]) }));
      section.appendChild(lineChart({ labels: c.points_a, series, yLabel: c.metric, xLabel: "point (run A)", width: 640 }));
    }
    if (section.querySelector("svg.heatmap")) section.appendChild(detail);
    page.appendChild(section);
  }
}

async function probesPage() {
  const [list, encodings] = await Promise.all([api("/api/probes"), api("/api/encodings")]);
  page.innerHTML = `<h1>Probes</h1><p class="note">held-out score by point, with the fold interval; dashed: chance baseline</p><div class="charts" id="probe-charts"></div>`;
  if (!list.length && !encodings.length) { page.innerHTML += `<p class="note">No probes saved: run <code>neurometry probe</code> or <code>encode</code> on this store.</p>`; return; }
  const charts = document.getElementById("probe-charts");
  for (const p of list) {
    charts.appendChild(lineChart({ labels: p.points, series: [{ name: p.label, y: p.scores, lo: p.ci_low, hi: p.ci_high }],
      baseline: p.baseline, yLabel: p.kind === "logistic" ? "accuracy" : "score", xLabel: "point", width: 380, height: 240,
      title: `${p.label} · run ${p.run}` }));
  }
  if (encodings.length) {
    page.insertAdjacentHTML("beforeend", `<h2>Encoding models</h2><p class="note">held-out correlation of predicted and measured targets, mean and median over targets</p><div class="charts" id="encode-charts"></div>`);
    const box = document.getElementById("encode-charts");
    for (const e of encodings) {
      box.appendChild(lineChart({ labels: e.points, series: [{ name: "mean r", y: e.mean_r }, { name: "median r", y: e.median_r }],
        yLabel: "r", xLabel: "point", width: 420, height: 240, title: `run ${e.run} → ${e.n_targets} targets` }));
    }
  }
}

async function neuronsPage(run, point, query) {
  const s = await summary();
  page.innerHTML = `<h1>Neurons</h1><div class="controls">
    <label>run <select id="run">${s.runs.map((r) => `<option ${r.run === run ? "selected" : ""}>${esc(r.run)}</option>`).join("")}</select></label>
    <label>point <select id="point"></select></label>
    <input type="search" id="q" placeholder="unit number or token (e.g. fog)" value="${esc(query.get("q") || "")}">
    <label>sort <select id="sort">${["max", "mean", "std", "active", "unit"].map((k) => `<option ${k === (query.get("sort") || "max") ? "selected" : ""}>${k}</option>`).join("")}</select></label>
    </div><div id="neuron-list"><p class="note">choose a run and a point</p></div>`;
  const runSelect = document.getElementById("run"), pointSelect = document.getElementById("point");
  run = run || s.runs[0]?.run;
  if (!run) return;
  runSelect.value = run;
  const points = (await api(`/api/runs/${encodeURIComponent(run)}/points`)).points.filter((p) => p.shape.length === 1);
  pointSelect.innerHTML = points.map((p) => `<option ${p.point === point ? "selected" : ""}>${esc(p.point)}</option>`).join("");
  point = point || points[0]?.point;
  const base = () => `/neurons/${encodeURIComponent(runSelect.value)}/${encodeURIComponent(pointSelect.value)}`;
  const go = (pageNumber = 1) => setQuery(base(), { q: document.getElementById("q").value, sort: document.getElementById("sort").value, page: pageNumber });
  runSelect.addEventListener("change", () => { location.hash = `/neurons/${encodeURIComponent(runSelect.value)}`; });
  pointSelect.addEventListener("change", () => go());
  document.getElementById("sort").addEventListener("change", () => go());
  document.getElementById("q").addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  if (!point) { document.getElementById("neuron-list").innerHTML = `<p class="note">run ${esc(run)} has no point with one feature axis</p>`; return; }
  document.getElementById("neuron-list").innerHTML = `<p class="note">computing per-unit statistics (one pass over the rows)…</p>`;
  const listing = await api(`/api/neurons/${encodeURIComponent(run)}/${encodeURIComponent(point)}?` + new URLSearchParams({
    q: query.get("q") || "", sort: query.get("sort") || "max", page: query.get("page") || "1" }));
  const box = document.getElementById("neuron-list");
  box.innerHTML = `<p class="note">${listing.units} units over ${listing.rows} committed rows; top: where each unit is most active</p>`
    + table(["unit", "max", "mean", "std", "min", "active", "top"],
      listing.items.map((u) => [u.unit, u.max, u.mean, u.std, u.min, u.active, u.top.map((t) => `<span class="pill">${esc(t)}</span>`).join("")]),
      { raw: [6], links: listing.items.map((u) => `${base()}/${u.unit}`) });
  if (!listing.items.length) box.innerHTML += `<p class="note">no unit matches “${esc(query.get("q"))}”</p>`;
  box.appendChild(pager(listing, go));
  wireLinks(box);
}

async function neuronPage(run, point, unit) {
  const n = await api(`/api/neurons/${encodeURIComponent(run)}/${encodeURIComponent(point)}/${encodeURIComponent(unit)}`);
  page.innerHTML = `<h1>Unit ${n.unit} of ${esc(point)} <span class="note">run ${esc(run)}</span></h1>`
    + table(["rows", "max", "mean", "std", "min", "active"], [[n.rows, n.max, n.mean, n.std, n.min, n.active]], { left: 0 })
    + `<h2>Most active rows</h2>`
    + table(["row", "activation", "context"], n.examples.map((e) => [e.row, e.activation, context(e, n.max)]), { left: 0, raw: [2] });
}

async function featuresPage(sae, query) {
  const sets = await api("/api/features");
  page.innerHTML = `<h1>SAE features</h1>`;
  if (!sets.length) { page.innerHTML += `<p class="note">No feature examples saved: run <code>neurometry sae features SAE STORE</code>.</p>`; return; }
  sae = sae || sets[0].sae;
  const set = sets.find((x) => x.sae === sae);
  if (!set) throw new Error(`no feature examples of SAE ${sae}`);
  page.innerHTML += `<div class="controls"><label>SAE <select id="sae">${sets.map((x) => `<option ${x.sae === sae ? "selected" : ""}>${esc(x.sae)}</option>`).join("")}</select></label>
    <span class="note">point ${esc(set.point)} · run ${esc(set.run)} · ${set.latents} latents · ${set.dead} dead · ${set.dense} dense (&gt; 10% of rows)</span></div>`;
  page.appendChild(histogram({ ...set.histogram, xLabel: "log10 activation frequency", title: "latents by frequency" }));
  page.insertAdjacentHTML("beforeend", `<div class="controls"><input type="search" id="q" placeholder="latent number or token" value="${esc(query.get("q") || "")}">
    <label>sort <select id="sort">${["frequency", "max", "latent"].map((k) => `<option ${k === (query.get("sort") || "frequency") ? "selected" : ""}>${k}</option>`).join("")}</select></label></div><div id="feature-list"></div>`);
  const base = `/features/${encodeURIComponent(sae)}`;
  const go = (pageNumber = 1) => setQuery(base, { q: document.getElementById("q").value, sort: document.getElementById("sort").value, page: pageNumber });
  document.getElementById("sae").addEventListener("change", (e) => { location.hash = `/features/${encodeURIComponent(e.target.value)}`; });
  document.getElementById("sort").addEventListener("change", () => go());
  document.getElementById("q").addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  const listing = await api(`/api/features/${encodeURIComponent(sae)}?` + new URLSearchParams({
    q: query.get("q") || "", sort: query.get("sort") || "frequency", page: query.get("page") || "1" }));
  const box = document.getElementById("feature-list");
  box.innerHTML = table(["latent", "frequency", "max", "mean", "fires on", "promotes"],
    listing.items.map((f) => [f.latent, f.frequency, f.max, f.mean, f.top_tokens.map((t) => `<span class="pill">${esc(t)}</span>`).join(""),
      f.promoted.map((t) => `<span class="pill">${esc(t)}</span>`).join("")]),
    { raw: [4, 5], links: listing.items.map((f) => `${base}/${f.latent}`) });
  if (!listing.items.length) box.innerHTML += `<p class="note">no latent matches “${esc(query.get("q"))}”</p>`;
  box.appendChild(pager(listing, go));
  wireLinks(box);
}

async function featurePage(sae, latent) {
  const f = await api(`/api/features/${encodeURIComponent(sae)}/${encodeURIComponent(latent)}`);
  const tokens = (list) => list.length ? list.map(([t, v]) => `<span class="pill" title="${fmt(v)}">${esc(t)}</span>`).join("") : `<span class="note">not computed (save features with --model for the logit lens)</span>`;
  page.innerHTML = `<h1>Latent ${f.latent} of ${esc(sae)} <span class="note">${esc(f.point)} · run ${esc(f.run)}</span></h1>`
    + table(["frequency", "max", "mean"], [[f.frequency, f.max, f.mean]], { left: 0 })
    + `<h2>Promotes</h2><p>${tokens(f.promoted)}</p><h2>Suppresses</h2><p>${tokens(f.suppressed)}</p>`
    + `<h2>Top activations</h2>` + table(["row", "activation", "context"], f.top.map((c) => [c.row, c.activation, context(c, f.max)]), { left: 0, raw: [2] })
    + f.quantiles.map((q) => `<h3>quantiles ${fmt(q.quantile[0], 2)}–${fmt(q.quantile[1], 2)} of its other non-zero activations</h3>`
      + table(["row", "activation", "context"], q.examples.map((c) => [c.row, c.activation, context(c, f.max)]), { left: 0, raw: [2] })).join("");
}

function phasesTitle(p) {
  return `phases of ${p.curve}${p.point ? ` at ${p.point}` : ""}`;
}

function findingText(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return fmt(value);
  if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) return value.map(findingText).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function trainingPage(name) {
  const list = await api("/api/series");
  page.innerHTML = `<h1>Over training</h1>`;
  if (!list.length) {
    page.innerHTML += `<p class="note">No series in this store: record checkpoints with <code>neurometry record --checkpoints</code>, a training loop with the live <code>Recorder</code>, or run <code>neurometry lab</code>.</p>`;
    return;
  }
  name = name || list[0].series;
  page.innerHTML += table(["series", "model", "checkpoints", "complete", "steps"],
    list.map((x) => [x.series, x.model, x.checkpoints, x.complete, `${x.first_step} … ${x.last_step}`]),
    { links: list.map((x) => `#/training/${encodeURIComponent(x.series)}`) });
  wireLinks();
  const o = await api(`/api/series/${encodeURIComponent(name)}`);
  const box = document.createElement("section");
  box.id = "series";
  box.dataset.series = o.series;
  box.innerHTML = `<h2>Series ${esc(o.series)}</h2><p class="note">${o.steps.length} checkpoints of ${esc(o.model)}, points ${esc(o.points.join(", "))};
    steps <span id="series-steps">${esc(o.steps.map((s) => s.step).join(", "))}</span></p>`;
  page.appendChild(box);
  const metrics = Object.keys(o.training.metrics);
  const shaded = o.phases.find((p) => p.point === null && metrics.includes(p.curve)) || null;
  if (metrics.length) {
    box.insertAdjacentHTML("beforeend", `<h3>Training metrics</h3>`);
    const losses = metrics.filter((k) => k.includes("loss")), others = metrics.filter((k) => !k.includes("loss"));
    const groups = losses.length && others.length ? [["losses", losses], ["other metrics", others]] : [["training metrics", metrics]];
    const charts = document.createElement("div");
    charts.className = "charts";
    charts.id = "training-charts";
    for (const [label, keys] of groups) {
      const values = keys.flatMap((k) => o.training.metrics[k]).filter((v) => v !== null);
      const logY = keys.every((k) => k.includes("loss")) && values.length > 0 && Math.min(...values) > 0;
      charts.appendChild(stepChart({ series: keys.map((k) => ({ name: k, x: o.training.steps, y: o.training.metrics[k] })),
        phases: shaded ? shaded.phases : [], logY, yLabel: logY ? `${label} (log)` : label,
        title: label + (shaded ? ` · ${phasesTitle(shaded)}` : "") }));
    }
    box.appendChild(charts);
  }
  if (o.phases.length) {
    box.insertAdjacentHTML("beforeend", `<h3>Phases</h3><p class="note">change points found by <code>neurometry phases</code> (or a lab); hover a phase for its range and mean</p>`);
    for (const p of o.phases) {
      const div = document.createElement("div");
      div.className = "phases";
      div.dataset.curve = p.curve;
      div.innerHTML = `<h4>${esc(phasesTitle(p))}</h4><p class="note">${esc(p.method)}, transform ${esc(p.transform)}${p.penalty !== null ? `, penalty ${fmt(p.penalty)}` : ""};
        <span class="boundaries">${p.boundaries.length ? `boundar${p.boundaries.length > 1 ? "ies at steps" : "y at step"} ${esc(p.boundaries.map((b) => fmt(b)).join(", "))}` : "no boundary: one phase"}</span></p>`;
      if (p !== shaded) {
        const charts = document.createElement("div");
        charts.className = "charts";
        charts.appendChild(stepChart({ series: [{ name: p.curve + (p.point ? ` at ${p.point}` : ""), x: p.steps, y: p.values }],
          phases: p.phases, logY: p.transform === "log", title: phasesTitle(p) }));
        div.appendChild(charts);
      }
      div.insertAdjacentHTML("beforeend", table(["phase", "steps", "checkpoints", "mean"],
        p.phases.map((q, i) => [String(i + 1), `${fmt(q.start_step)} … ${fmt(q.end_step)}`, q.n_points, q.mean]), { left: 2 }));
      box.appendChild(div);
    }
  }
  if (o.measures.length) {
    box.insertAdjacentHTML("beforeend", `<h3>Measures over training</h3><p class="note">step × depth, one map per measure; hover a cell for its value</p>`);
    const charts = document.createElement("div");
    charts.className = "charts";
    charts.id = "measure-maps";
    for (const m of o.measures) {
      const cols = m.steps.map(String);
      const size = Math.max(6, Math.min(36, Math.floor(640 / Math.max(cols.length, 1))));
      const title = m.measure + (m.label ? ` (label ${m.label})` : "");
      const rows = [...m.points].reverse(), values = [...m.values].reverse();  // the deepest point on top
      const map = heatmap({ rows, cols, values, cell: size, labelEvery: Math.ceil(14 / size), title,
        tip: (i, j) => `${rows[i]} at step ${cols[j]}\n${m.measure} = ${fmt(values[i][j])}` });
      map.dataset.measure = m.measure;
      charts.appendChild(map);
    }
    box.appendChild(charts);
  }
  if (o.similarity.length) {
    box.insertAdjacentHTML("beforeend", `<h3>Similarity with the reference step</h3>`);
    const charts = document.createElement("div");
    charts.className = "charts";
    charts.id = "similarity-charts";
    for (const c of o.similarity) {
      charts.appendChild(stepChart({ series: c.points.map((p, i) => ({ name: p, x: c.steps, y: c.values[i] })),
        yLabel: `${c.metric} with step ${c.reference_step}`, title: `${c.metric} of each step with step ${c.reference_step}` }));
    }
    box.appendChild(charts);
  }
  for (const lab of o.labs) {
    const settings = Object.entries(lab.params).filter(([k, v]) => k !== "lab" && v !== null).map(([k, v]) => `${k} ${v}`).join(", ");
    box.insertAdjacentHTML("beforeend", `<h3>Lab ${esc(lab.lab)}: findings</h3><p class="note">${esc(settings)}${lab.seconds !== null ? `, trained in ${fmt(lab.seconds, 2)} s` : ""}</p>`
      + `<div class="findings">` + table(["finding", "value"], Object.entries(lab.findings).map(([k, v]) => [k, findingText(v)]), { left: 2 }) + `</div>`);
  }
  if (!metrics.length && !o.phases.length && !o.measures.length && !o.similarity.length && !o.labs.length) {
    box.insertAdjacentHTML("beforeend", `<p class="note">Nothing saved about this series yet: run <code>neurometry measure STORE --series ${esc(o.series)}</code> or <code>compare STORE --series ${esc(o.series)} --metric cka</code>.</p>`);
  }
  box.insertAdjacentHTML("beforeend", `<h3>Checkpoints</h3>` + table(["step", "run", "source", "complete", ...metrics],
    o.steps.map((s) => { const i = o.training.steps.indexOf(s.step); return [s.step, s.run, s.source, s.complete ? "yes" : "no", ...metrics.map((k) => i < 0 ? null : o.training.metrics[k][i])]; }),
    { left: 3, links: o.steps.map((s) => `#/run/${encodeURIComponent(s.run)}`) }));
  wireLinks(box);
}

async function sweepSections() {
  const list = await api("/api/sweeps");
  const box = document.createElement("div");
  if (!list.length) return box;
  box.innerHTML = `<h2>Saved sweeps</h2><p class="note">held-out pairs: shift of log p(target) − log p(opposite) against alpha; KL and perplexity on neutral text</p>`;
  for (const s of list) {
    const labels = s.rows.map((r) => String(r.alpha));
    const charts = document.createElement("div");
    charts.className = "charts";
    charts.appendChild(lineChart({ labels, series: [{ name: "target shift", y: s.rows.map((r) => r.shift) }], baseline: 0,
      yLabel: "log-prob shift", xLabel: "alpha", width: 360, height: 220, title: `${s.vector} at ${s.point} · ${s.model}` }));
    charts.appendChild(lineChart({ labels, series: [{ name: "KL", y: s.rows.map((r) => r.kl) }], yLabel: "KL (neutral)", xLabel: "alpha", width: 300, height: 220, title: "KL on neutral text" }));
    box.appendChild(charts);
    box.insertAdjacentHTML("beforeend", table(["alpha", "target shift", "KL", "perplexity"], s.rows.map((r) => [r.alpha, r.shift, r.kl, r.perplexity]), { left: 0 })
      + s.generations.map((g) => `<h3>alpha ${fmt(g.alpha)}</h3>` + table(["prompt", "unsteered", "steered"], g.rows.map((r) => [r.prompt, r.unsteered, r.steered]), { left: 3 })).join(""));
  }
  return box;
}

async function interventionSections() {
  const [patches, diffs] = await Promise.all([api("/api/patching"), api("/api/diffs")]);
  const box = document.createElement("div");
  for (const p of patches) {
    box.insertAdjacentHTML("beforeend", `<h2>Activation patching · ${esc(p.model)}</h2>
      <p class="note">clean “${esc(p.clean)}” → ${esc(p.correct)}; corrupted “${esc(p.corrupted)}” → ${esc(p.wrong)}.
      1: patching that point and token restores the clean answer; 0: no effect</p>`);
    const tip = (i, j) => `${p.points[i]} at ${JSON.stringify(p.tokens[j])}\nscore ${fmt(p.scores[i][j])}`;
    box.appendChild(heatmap({ rows: p.points, cols: p.tokens, values: p.scores, tip, cell: 16 }));
  }
  for (const d of diffs) {
    box.insertAdjacentHTML("beforeend", `<h2>Model diffing · ${esc(d.base)} vs ${esc(d.finetuned)}</h2>
      <p class="note">mean activation difference over the first ${d.params.first_k} positions${d.params.skip_first ? ` after the first ${d.params.skip_first}` : ""} of ${esc(d.params.texts)} texts, read through the logit lens</p>`
      + table(["point", "norm", "lens tokens"], d.points.map((p) => [p.point, p.norm,
        p.lens.map((t) => `<span class="pill" title="${fmt(t.prob)}">${esc(t.token)}</span>`).join("")]), { raw: [2] })
      + (d.generations ? `<h3>steered with the difference at ${esc(d.generations.point)}, alpha ${fmt(d.generations.alpha)}</h3>`
        + table(["prompt", "unsteered", "steered"], d.generations.generations.map((g) => [g.prompt, g.unsteered, g.steered]), { left: 3 }) : ""));
  }
  return box;
}

async function steerPage() {
  let info;
  const sweeps = await sweepSections();
  sweeps.appendChild(await interventionSections());
  try { info = await api("/api/playground"); } catch (error) {
    page.innerHTML = `<h1>Steering</h1><p class="note">${esc(error.message)}</p>`;
    page.appendChild(sweeps);
    return;
  }
  page.innerHTML = `<h1>Steering playground <span class="note">${esc(info.model)}</span></h1>
    <div class="controls">
      <label>vector <select id="vector">${info.vectors.map((v) => `<option value="${esc(v.name)}">${esc(v.name)} (${esc(v.point)}, ${esc(v.method || "")}, norm ${fmt(v.norm, 3)})</option>`).join("")}</select></label>
      <label>alpha <input id="alpha" type="number" step="0.5" value="4" style="width:5em"></label>
      <input id="alpha-range" type="range" min="-10" max="10" step="0.5" value="4">
      <label>new tokens <input id="tokens" type="number" min="1" max="100" value="30" style="width:4em"></label>
    </div>
    <textarea id="prompt" rows="3" placeholder="type a prompt">I think the new policy</textarea>
    <p><button id="generate">Generate</button> <span id="status" class="note"></span></p>
    <div class="side"><div><h3>unsteered</h3><div id="unsteered" class="gen"></div></div>
    <div><h3>steered</h3><div id="steered" class="gen"></div></div></div>`;
  page.appendChild(sweeps);
  const alpha = document.getElementById("alpha"), range = document.getElementById("alpha-range");
  alpha.addEventListener("input", () => { range.value = alpha.value; });
  range.addEventListener("input", () => { alpha.value = range.value; });
  document.getElementById("generate").addEventListener("click", async () => {
    const status = document.getElementById("status");
    status.textContent = "generating…";
    status.className = "note";
    try {
      const body = { vector: document.getElementById("vector").value, alpha: Number(alpha.value),
        prompt: document.getElementById("prompt").value, max_new_tokens: Number(document.getElementById("tokens").value) };
      const out = await api("/api/playground/generate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      for (const side of ["unsteered", "steered"]) {
        // WordPiece tokenizers decode without the space a byte-level BPE continuation carries
        const joint = /\s$/.test(out.prompt) || /^\s/.test(out[side]) || !out[side] ? "" : " ";
        const box = document.getElementById(side);
        box.innerHTML = `<span class="prompt">${esc(out.prompt + joint)}</span>`;
        box.appendChild(document.createTextNode(out[side]));
      }
      status.textContent = `alpha ${out.alpha} at ${out.point}`;
    } catch (error) {
      status.textContent = error.message;
      status.className = "error";
    }
  });
}

async function resultsPage(kind, query) {
  const listing = await api(`/api/results/${encodeURIComponent(kind)}?page=${query.get("page") || 1}`);
  page.innerHTML = `<h1>Results: ${esc(kind)}</h1>` + table(["run", "point", "name", "value", "params"],
    listing.items.map((r) => [r.run, r.point, r.name, r.value, r.params]), { left: 3 });
  page.appendChild(pager(listing, (p) => setQuery(`/results/${encodeURIComponent(kind)}`, { page: p })));
}

// -- dynamics --------------------------------------------------------------------------------------
const STABILITY_COLOURS = { stable: "#1b7837", saddle: "#e08214", unstable: "#b2182b" };

// A square scatter: grey polylines (trajectories), coloured dots with tips, and optionally the unit circle.
function planeChart({ lines = [], dots = [], circle = false, axis = false, xLabel = "", yLabel = "", size = 340, title = "" }) {
  const m = 36;
  const svg = el("svg", { width: size, height: size, class: "plot plane" });
  const xs = lines.flatMap((l) => l.map((p) => p[0])).concat(dots.map((d) => d.x), circle ? [-1, 1] : []);
  const ys = lines.flatMap((l) => l.map((p) => p[1])).concat(dots.map((d) => d.y), circle ? [-1, 1] : []);
  let [x0, x1] = extent(xs), [y0, y1] = extent(ys);
  const half = Math.max(x1 - x0, y1 - y0) / 2 * 1.08 || 1, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  [x0, x1, y0, y1] = [cx - half, cx + half, cy - half, cy + half];
  const X = (v) => m + ((v - x0) / (x1 - x0)) * (size - 2 * m);
  const Y = (v) => size - m - ((v - y0) / (y1 - y0)) * (size - 2 * m);
  el("rect", { x: m, y: m, width: size - 2 * m, height: size - 2 * m, fill: "none", stroke: "#888" }, svg);
  if (circle) el("circle", { class: "unit-circle", cx: X(0), cy: Y(0), r: X(1) - X(0), fill: "none", stroke: "#222" }, svg);
  if (axis) el("line", { class: "imaginary-axis", x1: X(0), x2: X(0), y1: m, y2: size - m, stroke: "#222" }, svg);
  for (const line of lines) {
    el("polyline", { class: "trajectory", points: line.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none", stroke: "#bbb", "stroke-width": 1 }, svg);
  }
  for (const d of dots) {
    const dot = el("circle", { class: `dot ${d.cls || ""}`, cx: X(d.x), cy: Y(d.y), r: d.r || 4, fill: d.colour, stroke: "#222", "stroke-width": 0.5 }, svg);
    dot.addEventListener("mousemove", (e) => showTip(e, d.tip));
    dot.addEventListener("mouseleave", hideTip);
  }
  el("text", { x: size / 2, y: size - 8, "text-anchor": "middle" }, svg).textContent = xLabel;
  el("text", { x: 12, y: size / 2, transform: `rotate(-90 12 ${size / 2})`, "text-anchor": "middle" }, svg).textContent = yLabel;
  return wrap(svg, title);
}

async function dynamicsPage() {
  const d = await api("/api/dynamics");
  page.innerHTML = `<h1>Dynamics</h1>`;
  if (!d.searches.length && !d.spectra.length) {
    page.innerHTML += `<p class="note">No fixed points or Lyapunov spectra in this store: run <code>neurometry dynamics fixed-points MODEL --store STORE</code> (or <code>lyapunov</code>) on a run recorded on (trials, time, features) inputs.</p>`;
    return;
  }
  d.searches.forEach((s, k) => {
    const box = htmlEl("section", { class: "search", id: `search-${k}` }, page);
    const counts = Object.keys(STABILITY_COLOURS).map((st) => `${s.points.filter((p) => p.stability === st).length} ${st}`).join(", ");
    box.insertAdjacentHTML("beforeend", `<h2>${esc(s.model)} · run ${esc(s.run)}</h2><p class="note">input ${esc(s.input)}: ${s.points.length} points (${counts}); hover a point for its q and eigenvalues</p>`);
    const charts = htmlEl("div", { class: "charts" }, box);
    const tip = (p, i) => `point ${i}: ${p.kind}, ${p.stability}${p.stability === "saddle" ? ` (${p.unstable_directions} unstable)` : ""}\nq ${fmt(p.q)}, max |λ| ${fmt(p.max_abs_eigenvalue)}${p.outlier ? "\noutlier" : ""}`;
    charts.appendChild(planeChart({ lines: s.lines, xLabel: "PC 1", yLabel: "PC 2", title: "trajectories and fixed points",
      dots: s.points.map((p, i) => ({ x: p.x, y: p.y, colour: STABILITY_COLOURS[p.stability], cls: p.stability, tip: tip(p, i), r: 5 })) }));
    charts.appendChild(planeChart({ circle: !s.continuous, axis: s.continuous, xLabel: "Re λ", yLabel: "Im λ", title: "Jacobian eigenvalues",
      dots: s.points.flatMap((p, i) => p.eigenvalues.map((v) => ({ x: v[0], y: v[1], r: 2.5, colour: STABILITY_COLOURS[p.stability], cls: "eigenvalue", tip: `point ${i} (${p.stability})\nλ = ${fmt(v[0])} ${v[1] < 0 ? "−" : "+"} ${fmt(Math.abs(v[1]))}i, |λ| ${fmt(Math.hypot(v[0], v[1]))}` }))) }));
    box.insertAdjacentHTML("beforeend", table(["#", "kind", "q", "stability", "unstable directions", "max |λ|", "outlier"],
      s.points.map((p, i) => [i, p.kind, p.q, p.stability, p.unstable_directions, p.max_abs_eigenvalue, p.outlier ? "yes" : ""]), { left: 2 }));
  });
  if (d.spectra.length) {
    page.insertAdjacentHTML("beforeend", `<h2>Lyapunov spectra</h2>` + table(["run", "model", "Kaplan-Yorke dimension", "exponents (largest first)"],
      d.spectra.map((s) => [s.run, s.model, s.kaplan_yorke_dimension, s.exponents.slice(0, 8).map((v) => fmt(v, 3)).join(", ") + (s.exponents.length > 8 ? " …" : "")]), { left: 2 }));
  }
}

// -- reading times ---------------------------------------------------------------------------------
// Points (x, y) in their own units on each axis, with an optional line y = a + b x over the x range.
function scatterChart({ x, y, line = null, xLabel = "", yLabel = "", width = 520, height = 320, title = "" }) {
  const m = { l: 56, r: 16, t: 10, b: 40 };
  const svg = el("svg", { width, height, class: "plot scatter" });
  const [x0, x1] = extent(x), [y0, y1] = extent(y);
  const X = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (width - m.l - m.r);
  const Y = (v) => height - m.b - ((v - y0) / (y1 - y0 || 1)) * (height - m.t - m.b);
  el("rect", { x: m.l, y: m.t, width: width - m.l - m.r, height: height - m.t - m.b, fill: "none", stroke: "#888" }, svg);
  for (const v of niceTicks(y0, y1)) el("text", { x: m.l - 4, y: Y(v) + 3, "text-anchor": "end" }, svg).textContent = fmt(v, 3);
  for (const v of niceTicks(x0, x1)) el("text", { x: X(v), y: height - m.b + 14, "text-anchor": "middle" }, svg).textContent = fmt(v, 3);
  x.forEach((v, i) => el("circle", { class: "word", cx: X(v), cy: Y(y[i]), r: 1.6, fill: "#2166ac", opacity: 0.35 }, svg));
  if (line) {
    const fit = el("line", { class: "fit", x1: X(x0), x2: X(x1), y1: Y(line.a + line.b * x0), y2: Y(line.a + line.b * x1), stroke: "#b2182b", "stroke-width": 2 }, svg);
    fit.addEventListener("mousemove", (e) => showTip(e, line.tip));
    fit.addEventListener("mouseleave", hideTip);
  }
  el("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle" }, svg).textContent = xLabel;
  el("text", { x: 12, y: (m.t + height - m.b) / 2, transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`, "text-anchor": "middle" }, svg).textContent = yLabel;
  return wrap(svg, title);
}

async function readingPage() {
  const fits = await api("/api/reading");
  page.innerHTML = `<h1>Reading times</h1>`;
  if (!fits.length) {
    page.innerHTML += `<p class="note">No reading-time fits in this store: run <code>neurometry surprisal MODEL WORDS --out STORE --lens</code>, then <code>neurometry fit STORE BEHAVIOUR.tsv --target meanItemRT</code>.</p>`;
    return;
  }
  fits.forEach((f, k) => {
    const s = f.settings;
    const box = htmlEl("section", { class: "reading-fit", id: `fit-${k}` }, page);
    const excluded = Object.entries(f.excluded).map(([rule, n]) => `${rule} ${n}`).join(", ");
    box.insertAdjacentHTML("beforeend", `<h2>${esc(s.target)} · run ${esc(f.run)}</h2><p class="note">${esc(s.behaviour)}: baseline ${esc(s.baseline.join(", "))}, spillover ${s.spillover}, held out by ${esc(s.group)}; excluded ${esc(excluded)}</p>`);
    const charts = htmlEl("div", { class: "charts" }, box);
    const layers = f.sources.filter((r) => r.source !== "final");
    const final = f.sources.find((r) => r.source === "final");
    if (layers.length) {
      charts.appendChild(lineChart({ labels: layers.map((r) => r.source), series: [{ name: "logit lens", y: layers.map((r) => r.delta_loglik_per_word) }],
        baseline: final ? final.delta_loglik_per_word : null, yLabel: "Δ log-lik / word (nats)", xLabel: "layer (logit lens)", title: "held-out gain by layer (dashed: the model's output)" }));
    }
    if (final && f.scatter.surprisal.length) {
      const mean = (a) => a.reduce((t, v) => t + v, 0) / a.length;
      const mx = mean(f.scatter.surprisal), my = mean(f.scatter.target), b = final.slope_ms_per_bit;
      charts.appendChild(scatterChart({ x: f.scatter.surprisal, y: f.scatter.target, xLabel: "surprisal (bits)", yLabel: `${s.target}`,
        line: { a: my - b * mx, b, tip: `${fmt(b, 3)} ms/bit [${fmt(final.slope_ci[0], 3)}, ${fmt(final.slope_ci[1], 3)}]` },
        title: `surprisal against ${s.target} (${f.scatter.surprisal.length} of ${f.scatter.words} words)` }));
    }
    box.insertAdjacentHTML("beforeend", table(["source", "slope ms/bit", "95% CI", "spillover ms/bit", "Δ log-lik/word", "Δ R²", "p", "words"],
      f.sources.map((r) => [r.source, r.slope_ms_per_bit, `${fmt(r.slope_ci[0], 3)} … ${fmt(r.slope_ci[1], 3)}`, r.spillover_slope_ms_per_bit, r.delta_loglik_per_word, r.delta_r2, r.p_value, r.words])));
    if (f.largest_residuals.length) {
      box.insertAdjacentHTML("beforeend", `<h3>The words the fit explains worst</h3>` + table(["item", "zone", "word", "surprisal", s.target, "predicted", "residual"],
        f.largest_residuals.map((w) => [w.item, w.zone, w.word, w.surprisal, w.target, w.predicted, w.residual]), { left: 3 }));
    }
  });
}

// -- detectors -------------------------------------------------------------------------------------
async function detectPage() {
  const d = await api("/api/detect");
  page.innerHTML = `<h1>Detect</h1>`;
  if (!d.truth.length && !d.ood.length && !d.ood_over_training.length && !d.causal.length) {
    page.innerHTML += `<p class="note">No detector results in this store: record true/false statements (<code>neurometry dataset truth-cities</code>, then <code>neurometry record MODEL DATA --points 'resid.*' --reduce last</code>) and run <code>neurometry detect truth STORE --group group</code>, or score a point for out-of-distribution rows with <code>neurometry detect ood STORE --point P --label COLUMN --in VALUES</code>.</p>`;
    return;
  }
  d.truth.forEach((t, k) => {
    const box = htmlEl("section", { class: "truth", id: `truth-${k}` }, page);
    box.insertAdjacentHTML("beforeend", `<h2>truth of ${esc(t.label)} · run ${esc(t.run)}</h2><p class="note">${esc(t.setting)}; held out; dashed: chance</p>`);
    const points = [...new Set(t.records.map((r) => r.point))];
    const methods = [...new Set(t.records.map((r) => r.method))];
    const cell = (p, m, key) => { const r = t.records.find((x) => x.point === p && x.method === m); return r ? r[key] : null; };
    const charts = htmlEl("div", { class: "charts" }, box);
    for (const key of ["accuracy", "auroc"]) {
      charts.appendChild(lineChart({ labels: points, baseline: 0.5, yLabel: `held-out ${key}`, xLabel: "point (depth)", title: key,
        series: methods.map((m) => ({ name: m, y: points.map((p) => cell(p, m, key)) })) }));
    }
  });
  if (d.baselines.length) {
    page.insertAdjacentHTML("beforeend", `<h3 id="baselines">truth read without the activations</h3><p class="note">output baselines (what the model says; few-shot accuracy calibrated) and controls (the held-out rate of truth per value of a column)</p>` +
      table(["run", "baseline", "accuracy", "AUROC", "statements"],
        d.baselines.map((b) => [b.run, b.kind === "control" ? `control: ${b.method}` : b.method, b.accuracy === null ? "–" : b.accuracy, b.auroc, b.n]), { left: 2 }));
  }
  if (d.causal.length) {
    page.insertAdjacentHTML("beforeend", `<h3 id="causal">causal test: the truth direction added while the model judges held-out statements</h3>` +
      `<p class="note">mean log P(True) − log P(False) at each alpha; shift = largest alpha minus smallest (positive is the expected sign)</p>` +
      table(["run", "point", "alphas", "true statements", "false statements", "shift", "statements"],
        d.causal.map((c) => [c.run, c.point, c.alphas.join(" / "), c.gap_true.map((g) => fmt(g, 3)).join(" / "),
          c.gap_false.map((g) => fmt(g, 3)).join(" / "), c.shift, c.n]), { left: 5 }));
  }
  for (const m of d.transfer) {
    page.insertAdjacentHTML("beforeend", `<h3>transfer at ${esc(m.point)} (${esc(m.method)}), run ${esc(m.run)}</h3>` +
      table(["trained on", ...m.names], m.names.map((name, i) => [name, ...m.accuracy[i].map((v) => v === null ? "–" : v)]), { left: 1 }));
  }
  d.ood.forEach((o, k) => {
    const box = htmlEl("section", { class: "ood", id: `ood-${k}` }, page);
    box.insertAdjacentHTML("beforeend", `<h2>out of distribution at ${esc(o.point)} · in: ${esc(o.in.join(" "))} of ${esc(o.label)} · run ${esc(o.run)}</h2><p class="note">${esc(o.setting)}; ROC curves of the scores on held-out rows (higher = more OOD); dashed: chance</p>`);
    const ranked = [...o.records].sort((a, b) => b.auroc - a.auroc);
    const curves = ranked.filter((r) => r.roc);
    if (curves.length) {
      const fpr = curves[0].roc.fpr;
      box.appendChild(lineChart({ labels: fpr.map((v) => fmt(v, 2)), yLabel: "true positive rate", xLabel: "false positive rate", title: "ROC",
        series: [...curves.map((r) => ({ name: `${r.score} ${fmt(r.auroc, 3)}`, y: r.roc.tpr })), { name: "chance", y: fpr, dashed: true }] }));
    }
    box.insertAdjacentHTML("beforeend", table(["score", "AUROC", "95% interval", "AUPR", "FPR at 95% TPR", "ID rows", "OOD rows"],
      ranked.map((r) => [r.score, r.auroc, r.auroc_interval ? `[${fmt(r.auroc_interval[0], 3)}, ${fmt(r.auroc_interval[1], 3)}]` : "–", r.aupr, r.fpr95, r.n_in, r.n_out]), { left: 1 }));
  });
  d.ood_over_training.forEach((o, k) => {
    const box = htmlEl("section", { class: "ood-series", id: `ood-series-${k}` }, page);
    box.insertAdjacentHTML("beforeend", `<h2>out of distribution over series ${esc(o.series)} at ${esc(o.point)} · in: ${esc(o.in.join(" "))}</h2><p class="note">${esc(o.setting)}; each score's AUROC at every checkpoint, and NC1 of the fitting rows (x: training step)</p>`);
    const steps = o.steps.map((s) => fmt(s));
    const charts = htmlEl("div", { class: "charts" }, box);
    charts.appendChild(lineChart({ labels: steps, yLabel: "AUROC", xLabel: "training step", title: "AUROC",
      series: o.records.map((r) => ({ name: r.score, y: r.auroc })) }));
    charts.appendChild(lineChart({ labels: steps, yLabel: "NC1", xLabel: "training step", title: "NC1", series: [{ name: "NC1", y: o.nc1 }] }));
    box.insertAdjacentHTML("beforeend", table(["score", "Spearman(NC1, AUROC)", "terminal phase only"],
      o.records.map((r) => [r.score, r.spearman === null ? "–" : r.spearman, r.terminal_spearman === null ? "–" : r.terminal_spearman]), { left: 1 }));
  });
}

// -- router ----------------------------------------------------------------------------------------
const ROUTES = {
  "": () => runsPage(),
  run: ([run]) => runPage(run),
  comparisons: () => comparisonsPage(),
  probes: () => probesPage(),
  neurons: ([run, point, unit], query) => unit !== undefined ? neuronPage(run, point, unit) : neuronsPage(run, point, query),
  features: ([sae, latent], query) => latent !== undefined ? featurePage(sae, latent) : featuresPage(sae, query),
  steer: () => steerPage(),
  training: ([name]) => trainingPage(name),
  dynamics: () => dynamicsPage(),
  reading: () => readingPage(),
  detect: () => detectPage(),
  results: ([kind], query) => resultsPage(kind, query),
};

async function route() {
  hideTip();
  const { parts, query } = hashParams();
  const [name = "", ...rest] = parts;
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#/${name}`));
  const handler = ROUTES[name];
  page.dataset.ready = "false";
  try {
    if (!handler) throw new Error(`no page ${location.hash}`);
    await handler(rest, query);
  } catch (error) {
    showError(error);
  }
  page.dataset.route = location.hash;  // end-to-end tests wait for this page to be ready
  page.dataset.ready = "true";
}

window.addEventListener("hashchange", route);
summary().then((s) => {
  document.getElementById("store-name").textContent = s.store;
  document.title = `neurometry · ${s.store}`;
  if (!s.playground) document.getElementById("nav-steer").title = "start the server with --model and --vector";
}).catch(() => {});
route();
