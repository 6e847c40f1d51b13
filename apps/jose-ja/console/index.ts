/**
 * jose-ja's console: elastic keys (list with filters; detail with versions, public JWK and
 * rotation schedule; generate, rotate, schedule rotation, disable/enable, schedule
 * deletion/restore; try sign/verify and encrypt/decrypt) and the audit log with filters.
 * Reads call JoseService and AuditLog after the API's scopes, and are audited as the API's
 * are; every change goes through /browser/api/v1.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { checked, consolePages, type ConsolePage, type Viewer } from "../../../src/ui/console.ts";
import { html, type Html } from "../../../src/ui/html.ts";
import { section } from "../../../src/ui/layout.ts";
import { apiForm, filterForm } from "../../../src/ui/form.ts";
import { createKeyFields, keyActions, keyColumns, keyFilterFields, keyFilters, keyOverview, tryForms, tryPanel } from "../../../src/ui/keyring.ts";
import { allPages, table } from "../../../src/ui/table.ts";
import { ALGORITHM_NAMES } from "../../../src/keyring/algorithms.ts";
import type { ElasticKey } from "../../../src/keyring/index.ts";
import { AuditQuery } from "../../../schemas/jose-ja.ts";
import type { JoseService } from "../domain.ts";
import type { AuditLog, AuditRow } from "../audit.ts";

const ADMIN = "jose:admin";
const API = "/browser/api/v1/keys";

function keysPage(jose: JoseService, audit: AuditLog): ConsolePage {
  return {
    path: "/",
    title: "Keys",
    scopes: [ADMIN],
    async render({ viewer, query, path }) {
      const rows = await audit.around(viewer.principal, "list", null, (t) => allPages((page_token) => jose.list(t, { limit: 100, page_token, ...keyFilters(query) })));
      return {
        body: html`
${filterForm({ path, label: "Filter keys", query, fields: keyFilterFields })}
<div id="keys">${table<ElasticKey>({ caption: "Elastic keys", path, query, rows, sort: { key: "name", dir: "asc" }, empty: "No keys match.", columns: keyColumns })}</div>
${section("create-title", "Generate a key", apiForm({ id: "create", action: API, method: "POST", submit: "Generate key", flash: "Generated key {name}.", then: "/browser/keys/{id}", fields: createKeyFields(ALGORITHM_NAMES) }))}`,
      };
    },
  };
}

function tryIt(k: ElasticKey, viewer: Viewer): Html {
  const url = `${API}/${k.id}`;
  const forms: Html[] = [];
  const usable = k.status === "enabled";
  if (k.purpose === "encrypt" || k.purpose === "wrap") {
    if (viewer.can("jose:encrypt") && usable) forms.push(tryForms.encrypt(url));
    if (viewer.can("jose:decrypt")) forms.push(tryForms.decrypt(url));
  }
  if (k.purpose === "sign") {
    if (viewer.can("jose:sign") && usable) forms.push(tryForms.sign(url));
    if (viewer.can("jose:verify")) forms.push(tryForms.verify(url));
  }
  return tryPanel(forms, k.purpose === "sign" ? "jose:sign" : "jose:encrypt");
}

function keyPage(jose: JoseService, audit: AuditLog): ConsolePage {
  return {
    path: "/keys/:id",
    title: "Key",
    scopes: [ADMIN],
    async render({ viewer, params, query, path }) {
      const id = params.id!;
      const k = await audit.around(viewer.principal, "get", id, (t) => jose.get(t, id));
      const url = `${API}/${k.id}`;
      const actions = keyActions(k, url, "Deletion cancelled.");
      if (k.status !== "pending_deletion") actions.push(apiForm({ id: "delete", action: url, method: "DELETE", submit: "Schedule deletion", inline: true, confirm: `Schedule ${k.name} for deletion in 30 days? Its tokens stop verifying once it is deleted.`, flash: "Deletion scheduled." }));
      return {
        title: k.name,
        body: html`
${keyOverview(k, actions, path, query)}
${k.public_jwk ? section("jwk-title", "Public JWK (current version)", html`<pre>${JSON.stringify(k.public_jwk, null, 2)}</pre>`) : ""}
${section("try-title", "Try it", tryIt(k, viewer))}
<div class="grid">
${section("rotation-title", "Rotation schedule", apiForm({ id: "rotation", action: `${url}/rotation`, method: "PUT", submit: "Save schedule", flash: "Rotation schedule saved.", fields: [
  { name: "rotation_period_days", label: "Rotate every (days)", type: "number", min: 1, max: 3650, value: k.rotation_period_days, empty: "null", hint: "Empty: manual rotation only" },
] }))}
${section("edit-title", "Edit", apiForm({ id: "edit", action: url, method: "PATCH", submit: "Save", flash: "Saved.", fields: [
  { name: "description", label: "Description", maxlength: 512, value: k.description, empty: "null" },
  { name: "tags", label: "Tags", type: "list", value: k.tags },
] }))}
</div>
<p><a href="/browser/">All keys</a> · <a href="/browser/audit?key=${k.id}">Audit log of this key</a></p>`,
      };
    },
  };
}

function auditPage(audit: AuditLog): ConsolePage {
  return {
    path: "/audit",
    title: "Audit log",
    scopes: [ADMIN],
    async render({ viewer, query, path }) {
      const raw: Record<string, string> = {};
      for (const k of ["key", "operation"]) {
        const val = query.get(k)?.trim();
        if (val) raw[k] = val;
      }
      for (const [k, end] of [["from", "T00:00:00Z"], ["to", "T23:59:59Z"]] as const) {
        const val = query.get(k)?.trim();
        if (val) raw[k] = /^\d{4}-\d{2}-\d{2}$/.test(val) ? val + end : val;
      }
      const q = checked(AuditQuery, raw);
      const result = query.get("result")?.trim();
      const rows = (await allPages((page_token) => audit.query(viewer.tenant, { ...q, limit: 500, page_token }), 2000)).filter((r) => !result || (result === "ok" ? r.result === "ok" : r.result !== "ok"));
      return {
        body: html`
${filterForm({ path, label: "Filter the audit log", query, fields: [
  { name: "key", label: "Key id", maxlength: 36 },
  { name: "operation", label: "Operation", maxlength: 32, placeholder: "sign, rotate, ..." },
  { name: "result", label: "Result", type: "select", options: [{ value: "", label: "any" }, { value: "ok", label: "ok" }, { value: "error", label: "failed" }] },
  { name: "from", label: "From", type: "date" },
  { name: "to", label: "To", type: "date" },
] })}
<div id="audit">${table<AuditRow>({
          caption: "Key operations",
          path,
          query,
          rows,
          pageSize: 50,
          sort: { key: "at", dir: "desc" },
          empty: "No operations match.",
          columns: [
            { key: "at", label: "When", cell: (r) => r.at.replace("T", " ").slice(0, 19), sort: (r) => r.seq },
            { key: "subject", label: "Who", cell: (r) => r.client_id ? `${r.subject} (${r.client_id})` : r.subject, sort: (r) => r.subject },
            { key: "operation", label: "Operation", cell: (r) => r.operation, sort: (r) => r.operation },
            { key: "key", label: "Key", cell: (r) => (r.key_id ? html`<a href="/browser/keys/${r.key_id}"><code>${r.key_id.slice(0, 8)}</code></a>` : "—") },
            { key: "version", label: "Version", cell: (r) => r.version ?? "—" },
            { key: "result", label: "Result", cell: (r) => html`<span class="${r.result === "ok" ? "status-good" : "status-rejected"}">${r.result}</span>`, sort: (r) => r.result },
          ],
        })}</div>`,
      };
    },
  };
}

export function josePages(ctx: ServiceContext, jose: JoseService, audit: AuditLog) {
  return consolePages(ctx, {
    title: "JOSE Authority",
    sections: [
      { label: "Keys", href: "/browser/" },
      { label: "Audit log", href: "/browser/audit" },
    ],
    pages: [keysPage(jose, audit), keyPage(jose, audit), auditPage(audit)],
  });
}
