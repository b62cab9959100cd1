// Team overview: one row per specialist, one column per KPI, cells coloured and labelled by grade.
import { api, download, qs, saveBlob } from "../api.js";
import { setParams } from "../app.js";
import { INFO, LOWER, addDays, csvBlob, esc, fmtClock, fmtValue, gradeClass, gradeLabel, kpiName, kpiShort, quarterOf, samples } from "../format.js";
import { getLang, t } from "../i18n.js";
import { alerts, state } from "../state.js";
import { channelPanels, loadChannelPanels } from "./channels.js";
import { errorBox, errorMessage, teamName, teamPicker, windowPicker, windowValue } from "./common.js";
import { loadTeamTrend, teamTrendPanel, trendKpi } from "./team_trend.js";

const FILTERS = ["all", "unqualified", "excellent", "insufficient", "alerts"];

export function renderOverview(main, _args, params) {
  const ui = {
    win: params.get("window") || "30d",
    quarter: params.get("quarter") || quarterOf(state.config.today),
    team: params.get("team") || "",
    search: params.get("search") || "",
    filter: params.get("filter") || "all",
    sort: params.get("sort") || "name",
    dir: params.get("dir") || "asc",
    trend: trendKpi(params.get("trend")),
  };
  const refreshSeconds = Number(params.get("refresh")) || 0;
  const kpis = state.config.kpis;
  // The informational measures (after the appraised KPIs) start behind a divider.
  const firstInfo = kpis.find((k) => INFO.has(k));
  let data = null;
  let timer = null;
  let inflight = null;
  let rendered = ""; // identity of the rendered row set (ids in order + filters)

  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("overview.title"))}</h1><div class="sub" id="ov-sub">${esc(t("loading"))}</div></div>
      <div class="legend" aria-hidden="true">${["excellent", "qualified", "unqualified", "insufficient_data"].map((g) => `<span class="chip ${gradeClass(g)}">${esc(gradeLabel(g))}</span>`).join("")}</div></div>
    <form class="toolbar" id="ov-tools" role="search">
      ${windowPicker("ov", ui.win, ui.quarter)}
      ${teamPicker("ov", ui.team)}
      <div class="field grow"><label for="ov-search">${esc(t("search.label"))}</label>
        <input id="ov-search" type="search" placeholder="${esc(t("search.placeholder"))}" value="${esc(ui.search)}"></div>
      <div class="field"><label for="ov-filter">${esc(t("filter.label"))}</label>
        <select id="ov-filter">${FILTERS.map((f) => `<option value="${f}" ${f === ui.filter ? "selected" : ""}>${esc(t(`filter.${f}`))}</option>`).join("")}</select></div>
      <button type="button" class="btn" id="ov-export">${esc(t("export.csv"))}</button>
      <span class="updated" id="ov-updated" aria-live="off"></span>
    </form>
    <form class="toolbar" id="ov-tickets" aria-labelledby="ov-tk-title">
      <span class="toolbar-title" id="ov-tk-title">${esc(t("tickets.export"))}</span>
      <div class="field"><label for="ov-tk-from">${esc(t("tickets.from"))}</label>
        <input id="ov-tk-from" type="date" value="${esc(addDays(state.config.today, -29))}" max="${esc(state.config.today)}"></div>
      <div class="field"><label for="ov-tk-to">${esc(t("tickets.to"))}</label>
        <input id="ov-tk-to" type="date" value="${esc(state.config.today)}" max="${esc(state.config.today)}"></div>
      <button type="button" class="btn" id="ov-tk-csv">CSV</button>
      <button type="button" class="btn" id="ov-tk-xlsx">XLSX</button>
      <span class="form-error" id="ov-tk-err" role="alert"></span>
    </form>
    <div id="ov-teams" class="team-cards"></div>
    <section id="ov-trend" class="panel" aria-labelledby="tt-h" hidden></section>
    <div id="ov-body"><div class="empty">${esc(t("loading"))}</div></div>
    <div id="ov-channels"></div>`;

  const $ = (s) => main.querySelector(s);
  const saveParams = () =>
    setParams({ window: ui.win === "30d" ? "" : ui.win, quarter: ui.win === "quarter" ? ui.quarter : "", team: ui.team,
      search: ui.search, filter: ui.filter === "all" ? "" : ui.filter, sort: ui.sort === "name" ? "" : ui.sort,
      dir: ui.dir === "asc" ? "" : ui.dir, refresh: refreshSeconds || "",
      trend: ui.team && ui.trend !== state.config.kpis[0] ? ui.trend : "" });

  $("#ov-tools").addEventListener("change", (ev) => {
    const role = ev.target.dataset.role;
    if (role === "window") {
      ui.win = ev.target.value;
      $("[data-role=quarter-field]").hidden = ui.win !== "quarter";
    } else if (role === "quarter") ui.quarter = ev.target.value;
    else if (role === "team") ui.team = ev.target.value;
    else if (ev.target.id === "ov-filter") {
      ui.filter = ev.target.value;
      saveParams();
      return draw();
    } else return;
    saveParams();
    load(true);
  });
  $("#ov-search").addEventListener("input", (ev) => {
    ui.search = ev.target.value;
    saveParams();
    draw();
  });
  $("#ov-export").addEventListener("click", () => exportCsv());
  $("#ov-trend").addEventListener("change", (ev) => {
    if (ev.target.id !== "tt-kpi") return;
    ui.trend = ev.target.value;
    saveParams();
    drawTrend();
  });
  $("#ov-tk-csv").addEventListener("click", () => exportTickets("csv"));
  $("#ov-tk-xlsx").addEventListener("click", () => exportTickets("xlsx"));

  // One row per ticket of the chosen team (GET /v1/tickets); every team's only for an admin.
  async function exportTickets(format) {
    const err = $("#ov-tk-err");
    err.textContent = "";
    if (!ui.team && state.config.role !== "admin") {
      err.textContent = t("tickets.need_team");
      return;
    }
    const from = $("#ov-tk-from").value;
    const to = $("#ov-tk-to").value;
    const buttons = [$("#ov-tk-csv"), $("#ov-tk-xlsx")];
    for (const b of buttons) b.disabled = true;
    err.textContent = t("tickets.preparing");
    try {
      await download(`/v1/tickets${qs({ team: ui.team, from, to, format, lang: getLang() })}`, `tickets-${ui.team || "all"}-${from}-${to}.${format}`);
      err.textContent = "";
    } catch (e) {
      err.textContent = errorMessage(e);
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }
  $("#ov-teams").addEventListener("click", (ev) => {
    const card = ev.target.closest("[data-team]");
    if (!card) return;
    ui.team = ui.team === card.dataset.team ? "" : card.dataset.team;
    $("[data-role=team]").value = ui.team;
    saveParams();
    load(true);
  });
  $("#ov-body").addEventListener("click", (ev) => {
    const th = ev.target.closest("[data-sort] button");
    if (!th) return;
    const key = th.parentElement.dataset.sort;
    if (ui.sort === key) ui.dir = ui.dir === "asc" ? "desc" : "asc";
    else {
      ui.sort = key;
      // First click on a KPI puts the weakest first: ascending, except where lower is better.
      ui.dir = LOWER.has(key) ? "desc" : "asc";
    }
    saveParams();
    draw(true);
    main.querySelector(`[data-sort="${key}"] button`)?.focus();
  });

  function rows() {
    if (!data) return [];
    const q = ui.search.trim().toLowerCase();
    const open = new Set(alerts.open.map((a) => a.specialist_id));
    let list = data.members.filter((m) => {
      if (q && !`${m.name || ""} ${m.specialist_id} ${m.team_id || ""}`.toLowerCase().includes(q)) return false;
      const grades = kpis.map((k) => m.kpis[k].grade);
      if (ui.filter === "unqualified") return grades.includes("unqualified");
      if (ui.filter === "excellent") return grades.includes("excellent");
      if (ui.filter === "insufficient") return grades.includes("insufficient_data");
      if (ui.filter === "alerts") return open.has(m.specialist_id);
      return true;
    });
    const dir = ui.dir === "asc" ? 1 : -1;
    const byName = (a, b) => (a.name || a.specialist_id).localeCompare(b.name || b.specialist_id) || a.specialist_id.localeCompare(b.specialist_id);
    if (ui.sort === "name") list.sort((a, b) => dir * byName(a, b));
    else if (ui.sort === "team") list.sort((a, b) => dir * teamName(a.team_id).localeCompare(teamName(b.team_id)) || byName(a, b));
    else {
      const k = ui.sort;
      list.sort((a, b) => {
        const va = a.kpis[k]?.value, vb = b.kpis[k]?.value;
        if (va === null && vb === null) return byName(a, b);
        if (va === null) return 1; // no value: always last
        if (vb === null) return -1;
        return dir * (va - vb) || byName(a, b);
      });
    }
    return list;
  }

  function cell(m, k) {
    const c = m.kpis[k];
    const n = samples(k, c);
    // No per-cell title: 8,000 long attributes cost more than the table itself; the cell's
    // text (value, samples, grade word) and its column header say everything.
    return `<div role="cell" class="kpi ${gradeClass(c.grade)}${k === firstInfo ? " info-first" : ""}" data-kpi="${k}" data-grade="${c.grade || "none"}"><span class="v">${esc(fmtValue(k, c.value))}</span>${k === "training_sessions" ? "" : `<span class="n">${esc(t("samples", { n }))}</span>`}<span class="gl">${esc(gradeLabel(c.grade))}</span></div>`;
  }

  function draw(force = false) {
    const body = $("#ov-body");
    if (!data) return;
    const list = rows();
    const w = data.window;
    $("#ov-sub").textContent = t("overview.sub", { from: w.from, to: w.to, tz: w.timezone, shown: list.length, total: data.members.length });
    drawTeams();
    const identity = JSON.stringify([ui.sort, ui.dir, list.map((m) => m.specialist_id), document.documentElement.lang]);
    if (!force && identity === rendered && body.querySelector("#overview-table")) return patch(list);
    rendered = identity;
    if (!data.members.length) {
      body.innerHTML = `<div class="panel empty">${esc(t("overview.none"))}</div>`;
      return;
    }
    const openBy = new Map();
    for (const a of alerts.open) openBy.set(a.specialist_id, (openBy.get(a.specialist_id) || 0) + 1);
    const ariaSort = (key) => (ui.sort === key ? (ui.dir === "asc" ? "ascending" : "descending") : "none");
    // ARIA table of grid rows rather than <table>: rows off screen use content-visibility and
    // cost no style or layout work, which keeps 1,000 rows well under a second.
    const head = `<div role="row" class="gt-row gt-head">
      <div role="columnheader" class="sticky-col" data-sort="name" aria-sort="${ariaSort("name")}"><button type="button">${esc(t("overview.specialist"))}</button></div>
      <div role="columnheader" data-sort="team" aria-sort="${ariaSort("team")}"><button type="button">${esc(t("overview.team"))}</button></div>
      ${kpis.map((k) => `<div role="columnheader" data-sort="${k}" aria-sort="${ariaSort(k)}"${INFO.has(k) ? ` class="info-col${k === firstInfo ? " info-first" : ""}"` : ""}><button type="button" title="${esc(INFO.has(k) ? `${kpiName(k)} · ${t("kpi.informational")}` : kpiName(k))}">${esc(kpiShort(k))}</button></div>`).join("")}</div>`;
    const only = ui.team || (data.teams.length === 1 ? data.teams[0].team_id : "");
    const pooledName = only ? t("overview.pooled", { name: teamName(only) }) : t("overview.pooled_all");
    const pooled = `<div role="row" class="gt-row pooled" data-row="pooled"><div role="rowheader" class="sticky-col">${esc(pooledName)}</div><div role="cell">${esc(t("overview.members", { n: data.members.length }))}</div>${kpis.map((k) => cell({ kpis: data.pooled }, k)).join("")}</div>`;
    const q = encodeURIComponent(ui.win === "quarter" ? ui.quarter : ui.win);
    const bodyRows = list.map((m) => {
      const n = openBy.get(m.specialist_id) || 0;
      const flag = n ? `<span class="alert-flag" title="${esc(t("openalerts", { n }))}">⚠ ${n}<span class="sr-only"> ${esc(t("openalerts", { n }))}</span></span>` : "";
      return `<div role="row" class="gt-row" data-sid="${esc(m.specialist_id)}"><div role="rowheader" class="sticky-col"><a class="spec-link" href="#/specialist/${encodeURIComponent(m.specialist_id)}?window=${q}">${esc(m.name || m.specialist_id)}</a>${flag}<span class="spec-id">${esc(m.specialist_id)}</span></div><div role="cell">${esc(teamName(m.team_id))}</div>${kpis.map((k) => cell(m, k)).join("")}</div>`;
    });
    body.innerHTML = `<div class="table-wrap"><div role="table" class="gt" id="overview-table" aria-label="${esc(t("overview.title"))}" aria-rowcount="${list.length + 2}">
      <div role="rowgroup">${head}</div><div role="rowgroup">${pooled}${bodyRows.join("") || `<div role="row" class="gt-row"><div role="cell" class="empty">${esc(t("overview.empty"))}</div></div>`}</div></div></div>`;
  }

  // Same rows as on screen: update changed cells in place and flash them (no re-render jump).
  function patch(list) {
    const table = $("#overview-table");
    const update = (tr, kpisOf) => {
      for (const td of tr.querySelectorAll(".kpi")) {
        const k = td.dataset.kpi;
        const tmp = document.createElement("div");
        tmp.innerHTML = cell({ kpis: kpisOf }, k);
        const fresh = tmp.firstElementChild;
        if (fresh.innerHTML !== td.innerHTML || fresh.dataset.grade !== td.dataset.grade) {
          td.replaceWith(fresh);
          fresh.classList.add("changed");
        }
      }
    };
    const byId = new Map(list.map((m) => [m.specialist_id, m]));
    for (const tr of table.querySelectorAll("[role=row][data-row], [role=row][data-sid]")) {
      if (tr.dataset.row === "pooled") update(tr, data.pooled);
      else if (tr.dataset.sid && byId.has(tr.dataset.sid)) update(tr, byId.get(tr.dataset.sid).kpis);
    }
  }

  function drawTeams() {
    const box = $("#ov-teams");
    if (!data || data.teams.length < 2 && !ui.team) {
      box.innerHTML = "";
      return;
    }
    const open = alerts.open;
    box.innerHTML = data.teams.map((tm) => {
      const members = data.members.filter((m) => m.team_id === tm.team_id);
      const below = members.filter((m) => kpis.some((k) => m.kpis[k].grade === "unqualified")).length;
      const nAlerts = open.filter((a) => a.team_id === tm.team_id).length;
      return `<button type="button" class="team-card" data-team="${esc(tm.team_id)}" aria-pressed="${ui.team === tm.team_id}">
        <div class="t-name">${esc(tm.name)}</div><div class="t-meta">${esc(tm.supervisor || "")} · ${esc(t("overview.members", { n: tm.members }))}</div>
        <div class="t-stats"><span class="chip ${below ? "g-unqualified" : "g-excellent"}">${esc(t("overview.below", { n: below }))}</span>
        ${nAlerts ? `<span class="chip g-unqualified">${esc(t("overview.alerts", { n: nAlerts }))}</span>` : ""}</div></button>`;
    }).join("");
  }

  // A chosen team is the team page: its pooled trend for one KPI under the cards.
  function drawTrend() {
    const box = $("#ov-trend");
    box.hidden = !ui.team;
    if (!ui.team || !data) return;
    if (!box.querySelector("#tt-chart")) box.innerHTML = teamTrendPanel(ui.trend);
    loadTeamTrend(box.querySelector("#tt-chart"), ui.team, ui.trend, data.window);
  }

  async function load(reset = false) {
    clearTimeout(timer);
    if (inflight) inflight.abort();
    inflight = new AbortController();
    if (reset) rendered = "";
    try {
      data = await api(`/v1/dashboard/overview${qs({ window: windowValue(ui.win, ui.quarter), team: ui.team })}`, { signal: inflight.signal });
      for (const m of data.members) state.names.set(m.specialist_id, m.name || m.specialist_id);
      draw(reset);
      if (reset) {
        drawTrend();
        drawChannels();
      }
      $("#ov-updated").textContent = t("overview.updated", { time: fmtClock() });
    } catch (err) {
      if (err.name === "AbortError") return;
      $("#ov-body").innerHTML = errorBox(err);
      rendered = "";
    }
    const every = refreshSeconds || (data && data.members.length > 300 ? 15 : 5);
    timer = setTimeout(load, every * 1000);
  }

  // A chosen team's breakdown by channel and time distributions: loaded with the team and
  // window, not on every refresh tick (those read only the overview).
  let stopped = false;
  function drawChannels() {
    const box = $("#ov-channels");
    if (!ui.team) {
      box.innerHTML = "";
      return;
    }
    box.innerHTML = channelPanels("ov");
    const base = `/v1/teams/${encodeURIComponent(ui.team)}`;
    loadChannelPanels(box, "ov", base, windowValue(ui.win, ui.quarter), () => stopped);
  }

  function exportCsv() {
    if (!data) return;
    const head = ["specialist_id", "name", "team_id", ...kpis.flatMap((k) => [`${k}`, `${k}_numerator`, `${k}_denominator`, `${k}_grade`])];
    const line = (id, name, team, kp) => [id, name, team, ...kpis.flatMap((k) => [kp[k].value, kp[k].numerator, kp[k].denominator, kp[k].grade])];
    const out = [head, line("(pooled)", ui.team ? teamName(ui.team) : "", ui.team, data.pooled), ...rows().map((m) => line(m.specialist_id, m.name, m.team_id, m.kpis))];
    const w = data.window;
    saveBlob(csvBlob(out), `kpi-overview-${w.name}-${ui.team || "all"}-${w.to}.csv`);
  }

  let flagged = "";
  const unsub = alerts.subscribe((d) => {
    const now = alerts.open.map((a) => a.alert_id).sort().join();
    if (d.type === "refresh" && now !== flagged) {
      flagged = now;
      draw(true);
    }
    // A transition means the numbers moved: fetch now instead of at the next tick.
    if (d.type === "event") load();
  });
  load(true);
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (inflight) inflight.abort();
    unsub();
  };
}
