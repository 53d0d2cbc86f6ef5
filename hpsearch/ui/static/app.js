// hpsearch dashboard: plain JavaScript, charts drawn on <canvas> (no library, nothing fetched
// from outside this server). One view per URL; the server answers JSON under /api/.
"use strict";

const COLORS = { coarse: "#1f77b4", widen: "#2ca02c", fine: "#ff7f0e", ensemble: "#9467bd" };
const STATUSES = ["pending", "running", "completed", "failed", "diverged", "stopped"];
const view = document.getElementById("view");

// ---------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3).replace(/\.?0+e/, "e");
  return String(Number(v.toPrecision(4)));
}
async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}
const enc = encodeURIComponent;
function studyUrl(name, sub = "") { return `/study/${enc(name)}${sub}`; }
function kindOf(stage) { return stage.kind === "coarse" && stage.parent ? "widen" : stage.kind; }
function countsText(counts) {
  const parts = STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
  return parts.length ? parts.join(", ") : "no trials";
}
function showError(error) {
  view.replaceChildren(el("p", { class: "error", id: "error" }, String(error.message || error)));
}
function setCrumbs(name, title) {
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren(
    ...(name ? [el("a", { href: studyUrl(name) }, name), " / "] : []), title || "");
  document.title = `hpsearch${name ? " · " + name : ""}${title ? " · " + title : ""}`;
}
function setTabs(name, active, study) {
  const tabs = [["", "Overview"], ["/trials", "Trials"], ["/curves", "Learning curves"],
    ["/params", "Metric vs parameters"], ["/parallel", "Parallel coordinates"]];
  const nodes = tabs.map(([sub, label]) =>
    el("a", { href: studyUrl(name, sub), class: sub === active ? "active" : null }, label));
  const stages = study ? study.stages : [];
  const running = stages.filter((s) => s.status === "running");
  const live = running.length ? running[running.length - 1] : stages[stages.length - 1];
  if (live) {
    const sub = `/stage/${live.id}`;
    nodes.push(el("a", { href: studyUrl(name, sub), class: active === sub ? "active" : null },
      `Live: stage ${live.id}${live.status === "running" ? " (running)" : ""}`));
  }
  document.getElementById("tabs").replaceChildren(...nodes);
}

// ---------------------------------------------------------------- axes and canvas
function scale(min, max, log, a, b, pad = 0) {
  const f = log ? Math.log10 : (x) => x;
  let lo = f(min), hi = f(max);
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const margin = (hi - lo) * pad; lo -= margin; hi += margin;
  const s = (x) => a + ((f(x) - lo) / (hi - lo)) * (b - a);
  s.inv = (p) => { const v = lo + ((p - a) / (b - a)) * (hi - lo); return log ? 10 ** v : v; };
  s.ticks = () => ticks(log ? 10 ** lo : lo, log ? 10 ** hi : hi, log);
  return s;
}
function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    for (let e = Math.ceil(Math.log10(lo)); e <= Math.floor(Math.log10(hi)); e++) out.push(10 ** e);
    return out.length >= 2 ? out : ticks(lo, hi, false);
  }
  const raw = (hi - lo) / 5, mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
  return out;
}
function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return lo <= hi ? [lo, hi] : [0, 1];
}
function makeCanvas(width, height) {
  const canvas = el("canvas", { width: width * devicePixelRatio, height: height * devicePixelRatio });
  canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.scale(devicePixelRatio, devicePixelRatio);
  ctx.font = "11px system-ui, sans-serif";
  return [canvas, ctx];
}
const PAD = { left: 56, right: 12, top: 10, bottom: 36 };
// A plot frame: x and y scales with ticks and labels; returns {canvas, ctx, x, y}.
function frame(width, height, xs, ys, labels) {
  const [canvas, ctx] = makeCanvas(width, height);
  const x = scale(xs.min, xs.max, xs.log, PAD.left, width - PAD.right, xs.categories ? 0 : 0.03);
  const y = scale(ys.min, ys.max, ys.log, height - PAD.bottom, PAD.top, 0.05);
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#444";
  ctx.strokeRect(PAD.left, PAD.top, width - PAD.left - PAD.right, height - PAD.top - PAD.bottom);
  ctx.textAlign = "center";
  if (xs.categories) xs.categories.forEach((c, i) => ctx.fillText(c, x(i), height - PAD.bottom + 14));
  else for (const t of x.ticks()) ctx.fillText(fmt(t), x(t), height - PAD.bottom + 14);
  ctx.fillText(labels[0], (PAD.left + width - PAD.right) / 2, height - 6);
  ctx.textAlign = "right";
  for (const t of y.ticks()) ctx.fillText(fmt(t), PAD.left - 4, y(t) + 4);
  ctx.save(); ctx.translate(12, (PAD.top + height - PAD.bottom) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText(labels[1], 0, 0); ctx.restore();
  ctx.save(); ctx.beginPath();
  ctx.rect(PAD.left, PAD.top, width - PAD.left - PAD.right, height - PAD.top - PAD.bottom); ctx.clip();
  return { canvas, ctx, x, y, width, height };
}
function lines(plot, series) {
  const { ctx, x, y } = plot;
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.2; ctx.setLineDash(s.dash || []);
    ctx.beginPath(); let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || (plot.ylog && !(v > 0))) { pen = false; return; }
      const px = x(s.xs ? s.xs[i] : i + 1), py = y(v);
      if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      pen = true;
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
}
function chartBox(title, canvas, ...rest) {
  return el("div", { class: "chart" }, el("h3", {}, title), canvas, ...rest);
}

