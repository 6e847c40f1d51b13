/**
 * The Vault KV version 2 HTTP surface, so existing Vault clients work unchanged:
 * `/v1/<mount>/data|metadata|delete|undelete|destroy|subkeys/<path>` and `/v1/<mount>/config`,
 * with Vault's JSON shapes (`{"data":{"data":{...},"metadata":{...}}}`), its errors
 * (`{"errors":[...]}`, 404 with no errors for a missing secret) and its status codes. A
 * client sends the service's own access token in `X-Vault-Token` (or `Authorization: Bearer`);
 * it is verified as on /service, and the scopes of access.ts apply.
 *
 * Listing is `GET .../metadata/<prefix>?list=true`: the runtime's HTTP server refuses Vault's
 * `LIST` method, and Vault takes both forms (node-vault: `noCustomHTTPVerbs: true`).
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, requestInfo, toAppError } from "../../../src/service/http.ts";
import { AppError } from "../../../src/service/errors.ts";
import { checkJsonShape } from "../../../src/service/json-body.ts";
import type { BearerVerifier, Principal } from "../../../src/auth/bearer.ts";
import { MAX_DELETE_AFTER_S, MAX_VERSIONS_LIMIT, SECRET_PATH, LIST_PREFIX, SecretData } from "../../../schemas/sm-secrets.ts";
import { SecretAccess, type Capability } from "../access.ts";
import { VersionGone, type SecretKv } from "../domain.ts";
import { formatDuration, parseDuration } from "./duration.ts";

const MAX_BODY = 1024 * 1024;

/** An answer in Vault's envelope. */
function envelope(data: unknown, status = 200): Response {
  const body = { request_id: crypto.randomUUID(), lease_id: "", renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null, mount_type: "kv" };
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const noContent = () => new Response(null, { status: 204 });
const errors = (status: number, messages: string[]) => new Response(JSON.stringify({ errors: messages }), { status, headers: { "content-type": "application/json" } });

/** Vault's answer for an error: its status codes, `{"errors":[...]}`, never a value. */
function vaultError(e: unknown): Response {
  if (e instanceof VersionGone) {
    const m = e.metadata;
    return envelope({ data: null, metadata: versionMeta(m, m.custom_metadata) }, 404);
  }
  const err = toAppError(e);
  if (err.code === "not_found") return errors(404, []);
  if (err.status === 401 || err.code === "insufficient_scope") return errors(403, ["permission denied"]);
  // Vault answers a failed check-and-set with 400.
  if (err.code === "cas_mismatch" || err.code === "cas_required") return errors(400, [err.message]);
  return errors(err.status, [err.message]);
}

const deletionTime = (t: string | null) => t ?? "";

function versionMeta(m: { version: number; created_time: string; deletion_time: string | null; destroyed: boolean }, custom: Record<string, string> | null) {
  return { created_time: m.created_time, custom_metadata: custom, deletion_time: deletionTime(m.deletion_time), destroyed: m.destroyed, version: m.version };
}

const bad = (message: string) => new AppError("bad_request", message);

/** The JSON body of a request (an empty body is `{}`); bounded and shape-checked before parsing. */
async function bodyOf(request: Request): Promise<Record<string, unknown>> {
  const text = await request.text();
  if (text.length > MAX_BODY) throw new AppError("payload_too_large", `request body exceeds ${MAX_BODY} bytes`);
  if (text.trim() === "") return {};
  checkJsonShape(text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw bad("failed to parse JSON input");
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw bad("the body must be a JSON object");
  return body as Record<string, unknown>;
}

function parsed<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> {
  const r = v.safeParse(schema, value);
  if (r.success) return r.output;
  const i = r.issues[0];
  const at = i.path?.map((p) => String(p.key)).join(".");
  // The issue's member and kind, never the value.
  throw bad(`invalid ${at || "body"}: ${i.expected ? `expected ${i.expected}` : "not acceptable"}`.slice(0, 200));
}

const casField = v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)));
const WriteBody = v.object({ data: SecretData, options: v.optional(v.object({ cas: casField })) });
const versionList = v.pipe(v.array(v.pipe(v.number(), v.integer(), v.minValue(1))), v.minLength(1), v.maxLength(1000));
const VersionsBody = v.object({
  versions: v.union([versionList, v.pipe(v.string(), v.regex(/^\d{1,15}(,\d{1,15}){0,999}$/), v.transform((s) => s.split(",").map(Number)), versionList)]),
});
const custom = v.record(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), v.pipe(v.string(), v.maxLength(512)));
const customPatch = v.record(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), v.nullable(v.pipe(v.string(), v.maxLength(512))));
const maxVersions = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_VERSIONS_LIMIT));
const duration = v.pipe(
  v.union([v.number(), v.string()]),
  v.transform((x: string | number) => parseDuration(x)),
  v.number("a duration such as 1h30m or whole seconds"),
  v.maxValue(MAX_DELETE_AFTER_S),
);
const MetadataBody = v.object({ max_versions: v.optional(maxVersions), cas_required: v.optional(v.boolean()), delete_version_after: v.optional(duration), custom_metadata: v.optional(custom) });
const MetadataPatch = v.object({ max_versions: v.optional(maxVersions), cas_required: v.optional(v.boolean()), delete_version_after: v.optional(duration), custom_metadata: v.optional(customPatch) });
const ConfigBody = v.object({ max_versions: v.optional(maxVersions), cas_required: v.optional(v.boolean()), delete_version_after: v.optional(duration) });

