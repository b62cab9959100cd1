// Admin: alert channels (notify's /v1/channels through the dashboard proxy) with "Send test".
// Secrets are never shown: the page only ever has what notify returns (masked), and a secret
// left empty when editing is sent as notify's mask, which keeps the stored one.
import { ApiError, api } from "../api.js";
import { esc, fmtClock } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { adminsOnly, field, formDialog, isAdmin, textInput, valueOf } from "./admin_common.js";
import { errorBox, errorMessage, teamName } from "./common.js";

const BASE = "/v1/dashboard/notify/channels";
const KINDS = ["webhook", "dingtalk", "wecom", "feishu", "slack", "email"];
const MASK = "***";
// The configuration fields of each kind: [name, input type, required on create].
const FIELDS = {
  webhook: [["url", "url", true], ["secret", "secret", true]],
  dingtalk: [["url", "url", true], ["secret", "secret", false]],
  wecom: [["url", "url", true]],
  feishu: [["url", "url", true], ["secret", "secret", false], ["card", "check", false]],
  slack: [["url", "url", true]],
  email: [["sender", "text", true], ["recipients", "list", true], ["host", "text", true], ["port", "number", false],
    ["username", "text", false], ["password", "secret", false], ["starttls", "check", false]],
};

function target(c) {
  const cfg = c.config || {};
  if (c.kind === "email") return `${(cfg.recipients || []).join(", ")} · ${cfg.host || ""}:${cfg.port || ""}`;
  return cfg.url || "";
}

function testLine(r) {
  const parts = [r.http_status ? `HTTP ${r.http_status}` : "", `${Math.round(r.duration_ms)} ms`, fmtClock(new Date(r.sent_at))];
  const head = r.status === "sent" ? t("ch.test_sent") : t("ch.test_failed", { error: r.error || "" });
  return `${head} · ${parts.filter(Boolean).join(" · ")}`;
}