// Above DENSE points (or with ?dense=1) the plots draw pixels and binned lines instead of one
// canvas call per point or per line: 100,000 trials stay about as fast as 10,000.
const DENSE = 20000;
function dense(n) { return n > DENSE || new URLSearchParams(location.search).get("dense") === "1"; }
function rgb(hex) { const v = parseInt(hex.slice(1), 16); return [v >> 16, (v >> 8) & 255, v & 255]; }
// Points as 2x2 device pixels written into an image (later trials on top), drawn in one call.
function pixels(plot, n, place, color) {
  const { canvas, ctx } = plot, w = canvas.width, h = canvas.height, r = devicePixelRatio;
  const image = new ImageData(w, h), buf = image.data, cache = {};
  for (let i = 0; i < n; i++) {
    const at = place(i); if (!at) continue;
    const c = color(i), [cr, cg, cb] = cache[c] || (cache[c] = rgb(c));
    const px = Math.round(at[0] * r), py = Math.round(at[1] * r);
    for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
      const qx = px + dx, qy = py + dy;
      if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
      const k = (qy * w + qx) * 4; buf[k] = cr; buf[k + 1] = cg; buf[k + 2] = cb; buf[k + 3] = 200;
    }
  }
  const layer = document.createElement("canvas"); layer.width = w; layer.height = h;
  layer.getContext("2d").putImageData(image, 0, 0);
  ctx.save(); ctx.setTransform(1, 0, 0, 1, 0, 0); ctx.drawImage(layer, 0, 0); ctx.restore();
}

// ---------------------------------------------------------------- view 1: studies
async function studiesView() {
  setCrumbs(null, "studies");
  const studies = await api("/api/studies");
  const rows = studies.map((s) => el("tr", { "data-study": s.name },
    el("td", {}, el("a", { href: studyUrl(s.name) }, s.name)),
    el("td", { "data-col": "metric" }, `${s.metric} (${s.mode})`),
    el("td", { class: "num", "data-col": "stages" }, s.stages),
    el("td", { "data-col": "counts" }, countsText(s.counts)),
    el("td", { class: "num", "data-col": "best", "data-value": s.best ?? "" }, fmt(s.best)),
    el("td", { "data-col": "last" }, s.last_activity ? s.last_activity.slice(0, 19) + " UTC" : "–")));
  view.replaceChildren(el("h1", {}, "Studies"), studies.length
    ? el("table", { id: "studies" }, el("tr", {}, ...["study", "metric", "stages", "trials",
      "best", "last activity"].map((h) => el("th", {}, h))), ...rows)
    : el("p", { class: "muted" }, "No studies yet: run `hpsearch coarse SPEC` first."));
}

// ---------------------------------------------------------------- view 2: a study
function rangeText(r) {
  if (r.type === "choice") return `choice ${JSON.stringify(r.values)}`;
  const limits = ["min", "max"].filter((k) => k in r).map((k) => ` ${k}=${fmt(r[k])}`).join("");
  return `${r.type} [${fmt(r.low)}, ${fmt(r.high)}]${limits}`;
}
function stageSection(study, stage) {
  const best = stage.best;
  const params = best ? Object.entries(best.params).map(([k, v]) => `${k}=${fmt(v)}`).join(", ") : "";
  return el("section", { id: `stage-${stage.id}`, "data-stage": stage.id },
    el("h2", {}, `Stage ${stage.id} `, el("span", { class: `kind ${kindOf(stage)}` }, kindOf(stage)),
      ` (${stage.status}${stage.parent ? `, from stage ${stage.parent}` : ""}): `,
      `${stage.trials} trials × ${stage.epochs} epochs, seed ${stage.seed}`),
    el("p", { class: "counts" }, `Trials: ${countsText(stage.counts)}`),
    best ? el("p", { class: "best" }, `Best: trial ${best.trial} ${study.metric} `,
      el("b", { "data-value": best.value }, fmt(best.value)), ` at epoch ${best.epoch} (${params}) `,
      el("a", { href: studyUrl(study.study, `/curves?trials=${best.trial_id}`) }, "curve")) : null,
    ...stage.flags.map((f) => el("div", { class: "flag" }, f.message)),
    el("table", { class: "ranges" }, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "sampled range"),
      el("th", {}, "proposed next"), el("th", {}, "why")),
      ...Object.entries(stage.ranges).map(([name, r]) => el("tr", {},
        el("td", {}, name), el("td", {}, rangeText(r)),
        el("td", {}, stage.proposal && stage.proposal[name] ? rangeText(stage.proposal[name]) : "–"),
        el("td", {}, stage.reasons[name] || "")))),
    !stage.proposal && stage.status === "finished"
      ? el("p", { class: "muted" }, "No proposal: no trial completed.") : null);
}
async function studyView(name) {
  const study = await api(`/api/study/${enc(name)}`);
  setCrumbs(name, "overview"); setTabs(name, "", study);
  const cards = [];
  study.stages.forEach((stage, i) => {
    if (i) cards.push(el("span", { class: "arrow" }, "→"));
    cards.push(el("div", { class: `stage-card ${kindOf(stage)} ${stage.status}`, "data-stage": stage.id },
      el("div", { class: `kind ${kindOf(stage)}` }, `${kindOf(stage)} · stage ${stage.id}`),
      el("div", {}, `${stage.trials} × ${stage.epochs} epochs, ${stage.status}`),
      el("div", { class: "muted" }, countsText(stage.counts)),
      el("div", {}, "best ", el("b", {}, fmt(stage.best && stage.best.value))),
      el("a", { href: studyUrl(name, `/stage/${stage.id}`) }, stage.status === "running" ? "follow live" : "progress")));
  });
  view.replaceChildren(
    el("h1", {}, `${study.study} `, el("span", { class: "muted" }, `${study.metric}, ${study.mode}`)),
    study.stages.length ? el("div", { class: "timeline", id: "timeline" }, cards) : el("p", {}, "No stages yet."),
    ...study.stages.map((s) => stageSection(study, s)));
}

