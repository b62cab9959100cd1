// KPIs by ticket channel and the distributions of the two time measures (p50/p90/p99 and a
// small histogram), for a specialist's page and a team's overview. en and zh-CN strings here.
import { api, qs } from "../api.js";
import { esc, fmtValue, gradeClass, gradeLabel, kpiName } from "../format.js";
import { getLang, t } from "../i18n.js";
import { errorBox } from "./common.js";

const STRINGS = {
  en: {
    "ch.title": "By channel",
    "ch.sub": "Ticket-borne KPIs split by the ticket's channel (surveys without a ticket: unknown).",
    "ch.channel": "Channel",
    "ch.unknown": "unknown",
    "ch.other": "Other channels ({n})",
    "ch.empty": "No tickets or surveys in this window.",
    "ch.dist_title": "Time distributions",
    "ch.dist_sub": "Percentiles estimated from log-spaced buckets, within ±{err}% of the exact value.",
    "ch.count": "{n} tickets · mean {mean}",
    "ch.nodata": "No times in this window.",
    "ch.hist": "Histogram of {kpi}",
    "ch.bar": "{lower} – {upper}: {n}",
    "ch.min": "{v} min",
    "ch.hours": "{v} h",
    "ch.days": "{v} d",
    "ch.kpi.resolution_time_hours": "Resolution time",
    "ch.kpi.first_response_sla_rate": "First response within SLA",
    "ch.kpi.reopen_rate": "Reopen rate",
  },
  "zh-CN": {
    "ch.title": "按渠道",
    "ch.sub": "与工单相关的指标按工单渠道拆分（无工单的调查计入 unknown）。",
    "ch.channel": "渠道",
    "ch.unknown": "未知",
    "ch.other": "其他渠道（{n} 个）",
    "ch.empty": "此时间范围内没有工单或调查。",
    "ch.dist_title": "时长分布",
    "ch.dist_sub": "分位数由对数分桶估算，与精确值相差不超过 ±{err}%。",
    "ch.count": "{n} 张工单 · 平均 {mean}",
    "ch.nodata": "此时间范围内没有时长数据。",
    "ch.hist": "{kpi} 分布直方图",
    "ch.bar": "{lower} – {upper}：{n}",
    "ch.min": "{v} 分钟",
    "ch.hours": "{v} 小时",
    "ch.days": "{v} 天",
    "ch.kpi.resolution_time_hours": "解决时长",
    "ch.kpi.first_response_sla_rate": "首次响应达标率",
    "ch.kpi.reopen_rate": "重开率",
  },
};

export function cht(key, params = {}) {
  const s = STRINGS[getLang()]?.[key] ?? STRINGS.en[key];
  if (s === undefined) return t(key, params);
  return s.replace(/\{(\w+)\}/g, (_, k) => (params[k] !== undefined ? String(params[k]) : `{${k}}`));
}

// Every key exists in both languages (checked by the browser test through this export).
export const STRING_KEYS = { en: Object.keys(STRINGS.en), "zh-CN": Object.keys(STRINGS["zh-CN"]) };
export const TIME_KPIS = ["avg_response_time_hours", "resolution_time_hours"];
const RATIOS = new Set(["first_response_sla_rate", "reopen_rate"]);

// A measure the catalogue of this server does not name yet still gets a readable name.
function name(k) {
  const n = kpiName(k);
  return n === `kpi.${k}` ? cht(`ch.kpi.${k}`) : n;
}

function value(k, v) {
  if (v === null || v === undefined) return "—";
  if (RATIOS.has(k)) return `${(v * 100).toFixed(1)}%`;
  if (TIME_KPIS.includes(k)) return hours(v);
  return fmtValue(k, v);
}

export function hours(v) {
  if (v === null || v === undefined) return "—";
  if (v < 1) return cht("ch.min", { v: (v * 60).toFixed(v * 60 < 10 ? 1 : 0) });
  if (v < 48) return cht("ch.hours", { v: v.toFixed(1) });
  return cht("ch.days", { v: (v / 24).toFixed(1) });
}

// The two panels' skeleton; `prefix` keeps ids unique per page.
export function channelPanels(prefix) {
  return `<section class="panel" aria-labelledby="${prefix}-ch-h"><h2 id="${prefix}-ch-h">${esc(cht("ch.title"))}</h2>
      <div class="sub">${esc(cht("ch.sub"))}</div><div id="${prefix}-channels" class="table-wrap"></div></section>
    <section class="panel" aria-labelledby="${prefix}-dist-h"><h2 id="${prefix}-dist-h">${esc(cht("ch.dist_title"))}</h2>
      <div class="sub" id="${prefix}-dist-sub"></div><div id="${prefix}-dist" class="dist-cards"></div></section>`;
}

