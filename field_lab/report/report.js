// The run report's charts: small SVG line charts drawn from the data inlined in the page.
// Hover shows the values under the pointer; the legend hides and shows lines; the CDF's x axis
// switches between log and linear. No library, no request: everything is in this file.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f4e9c", "#c0392b", "#2e8b57", "#d4820f", "#7b4fa0", "#8c564b", "#c2185b", "#00838f"];
  const W = 760, H = 300, M = { top: 12, right: 64, bottom: 42, left: 64 };
  const data = JSON.parse(document.getElementById("report-data").textContent);

  function svg(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(name, attrs, parent, text) {
    const node = document.createElement(name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1000) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return v.toPrecision(2);
  }

  function tick(v) {
    return String(Number(v.toPrecision(6)));
  }

  function linearTicks(lo, hi, count) {
    const span = hi - lo || 1;
    const raw = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step, i = 0; t <= hi + step * 1e-9 && i < 50; t += step, i++) {
      ticks.push(Number(t.toPrecision(12)));
    }
    return ticks;
  }

  function logTicks(lo, hi) {
    const ticks = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)) && ticks.length < 40; e++) {
      for (const m of [1, 2, 5]) {
        const t = m * Math.pow(10, e);
        if (t >= lo && t <= hi) ticks.push(Number(t.toPrecision(12)));
      }
    }
    return ticks;
  }

  function scale(lo, hi, from, to, log) {
    if (log) {
      const a = Math.log10(lo), b = Math.log10(hi);
      const f = (v) => from + ((Math.log10(Math.max(v, lo)) - a) / (b - a || 1)) * (to - from);
      f.invert = (p) => Math.pow(10, a + ((p - from) / (to - from)) * (b - a));
      return f;
    }
    const f = (v) => from + ((v - lo) / (hi - lo || 1)) * (to - from);
    f.invert = (p) => lo + ((p - from) / (to - from)) * (hi - lo);
    return f;
  }

  // The value a line has at x: for a step (CDF) the last point at or before x, else the nearest.
  function valueAt(points, x, step) {
    if (!points.length) return null;
    if (step) {
      let found = null;
      for (const [px, py] of points) {
        if (px <= x) found = py;
        else break;
      }
      return found === null ? 0 : found;
    }
    let best = points[0];
    for (const p of points) if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
    return best[1];
  }

  // spec: {host, x: {label, log}, y: {label, max?}, y2?: {label}, step, marks?, lines: [{name,
  // points, axis: "y"|"y2", count?, countKey?}]}
  function chart(spec) {
    const host = spec.host;
    const hidden = new Set();
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" }, host);
    const legend = html("div", { class: "legend" }, host);
    const tip = html("div", { class: "tooltip" }, host);
    spec.lines.forEach((line, i) => { line.color = COLORS[i % COLORS.length]; });

    function draw() {
      while (box.firstChild) box.removeChild(box.firstChild);
      const shown = spec.lines.filter((l) => !hidden.has(l.name) && l.points.length);
      const all = spec.lines.flatMap((l) => l.points);
      if (!all.length) {
        svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, box).textContent =
          "nothing was recorded";
        return;
      }
      const log = Boolean(spec.x.log);
      let xs = all.map((p) => p[0]).concat((spec.marks || []).map((m) => m.limit));
      if (log) xs = xs.filter((v) => v > 0);
      let x0 = xs.reduce((m, v) => Math.min(m, v), Infinity);
      let x1 = xs.reduce((m, v) => Math.max(m, v), -Infinity);
      if (log) { x0 = Math.max(x0, 0.001) / 1.2; x1 = x1 * 1.2; } else { x0 = Math.min(0, x0); }
      if (!Number.isFinite(x0) || !Number.isFinite(x1)) { x0 = log ? 0.001 : 0; x1 = 1; }
      if (x1 <= x0) x1 = x0 + 1;
      const yMax = (axis) => spec.lines
        .filter((l) => l.axis === axis)
        .reduce((m, l) => l.points.reduce((n, p) => Math.max(n, p[1]), m), 1);
      const sx = scale(x0, x1, M.left, W - M.right, log);
      const sy = scale(0, spec.y.max || yMax("y") * 1.05, H - M.bottom, M.top, false);
      const sy2 = spec.y2 ? scale(0, yMax("y2") * 1.05, H - M.bottom, M.top, false) : null;

      const xt = log ? logTicks(x0, x1) : linearTicks(x0, x1, 8);
      for (const t of xt) {
        const px = sx(t);
        svg("line", { x1: px, x2: px, y1: M.top, y2: H - M.bottom, class: "grid" }, box);
        svg("text", { x: px, y: H - M.bottom + 15, "text-anchor": "middle" }, box).textContent = tick(t);
      }
      for (const t of linearTicks(0, sy.invert(M.top), 5)) {
        const py = sy(t);
        svg("line", { x1: M.left, x2: W - M.right, y1: py, y2: py, class: "grid" }, box);
        svg("text", { x: M.left - 6, y: py + 4, "text-anchor": "end" }, box).textContent = tick(t);
      }
      if (sy2) {
        for (const t of linearTicks(0, sy2.invert(M.top), 5)) {
          svg("text", { x: W - M.right + 6, y: sy2(t) + 4 }, box).textContent = tick(t);
        }
        svg("text", { transform: `translate(${W - 14},${(H - M.bottom + M.top) / 2}) rotate(90)`, "text-anchor": "middle" }, box)
          .textContent = spec.y2.label;
      }
      svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }, box);
      svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }, box);
      svg("text", { x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle" }, box).textContent =
        spec.x.label + (log ? " (log scale)" : "");
      svg("text", { transform: `translate(16,${(H - M.bottom + M.top) / 2}) rotate(-90)`, "text-anchor": "middle" }, box)
        .textContent = spec.y.label;

      for (const mark of spec.marks || []) {
        const px = sx(mark.limit), py = sy(mark.p / 100);
        svg("line", { x1: px, x2: px, y1: M.top, y2: H - M.bottom, class: "slo" }, box);
        svg("line", { x1: M.left, x2: W - M.right, y1: py, y2: py, class: "slo" }, box);
        svg("text", { x: px - 4, y: M.top + 12, "text-anchor": "end", class: "slo" }, box).textContent =
          `SLO p(${mark.p}) < ${fmt(mark.limit)} s`;
      }
      for (const line of shown) {
        const sY = line.axis === "y2" ? sy2 : sy;
        let d = "";
        line.points.forEach(([x, y], i) => {
          if (log && x <= 0) return;
          const px = sx(x).toFixed(1), py = sY(y).toFixed(1);
          if (!d) d = spec.step ? `M${sx(x0).toFixed(1)},${sY(0).toFixed(1)}H${px}V${py}` : `M${px},${py}`;
          else d += spec.step ? `H${px}V${py}` : `L${px},${py}`;
          if (spec.step && i === line.points.length - 1) d += `H${(W - M.right).toFixed(1)}`;
        });
        svg("path", { d, class: "series", stroke: line.color, "data-line": line.name }, box);
      }
      const cross = svg("line", { y1: M.top, y2: H - M.bottom, class: "crosshair", visibility: "hidden" }, box);
      const overlay = svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, fill: "transparent" }, box);
      overlay.addEventListener("mousemove", (event) => {
        const rect = box.getBoundingClientRect();
        const px = ((event.clientX - rect.left) / rect.width) * W;
        const x = sx.invert(px);
        cross.setAttribute("x1", px);
        cross.setAttribute("x2", px);
        cross.setAttribute("visibility", "visible");
        const rows = [`${spec.x.short} ${fmt(x)}`];
        for (const line of shown) {
          const v = valueAt(line.points, x, spec.step);
          rows.push(`${line.name}: ${spec.step ? (100 * v).toFixed(1) + " %" : fmt(v)}`);
        }
        tip.textContent = rows.join("\n");
        tip.style.display = "block";
        const hostRect = host.getBoundingClientRect();
        tip.style.left = `${event.clientX - hostRect.left + 14}px`;
        tip.style.top = `${event.clientY - hostRect.top + 10}px`;
      });
      overlay.addEventListener("mouseleave", () => {
        cross.setAttribute("visibility", "hidden");
        tip.style.display = "none";
      });
    }

    for (const line of spec.lines) {
      const button = html("button", { type: "button", "data-line": line.name }, legend);
      const swatch = svg("svg", { width: 14, height: 6, class: "swatch" }, button);
      svg("line", { x1: 0, x2: 14, y1: 3, y2: 3, stroke: line.color, "stroke-width": 3 }, swatch);
      button.appendChild(document.createTextNode(line.name));
      if (line.countKey) {
        button.appendChild(document.createTextNode(" (n="));
        html("span", { class: "fig", "data-key": JSON.stringify(line.countKey), "data-format": "int" }, button,
          line.count === null ? "–" : String(line.count));
        button.appendChild(document.createTextNode(")"));
      }
      button.addEventListener("click", () => {
        if (hidden.has(line.name)) hidden.delete(line.name); else hidden.add(line.name);
        button.classList.toggle("off", hidden.has(line.name));
        draw();
      });
    }
    if (spec.toggleLog) {
      const controls = html("div", { class: "controls" }, host);
      const button = html("button", { type: "button", class: "log-toggle" }, controls, "linear x");
      button.addEventListener("click", () => {
        spec.x.log = !spec.x.log;
        button.textContent = spec.x.log ? "linear x" : "log x";
        draw();
      });
    }
    draw();
  }

  function column(name) {
    const t = data.series.t_s || [];
    const v = data.series[name] || [];
    return t.map((x, i) => [x, v[i]]).filter((p) => p[1] !== null && p[1] !== undefined);
  }

  chart({
    host: document.getElementById("chart-cdf"),
    x: { label: "seconds from the planned payment to the light on", short: "s", log: true },
    y: { label: "share of payments", max: 1 },
    step: true,
    toggleLog: true,
    marks: data.activation_slo,
    lines: data.cdf.map((c) => ({ name: c.name, points: c.points, axis: "y", count: c.count, countKey: c.count_key })),
  });
  chart({
    host: document.getElementById("chart-sales"),
    x: { label: "run time (s)", short: "t" },
    y: { label: "count since the field phase began" },
    lines: [
      { name: "sales attempted (visits ended)", points: column("sales"), axis: "y" },
      { name: "sales with the light on in the visit", points: column("sales_ok"), axis: "y" },
      { name: "payments with the light on", points: column("activations"), axis: "y" },
    ],
  });
  chart({
    host: document.getElementById("chart-queue"),
    x: { label: "run time (s)", short: "t" },
    y: { label: "operations queued on handsets" },
    y2: { label: "handsets with their link down" },
    lines: [
      { name: "outbox queue depth", points: column("queue_depth"), axis: "y" },
      { name: "links down", points: column("links_down"), axis: "y2" },
    ],
  });
  document.documentElement.setAttribute("data-charts", String(document.querySelectorAll(".chart > svg").length));
})();
