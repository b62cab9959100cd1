// Formatting of KPI values, grades, dates; HTML escaping.
import { getLang, setKpiNames, t } from "./i18n.js";

// KPIs whose values are shares of 1, shown as percent; filled from the catalogue.
export const RATIO = new Set();
// KPIs in hours, KPIs where lower is better, and the informational measures that are not
// appraised (SPEC §3a: shown after the appraised KPIs); filled from the catalogue.
export const HOURS = new Set();
export const LOWER = new Set();
export const INFO = new Set();

// The KPI catalogue of /v1/dashboard/config: units here, display names in i18n.
export function useCatalogue(catalogue) {
  for (const set of [RATIO, HOURS, LOWER, INFO]) set.clear();
  for (const [key, kpi] of Object.entries(catalogue)) {
    if (kpi.unit === "ratio") RATIO.add(key);
    if (kpi.unit === "hours") HOURS.add(key);
    if (kpi.higher_is_better === false) LOWER.add(key);
    if (kpi.appraised === false) INFO.add(key);
  }
  setKpiNames(catalogue);
}
export const GRADES = ["excellent", "qualified", "unqualified", "insufficient_data"];

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function fmtValue(kpi, v) {
  if (v === null || v === undefined) return "—";
  if (RATIO.has(kpi)) return `${(v * 100).toFixed(1)}%`;
  if (HOURS.has(kpi)) return `${v.toFixed(1)} h`;
  if (kpi === "nps") return `${v > 0 ? "+" : ""}${v.toFixed(0)}`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

export function fmtLine(kpi, v) {
  if (v === null || v === undefined) return "—";
  if (RATIO.has(kpi)) return `${LOWER.has(kpi) ? "≤ " : ""}${Math.round(v * 1000) / 10}%`;
  if (HOURS.has(kpi)) return `≤ ${v} h`;
  return `≥ ${v}`;
}

// Samples behind a value: denominator, or the count for training sessions.
export function samples(kpi, cell) {
  if (!cell) return 0;
  if (kpi === "training_sessions") return cell.numerator ?? 0;
  return cell.denominator ?? 0;
}

export function gradeClass(grade) {
  return `g-${grade || "none"}`;
}

const GRADE_ICON = { excellent: "★", qualified: "✓", unqualified: "▼", insufficient_data: "…" };
export function gradeLabel(grade) {
  return t(`grade.${grade || "none"}`);
}
export function gradeChip(grade) {
  return `<span class="chip ${gradeClass(grade)}"><span aria-hidden="true">${GRADE_ICON[grade] || "–"}</span>${esc(gradeLabel(grade))}</span>`;
}

export const kpiName = (k) => t(`kpi.${k}`);
export const kpiShort = (k) => t(`kpishort.${k}`);

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(getLang(), { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
export function fmtClock(d = new Date()) {
  return d.toLocaleTimeString(getLang(), { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function quarterOf(isoDate) {
  const [y, m] = isoDate.split("-").map(Number);
  return `${y}Q${Math.floor((m - 1) / 3) + 1}`;
}
// The current and previous quarters, newest first.
export function recentQuarters(isoToday, n = 8) {
  let [y, m] = isoToday.split("-").map(Number);
  let q = Math.floor((m - 1) / 3) + 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(`${y}Q${q}`);
    q -= 1;
    if (q === 0) { q = 4; y -= 1; }
  }
  return out;
}

export function addDays(iso, n) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// Spreadsheet-safe CSV, the rule of shared/spreadsheet.py (OWASP "CSV Injection"): names and
// ids come from helpdesk events, i.e. from outside. A number stays a bare number (a negative
// NPS is still a number); text gets U+FFFD for NUL and lone surrogates, a ' before a leading
// = + - @ tab or CR (no spreadsheet reads it as a formula), and is always quoted, so a ; or tab
// separator (Excel's in some locales) cannot start a live cell inside it.
const FORMULA_TRIGGER = /^[=+\-@\t\r]/;
const UNSTORABLE = /\0|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

export function neutralise(text) {
  const s = String(text).replace(UNSTORABLE, "\ufffd");
  return FORMULA_TRIGGER.test(s) ? `'${s}` : s;
}

export function csvEscape(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "";
  return `"${neutralise(v).replace(/"/g, '""')}"`;
}

// A CSV file of rows: UTF-8 with a BOM (Excel then shows Chinese correctly), CRLF lines.
export function csvBlob(rows) {
  const text = "\ufeff" + rows.map((r) => r.map(csvEscape).join(",")).join("\r\n") + "\r\n";
  return new Blob([text], { type: "text/csv;charset=utf-8" });
}
