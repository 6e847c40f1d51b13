/**
 * Views of the shared keyring's elastic keys for the consoles of sm-kms and jose-ja: the
 * list's columns and filters, a key's details and its versions, and the "try it" forms.
 * Both services show the keyring's one `ElasticKey` shape; only their API paths differ.
 */
import { html, type Fragment, type Html } from "./html.ts";
import { details } from "./layout.ts";
import { apiForm, type Field } from "./form.ts";
import { table, type Column } from "./table.ts";
import { PURPOSES, STATUSES } from "../../schemas/keyring.ts";
import type { ElasticKey } from "../keyring/index.ts";

const day = (iso: string | null) => (iso ? iso.slice(0, 10) : "—");
export const keyStatus = (s: string) => html`<span class="status-${s}">${s.replace("_", " ")}</span>`;
const pick = <T extends string>(all: readonly T[], x: string | null): T | undefined => all.find((a) => a === x);
const TAG = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** The list filters of a query, as the keyring's list takes them (invalid values are dropped). */
export function keyFilters(query: URLSearchParams) {
  const tag = query.get("tag")?.trim().toLowerCase();
  return { purpose: pick(PURPOSES, query.get("purpose")), status: pick(STATUSES, query.get("status")), tag: tag && TAG.test(tag) ? tag : undefined };
}

export const keyFilterFields: Field[] = [
  { name: "purpose", label: "Purpose", type: "select", options: [{ value: "", label: "any" }, ...PURPOSES] },
  { name: "status", label: "Status", type: "select", options: [{ value: "", label: "any" }, ...STATUSES.map((s) => ({ value: s, label: s.replace("_", " ") }))] },
  { name: "tag", label: "Tag", maxlength: 32 },
];

export const keyColumns: Column<ElasticKey>[] = [
  { key: "name", label: "Name", cell: (k) => html`<a href="/browser/keys/${k.id}">${k.name}</a>`, sort: (k) => k.name.toLowerCase() },
  { key: "algorithm", label: "Algorithm", cell: (k) => k.algorithm, sort: (k) => k.algorithm },
  { key: "purpose", label: "Purpose", cell: (k) => k.purpose, sort: (k) => k.purpose },
  { key: "status", label: "Status", cell: (k) => keyStatus(k.status), sort: (k) => k.status },
  { key: "version", label: "Version", cell: (k) => k.current_version, sort: (k) => k.current_version },
  { key: "rotation", label: "Next rotation", cell: (k) => day(k.next_rotation_at), sort: (k) => k.next_rotation_at ?? "~" },
  { key: "tags", label: "Tags", cell: (k) => k.tags.join(", ") },
];

export function keyDetails(k: ElasticKey, extra: [string, Fragment][] = []): Html {
  return details([
    ["Status", keyStatus(k.status)],
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
    ...extra,
  ]);
}

export function versionsTable(k: ElasticKey, path: string, query: URLSearchParams): Html {
  return table({
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
  });
}

/** The fields of a new key. */
export const createKeyFields = (algorithms: readonly string[]): Field[] => [
  { name: "name", label: "Name", required: true, maxlength: 64, hint: "Letters, digits, . _ -" },
  { name: "algorithm", label: "Algorithm", type: "select", options: algorithms, value: "A256GCM" },
  { name: "description", label: "Description", maxlength: 512 },
  { name: "rotation_period_days", label: "Rotate every (days)", type: "number", min: 1, max: 3650 },
  { name: "tags", label: "Tags", type: "list", placeholder: "payments, pii" },
];

/** "Try it" forms: one operation each, behind the scope its route needs. */
export const tryForms = {
  encrypt: (url: string, extra: Field[] = []) =>
    apiForm({ id: "encrypt", legend: "Encrypt", action: `${url}/encrypt`, method: "POST", submit: "Encrypt", then: "stay", result: { field: "jwe", label: "JWE" }, fields: [{ name: "plaintext", label: "Plaintext", type: "textarea", required: true, encode: "b64u" }, ...extra] }),
  decrypt: (url: string, extra: Field[] = []) =>
    apiForm({ id: "decrypt", legend: "Decrypt", action: `${url}/decrypt`, method: "POST", submit: "Decrypt", then: "stay", result: { field: "plaintext", decode: "b64u", label: "Plaintext" }, fields: [{ name: "jwe", label: "JWE (compact)", type: "textarea", required: true }, ...extra] }),
  sign: (url: string) =>
    apiForm({ id: "sign", legend: "Sign", action: `${url}/sign`, method: "POST", submit: "Sign", then: "stay", result: { field: "jws", label: "JWS" }, fields: [{ name: "payload", label: "Payload", type: "textarea", required: true, encode: "b64u" }] }),
  verify: (url: string) =>
    apiForm({ id: "verify", legend: "Verify", action: `${url}/verify`, method: "POST", submit: "Verify", then: "stay", result: { field: "kid", label: "Valid, signed by" }, fields: [{ name: "jws", label: "JWS (compact)", type: "textarea", required: true }] }),
};

/** The try-it panel: the forms open to the user, or a note naming the scope that opens them. */
export function tryPanel(forms: Html[], scope: string): Html {
  if (forms.length === 0) return html`<p class="note" role="note">No operation of this key is open to you (it needs the key enabled and the <code>${scope}</code> scope).</p>`;
  return html`<div class="grid">${forms}</div>`;
}

/** Rotate, disable or enable, and cancel a pending deletion: the same routes on both services. */
export function keyActions(k: ElasticKey, url: string, restored: string): Html[] {
  const out = [apiForm({ id: "rotate", action: `${url}/rotate`, method: "POST", submit: "Rotate now", inline: true, flash: "Rotated: version {current_version} is current." })];
  if (k.status === "enabled") out.push(apiForm({ id: "disable", action: `${url}/disable`, method: "POST", submit: "Disable", inline: true, confirm: `Disable ${k.name}? Nothing can use it until it is enabled again.`, flash: "Disabled." }));
  if (k.status === "disabled") out.push(apiForm({ id: "enable", action: `${url}/enable`, method: "POST", submit: "Enable", inline: true, flash: "Enabled." }));
  if (k.status === "pending_deletion") out.push(apiForm({ id: "restore", action: `${url}/restore`, method: "POST", submit: "Cancel deletion", inline: true, flash: restored }));
  return out;
}

/** The top of a key's page: its details, its actions and its versions. */
export function keyOverview(k: ElasticKey, actions: Html[], path: string, query: URLSearchParams): Html {
  return html`${keyDetails(k)}
<section aria-labelledby="actions-title"><h2 id="actions-title">Actions</h2><div class="toolbar">${actions}</div></section>
<section aria-labelledby="versions-title"><h2 id="versions-title">Versions</h2>${versionsTable(k, path, query)}</section>`;
}
