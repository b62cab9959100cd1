// Specialist page: KPI tiles with lines, daily trend charts, drill-down, alerts, plan, appraisal.
import { ApiError, api, qs } from "../api.js";
import { setParams } from "../app.js";
import { chartLegend, gaugeScale, trendChart } from "../charts.js";
import { INFO, addDays, esc, fmtLine, fmtValue, gradeChip, gradeClass, gradeLabel, kpiName, quarterOf, samples } from "../format.js";
import { getLang, t } from "../i18n.js";
import { alerts, state } from "../state.js";
import { alertItem, bindAlertActions } from "./alerts.js";
import { cycleHref } from "./cycle.js";
import { ct } from "./cycle_i18n.js";
import { channelPanels, loadChannelPanels } from "./channels.js";
import { applySizes, errorBox, teamName, windowPicker, windowValue } from "./common.js";

// `mine`: the KPI part of a specialist's own page (my_page.js): no way back to the team
// overview, no alerts (notify is not theirs to call), plan and appraisal shown by that page.
export function renderSpecialist(main, args, params, { mine = false } = {}) {
  const id = args[0];
  const first = params.get("window") || "30d";
  const isQuarter = /^\d{4}Q[1-4]$/.test(first);
  const ui = {
    win: isQuarter ? "quarter" : first,
    quarter: isQuarter ? first : quarterOf(state.config.today),
    kpi: params.get("kpi") || "customer_satisfaction",
  };
  let data = null;
  let timer = null;
  // Set when the view is left (or the user signs out): answers arriving later draw nothing.
  let stopped = false;
  let facts = { items: [], next: null, kept: null };

  const h = mine ? "h3" : "h1";
  main.innerHTML = `
    ${mine ? "" : `<p><a href="#/overview">${esc(t("spec.back"))}</a></p>`}
    <div class="page-head"><div><${h} id="sp-name">${esc(state.names.get(id) || id)}</${h}><div class="sub" id="sp-sub"></div></div>
      <form class="toolbar m0" id="sp-tools">${windowPicker("sp", ui.win, ui.quarter)}</form></div>
    <div id="sp-tiles" class="tiles" role="group" aria-label="KPI"></div>
    <div class="${mine ? "" : "two-col"}">
      <section class="panel" aria-labelledby="sp-drill-h"><h2 id="sp-drill-h"></h2><div id="sp-drill"></div></section>
      ${mine ? "" : `<div>
        <section class="panel" aria-labelledby="sp-alerts-h"><h2 id="sp-alerts-h">${esc(t("spec.alerts"))}</h2><div id="sp-alerts" aria-live="polite"></div></section>
        <section class="panel" aria-labelledby="sp-plan-h"><h2 id="sp-plan-h">${esc(t("spec.plan"))}</h2><div id="sp-plan"></div></section>
        <section class="panel" aria-labelledby="sp-ap-h"><h2 id="sp-ap-h">${esc(t("spec.appraisal", { quarter: ui.quarter }))}</h2><div id="sp-appraisal"></div>
          ${state.config.features.appraisal_cycle ? `<p><a class="btn btn-small" id="sp-cycle" href="${cycleHref(id, isQuarter ? ui.quarter : "")}">${esc(ct("cy.open"))}</a></p>` : ""}</section>
      </div>`}
    </div>
    ${channelPanels("sp")}
    <section aria-labelledby="sp-trends-h"><div class="page-head"><div><h2 id="sp-trends-h" class="m0">${esc(t("spec.trends"))}</h2>
      <div class="sub">${esc(t("spec.trend_hint"))}</div></div></div><div id="sp-charts" class="charts"></div></section>`;
  const $ = (s) => main.querySelector(s);
  const win = () => windowValue(ui.win, ui.quarter);

  $("#sp-tools").addEventListener("change", (ev) => {
    const role = ev.target.dataset.role;
    if (role === "window") {
      ui.win = ev.target.value;
      $("[data-role=quarter-field]").hidden = ui.win !== "quarter";
    } else if (role === "quarter") ui.quarter = ev.target.value;
    setParams({ window: win(), kpi: ui.kpi });
    load();
  });
  $("#sp-tiles").addEventListener("click", (ev) => {
    const tile = ev.target.closest("[data-kpi]");
    if (!tile) return;
    ui.kpi = tile.dataset.kpi;
    setParams({ window: win(), kpi: ui.kpi });
    drawTiles();
    loadFacts(true);
  });
  $("#sp-drill").addEventListener("click", (ev) => {
    if (ev.target.id === "sp-more") loadFacts(false);
  });

  function drawTiles() {
    const lines = state.config.lines;
    const tile = (k) => {
      const c = data.kpis[k];
      const line = lines[k];
      const scale = gaugeScale(k, line);
      const pos = (v) => `${(scale(v) * 100).toFixed(1)}%`;
      const gauge = c.value === null ? "" : `<div class="gauge" aria-hidden="true"><div class="fill" data-width="${pos(c.value)}"></div>
        ${line.qualified !== null ? `<div class="mark" data-left="${pos(line.qualified)}"></div>` : ""}${line.excellent !== null ? `<div class="mark" data-left="${pos(line.excellent)}"></div>` : ""}</div>`;
      const lineText = line.qualified === null ? "" : line.excellent === null ? t("spec.line_q", { q: fmtLine(k, line.qualified) }) : t("spec.lines", { q: fmtLine(k, line.qualified), e: fmtLine(k, line.excellent) });
      return `<button type="button" class="tile ${gradeClass(c.grade)}" data-kpi="${k}" data-grade="${c.grade || "none"}" aria-pressed="${ui.kpi === k}">
        <span class="t-label">${esc(kpiName(k))}</span>
        <span class="t-value">${esc(fmtValue(k, c.value))}</span>${gauge}
        <span class="t-lines">${esc(lineText)}${line.min_samples ? ` · ${esc(t("spec.min", { n: line.min_samples }))}` : ""}</span>
        <span class="t-foot"><span>${esc(t("samples.long", { n: samples(k, c) }))}</span><span>${esc(gradeLabel(c.grade))}</span></span></button>`;
    };
    // The appraised KPIs first; the informational measures (not appraised) apart, after them.
    const keys = state.config.kpis;
    const info = keys.filter((k) => INFO.has(k));
    $("#sp-tiles").innerHTML = keys.filter((k) => !INFO.has(k)).map(tile).join("") +
      (info.length ? `<h2 class="tiles-sep" id="sp-info-h">${esc(t("kpi.informational"))}</h2><p class="tiles-sep muted">${esc(t("kpi.informational_hint"))}</p>${info.map(tile).join("")}` : "");
    applySizes($("#sp-tiles"));
  }

  async function loadCharts() {
    const to = data.window.to;
    const span = Math.max(30, Math.min(120, daysBetween(data.window.from, to) + 1));
    const from = addDays(to, -(span - 1));
    const box = $("#sp-charts");
    const keys = state.config.kpis;
    const series = await Promise.all(keys.map((k) => api(`/v1/specialists/${encodeURIComponent(id)}/kpis/${k}/history${qs({ from, to })}`).catch(() => null)));
    if (stopped) return;
    box.innerHTML = keys.map((k, i) => {
      if (!series[i]) return "";
      const line = state.config.lines[k];
      return `<figure class="chart-card m0"><h3>${esc(kpiName(k))}</h3>${trendChart(k, series[i].points, line)}${chartLegend(k, line)}</figure>`;
    }).join("");
  }

  async function loadFacts(reset) {
    if (reset) facts = { items: [], next: null, kept: null };
    $("#sp-drill-h").textContent = t("spec.drill", { kpi: kpiName(ui.kpi) });
    try {
      const page = await api(`/v1/specialists/${encodeURIComponent(id)}/kpis/${ui.kpi}/events${qs({ window: win(), limit: 50, cursor: reset ? "" : facts.next })}`);
      facts.items.push(...page.items);
      facts.next = page.next_cursor;
      facts.kept = page.kept_from ?? null;
    } catch (err) {
      if (!stopped) $("#sp-drill").innerHTML = errorBox(err);
      return;
    }
    if (stopped) return;
    const c = data.kpis[ui.kpi];
    // Rows before the ledger retention's cut-off were dropped; the value above still counts them.
    const kept = facts.kept && data.window.from < facts.kept
      ? `<p class="notice" id="sp-kept">${esc(t("spec.kept_from", { date: facts.kept }))}</p>` : "";
    if (!facts.items.length) {
      $("#sp-drill").innerHTML = `${kept}<p class="muted">${esc(t("spec.nofacts"))}</p>`;
      return;
    }
    const fmt = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(2));
    $("#sp-drill").innerHTML = `${kept}<p class="muted">${esc(t("spec.drill_sum", { num: fmt(c.numerator ?? 0), den: c.denominator ?? "—" }))}</p>
      <div class="table-wrap facts-wrap"><table class="grid" id="facts-table"><thead><tr><th scope="col">${esc(t("spec.day"))}</th><th scope="col">${esc(t("spec.source"))}</th>
      <th scope="col" class="num">${esc(t("spec.num"))}</th><th scope="col" class="num">${esc(t("spec.den"))}</th></tr></thead><tbody>
      ${facts.items.map((f) => `<tr><td>${esc(f.day)}</td><td><code>${esc(f.source)}</code></td><td class="num">${esc(fmt(f.num))}</td><td class="num">${esc(f.den)}</td></tr>`).join("")}
      </tbody></table></div>${facts.next ? `<p><button type="button" class="btn" id="sp-more">${esc(t("spec.more"))}</button></p>` : ""}`;
  }

  function drawAlerts() {
    const box = $("#sp-alerts");
    if (!box) return;
    if (alerts.available === false) {
      box.innerHTML = `<p class="notice">${esc(t("unavailable.alerts"))}</p>`;
      return;
    }
    const mine = alerts.bySpecialist(id);
    box.innerHTML = mine.length ? `<ul class="alert-list">${mine.map((a) => alertItem(a)).join("")}</ul>` : `<p class="muted">${esc(t("spec.noalerts"))}</p>`;
  }
  if (!mine) bindAlertActions($("#sp-alerts"));

  async function loadPlan() {
    const box = $("#sp-plan");
    if (!state.config.features.improvement_plans) {
      box.innerHTML = `<p class="notice">${esc(t("unavailable.plan"))}</p>`;
      return;
    }
    try {
      const plan = await api(`/v1/specialists/${encodeURIComponent(id)}/plans/${ui.quarter}`);
      box.innerHTML = planSummary(plan);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        box.innerHTML = `<p class="muted">${esc(err.routeMissing ? t("unavailable.plan") : t("spec.plan_none"))}</p>`;
      } else box.innerHTML = errorBox(err);
    }
  }

  async function loadAppraisal() {
    const box = $("#sp-appraisal");
    if (!state.config.features.specialist_appraisals) {
      box.innerHTML = `<p class="notice">${esc(t("unavailable.appraisal"))}</p>`;
      return;
    }
    try {
      const ap = await api(`/v1/specialists/${encodeURIComponent(id)}/appraisals/${ui.quarter}`);
      box.innerHTML = appraisalSummary(ap);
    } catch (err) {
      box.innerHTML = err instanceof ApiError && err.routeMissing ? `<p class="notice">${esc(t("unavailable.appraisal"))}</p>` : errorBox(err);
    }
  }

  async function load() {
    clearTimeout(timer);
    try {
      data = await api(`/v1/specialists/${encodeURIComponent(id)}/kpis${qs({ window: win() })}`);
    } catch (err) {
      if (!stopped) $("#sp-tiles").innerHTML = errorBox(err);
      return;
    }
    if (stopped) return;
    state.names.set(id, data.name || id);
    $("#sp-name").textContent = data.name || id;
    $("#sp-sub").textContent = `${id} · ${data.team_id ? t("spec.team", { team: teamName(data.team_id) }) : t("spec.noteam")} · ${data.window.from} – ${data.window.to}`;
    drawTiles();
    drawAlerts();
    const base = `/v1/specialists/${encodeURIComponent(id)}`;
    await Promise.all([loadFacts(true), loadCharts(), loadChannelPanels(main, "sp", base, win(), () => stopped)]);
    if (!stopped) timer = setTimeout(refresh, 15000);
  }
  async function refresh() {
    try {
      data = await api(`/v1/specialists/${encodeURIComponent(id)}/kpis${qs({ window: win() })}`);
      if (!stopped) drawTiles();
    } catch {}
    if (!stopped) timer = setTimeout(refresh, 15000);
  }

  const unsub = alerts.subscribe((d) => {
    if (d.type === "refresh" || d.type === "stream") drawAlerts();
  });
  load();
  if (!mine) {
    loadPlan();
    loadAppraisal();
  }
  return () => {
    stopped = true;
    clearTimeout(timer);
    unsub();
  };
}

