/**
 * The Vault KV v2-compatible surface (`/v1/secret/...`): Vault's shapes, errors and status
 * codes over raw HTTPS, the token in `X-Vault-Token` or `Authorization: Bearer`, and the
 * `node-vault` npm client, unchanged, pointed at it with the suite CA: it writes, reads,
 * patches, lists and deletes.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import nodeVault from "node-vault";
import { startSecrets, type Secrets } from "./harness.ts";

setDefaultTimeout(60_000);
let s: Secrets;

beforeAll(async () => {
  s = await startSecrets();
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

describe("raw Vault HTTP", () => {
  test("write and read: Vault's envelope and shapes", async () => {
    const w = await s.vault("POST", "/v1/secret/data/app/db", { data: { password: "p1" }, options: { cas: 0 } });
    expect(w.status).toBe(200);
    expect(w.body.data).toMatchObject({ version: 1, destroyed: false, deletion_time: "", custom_metadata: null });
    expect(typeof w.body.data.created_time).toBe("string");
    expect(w.body).toMatchObject({ lease_id: "", renewable: false, lease_duration: 0, wrap_info: null, warnings: null, auth: null });
    const r = await s.vault("GET", "/v1/secret/data/app/db");
    expect(r.status).toBe(200);
    expect(r.body.data.data).toEqual({ password: "p1" });
    expect(r.body.data.metadata).toMatchObject({ version: 1, deletion_time: "", destroyed: false });
    // PUT writes too; version=0 reads the current one.
    expect((await s.vault("PUT", "/v1/secret/data/app/db", { data: { password: "p2" } })).body.data.version).toBe(2);
    expect((await s.vault("GET", "/v1/secret/data/app/db?version=0")).body.data.data).toEqual({ password: "p2" });
    expect((await s.vault("GET", "/v1/secret/data/app/db?version=1")).body.data.data).toEqual({ password: "p1" });
  });

  test("errors: 404 with no errors for a missing secret, 400 for a failed cas, 403 without a valid token", async () => {
    const missing = await s.vault("GET", "/v1/secret/data/nope");
    expect(missing).toEqual({ status: 404, body: { errors: [] } });
    const cas = await s.vault("POST", "/v1/secret/data/app/db", { data: { x: 1 }, options: { cas: 0 } });
    expect(cas.status).toBe(400);
    expect(cas.body.errors[0]).toContain("check-and-set");
    expect((await s.vault("POST", "/v1/secret/data/app/db", { options: {} })).body.errors).toEqual(["no data provided"]);
    const noToken = await s.svc.call("/v1/secret/data/app/db");
    expect(noToken.status).toBe(403);
    expect(await noToken.json()).toEqual({ errors: ["permission denied"] });
    expect((await s.vault("GET", "/v1/secret/data/app/db", undefined, { token: "not-a-jwt" })).status).toBe(403);
    const foreign = await s.issuer.mint({ tenant: "tenant-a", scope: "secrets:read" }, { key: "foreign" });
    expect((await s.vault("GET", "/v1/secret/data/app/db", undefined, { token: foreign })).status).toBe(403);
    // The same token in Authorization works as X-Vault-Token does.
    const bearer = await s.svc.call("/v1/secret/data/app/db", { headers: { authorization: `Bearer ${await s.token("tenant-a")}` } });
    expect(bearer.status).toBe(200);
    // Only the configured mount answers.
    expect((await s.vault("GET", "/v1/kv/data/app/db")).status).toBe(404);
    // A scope the token lacks is Vault's 403.
    const readOnly = await s.token("tenant-a", "secrets:read");
    expect((await s.vault("POST", "/v1/secret/data/app/db", { data: { x: 1 } }, { token: readOnly })).body).toEqual({ errors: ["permission denied"] });
  });

  test("a deleted version is 404 with its metadata; undelete and destroy take {versions}", async () => {
    await s.vault("POST", "/v1/secret/data/life", { data: { n: 1 } });
    await s.vault("POST", "/v1/secret/data/life", { data: { n: 2 } });
    expect((await s.vault("DELETE", "/v1/secret/data/life")).status).toBe(204);
    const gone = await s.vault("GET", "/v1/secret/data/life");
    expect(gone.status).toBe(404);
    expect(gone.body.data.data).toBeNull();
    expect(gone.body.data.metadata).toMatchObject({ version: 2, destroyed: false });
    expect(gone.body.data.metadata.deletion_time).not.toBe("");
    expect((await s.vault("POST", "/v1/secret/undelete/life", { versions: [2] })).status).toBe(204);
    expect((await s.vault("GET", "/v1/secret/data/life")).body.data.data).toEqual({ n: 2 });
    expect((await s.vault("POST", "/v1/secret/delete/life", { versions: [1] })).status).toBe(204);
    expect((await s.vault("POST", "/v1/secret/destroy/life", { versions: "1,2" })).status).toBe(204);
    const destroyed = await s.vault("GET", "/v1/secret/data/life?version=2");
    expect(destroyed.status).toBe(404);
    expect(destroyed.body.data.metadata.destroyed).toBe(true);
  });

  test("metadata: Vault's shape, durations, custom_metadata; PATCH needs merge-patch+json", async () => {
    expect((await s.vault("POST", "/v1/secret/metadata/m", { max_versions: 5, delete_version_after: "1h30m", custom_metadata: { owner: "ops" } })).status).toBe(204);
    await s.vault("POST", "/v1/secret/data/m", { data: { a: 1, b: { c: 2 } } });
    const m = await s.vault("GET", "/v1/secret/metadata/m");
    expect(m.status).toBe(200);
    expect(m.body.data).toMatchObject({ max_versions: 5, cas_required: false, current_version: 1, delete_version_after: "1h30m0s", custom_metadata: { owner: "ops" } });
    expect(Object.keys(m.body.data.versions)).toEqual(["1"]);
    expect(m.body.data.versions["1"]).toMatchObject({ destroyed: false });
    expect((await s.vault("PATCH", "/v1/secret/data/m", { data: { a: 2 } })).status).toBe(415);
    const p = await s.vault("PATCH", "/v1/secret/data/m", { data: { a: null, d: 4 } }, { contentType: "application/merge-patch+json" });
    expect(p.status).toBe(200);
    expect((await s.vault("GET", "/v1/secret/data/m")).body.data.data).toEqual({ b: { c: 2 }, d: 4 });
    expect((await s.vault("PATCH", "/v1/secret/metadata/m", { custom_metadata: { owner: null, team: "x" } }, { contentType: "application/merge-patch+json" })).status).toBe(204);
    expect((await s.vault("GET", "/v1/secret/metadata/m")).body.data.custom_metadata).toEqual({ team: "x" });
    const sub = await s.vault("GET", "/v1/secret/subkeys/m");
    expect(sub.body.data.subkeys).toEqual({ b: { c: null }, d: null });
    expect((await s.vault("POST", "/v1/secret/metadata/m", { delete_version_after: "soon" })).status).toBe(400);
    expect((await s.vault("GET", "/v1/secret/config")).body.data).toEqual({ cas_required: false, delete_version_after: "0s", max_versions: 0 });
    expect((await s.vault("GET", "/v1/sys/internal/ui/mounts/secret/m")).body.data.options).toEqual({ version: "2" });
  });

  test("list with ?list=true; an empty folder is 404; another tenant sees nothing", async () => {
    for (const p of ["tree/a", "tree/b/c"]) await s.vault("POST", `/v1/secret/data/${p}`, { data: { v: 1 } });
    expect((await s.vault("GET", "/v1/secret/metadata/tree/?list=true")).body.data.keys).toEqual(["a", "b/"]);
    expect((await s.vault("GET", "/v1/secret/metadata/tree?list=true")).body.data.keys).toEqual(["a", "b/"]);
    expect((await s.vault("GET", "/v1/secret/metadata/empty/?list=true")).status).toBe(404);
    const other = { tenant: "tenant-other" };
    expect((await s.vault("GET", "/v1/secret/data/tree/a", undefined, other)).status).toBe(404);
    expect((await s.vault("GET", "/v1/secret/metadata/tree/?list=true", undefined, other)).status).toBe(404);
  });
});

describe("node-vault", () => {
  test("the npm Vault client writes, reads, patches, lists and deletes, unchanged", async () => {
    const client = nodeVault({
      apiVersion: "v1",
      endpoint: s.svc.publicUrl,
      token: await s.token("tenant-nv"),
      // The runtime's server refuses the LIST method; Vault takes GET ?list=1 as well.
      noCustomHTTPVerbs: true,
      requestOptions: { ca: s.svc.ca },
    });
    const w = await client.write("secret/data/apps/web", { data: { api_key: "k-123", user: "web" } });
    expect(w.data.version).toBe(1);
    await client.write("secret/data/apps/worker", { data: { token: "t-1" }, options: { cas: 0 } });
    const r = await client.read("secret/data/apps/web");
    expect(r.data.data).toEqual({ api_key: "k-123", user: "web" });
    expect(r.data.metadata.version).toBe(1);

    const u = await client.update("secret/data/apps/web", { data: { api_key: "k-456" } });
    expect(u.data.version).toBe(2);
    expect((await client.read("secret/data/apps/web")).data.data).toEqual({ api_key: "k-456", user: "web" });

    expect((await client.list("secret/metadata/apps/")).data.keys).toEqual(["web", "worker"]);
    expect((await client.list("secret/metadata/")).data.keys).toEqual(["apps/"]);

    // A failed check-and-set is an error with Vault's status.
    const cas = await client.write("secret/data/apps/worker", { data: { token: "t-2" }, options: { cas: 0 } }).catch((e: { response: { statusCode: number } }) => e);
    expect(cas.response.statusCode).toBe(400);

    await client.delete("secret/data/apps/web");
    const deleted = await client.read("secret/data/apps/web").catch((e: { response: { statusCode: number } }) => e);
    expect(deleted.response.statusCode).toBe(404);
    await client.write("secret/undelete/apps/web", { versions: [2] });
    expect((await client.read("secret/data/apps/web")).data.data.api_key).toBe("k-456");

    await client.delete("secret/metadata/apps/web");
    const gone = await client.read("secret/metadata/apps/web").catch((e: { response: { statusCode: number } }) => e);
    expect(gone.response.statusCode).toBe(404);
    expect((await client.list("secret/metadata/apps/")).data.keys).toEqual(["worker"]);
  });
});
