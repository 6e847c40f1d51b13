/**
 * sm-kms's console: elastic keys with filters; a key's details, versions and rotation
 * schedule; create, edit, rotate, disable/enable, schedule deletion/restore; and a "try it"
 * panel (encrypt/decrypt or sign/verify) for operators. Reads call KmsService after the API's
 * scopes (kms:admin); every change and operation goes through /browser/api/v1.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { consolePages, type ConsolePage, type Viewer } from "../../../src/ui/console.ts";
import { html, type Html } from "../../../src/ui/html.ts";
import { section } from "../../../src/ui/layout.ts";
import { apiForm, filterForm, type Field } from "../../../src/ui/form.ts";
import { createKeyFields, keyActions, keyColumns, keyFilterFields, keyFilters, keyOverview, tryForms, tryPanel } from "../../../src/ui/keyring.ts";
import { allPages, table } from "../../../src/ui/table.ts";
import { ALGORITHM_NAMES } from "../../../src/keyring/algorithms.ts";
import type { ElasticKey } from "../../../src/keyring/index.ts";
import type { KmsService } from "../domain.ts";

const ADMIN = "kms:admin";
const API = "/browser/api/v1/keys";

function keysPage(kms: KmsService): ConsolePage {
  return {
    path: "/",
    title: "Keys",
    scopes: [ADMIN],
    async render({ viewer, query, path }) {
      const rows = await allPages((page_token) => kms.list(viewer.tenant, { limit: 100, page_token, ...keyFilters(query) }));
      return {
        body: html`
${filterForm({ path, label: "Filter keys", query, fields: keyFilterFields })}
<div id="keys">${table<ElasticKey>({ caption: "Elastic keys", path, query, rows, sort: { key: "name", dir: "asc" }, empty: "No keys match.", columns: keyColumns })}</div>
${section("create-title", "Create a key", apiForm({
  id: "create",
  action: API,
  method: "POST",
  submit: "Create key",
  flash: "Created key {name}.",
  then: "/browser/keys/{id}",
  fields: createKeyFields(ALGORITHM_NAMES),
}))}`,
      };
    },
  };
}

/** The operations of the key's purpose, each behind its own scope. */
function tryIt(k: ElasticKey, viewer: Viewer): Html {
  const url = `${API}/${k.id}`;
  const forms: Html[] = [];
  const usable = k.status === "enabled";
  const context: Field = { name: "context", label: "Encryption context (JSON, optional)", type: "textarea", json: true, placeholder: '{"purpose": "demo"}' };
  if (k.purpose === "encrypt" || k.purpose === "wrap") {
    if (viewer.can("kms:encrypt") && usable) forms.push(tryForms.encrypt(url, [context]));
    if (viewer.can("kms:decrypt")) forms.push(tryForms.decrypt(url, [context]));
  }
  if (k.purpose === "sign") {
    if (viewer.can("kms:sign") && usable) forms.push(tryForms.sign(url));
    if (viewer.can("kms:verify")) forms.push(tryForms.verify(url));
  }
  if (k.purpose === "mac" && viewer.can("kms:mac") && usable)
    forms.push(apiForm({ id: "mac", legend: "MAC", action: `${url}/mac`, method: "POST", submit: "Compute MAC", then: "stay", result: { field: "mac", label: "MAC (base64url)" }, fields: [{ name: "data", label: "Data", type: "textarea", required: true, encode: "b64u" }] }));
  return tryPanel(forms, k.purpose === "sign" ? "kms:sign" : k.purpose === "mac" ? "kms:mac" : "kms:encrypt");
}

function keyPage(kms: KmsService): ConsolePage {
  return {
    path: "/keys/:id",
    title: "Key",
    scopes: [ADMIN],
    async render({ viewer, params, query, path }) {
      const k = await kms.get(viewer.tenant, params.id!);
      const url = `${API}/${k.id}`;
      const actions = keyActions(k, url, "Deletion cancelled; the key is disabled.");
      return {
        title: k.name,
        body: html`
${keyOverview(k, actions, path, query)}
${section("try-title", "Try it", tryIt(k, viewer))}
<div class="grid">
${section("edit-title", "Edit", apiForm({ id: "edit", action: url, method: "PATCH", submit: "Save", flash: "Saved.", fields: [
  { name: "description", label: "Description", maxlength: 512, value: k.description, empty: "null" },
  { name: "rotation_period_days", label: "Rotate every (days)", type: "number", min: 1, max: 3650, value: k.rotation_period_days, empty: "null", hint: "Empty: manual rotation only" },
  { name: "tags", label: "Tags", type: "list", value: k.tags },
] }))}
${
  k.status !== "pending_deletion"
    ? section("delete-title", "Schedule deletion", apiForm({ id: "delete", action: `${url}/schedule-deletion`, method: "POST", submit: "Schedule deletion", confirm: `Schedule ${k.name} for deletion? Data encrypted under it cannot be decrypted once it is deleted.`, flash: "Deletion scheduled for {deletion_date}.", fields: [
        { name: "waiting_period_days", label: "Waiting period (days)", type: "number", min: 7, max: 30, value: 30 },
      ] }))
    : ""
}
</div>
<p><a href="/browser/">All keys</a></p>`,
      };
    },
  };
}

export function kmsPages(ctx: ServiceContext, kms: KmsService) {
  return consolePages(ctx, { title: "Key Management", sections: [{ label: "Keys", href: "/browser/" }], pages: [keysPage(kms), keyPage(kms)] });
}
