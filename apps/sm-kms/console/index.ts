/**
 * sm-kms's console: elastic keys with filters; a key's details, versions and rotation
 * schedule; create, edit, rotate, disable/enable, schedule deletion/restore; and a "try it"
 * panel (encrypt/decrypt or sign/verify) for operators. Reads call KmsService after the API's
 * scopes (kms:admin); every change and operation goes through /browser/api/v1.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { consolePages, type ConsolePage, type Viewer } from "../../../src/ui/console.ts";
import { html, type Html } from "../../../src/ui/html.ts";
import { details, section } from "../../../src/ui/layout.ts";
import { apiForm, filterForm } from "../../../src/ui/form.ts";
import { allPages, table } from "../../../src/ui/table.ts";
import { ALGORITHM_NAMES } from "../../../src/keyring/algorithms.ts";
import { PURPOSES, STATUSES } from "../../../schemas/sm-kms.ts";
import type { ElasticKey } from "../../../src/keyring/index.ts";
import type { KmsService } from "../domain.ts";

const ADMIN = "kms:admin";
const API = "/browser/api/v1/keys";
const pick = <T extends string>(all: readonly T[], x: string | null): T | undefined => all.find((a) => a === x);
const status = (s: string) => html`<span class="status-${s}">${s.replace("_", " ")}</span>`;
const day = (iso: string | null) => (iso ? iso.slice(0, 10) : "—");

function keysPage(kms: KmsService): ConsolePage {
  return {
    path: "/",
    title: "Keys",
    scopes: [ADMIN],
    async render({ viewer, query, path }) {
      const purpose = pick(PURPOSES, query.get("purpose"));
      const st = pick(STATUSES, query.get("status"));
      const tag = query.get("tag")?.trim().toLowerCase();
      const rows = await allPages((page_token) => kms.list(viewer.tenant, { limit: 100, page_token, purpose, status: st, tag: tag && /^[a-z0-9][a-z0-9-]{0,31}$/.test(tag) ? tag : undefined }));
      return {
        body: html`
${filterForm({ path, label: "Filter keys", query, fields: [
  { name: "purpose", label: "Purpose", type: "select", options: [{ value: "", label: "any" }, ...PURPOSES] },
  { name: "status", label: "Status", type: "select", options: [{ value: "", label: "any" }, ...STATUSES.map((s) => ({ value: s, label: s.replace("_", " ") }))] },
  { name: "tag", label: "Tag", maxlength: 32 },
] })}
<div id="keys">${table<ElasticKey>({
          caption: "Elastic keys",
          path,
          query,
          rows,
          sort: { key: "name", dir: "asc" },
          empty: "No keys match.",
          columns: [
            { key: "name", label: "Name", cell: (k) => html`<a href="/browser/keys/${k.id}">${k.name}</a>`, sort: (k) => k.name.toLowerCase() },
            { key: "algorithm", label: "Algorithm", cell: (k) => k.algorithm, sort: (k) => k.algorithm },
            { key: "purpose", label: "Purpose", cell: (k) => k.purpose, sort: (k) => k.purpose },
            { key: "status", label: "Status", cell: (k) => status(k.status), sort: (k) => k.status },
            { key: "version", label: "Version", cell: (k) => k.current_version, sort: (k) => k.current_version },
            { key: "rotation", label: "Next rotation", cell: (k) => day(k.next_rotation_at), sort: (k) => k.next_rotation_at ?? "~" },
            { key: "tags", label: "Tags", cell: (k) => k.tags.join(", ") },
          ],
        })}</div>
${section("create-title", "Create a key", apiForm({
  id: "create",
  action: API,
  method: "POST",
  submit: "Create key",
  flash: "Created key {name}.",
  then: "/browser/keys/{id}",
  fields: [
    { name: "name", label: "Name", required: true, maxlength: 64, hint: "Letters, digits, . _ -" },
    { name: "algorithm", label: "Algorithm", type: "select", options: ALGORITHM_NAMES, value: "A256GCM" },
    { name: "description", label: "Description", maxlength: 512 },
    { name: "rotation_period_days", label: "Rotate every (days)", type: "number", min: 1, max: 3650 },
    { name: "tags", label: "Tags", type: "list", placeholder: "payments, pii" },
  ],
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
  const context = { name: "context", label: "Encryption context (JSON, optional)", type: "textarea" as const, json: true, placeholder: '{"purpose": "demo"}' };
  if (k.purpose === "encrypt" || k.purpose === "wrap") {
    if (viewer.can("kms:encrypt") && usable)
      forms.push(apiForm({ id: "encrypt", legend: "Encrypt", action: `${url}/encrypt`, method: "POST", submit: "Encrypt", then: "stay", result: { field: "jwe", label: "JWE" }, fields: [{ name: "plaintext", label: "Plaintext", type: "textarea", required: true, encode: "b64u" }, context] }));
    if (viewer.can("kms:decrypt"))
      forms.push(apiForm({ id: "decrypt", legend: "Decrypt", action: `${url}/decrypt`, method: "POST", submit: "Decrypt", then: "stay", result: { field: "plaintext", decode: "b64u", label: "Plaintext" }, fields: [{ name: "jwe", label: "JWE (compact)", type: "textarea", required: true }, context] }));
  }
  if (k.purpose === "sign") {
    if (viewer.can("kms:sign") && usable)
      forms.push(apiForm({ id: "sign", legend: "Sign", action: `${url}/sign`, method: "POST", submit: "Sign", then: "stay", result: { field: "jws", label: "JWS" }, fields: [{ name: "payload", label: "Payload", type: "textarea", required: true, encode: "b64u" }] }));
    if (viewer.can("kms:verify"))
      forms.push(apiForm({ id: "verify", legend: "Verify", action: `${url}/verify`, method: "POST", submit: "Verify", then: "stay", result: { field: "kid", label: "Valid, signed by" }, fields: [{ name: "jws", label: "JWS (compact)", type: "textarea", required: true }] }));
  }
  if (k.purpose === "mac" && viewer.can("kms:mac") && usable)
    forms.push(apiForm({ id: "mac", legend: "MAC", action: `${url}/mac`, method: "POST", submit: "Compute MAC", then: "stay", result: { field: "mac", label: "MAC (base64url)" }, fields: [{ name: "data", label: "Data", type: "textarea", required: true, encode: "b64u" }] }));
  if (forms.length === 0) return html`<p class="note" role="note">No operation of this key is open to you (it needs the key enabled and a <code>kms:${k.purpose === "sign" ? "sign" : k.purpose === "mac" ? "mac" : "encrypt"}</code> scope).</p>`;
  return html`<div class="grid">${forms}</div>`;
}

function keyPage(kms: KmsService): ConsolePage {
  return {
    path: "/keys/:id",
    title: "Key",
    scopes: [ADMIN],
    async render({ viewer, params, query, path }) {
      const k = await kms.get(viewer.tenant, params.id!);
      const url = `${API}/${k.id}`;
      const actions: Html[] = [apiForm({ id: "rotate", action: `${url}/rotate`, method: "POST", submit: "Rotate now", inline: true, flash: "Rotated: version {current_version} is current." })];
      if (k.status === "enabled") actions.push(apiForm({ id: "disable", action: `${url}/disable`, method: "POST", submit: "Disable", inline: true, confirm: `Disable ${k.name}? Nothing can use it until it is enabled again.`, flash: "Disabled." }));
      if (k.status === "disabled") actions.push(apiForm({ id: "enable", action: `${url}/enable`, method: "POST", submit: "Enable", inline: true, flash: "Enabled." }));
      if (k.status === "pending_deletion") actions.push(apiForm({ id: "restore", action: `${url}/restore`, method: "POST", submit: "Cancel deletion", inline: true, flash: "Deletion cancelled; the key is disabled." }));
      return {
        title: k.name,
        body: html`
${details([
  ["Status", status(k.status)],
  ["Algorithm", k.algorithm],
  ["Purpose", k.purpose],
  ["Description", k.description],
  ["Current version", k.current_version],
  ["Oldest version that decrypts", k.min_decryption_version],
  ["Rotation", k.rotation_period_days ? `every ${k.rotation_period_days} days, next ${day(k.next_rotation_at)}` : "manual"],
  ["Deletion date", k.deletion_date ? day(k.deletion_date) : null],
  ["Tags", k.tags.join(", ") || "none"],
  ["Id", html`<code>${k.id}</code>`],
  ["Created", k.created_at],
])}
${section("actions-title", "Actions", html`<div class="toolbar">${actions}</div>`)}
${section("versions-title", "Versions", table({
  caption: "Material keys",
  path,
  query,
  rows: k.versions ?? [],
  sort: { key: "version", dir: "desc" },
  columns: [
    { key: "version", label: "Version", cell: (m) => m.version, sort: (m) => m.version },
    { key: "kid", label: "kid", cell: (m) => html`<code>${m.kid}</code>` },
    { key: "origin", label: "Origin", cell: (m) => m.origin },
    { key: "created", label: "Created", cell: (m) => m.created_at, sort: (m) => m.created_at },
    { key: "retired", label: "Retired", cell: (m) => m.retired_at ?? "current" },
  ],
}))}
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
