// paretune ui: live curves (uPlot), the runs table's refresh, the frontier's hover, the playground.
// No inline script anywhere (the Content-Security-Policy forbids it): pages carry data- attributes.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const PALETTE = ["#2f6fdd", "#e4572e", "#1f8a4c", "#9b59b6", "#b7791f", "#17a2b8", "#d63384", "#6c757d"];

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }

  // --- one chart: uPlot over [steps, ...series], redrawn when data arrives -----------------
  // Axis and grid colours are read when a chart is made: when the browser switches between light
  // and dark, every chart is made again with the new colours.
  const CHARTS = [];
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    for (const chart of CHARTS) if (chart.last) { chart.names = []; chart.draw(...chart.last); }
  });

  class Chart {
    constructor(el) { this.el = el; this.plot = null; this.names = []; this.last = null; CHARTS.push(this); }
    draw(steps, columns, labels) {
      this.last = [steps, columns, labels];
      const names = Object.keys(columns);
      let points = 0;
      for (let i = 0; i < steps.length; i++) if (names.some((n) => columns[n][i] != null)) points++;
      this.el.dataset.points = String(points);
      if (!names.length) { this.el.dataset.empty = "1"; return; }
      delete this.el.dataset.empty;
      const data = [steps].concat(names.map((n) => columns[n]));
      if (this.plot && names.join() === this.names.join()) { this.plot.setData(data); return; }
      if (this.plot) this.plot.destroy();
      this.names = names;
      const fg = css("--fg"), grid = css("--line");
      this.el.dataset.theme = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
      const axis = { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid },
        values: (u, ticks) => ticks.map((v) => (v == null ? "" : String(Number(v.toPrecision(3))))) };
      this.plot = new uPlot({
        title: this.el.dataset.title, width: Math.max(260, this.el.clientWidth), height: 240,
        scales: { x: { time: false } }, axes: [Object.assign({ label: "step" }, axis), Object.assign({ size: 64 }, axis)],
        series: [{ label: "step" }].concat(names.map((n, i) => ({
          label: labels ? labels[i] : n, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
          points: { show: steps.length < 60 } }))),
      }, data, this.el);
      new ResizeObserver(() => this.plot && this.plot.setSize({ width: Math.max(260, this.el.clientWidth), height: 240 }))
        .observe(this.el);
    }
  }

  // --- the run page: three charts fed from /api/curves, polled while the run trains --------
  function pick(columns, chart, metric) {
    const names = Object.keys(columns);
    let chosen;
    if (chart === "loss") chosen = names.filter((n) => /(^|[._])loss$/.test(n));
    else if (chart === "lr") chosen = names.filter((n) => n === "lr");
    else {
      const wanted = "validation." + metric;
      chosen = names.includes(wanted) ? [wanted]
        : names.filter((n) => n.startsWith("validation.") && !n.endsWith("loss")).slice(0, 1);
    }
    const out = {};
    for (const n of chosen) out[n] = columns[n];
    return out;
  }

  function runCurves(box) {
    const charts = [...box.querySelectorAll(".chart")].map((el) => [el.dataset.chart, new Chart(el)]);
    const note = document.getElementById("curves-note");
    let offset = 0, steps = [], columns = {};
    async function poll() {
      let got;
      try { got = await getJSON(`/api/curves/${encodeURIComponent(box.dataset.run)}?offset=${offset}`); }
      catch (err) { note.textContent = "could not read the curves: " + err.message; return; }
      if (got.reset) { steps = []; columns = {}; }
      const before = steps.length;
      steps = steps.concat(got.steps);
      for (const name of Object.keys(got.series)) {
        if (!columns[name]) columns[name] = new Array(before).fill(null);
      }
      for (const name of Object.keys(columns)) {
        columns[name] = columns[name].concat(got.series[name] || new Array(got.steps.length).fill(null));
      }
      offset = got.offset;
      if (got.kept < got.rows) note.textContent = `${got.rows.toLocaleString()} logged steps, drawn as ${got.kept.toLocaleString()}.`;
      if (got.steps.length || got.reset || !before) {
        for (const [kind, chart] of charts) chart.draw(steps, pick(columns, kind, box.dataset.metric));
      }
      box.dataset.rows = String(steps.length);
    }
    poll();
    if (box.dataset.live === "1") setInterval(poll, 2000);
  }

  // --- compare: each run's curve on one step axis ------------------------------------------
  async function overlay(box) {
    const ids = box.dataset.runs.split(",");
    const all = await Promise.all(ids.map((id) => getJSON(`/api/curves/${encodeURIComponent(id)}`)));
    const steps = [...new Set(all.flatMap((c) => c.steps))].sort((a, b) => a - b);
    const where = new Map(steps.map((s, i) => [s, i]));
    for (const el of box.querySelectorAll(".chart")) {
      const columns = {}, labels = [];
      all.forEach((curves, r) => {
        const picked = el.dataset.chart === "train_loss" ? { train_loss: curves.series.train_loss }
          : pick(curves.series, "metric", el.dataset.metric);
        for (const [name, values] of Object.entries(picked)) {
          if (!values) continue;
          const column = new Array(steps.length).fill(null);
          curves.steps.forEach((s, i) => { column[where.get(s)] = values[i]; });
          columns[ids[r] + " " + name] = column; labels.push(ids[r]);
        }
      });
      new Chart(el).draw(steps, columns, labels);
    }
  }

  // --- runs page: the rows refreshed in place, boxes kept ticked ---------------------------
  function refreshRuns(table) {
    const body = document.getElementById("runs-body");
    setInterval(async () => {
      const ticked = new Set([...body.querySelectorAll("input:checked")].map((b) => b.value));
      const response = await fetch(table.dataset.poll + "&partial=1", { credentials: "same-origin" });
      if (!response.ok) return;
      body.innerHTML = await response.text();
      for (const box of body.querySelectorAll("input[type=checkbox]")) box.checked = ticked.has(box.value);
    }, 4000);
  }

  // --- frontier: hovering a point names its run --------------------------------------------
  function frontierTips(tip) {
    for (const point of document.querySelectorAll("svg.scatter .pt")) {
      point.addEventListener("mouseenter", () => { tip.textContent = point.dataset.label; tip.classList.add("active"); });
      point.addEventListener("focus", () => { tip.textContent = point.dataset.label; tip.classList.add("active"); });
    }
  }

  // --- playground ----------------------------------------------------------------------------
  function show(answer, text, got) {
    const p = got.prediction;
    answer.replaceChildren();
    const add = (tag, content, cls) => { const e = document.createElement(tag); if (content != null) e.textContent = content; if (cls) e.className = cls; answer.appendChild(e); return e; };
    if (Array.isArray(p.entities)) {  // NER: the text with each entity marked
      const line = add("p", null, "entities"); let at = 0;
      for (const ent of [...p.entities].sort((a, b) => a.start - b.start)) {
        line.append(text.slice(at, ent.start));
        const mark = document.createElement("mark"); mark.textContent = text.slice(ent.start, ent.end);
        const type = document.createElement("small"); type.textContent = ent.type; mark.appendChild(type);
        line.appendChild(mark); at = ent.end;
      }
      line.append(text.slice(at));
      if (!p.entities.length) add("p", "No entities found.", "note");
    } else if (typeof p.completion === "string") {  // a generative run's answer
      add("div", text, "chat user"); add("div", p.completion, "chat answer");
    } else {
      add("p", p.label !== undefined ? `${p.label}${p.score != null ? ` (${Number(p.score).toFixed(3)})` : ""}`
        : (p.labels ? "labels: " + p.labels.join(", ") : (p.value !== undefined ? "value: " + p.value : "")), "prediction");
      const scores = p.scores || {};
      const table = add("table", null, "kv");
      for (const [label, score] of Object.entries(scores).sort((a, b) => b[1] - a[1])) {
        const row = table.insertRow(); row.insertCell().textContent = label;
        const cell = row.insertCell(); cell.className = "num"; cell.textContent = Number(score).toFixed(4);
        const bar = row.insertCell(); const b = document.createElement("div"); b.className = "bar";
        b.style.width = Math.round(100 * Math.max(0, Math.min(1, score))) + "px"; bar.appendChild(b);
      }
    }
    const raw = add("details"); const summary = document.createElement("summary"); summary.textContent = "JSON";
    const pre = document.createElement("pre"); pre.textContent = JSON.stringify(p, null, 2); raw.append(summary, pre);
  }

  // A generative run: the conversation so far is sent each turn, the answer streams in (SSE).
  function chat(form) {
    const log = document.getElementById("conversation"), answer = document.getElementById("answer");
    const messages = [];
    const bubble = (role, text) => { const b = document.createElement("div"); b.className = "chat " + role; b.textContent = text; log.appendChild(b); return b; };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const content = form.elements.text.value.trim();
      if (!content) return;
      messages.push({ role: "user", content }); bubble("user", content); form.elements.text.value = "";
      const reply = bubble("assistant", ""); answer.dataset.state = "streaming";
      const response = await fetch(`/api/chat/${encodeURIComponent(form.dataset.run)}`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify({ messages }) });
      if (!response.ok) {
        const got = await response.json().catch(() => ({}));
        reply.textContent = "error: " + (got.detail || response.status); answer.dataset.state = "error"; messages.pop(); return;
      }
      const reader = response.body.getReader(), decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = JSON.parse(buffer.slice(0, cut).replace(/^data: /, "")); buffer = buffer.slice(cut + 2);
          if (event.delta) reply.textContent += event.delta;
          if (event.error) reply.textContent += " [error: " + event.error + "]";
          if (event.done && !reply.textContent) { reply.textContent = `(no text; the answer ended: ${event.finish_reason})`; reply.classList.add("note"); }
        }
      }
      messages.push({ role: "assistant", content: reply.textContent.trim() || "…" });
      answer.dataset.state = "answered";
    });
  }

  function playground(form) {
    if (form.dataset.chat === "1") return chat(form);
    const answer = document.getElementById("answer");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const image = form.elements.image && form.elements.image.files[0];  // an image run: the file's bytes
      const text = image ? "" : form.elements.text.value;
      answer.textContent = "…";
      const response = await fetch(`/api/predict/${encodeURIComponent(form.dataset.run)}`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": image ? (image.type || "application/octet-stream") : "application/json",
                   "X-CSRF-Token": csrf },
        body: image ? image : JSON.stringify({ text }) });
      const got = await response.json().catch(() => ({ detail: response.statusText }));
      if (!response.ok) { answer.textContent = "error: " + (got.detail || response.status); answer.dataset.state = "error"; return; }
      show(answer, text, got);
      answer.dataset.state = "answered";
    });
  }

  const curves = document.getElementById("curves"); if (curves) runCurves(curves);
  const compared = document.getElementById("overlay"); if (compared) overlay(compared);
  const runs = document.getElementById("runs"); if (runs) refreshRuns(runs);
  const tip = document.getElementById("tip"); if (tip) frontierTips(tip);
  const form = document.getElementById("try"); if (form) playground(form);
})();
