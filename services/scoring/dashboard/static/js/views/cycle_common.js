// Pieces the appraisal-cycle screens share: quarters, labels, error display on forms, a form
// dialog, and the meeting, decision and plan blocks both the supervisor and the specialist see.
import { ApiError } from "../api.js";
import { RATIO, esc, fmtValue, kpiName, quarterOf } from "../format.js";
import { getLang, t } from "../i18n.js";
import { ACTION_LABELS, ct } from "./cycle_i18n.js";

// -- quarters and dates ----------------------------------------------------------------

export function shiftQuarter(q, by) {
  const m = /^(\d{4})Q([1-4])$/.exec(q);
  if (!m) return q;
  const n = Number(m[1]) * 4 + Number(m[2]) - 1 + by;
  return `${Math.floor(n / 4)}Q${(n % 4) + 1}`;
}
export const nextQuarter = (q) => shiftQuarter(q, 1);
// The quarter under review: the last one that is over.
export const reviewQuarter = (today) => shiftQuarter(quarterOf(today), -1);
export const isQuarter = (q) => /^\d{4}Q[1-4]$/.test(q || "");

export function fmtWhen(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(getLang(), { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// <input type="datetime-local"> speaks the browser's local time without an offset; the API
// wants an offset, so the local time becomes an instant here (and back for editing).
export function localToIso(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}
export function isoToLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// -- labels ----------------------------------------------------------------------------

export function actionLabel(code, labels) {
  const lang = getLang();
  if (labels && typeof labels === "object" && typeof labels[lang] === "string") return labels[lang];
  return ACTION_LABELS[code]?.[lang] ?? code;
}

// The suggested actions of an appraisal ({actions, labels: {en: [...], zh-CN: [...]}}).
export function suggestedActions(incentive) {
  const actions = incentive?.actions || [];
  const labels = incentive?.labels?.[getLang()] || [];
  return actions.map((code, i) => ({ code, label: labels[i] ?? actionLabel(code) }));
}

export function decisionText(d) {
  if (!d) return "";
  const parts = [actionLabel(d.type, d.labels)];
  if (d.amount !== null && d.amount !== undefined) parts.push(ct("cy.d.amount", { v: d.amount }));
  if (d.level) parts.push(ct("cy.d.level", { v: d.level }));
  return parts.join(" · ");
}

export const meetingStatusLabel = (s) => ct(`cy.meeting.${s || "none"}`);

// provisional (quarter running), final, or pending (over, not finalised).
export const appraisalState = (ap) => (ap.finalized ? "final" : ap.provisional ? "provisional" : "pending");

export function stateBadge(ap) {
  const s = appraisalState(ap);
  const hint = s === "provisional" ? ct("cy.provisional_hint") : s === "pending" ? ct("cy.pending_hint") : "";
  return `<span class="cy-badge cy-badge-${s}" data-state="${s}" ${hint ? `title="${esc(hint)}"` : ""}>${esc(ct(`cy.state.${s}`))}</span>`;
}

// -- errors on forms ---------------------------------------------------------------------

const LOCATIONS = new Set(["body", "query", "path", "header", "cookie"]);

// A field's dotted name from a FastAPI loc (["body", "goals", 0, "kpi"] -> goals[0].kpi), the
// rule problem+json's `field` follows.
export function fieldName(loc) {
  let parts = Array.isArray(loc) ? loc : [];
  if (parts.length > 1 && LOCATIONS.has(parts[0])) parts = parts.slice(1);
  else if (!parts.length || (parts.length === 1 && LOCATIONS.has(parts[0]))) return "";
  let name = "";
  for (const p of parts) name += typeof p === "number" ? `[${p}]` : name ? `.${p}` : String(p);
  return name;
}

// {detail, fields: [{field, msg}]} of an error answer, whichever shape it has: FastAPI's
// {"detail": "text"} or {"detail": [{loc, msg}]}, or RFC 9457 problem+json {title, detail,
// errors: [{field | loc, msg}]}; and whichever ApiError built it (detail, errors, body).
export function problemOf(err) {
  if (!(err instanceof ApiError)) return { status: 0, detail: err?.message || String(err), fields: [] };
  const body = err.body && typeof err.body === "object" ? err.body : null;
  const lists = [err.errors, err.fieldErrors, body?.errors, Array.isArray(err.detail) ? err.detail : null, Array.isArray(body?.detail) ? body.detail : null];
  const list = lists.find((l) => Array.isArray(l) && l.length) || [];
  const fields = list.map((e) => ({ field: typeof e.field === "string" ? e.field : fieldName(e.loc), msg: String(e.msg ?? "") }));
  const detail = typeof err.detail === "string" ? err.detail : typeof body?.detail === "string" ? body.detail : body?.title || "";
  return { status: err.status, detail, fields };
}

const related = (el, f) => f.startsWith(`${el}.`) || f.startsWith(`${el}[`);

// The element a field error belongs to: the one naming it exactly, else the closest enclosing
// one (participants for participants[2]), else the first inside it (goals[0] -> its KPI).
function inputFor(form, f) {
  const all = [...form.querySelectorAll("[data-field]")];
  const exact = all.find((el) => el.dataset.field === f);
  if (exact) return exact;
  const outer = all.filter((el) => related(el.dataset.field, f)).sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
  return outer || all.find((el) => related(f, el.dataset.field)) || null;
}

// Editing a field marked invalid takes its mark and message away (the rest stay).
function clearOnEdit(form) {
  form.addEventListener("input", (ev) => {
    const el = ev.target;
    if (el.getAttribute?.("aria-invalid") !== "true") return;
    el.removeAttribute("aria-invalid");
    (el.closest(".field") || el.parentElement)?.querySelector(":scope > .field-msg")?.remove();
    if (el.dataset.described !== undefined) {
      el.setAttribute("aria-describedby", el.dataset.described);
      delete el.dataset.described;
    }
  });
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-msg")) el.remove();
  for (const el of form.querySelectorAll("[data-described]")) {
    el.setAttribute("aria-describedby", el.dataset.described);
    delete el.dataset.described;
  }
  const line = form.querySelector(".form-error");
  if (line) line.textContent = "";
}

// Field messages next to their inputs (aria-invalid, described by the message), the rest and
// the answer's detail in the form's message line. `fields`: [{field, msg}].
export function showErrors(form, { detail = "", fields = [], status = 422 }) {
  clearErrors(form);
  const loose = [];
  let first = null;
  for (const { field, msg } of fields) {
    const el = field ? inputFor(form, field) : null;
    if (!el) {
      loose.push(field ? `${field}: ${msg}` : msg);
      continue;
    }
    first = first || el;
    el.setAttribute("aria-invalid", "true");
    const box = el.closest(".field") || el.parentElement;
    const id = `${el.id || `f-${Math.random().toString(36).slice(2)}`}-msg`;
    let p = box.querySelector(`:scope > .field-msg`);
    if (!p) {
      p = document.createElement("p");
      p.className = "field-msg";
      p.id = id;
      box.appendChild(p);
    }
    p.textContent = p.textContent ? `${p.textContent}; ${msg}` : msg;
    if (el.dataset.described === undefined) {
      el.dataset.described = el.getAttribute("aria-describedby") || "";
      el.setAttribute("aria-describedby", `${el.dataset.described} ${p.id}`.trim());
    }
  }
  const text = failureText({ status, detail, fields }, loose);
  const line = form.querySelector(".form-error");
  if (line) line.textContent = text;
  if (first && first.focus) first.focus();
  return text;
}

// The message line of a failed request; `loose`: field errors no input shows.
export function failureText({ status, detail = "", fields = [] }, loose = fields.map((e) => (e.field ? `${e.field}: ${e.msg}` : e.msg))) {
  if (status === 409) return ct("cy.conflict", { detail });
  if (status === 422 || status === 0 || status === -1) return [detail || (fields.length ? ct("cy.fix_fields") : ""), ...loose].filter(Boolean).join(" · ");
  if (status === 404) return detail || t("error.notfound");
  return ct("cy.failed", { detail: detail || status });
}

// Client-side checks before a request: [{field, msg}] shown like the server's 422.
export class FormInvalid extends Error {
  constructor(fields) {
    super("invalid");
    this.fields = fields;
  }
}

export function showFailure(form, err) {
  if (err instanceof FormInvalid) return showErrors(form, { fields: err.fields, status: -1 });
  return showErrors(form, problemOf(err));
}

// -- dialogs ----------------------------------------------------------------------------

// A modal form: `onSubmit(form)` resolves to close it or throws to keep it open with the error
// shown (next to the fields the error names). Escape and Cancel close it; focus goes back.
export function formDialog({ id, title, body, submit, onSubmit, opener, wide = true }) {
  const dlg = document.createElement("dialog");
  dlg.id = id;
  dlg.className = `cy-dialog${wide ? " cy-wide" : ""}`;
  dlg.setAttribute("aria-labelledby", `${id}-title`);
  dlg.innerHTML = `<form method="dialog" novalidate><h2 id="${id}-title" class="dialog-title">${esc(title)}</h2>${body}
    <p class="form-error" role="alert"></p>
    <div class="actions"><button type="button" class="btn" data-cancel>${esc(t("cancel"))}</button>
      <button type="submit" class="btn btn-primary">${esc(submit)}</button></div></form>`;
  document.body.appendChild(dlg);
  const form = dlg.querySelector("form");
  clearOnEdit(form);
  const close = () => {
    if (dlg.open) dlg.close();
    dlg.remove();
    if (opener && document.contains(opener)) opener.focus();
  };
  dlg.querySelector("[data-cancel]").addEventListener("click", close);
  dlg.addEventListener("cancel", (ev) => {
    ev.preventDefault();
    close();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await onSubmit(form);
      close();
    } catch (err) {
      showFailure(form, err);
    } finally {
      button.disabled = false;
    }
  });
  dlg.showModal();
  return { dlg, form, close };
}

// An inline form's submit: errors shown on it, `after()` once it worked.
export function bindForm(form, onSubmit) {
  clearOnEdit(form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    clearErrors(form);
    try {
      await onSubmit(form);
    } catch (err) {
      showFailure(form, err);
    } finally {
      if (button && document.contains(button)) button.disabled = false;
    }
  });
}

export function field(id, label, input, hint = "") {
  return `<div class="field"><label for="${id}">${esc(label)}</label>${input}${hint ? `<small class="hint" id="${id}-hint">${esc(hint)}</small>` : ""}</div>`;
}

// -- blocks -----------------------------------------------------------------------------

// One feedback meeting; `actions` is HTML of the buttons the viewer may use on it.
export function meetingItem(m, actions = "", { mine = false } = {}) {
  const when = m.status === "held"
    ? ct("cy.m.held_on", { date: m.held_on || m.date })
    : m.status === "scheduled"
      ? ct("cy.m.scheduled_for", { time: fmtWhen(m.scheduled_for) || m.date })
      : ct("cy.m.cancelled", { date: m.date });
  const meta = [ct("cy.m.recorded", { by: m.created_by, time: fmtWhen(m.created_at) })];
  if (m.updated_by && m.updated_at) meta.push(ct("cy.m.updated", { by: m.updated_by, time: fmtWhen(m.updated_at) }));
  let ack = "";
  if (m.status === "held") {
    ack = m.acknowledged_at
      ? ct(mine ? "me.meeting_acked" : "cy.m.ack_yes", { time: fmtWhen(m.acknowledged_at) })
      : ct(mine ? "me.meeting_not_acked" : "cy.m.ack_no");
  }
  return `<li class="cy-meeting" data-meeting="${m.id}" data-status="${esc(m.status)}">
    <div class="cy-m-head"><span class="chip cy-st cy-st-${esc(m.status)}">${esc(meetingStatusLabel(m.status))}</span> <strong>${esc(when)}</strong></div>
    <div class="a-meta">${esc(ct("cy.m.participants", { list: m.participants.join(", ") }))}</div>
    ${m.notes ? `<p class="cy-text">${esc(m.notes)}</p>` : ""}
    ${m.agreed_actions.length ? `<div class="cy-actions-list"><span class="cy-label">${esc(ct("cy.m.actions"))}</span><ol>${m.agreed_actions.map((a) => `<li>${esc(a)}</li>`).join("")}</ol></div>` : ""}
    <div class="a-meta">${esc(meta.join(" · "))}</div>
    ${ack ? `<div class="cy-ack" data-acked="${m.acknowledged_at ? "yes" : "no"}">${esc(ack)}</div>` : ""}
    ${actions ? `<div class="a-actions">${actions}</div>` : ""}</li>`;
}

export function decisionItem(d) {
  return `<li><strong>${esc(decisionText(d))}</strong>${d.note ? `<div class="cy-text">${esc(d.note)}</div>` : ""}
    <div class="a-meta">${esc(ct("cy.d.meta", { by: d.decided_by, time: fmtWhen(d.decided_at) }))}</div></li>`;
}

// A plan target or baseline as the form shows it: ratios in percent.
export const toShown = (kpi, v) => (v === null || v === undefined ? "" : RATIO.has(kpi) ? String(Math.round(v * 100000) / 1000) : String(v));

export function planBlock(plan) {
  const suggested = plan.progress?.suggested_status;
  return `<p><span class="chip cy-plan-status" data-status="${esc(plan.status)}">${esc(t(`plan.${plan.status}`))}</span>
      ${suggested && suggested !== plan.status ? ` <span class="muted">(${esc(t("plan.suggested", { s: t(`plan.${suggested}`) }))})</span>` : ""}</p>
    ${plan.goals.length ? `<ul class="alert-list cy-goals">${plan.goals.map((g) => `<li class="alert-item ${g.status === "achieved" ? "resolved" : g.status === "behind" || g.status === "missed" ? "" : "acked"}" data-kpi="${esc(g.kpi)}">
      <div><div class="a-title">${esc(ct("cy.g.line", { kpi: kpiName(g.kpi), value: fmtValue(g.kpi, g.value), target: fmtValue(g.kpi, g.target) }))}</div>
      <div class="a-meta">${esc(t(`goal.${g.status}`))} · ${esc(t("plan.due", { due: g.due }))}</div></div></li>`).join("")}</ul>` : ""}
    ${plan.notes ? `<p class="cy-text">${esc(plan.notes)}</p>` : ""}`;
}

export function progressNotes(plan) {
  const notes = plan.progress_notes || [];
  const roleName = (r) => (t(`role.${r}`) === `role.${r}` ? r : t(`role.${r}`));
  return notes.length
    ? `<ol class="cy-notes">${notes.map((n) => `<li data-note="${n.id}"><div class="cy-text">${esc(n.text)}</div>
        <div class="a-meta">${esc(ct("cy.n.meta", { author: n.author, role: roleName(n.author_role), time: fmtWhen(n.created_at) }))}</div></li>`).join("")}</ol>`
    : `<p class="muted">${esc(ct("cy.no_notes"))}</p>`;
}

export function noteForm(id) {
  return `<form class="cy-form" id="${id}" novalidate>
    ${field(`${id}-text`, ct("cy.add_note"), `<textarea id="${id}-text" data-field="text" rows="3" maxlength="20000" required></textarea>`)}
    <p class="form-error" role="alert"></p>
    <div><button type="submit" class="btn">${esc(ct("cy.add_note_btn"))}</button></div></form>`;
}