export function renderChannels(main) {
  if (!isAdmin()) return adminsOnly(main);
  let channels = [];
  const tests = new Map(); // channel id -> the last test's answer, or "sending"
  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("ch.title"))}</h1><div class="sub">${esc(t("ch.sub"))}</div></div>
      <button type="button" class="btn btn-primary" id="ch-new">${esc(t("ch.new"))}</button></div>
    <section class="panel" id="ch-panel" aria-labelledby="ch-h"><h2 id="ch-h" class="sr-only">${esc(t("ch.title"))}</h2><div id="ch-list"></div></section>
    <div class="sr-only" role="status" id="ch-status"></div>`;
  const $ = (s) => main.querySelector(s);
  const say = (text) => ($("#ch-status").textContent = text);

  async function load() {
    try {
      channels = await api(BASE);
    } catch (err) {
      $("#ch-list").innerHTML = err instanceof ApiError && err.unavailable ? `<p class="notice">${esc(t("unavailable.alerts"))}</p>` : errorBox(err);
      return;
    }
    draw();
  }

  function draw() {
    if (!channels.length) {
      $("#ch-list").innerHTML = `<p class="empty" id="ch-empty">${esc(t("ch.none"))}</p>`;
      return;
    }
    $("#ch-list").innerHTML = `<div class="table-wrap"><table class="grid" id="channels-table"><thead><tr>
      <th scope="col">${esc(t("ch.name"))}</th><th scope="col">${esc(t("ch.kind"))}</th><th scope="col">${esc(t("overview.team"))}</th>
      <th scope="col">${esc(t("ch.target"))}</th><th scope="col">${esc(t("ch.state"))}</th><th scope="col"><span class="sr-only">${esc(t("adm.actions"))}</span></th></tr></thead><tbody>
      ${channels.map((c) => {
        const last = tests.get(c.id);
        const result = last === "sending" ? `<div class="ch-test" role="status">${esc(t("ch.testing"))}</div>`
          : last ? `<div class="ch-test ${last.status === "sent" ? "ok" : "bad"}" role="status" data-test-status="${esc(last.status)}">${esc(testLine(last))}</div>` : "";
        return `<tr data-channel="${esc(c.id)}"><th scope="row">${esc(c.name)}${c.lang ? `<span class="spec-id">${esc(c.lang)}</span>` : ""}</th>
          <td>${esc(t(`ch.kind.${c.kind}`))}</td><td>${c.team_id ? esc(teamName(c.team_id)) : esc(t("ch.all_teams"))}</td>
          <td class="ch-target"><code>${esc(target(c))}</code>${result}</td>
          <td>${esc(t(c.enabled ? "ch.enabled" : "ch.disabled"))}</td>
          <td class="row-actions"><button type="button" class="btn btn-small" data-act="test" ${last === "sending" ? "disabled" : ""} aria-label="${esc(`${t("ch.test")}: ${c.name}`)}">${esc(t("ch.test"))}</button>
            <button type="button" class="btn btn-small" data-act="edit" aria-label="${esc(`${t("adm.edit")}: ${c.name}`)}">${esc(t("adm.edit"))}</button>
            <button type="button" class="btn btn-small btn-danger" data-act="delete" aria-label="${esc(`${t("ch.delete")}: ${c.name}`)}">${esc(t("ch.delete"))}</button></td></tr>`;
      }).join("")}</tbody></table></div>`;
  }

  async function sendTest(c) {
    tests.set(c.id, "sending");
    draw();
    try {
      tests.set(c.id, await api(`${BASE}/${encodeURIComponent(c.id)}/test`, { method: "POST" }));
    } catch (err) {
      tests.set(c.id, { status: "failed", error: errorMessage(err), http_status: null, duration_ms: 0, sent_at: new Date().toISOString() });
    }
    draw();
    say(testLine(tests.get(c.id)));
    main.querySelector(`tr[data-channel="${CSS.escape(c.id)}"] [data-act="test"]`)?.focus();
  }

  async function remove(c, btn) {
    if (!confirm(t("ch.delete_confirm", { name: c.name }))) return;
    try {
      await api(`${BASE}/${encodeURIComponent(c.id)}`, { method: "DELETE" });
      tests.delete(c.id);
      say(t("ch.deleted", { name: c.name }));
      await load();
      $("#ch-new").focus();
    } catch (err) {
      btn.focus();
      alert(errorMessage(err));
    }
  }

  function configFields(kind, cfg, editing) {
    return FIELDS[kind].map(([name, type, needed]) => {
      const id = `ch-cfg-${name}`;
      const label = t(`ch.cfg.${name}`);
      if (type === "check") {
        const on = cfg[name] ?? (name === "card");
        return `<label class="check"><input type="checkbox" id="${id}" data-field="${name}" ${on ? "checked" : ""}> ${esc(label)}</label>`;
      }
      if (type === "secret") {
        // Never filled in: a stored secret is only said to exist.
        const stored = editing && cfg[name] === MASK;
        return field(id, label, textInput(id, "", { type: "password", name, maxlength: 2048, hint: stored, placeholder: stored ? t("ch.secret_kept") : "" }), stored ? t("ch.secret_hint") : "");
      }
      const value = type === "list" ? (cfg[name] || []).join(", ") : cfg[name] ?? (name === "port" ? 25 : "");
      const hint = type === "url" && editing ? t("ch.url_hint") : type === "list" ? t("ch.recipients_hint") : "";
      return field(id, label, textInput(id, value, { type: type === "number" ? "number" : "text", name, required: needed, maxlength: 2048, hint: Boolean(hint) }), hint);
    }).join("");
  }

  function readConfig(form, kind, editing) {
    const cfg = {};
    for (const [name, type] of FIELDS[kind]) {
      const el = form.querySelector(`#ch-cfg-${name}`);
      if (type === "check") cfg[name] = el.checked;
      else if (type === "secret") {
        const v = el.value;
        if (v) cfg[name] = v;
        else if (editing) cfg[name] = MASK; // keeps the stored one
      } else if (type === "list") cfg[name] = el.value.split(/[,;\s]+/).filter(Boolean);
      else if (type === "number") cfg[name] = Number(el.value || 25);
      else if (el.value.trim()) cfg[name] = el.value.trim();
    }
    return cfg;
  }

  function channelDialog(c, opener) {
    const editing = Boolean(c);
    let kind = c?.kind || "webhook";
    const dlg = formDialog({
      id: "channel-dialog",
      opener,
      wide: true,
      title: editing ? t("ch.edit", { name: c.name }) : t("ch.new"),
      submit: t("adm.save"),
      body: `<div class="form-grid">
        ${field("ch-name", t("ch.name"), textInput("ch-name", c?.name, { required: true, name: "name" }))}
        ${field("ch-kind", t("ch.kind"), `<select id="ch-kind" data-field="kind">${KINDS.map((k) => `<option value="${k}" ${k === kind ? "selected" : ""}>${esc(t(`ch.kind.${k}`))}</option>`).join("")}</select>`)}
        ${field("ch-team", t("overview.team"), `<select id="ch-team" data-field="team_id"><option value="">${esc(t("ch.all_teams"))}</option>
          ${state.teams.map((tm) => `<option value="${esc(tm.id)}" ${tm.id === c?.team_id ? "selected" : ""}>${esc(tm.name)}</option>`).join("")}</select>`)}
        ${field("ch-lang", t("ch.lang"), `<select id="ch-lang" data-field="lang"><option value="">${esc(t("ch.lang_default"))}</option>
          ${["zh-CN", "en"].map((l) => `<option value="${l}" ${l === c?.lang ? "selected" : ""}>${l === "en" ? "English" : "简体中文"}</option>`).join("")}</select>`)}</div>
        <label class="check"><input type="checkbox" id="ch-enabled" data-field="enabled" ${c?.enabled === false ? "" : "checked"}> ${esc(t("ch.enabled_label"))}</label>
        <fieldset class="field bare"><legend class="muted field-legend">${esc(t("ch.config"))}</legend><div class="form-grid" id="ch-config">${configFields(kind, c?.config || {}, editing)}</div></fieldset>`,
      async onSubmit(form) {
        const sameKind = editing && kind === c.kind;
        const body = {
          name: valueOf(form, "ch-name"),
          kind,
          team_id: form.querySelector("#ch-team").value || null,
          lang: form.querySelector("#ch-lang").value || null,
          enabled: form.querySelector("#ch-enabled").checked,
          config: readConfig(form, kind, sameKind),
        };
        const saved = await api(editing ? `${BASE}/${encodeURIComponent(c.id)}` : BASE, { method: editing ? "PUT" : "POST", body });
        say(t("dir.saved", { name: saved.name }));
        await load();
      },
    });
    dlg.querySelector("#ch-kind").addEventListener("change", (ev) => {
      kind = ev.target.value;
      const same = editing && kind === c.kind;
      dlg.querySelector("#ch-config").innerHTML = configFields(kind, same ? c.config : {}, same);
    });
  }

  $("#ch-new").addEventListener("click", (ev) => channelDialog(null, ev.currentTarget));
  $("#ch-list").addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-act]");
    if (!btn) return;
    const c = channels.find((x) => x.id === btn.closest("[data-channel]").dataset.channel);
    if (!c) return;
    if (btn.dataset.act === "test") sendTest(c);
    else if (btn.dataset.act === "edit") channelDialog(c, btn);
    else remove(c, btn);
  });
  load();
}
