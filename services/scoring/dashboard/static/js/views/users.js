// "Users & tokens" (admins): accounts people sign in with, and API tokens for machines.
import { ApiError, api } from "../api.js";
import { esc, fmtTime } from "../format.js";
import { t } from "../i18n.js";
import { errorBox, errorMessage, fieldName } from "./common.js";
import { adminsOnly, isAdmin } from "./admin_common.js";

const USER_ROLES = ["supervisor", "specialist", "admin"];
const TOKEN_ROLES = ["service", "supervisor", "specialist", "admin"];
const EXPIRIES = ["90d", "30d", "365d", ""];

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
const options = (values, label) => values.map((v) => `<option value="${esc(v)}">${esc(label(v))}</option>`).join("");

// A refused form: each field named with its reason (422/409), else the usual message.
function formError(err) {
  const list = err instanceof ApiError ? err.fieldErrors : [];
  if (!list.length) return errorMessage(err);
  return list.map((e) => `${fieldName(e)}: ${e.msg}`).join("; ");
}

function userRow(u) {
  const scope = u.role === "supervisor" ? u.team_ids.join(", ") : u.specialist_id || "";
  const off = Boolean(u.disabled_at);
  return `<tr data-user="${esc(u.username)}" data-state="${off ? "disabled" : "active"}">
    <td>${esc(u.username)}</td><td>${esc(u.display_name || "")}</td><td>${esc(t(`role.${u.role}`))}</td>
    <td>${esc(scope)}</td><td>${esc(u.last_login_at ? fmtTime(u.last_login_at) : t("users.never"))}</td>
    <td class="${off ? "state-off" : ""}">${esc(t(off ? "users.disabled" : "users.active"))}${u.sso ? ` · ${esc(t("users.sso"))}` : ""}</td>
    <td class="actions">
      <button type="button" class="btn btn-small" data-action="${off ? "enable" : "disable"}">${esc(t(off ? "users.enable" : "users.disable"))}</button>
      ${u.sso ? "" : `<button type="button" class="btn btn-small" data-action="reset">${esc(t("users.reset"))}</button>`}</td></tr>`;
}

function tokenState(tk) {
  if (tk.revoked_at) return "revoked";
  if (tk.expires_at && Date.parse(tk.expires_at) <= Date.now()) return "expired";
  return "active";
}

function tokenRow(tk) {
  const st = tokenState(tk);
  return `<tr data-token="${esc(tk.id)}" data-state="${st}">
    <td><code>${esc(tk.id.slice(0, 8))}</code></td><td>${esc(t(`role.${tk.role}`))}</td><td>${esc(tk.subject)}</td>
    <td>${esc(tk.team_ids.join(", "))}</td><td>${esc(tk.description || "")}</td><td>${esc(fmtTime(tk.created_at))}</td>
    <td>${esc(tk.expires_at ? fmtTime(tk.expires_at) : t("tokens.never"))}</td>
    <td class="${st === "active" ? "" : "state-off"}">${esc(t(`tokens.${st}`))}</td>
    <td class="actions">${st === "revoked" ? "" : `<button type="button" class="btn btn-small btn-danger" data-action="revoke">${esc(t("tokens.revoke"))}</button>`}</td></tr>`;
}

function resetDialog(username, opener, done) {
  const dlg = document.createElement("dialog");
  dlg.setAttribute("aria-labelledby", "reset-title");
  dlg.innerHTML = `<form method="dialog"><h2 id="reset-title" class="dialog-title">${esc(t("users.reset_title", { name: username }))}</h2>
    <div class="field"><label for="reset-password">${esc(t("users.password"))}</label>
      <input id="reset-password" type="password" autocomplete="new-password" required></div>
    <p class="form-error" role="alert"></p>
    <div class="actions"><button type="button" class="btn" data-cancel>${esc(t("cancel"))}</button>
      <button type="submit" class="btn btn-primary">${esc(t("users.reset_ok"))}</button></div></form>`;
  document.body.appendChild(dlg);
  const close = () => {
    dlg.close();
    dlg.remove();
    opener?.focus();
  };
  dlg.querySelector("[data-cancel]").addEventListener("click", close);
  dlg.addEventListener("cancel", close);
  dlg.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const password = dlg.querySelector("#reset-password").value;
    try {
      await api(`/v1/users/${encodeURIComponent(username)}/password`, { method: "POST", body: { password } });
      close();
      done(t("users.reset_done", { name: username }));
    } catch (err) {
      dlg.querySelector(".form-error").textContent = formError(err);
    }
  });
  dlg.showModal();
}