function daysBetween(a, b) {
  return Math.round((Date.parse(`${b}T00:00:00Z`) - Date.parse(`${a}T00:00:00Z`)) / 86400000);
}

// GET /v1/specialists/{id}/plans/{quarter}: status plus each goal's progress on live KPIs.
function planSummary(plan) {
  const goals = plan.goals || [];
  const suggested = plan.progress?.suggested_status;
  return `<p><strong>${esc(t(`plan.${plan.status}`))}</strong>${suggested && suggested !== plan.status ? ` <span class="muted">(${esc(t("plan.suggested", { s: t(`plan.${suggested}`) }))})</span>` : ""}</p>
    <ul class="alert-list">${goals.map((g) => `<li class="alert-item ${g.status === "achieved" ? "resolved" : g.status === "behind" || g.status === "missed" ? "" : "acked"}">
      <div><div class="a-title">${esc(kpiName(g.kpi))}: ${esc(fmtValue(g.kpi, g.value))} → ${esc(fmtValue(g.kpi, g.target))}</div>
      <div class="a-meta">${esc(t(`goal.${g.status}`))} · ${esc(t("plan.due", { due: g.due }))}</div></div></li>`).join("")}</ul>
    ${plan.notes ? `<p class="muted">${esc(plan.notes)}</p>` : ""}`;
}

// {"actions": [...], "labels": {"en": [...], "zh-CN": [...]}} -> text in the current language.
export function incentiveText(v) {
  if (v === undefined || v === null) return "";
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") {
    const labels = v.labels?.[getLang()] || v.labels?.en || v.actions || [];
    return labels.join(", ");
  }
  return String(v);
}

export function appraisalSummary(ap) {
  const overall = ap.overall_grade ?? ap.overall ?? ap.grade;
  const incentive = incentiveText(ap.suggested_incentive ?? ap.incentive);
  const per = ap.kpis || ap.grades || {};
  return `<p>${esc(t("ap.overall"))}: ${overall ? gradeChip(overall) : "—"}</p>
    ${incentive ? `<p>${esc(t("ap.incentive"))}: <strong>${esc(incentive)}</strong></p>` : ""}
    <ul class="legend plain-list">${Object.entries(per).map(([k, v]) => `<li>${esc(kpiName(k))} ${gradeChip(typeof v === "object" && v ? v.grade : v)}</li>`).join("")}</ul>`;
}
