// Dashboard entry: sign-in, shell, hash router, language switch, alert banner and toasts.
import {
  ApiError,
  api,
  clearToken,
  setCsrf,
  setToken,
  setUnauthorizedHandler,
  signedInWithSession,
  token,
} from "./api.js";
import { getLang, setLang, t, translateStatic } from "./i18n.js";
import "./i18n-accounts.js";
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
import { renderDirectory } from "./views/admin_directory.js";
import { renderChannels } from "./views/admin_channels.js";
import { renderUsers } from "./views/users.js";

const $ = (sel) => document.querySelector(sel);
const VIEWS = {
  overview: renderOverview,
  cycle: renderCycle,
  specialist: renderSpecialist,
  leaderboard: renderLeaderboard,
  appraisal: renderAppraisal,
  alerts: renderAlerts,
  directory: renderDirectory,
  channels: renderChannels,
  users: renderUsers,
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
  // The admin screens are in the menu for admins only (their routes say so to others).
  for (const a of document.querySelectorAll("[data-admin]")) a.hidden = c?.role !== "admin";
  if (c) {
    const role = t(`role.${c.role}`);
    const user = state.session?.user;
    $("#whoami").textContent = user
      ? t("who.user", { name: user.display_name || user.username, role })
      : c.team_ids.length
        ? t("who.teams", { subject: c.subject, role, teams: c.team_ids.join(", ") })
        : t("who", { subject: c.subject, role });
    $('[data-nav="users"]').hidden = c.role !== "admin";
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

function showLogin(message = "", where = "#signin-error") {
  stopAlerts();
  stopHealth();
  state.config = null;
  state.session = null;
  if (cleanup) cleanup();
  cleanup = null;
  $("#shell").hidden = true;
  $("#login").hidden = false;
  for (const id of ["#signin-error", "#login-error"]) $(id).textContent = id === where ? message : "";
  translateStatic();
  $("#login-lang-select").value = getLang();
  $("#login-username").focus();
}

// Single sign-on: offered when the server has it configured; a refused sign-in comes back
// here as ?sso_error=<code>, named on the sign-in page (the reason itself is in the log).
const SSO_ERRORS = new Set(["state", "denied", "provider", "token", "unmapped", "claims", "taken", "disabled"]);

function takeSsoError() {
  const params = new URLSearchParams(location.search);
  const code = params.get("sso_error");
  if (code === null) return "";
  params.delete("sso_error");
  const query = params.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
  return t(SSO_ERRORS.has(code) ? `sso.${code}` : "sso.unknown");
}

async function offerSso() {
  let methods = null;
  try {
    methods = await api("/v1/auth/methods", { quiet: true });
  } catch {
    // An older server without the route, or none reachable: password sign-in only.
  }
  $("#sso").hidden = !methods?.sso;
  if (methods?.sso_login_url) $("#sso-login").setAttribute("href", methods.sso_login_url);
}

setUnauthorizedHandler(() => {
  if (signedInWithSession()) {
    setCsrf(null);
    showLogin(t("login.expired"));
  } else {
    clearToken();
    showLogin(t("login.invalid"), "#login-error");
  }
});

// A session's first page: on 403 (a role the dashboard does not serve) it is ended again.
async function enterSession(session) {
  setCsrf(session.csrf_token);
  state.session = session;
  try {
    await enter();
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) {
      await api("/v1/auth/logout", { method: "POST", quiet: true }).catch(() => {});
      setCsrf(null);
      showLogin(t("login.forbidden_user"));
    } else if (!(e instanceof ApiError && e.status === 401)) {
      showLogin(t("login.failed", { msg: e.message }));
    }
  }
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const username = $("#login-username").value.trim();
  const password = $("#login-password").value;
  const err = $("#signin-error");
  if (!username || !password) {
    err.textContent = t("login.need");
    return;
  }
  err.textContent = "";
  clearToken();
  let session;
  try {
    session = await api("/v1/auth/login", { method: "POST", body: { username, password }, quiet: true });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) err.textContent = t("login.bad");
    else if (e instanceof ApiError && e.status === 429)
      err.textContent = t("login.locked", { n: Math.max(1, Math.ceil((e.retryAfter || 60) / 60)) });
    else if (e instanceof ApiError && e.status === 422) err.textContent = t("login.bad");
    else err.textContent = t("login.failed", { msg: e.message });
    $("#login-password").select();
    return;
  }
  $("#login-password").value = "";
  await enterSession(session);
  if (state.config) $("#main").focus();
});

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("#login-token").value.trim();
  const err = $("#login-error");
  if (!value) {
    err.textContent = t("login.empty");
    return;
  }
  setCsrf(null);
  setToken(value);
  try {
    // /v1/dashboard/config answers role, subject and teams.
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

$("#logout").addEventListener("click", async () => {
  if (signedInWithSession()) {
    // The server ends the session and clears the cookie; signed out here whatever it says.
    await api("/v1/auth/logout", { method: "POST", quiet: true }).catch(() => {});
    setCsrf(null);
  } else {
    clearToken();
  }
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
  const ssoError = takeSsoError();
  offerSso();
  if (token()) {
    try {
      await enter();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showLogin(t("login.failed", { msg: e.message }));
    }
    return;
  }
  // A session cookie (HttpOnly: only the server can tell) survives a reload.
  let session = null;
  try {
    session = await api("/v1/auth/session", { quiet: true });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) return showLogin(t("login.failed", { msg: e.message }));
  }
  if (session && session.csrf_token) return enterSession(session);
  showLogin(ssoError);
})();
