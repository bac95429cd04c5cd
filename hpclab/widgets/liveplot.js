// hpclab's live plot, drawn by the browser on a <canvas> (the widget: liveplot.py).
//
// The kernel sends each new point once (a few bytes, in "append" messages); this file
// keeps every series of the model, rescales the axes and draws at most once per animation
// frame: messages arriving between two frames are drawn together (frames are dropped,
// never queued). Panels side by side, each with lines, point markers, a "head" dot, or
// stacked horizontal bars; the model's `k` cuts series marked `cut` after point k (the
// playground's step slider, linked in the browser).
//
// Readouts (the model's `readouts`): the latest value of each key ("values" in the
// messages), written as text in a row above the canvas at each frame.
//
// The canvas carries `canvas.hpclab` (points per series, draws, and the latency from each
// record's time stamp to the frame that showed it) for the browser tests.

const FONT = "13px sans-serif";
const TITLE_FONT = "bold 14px sans-serif";
const PAD = { left: 62, right: 14, top: 28, bottom: 44 };
const GAP = 36;                 // px between panels
const MAX_LATENCIES = 20000;

// data shared by the model's views, by the model's uid (anywidget hands initialize and
// render different wrappers of one model, so the wrapper cannot be the key)
const stores = new Map();

function store(model) {
  const uid = model.get("uid");
  if (!stores.has(uid)) {
    stores.set(uid, { series: {}, bars: {}, values: {}, views: new Set(), unseen: [],
                      latencies: [], draws: 0, messages: 0, limits: {} });
  }
  return stores.get(uid);
}

function apply(st, msg) {
  st.messages += 1;
  if (msg.kind === "reset") {
    st.series = {};
    st.bars = {};
    st.values = {};
    st.limits = {};
  }
  for (const [id, [xs, ys]] of Object.entries(msg.data || {})) {
    const s = st.series[id] || (st.series[id] = { xs: [], ys: [] });
    if (msg.kind === "replace") { s.xs = []; s.ys = []; }
    for (let i = 0; i < xs.length; i++) {
      s.xs.push(xs[i]);
      s.ys.push(ys[i]);
      if (ys[i] === null) s.gaps = true;      // a line in pieces: never thin it
    }
  }
  for (const [panel, bars] of Object.entries(msg.bars || {})) st.bars[panel] = bars;
  Object.assign(st.values, msg.values || {});
  // step end times: t0 (s since the epoch) and each one's offset from it in ms
  if (msg.t) for (const dt of msg.t.ms) st.unseen.push(msg.t.t0 + dt / 1000);
}

// -- scales and ticks -------------------------------------------------------------------
function niceStep(span, n) {
  const raw = span / n, p = 10 ** Math.floor(Math.log10(raw)), f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

function linearTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return { ticks: [lo], step: 1 };
  const step = niceStep(hi - lo, n), out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return { ticks: out, step };
}

function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.ceil(Math.log10(lo) - 1e-9); e <= Math.floor(Math.log10(hi) + 1e-9); e++) out.push(10 ** e);
  const every = Math.max(1, Math.ceil(out.length / 6));
  return { ticks: out.filter((_, i) => i % every === 0), step: 0 };
}

function fmt(v, step) {
  const a = Math.abs(v);
  if (step === 0) return a >= 1e-3 && a < 1e4 ? String(+v.toPrecision(3)) : v.toExponential(0);
  if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
  const d = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(d);
}

// Keep the current range while the data fit and fill more than a quarter of it; else a
// new one with head-room, so the ticks change only now and then.
function stepped(lo, hi, cur, zeroFloor, room) {
  if (!isFinite(lo) || !isFinite(hi)) return cur || [0, 1];
  if (cur && cur[0] <= lo && hi <= cur[1] && (hi - lo) >= (cur[1] - cur[0]) / 4) return cur;
  const pad = room * Math.max(hi - lo, Math.abs(hi) * 1e-3, 1e-12);
  // from zero, but a little below it: a line at 0 stays visible above the frame
  return [zeroFloor && lo >= 0 ? -0.03 * (hi + pad) : lo - pad, hi + pad];
}

