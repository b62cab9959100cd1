// "My page" of a specialist (#/me/{quarter}): their appraisals (provisional marked), the chosen
// quarter's appraisal with acknowledgement and comment, its feedback meetings, the following
// quarter's improvement plan with progress notes, and their KPIs, trends and explain view.
// Only the specialist's own routes are called (anything else would answer 403).
import { ApiError, api, qs } from "../api.js";
import { esc, fmtValue, gradeChip, kpiName, quarterOf } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { errorBox, teamName } from "./common.js";
import {
  FormInvalid,
  bindForm,
  decisionText,
  field,
  fmtWhen,
  isQuarter,
  meetingItem,
  nextQuarter,
  noteForm,
  planBlock,
  progressNotes,
  reviewQuarter,
  shiftQuarter,
  failureText,
  problemOf,
  stateBadge,
  suggestedActions,
} from "./cycle_common.js";
import { ct } from "./cycle_i18n.js";
import { renderSpecialist } from "./specialist.js";

const enc = encodeURIComponent;

// #/me and #/me/{quarter}: the signed-in specialist's own page.
export function renderMyPage(main, args, params) {
  return page(main, state.config.specialist_id, args[0], params);
}

// #/specialist/{id} for a specialist: their own page, or the server's not-found for anyone else.
export function renderMyPageFor(main, args, params) {
  return page(main, args[0] || state.config.specialist_id, params.get("quarter"), params);
}

