/**
 * learn-ps's read API served by the edge module in workerd, with learn-ps on Bun as the origin
 * and the test issuer as the token issuer (both over HTTPS, verified against their CAs). The
 * edge checks tokens itself, answers a tenant only with its own rows, refreshes its copy from
 * the origin after the interval, and leaves writes to the origin.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";
import { freePort } from "../support/server-process.ts";
import { throwawayTls, type ThrowawayTls } from "../support/tls.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { startEdge, type RunningEdge } from "../../edge/workerd.ts";

const REFRESH_S = 2;
let issuer: TestIssuer;
let learn: TestService;
let edge: RunningEdge;
let tls: ThrowawayTls;
let petId: string;
const API = "/service/api/v1";
const at = (path: string, token?: string, init: RequestInit = {}) =>
  fetch(edge.url + path, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string>) }, tls: { ca: tls.caPem } } as RequestInit);

beforeAll(async () => {
  issuer = await startTestIssuer({ audience: "learn-ps" });
  learn = await startTestService(learnPs, { issuer, overrides: quiet });
  const writer = await issuer.mint({ tenant: "acme", scope: "pets:read pets:write" });
  const created = await learn.call(`${API}/pets`, { method: "POST", headers: { authorization: `Bearer ${writer}`, "content-type": "application/json" }, body: JSON.stringify({ name: "Rex", species: "dog" }) });
  expect(created.status).toBe(201);
  petId = ((await created.json()) as { id: string }).id;
  tls = await throwawayTls("edge");
  const origin = new URL(learn.publicUrl);
  const id = new URL(issuer.issuer);
  edge = await startEdge({
    module: "learn-ps",
    port: await freePort(),
    tls: { cert: tls.certPem, key: tls.keyPem },
    origin: { address: origin.host, https: { ca: learn.ca, host: origin.hostname } },
    upstreams: { IDENTITY: { address: id.host, https: { ca: issuer.caPem, host: id.hostname } } },
    vars: { ISSUER: issuer.issuer, JWKS_PATH: new URL(issuer.jwksUrl).pathname, REFRESH_S: String(REFRESH_S) },
  });
}, 120_000);
afterAll(async () => {
  await edge?.stop();
  await learn?.stop();
  await issuer?.stop();
});

test("a tenant reads its pets at the edge; another tenant does not see them", async () => {
  const acme = await issuer.mint({ tenant: "acme", scope: "pets:read" });
  const one = await at(`${API}/pets/${petId}`, acme);
  expect(one.status).toBe(200);
  expect(((await one.json()) as { name: string }).name).toBe("Rex");
  expect(one.headers.get("cache-control")).toBe("private, no-store");
  const list = (await (await at(`${API}/pets`, acme)).json()) as { items: Array<{ name: string }> };
  expect(list.items.map((p) => p.name)).toContain("Rex");
  const globex = await issuer.mint({ tenant: "globex", scope: "pets:read" });
  expect((await at(`${API}/pets/${petId}`, globex)).status).toBe(404);
  expect(((await (await at(`${API}/pets`, globex)).json()) as { items: unknown[] }).items).toEqual([]);
});

test("a change at the origin shows at the edge after the refresh interval", async () => {
  const acme = await issuer.mint({ tenant: "acme", scope: "pets:read pets:write" });
  expect((await at(`${API}/pets/${petId}`, acme)).status).toBe(200);
  const patched = await learn.call(`${API}/pets/${petId}`, { method: "PATCH", headers: { authorization: `Bearer ${acme}`, "content-type": "application/json" }, body: JSON.stringify({ name: "Rex II" }) });
  expect(patched.status).toBe(200);
  let name = "";
  for (let i = 0; i < 20 && name !== "Rex II"; i++) {
    await Bun.sleep(REFRESH_S * 500);
    name = ((await (await at(`${API}/pets/${petId}`, acme)).json()) as { name: string }).name;
  }
  expect(name).toBe("Rex II");
}, 60_000);

test("tokens are checked at the edge: missing, foreign-signed, expired, wrong audience, no scope", async () => {
  const none = await at(`${API}/pets/${petId}`);
  expect(none.status).toBe(401);
  expect(none.headers.get("www-authenticate")).toContain("Bearer");
  expect(((await none.json()) as { error: { code: string } }).error.code).toBe("unauthenticated");
  expect((await at(`${API}/pets/${petId}`, await issuer.mint({ tenant: "acme", scope: "pets:read" }, { key: "foreign" }))).status).toBe(401);
  expect((await at(`${API}/pets/${petId}`, await issuer.mint({ tenant: "acme", scope: "pets:read" }, { expiresIn: Math.floor(Date.now() / 1000) - 600 }))).status).toBe(401);
  expect((await at(`${API}/pets/${petId}`, await issuer.mint({ tenant: "acme", scope: "pets:read", aud: "sm-kms" }))).status).toBe(401);
  expect((await at(`${API}/pets/${petId}`, await issuer.mint({ tenant: "acme", scope: "pets:write" }))).status).toBe(403);
  expect((await at(`${API}/pets/${petId}`, "not.a.jwt")).status).toBe(401);
});

test("writes and other paths are not served at the edge", async () => {
  const acme = await issuer.mint({ tenant: "acme", scope: "pets:read pets:write" });
  expect((await at(`${API}/pets`, acme, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(405);
  expect((await at(`${API}/pets/${petId}`, acme, { method: "DELETE" })).status).toBe(405);
  expect((await at("/browser/", acme)).status).toBe(404);
  expect((await at(`${API}/pets/../../admin/v1/livez`, acme)).status).toBe(404);
});

test("fuzzed tokens and paths: 4xx, never a 5xx", async () => {
  const token = await issuer.mint({ tenant: "acme", scope: "pets:read" });
  const r = rng(5);
  const chars = "AZaz09.-_~+/=%?#\u00e9 ";
  const mutate = (s: string) => {
    const a = [...s];
    for (let n = 1 + r(4); n > 0; n--) a.splice(r(a.length + 1), r(2), chars[r(chars.length)]!);
    return a.join("");
  };
  const cases = Array.from({ length: 200 }, (_, i) => (i % 2 ? { path: `${API}/pets/${petId}`, auth: mutate(token) } : { path: `/${mutate(`${API}/pets/${petId}`.slice(1))}`, auth: token }));
  await fuzz(
    cases,
    (c) => fetch(edge.url + encodeURI(c.path).replace(/#/g, "%23"), { headers: { authorization: `Bearer ${c.auth}` }, tls: { ca: tls.caPem } } as RequestInit),
    { describe: (c) => JSON.stringify(c), maxMs: 20_000, concurrency: 8 },
  );
}, 60_000);
