// Pieces the admin screens share: the admins-only guard, tabs, form dialogs, field errors.
import { ApiError } from "../api.js";
import { esc } from "../format.js";
import { t } from "../i18n.js";
import { state } from "../state.js";
import { errorMessage } from "./common.js";
import "./admin_i18n.js";

export const isAdmin = () => state.config?.role === "admin";

// What a non-admin sees on an admin route (the menu does not offer it to them).
export function adminsOnly(main) {
  main.innerHTML = `<div class="panel empty" id="admins-only" role="alert">${esc(t("adm.admins_only"))}</div>`;
}

export function tabBar(id, names, current, label) {
  return `<div class="tabs" role="tablist" aria-label="${esc(label)}" id="${id}">${names
    .map((n) => `<button type="button" class="btn" role="tab" id="${id}-${n}" data-tab="${n}" aria-selected="${n === current}">${esc(t(`${id}.${n}`))}</button>`)
    .join("")}</div>`;
}

export function field(id, label, input, hint = "") {
  return `<div class="field"><label for="${id}">${esc(label)}</label>${input}${hint ? `<small class="hint" id="${id}-hint">${esc(hint)}</small>` : ""}</div>`;
}

// `name`: the API field it edits (matched against a 422's loc); `list`: a datalist id.
export function textInput(id, value, { name = "", required = false, readonly = false, maxlength = 200, type = "text", placeholder = "", hint = false, list = "" } = {}) {
  return `<input id="${id}" name="${id}" type="${type}" value="${esc(value ?? "")}" maxlength="${maxlength}" spellcheck="false" autocomplete="off"
    ${name ? `data-field="${esc(name)}"` : ""} ${list ? `list="${list}"` : ""} ${required ? "required" : ""} ${readonly ? "readonly" : ""}
    ${placeholder ? `placeholder="${esc(placeholder)}"` : ""} ${hint ? `aria-describedby="${id}-hint"` : ""}>`;
}

// A 422's errors on the inputs they name (loc's last part = the input's data-field), the rest
// in the dialog's message line; returns the text shown there.
export function showFieldErrors(form, err) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const lines = [];
  const errors = err instanceof ApiError ? err.fieldErrors : [];
  for (const e of errors) {
    const loc = (e.loc || []).map(String);
    const input = loc.length ? form.querySelector(`[data-field="${CSS.escape(loc[loc.length - 1])}"]`) : null;
    if (input) input.setAttribute("aria-invalid", "true");
    lines.push(`${loc.slice(1).join(".") || "body"}: ${e.msg}`);
  }
  const text = lines.length ? lines.join("; ") : errorMessage(err);
  form.querySelector(".form-error").textContent = text;
  return text;
}

// A modal form: `body` is its fields' HTML; `onSubmit(form)` resolves to close it, throws to
// keep it open with the error shown. Focus returns to `opener`.
export function formDialog({ id, title, body, submit, onSubmit, opener, wide = false }) {
  const dlg = document.createElement("dialog");
  dlg.id = id;
  dlg.className = wide ? "dialog-wide" : "";
  dlg.setAttribute("aria-labelledby", `${id}-title`);
  dlg.innerHTML = `<form method="dialog" novalidate><h2 id="${id}-title" class="dialog-title">${esc(title)}</h2>${body}
    <p class="form-error" role="alert"></p>
    <div class="actions"><button type="button" class="btn" data-cancel>${esc(t("cancel"))}</button>
      <button type="submit" class="btn btn-primary">${esc(submit)}</button></div></form>`;
  document.body.appendChild(dlg);
  const form = dlg.querySelector("form");
  const close = () => {
    dlg.close();
    dlg.remove();
    opener?.focus();
  };
  dlg.querySelector("[data-cancel]").addEventListener("click", close);
  dlg.addEventListener("cancel", close);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await onSubmit(form);
      close();
    } catch (err) {
      showFieldErrors(form, err);
    } finally {
      button.disabled = false;
    }
  });
  dlg.showModal();
  return dlg;
}

export const valueOf = (form, id) => form.querySelector(`#${id}`).value.trim();