interface Call {
  request: Request;
  principal: Principal;
  access: SecretAccess;
  tenant: string;
  query: Record<string, string | undefined>;
}

interface Ctx {
  request: Request;
  params: Record<string, string | undefined>;
  query: Record<string, string | undefined>;
}

const isMergePatch = (r: Request) => /^application\/merge-patch\+json\s*(;|$)/i.test(r.headers.get("content-type") ?? "");

export function vaultRoutes(kv: SecretKv, bearer: BearerVerifier, mount: string) {
  /** Authenticates the caller with the service's bearer verifier, then runs `fn`; every error in Vault's shape. */
  const guarded =
    (fn: (c: Call, path: string) => Promise<Response>, pathKind: "path" | "prefix" | "none" = "path") =>
    async ({ request, params, query }: Ctx): Promise<Response> => {
      try {
        if (params.mount !== undefined && params.mount !== mount) return errors(404, ["no handler for route; route entry not found"]);
        const vaultToken = request.headers.get("x-vault-token");
        const principal = await bearer.verify(request.headers.get("authorization") ?? (vaultToken ? `Bearer ${vaultToken}` : null));
        requestInfo(request).principal = principal;
        let path = "";
        if (pathKind !== "none") {
          try {
            path = decodeURIComponent(params["*"] ?? "");
          } catch {
            throw bad("the path is not valid percent-encoding");
          }
          if (pathKind === "prefix") path = path === "" || path.endsWith("/") ? path : `${path}/`;
          if (path.length > 512 || !(pathKind === "prefix" ? LIST_PREFIX : SECRET_PATH).test(path)) throw bad("invalid secret path");
        }
        return await fn({ request, principal, access: SecretAccess.of(principal), tenant: principal.tenant, query }, path);
      } catch (e) {
        const res = vaultError(e);
        if (res.status >= 500) requestInfo(request).failure = e;
        return res;
      }
    };

  const need = (c: Call, cap: Capability, path: string) => c.access.require(cap, path);
  const versionQuery = (q: Record<string, string | undefined>, name: string, min: number): number | undefined => {
    const raw = q[name];
    if (raw === undefined || raw === "") return undefined;
    if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) throw bad(`${name} must be a whole number`);
    return Number(raw);
  };

  const readData = guarded(async (c, path) => {
    need(c, "read", path);
    // Vault: version=0 is the current version.
    const r = await kv.read(c.tenant, path, versionQuery(c.query, "version", 0) || undefined);
    return envelope({ data: r.data, metadata: versionMeta(r.metadata, r.metadata.custom_metadata) });
  });
  const writeData = guarded(async (c, path) => {
    need(c, "write", path);
    const raw = await bodyOf(c.request);
    if (raw.data === undefined) throw bad("no data provided");
    const body = parsed(WriteBody, raw);
    const w = await kv.write(c.tenant, path, body.data, body.options?.cas);
    return envelope(versionMeta(w, w.custom_metadata));
  });
  const patchData = guarded(async (c, path) => {
    if (!isMergePatch(c.request)) return errors(415, ["PATCH requires Content-Type of application/merge-patch+json"]);
    need(c, "write", path);
    const body = parsed(WriteBody, await bodyOf(c.request));
    const w = await kv.patch(c.tenant, path, body.data, body.options?.cas);
    return envelope(versionMeta(w, w.custom_metadata));
  });
  const deleteLatest = guarded(async (c, path) => {
    need(c, "delete", path);
    await kv.deleteLatest(c.tenant, path);
    return noContent();
  });
  const versionsOp = (op: "delete" | "undelete" | "destroy") =>
    guarded(async (c, path) => {
      need(c, "delete", path);
      const { versions } = parsed(VersionsBody, await bodyOf(c.request));
      if (op === "delete") await kv.deleteVersions(c.tenant, path, versions);
      else if (op === "undelete") await kv.undeleteVersions(c.tenant, path, versions);
      else await kv.destroyVersions(c.tenant, path, versions);
      return noContent();
    });

  const list = async (c: Call, prefix: string) => {
    c.access.requireList(prefix);
    const keys = await kv.list(c.tenant, prefix, (full) => c.access.visible(full));
    return keys.length === 0 ? errors(404, []) : envelope({ keys });
  };
  const isList = (q: Record<string, string | undefined>) => q.list === "true" || q.list === "1";
  const readMetadata = guarded(async (c, path) => {
    need(c, "read", path);
    const m = await kv.metadata(c.tenant, path);
    return envelope({
      cas_required: m.cas_required,
      created_time: m.created_time,
      current_version: m.current_version,
      custom_metadata: m.custom_metadata,
      delete_version_after: formatDuration(m.delete_version_after_s),
      max_versions: m.max_versions,
      oldest_version: m.oldest_version,
      updated_time: m.updated_time,
      versions: Object.fromEntries(m.versions.map((x) => [String(x.version), { created_time: x.created_time, deletion_time: deletionTime(x.deletion_time), destroyed: x.destroyed }])),
    });
  });
  const listPrefix = guarded((c, prefix) => list(c, prefix), "prefix");
  const metadataGet = (ctx: Ctx) => (isList(ctx.query) || (ctx.params["*"] ?? "") === "" || (ctx.params["*"] ?? "").endsWith("/") ? listPrefix(ctx) : readMetadata(ctx));
  const writeMetadata = (merge: boolean) =>
    guarded(async (c, path) => {
      if (merge && !isMergePatch(c.request)) return errors(415, ["PATCH requires Content-Type of application/merge-patch+json"]);
      need(c, "write", path);
      const b = merge ? parsed(MetadataPatch, await bodyOf(c.request)) : parsed(MetadataBody, await bodyOf(c.request));
      await kv.writeMetadata(c.tenant, path, { max_versions: b.max_versions, cas_required: b.cas_required, delete_version_after_s: b.delete_version_after, custom_metadata: b.custom_metadata }, merge);
      return noContent();
    });
  const deleteMetadata = guarded(async (c, path) => {
    need(c, "delete", path);
    await kv.deleteMetadata(c.tenant, path);
    return noContent();
  });
  const subkeys = guarded(async (c, path) => {
    need(c, "read", path);
    const r = await kv.subkeys(c.tenant, path, versionQuery(c.query, "version", 0) || undefined, versionQuery(c.query, "depth", 0) ?? 0);
    return envelope({ subkeys: r.subkeys, metadata: versionMeta(r.metadata, null) });
  });
  const readConfig = guarded(async (c) => {
    c.access.requireAll("read");
    const cfg = await kv.config(c.tenant);
    return envelope({ cas_required: cfg.cas_required, delete_version_after: formatDuration(cfg.delete_version_after_s), max_versions: cfg.max_versions });
  }, "none");
  const writeConfig = guarded(async (c) => {
    c.access.requireAll("admin");
    const b = parsed(ConfigBody, await bodyOf(c.request));
    await kv.setConfig(c.tenant, { max_versions: b.max_versions, cas_required: b.cas_required, delete_version_after_s: b.delete_version_after });
    return noContent();
  }, "none");
  // What the vault CLI asks first to learn a mount's KV version.
  const mountInfo = guarded(async () => envelope({ path: `${mount}/`, type: "kv", description: "sm-secrets", options: { version: "2" }, config: {} }), "none");

  const P = "/v1/:mount";
  const doc = (summary: string) => ({ parse: "none" as const, detail: { summary, tags: ["vault: Vault KV v2 compatible"] } });
  return new Elysia()
    .use(appBase)
    .get(`${P}/data/*`, readData, doc("Vault: read a version (?version=N)"))
    .post(`${P}/data/*`, writeData, doc("Vault: write a version ({data, options: {cas}})"))
    .put(`${P}/data/*`, writeData, doc("Vault: write a version ({data, options: {cas}})"))
    .patch(`${P}/data/*`, patchData, doc("Vault: JSON merge patch of the current version (application/merge-patch+json)"))
    .delete(`${P}/data/*`, deleteLatest, doc("Vault: soft-delete the current version"))
    .post(`${P}/delete/*`, versionsOp("delete"), doc("Vault: soft-delete versions ({versions})"))
    .put(`${P}/delete/*`, versionsOp("delete"), doc("Vault: soft-delete versions ({versions})"))
    .post(`${P}/undelete/*`, versionsOp("undelete"), doc("Vault: undelete versions ({versions})"))
    .put(`${P}/undelete/*`, versionsOp("undelete"), doc("Vault: undelete versions ({versions})"))
    .post(`${P}/destroy/*`, versionsOp("destroy"), doc("Vault: destroy versions ({versions})"))
    .put(`${P}/destroy/*`, versionsOp("destroy"), doc("Vault: destroy versions ({versions})"))
    .get(`${P}/metadata`, listPrefix, doc("Vault: list the root (?list=true)"))
    .get(`${P}/metadata/*`, metadataGet, doc("Vault: a key's metadata, or with ?list=true the keys under a prefix"))
    .post(`${P}/metadata/*`, writeMetadata(false), doc("Vault: set a key's metadata"))
    .put(`${P}/metadata/*`, writeMetadata(false), doc("Vault: set a key's metadata"))
    .patch(`${P}/metadata/*`, writeMetadata(true), doc("Vault: merge patch of a key's metadata"))
    .delete(`${P}/metadata/*`, deleteMetadata, doc("Vault: remove a key and all its versions"))
    .get(`${P}/subkeys/*`, subkeys, doc("Vault: a version's keys with null leaves (?version, ?depth)"))
    .get(`${P}/config`, readConfig, doc("Vault: the mount's (tenant's) defaults"))
    .post(`${P}/config`, writeConfig, doc("Vault: set the mount's (tenant's) defaults"))
    .get("/v1/sys/internal/ui/mounts/*", mountInfo, doc("Vault: the mount's type and KV version"));
}
