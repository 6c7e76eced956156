// The status page: polls /v1/status and draws it. Hand-written, no library.
//
// Every string from the server (model names, labels, signature keys, error
// messages) reaches the page through textContent or createTextNode, never as
// markup, so a model named "<img src=x onerror=alert(1)>" shows as those
// characters. Nodes are kept per model and updated in place, so an open
// <details> stays open across polls.
(function () {
  "use strict";

  const POLL_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 300;
  const H = 72;

  // --- DOM helpers -----------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      node.setAttribute(k, String(v));
    }
    return node;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  // --- Formatting ------------------------------------------------------------

  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const d = digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
    return Number(v).toFixed(d);
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (d) return d + "d " + h + "h " + m + "m";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m" + (sec ? " " + sec + "s" : "");
    return sec + "s";
  }

  function fmtTime(unixS) {
    if (unixS === null || unixS === undefined) return "–";
    return new Date(unixS * 1000).toLocaleString();
  }

  function fmtAgo(unixS, nowS) {
    if (unixS === null || unixS === undefined) return "–";
    return fmtDuration(nowS - unixS) + " ago";
  }

  function fmtPolicy(policy) {
    if (!policy) return "–";
    if (policy.all) return "all versions";
    if (policy.specific) return "specific: " + policy.specific.versions.join(", ");
    if (policy.latest) return "latest " + policy.latest.num_versions;
    return JSON.stringify(policy);
  }

  function fmtTotals(totals) {
    const parts = [];
    for (const [code, n] of Object.entries(totals.by_status)) parts.push(code + " " + n);
    return totals.requests + " requests since start" + (parts.length ? " (" + parts.join(", ") + ")" : "");
  }

  // --- Charts ----------------------------------------------------------------

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (v <= m * p) return m * p;
    }
    return 10 * p;
  }

  // A line chart over the history window; series may hold nulls (gaps).
  class LineChart {
    constructor(kind, title, unit) {
      this.unit = unit;
      this.root = el("figure", "chart");
      this.root.dataset.chart = kind;
      const cap = el("figcaption");
      cap.appendChild(el("span", null, title));
      this.now = el("span", "now", "–");
      cap.appendChild(this.now);
      this.root.appendChild(cap);
      const box = el("div", "plot-box");
      this.svg = svgEl("svg", {
        class: "plot",
        viewBox: "0 0 " + W + " " + H,
        preserveAspectRatio: "none",
        role: "img",
      });
      this.svg.setAttribute("aria-label", title);
      box.appendChild(this.svg);
      this.ymax = el("span", "ymax");
      box.appendChild(this.ymax);
      this.root.appendChild(box);
      const axis = el("div", "axis");
      this.axisLeft = el("span");
      axis.appendChild(this.axisLeft);
      axis.appendChild(el("span", null, "now"));
      this.root.appendChild(axis);
      this.legend = el("div", "legend");
      this.root.appendChild(this.legend);
    }

    // series: [{label, values}] aligned with t (seconds). The x axis spans
    // the history there is, at least 30 s, at most the window.
    update(t, series, windowS) {
      const svg = this.svg;
      svg.replaceChildren();
      let max = 0;
      let points = 0;
      for (const s of series) {
        for (const v of s.values) {
          if (v !== null && isFinite(v)) {
            max = Math.max(max, v);
            points++;
          }
        }
      }
      const top = niceMax(max);
      svg.appendChild(svgEl("line", { class: "grid", x1: 0, y1: H / 2, x2: W, y2: H / 2 }));
      const end = t.length ? t[t.length - 1] : 0;
      const span = t.length ? Math.min(windowS, Math.max(30, end - t[0])) : windowS;
      const x = (ti) => (W * (1 - (end - ti) / span)).toFixed(1);
      const y = (v) => (H - 2 - (H - 4) * (v / top)).toFixed(1);
      series.forEach((s, i) => {
        let d = "";
        let pen = false;
        s.values.forEach((v, j) => {
          if (v === null || !isFinite(v)) {
            pen = false;
            return;
          }
          d += (pen ? "L" : "M") + x(t[j]) + " " + y(v);
          pen = true;
          // A lone point between gaps still shows, as a short tick.
          const next = s.values[j + 1];
          if (j === 0 || s.values[j - 1] === null) {
            if (next === null || next === undefined) d += "h2";
          }
        });
        if (d) {
          const path = svgEl("path", { class: "s" + (i % 6), d: d });
          path.setAttribute("vector-effect", "non-scaling-stroke");
          svg.appendChild(path);
        }
      });
      this.ymax.textContent = fmtNum(top) + " " + this.unit;
      this.axisLeft.textContent = "−" + fmtDuration(span);
      const first = series.length ? series[0].values : [];
      const last = first.length ? first[first.length - 1] : null;
      this.now.textContent = series
        .map((s) => fmtNum(s.values.length ? s.values[s.values.length - 1] : null))
        .join(" / ") + " " + this.unit;
      this.legend.replaceChildren();
      if (series.length > 1 || (series.length && series[0].label)) {
        series.forEach((s, i) => this.legend.appendChild(el("span", "k" + (i % 6), "● " + s.label)));
      }
      if (!t.length) this.legend.appendChild(el("span", "empty", "collecting…"));
      // For scripts and tests: what was drawn.
      this.root.dataset.max = String(max);
      this.root.dataset.last = last === null ? "" : String(last);
      this.root.dataset.points = String(points);
    }
  }

  // Bars for a distribution (batch sizes over the window).
  class BarChart {
    constructor(kind, title) {
      this.root = el("figure", "chart");
      this.root.dataset.chart = kind;
      const cap = el("figcaption");
      cap.appendChild(el("span", null, title));
      this.now = el("span", "now", "–");
      cap.appendChild(this.now);
      this.root.appendChild(cap);
      this.svg = svgEl("svg", { class: "plot", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none" });
      this.root.appendChild(this.svg);
      this.axis = el("div", "axis");
      this.root.appendChild(this.axis);
    }

    update(buckets) {
      this.svg.replaceChildren();
      this.axis.replaceChildren();
      let max = 0;
      let total = 0;
      for (const b of buckets) {
        max = Math.max(max, b.batches);
        total += b.batches;
      }
      const n = Math.max(1, buckets.length);
      const bw = W / n;
      buckets.forEach((b, i) => {
        const h = max ? ((H - 4) * b.batches) / max : 0;
        this.svg.appendChild(svgEl("rect", {
          class: "bar",
          x: (i * bw + 1).toFixed(1),
          y: (H - h).toFixed(1),
          width: Math.max(1, bw - 2).toFixed(1),
          height: h.toFixed(1),
        }));
        this.axis.appendChild(el("span", null, b.le === null ? ">" : "≤" + b.le));
      });
      if (!buckets.length) this.axis.appendChild(el("span", "empty", "no batches yet"));
      this.now.textContent = total + " batches";
      this.root.dataset.max = String(max);
      this.root.dataset.points = String(total);
    }
  }

  // The three traffic charts of a model, or of all models together.
  class TrafficCharts {
    constructor(container) {
      this.requests = new LineChart("requests", "requests / s", "/s");
      this.latency = new LineChart("latency", "latency p50 / p99", "ms");
      this.errors = new LineChart("errors", "errors / s by status", "/s");
      for (const c of [this.requests, this.latency, this.errors]) container.appendChild(c.root);
    }

    update(t, traffic, windowS) {
      this.requests.update(t, [{ label: "", values: traffic.requests_per_s }], windowS);
      this.latency.update(t, [
        { label: "p50", values: traffic.p50_ms },
        { label: "p99", values: traffic.p99_ms },
      ], windowS);
      const codes = Object.keys(traffic.errors_per_s);
      const zero = t.map(() => 0);
      this.errors.update(
        t,
        codes.length ? codes.map((c) => ({ label: c, values: traffic.errors_per_s[c] })) : [{ label: "none", values: zero }],
        windowS,
      );
    }
  }

  // --- Model cards -----------------------------------------------------------

  function stateBadge(v) {
    const failed = v.state === "END" && v.error;
    return el("span", "badge " + (failed ? "failed" : v.state), failed ? "FAILED" : v.state);
  }

  // One table per signature: its inputs, then its outputs.
  function signatureTable(sig) {
    const table = el("table", "tensors");
    const head = el("tr");
    for (const h of ["", "alias", "dtype", "shape"]) head.appendChild(el("th", null, h));
    table.appendChild(head);
    for (const [kind, tensors] of [["input", sig.inputs], ["output", sig.outputs]]) {
      for (const t of tensors) {
        const row = el("tr");
        row.appendChild(el("td", "kind", kind));
        row.appendChild(el("td", null, t.alias));
        row.appendChild(el("td", null, t.dtype));
        row.appendChild(el("td", null, t.shape === null ? "unknown rank" : "[" + t.shape.join(", ") + "]"));
        table.appendChild(row);
      }
    }
    return table;
  }

  class ModelCard {
    constructor() {
      this.root = el("section", "card model");
      const head = el("div", "model-head");
      this.name = el("h2", "model-name");
      head.appendChild(this.name);
      this.badges = el("span", "model-badges");
      head.appendChild(this.badges);
      this.root.appendChild(head);
      this.facts = el("dl", "model-facts");
      this.root.appendChild(this.facts);
      this.versions = el("table", "versions");
      this.root.appendChild(this.versions);
      this.charts = el("div", "charts");
      this.root.appendChild(this.charts);
      this.traffic = new TrafficCharts(this.charts);
      this.sigBox = el("details", "signatures");
      this.sigSummary = el("summary");
      this.sigBox.appendChild(this.sigSummary);
      this.sigBody = el("div");
      this.sigBox.appendChild(this.sigBody);
      this.root.appendChild(this.sigBox);
      this.sigKey = null;
    }

    update(m, doc) {
      this.name.textContent = m.name;
      this.root.dataset.model = m.name;
      const live = m.versions.filter((v) => v.state === "AVAILABLE").map((v) => "v" + v.version);
      this.badges.replaceChildren(el("span", "badge " + (live.length ? "AVAILABLE" : "END"),
        live.length ? "serving " + live.join(", ") : "not serving"));
      this.facts.replaceChildren();
      const fact = (k, v) => {
        this.facts.appendChild(el("dt", null, k));
        const dd = el("dd");
        if (v instanceof Node) dd.appendChild(v);
        else dd.textContent = v;
        this.facts.appendChild(dd);
      };
      fact("base path", m.base_path);
      fact("platform", m.model_platform);
      fact("version policy", fmtPolicy(m.version_policy));
      const labels = el("span", "labels");
      const entries = Object.entries(m.labels);
      for (const [label, version] of entries) {
        labels.appendChild(el("span", "chip", label + " → " + (version === null ? "not applied" : "v" + version)));
      }
      if (!entries.length) labels.textContent = "none";
      fact("labels", labels);
      fact("requests", fmtTotals(m.traffic.totals));

      const table = this.versions;
      table.replaceChildren();
      const head = el("tr");
      for (const h of ["version", "state", "since", "loaded", "format", "batching"]) head.appendChild(el("th", null, h));
      table.appendChild(head);
      for (const v of m.versions) {
        const row = el("tr", "version");
        row.dataset.version = String(v.version);
        row.appendChild(el("td", null, v.version));
        const st = el("td");
        st.appendChild(stateBadge(v));
        row.appendChild(st);
        const since = el("td", null, fmtAgo(v.since, doc.time));
        since.title = fmtTime(v.since);
        row.appendChild(since);
        row.appendChild(el("td", null, fmtTime(v.loaded_at)));
        row.appendChild(el("td", null, v.platform || "–"));
        row.appendChild(el("td", null, v.batching ? v.batching.thread_pool_name : "–"));
        table.appendChild(row);
        if (v.error) {
          const er = el("tr", "version-error");
          const cell = el("td");
          cell.colSpan = 6;
          cell.appendChild(el("pre", "error", v.error.code + ": " + v.error.message));
          er.appendChild(cell);
          table.appendChild(er);
        }
      }
      if (!m.versions.length) {
        const row = el("tr");
        const cell = el("td", "empty", "No version seen yet under the base path.");
        cell.colSpan = 6;
        row.appendChild(cell);
        table.appendChild(row);
      }

      this.traffic.update(doc.history.t, m.traffic, doc.history.window_s);

      // Signatures: rebuilt only when they change, so reading is undisturbed.
      const loaded = m.versions.filter((v) => v.signatures);
      const key = JSON.stringify(loaded.map((v) => [v.version, v.platform, v.signatures]));
      if (key !== this.sigKey) {
        this.sigKey = key;
        const count = loaded.reduce((n, v) => n + v.signatures.length, 0);
        this.sigSummary.textContent = "Signatures (" + count + ")";
        this.sigBody.replaceChildren();
        for (const v of loaded) {
          this.sigBody.appendChild(el("h4", null, "version " + v.version + " · " + v.platform));
          for (const s of v.signatures) {
            const box = el("div", "sig");
            const sh = el("div", "sig-head");
            sh.appendChild(el("span", "sig-key", s.key));
            sh.appendChild(el("span", "method", s.method_name));
            box.appendChild(sh);
            box.appendChild(signatureTable(s));
            this.sigBody.appendChild(box);
          }
        }
        if (!loaded.length) this.sigBody.appendChild(el("p", "empty", "No version loaded."));
      }
    }
  }

  class PoolCard {
    constructor() {
      this.root = el("section", "card pool");
      this.title = el("h2");
      this.root.appendChild(this.title);
      this.users = el("p", "totals");
      this.root.appendChild(this.users);
      const charts = el("div", "charts");
      this.root.appendChild(charts);
      this.batches = new LineChart("batches", "batches / s", "/s");
      this.mean = new LineChart("batch-mean", "mean batch size", "");
      this.sizes = new BarChart("batch-sizes", "batch sizes, last minutes");
      for (const c of [this.batches, this.mean, this.sizes]) charts.appendChild(c.root);
    }

    update(p, doc) {
      this.title.textContent = "Batching: thread pool " + p.thread_pool_name;
      this.root.dataset.pool = p.thread_pool_name;
      const users = [];
      for (const m of doc.models) {
        for (const v of m.versions) {
          if (v.batching && v.batching.thread_pool_name === p.thread_pool_name) users.push(m.name + " v" + v.version);
        }
      }
      this.users.textContent = users.length ? "Batches requests of " + users.join(", ") : "";
      this.batches.update(doc.history.t, [{ label: "", values: p.batches_per_s }], doc.history.window_s);
      this.mean.update(doc.history.t, [{ label: "", values: p.mean_batch_size }], doc.history.window_s);
      this.sizes.update(p.batch_size_distribution);
    }
  }

  // Keeps one card per key, in the document's order; drops the rest.
  function syncCards(container, cards, items, keyOf, make, doc) {
    const seen = new Set();
    for (const item of items) {
      const key = keyOf(item);
      seen.add(key);
      let card = cards.get(key);
      if (!card) {
        card = make();
        cards.set(key, card);
      }
      card.update(item, doc);
      container.appendChild(card.root);
    }
    for (const [key, card] of cards) {
      if (!seen.has(key)) {
        card.root.remove();
        cards.delete(key);
      }
    }
  }

  // --- Page ------------------------------------------------------------------

  const overview = new TrafficCharts(byId("overview-charts"));
  const modelCards = new Map();
  const poolCards = new Map();
  let updates = 0;

  function renderFacts(s) {
    const parts = [
      s.version,
      "TensorFlow " + (s.tensorflow_version || "?"),
      "build " + s.build.device + ", " + s.build.compilation_mode,
      "up " + fmtDuration(s.uptime_s),
      "gRPC " + (s.grpc_tls.enabled ? "TLS" + (s.grpc_tls.client_verify ? " + client certificates (mTLS)" : "") : "without TLS"),
    ];
    if (s.workers > 1) parts.push(s.workers + " workers");
    if (s.prometheus_path) parts.push("Prometheus at " + s.prometheus_path);
    byId("facts").textContent = parts.join(" · ");
    const body = byId("flags");
    body.replaceChildren();
    const flags = Object.entries(s.flags);
    for (const [name, value] of flags) {
      const row = el("tr");
      row.appendChild(el("td", null, "--" + name));
      row.appendChild(el("td", null, typeof value === "string" ? value : JSON.stringify(value)));
      body.appendChild(row);
    }
    if (!flags.length) {
      const row = el("tr");
      row.appendChild(el("td", "empty", "All flags at their defaults."));
      body.appendChild(row);
    }
  }

  function render(doc) {
    renderFacts(doc.server);
    byId("overview-totals").textContent = fmtTotals(doc.traffic.totals);
    overview.update(doc.history.t, doc.traffic, doc.history.window_s);
    syncCards(byId("models"), modelCards, doc.models, (m) => m.name, () => new ModelCard(), doc);
    syncCards(byId("batching"), poolCards, doc.batching, (p) => p.thread_pool_name, () => new PoolCard(), doc);
  }

  function setConn(ok, text) {
    const conn = byId("conn");
    conn.className = ok ? "conn" : "conn down";
    conn.textContent = text;
  }

  let timer = null;
  let busy = false;

  async function poll() {
    timer = null;
    // Hidden tabs stop polling (visibilitychange resumes); one at a time.
    if (document.hidden || busy) return;
    busy = true;
    try {
      const response = await fetch("/v1/status", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const doc = await response.json();
      render(doc);
      updates++;
      document.body.dataset.updates = String(updates);
      setConn(true, "Updated " + new Date(doc.time * 1000).toLocaleTimeString());
    } catch (err) {
      setConn(false, "Cannot reach the server: " + (err && err.message ? err.message : String(err)));
    } finally {
      busy = false;
    }
    schedule();
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = setTimeout(poll, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null && !busy) poll();
  });
  poll();
})();