function page(main, id, wanted, params) {
  const today = state.config.today;
  const quarter = isQuarter(wanted) ? wanted : reviewQuarter(today);
  const planQuarter = nextQuarter(quarter);
  const current = quarterOf(today);
  const listed = [0, -1, -2, -3].map((n) => shiftQuarter(current, n));
  if (!listed.includes(quarter)) listed.push(quarter);
  const base = `/v1/specialists/${enc(id)}`;
  let cleanup = null;
  let stopped = false;
  let aps = {};
  let meetings = [];
  let plan = null;
  let entry = {};

  main.innerHTML = `<div class="page-head"><div><h1 id="me-title">${esc(ct("me.title"))}</h1><div class="sub" id="me-sub"></div></div></div>
    <div id="me-body"><p class="muted">${esc(t("loading"))}</p></div>`;
  const $ = (s) => main.querySelector(s);

  async function load() {
    let answers;
    try {
      answers = await Promise.all([
        Promise.all(listed.map((q) => api(`${base}/appraisals/${q}`))),
        api(`${base}/meetings${qs({ quarter })}`),
        api(`${base}/plans/${planQuarter}`).catch((err) => {
          if (err instanceof ApiError && err.status === 404) return null;
          throw err;
        }),
        api(base),
      ]);
    } catch (err) {
      $("#me-body").innerHTML = err instanceof ApiError && err.status === 404
        ? `<div class="panel empty" id="me-notfound" role="alert">${esc(ct("me.notfound"))}</div>`
        : errorBox(err);
      return false;
    }
    if (stopped) return false;
    aps = Object.fromEntries(answers[0].map((a) => [a.quarter, a]));
    meetings = answers[1].meetings;
    plan = answers[2];
    entry = answers[3];
    return true;
  }

  function layout() {
    const ap = aps[quarter];
    $("#me-sub").textContent = ct("me.sub", { id: `${ap.name || id} · ${id}`, team: ap.team_id ? entry.team_name || teamName(ap.team_id) : t("spec.noteam") });
    $("#me-body").innerHTML = `
      <section class="panel" aria-labelledby="me-list-h"><h2 id="me-list-h">${esc(ct("me.appraisals"))}</h2><div id="me-list"></div></section>
      <div class="two-col cy-cols">
        <section class="panel" aria-labelledby="me-ap-h"><h2 id="me-ap-h">${esc(ct("me.appraisal", { quarter }))}</h2><div id="me-ap"></div></section>
        <div><section class="panel" aria-labelledby="me-mt-h"><h2 id="me-mt-h">${esc(ct("cy.meetings", { quarter }))}</h2><div id="me-meetings"></div></section>
          <section class="panel" aria-labelledby="me-plan-h"><h2 id="me-plan-h">${esc(ct("cy.plan", { quarter: planQuarter }))}</h2><div id="me-plan"></div></section></div>
      </div>
      <section class="cy-kpis" aria-labelledby="me-kpis-h"><h2 id="me-kpis-h">${esc(ct("me.kpis"))}</h2><div id="me-kpis"></div></section>`;
    drawList();
    drawAppraisal();
    drawMeetings();
    drawPlan();
    cleanup = renderSpecialist($("#me-kpis"), [id], params, { mine: true });
  }

  function drawList() {
    const rows = listed.filter((q) => aps[q]).sort().reverse();
    $("#me-list").innerHTML = `<div class="table-wrap cy-table-wrap"><table class="grid" id="me-appraisals"><caption class="sr-only">${esc(ct("me.appraisals"))}</caption><thead><tr>
      <th scope="col">${esc(ct("me.col.quarter"))}</th><th scope="col">${esc(ct("cy.col.overall"))}</th><th scope="col">${esc(ct("me.col.state"))}</th>
      <th scope="col">${esc(ct("cy.col.meeting"))}</th><th scope="col">${esc(ct("cy.col.ack"))}</th></tr></thead><tbody>
      ${rows.map((q) => {
        const a = aps[q];
        return `<tr data-quarter="${q}" ${q === quarter ? 'class="cy-selected"' : ""}>
          <th scope="row"><a href="#/me/${q}" ${q === quarter ? 'aria-current="page"' : ""} aria-label="${esc(ct("me.view", { quarter: q }))}">${q}</a></th>
          <td>${gradeChip(a.overall_grade)}</td><td data-col="state">${stateBadge(a)}</td>
          <td><span class="chip cy-st cy-st-${esc(a.meeting_status)}">${esc(ct(`cy.meeting.${a.meeting_status}`))}</span></td>
          <td>${a.acknowledged_at ? esc(fmtWhen(a.acknowledged_at)) : `<span class="muted">—</span>`}</td></tr>`;
      }).join("")}</tbody></table></div>`;
  }

  function drawAppraisal() {
    const ap = aps[quarter];
    const sug = suggestedActions(ap.incentive);
    const final = ap.finalized;
    $("#me-ap").innerHTML = `<p class="cy-line">${gradeChip(ap.overall_grade)} ${stateBadge(ap)}
        ${final ? `<span class="muted">${esc(ct("cy.finalised_by", { by: ap.finalized_by, time: fmtWhen(ap.finalized_at) }))}</span>` : ""}</p>
      ${ap.provisional ? `<p class="notice">${esc(ct("cy.provisional_hint"))}</p>` : ""}
      <ul class="plain-list cy-kpi-grades">${Object.entries(ap.kpis || {}).map(([k, v]) => `<li data-kpi="${esc(k)}"><span>${esc(kpiName(k))}</span> <span class="num">${esc(fmtValue(k, v?.value))}</span> ${gradeChip(v?.grade)}</li>`).join("")}</ul>
      <p>${esc(ct("cy.suggested"))}: <strong>${esc(sug.map((s) => s.label).join(", ") || ct("cy.none"))}</strong></p>
      ${ap.decision ? `<p id="me-decision">${esc(ct("me.decision"))}: <strong>${esc(decisionText(ap.decision))}</strong></p>` : ""}
      ${final ? `<div class="cy-ack-box" id="me-ack-box">${ap.acknowledged_at
          ? `<p id="me-acked" data-acked="yes">${esc(ct("me.acked", { time: fmtWhen(ap.acknowledged_at) }))}</p>`
          : `<form id="me-ack-form" novalidate><button type="submit" class="btn btn-primary" id="me-ack">${esc(ct("me.ack"))}</button><p class="form-error" role="alert"></p></form>`}</div>
        <form class="cy-form" id="me-comment-form" novalidate>
          ${field("me-comment", ct("me.comment"), `<textarea id="me-comment" data-field="text" rows="4" maxlength="20000" aria-describedby="me-comment-hint">${esc(ap.comment?.text || "")}</textarea>`, ct("me.comment_hint"))}
          <p class="form-error" role="alert"></p>
          <div class="cy-buttons"><button type="submit" class="btn">${esc(ct("me.comment_save"))}</button>
            <span class="muted" id="me-comment-saved" role="status">${ap.comment ? esc(ct("me.comment_saved", { time: fmtWhen(ap.comment.updated_at) })) : ""}</span></div></form>`
        : `<p class="notice" id="me-ack-wait">${esc(ct("me.ack_wait"))}</p>`}`;
    const ack = $("#me-ack-form");
    if (ack) bindForm(ack, async () => {
      await api(`${base}/appraisals/${quarter}/acknowledge`, { method: "POST" });
      aps[quarter] = await api(`${base}/appraisals/${quarter}`);
      drawAppraisal();
      drawList();
      $("#me-acked")?.setAttribute("tabindex", "-1");
      $("#me-acked")?.focus();
    });
    const comment = $("#me-comment-form");
    if (comment) bindForm(comment, async (f) => {
      const text = f.querySelector("textarea").value;
      if (!text.trim()) throw new FormInvalid([{ field: "text", msg: ct("cy.required") }]);
      const r = await api(`${base}/appraisals/${quarter}/comment`, { method: "PUT", body: { text } });
      aps[quarter] = { ...aps[quarter], comment: r.comment };
      $("#me-comment-saved").textContent = ct("me.comment_saved", { time: fmtWhen(r.comment.updated_at) });
    });
  }

  function drawMeetings() {
    const button = (m) => (m.status === "held" && !m.acknowledged_at
      ? `<button type="button" class="btn btn-small btn-primary" data-ack-meeting="${m.id}">${esc(ct("me.meeting_ack"))}</button>` : "");
    $("#me-meetings").innerHTML = `${meetings.length
      ? `<ul class="alert-list cy-meetings">${meetings.map((m) => meetingItem(m, button(m), { mine: true })).join("")}</ul>`
      : `<p class="muted">${esc(ct("cy.no_meeting"))}</p>`}<p class="form-error" id="me-meeting-error" role="alert"></p>`;
  }

  // On this render's own element: #main outlives the views, so listeners there would pile up.
  $("#me-body").addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-ack-meeting]");
    if (!b) return;
    b.disabled = true;
    try {
      await api(`${base}/meetings/${enc(b.dataset.ackMeeting)}/acknowledge`, { method: "POST" });
      meetings = (await api(`${base}/meetings${qs({ quarter })}`)).meetings;
      drawMeetings();
      $(`[data-meeting="${CSS.escape(b.dataset.ackMeeting)}"] .cy-ack`)?.setAttribute("tabindex", "-1");
      $(`[data-meeting="${CSS.escape(b.dataset.ackMeeting)}"] .cy-ack`)?.focus();
    } catch (err) {
      b.disabled = false;
      $("#me-meeting-error").textContent = failureText(problemOf(err));
    }
  });

  function drawPlan() {
    $("#me-plan").innerHTML = plan
      ? `${planBlock(plan)}<h3 class="cy-h3">${esc(ct("cy.notes"))}</h3><div id="me-notes">${progressNotes(plan)}</div>${noteForm("me-note-form")}`
      : `<p class="muted">${esc(ct("cy.no_plan", { quarter: planQuarter }))}</p>`;
    const form = $("#me-note-form");
    if (form) bindForm(form, async (f) => {
      const text = f.querySelector("textarea").value;
      if (!text.trim()) throw new FormInvalid([{ field: "text", msg: ct("cy.required") }]);
      await api(`${base}/plans/${planQuarter}/notes`, { method: "POST", body: { text } });
      plan = await api(`${base}/plans/${planQuarter}`);
      drawPlan();
      $("#me-note-form textarea").focus();
    });
  }

  load().then((ok) => {
    if (ok && !stopped) layout();
  });
  return () => {
    stopped = true;
    if (cleanup) cleanup();
  };
}