// ---------------------------------------------------------------- view 3: a stage, live
async function liveView(name, stageId) {
  const study = await api(`/api/study/${enc(name)}`);
  setCrumbs(name, `stage ${stageId}`); setTabs(name, `/stage/${stageId}`, study);
  const counter = (id, label) => el("div", { class: "counter" },
    el("div", { class: "label" }, label), el("div", { class: "value", id }, "–"));
  const recent = el("tbody", { id: "live-recent" });
  const chartSlot = el("div", { class: "charts" });
  view.replaceChildren(
    el("h1", {}, `Stage ${stageId} `, el("span", { id: "live-status", class: "muted" }, "")),
    el("div", { class: "counters" }, counter("live-done", "trials done"), counter("live-total", "of total"),
      counter("live-completed", "completed"), counter("live-failed", "failed"),
      counter("live-diverged", "diverged"), counter("live-stopped", "stopped"),
      counter("live-running", "running"),
      counter("live-best", `best ${study.metric}`), counter("live-rate", "trials / s"),
      counter("live-eta", "ETA"), counter("live-epochs", "epochs since opened")),
    chartSlot,
    el("h2", {}, "Latest finished trials"),
    el("table", {}, el("tr", {}, ...["trial", "status", study.metric].map((h) => el("th", {}, h))), recent),
    el("p", { class: "muted" }, "updated ", el("span", { id: "live-updated" }, "never"),
      " · updates: ", el("span", { id: "live-updates" }, "0")));
  const finished = [];  // [order, value, status]
  const samples = [];  // [seconds, done]
  const curves = new Map();  // trial id -> values per epoch (the metric), newest trials last
  let cursor = null, updates = 0, epochsSeen = 0;
  const better = study.mode === "max" ? (a, b) => a > b : (a, b) => a < b;
  const draw = () => {
    const values = finished.map((f) => f[1]);
    const [lo, hi] = extent(values);
    const plot = frame(640, 260, { min: 0, max: Math.max(1, finished.length) },
      { min: lo, max: hi }, ["finished trials (in order)", study.metric]);
    let best = null; const bestLine = [];
    finished.forEach(([, v]) => { if (v !== null && (best === null || better(v, best))) best = v; bestLine.push(best); });
    plot.ctx.fillStyle = "rgba(31,119,180,.6)";
    finished.forEach(([i, v]) => { if (v !== null) plot.ctx.fillRect(plot.x(i) - 1.5, plot.y(v) - 1.5, 3, 3); });
    lines(plot, [{ values: bestLine, xs: finished.map((f) => f[0]), color: "#d62728", width: 2 }]);
    const boxes = [chartBox(`${study.metric} of each finished trial, best so far in red`, plot.canvas)];
    if (curves.size) {
      const list = [...curves.values()];
      const [clo, chi] = extent(list.flat());
      const cplot = frame(480, 260, { min: 1, max: Math.max(2, ...list.map((c) => c.length)) },
        { min: clo, max: chi }, ["epoch", study.metric]);
      lines(cplot, list.map((values, i) => ({ values, color: PALETTE[i % PALETTE.length] })));
      boxes.push(chartBox(`epochs as they arrive (latest ${list.length} trials)`, cplot.canvas));
    }
    chartSlot.replaceChildren(...boxes);
  };
  const tick = async () => {
    const q = new URLSearchParams();
    if (cursor) { q.set("at", cursor[0]); q.set("id", cursor[1]); }
    const u = await api(`/api/study/${enc(name)}/live/${stageId}?${q}`);
    cursor = u.cursor; updates += 1;
    let arrived = 0;  // the feed repeats the epochs of running trials: count only new ones
    for (const [trialId, epoch, value] of u.epochs_new) {
      const values = curves.get(trialId) || [];
      curves.delete(trialId); curves.set(trialId, values);  // most recent last
      if (values[epoch - 1] === undefined) arrived += 1;
      values[epoch - 1] = value;
      for (let i = 0; i < values.length; i++) if (values[i] === undefined) values[i] = null;
    }
    while (curves.size > 20) curves.delete(curves.keys().next().value);
    if (updates > 1) epochsSeen += arrived;  // the first answer holds what came before
    document.getElementById("live-epochs").textContent = epochsSeen;
    for (const [, number, status, value] of u.new) {
      finished.push([finished.length + 1, status === "completed" ? value : null, status]);
      recent.prepend(el("tr", {}, el("td", {}, number), el("td", {}, status), el("td", { class: "num" }, fmt(value))));
    }
    while (recent.children.length > 10) recent.lastChild.remove();
    const now = performance.now() / 1000;
    samples.push([now, u.done]);
    while (samples.length > 2 && now - samples[0][0] > 10) samples.shift();
    const [t0, d0] = samples[0];
    const rate = now > t0 ? (u.done - d0) / (now - t0) : 0;
    const left = u.total - u.done;
    const set = (id, text) => { document.getElementById(id).textContent = text; };
    set("live-status", `${u.status}, ${u.epochs} epochs per trial`);
    set("live-done", u.done); set("live-total", u.total);
    for (const s of ["completed", "failed", "diverged", "stopped", "running"]) set(`live-${s}`, u.counts[s] || 0);
    set("live-best", fmt(u.best)); set("live-rate", samples.length > 1 ? fmt(rate) : "–");
    set("live-eta", left === 0 ? "done" : rate > 0 ? `${Math.ceil(left / rate)} s` : "–");
    set("live-updated", new Date().toLocaleTimeString()); set("live-updates", updates);
    if (u.new.length || arrived || updates === 1) draw();
    return u.status;
  };
  const loop = async () => {
    let status = "running";
    try { status = await tick(); } catch (e) { document.getElementById("live-updated").textContent = `error: ${e.message}`; }
    setTimeout(loop, status === "running" ? 500 : 2000);
  };
  await loop();
}

