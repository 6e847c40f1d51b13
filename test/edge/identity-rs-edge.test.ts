/**
 * identity-rs's token validation served by the edge module in workerd, with the test issuer's
 * JWKS copied at the edge: the profile the edge answers equals the origin's (identity-rs on
 * Bun) for the same token; expired, foreign-key, wrong-audience and sender-constrained tokens
 * are refused at the edge; other routes and methods are not served there; fuzzed headers and
 * paths never give a 5xx.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { identityRs } from "../../apps/identity-rs/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";
import { freePort } from "../support/server-process.ts";
import { throwawayTls, type ThrowawayTls } from "../support/tls.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { startEdge, type RunningEdge } from "../../edge/workerd.ts";

let issuer: TestIssuer;
let rs: TestService;
let edge: RunningEdge;
let tls: ThrowawayTls;
const PROFILE = "/service/api/v1/profile";
const at = (path: string, token?: string, init: RequestInit = {}) =>
  fetch(edge.url + path, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}) }, tls: { ca: tls.caPem } } as RequestInit);

beforeAll(async () => {
  issuer = await startTestIssuer({ audience: "identity-rs" });
  rs = await startTestService(identityRs, { issuer, overrides: quiet });
  tls = await throwawayTls("edge");
  const id = new URL(issuer.issuer);
  edge = await startEdge({
    module: "identity-rs",
    port: await freePort(),
    tls: { cert: tls.certPem, key: tls.keyPem },
    origin: { address: new URL(rs.publicUrl).host, https: { ca: rs.ca, host: new URL(rs.publicUrl).hostname } },
    upstreams: { IDENTITY: { address: id.host, https: { ca: issuer.caPem, host: id.hostname } } },
    vars: { ISSUER: issuer.issuer, JWKS_PATH: new URL(issuer.jwksUrl).pathname, REFRESH_S: "60" },
  });
}, 120_000);
afterAll(async () => {
  await edge?.stop();
  await rs?.stop();
  await issuer?.stop();
});

test("the edge's profile is the origin's for the same token", async () => {
  const token = await issuer.mint({ tenant: "acme", sub: "alice", client_id: "app-1", scope: "notes:read profile" });
  const fromEdge = await at(PROFILE, token);
  expect(fromEdge.status).toBe(200);
  expect(fromEdge.headers.get("cache-control")).toBe("private, no-store");
  const fromOrigin = await rs.call(PROFILE, { headers: { authorization: `Bearer ${token}` } });
  expect(fromOrigin.status).toBe(200);
  expect(await fromEdge.json()).toEqual(await fromOrigin.json());
});

test("refused at the edge: no token, expired, signed by another key, another audience, sender-constrained", async () => {
  expect((await at(PROFILE)).status).toBe(401);
  const expired = await issuer.mint({ tenant: "acme", sub: "alice", scope: "notes:read" }, { expiresIn: -60 });
  const foreign = await issuer.mint({ tenant: "acme", sub: "alice", scope: "notes:read" }, { key: "foreign" });
  const otherAudience = await issuer.mint({ tenant: "acme", sub: "alice", scope: "notes:read", aud: "sm-kms" });
  const bound = await issuer.mint({ tenant: "acme", sub: "alice", scope: "notes:read", cnf: { jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" } });
  for (const t of [expired, foreign, otherAudience, bound]) {
    const r = await at(PROFILE, t);
    expect(r.status).toBe(401);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("unauthenticated");
  }
});

test("only the profile, only GET: the notes API stays at the origin", async () => {
  const token = await issuer.mint({ tenant: "acme", sub: "alice", scope: "notes:read notes:write" });
  expect((await at("/service/api/v1/notes", token)).status).toBe(404);
  expect((await at(PROFILE, token, { method: "POST" })).status).toBe(405);
});

test("2,000 fuzzed tokens and paths: no 5xx", async () => {
  const good = await issuer.mint({ tenant: "acme", sub: "alice", scope: "notes:read" });
  const r = rng(0x1d5);
  const cases = Array.from({ length: 2000 }, () => {
    const chars = good.split("");
    for (let k = 0; k < 1 + r(4); k++) chars[r(chars.length)] = "AZaz09-_.~+/="[r(13)]!;
    return { path: r(5) === 0 ? `${PROFILE}/${"x".repeat(r(300))}` : PROFILE, token: chars.join("").slice(0, r(3) === 0 ? r(chars.length) : undefined) };
  });
  await fuzz(cases, (c) => at(c.path, c.token), { describe: (c) => `${c.path} ${c.token}`, maxMs: 20_000, concurrency: 8 });
}, 300_000);
