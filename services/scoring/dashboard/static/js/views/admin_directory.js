// Admin: teams and specialists (create, edit, helpdesk aliases), unmapped helpdesk agents and
// the CSV import of specialists (POST /v1/specialists/import, checked before it is applied).
import { ApiError, api, qs } from "../api.js";
import { esc, fmtTime } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { adminsOnly, field, formDialog, isAdmin, tabBar, textInput, valueOf } from "./admin_common.js";
import { errorBox, errorMessage } from "./common.js";

const TABS = ["teams", "specialists", "unmapped", "import"];
export const ALIAS_KINDS = ["zendesk", "freshdesk", "zammad", "chatwoot", "email"];
const required = (name) => new ApiError(422, [{ loc: ["body", name], msg: t("adm.required") }]);
const path = (id) => encodeURIComponent(id);

export function renderDirectory(main, _args, params) {
  if (!isAdmin()) return adminsOnly(main);
  let tab = TABS.includes(params.get("tab")) ? params.get("tab") : "teams";
  let teams = [];
  let people = [];
  const filter = { q: "", team: "" };
  main.innerHTML = `
    <div class="page-head"><div><h1>${esc(t("dir.title"))}</h1><div class="sub">${esc(t("dir.sub"))}</div></div>
      ${tabBar("dir", TABS, tab, t("dir.title"))}</div>
    <section class="panel" role="tabpanel" id="dir-panel" aria-labelledby="dir-${tab}"></section>
    <div class="sr-only" role="status" id="dir-status"></div>`;
  const $ = (s) => main.querySelector(s);
  const panel = $("#dir-panel");
  const say = (text) => ($("#dir-status").textContent = text);

  async function loadDirectory() {
    const [tl, sl] = await Promise.all([api("/v1/teams"), api("/v1/specialists")]);
    teams = tl.teams;
    people = sl.specialists;
    // The other views' team pickers and names follow what was just changed here.
    state.teams = teams;
    for (const s of people) state.names.set(s.id, s.name || s.id);
  }

  async function draw() {
    for (const b of main.querySelectorAll("#dir [data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    panel.setAttribute("aria-labelledby", `dir-${tab}`);
    panel.innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
    try {
      if (tab === "teams" || tab === "specialists") await loadDirectory();
      if (tab === "teams") drawTeams();
      else if (tab === "specialists") drawSpecialists();
      else if (tab === "unmapped") await drawUnmapped();
      else drawImport();
    } catch (err) {
      panel.innerHTML = errorBox(err);
    }
  }

  // -- teams ---------------------------------------------------------------------------
  function drawTeams() {
    const members = new Map();
    for (const s of people) members.set(s.team_id, (members.get(s.team_id) || 0) + 1);
    panel.innerHTML = `<div class="panel-tools"><h2>${esc(t("dir.teams"))} <span class="muted">(${teams.length})</span></h2>
        <button type="button" class="btn btn-primary" id="team-new">${esc(t("dir.team_new"))}</button></div>
      ${teams.length ? `<div class="table-wrap"><table class="grid" id="teams-table"><thead><tr>
        <th scope="col">${esc(t("dir.team"))}</th><th scope="col">${esc(t("dir.supervisor"))}</th>
        <th scope="col">${esc(t("dir.members"))}</th><th scope="col"><span class="sr-only">${esc(t("adm.actions"))}</span></th></tr></thead><tbody>
        ${teams.map((tm) => `<tr data-team="${esc(tm.id)}"><th scope="row">${esc(tm.name)}<span class="spec-id">${esc(tm.id)}</span></th>
          <td>${esc(tm.supervisor || "—")}</td><td class="num">${members.get(tm.id) || 0}</td>
          <td class="row-actions"><button type="button" class="btn btn-small" data-edit-team="${esc(tm.id)}" aria-label="${esc(`${t("adm.edit")}: ${tm.name}`)}">${esc(t("adm.edit"))}</button></td></tr>`).join("")}
        </tbody></table></div>` : `<p class="empty">${esc(t("dir.no_teams"))}</p>`}`;
    panel.querySelector("#team-new").addEventListener("click", (ev) => teamDialog(null, ev.currentTarget));
  }

  function teamDialog(team, opener) {
    const editing = Boolean(team);
    formDialog({
      id: "team-dialog",
      opener,
      title: editing ? t("dir.team_edit", { name: team.name }) : t("dir.team_new"),
      submit: t("adm.save"),
      body: field("team-id", t("dir.id"), textInput("team-id", team?.id, { required: true, readonly: editing, maxlength: 128, hint: !editing, name: "team_id" }), editing ? "" : t("dir.id_hint"))
        + field("team-name", t("dir.name"), textInput("team-name", team?.name, { required: true, name: "name" }))
        + field("team-supervisor", t("dir.supervisor"), textInput("team-supervisor", team?.supervisor, { maxlength: 128, hint: true, name: "supervisor" }), t("dir.supervisor_hint")),
      async onSubmit(form) {
        const id = valueOf(form, "team-id");
        const name = valueOf(form, "team-name");
        if (!id) throw required("team_id");
        if (!name) throw required("name");
        await api(`/v1/teams/${path(id)}`, { method: "PUT", body: { name, supervisor: valueOf(form, "team-supervisor") || null } });
        say(t("dir.saved", { name }));
        await draw();
      },
    });
  }

  // -- specialists ---------------------------------------------------------------------
  function drawSpecialists() {
    const teamOf = (id) => teams.find((tm) => tm.id === id)?.name || id;
    const q = filter.q.toLowerCase();
    const shown = people.filter((s) =>
      (!q || s.id.toLowerCase().includes(q) || (s.name || "").toLowerCase().includes(q)) &&
      (filter.team === "" || (filter.team === "-" ? !s.team_id : s.team_id === filter.team)));
    panel.innerHTML = `<div class="panel-tools"><h2>${esc(t("dir.specialists"))} <span class="muted">(${shown.length} / ${people.length})</span></h2>
        <button type="button" class="btn btn-primary" id="spec-new">${esc(t("dir.spec_new"))}</button></div>
      <form class="toolbar m0 flat" id="spec-tools" role="search">
        <div class="field grow"><label for="spec-q">${esc(t("search.label"))}</label><input id="spec-q" type="search" value="${esc(filter.q)}" placeholder="${esc(t("search.placeholder"))}"></div>
        <div class="field"><label for="spec-team">${esc(t("team.label"))}</label><select id="spec-team">
          <option value="">${esc(t("filter.all"))}</option><option value="-" ${filter.team === "-" ? "selected" : ""}>${esc(t("team.none"))}</option>
          ${teams.map((tm) => `<option value="${esc(tm.id)}" ${tm.id === filter.team ? "selected" : ""}>${esc(tm.name)}</option>`).join("")}</select></div></form>
      ${shown.length ? `<div class="table-wrap"><table class="grid" id="specialists-table"><thead><tr>
        <th scope="col">${esc(t("overview.specialist"))}</th><th scope="col">${esc(t("overview.team"))}</th>
        <th scope="col"><span class="sr-only">${esc(t("adm.actions"))}</span></th></tr></thead><tbody>
        ${shown.map((s) => `<tr data-specialist="${esc(s.id)}"><th scope="row">${esc(s.name || "—")}<span class="spec-id">${esc(s.id)}</span></th>
          <td>${s.team_id ? esc(teamOf(s.team_id)) : `<span class="muted">${esc(t("team.none"))}</span>`}</td>
          <td class="row-actions"><button type="button" class="btn btn-small" data-edit-spec="${esc(s.id)}" aria-label="${esc(`${t("adm.edit")}: ${s.name || s.id}`)}">${esc(t("adm.edit"))}</button></td></tr>`).join("")}
        </tbody></table></div>` : `<p class="empty">${esc(t(people.length ? "overview.empty" : "dir.no_specialists"))}</p>`}`;
    panel.querySelector("#spec-new").addEventListener("click", (ev) => specialistDialog(null, {}, ev.currentTarget));
    const qInput = panel.querySelector("#spec-q");
    qInput.addEventListener("input", () => {
      filter.q = qInput.value;
      const at = qInput.selectionStart;
      drawSpecialists();
      const again = panel.querySelector("#spec-q");
      again.focus();
      again.setSelectionRange(at, at);
    });
    panel.querySelector("#spec-team").addEventListener("change", (ev) => {
      filter.team = ev.target.value;
      drawSpecialists();
      panel.querySelector("#spec-team").focus();
    });
  }

  async function editSpecialist(id, opener) {
    try {
      const found = await api(`/v1/specialists/${path(id)}`);
      specialistDialog(found, {}, opener);
    } catch (err) {
      alert(errorMessage(err));
    }
  }

  // `preset`: values to fill in (a mapping from the unmapped list): {id, name, aliases}.
  function specialistDialog(spec, preset, opener) {
    const editing = Boolean(spec);
    const aliases = { ...(spec?.aliases || {}), ...(preset.aliases || {}) };
    const team = spec?.team_id ?? "";
    formDialog({
      id: "spec-dialog",
      opener,
      wide: true,
      title: editing ? t("dir.spec_edit", { name: spec.name || spec.id }) : t("dir.spec_new"),
      submit: t("adm.save"),
      body: `<div class="form-grid">
        ${field("spec-id", t("dir.id"), textInput("spec-id", spec?.id ?? preset.id, { required: true, readonly: editing, maxlength: 128, hint: !editing, name: "specialist_id" }), editing ? "" : t("dir.id_hint"))}
        ${field("spec-name", t("dir.name"), textInput("spec-name", spec?.name ?? preset.name, { name: "name" }))}
        ${field("spec-team-id", t("overview.team"), `<select id="spec-team-id" data-field="team_id"><option value="">${esc(t("team.none"))}</option>
          ${teams.map((tm) => `<option value="${esc(tm.id)}" ${tm.id === team ? "selected" : ""}>${esc(tm.name)}</option>`).join("")}</select>`)}</div>
        <fieldset class="field bare"><legend class="muted field-legend">${esc(t("dir.aliases"))}</legend>
          <p class="hint">${esc(t("dir.aliases_hint"))}</p><div class="form-grid">
          ${ALIAS_KINDS.map((k) => field(`alias-${k}`, t(`dir.alias.${k}`), textInput(`alias-${k}`, aliases[k], { maxlength: 320, type: k === "email" ? "email" : "text", name: k }))).join("")}</div></fieldset>`,
      async onSubmit(form) {
        const id = valueOf(form, "spec-id");
        if (!id) throw required("specialist_id");
        const body = { name: valueOf(form, "spec-name") || null, team_id: form.querySelector("#spec-team-id").value || null, aliases: {} };
        for (const k of ALIAS_KINDS) {
          const v = valueOf(form, `alias-${k}`);
          if (v) body.aliases[k] = v;
        }
        const saved = await api(`/v1/specialists/${path(id)}`, { method: "PUT", body });
        say(`${t("dir.saved", { name: saved.name || saved.id })} ${saved.notice ? t("dir.alias_notice") : ""}`);
        await draw();
      },
    });
  }

  // -- unmapped helpdesk agents ------------------------------------------------------
  async function drawUnmapped() {
    let data;
    try {
      data = await api("/v1/dashboard/ingest/webhooks/unmapped");
    } catch (err) {
      panel.innerHTML = `<h2>${esc(t("dir.unmapped"))}</h2>${err instanceof ApiError && err.unavailable ? `<p class="notice">${esc(t("dir.unmapped_down"))}</p>` : errorBox(err)}`;
      return;
    }
    const agents = data.agents;
    panel.innerHTML = `<h2>${esc(t("dir.unmapped"))} <span class="muted">(${agents.length})</span></h2><p class="muted">${esc(t("dir.unmapped_sub"))}</p>
      ${agents.length ? `<div class="table-wrap"><table class="grid" id="unmapped-table"><thead><tr>
        <th scope="col">${esc(t("dir.agent"))}</th><th scope="col">${esc(t("dir.vendor"))}</th><th scope="col">${esc(t("dir.counted_as"))}</th>
        <th scope="col">${esc(t("dir.events"))}</th><th scope="col">${esc(t("dir.last_seen"))}</th><th scope="col"><span class="sr-only">${esc(t("adm.actions"))}</span></th></tr></thead><tbody>
        ${agents.map((a, i) => `<tr data-agent="${esc(`${a.vendor}:${a.agent_id}`)}"><th scope="row">${esc(a.name || a.agent_id)}<span class="spec-id">${esc(a.agent_id)}${a.email && a.email !== a.agent_id ? ` · ${esc(a.email)}` : ""}</span></th>
          <td>${esc(a.vendor)}</td><td><code>${esc(a.counted_as)}</code></td><td class="num">${esc(a.events)}</td><td>${esc(fmtTime(a.last_seen_at))}</td>
          <td class="row-actions"><button type="button" class="btn btn-small" data-map="${i}" aria-label="${esc(`${t("dir.map")}: ${a.name || a.agent_id}`)}">${esc(t("dir.map"))}</button></td></tr>`).join("")}
        </tbody></table></div>` : `<p class="empty" id="unmapped-empty">${esc(t("dir.unmapped_none"))}</p>`}`;
    panel.querySelectorAll("[data-map]").forEach((b) => b.addEventListener("click", () => mapDialog(agents[Number(b.dataset.map)], b)));
  }

  // Map an agent: to an existing specialist (its aliases kept, this one added) or a new one.
  function mapDialog(agent, opener) {
    const alias = agent.vendor === "freshdesk" && agent.agent_id.includes("@") ? ["email", agent.agent_id] : [agent.vendor, agent.agent_id];
    formDialog({
      id: "map-dialog",
      opener,
      title: t("dir.map_title", { agent: agent.name || agent.agent_id }),
      submit: t("dir.map"),
      body: `<p class="hint">${esc(t("dir.map_hint", { alias: `${alias[0]}: ${alias[1]}` }))}</p>
        ${field("map-specialist", t("dir.map_to"), `${textInput("map-specialist", "", { required: true, maxlength: 128, hint: true, name: "specialist_id", list: "map-people" })}
          <datalist id="map-people">${people.map((s) => `<option value="${esc(s.id)}">${esc(s.name || "")}</option>`).join("")}</datalist>`, t("dir.map_to_hint"))}`,
      async onSubmit(form) {
        const id = valueOf(form, "map-specialist");
        if (!id) throw required("specialist_id");
        let body = { name: agent.name || null, team_id: null, aliases: { [alias[0]]: alias[1] } };
        try {
          const found = await api(`/v1/specialists/${path(id)}`);
          body = { name: found.name, team_id: found.team_id, aliases: { ...found.aliases, [alias[0]]: alias[1] } };
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 404)) throw err;
        }
        await api(`/v1/specialists/${path(id)}`, { method: "PUT", body });
        say(t("dir.mapped", { agent: agent.name || agent.agent_id, id }));
        await draw();
      },
    });
  }

  // -- CSV import ------------------------------------------------------------------------
  function drawImport() {
    panel.innerHTML = `<h2>${esc(t("dir.import"))}</h2>
      <p class="muted">${esc(t("dir.import_sub"))}</p>
      <pre class="csv-sample" aria-label="${esc(t("dir.import_example"))}">id,name,team_id,aliases.zendesk,aliases.email
li.na,李娜 Li Na,north,3612,li.na@example.com</pre>
      <form class="import-form" id="import-form">
        ${field("import-file", t("dir.import_file"), '<input id="import-file" type="file" accept=".csv,text/csv">')}
        ${field("import-text", t("dir.import_paste"), '<textarea id="import-text" rows="6" spellcheck="false"></textarea>')}
        <div class="actions"><button type="button" class="btn" id="import-check">${esc(t("dir.import_check"))}</button>
          <button type="button" class="btn btn-primary" id="import-run">${esc(t("dir.import_run"))}</button></div></form>
      <div id="import-result" aria-live="polite"></div>`;
    const result = panel.querySelector("#import-result");
    const send = async (dryRun) => {
      const file = panel.querySelector("#import-file").files[0];
      const pasted = panel.querySelector("#import-text").value;
      // A file goes as its bytes: the server, not the browser, says when it is not UTF-8.
      const body = file ? await file.arrayBuffer() : pasted;
      if (!file && !pasted.trim()) {
        result.innerHTML = `<p class="form-error" role="alert">${esc(t("dir.import_nothing"))}</p>`;
        return;
      }
      for (const b of panel.querySelectorAll(".import-form button")) b.disabled = true;
      try {
        const answer = await api(`/v1/specialists/import${qs({ dry_run: dryRun ? "true" : "" })}`, { method: "POST", body, contentType: "text/csv; charset=utf-8" });
        result.innerHTML = importAnswer(answer);
        if (!dryRun) await loadDirectory();
      } catch (err) {
        result.innerHTML = importRefusal(err);
      } finally {
        for (const b of panel.querySelectorAll(".import-form button")) b.disabled = false;
      }
    };
    panel.querySelector("#import-check").addEventListener("click", () => send(true));
    panel.querySelector("#import-run").addEventListener("click", () => send(false));
  }

  for (const b of main.querySelectorAll("#dir [data-tab]")) {
    b.addEventListener("click", () => {
      tab = b.dataset.tab;
      history.replaceState(null, "", `#/directory${tab === "teams" ? "" : `?tab=${tab}`}`);
      draw();
    });
  }
  panel.addEventListener("click", (ev) => {
    const team = ev.target.closest("[data-edit-team]");
    if (team) teamDialog(teams.find((tm) => tm.id === team.dataset.editTeam), team);
    const spec = ev.target.closest("[data-edit-spec]");
    if (spec) editSpecialist(spec.dataset.editSpec, spec);
  });
  panel.addEventListener("submit", (ev) => ev.preventDefault());
  draw();
}