// ---------------------------------------------------------------- view 7: trials table
async function trialsView(name) {
  const study = await api(`/api/study/${enc(name)}`);
  setCrumbs(name, "trials"); setTabs(name, "/trials", study);
  const params = new URLSearchParams(location.search);
  const state = {
    sort: params.get("sort") || "trial_id", desc: params.get("desc") === "1",
    status: params.get("status") || "", stage: params.get("stage") || "",
    range: params.get("range") || "", offset: Number(params.get("offset") || 0), limit: 50,
  };
  const names = [...new Set(study.stages.flatMap((s) => Object.keys(s.ranges)))];
  const [rName, rLow, rHigh] = state.range ? state.range.split(":") : [names[0] || "", "", ""];
  const statusSel = el("select", { id: "filter-status" }, el("option", { value: "" }, "any"),
    ...STATUSES.map((s) => el("option", { value: s, selected: s === state.status }, s)));
  const stageSel = el("select", { id: "filter-stage" }, el("option", { value: "" }, "any"),
    ...study.stages.map((s) => el("option", { value: s.id, selected: String(s.id) === state.stage }, `${s.id} ${kindOf(s)}`)));
  const paramSel = el("select", { id: "filter-param" },
    ...names.map((n) => el("option", { value: n, selected: n === rName }, n)));
  const low = el("input", { id: "filter-low", size: 8, value: rLow || "" });
  const high = el("input", { id: "filter-high", size: 8, value: rHigh || "" });
  const table = el("table", { id: "trials" });
  const info = el("span", { id: "trials-info" });
  const prev = el("button", { id: "prev" }, "◀ prev"), next = el("button", { id: "next" }, "next ▶");
  const load = async () => {
    const q = new URLSearchParams({ sort: state.sort, desc: state.desc ? "1" : "0",
      offset: state.offset, limit: state.limit });
    if (state.status) q.set("status", state.status);
    if (state.stage) q.set("stage", state.stage);
    if (state.range) q.set("range", state.range);
    history.replaceState(null, "", `${location.pathname}?${q}`);
    const page = await api(`/api/study/${enc(name)}/trials?${q}`);
    const header = page.columns.map((c, i) => {
      const key = i >= 7 ? `param:${c}` : c === "trial" ? "number" : c;
      const mark = state.sort === key ? (state.desc ? " ▼" : " ▲") : "";
      return el("th", { class: "sortable", "data-sort": key, onclick: () => {
        state.desc = state.sort === key ? !state.desc : key === "best_value" && study.mode === "max";
        state.sort = key; state.offset = 0; load().catch(showError);
      } }, c + mark);
    });
    table.replaceChildren(el("tr", {}, header), ...page.rows.map((r) => el("tr", { "data-trial": r[0] },
      ...r.map((v, i) => el("td", { class: typeof v === "number" ? "num" : null },
        i === 0 ? el("a", { href: studyUrl(name, `/curves?trials=${v}`) }, v) : fmt(v))))));
    const end = Math.min(page.total, state.offset + page.rows.length);
    info.textContent = page.total ? `trials ${state.offset + 1}–${end} of ${page.total}` : "no trials match";
    info.dataset.total = page.total;
    prev.disabled = state.offset === 0; next.disabled = end >= page.total;
  };
  prev.onclick = () => { state.offset = Math.max(0, state.offset - state.limit); load().catch(showError); };
  next.onclick = () => { state.offset += state.limit; load().catch(showError); };
  const apply = (event) => {
    event.preventDefault();
    state.status = statusSel.value; state.stage = stageSel.value; state.offset = 0;
    state.range = low.value.trim() || high.value.trim() ? `${paramSel.value}:${low.value.trim()}:${high.value.trim()}` : "";
    load().catch(showError);
  };
  view.replaceChildren(el("h1", {}, "Trials"),
    el("form", { class: "controls", id: "filters", onsubmit: apply },
      el("label", {}, "status", statusSel), el("label", {}, "stage", stageSel),
      el("label", {}, "parameter", paramSel), el("label", {}, "from", low), el("label", {}, "to", high),
      el("button", { type: "submit", id: "apply" }, "Apply")),
    el("div", { class: "pager" }, prev, info, next), el("div", { class: "scroll" }, table));
  await load();
}

