// The appraisal cycle for supervisors and admins: the team's cycle panel with "Finalise
// quarter" (on the appraisal view) and one specialist's cycle page (#/cycle/{id}?quarter=):
// feedback meeting, improvement plan, incentive decision.
import { ApiError, api, qs } from "../api.js";
import { RATIO, esc, gradeChip, kpiName, recentQuarters } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { errorBox, teamName } from "./common.js";
import {
  FormInvalid,
  actionLabel,
  bindForm,
  decisionItem,
  decisionText,
  field,
  fmtWhen,
  formDialog,
  isQuarter,
  isoToLocal,
  localToIso,
  meetingItem,
  meetingStatusLabel,
  nextQuarter,
  noteForm,
  planBlock,
  progressNotes,
  reviewQuarter,
  stateBadge,
  suggestedActions,
  toShown,
} from "./cycle_common.js";
import { ACTION_LABELS, ct } from "./cycle_i18n.js";

const enc = encodeURIComponent;
const FILTERS = ["all", "missing_meeting", "missing_decision"];

export const cycleHref = (id, quarter) => `#/cycle/${enc(id)}${quarter ? `?quarter=${enc(quarter)}` : ""}`;

// -- the team's cycle panel (appraisal view) -----------------------------------------------

// Mounted by the appraisal view under its table; follows its quarter and team (`ui`, changed by
// the view's toolbar), and after a finalisation asks the view to reload its table.
export function mountCyclePanel(host, ui) {
  if (!state.config.features?.appraisal_cycle || !host) return null;
  let filter = "all";
  let data = null;
  let asked = 0; // loads overlap when the quarter changes: only the last one asked draws
  host.innerHTML = `<section class="panel cy-panel" aria-labelledby="cy-h">
      <div class="cy-head"><div><h2 id="cy-h">${esc(ct("cy.panel"))}</h2><div class="sub" id="cy-sub"></div></div>
        <button type="button" class="btn btn-primary" id="cy-finalise">${esc(ct("cy.finalise"))}</button></div>
      <p class="cy-status" id="cy-status" role="status"></p>
      <div id="cy-summary" class="cy-summary"></div>
      <fieldset class="cy-filter" id="cy-filter"><legend>${esc(ct("cy.filter"))}</legend><span id="cy-filter-options"></span></fieldset>
      <div id="cy-body"></div></section>`;
  const $ = (s) => host.querySelector(s);
  const tools = document.querySelector("#ap-tools");
  if (tools) tools.addEventListener("change", (ev) => {
    // A person's change of quarter or team clears the last message; a finalisation's reload keeps it.
    if (ev.isTrusted) $("#cy-status").textContent = "";
    load();
  });
  $("#cy-filter").addEventListener("change", (ev) => {
    if (ev.target.name !== "cy-filter") return;
    filter = ev.target.value;
    draw();
  });
  $("#cy-finalise").addEventListener("click", (ev) => finalise(ev.currentTarget));

  async function load() {
    $("#cy-sub").textContent = ct("cy.panel_sub", { quarter: ui.quarter, plan: nextQuarter(ui.quarter) });
    const body = $("#cy-body");
    $("#cy-finalise").hidden = !ui.team;
    const mine = ++asked;
    if (!ui.team) {
      body.innerHTML = "";
      $("#cy-summary").innerHTML = "";
      return;
    }
    let answer;
    try {
      answer = await api(`/v1/appraisals/${enc(ui.quarter)}/cycle${qs({ team: ui.team })}`);
    } catch (err) {
      if (mine !== asked) return;
      data = null;
      $("#cy-summary").innerHTML = "";
      $("#cy-filter-options").innerHTML = "";
      body.innerHTML = err instanceof ApiError && err.routeMissing ? `<p class="notice">${esc(ct("cy.unavailable"))}</p>` : errorBox(err);
      return;
    }
    if (mine !== asked) return;
    data = answer;
    draw();
  }

  function draw() {
    if (!data) return;
    const s = data.summary;
    const names = (ids) => ids.map((id) => data.entries.find((e) => e.specialist_id === id)?.name || id).join(", ");
    $("#cy-summary").innerHTML = `<p>${esc(ct("cy.summary", s))}</p>
      <p id="cy-missing" data-missing="${data.missing_meeting.length + data.missing_decision.length}">${esc(
        data.missing_meeting.length || data.missing_decision.length
          ? ct("cy.missing_some", { m: names(data.missing_meeting) || ct("cy.none"), d: names(data.missing_decision) || ct("cy.none") })
          : ct("cy.missing_none"))}</p>`;
    const counts = { all: data.entries.length, missing_meeting: data.missing_meeting.length, missing_decision: data.missing_decision.length };
    $("#cy-filter-options").innerHTML = FILTERS.map((f) => `<label class="check"><input type="radio" name="cy-filter" value="${f}" id="cy-filter-${f}" ${f === filter ? "checked" : ""}>
      ${esc(ct(`cy.filter.${f}`, { n: counts[f] }))}</label>`).join("");
    const shown = filter === "all" ? data.entries : data.entries.filter((e) => data[filter].includes(e.specialist_id));
    $("#cy-body").innerHTML = shown.length ? table(shown) : `<p class="muted cy-empty">${esc(ct("cy.filter_empty"))}</p>`;
  }

  function table(entries) {
    const cols = ["specialist", "overall", "finalized", "meeting", "plan", "decision", "ack", "todo", "actions"];
    const head = (c) => (c === "plan" ? ct("cy.col.plan", { quarter: data.plan_quarter }) : ct(`cy.col.${c}`));
    return `<div class="table-wrap cy-table-wrap"><table class="grid cy-table" id="cycle-table">
      <caption class="sr-only">${esc(ct("cy.panel"))} ${esc(data.quarter)} ${esc(teamName(ui.team))}</caption>
      <thead><tr>${cols.map((c) => `<th scope="col"${c === "specialist" ? ' class="sticky-col"' : ""}>${esc(head(c))}</th>`).join("")}</tr></thead><tbody>
      ${entries.map((e) => {
        const st = e.finalized ? "final" : e.provisional ? "provisional" : "pending";
        return `<tr data-sid="${esc(e.specialist_id)}" data-missing="${esc(e.missing.join(" "))}">
        <th scope="row" class="sticky-col"><a class="spec-link" href="${cycleHref(e.specialist_id, data.quarter)}">${esc(e.name || e.specialist_id)}</a><span class="spec-id">${esc(e.specialist_id)}</span></th>
        <td>${gradeChip(e.overall_grade)}</td>
        <td data-col="finalized" data-state="${st}"><span class="cy-badge cy-badge-${st}">${esc(ct(`cy.state.${st}`))}</span></td>
        <td data-col="meeting" data-status="${esc(e.meeting_status)}"><span class="chip cy-st cy-st-${esc(e.meeting_status)}">${esc(meetingStatusLabel(e.meeting_status))}</span>${e.meeting_date ? `<span class="spec-id">${esc(e.meeting_date)}</span>` : ""}</td>
        <td data-col="plan">${e.plan_status ? esc(t(`plan.${e.plan_status}`)) : `<span class="muted">${esc(ct("cy.none"))}</span>`}</td>
        <td data-col="decision">${e.decision ? esc(decisionText(e.decision)) : `<span class="muted">—</span>`}</td>
        <td data-col="ack">${e.acknowledged_at ? esc(fmtWhen(e.acknowledged_at)) : `<span class="muted">${esc(ct("cy.no"))}</span>`}${e.commented ? `<span class="spec-id">${esc(ct("cy.commented"))}</span>` : ""}</td>
        <td data-col="todo">${e.missing.length ? e.missing.map((m) => `<span class="chip cy-todo">${esc(ct(`cy.step.${m}`))}</span>`).join(" ") : `<span class="chip cy-done">${esc(ct("cy.all_done"))}</span>`}</td>
        <td><a class="btn btn-small" href="${cycleHref(e.specialist_id, data.quarter)}" aria-label="${esc(ct("cy.open_label", { name: e.name || e.specialist_id }))}">${esc(ct("cy.open"))}</a></td></tr>`;
      }).join("")}</tbody></table></div>`;
  }

  async function finalise(opener) {
    const status = $("#cy-status");
    status.textContent = "";
    let preview;
    try {
      preview = await api(`/v1/appraisals/${enc(ui.quarter)}/finalize/preview${qs({ team: ui.team })}`);
    } catch (err) {
      status.innerHTML = errorBox(err);
      return;
    }
    const names = (ids) => ids.map((id) => preview.freeze.find((f) => f.specialist_id === id)?.name || id).join(", ");
    const rows = preview.freeze.map((f) => `<tr data-sid="${esc(f.specialist_id)}"><th scope="row">${esc(f.name || f.specialist_id)}<span class="spec-id">${esc(f.specialist_id)}</span></th>
      <td>${gradeChip(f.overall_grade)}</td><td>${esc(f.incentive.map((c) => actionLabel(c)).join(", ") || "—")}</td>
      <td>${f.plan_proposed ? esc(ct("cy.preview_plan_yes", { quarter: preview.plan_quarter })) : "—"}</td></tr>`).join("");
    const body = `${preview.can_finalize ? `<p>${esc(ct("cy.preview_intro"))}</p>` : `<p class="error-box" id="cy-preview-reason">${esc(ct("cy.preview_cannot", { reason: preview.reason || "" }))}</p>`}
      ${preview.freeze.length ? `<h3 class="cy-h3">${esc(ct("cy.preview_freeze", { n: preview.freeze.length }))}</h3>
        <div class="table-wrap cy-preview-wrap"><table class="grid" id="cy-preview-table"><thead><tr><th scope="col">${esc(ct("cy.col.specialist"))}</th>
        <th scope="col">${esc(ct("cy.col.overall"))}</th><th scope="col">${esc(ct("cy.preview_col_incentive"))}</th><th scope="col">${esc(ct("cy.preview_col_plan"))}</th></tr></thead>
        <tbody>${rows}</tbody></table></div>` : `<p class="notice">${esc(ct("cy.preview_nothing"))}</p>`}
      ${preview.already_finalized.length ? `<p class="muted">${esc(ct("cy.preview_already", { n: preview.already_finalized.length }))}</p>` : ""}
      ${preview.plans_proposed.length ? `<p>${esc(ct("cy.preview_plans", { quarter: preview.plan_quarter, names: names(preview.plans_proposed) }))}</p>` : ""}`;
    const { form } = formDialog({
      id: "cy-preview",
      title: ct("cy.preview_title", { quarter: preview.quarter, team: teamName(ui.team) }),
      body,
      submit: ct("cy.confirm"),
      opener,
      onSubmit: async () => {
        const r = await api(`/v1/appraisals/${enc(ui.quarter)}/finalize${qs({ team: ui.team })}`, { method: "POST" });
        status.textContent = ct("cy.finalised_result", { quarter: r.quarter, frozen: r.frozen, plans: r.plans_proposed.length });
        // The view reloads its table (and this panel) as on any change of its toolbar.
        if (tools) tools.dispatchEvent(new Event("change", { bubbles: true }));
        else load();
      },
    });
    form.querySelector("button[type=submit]").disabled = !preview.can_finalize || !preview.freeze.length;
  }

  load();
  return { load };
}

