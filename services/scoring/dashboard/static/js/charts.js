// Small inline-SVG charts drawn here (no chart library, nothing from a CDN).
import { HOURS, LOWER, RATIO, esc, fmtLine, fmtValue, kpiName } from "./format.js";
import { t } from "./i18n.js";

const W = 380, H = 170, PAD = { l: 44, r: 10, t: 10, b: 24 };

function rolling(points, kpi, days = 7) {
  const out = [];
  let num = 0, den = 0;
  for (let i = 0; i < points.length; i++) {
    num += points[i].numerator || 0;
    den += points[i].denominator || 0;
    if (i >= days) {
      num -= points[i - days].numerator || 0;
      den -= points[i - days].denominator || 0;
    }
    let v = null;
    if (den > 0) v = kpi === "nps" ? (num / den) * 100 : num / den;
    out.push(v);
  }
  return out;
}

function domain(kpi, values, line) {
  const vals = values.filter((v) => v !== null && Number.isFinite(v));
  if (RATIO.has(kpi)) {
    const lo = Math.min(...vals, line.qualified ?? 1) - 0.05;
    return [Math.max(0, Math.floor(lo * 10) / 10), 1];
  }
  if (kpi === "nps") return [-100, 100];
  if (HOURS.has(kpi)) {
    const hi = Math.max((line.qualified ?? 24) * 1.4, ...vals);
    return [0, Math.ceil(hi / 6) * 6];
  }
  return [0, Math.max(4, Math.ceil((Math.max(0, ...vals) + 1) / 4) * 4)];
}

export function trendChart(kpi, points, line) {
  const n = points.length;
  if (!n) return "";
  const daily = points.map((p) => (p.value === null || p.value === undefined ? null : p.value));
  const isTraining = kpi === "training_sessions";
  let main;
  if (isTraining) {
    let c = 0;
    main = points.map((p) => (c += p.numerator || 0));
  } else if (points.every((p) => p.rolling_7d)) {
    // The server's 7 days also reach before the first point; the local sum is for older servers.
    main = points.map((p) => p.rolling_7d.value ?? null);
  } else {
    main = rolling(points, kpi);
  }
  // The rolling line and the lines set the scale; lone daily outliers are clamped to it.
  const [y0, y1] = domain(kpi, main, line);
  const x = (i) => PAD.l + (n === 1 ? 0 : (i * (W - PAD.l - PAD.r)) / (n - 1));
  const y = (v) => PAD.t + (1 - (Math.min(Math.max(v, y0), y1) - y0) / (y1 - y0 || 1)) * (H - PAD.t - PAD.b);
  const parts = [];
  // Grid and y ticks
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    const yy = y(v).toFixed(1);
    parts.push(`<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${yy}" y2="${yy}" stroke="#e6e9f0"/>`);
    parts.push(`<text x="${PAD.l - 6}" y="${yy}" dy="3" text-anchor="end" font-size="10" fill="#5a6478">${esc(tick(kpi, v))}</text>`);
  }
  // x labels: first, middle, last date
  for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
    parts.push(`<text x="${x(i).toFixed(1)}" y="${H - 6}" text-anchor="${i === 0 ? "start" : i === n - 1 ? "end" : "middle"}" font-size="10" fill="#5a6478">${points[i].date.slice(5)}</text>`);
  }
  // Lines: qualified (amber, dashed) and excellent (green, dashed)
  const lineEl = (v, colour, label) => {
    if (v === null || v === undefined || v < y0 || v > y1) return "";
    const yy = y(v).toFixed(1);
    return `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${yy}" y2="${yy}" stroke="${colour}" stroke-width="1.5" stroke-dasharray="5 4"><title>${esc(label)} ${esc(fmtLine(kpi, v))}</title></line>`;
  };
  parts.push(lineEl(line.qualified, "#c77700", t("spec.qline")));
  parts.push(lineEl(line.excellent, "#1f9d4d", t("spec.eline")));
  if (isTraining) {
    const bw = Math.max(2, (W - PAD.l - PAD.r) / n - 2);
    points.forEach((p, i) => {
      if (p.numerator) {
        parts.push(`<rect x="${(x(i) - bw / 2).toFixed(1)}" y="${y(p.numerator).toFixed(1)}" width="${bw.toFixed(1)}" height="${(y(y0) - y(p.numerator)).toFixed(1)}" fill="#9db4f0"/>`);
      }
    });
  } else {
    daily.forEach((v, i) => {
      if (v !== null) parts.push(`<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.2" fill="#9db4f0"><title>${points[i].date}: ${esc(fmtValue(kpi, v))} (n=${points[i].denominator ?? 0})</title></circle>`);
    });
  }
  // Main line, broken where there is no value.
  let d = "";
  main.forEach((v, i) => {
    if (v === null) return;
    const cmd = i > 0 && main[i - 1] !== null ? "L" : "M";
    d += `${cmd}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
  });
  if (d) parts.push(`<path d="${d}" fill="none" stroke="#1f4fd1" stroke-width="2" stroke-linejoin="round"/>`);
  const last = [...main].reverse().find((v) => v !== null);
  const label = `${kpiName(kpi)}: ${points[0].date} – ${points[n - 1].date}; ${t(isTraining ? "kpi.training_sessions" : "spec.rolling")} ${last === undefined ? "—" : fmtValue(kpi, last)}; ${t("spec.qline")} ${fmtLine(kpi, line.qualified)}`;
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}" data-kpi="${kpi}"><title>${esc(label)}</title>${parts.join("")}</svg>`;
}

// The legend under a trend chart: what the line is, and the dashed lines with their values.
export function chartLegend(kpi, line) {
  return `<figcaption class="chart-legend"><span><span class="sw sw-series"></span>${esc(t(kpi === "training_sessions" ? "kpi.training_sessions" : "spec.rolling"))}</span>
    ${line.qualified !== null ? `<span><span class="sw dash sw-qualified"></span>${esc(t("spec.qline"))} ${esc(fmtLine(kpi, line.qualified))}</span>` : ""}
    ${line.excellent !== null ? `<span><span class="sw dash sw-excellent"></span>${esc(t("spec.eline"))} ${esc(fmtLine(kpi, line.excellent))}</span>` : ""}</figcaption>`;
}

function tick(kpi, v) {
  if (RATIO.has(kpi)) return `${Math.round(v * 1000) / 10}%`;
  if (HOURS.has(kpi)) return `${Math.round(v)}h`;
  return String(Math.round(v));
}

// Horizontal position (0..1) of a value on a tile gauge, with the lines as marks.
export function gaugeScale(kpi, line) {
  // Lower-is-better shares (reopen rate): a fuller gauge is better, as everywhere else.
  if (RATIO.has(kpi) && LOWER.has(kpi)) return (v) => Math.min(1, Math.max(0, 1 - v));
  if (RATIO.has(kpi)) {
    const lo = Math.max(0, Math.min(0.6, (line.qualified ?? 0.8) - 0.25));
    return (v) => Math.min(1, Math.max(0, (v - lo) / (1 - lo)));
  }
  if (HOURS.has(kpi)) {
    const hi = (line.qualified ?? 24) * 2;
    return (v) => Math.min(1, Math.max(0, 1 - v / hi));
  }
  if (kpi === "nps") return (v) => (v + 100) / 200;
  return (v) => Math.min(1, v / Math.max(2, (line.qualified ?? 1) * 2));
}
