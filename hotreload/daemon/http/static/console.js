// The hotreload console: reads /api/ only, redraws on every server-sent "change". Read-only.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const data = { overview: null, detail: null, prop: null, at: 0, skew: 0 };
  let busy = false;
  let again = false;

  // ------------------------------------------------------------------ helpers

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function row(cells, cls) {
    const tr = el("tr", cls);
    for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", "", cell));
    return tr;
  }

  function td(content, cls, title) {
    const cell = el("td", cls || "");
    if (content instanceof Node) cell.append(content);
    else cell.textContent = content === null || content === undefined ? "" : String(content);
    if (title) cell.title = title;
    return cell;
  }

  function badge(n, kind) {
    return n > 0 ? el("span", "badge " + kind, n) : el("span", "muted", n);
  }

  const now = () => Date.now() / 1000 + data.skew;

  function ago(ts) {
    if (!ts) return "";
    const s = Math.max(0, now() - ts);
    if (s < 60) return Math.round(s) + "s ago";
    if (s < 3600) return Math.round(s / 60) + "m ago";
    if (s < 86400) return (s / 3600).toFixed(1) + "h ago";
    return (s / 86400).toFixed(1) + "d ago";
  }

  function span(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 120) return seconds.toFixed(seconds < 10 ? 2 : 0) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "");
  const short = (epoch) => (epoch ? epoch.slice(0, 13) + "…" : "—");
  const show = (node, on) => { node.hidden = !on; };
  const json = (v) => JSON.stringify(v);

  function selected() {
    const m = location.hash.match(/^#\/ns\/(.+)$/);
    return m ? decodeURIComponent(m[1]) : null;
  }

  async function get(path) {
    const resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || path + ": HTTP " + resp.status);
    return body;
  }

  // ------------------------------------------------------------------ loading

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const ns = selected();
        const base = ns ? "api/namespaces/" + encodeURIComponent(ns) : null;
        const [overview, detail, prop] = await Promise.all([
          get("api/namespaces"),
          base && data.overview && !data.overview.namespaces.some((n) => n.namespace === ns)
            ? Promise.resolve(null) : base ? get(base) : null,
          base ? get(base + "/propagation").catch(() => null) : null,
        ]);
        data.overview = overview;
        data.detail = detail;
        data.prop = prop;
        data.skew = overview.now - Date.now() / 1000;
        $("problem").hidden = true;
        render();
      } while (again);
    } catch (err) {
      $("problem").textContent = "Cannot read the API: " + err.message;
      $("problem").hidden = false;
    } finally {
      busy = false;
    }
  }

  function listen() {
    if (!window.EventSource) { setInterval(refresh, 1000); return; }
    const events = new EventSource("api/events");
    const live = $("live");
    events.addEventListener("hello", () => {
      live.textContent = "live"; live.className = "pill on"; refresh();
    });
    events.addEventListener("change", () => refresh());
    events.onerror = () => { live.textContent = "reconnecting…"; live.className = "pill off"; };
  }

  // ------------------------------------------------------------------ drawing

  function render() {
    if (!data.overview) return;
    renderOverview();
    renderDetail();
  }

  function renderOverview() {
    const body = $("namespaces").tBodies[0];
    const rows = data.overview ? data.overview.namespaces : [];
    const current = selected();
    body.replaceChildren(...rows.map((n) => {
      const last = n.last_change;
      const tr = row([
        td(n.namespace, "mono"),
        td(n.exists ? "v" + n.version : "never published", "num"),
        td(short(n.epoch), "mono", n.epoch || ""),
        td(last ? ago(last.ts) + " · " + last.source + " · " + last.origin : "", "",
           last ? when(last.ts) + " (" + last.kind + " v" + last.version + ")" : ""),
        td(n.instances, "num"),
        td(badge(n.behind, "bad"), "num"),
        td(badge(n.rejected, "warn"), "num"),
        td(badge(n.link_down, "warn"), "num"),
        td(n.canary ? n.canary.id : "", "mono"),
      ], n.namespace === current ? "selected" : "");
      tr.dataset.ns = n.namespace;
      if (n.error) tr.title = n.error;
      tr.addEventListener("click", () => { location.hash = "#/ns/" + encodeURIComponent(n.namespace); });
      return tr;
    }));
    show($("no-namespaces"), data.overview !== null && rows.length === 0);
  }

  function renderDetail() {
    const ns = selected();
    show($("detail"), ns !== null);
    if (ns === null) return;
    const d = data.detail;
    $("ns-title").textContent = ns + (d && d.exists ? "  ·  v" + d.version : "");
    const rollout = $("rollout");
    if (!d) {
      rollout.textContent = "This console does not show " + ns + ".";
      rollout.className = "banner bad";
      for (const id of ["instances", "settings"]) $(id).tBodies[0].replaceChildren();
      $("history").replaceChildren();
      return;
    }
    const r = d.rollout;
    if (!d.exists) {
      rollout.textContent = "Never published.";
      rollout.className = "banner warn";
    } else if (r.instances === 0) {
      rollout.textContent = "No live instance reports itself for v" + r.version + ".";
      rollout.className = "banner warn";
    } else if (!r.complete) {
      rollout.textContent = "⚠ Rollout incomplete: " + r.behind + " of " + r.instances +
        " instance" + (r.instances === 1 ? "" : "s") + " behind v" + r.version + ".";
      rollout.className = "banner bad";
    } else {
      rollout.textContent = "✓ All " + r.instances + " instance" + (r.instances === 1 ? "" : "s") +
        " run v" + r.version + ".";
      rollout.className = "banner ok";
    }
    rollout.dataset.complete = String(r.complete);
    const canary = $("canary");
    show(canary, Boolean(d.canary));
    if (d.canary) {
      canary.textContent = "Canary " + d.canary.id + " running since v" + d.canary.base + " on " +
        json(d.canary.target) + ": " + d.canary.changes.map((c) => c.text).join(", ");
    }
    show($("ns-error"), Boolean(d.error));
    $("ns-error").textContent = d.error || "";
    renderInstances(d.instances);
    renderSettings(d.settings);
    renderHistory(d.history);
    renderLatency(data.prop);
    renderRate(data.prop);
  }

  function renderInstances(list) {
    $("instances").tBodies[0].replaceChildren(...list.map((i) => {
      const lag = i.state === "other-epoch" ? "other epoch" : i.lag ? String(i.lag) : "0";
      const rej = i.rejected ? "v" + i.rejected.version + ": " + i.rejected.reason : "";
      const tr = row([
        td(i.instance, "mono", "pid " + i.pid + (i.canary ? " · canary " + i.canary : "")),
        td(i.service || "—"),
        td(i.host),
        td("v" + i.version, "num"),
        td(lag, "num"),
        td(i.link),
        td(rej, "", rej),
        td(i.started_at ? ago(i.started_at).replace(" ago", "") : "", "num", when(i.started_at)),
        td(ago(i.refreshed_at), "num", when(i.refreshed_at)),
      ], "state-" + i.state);
      tr.dataset.instance = i.instance;
      tr.dataset.state = i.state;
      return tr;
    }));
    show($("no-instances"), list.length === 0);
  }

  function renderSettings(list) {
    $("settings").tBodies[0].replaceChildren(...list.map((s) => {
      const value = td(s.secret ? s.value + " (secret)" : json(s.value), s.secret ? "mono secret" : "mono");
      const tr = row([td(s.key, "mono"), value]);
      tr.dataset.key = s.key;
      return tr;
    }));
  }

  function renderHistory(list) {
    $("history").replaceChildren(...list.map((e) => {
      const li = el("li");
      const head = el("div");
      head.append(el("strong", "", "v" + e.version), " · " + when(e.ts) + " · " + e.kind + " · ",
        el("span", "muted", "source " + e.source + ", origin " + e.origin));
      if (e.reset) head.append(el("span", "muted", " · a new history"));
      li.append(head);
      const changes = el("ul");
      for (const c of e.changes) changes.append(el("li", c.op, c.text));
      if (e.kind === "canary") changes.append(el("li", "", e.canary ? "canary " + e.canary.id + " started" : "canary aborted"));
      li.append(changes);
      return li;
    }));
  }

  function renderLatency(prop) {
    const box = $("chart-latency");
    const versions = prop ? prop.versions.slice().reverse() : [];
    if (versions.length === 0) { box.replaceChildren(el("p", "muted", "No version to show yet.")); return; }
    const W = 600, H = 190, L = 56, R = 10, T = 22, B = 26;
    const lat = versions.flatMap((v) => v.applied.filter((a) => !a.started).map((a) => a.latency));
    const top = Math.max(0.01, ...lat) * 1.15;
    const step = (W - L - R) / versions.length;
    const y = (s) => T + (H - T - B) * (1 - Math.min(s, top) / top);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": "publish to applied latency per version" });
    chart.append(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      chart.append(svg("text", { x: L - 6, y: y(top * f / 1.15) + 4, "text-anchor": "end" }, span(top * f / 1.15)));
      chart.append(svg("line", { x1: L, y1: y(top * f / 1.15), x2: W - R, y2: y(top * f / 1.15), class: "axis" }));
    }
    versions.forEach((v, k) => {
      const x = L + step * (k + 0.5);
      const shown = v.applied.filter((a) => !a.started);
      if (v.latency) {
        chart.append(svg("line", { x1: x, y1: y(v.latency.min), x2: x, y2: y(v.latency.max), class: "range" }));
      }
      for (const a of shown) {
        const dot = svg("circle", { cx: x, cy: y(a.latency), r: 3.5, class: "dot" });
        dot.append(svg("title", {}, "v" + v.version + " on " + a.instance + ": " + span(a.latency)));
        chart.append(dot);
      }
      if (!v.complete) {
        const mark = svg("text", { x, y: T - 8, "text-anchor": "middle", class: "pending" }, "▲" + v.pending.length);
        mark.append(svg("title", {}, "rollout incomplete: " + v.pending.join(", ")));
        chart.append(mark);
      }
      if (versions.length <= 12 || k % Math.ceil(versions.length / 12) === 0 || k === versions.length - 1) {
        chart.append(svg("text", { x, y: H - 8, "text-anchor": "middle" }, "v" + v.version));
      }
      const started = v.applied.length - shown.length;
      if (started > 0 || v.skipped.length > 0) {
        const note = svg("text", { x, y: y(0) - 6, "text-anchor": "middle", class: "note" }, "·");
        note.append(svg("title", {}, started + " loaded it at start, " + v.skipped.length +
          " went past it before reporting it"));
        chart.append(note);
      }
    });
    box.replaceChildren(chart);
    box.dataset.incomplete = String(versions.filter((v) => !v.complete).length);
  }

  function renderRate(prop) {
    const box = $("chart-rate");
    const minutes = prop ? prop.events_per_minute : [];
    if (minutes.length === 0) { box.replaceChildren(); return; }
    const W = 600, H = 110, L = 56, R = 10, T = 10, B = 22;
    const top = Math.max(1, ...minutes.map((m) => m.count));
    const step = (W - L - R) / minutes.length;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "events per minute" });
    chart.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    chart.append(svg("text", { x: L - 6, y: T + 8, "text-anchor": "end" }, top));
    chart.append(svg("text", { x: L - 6, y: H - B + 4, "text-anchor": "end" }, 0));
    minutes.forEach((m, k) => {
      const h = (H - T - B) * m.count / top;
      const bar = svg("rect", { x: L + step * k + 1, y: H - B - h, width: Math.max(1, step - 2), height: h, class: "bar" });
      bar.append(svg("title", {}, new Date(m.minute * 1000).toLocaleTimeString() + ": " + m.count));
      chart.append(bar);
    });
    chart.append(svg("text", { x: L, y: H - 6 }, "-30 min"));
    chart.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
    box.replaceChildren(chart);
  }

  // ------------------------------------------------------------------ start

  window.addEventListener("hashchange", refresh);
  setInterval(render, 5000); // the "ago" columns
  refresh();
  listen();
})();