// `base`: /v1/specialists/{id} or /v1/teams/{id}. `stopped()` is true once the view is gone.
export async function loadChannelPanels(root, prefix, base, window, stopped) {
  const table = root.querySelector(`#${prefix}-channels`);
  const dist = root.querySelector(`#${prefix}-dist`);
  if (!table || !dist) return;
  const [by, ...dists] = await Promise.all([
    api(`${base}/kpis${qs({ window, by: "channel" })}`).catch((err) => err),
    ...TIME_KPIS.map((k) => api(`${base}/kpis/${k}/distribution${qs({ window })}`).catch((err) => err)),
  ]);
  if (stopped()) return;
  table.innerHTML = by instanceof Error ? errorBox(by) : channelTable(by);
  const ok = dists.find((d) => !(d instanceof Error));
  root.querySelector(`#${prefix}-dist-sub`).textContent = ok ? cht("ch.dist_sub", { err: (ok.relative_error * 100).toFixed(1) }) : "";
  dist.innerHTML = dists.map((d, i) => (d instanceof Error ? errorBox(d) : distCard(TIME_KPIS[i], d))).join("");
}

function channelTable(body) {
  const channels = Object.entries(body.by_channel || {});
  const other = body.other_channels;
  if (!channels.length && !other) return `<p class="muted">${esc(cht("ch.empty"))}</p>`;
  const keys = Object.keys((channels[0] || [null, other.kpis])[1]);
  const cell = (k, c) => `<td class="num ${gradeClass(c.grade)}" data-kpi="${esc(k)}" title="${esc(gradeLabel(c.grade))}">${esc(value(k, c.value))}<span class="muted"> · ${esc(c.denominator ?? 0)}</span></td>`;
  const row = (label, kpis, cls = "") => `<tr class="${cls}"><th scope="row">${label}</th>${keys.map((k) => cell(k, kpis[k])).join("")}</tr>`;
  const label = (ch) => (ch === "unknown" ? `<em>${esc(cht("ch.unknown"))}</em>` : esc(ch));
  return `<table class="grid channel-table"><thead><tr><th scope="col">${esc(cht("ch.channel"))}</th>${keys.map((k) => `<th scope="col" class="num">${esc(name(k))}</th>`).join("")}</tr></thead>
    <tbody>${channels.map(([ch, kpis]) => row(label(ch), kpis)).join("")}${other ? row(esc(cht("ch.other", { n: other.channels })), other.kpis, "other") : ""}</tbody></table>`;
}

function distCard(k, d) {
  const head = `<h3>${esc(name(k))}</h3>`;
  if (!d.count) return `<figure class="chart-card dist-card m0" data-kpi="${esc(k)}">${head}<p class="muted">${esc(cht("ch.nodata"))}</p></figure>`;
  const stats = ["p50", "p90", "p99"].map((p) => `<div><dt>${p}</dt><dd data-p="${p}">${esc(hours(d[p]))}</dd></div>`).join("");
  return `<figure class="chart-card dist-card m0" data-kpi="${esc(k)}">${head}<dl class="dist-stats">${stats}</dl>
    <p class="muted">${esc(cht("ch.count", { n: d.count, mean: hours(d.mean) }))}</p>${histogram(k, d.histogram)}</figure>`;
}

// Inline SVG (attributes, not style): one bar per non-empty bucket, heights by count.
function histogram(k, buckets) {
  const w = 240;
  const h = 60;
  const gap = 2;
  const top = Math.max(...buckets.map((b) => b.count));
  const bw = Math.max(2, (w - gap * buckets.length) / buckets.length);
  const bars = buckets.map((b, i) => {
    const bh = Math.max(1, Math.round((b.count / top) * (h - 2)));
    const tip = cht("ch.bar", { lower: hours(b.lower), upper: b.upper === null ? "∞" : hours(b.upper), n: b.count });
    return `<rect class="h-bar" x="${(i * (bw + gap)).toFixed(1)}" y="${h - bh}" width="${bw.toFixed(1)}" height="${bh}"><title>${esc(tip)}</title></rect>`;
  }).join("");
  const first = buckets[0];
  const last = buckets[buckets.length - 1];
  return `<svg class="histogram" viewBox="0 0 ${w} ${h + 14}" role="img" aria-label="${esc(cht("ch.hist", { kpi: name(k) }))}">${bars}
    <text x="0" y="${h + 12}" class="axis">${esc(hours(first.lower))}</text>
    <text x="${w}" y="${h + 12}" class="axis end">${esc(last.upper === null ? "∞" : hours(last.upper))}</text></svg>`;
}
