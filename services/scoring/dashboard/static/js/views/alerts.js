// Live alert feed (SSE via state.js) with acknowledge and silence actions.
import { api, qs } from "../api.js";
import { esc, fmtLine, fmtTime, fmtValue, kpiName } from "../format.js";
import { t } from "../i18n.js";
import { alerts, refreshAlerts, state } from "../state.js";
import { errorBox, errorMessage, teamName } from "./common.js";
import { failedDeliveries } from "./deliveries.js";

// Organisation-wide silences (no specialist, no team) are listed to every team, removed by admins.
function removable(s) {
  return state.config?.role === "admin" || Boolean(s.specialist_id || s.team_id);
}

export function alertItem(a, { fresh = false } = {}) {
  const name = state.names.get(a.specialist_id) || a.specialist_id;
  const firing = a.status === "firing";
  const silenced = firing ? alerts.silencedUntil(a) : null;
  const cls = ["alert-item", firing ? (a.acked_at ? "acked" : "firing") : "resolved", fresh ? "new" : ""].join(" ");
  const text = t("alerts.text", { kpi: kpiName(a.kpi), value: fmtValue(a.kpi, a.value), line: fmtLine(a.kpi, a.qualified), n: a.samples ?? "—" });
  return `<li class="${cls}" data-alert="${esc(a.alert_id)}" data-status="${esc(a.status)}" data-acked="${a.acked_at ? "yes" : "no"}">
    <div><div class="a-title"><a href="#/specialist/${encodeURIComponent(a.specialist_id)}">${esc(name)}</a> · ${esc(kpiName(a.kpi))}</div>
      <div>${esc(text)}</div>
      <div class="a-meta">${esc(teamName(a.team_id))} · ${esc(a.window || "")} · ${esc(firing ? t("alerts.started", { time: fmtTime(a.started_at) }) : t("alerts.resolved_at", { time: fmtTime(a.resolved_at) }))}
        ${a.acked_at ? ` · ${esc(t("alerts.acked", { by: a.acked_by || "" }))}` : ""}${silenced ? ` · ${esc(t("alerts.silenced", { until: fmtTime(silenced) }))}` : ""}</div></div>
    <div class="a-actions">${firing && !a.acked_at ? `<button type="button" class="btn btn-small" data-action="ack" aria-label="${esc(`${t("alerts.ack")}: ${name} ${kpiName(a.kpi)}`)}">${esc(t("alerts.ack"))}</button>` : ""}
      ${firing ? `<button type="button" class="btn btn-small" data-action="silence" data-specialist="${esc(a.specialist_id)}" data-kpi="${esc(a.kpi)}" aria-label="${esc(`${t("alerts.silence")} ${name} ${kpiName(a.kpi)}`)}">${esc(t("alerts.silence"))}</button>` : ""}</div></li>`;
}

// Buttons inside `root` act on the alert of their list item.
export function bindAlertActions(root) {
  root.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn) return;
    const li = btn.closest("[data-alert]");
    if (btn.dataset.action === "ack") {
      btn.disabled = true;
      try {
        const updated = await api(`/v1/dashboard/notify/alerts/${encodeURIComponent(li.dataset.alert)}/ack`, { method: "POST", body: {} });
        const i = alerts.open.findIndex((a) => a.alert_id === updated.alert_id);
        if (i >= 0) alerts.open[i] = updated;
        alerts.emit({ type: "refresh" });
      } catch (err) {
        btn.disabled = false;
        alert(errorMessage(err));
      }
    } else if (btn.dataset.action === "silence") {
      silenceDialog(btn.dataset.specialist, btn.dataset.kpi, btn);
    }
  });
}

function silenceDialog(specialist, kpi, opener) {
  const dlg = document.createElement("dialog");
  dlg.setAttribute("aria-labelledby", "silence-title");
  dlg.innerHTML = `<form method="dialog"><h2 id="silence-title" class="dialog-title">${esc(t("silence.title"))}: ${esc(state.names.get(specialist) || specialist)}</h2>
    <div class="field"><label for="silence-for">${esc(t("silence.for"))}</label><select id="silence-for">
      <option value="1">${esc(t("silence.1d"))}</option><option value="7" selected>${esc(t("silence.7d"))}</option><option value="30">${esc(t("silence.30d"))}</option></select></div>
    <fieldset class="field bare"><legend class="muted field-legend">${esc(t("silence.scope"))}</legend>
      <label><input type="radio" name="scope" value="kpi" checked> ${esc(t("silence.scope_kpi", { kpi: kpiName(kpi) }))}</label>
      <label><input type="radio" name="scope" value="all"> ${esc(t("silence.scope_all"))}</label></fieldset>
    <div class="field"><label for="silence-comment">${esc(t("silence.comment"))}</label><input id="silence-comment" type="text" maxlength="500"></div>
    <p class="form-error" role="alert"></p>
    <div class="actions"><button type="button" class="btn" value="cancel" data-cancel>${esc(t("cancel"))}</button>
      <button type="submit" class="btn btn-primary" value="ok">${esc(t("silence.ok"))}</button></div></form>`;
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
    const days = Number(dlg.querySelector("#silence-for").value);
    const scope = dlg.querySelector("input[name=scope]:checked").value;
    const body = { specialist_id: specialist, until: new Date(Date.now() + days * 86400000).toISOString() };
    if (scope === "kpi") body.kpi = kpi;
    const comment = dlg.querySelector("#silence-comment").value.trim();
    if (comment) body.comment = comment;
    try {
      await api("/v1/dashboard/notify/silences", { method: "POST", body });
      close();
      refreshAlerts();
    } catch (err) {
      dlg.querySelector(".form-error").textContent = errorMessage(err);
    }
  });
  dlg.showModal();
}

