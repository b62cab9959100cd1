// Leaderboard: specialists ranked by one KPI, best first.
import { api, qs } from "../api.js";
import { setParams } from "../app.js";
import { esc, fmtValue, gradeChip, kpiName, quarterOf, samples } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { applySizes, errorBox, teamName, teamPicker, windowPicker, windowValue } from "./common.js";

export function renderLeaderboard(main, _args, params) {
  const ui = {
    kpi: params.get("kpi") || "customer_satisfaction",
    win: params.get("window") || "30d",
    quarter: params.get("quarter") || quarterOf(state.config.today),
    team: params.get("team") || "",
  };
  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("lb.title"))}</h1><div class="sub" id="lb-sub"></div></div></div>
    <form class="toolbar" id="lb-tools">
      <div class="field"><label for="lb-kpi">${esc(t("lb.kpi"))}</label><select id="lb-kpi" data-role="kpi">
        ${state.config.kpis.map((k) => `<option value="${k}" ${k === ui.kpi ? "selected" : ""}>${esc(kpiName(k))}</option>`).join("")}</select></div>
      ${windowPicker("lb", ui.win, ui.quarter)}${teamPicker("lb", ui.team)}</form>
    <div id="lb-body"></div>`;
  const $ = (s) => main.querySelector(s);
  $("#lb-tools").addEventListener("change", (ev) => {
    const role = ev.target.dataset.role;
    if (role === "window") {
      ui.win = ev.target.value;
      $("[data-role=quarter-field]").hidden = ui.win !== "quarter";
    } else if (role) ui[role] = ev.target.value;
    setParams({ kpi: ui.kpi, window: ui.win, quarter: ui.win === "quarter" ? ui.quarter : "", team: ui.team });
    load();
  });
  async function load() {
    let data;
    try {
      data = await api(`/v1/leaderboard${qs({ kpi: ui.kpi, window: windowValue(ui.win, ui.quarter), team: ui.team, limit: 200 })}`);
    } catch (err) {
      $("#lb-body").innerHTML = errorBox(err);
      return;
    }
    const k = data.kpi;
    $("#lb-sub").textContent = t("lb.sub", { kpi: kpiName(k), from: data.window.from, to: data.window.to });
    const values = data.entries.map((e) => e.value).filter((v) => v !== null);
    const max = Math.max(1e-9, ...values.map(Math.abs));
    const width = (v) => (v === null ? 0 : k === "avg_response_time_hours" ? 100 * (1 - Math.min(v, max) / (max * 1.05)) : (100 * Math.abs(v)) / max);
    $("#lb-body").innerHTML = data.entries.length ? `<div class="table-wrap"><table class="grid" id="lb-table"><caption class="sr-only">${esc(t("lb.title"))}</caption><thead><tr>
      <th scope="col">${esc(t("lb.rank"))}</th><th scope="col" class="sticky-col">${esc(t("overview.specialist"))}</th><th scope="col">${esc(t("overview.team"))}</th>
      <th scope="col">${esc(t("lb.value"))}</th><th scope="col" class="bar-col"><span class="sr-only">${esc(t("lb.value"))}</span></th><th scope="col">${esc(t("lb.samples"))}</th><th scope="col">${esc(t("lb.grade"))}</th></tr></thead><tbody>
      ${data.entries.map((e) => `<tr class="${e.rank <= 3 && e.value !== null ? "podium" : ""}"><td class="rank">${e.value === null ? "—" : e.rank}</td>
        <th scope="row" class="sticky-col"><a class="spec-link" href="#/specialist/${encodeURIComponent(e.specialist_id)}">${esc(e.name || e.specialist_id)}</a><span class="spec-id">${esc(e.specialist_id)}</span></th>
        <td>${esc(teamName(e.team_id))}</td><td class="num"><strong>${esc(fmtValue(k, e.value))}</strong></td>
        <td aria-hidden="true"><div class="bar bar-${e.grade === "unqualified" || e.grade === "excellent" ? e.grade : "other"}" data-width="${width(e.value).toFixed(1)}%"></div></td>
        <td class="num">${esc(samples(k, e))}</td><td>${gradeChip(e.grade)}</td></tr>`).join("")}</tbody></table></div>` : `<div class="panel empty">${esc(t("overview.none"))}</div>`;
    applySizes($("#lb-body"));
  }
  load();
}
