// Dashboard entry: login, shell, hash router, language switch, alert banner and toasts.
import { ApiError, api, clearToken, setToken, setUnauthorizedHandler, token } from "./api.js";
import { getLang, setLang, t, translateStatic } from "./i18n.js";
import { kpiName, useCatalogue } from "./format.js";
import { alerts, startAlerts, state, stopAlerts } from "./state.js";
import { refreshHealth, renderHealth, startHealth, stopHealth } from "./health.js";
import { renderCycle } from "./views/cycle.js";
import { renderMyPage, renderMyPageFor } from "./views/my_page.js";
import { renderOverview } from "./views/overview.js";
import { renderSpecialist } from "./views/specialist.js";
import { renderLeaderboard } from "./views/leaderboard.js";
import { renderAppraisal } from "./views/appraisal.js";
import { renderAlerts } from "./views/alerts.js";

const $ = (sel) => document.querySelector(sel);
const VIEWS = {
  overview: renderOverview,
  cycle: renderCycle,
  specialist: renderSpecialist,
  leaderboard: renderLeaderboard,
  appraisal: renderAppraisal,
  alerts: renderAlerts,
};
// A specialist sees only their own page; every other route of theirs lands there too.
const SPECIALIST_VIEWS = { me: renderMyPage, specialist: renderMyPageFor };
const NAV_OF = { specialist: "overview", cycle: "appraisal" };
const isSpecialist = () => state.config?.role === "specialist";
let cleanup = null;

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { view: parts[0] || "overview", args: parts.slice(1), params: new URLSearchParams(query) };
}

// Replace the query of the current route without adding history entries per keystroke.
export function setParams(params) {
  const { view, args } = parseHash();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const hash = `#/${[view, ...args].map(encodeURIComponent).join("/")}${q.toString() ? `?${q}` : ""}`;
  history.replaceState(null, "", hash);
}

function route() {
  if (!state.config) return;
  let { view, args, params } = parseHash();
  if (isSpecialist() && !SPECIALIST_VIEWS[view]) {
    history.replaceState(null, "", "#/me");
    ({ view, args, params } = parseHash());
  }
  const render = isSpecialist() ? SPECIALIST_VIEWS[view] : VIEWS[view] || renderOverview;
  const nav = isSpecialist() ? "me" : NAV_OF[view] || view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (cleanup) cleanup();
  cleanup = null;
  const main = $("#main");
  main.innerHTML = "";
  cleanup = render(main, args, params) || null;
  refreshHealth();
}

function renderChrome() {
  translateStatic();
  $("#lang-select").value = getLang();
  $("#login-lang-select").value = getLang();
  const c = state.config;
  if (c) {
    const role = t(`role.${c.role}`);
    $("#whoami").textContent = c.team_ids.length
      ? t("who.teams", { subject: c.subject, role, teams: c.team_ids.join(", ") })
      : t("who", { subject: c.subject, role });
  }
  renderAlertChrome();
  renderHealth();
  // The menu offers a specialist their own page only (cycle.css hides the rest by role).
  document.body.dataset.role = c?.role || "";
}

function renderAlertChrome() {
  const banner = $("#banner");
  banner.hidden = alerts.available !== false;
  banner.textContent = t("banner.alerts");
  const dot = $("#live-dot");
  dot.dataset.state = alerts.streamState;
  dot.textContent = t(`live.${alerts.streamState}`);
  const badge = $("#alert-count");
  badge.hidden = !alerts.open.length;
  badge.textContent = String(alerts.open.length);
  badge.setAttribute("aria-label", t("openalerts", { n: alerts.open.length }));
}

function toast(text, kind) {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.textContent = text;
  $("#toasts").appendChild(el);
  setTimeout(() => el.remove(), 6000);
}

alerts.subscribe((d) => {
  renderAlertChrome();
  if (d.type === "event" && (d.event.transition === "firing" || d.event.transition === "resolved")) {
    const e = d.event;
    const name = state.names.get(e.specialist_id) || e.specialist_id;
    toast(t(e.transition === "firing" ? "alerts.toast_firing" : "alerts.toast_resolved", { name, kpi: kpiName(e.kpi) }), e.transition);
  }
});

async function enter() {
  // A specialist may read only their own records: no team listings, alerts or platform health.
  const config = await api("/v1/dashboard/config");
  const staff = config.role !== "specialist";
  const [teams, people] = staff
    ? await Promise.all([api("/v1/teams"), api("/v1/specialists")])
    : [{ teams: [] }, { specialists: [] }];
  useCatalogue(config.catalogue);
  state.config = config;
  state.teams = teams.teams;
  for (const s of people.specialists) state.names.set(s.id, s.name || s.id);
  $("#login").hidden = true;
  $("#shell").hidden = false;
  renderChrome();
  if (staff) {
    startAlerts();
    startHealth();
  }
  route();
}

function showLogin(message = "") {
  stopAlerts();
  stopHealth();
  state.config = null;
  if (cleanup) cleanup();
  cleanup = null;
  $("#shell").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  translateStatic();
  $("#login-lang-select").value = getLang();
  $("#login-token").focus();
}

setUnauthorizedHandler(() => {
  clearToken();
  showLogin(t("login.invalid"));
});

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("#login-token").value.trim();
  const err = $("#login-error");
  if (!value) {
    err.textContent = t("login.empty");
    return;
  }
  setToken(value);
  try {
    // /v1/dashboard/config answers role, subject and teams (shared /v1/whoami is admin-only).
    await enter();
    $("#login-token").value = "";
    $("#main").focus();
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) {
      clearToken();
      err.textContent = t("login.forbidden");
    } else if (!(e instanceof ApiError && e.status === 401)) {
      clearToken();
      err.textContent = t("login.failed", { msg: e.message });
    }
  }
});

$("#logout").addEventListener("click", () => {
  clearToken();
  showLogin();
});

for (const sel of ["#lang-select", "#login-lang-select"]) {
  $(sel).addEventListener("change", (ev) => {
    setLang(ev.target.value);
    renderChrome();
    if (state.config) route();
  });
}

// The views' toolbars only filter what is shown: Enter in one of their fields must not submit
// the form (a page reload). Handled here because the CSP forbids inline onsubmit handlers.
document.addEventListener("submit", (ev) => {
  if (ev.target.closest("form.toolbar")) ev.preventDefault();
});

window.addEventListener("hashchange", route);

(async function boot() {
  setLang(getLang());
  translateStatic();
  if (!token()) return showLogin();
  try {
    await enter();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) showLogin(t("login.failed", { msg: e.message }));
  }
})();
