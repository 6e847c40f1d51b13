/**
 * sm-secrets's console: the tenant's secrets by prefix (folders and keys, never a value); a
 * secret's metadata and versions, each version's value shown only when its Reveal button is
 * pressed (a GET of that version through /browser/api/v1, shown in place, never in the page's
 * HTML); a new version with check-and-set (a new path: create-only, cas 0); soft delete,
 * undelete and destroy of a version, the destructive ones after a confirmation. Reads call
 * SecretKv after the API's path-scoped checks (access.ts); every change goes through
 * /browser/api/v1, so a user without secrets:write or secrets:delete on the path sees the
 * page read-only and a forged request is refused there.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { checked, consolePages, seeOther, type ConsolePage } from "../../../src/ui/console.ts";
import { html, type Html } from "../../../src/ui/html.ts";
import { details, readOnlyNote, section } from "../../../src/ui/layout.ts";
import { apiForm } from "../../../src/ui/form.ts";
import { table } from "../../../src/ui/table.ts";
import { AppError } from "../../../src/service/errors.ts";
import { ListQuery, SecretPathParams, type KeyMetadataView, type VersionMetaView } from "../../../schemas/sm-secrets.ts";
import { SecretAccess } from "../access.ts";
import type { SecretKv } from "../domain.ts";

const API = "/browser/api/v1/secrets";
/** Paths go into API URLs segment by segment (a slash stays a separator). */
const urlPath = (path: string) => path.split("/").map(encodeURIComponent).join("/");
const secretLink = (path: string) => `/browser/secret?path=${encodeURIComponent(path)}`;
const folderLink = (prefix: string) => (prefix ? `/browser/?prefix=${encodeURIComponent(prefix)}` : "/browser/");

/** The folders above `prefix`, as links back up (breadcrumbs). */
function crumbs(prefix: string): Html {
  const parts = prefix.split("/").filter(Boolean);
  const links = parts.map((p, i) => html` / <a href="${folderLink(parts.slice(0, i + 1).join("/") + "/")}">${p}</a>`);
  return html`<nav class="crumbs" aria-label="Folders"><a href="/browser/">All secrets</a>${links}</nav>`;
}

function listPage(kv: SecretKv): ConsolePage {
  return {
    path: "/",
    title: "Secrets",
    scopes: [],
    async render({ viewer, query, path }) {
      const { prefix } = checked(ListQuery, { prefix: query.get("prefix") ?? "" });
      const access = SecretAccess.of(viewer.principal);
      access.requireList(prefix);
      const names = await kv.list(viewer.tenant, prefix, (full) => access.visible(full));
      const rows = names.map((name) => ({ name, full: prefix + name, folder: name.endsWith("/") }));
      return {
        body: html`
${crumbs(prefix)}
<div id="secrets">${table<(typeof rows)[number]>({
  caption: prefix ? `Under ${prefix}` : "Secrets",
  path,
  query,
  rows,
  sort: { key: "name", dir: "asc" },
  empty: "No secrets here.",
  columns: [
    { key: "name", label: "Name", sort: (r) => r.name, cell: (r) => html`<a href="${r.folder ? folderLink(r.full) : secretLink(r.full)}">${r.name}</a>` },
    { key: "kind", label: "Kind", sort: (r) => (r.folder ? "folder" : "secret"), cell: (r) => (r.folder ? "folder" : "secret") },
  ],
})}</div>
${section("open-title", "Open or create a secret", html`<form class="filters" id="open" method="get" action="/browser/secret" aria-label="Open a secret by path">
<div class="field"><label for="open-path">Path</label><input type="text" id="open-path" name="path" value="${prefix}" autocomplete="off" required></div>
<div class="actions"><button type="submit">Open</button></div>
</form>`)}`,
      };
    },
  };
}

const versionState = (m: VersionMetaView, now: string) => (m.destroyed ? "destroyed" : m.deletion_time !== null && m.deletion_time <= now ? "deleted" : "live");