function importAnswer(a) {
  const c = a.counts;
  const head = a.dry_run ? t("dir.import_checked", c) : t("dir.import_done", c);
  return `<div class="${a.dry_run ? "notice" : "success-box"}" role="status" id="import-summary">${esc(head)}</div>
    ${a.notice && !a.dry_run ? `<p class="muted">${esc(t("dir.alias_notice"))}</p>` : ""}
    <div class="table-wrap facts-wrap"><table class="grid" id="import-rows"><thead><tr><th scope="col">${esc(t("dir.row"))}</th><th scope="col">${esc(t("dir.id"))}</th><th scope="col">${esc(t("dir.outcome"))}</th></tr></thead>
    <tbody>${a.rows.map((r) => `<tr data-outcome="${esc(r.outcome)}"><td class="num">${r.row}</td><td>${esc(r.id)}</td><td>${esc(t(`dir.outcome.${r.outcome}`))}</td></tr>`).join("")}</tbody></table></div>`;
}

function importRefusal(err) {
  const errors = err instanceof ApiError ? err.fieldErrors : [];
  if (!errors.length) return errorBox(err);
  return `<div class="error-box" role="alert" id="import-summary">${esc(t("dir.import_refused", { n: errors.length }))}</div>
    <div class="table-wrap facts-wrap"><table class="grid" id="import-errors"><thead><tr><th scope="col">${esc(t("dir.row"))}</th><th scope="col">${esc(t("dir.column"))}</th><th scope="col">${esc(t("dir.problem"))}</th></tr></thead>
    <tbody>${errors.map((e) => {
      const [, row = "", column = ""] = e.loc || [];
      return `<tr><td class="num">${esc(row)}</td><td>${esc(column)}</td><td>${esc(String(e.msg).replace(/^row \d+(, column [^:]+)?: /, ""))}</td></tr>`;
    }).join("")}</tbody></table></div>`;
}