// ---------------------------------------------------------------- view 6: learning curves
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
async function curvesView(name) {
  const study = await api(`/api/study/${enc(name)}`);
  setCrumbs(name, "learning curves"); setTabs(name, "/curves", study);
  const params = new URLSearchParams(location.search);
  const top = Number(params.get("top") || 10);
  const picked = params.get("trials") || "";
  const data = await api(`/api/study/${enc(name)}/curves?top=${top}&trials=${enc(picked)}`);
  const pickedIds = new Set(data.picked);
  const series = (metric, f = (t) => t.metrics[metric] || []) => data.trials.map((t, i) => ({
    values: f(t), color: PALETTE[i % PALETTE.length], width: pickedIds.has(t.trial_id) ? 3.5 : 1.3,
    dash: pickedIds.has(t.trial_id) ? [] : [] }));
  const plotOf = (title, list, ylabel, log, guide) => {
    const all = list.flatMap((s) => s.values).filter((v) => v !== null && (!log || v > 0));
    if (!all.length) return null;
    const epochs = Math.max(2, ...list.map((s) => s.values.length));
    const [lo, hi] = extent(all);
    const plot = frame(520, 300, { min: 1, max: epochs }, { min: guide ? Math.min(lo, guide) : lo,
      max: guide ? Math.max(hi, guide) : hi, log }, ["epoch", ylabel]);
    plot.ylog = log;
    if (guide) lines(plot, [{ values: [guide, guide], xs: [1, epochs], color: "#000", dash: [5, 4] }]);
    lines(plot, list);
    return chartBox(title, plot.canvas);
  };
  const charts = [plotOf(`${study.metric} per epoch`, series(study.metric), study.metric, false)];
  const hasGap = data.trials.some((t) => t.metrics.train_acc && t.metrics.val_acc);
  if (hasGap) charts.push(plotOf("train − validation accuracy (a growing gap is overfitting)",
    series(null, (t) => (t.metrics.train_acc || []).map((v, i) => v === null || t.metrics.val_acc[i] == null ? null : v - t.metrics.val_acc[i])),
    "train_acc − val_acc", false));
  const focus = data.trials.find((t) => pickedIds.has(t.trial_id)) || data.trials[0];
  const layers = focus ? Object.keys(focus.metrics).filter((m) => m.startsWith("update_ratio/")) : [];
  if (layers.length) charts.push(plotOf(`update/parameter ratio per layer, trial ${focus.trial_id} (1e-3 dashed)`,
    layers.map((m, i) => ({ values: focus.metrics[m], color: PALETTE[i % PALETTE.length] })),
    "update ratio", true, 1e-3));
  const legend = el("table", { id: "curves-legend" }, el("tr", {}, ...["", "trial id", "stage", "trial",
    "status", study.metric, "params"].map((h) => el("th", {}, h))),
  ...data.trials.map((t, i) => el("tr", { "data-trial": t.trial_id, class: pickedIds.has(t.trial_id) ? "picked" : null },
    el("td", {}, el("span", { class: "swatch", style: `background:${PALETTE[i % PALETTE.length]}` })),
    el("td", {}, t.trial_id), el("td", {}, `${t.stage_id} ${t.kind}`), el("td", {}, t.trial),
    el("td", {}, t.status), el("td", { class: "num" }, fmt(t.best_value)),
    el("td", {}, Object.entries(t.params).map(([k, v]) => `${k}=${fmt(v)}`).join(", ")))));
  const topInput = el("input", { id: "top-k", type: "number", min: 0, max: 100, value: top, size: 4 });
  const pickInput = el("input", { id: "pick", value: picked, size: 12, placeholder: "e.g. 7,12" });
  view.replaceChildren(el("h1", {}, `Learning curves: top ${top}${picked ? ` and trial ${picked}` : ""}`),
    el("form", { class: "controls", onsubmit: (e) => { e.preventDefault();
      location.search = `?top=${topInput.value}&trials=${enc(pickInput.value)}`; } },
    el("label", {}, "top K", topInput), el("label", {}, "trial ids", pickInput), el("button", {}, "Show")),
    el("div", { class: "charts" }, charts), el("h2", {}, "Trials shown (picked ones drawn thick)"), legend,
    // each picked trial's first layer, drawn from its latest kept checkpoint (none: no image)
    ...data.picked.map((id) => el("figure", { class: "first-layer-box" },
      el("img", { class: "first-layer", "data-trial": id, alt: `first layer of trial ${id}`,
        src: `/api/study/${enc(name)}/first_layer/${id}.png`,
        onerror: (e) => e.target.parentNode.remove() }),
      el("figcaption", { class: "muted" }, `trial ${id}: first-layer weights (hpsearch plot --trial ${id})`))));
}

