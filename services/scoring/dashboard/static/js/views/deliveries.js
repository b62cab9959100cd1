// Failed deliveries (alert messages that never reached their channel) with Resend.
import { api, qs } from "../api.js";
import { esc, fmtTime, kpiName } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { errorBox, errorMessage, teamName } from "./common.js";

const BASE = "/v1/dashboard/notify/deliveries";
const PAGE = 100;
const SHOWN_ITEMS = 3;
// A resent delivery is followed until it is sent or fails again; sending may wait for a
// backoff (at most KPI_NOTIFY_RETRY_MAX_SECONDS), so follow it a little longer than that.
const FOLLOW_MS = 1000;
const FOLLOW_FOR_MS = 6 * 60 * 1000;

function itemsText(d) {
  const parts = d.items.slice(0, SHOWN_ITEMS).map((i) => {
    // A platform-health notice (admins' channels) names the service, not a specialist.
    if (i.type === "platform_incident") {
      return `${t("deliveries.platform")} · ${i.service}: ${i.summary} (${t(`deliveries.kind.${i.kind}`)})`;
    }
    // A team digest (team channels) names its period, not a specialist.
    if (i.type === "team_digest") {
      return `${t("deliveries.digest")} ${i.period} (${t("deliveries.kind.digest")})`;
    }
    const name = i.name || state.names.get(i.specialist_id) || i.specialist_id;
    // An appraisal-cycle reminder (team channels; the specialist's own copy by email).
    if (i.type === "cycle_reminder") {
      const who = i.audience === "specialist" ? ` → ${t("deliveries.to_specialist")}` : "";
      return `${name} · ${t(`deliveries.reminder.${i.reminder_kind}`)} ${i.quarter}${who} (${t("deliveries.kind.reminder")})`;
    }
    return `${name} · ${kpiName(i.kpi)} (${t(`deliveries.kind.${i.kind}`)})`;
  });
  const more = d.items.length - SHOWN_ITEMS;
  return parts.join("; ") + (more > 0 ? ` ${t("deliveries.more_alerts", { n: more })}` : "");
}

function row(d) {
  const channel = d.channel.name || d.channel.id;
  const title = `${channel}${d.channel.kind ? ` (${d.channel.kind})` : ""} · ${teamName(d.team_id)}`;
  const meta = [
    t("deliveries.attempts", { n: d.attempts }),
    d.last_attempt_at ? t("deliveries.last", { time: fmtTime(d.last_attempt_at) }) : "",
    t("deliveries.created", { time: fmtTime(d.created_at) }),
  ].filter(Boolean);
  let status = "";
  let action = "";
  if (d.status === "failed") {
    if (d.retry_until) meta.push(t("deliveries.gave_up", { time: fmtTime(d.retry_until) }));
    if (d.resends) status = t("deliveries.failed_again");
    const label = `${t("deliveries.resend")}: ${channel} · ${itemsText(d)}`;
    action = `<button type="button" class="btn btn-small" data-action="resend" aria-label="${esc(label)}">${esc(t("deliveries.resend"))}</button>`;
  } else if (d.status === "sent") {
    status = t("deliveries.sent", { time: fmtTime(d.sent_at) });
  } else {
    status = t("deliveries.sending", { by: d.resent_by || "" });
  }
  return `<li class="alert-item delivery d-${esc(d.status)}" data-delivery="${esc(d.id)}" data-status="${esc(d.status)}">
    <div><div class="a-title">${esc(title)}</div>
      <div>${esc(itemsText(d))}</div>
      ${d.last_error ? `<div class="d-error">${esc(t("deliveries.error", { msg: d.last_error }))}</div>` : ""}
      <div class="a-meta">${esc(meta.join(" · "))}</div>
      ${status ? `<div class="d-status" role="status">${esc(status)}</div>` : ""}</div>
    <div class="a-actions">${action}</div></li>`;
}

// The list for the alerts view; `onChange` is called whenever it should be drawn again.
export function failedDeliveries(onChange) {
  let failed = []; // the last loaded pages of failed deliveries, newest first
  let cursor = null;
  let error = null;
  let loaded = false;
  const resent = new Map(); // id -> the latest view of a delivery resent from this page
  const timers = new Set();

  async function load(more = false) {
    try {
      const page = await api(`${BASE}${qs({ status: "failed", limit: PAGE, cursor: more ? cursor : null })}`);
      failed = more ? failed.concat(page.items) : page.items;
      cursor = page.next_cursor;
      error = null;
      for (const d of failed) resent.delete(d.id); // failed again: shown from the list
    } catch (err) {
      error = err;
    }
    loaded = true;
    onChange();
  }

  function rows() {
    const byId = new Map(failed.map((d) => [d.id, d]));
    for (const [id, d] of resent) byId.set(id, d);
    return [...byId.values()].sort((a, b) => b.id - a.id);
  }

  function follow(id, until) {
    const timer = setTimeout(async () => {
      timers.delete(timer);
      let d = null;
      try {
        d = await api(`${BASE}/${encodeURIComponent(id)}`);
      } catch {}
      const before = resent.get(id);
      if (d && d.status === "failed") {
        resent.delete(id);
        failed = [d, ...failed.filter((x) => x.id !== id)].sort((a, b) => b.id - a.id);
      } else if (d) {
        resent.set(id, d);
      }
      // Redraw only on news: the list sits in a live region that reads out what changes.
      if (d && (!before || before.status !== d.status || before.attempts !== d.attempts)) onChange();
      const done = d && (d.status === "sent" || d.status === "failed");
      if (!done && Date.now() < until) follow(id, until);
    }, FOLLOW_MS);
    timers.add(timer);
  }

  async function resend(id, btn) {
    btn.disabled = true;
    try {
      const d = await api(`${BASE}/${encodeURIComponent(id)}/resend`, { method: "POST" });
      resent.set(d.id, d);
      failed = failed.filter((x) => x.id !== d.id);
      onChange();
      follow(d.id, Date.now() + FOLLOW_FOR_MS);
    } catch (err) {
      btn.disabled = false;
      alert(errorMessage(err));
    }
  }

  return {
    load,
    get count() {
      return failed.length;
    },
    html() {
      if (error) return errorBox(error);
      if (!loaded) return `<p class="muted">${esc(t("loading"))}</p>`;
      const all = rows();
      const list = all.length
        ? `<ul class="alert-list" id="dl-list">${all.map(row).join("")}</ul>`
        : `<p class="empty" id="dl-empty">${esc(t("deliveries.none"))}</p>`;
      const more = cursor ? `<p><button type="button" class="btn" data-action="more-deliveries">${esc(t("deliveries.more"))}</button></p>` : "";
      return `<p class="muted">${esc(t("deliveries.sub"))}</p>${list}${more}`;
    },
    bind(root) {
      root.addEventListener("click", (ev) => {
        const btn = ev.target.closest("button[data-action]");
        if (!btn) return;
        if (btn.dataset.action === "resend") resend(Number(btn.closest("[data-delivery]").dataset.delivery), btn);
        else if (btn.dataset.action === "more-deliveries") load(true);
      });
    },
    stop() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
