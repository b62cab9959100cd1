// Pieces shared by the views: window picker, team picker, error boxes.
import { ApiError } from "../api.js";
import { esc, recentQuarters } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";

export const WINDOWS = ["7d", "30d", "90d", "qtd", "quarter"];

// The window query value from the picker state: a quarter name or one of WINDOWS.
export function windowValue(win, quarter) {
  return win === "quarter" ? quarter : win;
}

export function windowPicker(id, win, quarter) {
  const quarters = recentQuarters(state.config.today);
  return `
    <div class="field"><label for="${id}-window">${esc(t("window.label"))}</label>
      <select id="${id}-window" data-role="window">
        ${WINDOWS.map((w) => `<option value="${w}" ${w === win ? "selected" : ""}>${esc(t(`window.${w}`))}</option>`).join("")}
      </select></div>
    <div class="field" ${win === "quarter" ? "" : "hidden"} data-role="quarter-field"><label for="${id}-quarter">${esc(t("quarter.label"))}</label>
      <select id="${id}-quarter" data-role="quarter">
        ${quarters.map((q) => `<option ${q === quarter ? "selected" : ""}>${q}</option>`).join("")}
      </select></div>`;
}

export function teamPicker(id, team, { allowAll = true } = {}) {
  const opts = state.teams.map((tm) => `<option value="${esc(tm.id)}" ${tm.id === team ? "selected" : ""}>${esc(tm.name)}</option>`);
  return `<div class="field"><label for="${id}-team">${esc(t("team.label"))}</label>
    <select id="${id}-team" data-role="team">
      ${allowAll ? `<option value="">${esc(t("team.all"))}</option>` : ""}${opts.join("")}
    </select></div>`;
}

// A field error's name: the problem's dotted `field` (`aliases.zendesk`), else its `loc` less
// the location (a form's own check).
export const fieldName = (e) => e.field ?? ((e.loc || []).slice(1).join(".") || "$");

export function errorMessage(err) {
  if (err instanceof ApiError) {
    if (err.status === 403) return t("error.forbidden");
    if (err.status === 404) return t("error.notfound");
    // Input errors name each field; any other problem says what went wrong in `detail`.
    const fields = err.fieldErrors.map((e) => `${fieldName(e)}: ${e.msg}`).join("; ");
    return t("error.load", { msg: fields || err.message || err.status });
  }
  return t("error.load", { msg: err.message });
}

export function errorBox(err) {
  return `<div class="error-box" role="alert">${esc(errorMessage(err))}</div>`;
}

// The CSP allows no style attributes: sizes computed at render time travel in data-width and
// data-left and are applied through the CSSOM, which the policy does not restrict.
export function applySizes(root) {
  for (const el of root.querySelectorAll("[data-width]")) el.style.width = el.dataset.width;
  for (const el of root.querySelectorAll("[data-left]")) el.style.left = el.dataset.left;
}

export const teamName = (id) => (id ? state.teams.find((tm) => tm.id === id)?.name || id : t("team.none"));