// -- one specialist's cycle page -------------------------------------------------------------

const PLAN_NEXT = { draft: ["open"], open: ["on_track", "achieved", "missed"], on_track: ["open", "achieved", "missed"], achieved: ["open"], missed: ["open"] };

export const gradedKpis = () => state.config.kpis.filter((k) => state.config.catalogue?.[k]?.graded ?? k !== "nps");

function quarterEnd(q) {
  const [y, n] = [Number(q.slice(0, 4)), Number(q.slice(5))];
  const last = new Date(Date.UTC(y, n * 3, 0));
  return last.toISOString().slice(0, 10);
}

export function renderCycle(main, args, params) {
  const id = args[0];
  if (!id) {
    location.hash = "#/appraisal";
    return null;
  }
  const quarters = recentQuarters(state.config.today);
  const quarter = isQuarter(params.get("quarter")) ? params.get("quarter") : reviewQuarter(state.config.today);
  const planQuarter = nextQuarter(quarter);
  if (!quarters.includes(quarter)) quarters.push(quarter);
  let ap = null;
  let meetings = [];
  let decisions = null;
  let plan = null;
  let stopped = false; // the view was left: a late answer draws nothing
  main.innerHTML = `
    <p><a id="cy-back" href="#/appraisal?quarter=${enc(quarter)}">${esc(ct("cy.back"))}</a></p>
    <div class="page-head"><div><h1 id="cy-name">${esc(ct("cy.page_title", { name: state.names.get(id) || id }))}</h1><div class="sub" id="cy-page-sub"></div></div>
      <form class="toolbar m0" id="cy-tools"><div class="field"><label for="cy-quarter">${esc(t("quarter.label"))}</label>
        <select id="cy-quarter">${quarters.map((q) => `<option ${q === quarter ? "selected" : ""}>${q}</option>`).join("")}</select></div>
        <a class="btn" href="#/specialist/${enc(id)}">${esc(ct("cy.kpi_page"))}</a></form></div>
    <div id="cy-page"><p class="muted">${esc(t("loading"))}</p></div>`;
  const $ = (s) => main.querySelector(s);
  $("#cy-quarter").addEventListener("change", (ev) => {
    location.hash = cycleHref(id, ev.target.value);
  });
  const base = `/v1/specialists/${enc(id)}`;

  async function load() {
    try {
      [ap, meetings, decisions, plan] = await Promise.all([
        api(`${base}/appraisals/${quarter}`),
        api(`${base}/meetings${qs({ quarter })}`).then((r) => r.meetings),
        api(`${base}/appraisals/${quarter}/decisions`),
        api(`${base}/plans/${planQuarter}`).catch((err) => {
          if (err instanceof ApiError && err.status === 404) return null;
          throw err;
        }),
      ]);
    } catch (err) {
      if (!stopped) $("#cy-page").innerHTML = errorBox(err);
      return;
    }
    if (stopped) return;
    state.names.set(id, ap.name || id);
    $("#cy-name").textContent = ct("cy.page_title", { name: ap.name || id });
    $("#cy-page-sub").textContent = `${id} · ${ap.team_id ? t("spec.team", { team: teamName(ap.team_id) }) : t("spec.noteam")} · ${quarter}`;
    if (ap.team_id) $("#cy-back").href = `#/appraisal?quarter=${enc(quarter)}&team=${enc(ap.team_id)}`;
    if (!$("#cy-ap")) {
      $("#cy-page").innerHTML = `<div class="two-col cy-cols">
        <div><section class="panel" aria-labelledby="cy-ap-h"><h2 id="cy-ap-h">${esc(ct("cy.appraisal", { quarter }))}</h2><div id="cy-ap"></div></section>
          <section class="panel" aria-labelledby="cy-dec-h"><h2 id="cy-dec-h">${esc(ct("cy.decision"))}</h2><div id="cy-decision"></div></section></div>
        <div><section class="panel" aria-labelledby="cy-mt-h"><h2 id="cy-mt-h">${esc(ct("cy.meetings", { quarter }))}</h2><div id="cy-meetings"></div></section>
          <section class="panel" aria-labelledby="cy-plan-h"><h2 id="cy-plan-h">${esc(ct("cy.plan", { quarter: planQuarter }))}</h2><div id="cy-plan"></div></section></div></div>`;
    }
    drawAppraisal();
    drawMeetings();
    drawDecision();
    drawPlan();
  }

  function drawAppraisal() {
    const per = ap.kpis || {};
    const sug = suggestedActions(ap.incentive);
    $("#cy-ap").innerHTML = `<p class="cy-line">${gradeChip(ap.overall_grade)} ${stateBadge(ap)}
        ${ap.finalized ? `<span class="muted">${esc(ct("cy.finalised_by", { by: ap.finalized_by, time: fmtWhen(ap.finalized_at) }))}</span>` : ""}</p>
      <ul class="legend plain-list">${Object.entries(per).map(([k, v]) => `<li>${esc(kpiName(k))} ${gradeChip(v?.grade)}</li>`).join("")}</ul>
      <p>${esc(ct("cy.suggested"))}: <strong>${esc(sug.map((s) => s.label).join(", ") || ct("cy.none"))}</strong></p>
      <p id="cy-ack" data-acked="${ap.acknowledged_at ? "yes" : "no"}">${esc(ap.acknowledged_at ? ct("cy.ack_yes", { time: fmtWhen(ap.acknowledged_at) }) : ct("cy.ack_no"))}</p>
      <div id="cy-comment"><span class="cy-label">${esc(ct("cy.comment"))}</span>
        ${ap.comment ? `<blockquote class="cy-text">${esc(ap.comment.text)}</blockquote><div class="a-meta">${esc(ct("cy.comment_meta", { first: fmtWhen(ap.comment.commented_at), last: fmtWhen(ap.comment.updated_at) }))}</div>`
          : `<p class="muted">${esc(ct("cy.no_comment"))}</p>`}</div>`;
  }

  // -- meetings ----------------------------------------------------------------------------

  function drawMeetings() {
    const standing = meetings.some((m) => m.status === "scheduled" || m.status === "held");
    const buttons = (m) => {
      const b = (act, key, cls = "") => `<button type="button" class="btn btn-small ${cls}" data-act="${act}" data-id="${m.id}">${esc(ct(key))}</button>`;
      if (m.status === "scheduled") return b("held", "cy.mark_held") + b("reschedule", "cy.reschedule") + b("cancel", "cy.cancel_meeting", "btn-danger");
      if (m.status === "held") return b("edit", "cy.edit_record");
      return b("again", "cy.schedule_again");
    };
    $("#cy-meetings").innerHTML = `${meetings.length ? `<ul class="alert-list cy-meetings">${meetings.map((m) => meetingItem(m, buttons(m))).join("")}</ul>` : `<p class="muted">${esc(ct("cy.no_meeting"))}</p>`}
      ${standing ? "" : `<p class="cy-buttons"><button type="button" class="btn" data-act="schedule" id="cy-schedule">${esc(ct("cy.schedule"))}</button>
        <button type="button" class="btn" data-act="record" id="cy-record">${esc(ct("cy.record_held"))}</button></p>`}`;
  }

  // On this render's own element: #main outlives the views, so listeners there would pile up.
  $("#cy-page").addEventListener("click", (ev) => {
    const button = ev.target.closest("#cy-meetings [data-act]");
    if (!button) return;
    const m = meetings.find((x) => String(x.id) === button.dataset.id) || null;
    const act = button.dataset.act;
    if (act === "cancel") return cancelMeeting(m, button);
    meetingDialog(act, m, button);
  });

  function actionRow(i, value) {
    return `<li class="cy-row"><div class="field"><label for="mt-a-${i}">${esc(ct("cy.f.action_n", { n: i + 1 }))}</label>
      <span class="cy-inline"><input type="text" id="mt-a-${i}" data-field="agreed_actions[${i}]" maxlength="2000" value="${esc(value)}">
      <button type="button" class="btn btn-small" data-remove aria-label="${esc(ct("cy.f.remove_n", { n: i + 1 }))}">${esc(ct("cy.f.remove"))}</button></span></div></li>`;
  }

  // schedule | record (a new one) | held (mark a scheduled one held) | reschedule | again | edit
  function meetingDialog(kind, m, opener) {
    const when = ["schedule", "reschedule", "again"].includes(kind);
    const held = ["record", "held", "edit"].includes(kind);
    const participants = m ? m.participants.join(", ") : [state.config.subject, id].join(", ");
    const actions = m?.agreed_actions?.length ? m.agreed_actions : [""];
    const title = { schedule: "cy.dlg.schedule", again: "cy.dlg.schedule", record: "cy.dlg.held", held: "cy.dlg.held", reschedule: "cy.dlg.reschedule", edit: "cy.dlg.edit" }[kind];
    const body = `<div class="form-grid">
      ${when ? field("mt-when", ct("cy.f.scheduled_for"), `<input type="datetime-local" id="mt-when" data-field="scheduled_for" required value="${esc(isoToLocal(m?.scheduled_for))}">`) : ""}
      ${held ? field("mt-held", ct("cy.f.held_on"), `<input type="date" id="mt-held" data-field="held_on" required value="${esc(m?.held_on || state.config.today)}">`) : ""}
      ${field("mt-people", ct("cy.f.participants"), `<input type="text" id="mt-people" data-field="participants" required aria-describedby="mt-people-hint" value="${esc(participants)}">`, ct("cy.f.participants_hint"))}</div>
      ${field("mt-notes", ct("cy.f.notes"), `<textarea id="mt-notes" data-field="notes" rows="4" maxlength="20000">${esc(m?.notes || "")}</textarea>`)}
      ${held ? `<fieldset class="cy-list" data-field="agreed_actions"><legend>${esc(ct("cy.f.actions"))}</legend>
        <ol id="mt-actions" class="plain-list">${actions.map((a, i) => actionRow(i, a)).join("")}</ol>
        <button type="button" class="btn btn-small" id="mt-add-action">${esc(ct("cy.f.add_action"))}</button></fieldset>` : ""}`;
    const { form } = formDialog({
      id: "cy-meeting-dlg",
      title: ct(title),
      body,
      submit: ct("cy.save"),
      opener,
      onSubmit: async (f) => {
        const payload = meetingPayload(f, { when, held });
        if (kind === "schedule" || kind === "record") {
          await api(`${base}/meetings`, { method: "POST", body: { status: held ? "held" : "scheduled", quarter, ...payload } });
        } else {
          await api(`${base}/meetings/${m.id}`, { method: "PATCH", body: { status: held ? "held" : "scheduled", ...payload } });
        }
        await load();
      },
    });
    if (held) bindActionList(form);
  }

  function bindActionList(form) {
    const list = form.querySelector("#mt-actions");
    const renumber = () => {
      [...list.children].forEach((li, i) => {
        const input = li.querySelector("input");
        const value = input.value;
        li.outerHTML = actionRow(i, value);
      });
    };
    form.querySelector("#mt-add-action").addEventListener("click", () => {
      list.insertAdjacentHTML("beforeend", actionRow(list.children.length, ""));
      list.lastElementChild.querySelector("input").focus();
    });
    list.addEventListener("click", (ev) => {
      const remove = ev.target.closest("[data-remove]");
      if (!remove) return;
      const li = remove.closest("li");
      const index = [...list.children].indexOf(li);
      li.remove();
      renumber();
      const next = list.children[Math.min(index, list.children.length - 1)];
      (next ? next.querySelector("input") : form.querySelector("#mt-add-action")).focus();
    });
  }

  function meetingPayload(form, { when, held }) {
    const errors = [];
    const out = {};
    if (when) {
      const raw = form.querySelector("#mt-when").value;
      out.scheduled_for = raw ? localToIso(raw) : null;
      if (!out.scheduled_for) errors.push({ field: "scheduled_for", msg: ct("cy.required") });
    }
    if (held) {
      out.held_on = form.querySelector("#mt-held").value;
      if (!out.held_on) errors.push({ field: "held_on", msg: ct("cy.required") });
      out.agreed_actions = [...form.querySelectorAll("#mt-actions input")].map((i) => i.value.trim()).filter(Boolean);
    }
    out.participants = form.querySelector("#mt-people").value.split(/[,，;；\s]+/).map((s) => s.trim()).filter(Boolean);
    if (!out.participants.length) errors.push({ field: "participants", msg: ct("cy.need_participant") });
    out.notes = form.querySelector("#mt-notes").value;
    if (errors.length) throw new FormInvalid(errors);
    return out;
  }

  function cancelMeeting(m, opener) {
    formDialog({
      id: "cy-cancel-dlg",
      title: ct("cy.cancel_confirm"),
      body: `<p>${esc(ct("cy.m.scheduled_for", { time: fmtWhen(m.scheduled_for) || m.date }))}</p>`,
      submit: ct("cy.cancel_meeting"),
      opener,
      wide: false,
      onSubmit: async () => {
        await api(`${base}/meetings/${m.id}`, { method: "PATCH", body: { status: "cancelled" } });
        await load();
      },
    });
  }

  // -- decision ----------------------------------------------------------------------------

  function drawDecision() {
    const box = $("#cy-decision");
    const sug = suggestedActions(ap.incentive);
    const suggestedCodes = new Set(decisions.suggested.length ? decisions.suggested : sug.map((s) => s.code));
    const current = decisions.current;
    // The codes offered: the suggested ones first (with the server's labels), then every other
    // code the server accepts (KPI_INCENTIVES' own included), the current decision's if it is
    // none of these, and "no action" last.
    const types = decisions.types || Object.keys(ACTION_LABELS).map((code) => ({ code }));
    const typeLabels = new Map(types.map((ty) => [ty.code, ty.labels]));
    const codes = [...new Set([...suggestedCodes, ...types.map((ty) => ty.code).filter((c) => c !== "none"), ...(current ? [current.type] : []), "none"])];
    const labelOf = (c) => sug.find((s) => s.code === c)?.label || (current?.type === c ? actionLabel(c, current.labels) : actionLabel(c, typeLabels.get(c)));
    const selected = current?.type || [...suggestedCodes][0] || "none";
    const canDecide = ap.finalized;
    box.innerHTML = `<div class="cy-decision-grid">
        <div><span class="cy-label">${esc(ct("cy.suggested"))}</span>
          <ul class="plain-list cy-chips" id="cy-suggested">${sug.length ? sug.map((s) => `<li><span class="chip cy-sug" data-code="${esc(s.code)}">${esc(s.label)}</span></li>`).join("") : `<li class="muted">${esc(ct("cy.none"))}</li>`}</ul></div>
        <div id="cy-current" data-type="${esc(current?.type || "")}"><span class="cy-label">${esc(ct("cy.decision_taken"))}</span>
          ${current ? `<p><strong>${esc(decisionText(current))}</strong></p>${current.note ? `<p class="cy-text">${esc(current.note)}</p>` : ""}
            <div class="a-meta">${esc(ct("cy.d.meta", { by: current.decided_by, time: fmtWhen(current.decided_at) }))}</div>` : `<p class="muted">${esc(ct("cy.no_decision"))}</p>`}</div></div>
      ${canDecide ? `<form class="cy-form" id="cy-decision-form" novalidate><div class="form-grid">
        ${field("dc-type", ct("cy.f.type"), `<select id="dc-type" data-field="type">${codes.map((c) => `<option value="${esc(c)}" ${c === selected ? "selected" : ""}>${esc(suggestedCodes.has(c) ? ct("cy.suggested_opt", { label: labelOf(c) }) : labelOf(c))}</option>`).join("")}</select>`)}
        ${field("dc-amount", ct("cy.f.amount"), `<input type="number" step="any" id="dc-amount" data-field="amount" aria-describedby="dc-amount-hint" value="${current?.amount ?? ""}">`, ct("cy.f.amount_hint"))}
        ${field("dc-level", ct("cy.f.level"), `<input type="text" id="dc-level" data-field="level" maxlength="200" aria-describedby="dc-level-hint" value="${esc(current?.level || "")}">`, ct("cy.f.level_hint"))}</div>
        ${field("dc-note", ct("cy.f.note"), `<textarea id="dc-note" data-field="note" rows="2" maxlength="20000"></textarea>`)}
        <p class="form-error" role="alert"></p><div><button type="submit" class="btn btn-primary">${esc(ct("cy.record_decision"))}</button></div></form>`
        : `<p class="notice">${esc(ct("cy.decision_wait"))}</p>`}
      ${decisions.history.length ? `<h3 class="cy-h3">${esc(ct("cy.history"))}</h3><ol class="cy-history" id="cy-history">${decisions.history.map(decisionItem).join("")}</ol>` : ""}`;
    const form = $("#cy-decision-form");
    if (!form) return;
    bindForm(form, async (f) => {
      const amountInput = f.querySelector("#dc-amount");
      const raw = amountInput.value.trim();
      if (amountInput.validity.badInput || (raw && !Number.isFinite(Number(raw)))) throw new FormInvalid([{ field: "amount", msg: ct("cy.need_number") }]);
      const level = f.querySelector("#dc-level").value.trim();
      const body = { type: f.querySelector("#dc-type").value, amount: raw ? Number(raw) : null, level: level || null, note: f.querySelector("#dc-note").value };
      await api(`${base}/appraisals/${quarter}/decision`, { method: "PUT", body });
      await load();
    });
  }

  // -- improvement plan --------------------------------------------------------------------

  function drawPlan() {
    const box = $("#cy-plan");
    box.innerHTML = `${plan ? planBlock(plan) : `<p class="muted">${esc(ct("cy.no_plan", { quarter: planQuarter }))}</p>`}
      <p><button type="button" class="btn" id="cy-plan-edit" aria-expanded="false" aria-controls="cy-plan-form">${esc(ct(plan ? "cy.edit_plan" : "cy.create_plan"))}</button></p>
      <div id="cy-plan-editor"></div>
      ${plan ? `<h3 class="cy-h3">${esc(ct("cy.notes"))}</h3><div id="cy-notes">${progressNotes(plan)}</div>${noteForm("cy-note-form")}` : ""}`;
    $("#cy-plan-edit").addEventListener("click", (ev) => {
      const open = ev.currentTarget.getAttribute("aria-expanded") === "true";
      ev.currentTarget.setAttribute("aria-expanded", String(!open));
      if (open) $("#cy-plan-editor").innerHTML = "";
      else planEditor();
    });
    const notes = $("#cy-note-form");
    if (notes) bindForm(notes, async (f) => {
      const text = f.querySelector("textarea").value;
      if (!text.trim()) throw new FormInvalid([{ field: "text", msg: ct("cy.required") }]);
      await api(`${base}/plans/${planQuarter}/notes`, { method: "POST", body: { text } });
      plan = await api(`${base}/plans/${planQuarter}`);
      drawPlan();
      $("#cy-note-form textarea").focus();
    });
  }

  function goalRow(i, g) {
    const kpis = gradedKpis();
    const kpi = g?.kpi || kpis[0];
    const unit = (k) => (RATIO.has(k) ? ct("cy.f.percent") : "");
    return `<li class="cy-goal"><fieldset class="cy-goal-set" data-field="goals[${i}]"><legend>${esc(ct("cy.goal_n", { n: i + 1 }))}</legend><div class="form-grid">
      ${field(`gl-kpi-${i}`, ct("cy.f.kpi"), `<select id="gl-kpi-${i}" data-field="goals[${i}].kpi" data-goal="kpi">${kpis.map((k) => `<option value="${k}" ${k === kpi ? "selected" : ""}>${esc(kpiName(k))}</option>`).join("")}</select>`)}
      ${field(`gl-target-${i}`, ct("cy.f.target"), `<input type="number" step="any" min="0" id="gl-target-${i}" data-field="goals[${i}].target" data-goal="target" required aria-describedby="gl-target-${i}-hint" value="${esc(toShown(kpi, g?.target))}">`, unit(kpi))}
      ${field(`gl-due-${i}`, ct("cy.f.due"), `<input type="date" id="gl-due-${i}" data-field="goals[${i}].due" data-goal="due" required value="${esc(g?.due || quarterEnd(planQuarter))}">`)}
      ${field(`gl-base-${i}`, ct("cy.f.baseline"), `<input type="number" step="any" id="gl-base-${i}" data-field="goals[${i}].baseline" data-goal="baseline" aria-describedby="gl-base-${i}-hint" value="${esc(toShown(kpi, g?.baseline))}">`, unit(kpi))}
      </div><button type="button" class="btn btn-small" data-remove-goal aria-label="${esc(ct("cy.remove_goal", { n: i + 1 }))}">${esc(ct("cy.f.remove"))}</button></fieldset></li>`;
  }

  function readGoals(form) {
    return [...form.querySelectorAll(".cy-goal")].map((li) => {
      const v = (name) => li.querySelector(`[data-goal=${name}]`).value;
      return { kpi: v("kpi"), target: v("target"), due: v("due"), baseline: v("baseline") };
    });
  }

  function planEditor() {
    const host = $("#cy-plan-editor");
    const statuses = plan ? [plan.status, ...PLAN_NEXT[plan.status]] : ["draft", "open"];
    const goals = plan ? plan.goals : [];
    host.innerHTML = `<form class="cy-form" id="cy-plan-form" novalidate>
      <fieldset class="cy-list" data-field="goals"><legend>${esc(ct("cy.goals"))}</legend>
        <ol class="plain-list" id="cy-goal-list">${goals.map((g, i) => goalRow(i, g)).join("")}</ol>
        <button type="button" class="btn btn-small" id="cy-add-goal">${esc(ct("cy.add_goal"))}</button></fieldset>
      <div class="form-grid">${field("pl-status", ct("cy.f.status"), `<select id="pl-status" data-field="status">${statuses.map((s) => `<option value="${s}" ${s === (plan?.status || "open") ? "selected" : ""}>${esc(t(`plan.${s}`))}</option>`).join("")}</select>`)}</div>
      ${field("pl-notes", ct("cy.f.plan_notes"), `<textarea id="pl-notes" data-field="notes" rows="3" maxlength="20000">${esc(plan?.notes || "")}</textarea>`)}
      <p class="form-error" role="alert"></p>
      <div class="cy-buttons"><button type="submit" class="btn btn-primary">${esc(ct("cy.save_plan"))}</button></div></form>`;
    const form = $("#cy-plan-form");
    const list = $("#cy-goal-list");
    const redraw = (values, focusIndex) => {
      list.innerHTML = values.map((g, i) => goalRow(i, g)).join("");
      const el = focusIndex === null ? $("#cy-add-goal") : list.children[focusIndex]?.querySelector("select");
      if (el) el.focus();
    };
    // Values as typed, back in the API's units, so a redraw shows them again unchanged.
    const asTyped = () => readGoals(form).map((g) => ({ ...g, target: fromShown(g.kpi, g.target), baseline: fromShown(g.kpi, g.baseline) }));
    $("#cy-add-goal").addEventListener("click", () => {
      const values = asTyped();
      values.push({ kpi: gradedKpis().find((k) => !values.some((g) => g.kpi === k)) || gradedKpis()[0] });
      redraw(values, values.length - 1);
    });
    list.addEventListener("click", (ev) => {
      if (!ev.target.closest("[data-remove-goal]")) return;
      const index = [...list.children].indexOf(ev.target.closest("li"));
      const values = asTyped();
      values.splice(index, 1);
      redraw(values, values.length ? Math.min(index, values.length - 1) : null);
    });
    list.addEventListener("change", (ev) => {
      // The unit hint follows the KPI (ratios are entered in percent).
      if (ev.target.dataset.goal !== "kpi") return;
      const li = ev.target.closest("li");
      for (const hint of li.querySelectorAll(".hint")) hint.textContent = RATIO.has(ev.target.value) ? ct("cy.f.percent") : "";
    });
    bindForm(form, async (f) => {
      const errors = [];
      const goals = readGoals(f).map((g, i) => {
        const ratio = RATIO.has(g.kpi);
        const num = (raw, name, required) => {
          if (!raw.trim()) {
            if (required) errors.push({ field: `goals[${i}].${name}`, msg: ct("cy.required") });
            return null;
          }
          const n = Number(raw);
          if (!Number.isFinite(n)) errors.push({ field: `goals[${i}].${name}`, msg: ct("cy.need_number") });
          else if (ratio && (n < 0 || n > 100)) errors.push({ field: `goals[${i}].${name}`, msg: ct("cy.need_percent") });
          return ratio ? n / 100 : n;
        };
        const target = num(g.target, "target", true);
        const baseline = num(g.baseline, "baseline", false);
        if (!g.due) errors.push({ field: `goals[${i}].due`, msg: ct("cy.required") });
        return { kpi: g.kpi, target, due: g.due, ...(baseline === null ? {} : { baseline }) };
      });
      if (errors.length) throw new FormInvalid(errors);
      const body = { goals, notes: f.querySelector("#pl-notes").value, status: f.querySelector("#pl-status").value };
      plan = await api(`${base}/plans/${planQuarter}`, { method: "PUT", body });
      drawPlan();
      $("#cy-plan-edit").focus();
    });
    if (!goals.length) $("#cy-add-goal").click();
    else list.querySelector("select")?.focus();
  }

  load();
  return () => {
    stopped = true;
  };
}

function fromShown(kpi, raw) {
  if (raw === "" || raw === null || raw === undefined) return null;
  const n = Number(raw);
  if (!Number.isFinite(n)) return null;
  return RATIO.has(kpi) ? n / 100 : n;
}