const TABS = ["open", "resolved", "deliveries"];

export function renderAlerts(main, _args, params) {
  let tab = TABS.includes(params.get("state")) ? params.get("state") : "open";
  let resolved = [];
  const fresh = new Set();
  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("alerts.title"))}</h1><div class="sub">${esc(t("alerts.sub"))}</div></div>
      <div class="tabs" role="tablist">
        <button type="button" class="btn" role="tab" id="tab-open" aria-controls="al-list">${esc(t("alerts.open"))}</button>
        <button type="button" class="btn" role="tab" id="tab-resolved" aria-controls="al-list">${esc(t("alerts.resolved"))}</button>
        <button type="button" class="btn" role="tab" id="tab-deliveries" aria-controls="al-list">${esc(t("alerts.deliveries"))}
          <span id="dl-count" class="count-badge" hidden></span></button></div></div>
    <div class="two-col"><section class="panel" role="tabpanel" aria-live="polite" aria-relevant="additions" id="al-list" aria-label="${esc(t("alerts.title"))}"></section>
      <section class="panel" aria-labelledby="al-sil-h"><h2 id="al-sil-h">${esc(t("alerts.silences"))}</h2><div id="al-silences"></div></section></div>`;
  const $ = (s) => main.querySelector(s);
  bindAlertActions($("#al-list"));
  const deliveries = failedDeliveries(() => draw());
  deliveries.bind($("#al-list"));

  function draw() {
    for (const name of TABS) $(`#tab-${name}`).setAttribute("aria-selected", String(tab === name));
    const count = $("#dl-count");
    count.hidden = !deliveries.count;
    count.textContent = String(deliveries.count);
    const list = $("#al-list");
    if (alerts.available === false) {
      list.innerHTML = `<p class="notice">${esc(t("unavailable.alerts"))}</p>`;
      $("#al-silences").innerHTML = "";
      return;
    }
    if (tab === "deliveries") list.innerHTML = deliveries.html();
    const items = tab === "open" ? alerts.open : resolved;
    if (tab !== "deliveries") {
      list.innerHTML = items.length
        ? `<ul class="alert-list">${items.map((a) => alertItem(a, { fresh: fresh.has(a.alert_id) })).join("")}</ul>`
        : `<p class="empty">${esc(t(tab === "open" ? "alerts.none_open" : "alerts.none_resolved"))}</p>`;
    }
    fresh.clear();
    $("#al-silences").innerHTML = alerts.silences.length
      ? `<ul class="alert-list">${alerts.silences.map((s) => `<li class="alert-item silence"><div><div class="a-title">${esc(state.names.get(s.specialist_id) || s.specialist_id || "*")} · ${esc(s.kpi ? kpiName(s.kpi) : "*")}</div>
          <div class="a-meta">${esc(t("alerts.silenced", { until: fmtTime(s.until) }))} · ${esc(s.created_by || "")}${s.comment ? ` · ${esc(s.comment)}` : ""}${s.applies === false ? ` · ${esc(t("alerts.silence_left"))}` : ""}</div></div>
          ${removable(s) ? `<div class="a-actions"><button type="button" class="btn btn-small btn-danger" data-unsilence="${esc(s.id)}">${esc(t("alerts.unsilence"))}</button></div>` : ""}</li>`).join("")}</ul>`
      : `<p class="muted">${esc(t("alerts.no_silences"))}</p>`;
  }
  $("#al-silences").addEventListener("click", async (ev) => {
    const id = ev.target.dataset.unsilence;
    if (!id) return;
    try {
      await api(`/v1/dashboard/notify/silences/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (err) {
      alert(errorMessage(err));
    }
    refreshAlerts();
  });
  async function loadResolved() {
    try {
      resolved = (await api(`/v1/dashboard/notify/alerts${qs({ state: "resolved", limit: 200 })}`)).items;
    } catch (err) {
      $("#al-list").innerHTML = errorBox(err);
      return;
    }
    draw();
  }
  for (const name of TABS) {
    $(`#tab-${name}`).addEventListener("click", () => {
      tab = name;
      // Kept in the URL: a reload or a language switch (which re-renders) stays on the tab.
      history.replaceState(null, "", `#/alerts${name === "open" ? "" : `?state=${name}`}`);
      draw();
      if (tab === "resolved") loadResolved();
      if (tab === "deliveries") deliveries.load();
    });
  }
  const unsub = alerts.subscribe((d) => {
    if (d.type === "event") fresh.add(d.event.alert_id);
    if (d.type === "refresh" || d.type === "stream") draw();
    if (d.type === "event" && tab === "resolved") loadResolved();
  });
  // Failures are not on the alert stream: the count on the tab is polled.
  const poll = setInterval(() => deliveries.load(), 30000);
  draw();
  deliveries.load();
  if (tab === "resolved") loadResolved();
  return () => {
    unsub();
    clearInterval(poll);
    deliveries.stop();
  };
}