/** One version's row actions: reveal (read scope), delete/undelete/destroy (delete scope). */
function versionActions(path: string, m: VersionMetaView, state: string, canDelete: boolean): Html {
  const at = urlPath(path);
  const versions = { name: "versions", label: "Versions", type: "hidden" as const, json: true, value: JSON.stringify([m.version]) };
  const forms: Html[] = [];
  if (state === "live") {
    forms.push(apiForm({ id: `reveal-${m.version}`, action: `${API}/data/${at}?version=${m.version}`, method: "GET", inline: true, submit: `Reveal v${m.version}`, then: "stay", result: { field: "data", label: `Value of version ${m.version}` } }));
  }
  if (canDelete && state === "live") {
    forms.push(apiForm({ id: `delete-${m.version}`, action: `${API}/delete/${at}`, method: "POST", inline: true, submit: "Delete", confirm: `Soft-delete version ${m.version} of ${path}? It can be undeleted.`, flash: `Version ${m.version} deleted.`, fields: [versions] }));
  }
  if (canDelete && state === "deleted") {
    forms.push(apiForm({ id: `undelete-${m.version}`, action: `${API}/undelete/${at}`, method: "POST", inline: true, submit: "Undelete", flash: `Version ${m.version} undeleted.`, fields: [versions] }));
  }
  if (canDelete && state !== "destroyed") {
    forms.push(apiForm({ id: `destroy-${m.version}`, action: `${API}/destroy/${at}`, method: "POST", inline: true, submit: "Destroy", confirm: `Destroy version ${m.version} of ${path} for good? Its value cannot be recovered.`, flash: `Version ${m.version} destroyed.`, fields: [versions] }));
  }
  return html`<div class="row-actions">${forms}</div>`;
}

function secretPage(kv: SecretKv): ConsolePage {
  return {
    path: "/secret",
    title: "Secret",
    scopes: [],
    async render({ viewer, query, path: pagePath }) {
      const raw = query.get("path");
      if (raw === null || raw === "") return seeOther("/browser/");
      const { "*": path } = checked(SecretPathParams, { "*": raw });
      const access = SecretAccess.of(viewer.principal);
      access.require("read", path);
      let meta: KeyMetadataView | undefined;
      try {
        meta = await kv.metadata(viewer.tenant, path);
      } catch (e) {
        if (!(e instanceof AppError) || e.code !== "not_found") throw e;
      }
      const canWrite = access.covers("write", path);
      const canDelete = access.covers("delete", path);
      const now = new Date().toISOString();
      const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
      const current = meta?.current_version ?? 0;
      const write = canWrite
        ? apiForm({
            id: "write",
            action: `${API}/data/${urlPath(path)}`,
            method: "PUT",
            submit: current ? "Write new version" : "Create secret",
            flash: "Version {version} written.",
            then: current ? "reload" : secretLink(path),
            fields: [
              { name: "data", label: "Value (a JSON object)", type: "textarea", json: true, required: true, placeholder: '{"username": "app", "password": "..."}' },
              { name: "cas", label: "Only if the current version is (cas)", type: "number", min: 0, value: current, hint: current ? "Refused if someone wrote a newer version meanwhile; empty: no check (unless cas is required)." : "0: create only, refused if the secret exists meanwhile." },
            ],
          })
        : readOnlyNote("secrets:write");
      if (!meta) {
        return { title: path, body: html`${crumbs(parent)}<p id="status" role="status">No secret at <code>${path}</code> yet.</p>${section("write-title", "Create", write)}` };
      }
      const rows = [...meta.versions].reverse();
      return {
        title: path,
        body: html`
${crumbs(parent)}
${details([
  ["Path", html`<code>${path}</code>`],
  ["Current version", meta.current_version],
  ["Oldest version kept", meta.oldest_version],
  ["Created", meta.created_time],
  ["Updated", meta.updated_time],
  ["Versions kept", meta.max_versions || "tenant default"],
  ["Check-and-set required", meta.cas_required ? "yes" : "no"],
  ["Delete versions after", meta.delete_version_after_s ? `${meta.delete_version_after_s} s` : "never"],
  ["Custom metadata", meta.custom_metadata ? html`<code>${JSON.stringify(meta.custom_metadata)}</code>` : "—"],
])}
${section("versions-title", "Versions", html`<div id="versions">${table<VersionMetaView>({
  caption: "Versions (values hidden until revealed)",
  path: pagePath,
  query,
  rows,
  empty: "No versions.",
  columns: [
    { key: "version", label: "Version", cell: (m) => (m.version === meta!.current_version ? html`${m.version} <span class="tag">current</span>` : m.version) },
    { key: "created", label: "Created", cell: (m) => m.created_time },
    { key: "state", label: "State", cell: (m) => html`<span class="status-${versionState(m, now)}">${versionState(m, now)}</span>` },
    { key: "deletion", label: "Deletion time", cell: (m) => m.deletion_time ?? "—" },
    { key: "actions", label: "Actions", cell: (m) => versionActions(path, m, versionState(m, now), canDelete) },
  ],
})}</div>${canDelete ? "" : readOnlyNote("secrets:delete")}`)}
${section("write-title", "New version", write)}
<p><a href="${folderLink(parent)}">Back to ${parent || "all secrets"}</a></p>`,
      };
    },
  };
}

export function secretsPages(ctx: ServiceContext, kv: SecretKv) {
  return consolePages(ctx, { title: "Secrets Manager", sections: [{ label: "Secrets", href: "/browser/" }], pages: [listPage(kv), secretPage(kv)] });
}

