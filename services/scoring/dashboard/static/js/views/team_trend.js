// Team page trend: one KPI's daily values pooled over the team's current members and its
// 7-day rolling line (GET /v1/teams/{id}/kpis/{kpi}/history), drawn like a specialist's.
import { api, qs } from "../api.js";
import { chartLegend, trendChart } from "../charts.js";
import { addDays, esc, kpiName } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { errorBox, teamName } from "./common.js";

export const trendKpi = (wanted) => (state.config.kpis.includes(wanted) ? wanted : state.config.kpis[0]);

// The panel with its KPI picker; the chart goes into #tt-chart (loadTeamTrend).
export function teamTrendPanel(kpi) {
  return `<div class="page-head"><div><h2 id="tt-h" class="m0">${esc(t("team.trend"))}</h2>
      <div class="sub">${esc(t("team.trend_hint"))}</div></div>
    <div class="field"><label for="tt-kpi">${esc(t("team.trend_kpi"))}</label>
      <select id="tt-kpi">${state.config.kpis.map((k) => `<option value="${k}" ${k === kpi ? "selected" : ""}>${esc(kpiName(k))}</option>`).join("")}</select></div></div>
    <div id="tt-chart" aria-live="polite"></div>`;
}

let drawn = 0; // the latest request: an older answer arriving late draws nothing

// The dates shown follow the overview's window, at least 30 and at most 120 days, like the
// specialist page's charts.
export async function loadTeamTrend(box, team, kpi, window) {
  const ticket = ++drawn;
  const days = Math.round((Date.parse(`${window.to}T00:00:00Z`) - Date.parse(`${window.from}T00:00:00Z`)) / 86400000) + 1;
  const span = Math.max(30, Math.min(120, days));
  const from = addDays(window.to, -(span - 1));
  let series;
  try {
    series = await api(`/v1/teams/${encodeURIComponent(team)}/kpis/${encodeURIComponent(kpi)}/history${qs({ from, to: window.to })}`);
  } catch (err) {
    if (ticket === drawn) box.innerHTML = errorBox(err);
    return;
  }
  if (ticket !== drawn || !box.isConnected) return;
  const line = state.config.lines[kpi];
  box.innerHTML = `<figure class="chart-card m0" id="team-trend" data-team="${esc(team)}" data-kpi="${kpi}">
    <h3>${esc(t("team.trend_title", { kpi: kpiName(kpi), team: series.name || teamName(team) }))}</h3>
    ${trendChart(kpi, series.points, line)}${chartLegend(kpi, line)}</figure>`;
}