function dataRange(st, panel, seriesDefs, axis) {
  let lo = Infinity, hi = -Infinity;
  for (const def of seriesDefs) {
    if (def.panel !== panel.id || def.scale === false) continue;
    const s = st.series[def.source || def.id];
    if (!s) continue;
    const v = axis === "x" ? s.xs : s.ys;
    for (const x of v) {
      if (!Number.isFinite(x)) continue;
      if (panel.ylog && axis === "y" && !(x > 0)) continue;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
  }
  return [lo, hi];
}

function limits(st, panel, seriesDefs, axis) {
  const fixed = axis === "x" ? panel.xlim : panel.ylim;
  if (fixed) return fixed;
  const key = panel.id + axis;
  let [lo, hi] = dataRange(st, panel, seriesDefs, axis);
  if (panel.ylog && axis === "y") {
    if (!isFinite(lo)) return [1e-3, 1];
    const cur = st.limits[key];
    if (cur && cur[0] <= lo && hi <= cur[1]) return cur;
    return (st.limits[key] = [lo / 2, hi * 2]);
  }
  const room = axis === "x" ? 3.0 : 0.3;
  return (st.limits[key] = stepped(axis === "x" ? 0 : lo, hi, st.limits[key],
                                   panel.zero_floor !== false, room));
}

// -- drawing ----------------------------------------------------------------------------
function readoutText(def, v) {
  if (v === undefined || v === null) return `${def.label} —`;
  if (def.format === "percent") return `${def.label} ${(100 * v).toPrecision(3)} %`;
  return `${def.label} ${+v.toPrecision(4)}`;
}

function drawReadouts(view) {
  const defs = view.model.get("readouts") || [];
  view.readouts.style.display = defs.length ? "flex" : "none";
  while (view.readouts.children.length > defs.length) view.readouts.lastChild.remove();
  defs.forEach((def, i) => {
    let span = view.readouts.children[i];
    if (!span) {
      span = document.createElement("span");
      span.className = "hpclab-liveplot-readout";
      view.readouts.appendChild(span);
    }
    span.dataset.key = def.key;
    const text = readoutText(def, view.st.values[def.key]);
    if (span.textContent !== text) span.textContent = text;
  });
}

function draw(view) {
  drawReadouts(view);
  const { model, canvas, st } = view;
  const panels = model.get("panels"), defs = model.get("series");
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(300, Math.min(view.el.clientWidth || 900, model.get("max_width")));
  const height = model.get("height");
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, width, height);
  const total = panels.reduce((a, p) => a + (p.weight || 1), 0);
  const usable = width - GAP * (panels.length - 1);
  let x0 = 0;
  const k = model.get("k");
  const boxes = [];
  for (const panel of panels) {
    const w = usable * (panel.weight || 1) / total;
    // whole pixels: 1-px frame lines stay sharp (and dark) instead of two grey halves
    const box = { x0: Math.round(x0 + (panel.pad_left ?? PAD.left)), x1: Math.round(x0 + w - PAD.right),
                  y0: PAD.top, y1: height - (panel.pad_bottom ?? PAD.bottom) };
    boxes.push(box);
    if (panel.kind === "bars") drawBars(ctx, st, panel, box);
    else drawXY(ctx, st, panel, defs, box, k);
    x0 += w + GAP;
  }
  st.draws += 1;
  canvas.hpclab.boxes = boxes;
}

function frame(ctx, panel, box) {
  ctx.fillStyle = "#222";
  ctx.font = TITLE_FONT;
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(panel.title || "", (box.x0 + box.x1) / 2, box.y0 - 8);
  ctx.strokeStyle = "#222";
  ctx.lineWidth = 1;
  ctx.strokeRect(box.x0 + 0.5, box.y0 + 0.5, box.x1 - box.x0, box.y1 - box.y0);
}

