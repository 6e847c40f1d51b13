/**
 * Forms that call the service's own `/browser/api/v1` (the script layer, console.js, sends
 * them as JSON with the session's CSRF token and shows the API's validation errors next to
 * the fields they name). Every field has a label; an error is tied to its field with
 * `aria-describedby`. Destructive forms ask for confirmation first.
 *
 * @example
 *   apiForm({ id: "add-pet", action: "/browser/api/v1/pets", method: "POST", submit: "Add",
 *     fields: [{ name: "name", label: "Name", required: true }], flash: "Pet added", then: "reload" })
 */
import { html, type Fragment, type Html } from "./html.ts";

export interface Field {
  name: string;
  label: string;
  type?: "text" | "number" | "select" | "textarea" | "list" | "checkbox" | "hidden" | "password" | "date";
  required?: boolean;
  options?: readonly (string | { value: string; label: string })[];
  value?: string | number | boolean | readonly string[] | null;
  hint?: string;
  placeholder?: string;
  min?: number;
  max?: number;
  maxlength?: number;
  /** What an empty field sends: nothing (default) or null (clears a value on PATCH). */
  empty?: "omit" | "null";
  /** The text is sent base64url-encoded (UTF-8), as the API's binary fields are. */
  encode?: "b64u";
  /** The field holds JSON (an object or array) sent as is. */
  json?: boolean;
}

export interface ApiFormInput {
  id: string;
  /** The API URL, under /browser/api/v1. */
  action: string;
  /** GET: a read with no fields, shown in place (`then: "stay"`), e.g. revealing a secret. */
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  fields?: readonly Field[];
  submit: string;
  /** Legend shown above the fields. */
  legend?: string;
  /** A destructive action: asks this question first and styles the button as dangerous. */
  confirm?: string;
  /** Flash message after success; `{name}` takes a field of the answer. */
  flash?: string;
  /** After success: reload the page, go to a URL (`{id}` etc. from the answer), or stay and show the answer. */
  then?: "reload" | "stay" | string;
  /** With `then: "stay"`: the answer's field to show in the form's output, optionally decoded. */
  result?: { field: string; decode?: "b64u"; label: string };
  /** Renders the form's submit button only (a one-button action like Rotate). */
  inline?: boolean;
}

const id = (form: string, name: string) => `${form}-${name}`;

function control(form: string, f: Field): Html {
  const fid = id(form, f.name);
  const err = `${fid}-error`;
  const hint = f.hint ? `${fid}-hint` : "";
  const describedBy = [hint, err].filter(Boolean).join(" ");
  const common = html`id="${fid}" name="${f.name}" aria-describedby="${describedBy}"${f.required ? html` required` : ""}${f.empty === "null" ? html` data-empty="null"` : ""}${
    f.encode ? html` data-encode="${f.encode}"` : ""
  }${f.json ? html` data-json="1"` : ""}`;
  const val = f.value === null || f.value === undefined ? "" : Array.isArray(f.value) ? f.value.join(", ") : String(f.value);
  let input: Html;
  switch (f.type ?? "text") {
    case "hidden":
      return html`<input type="hidden" name="${f.name}" value="${val}"${f.json ? html` data-json="1"` : ""}>`;
    case "select":
      input = html`<select ${common}>${(f.options ?? []).map((o) => {
        const [value, label] = typeof o === "string" ? [o, o] : [o.value, o.label];
        return html`<option value="${value}"${value === val ? html` selected` : ""}>${label}</option>`;
      })}</select>`;
      break;
    case "textarea":
      input = html`<textarea ${common} rows="4"${f.maxlength ? html` maxlength="${f.maxlength}"` : ""}${f.placeholder ? html` placeholder="${f.placeholder}"` : ""}>${val}</textarea>`;
      break;
    case "checkbox":
      return html`<div class="field check"><input type="checkbox" ${common} data-type="bool"${f.value === true ? html` checked` : ""}> <label for="${fid}">${f.label}</label>
<p class="field-error" id="${err}" data-error-for="${f.name}" hidden></p></div>`;
    case "number":
      input = html`<input type="number" inputmode="numeric" ${common} data-type="number" value="${val}"${f.min !== undefined ? html` min="${f.min}"` : ""}${f.max !== undefined ? html` max="${f.max}"` : ""}>`;
      break;
    case "list":
      input = html`<input type="text" ${common} data-type="list" value="${val}" autocomplete="off"${f.placeholder ? html` placeholder="${f.placeholder}"` : ""}>`;
      break;
    default:
      input = html`<input type="${f.type ?? "text"}" ${common} value="${val}" autocomplete="off"${f.maxlength ? html` maxlength="${f.maxlength}"` : ""}${
        f.placeholder ? html` placeholder="${f.placeholder}"` : ""
      }>`;
  }
  return html`<div class="field"><label for="${fid}">${f.label}${f.required ? html` <span class="req" aria-hidden="true">*</span>` : ""}</label>
${input}
${f.hint ? html`<p class="hint" id="${hint}">${f.hint}</p>` : ""}
<p class="field-error" id="${err}" data-error-for="${f.name}" hidden></p></div>`;
}

export function apiForm(f: ApiFormInput): Html {
  const attrs = html`id="${f.id}" class="api-form${f.inline ? " inline" : ""}" data-api="${f.action}" data-method="${f.method}"${f.confirm ? html` data-confirm="${f.confirm}"` : ""}${
    f.flash ? html` data-flash="${f.flash}"` : ""
  } data-then="${f.then ?? "reload"}"${f.result ? html` data-result="${f.result.field}"${f.result.decode ? html` data-decode="${f.result.decode}"` : ""}` : ""} novalidate`;
  const body: Fragment = [
    (f.fields ?? []).map((x) => control(f.id, x)),
    html`<p class="form-error" data-form-error role="alert" hidden></p>`,
    html`<div class="actions"><button type="submit"${f.confirm ? html` class="danger"` : ""}>${f.submit}</button></div>`,
    f.result ? html`<div class="result"><label for="${f.id}-output">${f.result.label}</label><output id="${f.id}-output" for="${f.id}" data-output aria-live="polite"></output></div>` : "",
  ];
  if (f.inline) return html`<form ${attrs}>${body}</form>`;
  return html`<form ${attrs}><fieldset>${f.legend ? html`<legend>${f.legend}</legend>` : ""}${body}</fieldset></form>`;
}

/** A GET form of filters for a table (plain HTML: the page reloads with the query). */
export function filterForm(p: { path: string; label: string; fields: readonly Field[]; query: URLSearchParams }): Html {
  return html`<form class="filters" method="get" action="${p.path}" aria-label="${p.label}">
${p.fields.map((f) => control("filter", { ...f, value: p.query.get(f.name) ?? (f.value as string | undefined) ?? "" }))}
<div class="actions"><button type="submit">Apply</button> <a href="${p.path}">Reset</a></div>
</form>`;
}