export function renderUsers(main) {
  // Someone else signing in on a tab left at #/users (the admin's last page) gets no 403s.
  if (!isAdmin()) return adminsOnly(main);
  let users = null;
  let tokens = null;
  let error = null;
  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("users.title"))}</h1><div class="sub">${esc(t("users.sub"))}</div></div></div>
    <p id="us-status" class="notice" role="status" hidden></p>
    <section class="panel" aria-labelledby="us-people-h"><h2 id="us-people-h">${esc(t("users.people"))}</h2>
      <div id="us-users"></div>
      <h3>${esc(t("users.new"))}</h3>
      <form id="us-new" class="form-grid" novalidate>
        <div class="field"><label for="nu-username">${esc(t("users.username"))}</label><input id="nu-username" type="text" autocomplete="off" required></div>
        <div class="field"><label for="nu-display">${esc(t("users.display_name"))}</label><input id="nu-display" type="text" autocomplete="off"></div>
        <div class="field"><label for="nu-role">${esc(t("users.role"))}</label><select id="nu-role">${options(USER_ROLES, (r) => t(`role.${r}`))}</select></div>
        <div class="field" data-for="supervisor"><label for="nu-teams">${esc(t("users.teams"))}</label><input id="nu-teams" type="text" autocomplete="off"></div>
        <div class="field" data-for="specialist" hidden><label for="nu-specialist">${esc(t("users.specialist"))}</label><input id="nu-specialist" type="text" autocomplete="off"></div>
        <div class="field"><label for="nu-password">${esc(t("users.password"))}</label><input id="nu-password" type="password" autocomplete="new-password" required></div>
        <div class="field"><button type="submit" class="btn btn-primary">${esc(t("users.create"))}</button></div>
      </form>
      <p id="us-new-error" class="form-error" role="alert"></p>
    </section>
    <section class="panel" aria-labelledby="us-tokens-h"><h2 id="us-tokens-h">${esc(t("tokens.title"))}</h2>
      <div id="us-tokens"></div>
      <h3>${esc(t("tokens.new"))}</h3>
      <form id="tk-new" class="form-grid" novalidate>
        <div class="field"><label for="nt-role">${esc(t("tokens.role"))}</label><select id="nt-role">${options(TOKEN_ROLES, (r) => t(`role.${r}`))}</select></div>
        <div class="field"><label for="nt-subject">${esc(t("tokens.subject"))}</label><input id="nt-subject" type="text" autocomplete="off"></div>
        <div class="field"><label for="nt-teams">${esc(t("tokens.teams"))}</label><input id="nt-teams" type="text" autocomplete="off"></div>
        <div class="field"><label for="nt-description">${esc(t("tokens.description"))}</label><input id="nt-description" type="text" autocomplete="off" maxlength="200"></div>
        <div class="field"><label for="nt-expires">${esc(t("tokens.expires"))}</label><select id="nt-expires">${options(EXPIRIES, (e) => (e ? t("tokens.days", { n: parseInt(e, 10) }) : t("tokens.never")))}</select></div>
        <div class="field"><button type="submit" class="btn btn-primary">${esc(t("tokens.create"))}</button></div>
      </form>
      <p id="tk-new-error" class="form-error" role="alert"></p>
      <div id="tk-created"></div>
    </section>`;
  const $ = (s) => main.querySelector(s);

  function say(message) {
    $("#us-status").hidden = !message;
    $("#us-status").textContent = message || "";
  }

  function draw() {
    if (error) {
      $("#us-users").innerHTML = errorBox(error);
      return;
    }
    if (users) {
      $("#us-users").innerHTML = users.length
        ? `<div class="table-wrap"><table class="grid" id="users-table"><thead><tr>
            <th>${esc(t("users.username"))}</th><th>${esc(t("users.display_name"))}</th><th>${esc(t("users.role"))}</th>
            <th>${esc(t("users.scope"))}</th><th>${esc(t("users.last_login"))}</th><th>${esc(t("users.state"))}</th>
            <th>${esc(t("users.actions"))}</th></tr></thead><tbody>${users.map(userRow).join("")}</tbody></table></div>`
        : `<p class="empty">${esc(t("users.none"))}</p>`;
    }
    if (tokens) {
      $("#us-tokens").innerHTML = tokens.length
        ? `<div class="table-wrap"><table class="grid" id="tokens-table"><thead><tr>
            <th>${esc(t("tokens.id"))}</th><th>${esc(t("tokens.role"))}</th><th>${esc(t("tokens.subject"))}</th>
            <th>${esc(t("tokens.teams"))}</th><th>${esc(t("tokens.description"))}</th><th>${esc(t("tokens.created_at"))}</th>
            <th>${esc(t("tokens.expires"))}</th><th>${esc(t("tokens.state"))}</th><th>${esc(t("users.actions"))}</th></tr></thead>
            <tbody>${tokens.map(tokenRow).join("")}</tbody></table></div>`
        : `<p class="empty">${esc(t("tokens.none"))}</p>`;
    }
  }

  async function load() {
    try {
      const [u, tk] = await Promise.all([api("/v1/users"), api("/v1/tokens")]);
      users = u.users;
      tokens = tk.tokens;
      error = null;
    } catch (err) {
      error = err;
    }
    draw();
  }

  $("#nu-role").addEventListener("change", () => {
    const role = $("#nu-role").value;
    for (const el of main.querySelectorAll("#us-new [data-for]")) el.hidden = el.dataset.for !== role;
  });

  $("#us-new").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const role = $("#nu-role").value;
    const body = { username: $("#nu-username").value.trim(), password: $("#nu-password").value, role };
    const display = $("#nu-display").value.trim();
    if (display) body.display_name = display;
    if (role === "supervisor") body.team_ids = list($("#nu-teams").value);
    if (role === "specialist") body.specialist_id = $("#nu-specialist").value.trim();
    try {
      const created = await api("/v1/users", { method: "POST", body });
      $("#us-new").reset();
      $("#nu-role").dispatchEvent(new Event("change"));
      $("#us-new-error").textContent = "";
      say(t("users.created", { name: created.username }));
      await load();
    } catch (err) {
      $("#us-new-error").textContent = formError(err);
    }
  });

  $("#us-users").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const username = button.closest("tr").dataset.user;
    const path = `/v1/users/${encodeURIComponent(username)}`;
    if (button.dataset.action === "reset") {
      resetDialog(username, button, say);
      return;
    }
    try {
      await api(path, { method: "PUT", body: { disabled: button.dataset.action === "disable" } });
      say("");
    } catch (err) {
      say(errorMessage(err));
    }
    await load();
  });

  $("#tk-new").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { role: $("#nt-role").value, subject: $("#nt-subject").value.trim(), team_ids: list($("#nt-teams").value) };
    const description = $("#nt-description").value.trim();
    if (description) body.description = description;
    if ($("#nt-expires").value) body.expires_in = $("#nt-expires").value;
    try {
      const created = await api("/v1/tokens", { method: "POST", body });
      $("#tk-new").reset();
      $("#tk-new-error").textContent = "";
      // Shown once: the server keeps only its hash.
      $("#tk-created").innerHTML = `<div class="secret-once" role="status"><strong>${esc(t("tokens.once"))}</strong>
        <input id="tk-secret" type="text" readonly spellcheck="false" aria-label="${esc(t("tokens.once"))}"></div>`;
      $("#tk-secret").value = created.token;
      $("#tk-secret").select();
      await load();
    } catch (err) {
      $("#tk-new-error").textContent = formError(err);
    }
  });

  $("#us-tokens").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action=revoke]");
    if (!button) return;
    try {
      await api(`/v1/tokens/${encodeURIComponent(button.closest("tr").dataset.token)}`, { method: "DELETE" });
    } catch (err) {
      say(errorMessage(err));
    }
    await load();
  });

  load();
  return () => {
    for (const dlg of document.querySelectorAll("dialog")) dlg.remove();
  };
}
