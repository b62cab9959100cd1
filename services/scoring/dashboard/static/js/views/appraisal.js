// Quarterly appraisal of a team with CSV/XLSX exports (routes of the appraisal module).
import { ApiError, api, download, qs, saveBlob } from "../api.js";
import { setParams } from "../app.js";
import { INFO, csvBlob, esc, gradeChip, kpiShort, kpiName, quarterOf, recentQuarters } from "../format.js";
import { getLang, t } from "../i18n.js";
import { state } from "../state.js";
import { errorBox, errorMessage, teamName, teamPicker } from "./common.js";
import { incentiveText } from "./specialist.js";
import { cycleHref, mountCyclePanel } from "./cycle.js";
import { ct } from "./cycle_i18n.js";

const ROW_KEYS = ["specialists", "items", "members", "appraisals", "rows"];

function rowsOf(data) {
  for (const k of ROW_KEYS) if (Array.isArray(data?.[k])) return data[k];
  return Array.isArray(data) ? data : [];
}
const gradeOf = (v) => (v && typeof v === "object" ? v.grade : v);
const overallOf = (r) => r.overall_grade ?? (typeof r.overall === "object" && r.overall ? r.overall.grade : r.overall) ?? null;
const incentiveOf = (r) => incentiveText(r.suggested_incentive ?? r.incentive);

// A quarter still in progress: not finalised and its last day not over. The API's own
// `provisional` wins when it sends one (on the body or on each appraisal).
export function isProvisional(data, rows, today) {
  if (typeof data?.provisional === "boolean") return data.provisional;
  const marked = rows.filter((r) => typeof r.provisional === "boolean");
  if (marked.length) return marked.some((r) => r.provisional);
  const end = data?.window?.to;
  const finalized = rows.length > 0 && rows.every((r) => r.finalized);
  return Boolean(end) && end >= today && !finalized;
}