// ---------------------------------------------------------------- finished trials as columns
// The server sends each column as base64 of little-endian numbers (NaN = missing).
function decode(b64, Type) {
  const text = atob(b64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return Array.from(new Type(bytes.buffer), (v) => (Number.isNaN(v) ? null : v));
}
async function loadPoints(name) {
  const d = await api(`/api/study/${enc(name)}/points`);
  const c = d.columns;
  return { ...d, trial_id: decode(c.trial_id, Int32Array), stage_id: decode(c.stage_id, Int32Array),
    trial: decode(c.trial, Int32Array), value: decode(c.value, Float64Array),
    params: Object.fromEntries(Object.entries(d.params).map(([k, v]) => [k, decode(v, Float64Array)])) };
}

// ---------------------------------------------------------------- view 4: metric vs each parameter
function paramType(stages, name) {
  const last = [...stages].reverse().find((s) => s.ranges[name]);
  return last ? last.ranges[name].type : "uniform";
}
function jitter(id) { const s = Math.sin(id * 12.9898) * 43758.5453; return (s - Math.floor(s) - 0.5) * 0.5; }
async function paramsView(name) {
  const [study, d] = await Promise.all([api(`/api/study/${enc(name)}`), loadPoints(name)]);
  setCrumbs(name, "metric vs parameters"); setTabs(name, "/params", study);
  const stageKind = Object.fromEntries(d.stages.map((s) => [s.id, kindOf(s)]));
  const bestIndex = d.value.reduce((b, v, i) => (b < 0 || (d.mode === "max" ? v > d.value[b] : v < d.value[b]) ? i : b), -1);
  const [ylo, yhi] = extent(d.value);
  const charts = Object.keys(d.params).map((pname) => {
    const xs = d.params[pname], cats = d.categories[pname];
    const type = paramType(d.stages, pname), log = !cats && type.startsWith("log");
    const edges = d.stages.filter((s) => s.ranges[pname] && "low" in s.ranges[pname]);
    const [xlo0, xhi0] = extent(xs.filter((v) => !log || v > 0));
    const xlo = Math.min(xlo0, ...edges.map((s) => s.ranges[pname].low));
    const xhi = Math.max(xhi0, ...edges.map((s) => s.ranges[pname].high));
    const plot = frame(440, 290, cats ? { min: -0.5, max: cats.length - 0.5, categories: cats } : { min: xlo, max: xhi, log },
      { min: ylo, max: yhi }, [`${pname}${log ? " (log)" : ""}`, d.metric]);
    const { ctx, x, y } = plot;
    for (const s of edges) {  // flagged bands shaded, then range edges dashed
      const r = s.ranges[pname], color = COLORS[kindOf(s)];
      for (const f of s.flags.filter((f) => f.param === pname && (f.side === "low" || f.side === "high"))) {
        const a = x(r.low), b = x(r.high), band = (b - a) * 0.1;
        ctx.fillStyle = "rgba(239,108,0,.15)";
        ctx.fillRect(f.side === "low" ? a : b - band, 0, band, plot.height);
      }
      ctx.strokeStyle = color; ctx.setLineDash([5, 4]); ctx.lineWidth = 1;
      for (const edge of [r.low, r.high]) { ctx.beginPath(); ctx.moveTo(x(edge), 0); ctx.lineTo(x(edge), plot.height); ctx.stroke(); }
      ctx.setLineDash([]);
    }
    const place = (i) => {  // [px, py] of trial i, or null when it has no point here
      const v = xs[i], val = d.value[i];
      if (v === null || val === null || (log && !(v > 0))) return null;
      return [x(cats ? v + jitter(d.trial_id[i]) : v), y(val)];
    };
    if (dense(xs.length)) pixels(plot, xs.length, place, (i) => COLORS[stageKind[d.stage_id[i]]]);
    else {
      ctx.globalAlpha = Math.max(0.15, Math.min(0.7, 3000 / Math.max(1, xs.length)));
      for (const kind of Object.keys(COLORS)) {  // one colour at a time
        ctx.fillStyle = COLORS[kind];
        for (let i = 0; i < xs.length; i++) {
          const at = stageKind[d.stage_id[i]] === kind && place(i);
          if (at) ctx.fillRect(at[0] - 2, at[1] - 2, 4, 4);
        }
      }
    }
    ctx.globalAlpha = 1;
    if (bestIndex >= 0 && xs[bestIndex] !== null) {
      const bx = x(cats ? xs[bestIndex] : xs[bestIndex]), by = y(d.value[bestIndex]);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(bx, by, 7, 0, 2 * Math.PI); ctx.stroke();
    }
    plot.canvas.addEventListener("click", (e) => {  // pick the nearest trial: its learning curve
      const rect = plot.canvas.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
      let found = -1, dist = 100;
      for (let i = 0; i < xs.length; i++) {
        if (xs[i] === null || d.value[i] === null) continue;
        const dd = Math.hypot(x(cats ? xs[i] + jitter(d.trial_id[i]) : xs[i]) - mx, y(d.value[i]) - my);
        if (dd < dist) { dist = dd; found = i; }
      }
      if (found >= 0) location.href = studyUrl(name, `/curves?trials=${d.trial_id[found]}`);
    });
    plot.canvas.dataset.param = pname;
    plot.canvas.dataset.axis = cats ? "categories" : log ? "log" : "linear";
    return chartBox(`${d.metric} vs ${pname}`, plot.canvas);
  });
  const legend = el("p", { class: "legend" },
    ...Object.entries(COLORS).map(([k, c]) => el("span", {}, el("span", { class: "swatch", style: `background:${c}` }), k)),
    el("span", {}, "dashed: each stage's range edges; orange band: flagged edge; circle: best trial; click a point for its curve"));
  view.replaceChildren(el("h1", {}, `${d.metric} against each parameter (${d.value.length} finished trials)`),
    legend, el("div", { class: "charts", id: "param-charts" }, charts));
}

// ---------------------------------------------------------------- view 5: parallel coordinates
async function parallelView(name) {
  const [study, d] = await Promise.all([api(`/api/study/${enc(name)}`), loadPoints(name)]);
  setCrumbs(name, "parallel coordinates"); setTabs(name, "/parallel", study);
  const axes = [...Object.keys(d.params), d.metric].map((axis) => {
    const values = axis in d.params ? d.params[axis] : d.value;
    const cats = d.categories[axis];
    const log = axis in d.params && !cats && paramType(d.stages, axis).startsWith("log");
    const [lo, hi] = cats ? [-0.5, cats.length - 0.5] : extent(values.filter((v) => !log || v > 0));
    return { name: axis, values, cats, log, lo, hi };
  });
  const W = Math.max(640, 140 * axes.length), H = 380, top = 30, bottom = H - 30;
  const [canvas, ctx] = makeCanvas(W, H);
  axes.forEach((a, i) => {
    a.x = 60 + (i * (W - 120)) / Math.max(1, axes.length - 1);
    a.y = scale(a.lo, a.hi, a.log, bottom, top, a.cats ? 0 : 0.03);
  });
  canvas.dataset.axes = JSON.stringify(axes.map((a) => [a.name, a.x]));
  canvas.dataset.top = top; canvas.dataset.bottom = bottom;
  const brushes = {};  // axis name -> [lo, hi] in data units
  const count = el("span", { id: "pc-count" });
  const selectedTable = el("table", { id: "pc-selected" });
  const n = d.value.length;
  const inside = (i) => axes.every((a) => {
    const b = brushes[a.name]; if (!b) return true;
    const v = a.values[i]; return v !== null && v >= b[0] && v <= b[1];
  });
  const [vlo, vhi] = extent(d.value);
  const BUCKETS = 12;
  const bucketOf = (v) => { const t = (v - vlo) / (vhi - vlo || 1), q = d.mode === "max" ? t : 1 - t;
    return Math.min(BUCKETS - 1, Math.max(0, Math.floor(q * BUCKETS))); };
  const alpha = Math.max(0.06, Math.min(0.6, 400 / Math.max(1, n)));
  const ys = axes.map((a) => a.values.map((v) => (v === null || (a.log && !(v > 0)) ? bottom + 12 : a.y(v))));
  const hue = (b) => 240 - (200 * (b + 0.5)) / BUCKETS;
  const exactLines = (on) => {  // one path per colour: 100,000 lines in a dozen strokes
    const paths = Array.from({ length: BUCKETS + 1 }, () => new Path2D());
    for (let i = 0; i < n; i++) {
      const path = paths[on[i] ? bucketOf(d.value[i]) : BUCKETS];
      path.moveTo(axes[0].x, ys[0][i]);
      for (let k = 1; k < axes.length; k++) path.lineTo(axes[k].x, ys[k][i]);
    }
    ctx.lineWidth = 1;
    ctx.strokeStyle = `rgba(160,160,160,${alpha / 2})`; ctx.stroke(paths[BUCKETS]);
    for (let b = 0; b < BUCKETS; b++) { ctx.strokeStyle = `hsla(${hue(b)}, 75%, 45%, ${alpha})`; ctx.stroke(paths[b]); }
  };
  const BINS = 90;  // dense: per pair of axes, one segment per (bin, bin) with its count
  const binOf = (py) => Math.min(BINS - 1, Math.max(0, Math.floor(((py - top) / (bottom + 13 - top)) * BINS)));
  const binned = (on) => {
    for (let k = 0; k + 1 < axes.length; k++) {
      const counts = new Map();
      for (let i = 0; i < n; i++) {
        const key = ((on[i] ? 1 : 0) * BINS + binOf(ys[k][i])) * BINS + binOf(ys[k + 1][i]);
        const c = counts.get(key); if (c) { c[0] += 1; c[1] += d.value[i]; } else counts.set(key, [1, d.value[i]]);
      }
      const most = Math.max(...[...counts.values()].map((c) => c[0]));
      const mid = (b) => top + ((b + 0.5) * (bottom + 13 - top)) / BINS;
      for (const pass of [0, 1]) for (const [key, [count, sum]] of counts) {
        const sel = Math.floor(key / (BINS * BINS)); if (sel !== pass) continue;
        const a = Math.floor(key / BINS) % BINS, b = key % BINS;
        const strength = 0.08 + 0.9 * Math.log1p(count) / Math.log1p(most);
        ctx.strokeStyle = sel ? `hsla(${hue(bucketOf(sum / count))}, 75%, 45%, ${strength})` : `rgba(160,160,160,${strength / 2})`;
        ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(axes[k].x, mid(a)); ctx.lineTo(axes[k + 1].x, mid(b)); ctx.stroke();
      }
    }
  };
  const draw = (drag) => {
    ctx.clearRect(0, 0, W, H);
    const selected = [], on = new Uint8Array(n);
    for (let i = 0; i < n; i++) if (inside(i)) { on[i] = 1; selected.push(i); }
    if (dense(n)) binned(on); else exactLines(on);
    ctx.fillStyle = "#222"; ctx.textAlign = "center";
    for (const a of axes) {
      ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(a.x, top); ctx.lineTo(a.x, bottom); ctx.stroke();
      ctx.fillText(a.name + (a.log ? " (log)" : ""), a.x, top - 14);
      ctx.textAlign = "right";
      const labels = a.cats ? a.cats.map((c, i) => [i, c]) : a.y.ticks().map((t) => [t, fmt(t)]);
      for (const [t, label] of labels) ctx.fillText(label, a.x - 4, a.y(t) + 4);
      ctx.textAlign = "center";
      const b = brushes[a.name];
      if (b) { ctx.fillStyle = "rgba(255,193,7,.35)"; const y0 = a.y(b[1]), y1 = a.y(b[0]); ctx.fillRect(a.x - 8, y0, 16, y1 - y0); ctx.fillStyle = "#222"; }
    }
    if (drag) { ctx.fillStyle = "rgba(255,193,7,.35)"; ctx.fillRect(drag.x - 8, Math.min(drag.y0, drag.y1), 16, Math.abs(drag.y1 - drag.y0)); }
    count.textContent = `${selected.length} of ${n} trials selected`;
    count.dataset.selected = selected.length;
    canvas.dataset.brushes = JSON.stringify(brushes);
    const best = selected.sort((a, b) => (d.mode === "max" ? d.value[b] - d.value[a] : d.value[a] - d.value[b])).slice(0, 10);
    selectedTable.replaceChildren(el("tr", {}, ...["trial id", d.metric, ...Object.keys(d.params)].map((h) => el("th", {}, h))),
      ...best.map((i) => el("tr", { "data-trial": d.trial_id[i] },
        el("td", {}, el("a", { href: studyUrl(name, `/curves?trials=${d.trial_id[i]}`) }, d.trial_id[i])),
        el("td", { class: "num" }, fmt(d.value[i])),
        ...Object.keys(d.params).map((p) => el("td", {}, fmt(d.categories[p] && d.params[p][i] !== null ? d.categories[p][d.params[p][i]] : d.params[p][i]))))));
  };
  let drag = null;
  const local = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener("mousedown", (e) => {
    const [mx, my] = local(e);
    const axis = axes.find((a) => Math.abs(a.x - mx) < 16);
    if (axis) drag = { axis, x: axis.x, y0: my, y1: my };
  });
  canvas.addEventListener("mousemove", (e) => { if (drag) { drag.y1 = local(e)[1]; draw(drag); } });
  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const { axis, y0, y1 } = drag; drag = null;
    if (Math.abs(y1 - y0) < 3) delete brushes[axis.name];  // a click clears the axis's brush
    else { const a = axis.y.inv(Math.max(y0, y1)), b = axis.y.inv(Math.min(y0, y1)); brushes[axis.name] = [Math.min(a, b), Math.max(a, b)]; }
    draw();
  });
  view.replaceChildren(el("h1", {}, "Parallel coordinates"),
    el("p", { class: "muted" }, "Drag along an axis to brush a range (several axes combine); click an axis to clear its brush. Colour: ",
      d.metric, " (blue worse, red better).", dense(n) ? ` ${n} trials: lines binned into ${BINS} bins per axis, darker = more trials.` : ""),
    el("div", { class: "chart", style: "overflow:auto" }, canvas), el("p", {}, count),
    el("h2", {}, "Best selected trials"), selectedTable);
  draw();
}

