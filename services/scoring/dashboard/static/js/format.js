// Formatting of KPI values, grades, dates; HTML escaping.
import { getLang, setKpiNames, t } from "./i18n.js";

// KPIs whose values are shares of 1, shown as percent; filled from the catalogue.
export const RATIO = new Set();

// The KPI catalogue of /v1/dashboard/config: units here, display names in i18n.
export function useCatalogue(catalogue) {
  RATIO.clear();
  for (const [key, kpi] of Object.entries(catalogue)) if (kpi.unit === "ratio") RATIO.add(key);
  setKpiNames(catalogue);
}
export const GRADES = ["excellent", "qualified", "unqualified", "insufficient_data"];

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function fmtValue(kpi, v) {
  if (v === null || v === undefined) return "—";
  if (RATIO.has(kpi)) return `${(v * 100).toFixed(1)}%`;
  if (kpi === "avg_response_time_hours") return `${v.toFixed(1)} h`;
  if (kpi === "nps") return `${v > 0 ? "+" : ""}${v.toFixed(0)}`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

export function fmtLine(kpi, v) {
  if (v === null || v === undefined) return "—";
  if (RATIO.has(kpi)) return `${Math.round(v * 1000) / 10}%`;
  if (kpi === "avg_response_time_hours") return `≤ ${v} h`;
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

export function csvEscape(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