export function renderAppraisal(main, _args, params) {
  const quarters = recentQuarters(state.config.today);
  const ui = {
    quarter: params.get("quarter") || quarterOf(state.config.today),
    team: params.get("team") || state.teams[0]?.id || "",
  };
  const available = state.config.features.appraisals;
  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("ap.title"))} <span class="badge-provisional" id="ap-provisional" hidden></span></h1><div class="sub" id="ap-sub"></div></div></div>
    <form class="toolbar" id="ap-tools">
      <div class="field"><label for="ap-quarter">${esc(t("quarter.label"))}</label><select id="ap-quarter" data-role="quarter">
        ${quarters.map((q) => `<option ${q === ui.quarter ? "selected" : ""}>${q}</option>`).join("")}</select></div>
      ${teamPicker("ap", ui.team, { allowAll: false })}
      <button type="button" class="btn" id="ap-csv">${esc(t("export.csv"))}</button>
      <button type="button" class="btn" id="ap-xlsx" ${available ? "" : "hidden"}>${esc(t("export.xlsx"))}</button>
      <span class="form-error" id="ap-err" role="alert"></span></form>
    <div id="ap-body"></div>
    <div id="ap-cycle"></div>`;
  const $ = (s) => main.querySelector(s);
  let fallback = !available;
  // Loads overlap (a quarter chosen while the first is loading, a finalisation's reload) or
  // outlive the view: only the last one asked, on a view still shown, draws.
  let asked = 0;
  let left = false;
  const stale = (mine) => left || mine !== asked;
  $("#ap-tools").addEventListener("change", (ev) => {
    const role = ev.target.dataset.role;
    if (role) ui[role] = ev.target.value;
    setParams({ quarter: ui.quarter, team: ui.team });
    load();
  });
  $("#ap-csv").addEventListener("click", () => exportAs("csv"));
  $("#ap-xlsx").addEventListener("click", () => exportAs("xlsx"));

  async function exportAs(format) {
    $("#ap-err").textContent = "";
    try {
      if (fallback) return await overviewCsv();
      await download(`/v1/appraisals/${ui.quarter}${qs({ team: ui.team, format, lang: getLang() })}`, `appraisal-${ui.quarter}-${ui.team}.${format}`);
    } catch (err) {
      if (err instanceof ApiError && err.routeMissing) {
        fallback = true;
        return overviewCsv();
      }
      $("#ap-err").textContent = errorMessage(err);
    }
  }

  // Without the appraisal module: the quarter's team overview as CSV, exactly as shown.
  async function overviewCsv() {
    const data = await api(`/v1/dashboard/overview${qs({ window: ui.quarter, team: ui.team })}`);
    const kpis = state.config.kpis;
    const head = ["specialist_id", "name", "team_id", ...kpis.flatMap((k) => [k, `${k}_grade`])];
    const out = [head, ...data.members.map((m) => [m.specialist_id, m.name, m.team_id, ...kpis.flatMap((k) => [m.kpis[k].value, m.kpis[k].grade])])];
    saveBlob(csvBlob(out), `kpi-overview-${ui.quarter}-${ui.team}.csv`);
  }

  function markProvisional(on) {
    const badge = $("#ap-provisional");
    badge.hidden = !on;
    badge.textContent = t("ap.provisional");
    badge.title = t("ap.provisional_hint");
    $("#ap-sub").textContent = t("ap.sub", { quarter: ui.quarter }) + (on ? ` · ${t("ap.provisional_hint")}` : "");
  }

  async function load() {
    const mine = ++asked;
    $("#ap-sub").textContent = t("ap.sub", { quarter: ui.quarter });
    $("#ap-provisional").hidden = true;
    const body = $("#ap-body");
    if (!ui.team) {
      body.innerHTML = `<div class="panel empty">${esc(t("overview.none"))}</div>`;
      return;
    }
    if (fallback) {
      // Without the appraisal module: the quarter's per-KPI grades, no overall grade.
      let ov;
      try {
        ov = await api(`/v1/dashboard/overview${qs({ window: ui.quarter, team: ui.team })}`);
      } catch (err) {
        if (!stale(mine)) body.innerHTML = errorBox(err);
        return;
      }
      if (stale(mine)) return;
      markProvisional(isProvisional(ov, [], state.config.today));
      body.innerHTML = `<p class="notice">${esc(t("unavailable.appraisal"))} ${esc(t("ap.fallback"))}</p>` +
        table(ov.members.map((m) => ({ specialist_id: m.specialist_id, name: m.name, kpis: m.kpis })), false);
      return;
    }
    let data;
    try {
      data = await api(`/v1/appraisals/${ui.quarter}${qs({ team: ui.team })}`);
    } catch (err) {
      if (stale(mine)) return;
      if (err instanceof ApiError && err.routeMissing) {
        fallback = true;
        $("#ap-xlsx").hidden = true;
        return load();
      }
      body.innerHTML = errorBox(err);
      return;
    }
    if (stale(mine)) return;
    markProvisional(isProvisional(data, rowsOf(data), state.config.today));
    body.innerHTML = table(rowsOf(data), true);
  }

  function table(rows, withOverall) {
    // The appraisal's graded KPIs: neither nps nor the informational measures.
    const keys = state.config.kpis.filter((k) => k !== "nps" && !INFO.has(k));
    const cycle = state.config.features.appraisal_cycle;
    // Fixed column widths that fit the window (KPI columns share what is left); narrower than
    // the table's minimum, it scrolls sideways inside its box with the names kept in view.
    const cols = `<colgroup><col class="c-name">${keys.map(() => '<col class="c-kpi">').join("")}${withOverall ? '<col class="c-overall"><col class="c-incentive">' : ""}</colgroup>`;
    return rows.length ? `<div class="table-wrap"><table class="grid appraisal-grid" id="appraisal-table"><caption class="sr-only">${esc(t("ap.title"))} ${esc(ui.quarter)} ${esc(teamName(ui.team))}</caption>${cols}<thead><tr>
      <th scope="col" class="sticky-col">${esc(t("overview.specialist"))}</th>${keys.map((k) => `<th scope="col" title="${esc(kpiName(k))}">${esc(kpiShort(k))}</th>`).join("")}
      ${withOverall ? `<th scope="col">${esc(t("ap.overall"))}</th><th scope="col">${esc(t("ap.incentive"))}</th>` : ""}</tr></thead><tbody>
      ${rows.map((r) => {
        const id = r.specialist_id ?? r.id;
        const per = r.kpis || r.grades || {};
        return `<tr><th scope="row" class="sticky-col"><a class="spec-link" href="#/specialist/${encodeURIComponent(id)}?window=${ui.quarter}">${esc(r.name || id)}</a><span class="spec-id">${esc(id)}</span>${withOverall && cycle ? `<a class="spec-cycle" href="${cycleHref(id, ui.quarter)}" aria-label="${esc(ct("cy.open_label", { name: r.name || id }))}">${esc(ct("cy.row_link"))}</a>` : ""}</th>
          ${keys.map((k) => `<td>${per[k] === undefined ? "—" : gradeChip(gradeOf(per[k]))}</td>`).join("")}
          ${withOverall ? `<td>${gradeChip(overallOf(r))}</td><td>${esc(incentiveOf(r))}</td>` : ""}</tr>`;
      }).join("")}</tbody></table></div>` : `<div class="panel empty">${esc(t("overview.empty"))}</div>`;
  }
  load();
  mountCyclePanel($("#ap-cycle"), ui);
  return () => {
    left = true;
  };
}