function drawXY(ctx, st, panel, defs, box, k) {
  const [xl, xh] = limits(st, panel, defs, "x");
  const [yl, yh] = limits(st, panel, defs, "y");
  const log = !!panel.ylog;
  const ly = (v) => (log ? Math.log10(Math.max(v, 1e-300)) : v);
  const Y0 = ly(yl), Y1 = ly(yh);
  const px = (x) => box.x0 + (x - xl) / (xh - xl || 1) * (box.x1 - box.x0);
  const py = (y) => box.y1 - (ly(y) - Y0) / (Y1 - Y0 || 1) * (box.y1 - box.y0);
  // grid and ticks
  ctx.font = FONT;
  ctx.fillStyle = "#222";
  const xt = linearTicks(xl, xh, 5), yt = log ? logTicks(yl, yh) : linearTicks(yl, yh, 4);
  ctx.strokeStyle = "#e6e6e6";
  ctx.lineWidth = 1;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of xt.ticks) {
    const x = Math.round(px(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, box.y0); ctx.lineTo(x, box.y1); ctx.stroke();
    ctx.fillText(fmt(t, xt.step), x, box.y1 + 5);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of yt.ticks) {
    const y = Math.round(py(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(box.x0, y); ctx.lineTo(box.x1, y); ctx.stroke();
    ctx.fillText(fmt(t, yt.step), box.x0 - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  if (panel.xlabel) ctx.fillText(panel.xlabel, (box.x0 + box.x1) / 2, box.y1 + 38);
  // data, clipped to the box
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  ctx.clip();
  const legend = [];
  for (const def of defs) {
    if (def.panel !== panel.id) continue;
    const s = st.series[def.source || def.id];
    let n = s ? s.xs.length : 0;
    if (def.cut && k >= 0) n = Math.min(n, k + 1);
    if (def.label && n) legend.push(def);
    if (!n) continue;
    ctx.strokeStyle = ctx.fillStyle = def.color || "#000";
    ctx.globalAlpha = def.alpha ?? 1;
    ctx.lineWidth = def.width ?? 1.5;
    const mode = def.mode || "line";
    if (mode === "line") {
      // at most ~2 points per pixel column: the line looks the same, the cost stays flat
      const stride = s.gaps ? 1 : Math.max(1, Math.floor(n / (2 * (box.x1 - box.x0))));
      ctx.beginPath();
      let started = false;
      for (let i = 0; ; i = Math.min(i + stride, n - 1)) {
        const y = s.ys[i];
        if (!Number.isFinite(y) || (log && !(y > 0))) started = false;
        else if (started) ctx.lineTo(px(s.xs[i]), py(y));
        else { ctx.moveTo(px(s.xs[i]), py(y)); started = true; }
        if (i === n - 1) break;
      }
      ctx.stroke();
    } else {
      const r = def.size ?? 3;
      const from = mode === "head" ? n - 1 : 0;
      for (let i = from; i < n; i++) {
        if (!Number.isFinite(s.ys[i])) continue;
        ctx.beginPath();
        ctx.arc(px(s.xs[i]), py(s.ys[i]), r, 0, 2 * Math.PI);
        ctx.fill();
        if (mode === "head") { ctx.globalAlpha = 1; ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke(); }
      }
    }
    ctx.globalAlpha = 1;
  }
  ctx.restore();
  frame(ctx, panel, box);
  if (legend.length) drawLegend(ctx, legend, box, panel.legend || "upper right");
}

function drawLegend(ctx, items, box, where) {
  ctx.font = FONT;
  const w = Math.max(...items.map((d) => ctx.measureText(d.label).width)) + 34, h = 18 * items.length + 6;
  const x = Math.round(where.endsWith("left") ? box.x0 + 6 : box.x1 - w - 6);
  const y = where.startsWith("lower") ? box.y1 - h - 6 : box.y0 + 6;
  ctx.fillStyle = "rgba(255,255,255,0.85)";
  ctx.strokeStyle = "#bbb";
  ctx.fillRect(x, y, w, h);
  ctx.strokeRect(x + 0.5, y + 0.5, w, h);
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  items.forEach((d, i) => {
    const yy = y + 12 + 18 * i;
    ctx.strokeStyle = ctx.fillStyle = d.color || "#000";
    ctx.lineWidth = Math.max(2, d.width ?? 1.5);
    if (d.mode === "points") { ctx.beginPath(); ctx.arc(x + 15, yy, 3.5, 0, 2 * Math.PI); ctx.fill(); }
    else { ctx.beginPath(); ctx.moveTo(x + 6, yy); ctx.lineTo(x + 24, yy); ctx.stroke(); }
    ctx.fillStyle = "#222";
    ctx.fillText(d.label, x + 28, yy);
  });
}

// bars = {rows: [{label, color, segments: [[value, color], ...]}], legend: [[name, color]], unit}
function drawBars(ctx, st, panel, box) {
  const bars = st.bars[panel.id] || { rows: [], legend: [] };
  const sums = bars.rows.map((r) => r.segments.reduce((a, [v]) => a + v, 0));
  const key = panel.id + "x";
  const [xl, xh] = (st.limits[key] = stepped(0, Math.max(...sums, 1e-9), st.limits[key], true, 0.5));
  const px = (x) => box.x0 + (x - xl) / (xh - xl) * (box.x1 - box.x0);
  const xt = linearTicks(xl, xh, 4);
  ctx.font = FONT;
  ctx.strokeStyle = "#e6e6e6";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of xt.ticks) {
    const x = Math.round(px(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, box.y0); ctx.lineTo(x, box.y1); ctx.stroke();
    ctx.fillStyle = "#222";
    ctx.fillText(fmt(t, xt.step), x, box.y1 + 5);
  }
  const n = Math.max(bars.rows.length, 1), rowH = (box.y1 - box.y0) / n;
  bars.rows.forEach((row, i) => {
    const y = box.y0 + rowH * (i + 0.15), h = rowH * 0.7;
    let left = 0;
    for (const [v, color] of row.segments) {
      ctx.fillStyle = color;
      ctx.fillRect(px(left), y, px(left + v) - px(left), h);
      left += v;
    }
    ctx.fillStyle = row.color || "#222";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(row.label, box.x0 - 6, y + h / 2);
    ctx.textAlign = "left";
    ctx.fillStyle = "#222";
    if (sums[i] > 0 && px(sums[i]) + 50 < box.x1) ctx.fillText(fmt(sums[i], xt.step / 10), px(sums[i]) + 4, y + h / 2);
  });
  frame(ctx, panel, box);
  // legend below the box, in rows as wide as the box
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  let x = box.x0, yy = box.y1 + 30;
  for (const [name, color] of bars.legend || []) {
    const w = ctx.measureText(name).width + 28;
    if (x > box.x0 && x + w > box.x1 + PAD.right) { x = box.x0; yy += 18; }
    ctx.fillStyle = color;
    ctx.fillRect(x, yy - 6, 12, 12);
    ctx.fillStyle = "#222";
    ctx.fillText(name, x + 16, yy);
    x += w;
  }
}

function schedule(view) {
  if (view.pending) return;            // a frame is already asked for: this news joins it
  view.pending = true;
  requestAnimationFrame(() => {
    view.pending = false;
    const st = view.st;
    draw(view);
    if (st.unseen.length) {            // every view of the model shows the same data
      const now = (performance.timeOrigin + performance.now()) / 1000;
      for (const t of st.unseen) st.latencies.push(now - t);
      st.unseen = [];
      if (st.latencies.length > MAX_LATENCIES) st.latencies.splice(0, st.latencies.length - MAX_LATENCIES);
    }
  });
}

function initialize({ model }) {
  const st = store(model);
  model.on("msg:custom", (msg) => {
    apply(st, msg);
    for (const v of st.views) schedule(v);
  });
  model.send({ kind: "hello" });       // after a page reload: ask the kernel for all data
}

function render({ model, el }) {
  const st = store(model);
  const readouts = document.createElement("div");
  readouts.className = "hpclab-liveplot-readouts";
  readouts.style.cssText = "display:none;gap:18px;font:bold 14px sans-serif;color:#222;" +
                           "padding:2px 0 4px 62px";
  el.appendChild(readouts);
  const canvas = document.createElement("canvas");
  canvas.className = "hpclab-liveplot";
  canvas.hpclab = st;
  el.appendChild(canvas);
  const view = { model, el, canvas, readouts, st, pending: false };
  st.views.add(view);
  const redraw = () => schedule(view);
  model.on("change:k", redraw);
  model.on("change:panels", redraw);
  model.on("change:series", redraw);
  model.on("change:height", redraw);
  model.on("change:readouts", redraw);
  const observer = new ResizeObserver(redraw);
  observer.observe(el);
  schedule(view);
  return () => {
    observer.disconnect();
    st.views.delete(view);
    model.off("change:k", redraw);
    model.off("change:panels", redraw);
    model.off("change:series", redraw);
    model.off("change:height", redraw);
    model.off("change:readouts", redraw);
  };
}

export default { initialize, render };
