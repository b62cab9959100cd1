// Platform-health banner: polls GET /v1/platform/health and shows open incidents above every view.
import { ApiError, api } from "./api.js";
import { esc, fmtTime } from "./format.js";
import { getLang, t } from "./i18n.js";
import { state } from "./state.js";

const POLL_MS = 15000;
let timer = null;
let answer = null; // the last GET /v1/platform/health
let missing = false; // a scoring server without the route: never ask again
let shown = ""; // what is rendered, so an unchanged poll does not re-announce the banner

const banner = () => document.querySelector("#health-banner");

export async function refreshHealth() {
  // A specialist may not read platform health (403): they never ask.
  if (!state.config || missing || state.config.role === "specialist") return;
  try {
    answer = await api("/v1/platform/health");
  } catch (err) {
    if (err instanceof ApiError && err.routeMissing) missing = true;
    // Otherwise keep the last answer: a failed poll is no news that the pipeline is fine.
  }
  renderHealth();
}

function incidentItem(i, admin) {
  const kindKey = `health.kind.${i.kind}`;
  const kind = t(kindKey) === kindKey ? i.kind : t(kindKey);
  const meta = [t("health.since", { time: fmtTime(i.opened_at) })];
  if (i.occurrences > 1) meta.push(t("health.occurrences", { n: i.occurrences }));
  // Conditions (a stall) clear by themselves; only events wait for an admin.
  const dismiss = admin && !i.condition
    ? `<button type="button" class="btn btn-small" data-dismiss="${i.id}">${esc(t("health.dismiss"))}</button>`
    : "";
  return `<li data-incident="${i.id}" data-kind="${esc(i.kind)}">
    <span class="hb-kind">${esc(kind)} · ${esc(i.service)}</span>
    <span class="hb-summary">${esc(i.summary)}</span>
    <span class="hb-meta">${esc(meta.join(" · "))}</span>${dismiss}</li>`;
}

export function renderHealth() {
  const el = banner();
  const open = answer && answer.status !== "ok" ? answer.incidents : [];
  const key = open.length ? JSON.stringify([getLang(), answer]) : "";
  if (key === shown) return;
  shown = key;
  el.hidden = !open.length;
  if (!open.length) {
    el.innerHTML = "";
    delete el.dataset.status;
    return;
  }
  const admin = state.config?.role === "admin";
  el.dataset.status = answer.status;
  el.innerHTML = `<p class="hb-title">${esc(t(`health.${answer.status}`))}</p>
    <ul class="hb-list">${open.map((i) => incidentItem(i, admin)).join("")}</ul>`;
}

export function startHealth() {
  stopHealth();
  refreshHealth();
  timer = setInterval(refreshHealth, POLL_MS);
}

export function stopHealth() {
  clearInterval(timer);
  timer = null;
  answer = null;
  renderHealth();
}

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("#health-banner [data-dismiss]");
  if (!button) return;
  button.disabled = true;
  try {
    await api(`/v1/platform/incidents/${encodeURIComponent(button.dataset.dismiss)}/dismiss`, { method: "POST" });
  } catch (err) {
    // 409: it closed meanwhile; the refresh below shows what is true now.
    if (!(err instanceof ApiError && err.status === 409)) button.disabled = false;
  }
  await refreshHealth();
});