// ---------------------------------------------------------------- view 8: SQL
async function sqlView() {
  setCrumbs(null, "SQL");
  const examples = await fetch("/static/examples.json").then((r) => r.json());
  const box = el("textarea", { id: "sql-text", spellcheck: "false" }, new URLSearchParams(location.search).get("q") || "SELECT * FROM trial_results LIMIT 20");
  const result = el("div", { id: "sql-result" });
  const run = async () => {
    result.replaceChildren(el("p", { class: "muted" }, "running…"));
    try {
      const r = await api("/api/sql", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sql: box.value }) });
      const link = el("a", { id: "sql-csv", href: `/api/sql.csv?q=${enc(box.value)}`, download: "query.csv" }, "download CSV");
      result.replaceChildren(
        el("p", { id: "sql-rows" }, `${r.total} row${r.total === 1 ? "" : "s"}${r.total > r.rows.length ? ` (first ${r.rows.length} shown)` : ""} · `, link),
        el("div", { class: "scroll" }, el("table", { id: "sql-table" },
          el("tr", {}, ...r.columns.map((c) => el("th", {}, c))),
          ...r.rows.map((row) => el("tr", {}, ...row.map((v) => el("td", { class: typeof v === "number" ? "num" : null }, v === null ? "NULL" : typeof v === "number" ? fmt(v) : v)))))));
    } catch (e) {
      result.replaceChildren(el("p", { class: "error", id: "sql-error" }, e.message));
    }
  };
  view.replaceChildren(el("h1", {}, "SQL (read-only)"),
    el("p", { class: "muted" }, "One statement; writes are refused and change nothing (the same guard as `hpsearch sql`). Examples from the README:"),
    el("div", { class: "examples" }, ...examples.map((ex, i) => el("button", { "data-example": i, onclick: () => { box.value = ex.sql; run(); } }, ex.title))),
    box, el("p", {}, el("button", { id: "sql-run", onclick: run }, "Run"), el("span", { class: "muted" }, "  (Ctrl-Enter)")), result);
  box.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
}

// ---------------------------------------------------------------- router
async function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) return await studiesView();
    if (parts[0] === "sql") return await sqlView();
    if (parts[0] === "study" && parts.length === 2) return await studyView(parts[1]);
    if (parts[0] === "study" && parts[2] === "stage") return await liveView(parts[1], Number(parts[3]));
    const views = { trials: trialsView, curves: curvesView, params: paramsView, parallel: parallelView };
    if (parts[0] === "study" && views[parts[2]]) return await views[parts[2]](parts[1]);
    showError(new Error(`no such page: ${location.pathname}`));
  } catch (e) { showError(e); }
  finally { document.body.dataset.ready = "1"; }
}
route();
