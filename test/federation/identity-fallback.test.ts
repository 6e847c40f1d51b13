/**
 * Federation with identity-authz, end to end over real HTTPS: three learn-ps instances
 * verify tokens of a real identity-authz, one per identity fallback. identity-authz is
 * stopped, then restarted on the same port with the same data (its signing keys persist).
 *  - cached_jwks: a token signed before the stop, never seen by learn-ps, is still accepted;
 *    a tampered one is not; ready stays true (the fallback covers it);
 *  - reject_all: every /service request gets 503 `unavailable`, even for a token accepted
 *    before; not ready; after the restart the next request is the half-open trial;
 *  - allow_all (development mode): claims are checked, the signature is not;
 *  - health polling opens and closes the breaker without traffic; the metrics show 0, 1, 2.
 * No timing assertions: every wait polls for a state with a generous deadline.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { learnPs } from "../../apps/learn-ps/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { startTestService, tempDir, trustIdentity, type TestService } from "../support/service.ts";
import { freePort } from "../identity/support/authz.ts";

const TENANT = "fed";

let root: string;
let port: number;
let authzUrl: string;
let authz: TestService | undefined;
let secret: string;
const learn: Record<"cached" | "reject" | "allow", TestService> = {} as never;
/** Tokens issued before identity-authz stops, each used at most once below. */
const tokens: string[] = [];

async function startIdentity(): Promise<TestService> {
  const svc = await startTestService(identityAuthz, {
    root,
    overrides: (c) => {
      c.server.port = port;
      trustIdentity(c, authzUrl, join(root, "identity-authz", "trust-bundle.pem"), "identity-authz");
      c.log.level = "warn";
      c.security.rate_limit_rps = 100_000;
      c.security.rate_limit_burst = 100_000;
      (c as { app?: unknown }).app = {};
    },
  });
  await svc.call(`/t/root/.well-known/openid-configuration`); // waits for the bootstrap
  return svc;
}

async function token(tenant: string, id: string, secret: string, resource?: string): Promise<string> {
  const r = await authz!.call(`/t/${tenant}/token`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa(`${id}:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", ...(resource ? { resource } : {}) }),
  });
  if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { access_token: string }).access_token;
}

function startLearn(fallback: "cached_jwks" | "reject_all" | "allow_all", fed: Partial<ServiceConfig["federation"]["identity"]>) {
  return startTestService(learnPs, {
    root: join(root, `learn-${fallback}`),
    overrides: (c) => {
      trustIdentity(c, authzUrl, join(root, "identity-authz", "trust-bundle.pem"), "learn-ps");
      Object.assign(c.federation.identity, {
        fallback,
        retries: 0,
        timeout_ms: 10_000,
        max_timeout_ms: 10_000,
        breaker_failures: 2,
        breaker_cooldown_ms: 1500,
        // Every verification of a token not seen before asks identity for its JWKS again,
        // so the fallback, not the freshness of the cache, is what is exercised.
        jwks_refresh_ms: 1,
        ...fed,
      });
    },
  });
}

const pets = (svc: TestService, bearer: string) => svc.call("/service/api/v1/pets", { headers: { authorization: `Bearer ${bearer}` } });
const readyz = async (svc: TestService) => {
  const r = await svc.admin("/admin/v1/readyz");
  const body = (await r.json()) as { status: string; checks: { federation: { identity: { breaker: string; reachable: boolean | null; in_fallback: boolean; ok: boolean; fallback: string } } } };
  return { ...body, http: r.status, identity: body.checks.federation.identity };
};
const gauge = async (svc: TestService) => {
  const text = await (await svc.admin("/admin/v1/metrics")).text();
  return text.match(/^federation_circuit_breaker_state\{service="learn-ps",federated_service="identity"\} (\d)$/m)?.[1];
};
const metricsText = async (svc: TestService) => (await svc.admin("/admin/v1/metrics")).text();

/** Polls `check` until it holds; fails after a deadline generous enough for a loaded machine. */
async function until(what: string, check: () => Promise<boolean>, deadlineMs = 60_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(50);
  }
}

/** A token with its payload changed after signing: the signature no longer matches. */
function tampered(jwt: string, change: Record<string, unknown>): string {
  const [h, p, s] = jwt.split(".") as [string, string, string];
  const claims = { ...JSON.parse(Buffer.from(p, "base64url").toString()), ...change };
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
}

beforeAll(async () => {
  root = tempDir("cryptoutil-federation-");
  port = await freePort();
  authzUrl = `https://127.0.0.1:${port}`;
  authz = await startIdentity();
  const bootSecret = readFileSync(join(root, "identity-authz", "bootstrap-admin.secret"), "utf8").trim();
  const admin = async (path: string, body: unknown) => {
    const r = await authz!.call(`/service/api/v1${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${await token("root", "bootstrap-admin", bootSecret)}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (r.status !== 201) throw new Error(`authz admin ${path}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<{ client_secret: string }>;
  };
  await admin("/tenants", { id: TENANT });
  ({ client_secret: secret } = await admin(`/tenants/${TENANT}/clients`, {
    client_id: "fed-client",
    client_name: "federation test",
    grant_types: ["client_credentials"],
    scopes: ["pets:read", "pets:write"],
    audiences: ["learn-ps"],
  }));
  for (let i = 0; i < 8; i++) tokens.push(await token(TENANT, "fed-client", secret, "learn-ps"));
  // Polled fast: the breaker opens and closes by health polling alone.
  learn.cached = await startLearn("cached_jwks", { health_interval_ms: 100 });
  learn.allow = await startLearn("allow_all", { health_interval_ms: 100 });
  // Polled once at start only: its breaker moves with its own traffic, so half_open is seen.
  learn.reject = await startLearn("reject_all", { health_interval_ms: 3_600_000, breaker_failures: 1, breaker_cooldown_ms: 4000 });
}, 120_000);

afterAll(async () => {
  for (const svc of Object.values(learn)) await svc?.stop();
  await authz?.stop();
});

describe("identity federation: fallbacks, breaker, metrics", () => {
  test("identity up: every mode verifies tokens against identity's JWKS; breakers closed", async () => {
    for (const svc of Object.values(learn)) {
      expect((await pets(svc, tokens[0]!)).status).toBe(200);
      const r = await readyz(svc);
      expect(r.http).toBe(200);
      expect(r.identity).toMatchObject({ breaker: "closed", reachable: true, in_fallback: false, ok: true });
      expect(await gauge(svc)).toBe("0");
    }
    // allow_all verifies signatures while identity is up.
    expect((await pets(learn.allow, tampered(tokens[1]!, { sub: "mallory" }))).status).toBe(401);
  }, 60_000);

  test("identity stopped: each fallback behaves as configured", async () => {
    await authz!.stop();
    authz = undefined;

    // Health polling alone opens the breakers of the polled instances.
    for (const svc of [learn.cached, learn.allow]) await until("the breaker opens by polling", async () => (await readyz(svc)).identity.breaker === "open");

    // cached_jwks: a token signed before, never seen here, verifies with the cached JWKS.
    expect((await pets(learn.cached, tokens[2]!)).status).toBe(200);
    expect((await pets(learn.cached, tampered(tokens[3]!, { sub: "mallory" }))).status).toBe(401);
    const cached = await readyz(learn.cached);
    expect(cached.http).toBe(200);
    // Polling keeps trying: after each cool-down a failed trial opens it again.
    expect(cached.identity).toMatchObject({ reachable: false, in_fallback: true, ok: true, fallback: "cached_jwks" });
    expect(["open", "half_open"]).toContain(cached.identity.breaker);
    expect(["1", "2"]).toContain((await gauge(learn.cached))!);
    // Failed probes: 503 `shutting_down` during identity's drain ("status"), then refused ("network").
    const text = await metricsText(learn.cached);
    expect(text).toMatch(/^federation_request_failures_total\{service="learn-ps",federated_service="identity",reason="(status|network)"\} [1-9]\d*$/m);
    expect(text).toMatch(/^federation_request_duration_seconds_count\{service="learn-ps",federated_service="identity"\} [1-9]\d*$/m);

    // allow_all (development mode): the claims are checked, the signature is not.
    expect((await pets(learn.allow, tampered(tokens[3]!, { sub: "mallory" }))).status).toBe(200);
    expect((await pets(learn.allow, tampered(tokens[3]!, { aud: "sm-kms" }))).status).toBe(401);
    expect((await readyz(learn.allow)).http).toBe(200);

    // reject_all: the first request finds identity gone and opens the breaker (1 failure)...
    const first = await pets(learn.reject, tokens[4]!);
    expect(first.status).toBe(503);
    expect(((await first.json()) as { error: { code: string } }).error.code).toBe("unavailable");
    // ...then everything is refused, even a token accepted (and cached) before.
    const again = await pets(learn.reject, tokens[0]!);
    expect(again.status).toBe(503);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe("unavailable");
    const rejected = await readyz(learn.reject);
    expect(rejected.http).toBe(503);
    expect(rejected.identity).toMatchObject({ breaker: "open", in_fallback: true, ok: false, fallback: "reject_all" });
    expect(await gauge(learn.reject)).toBe("1");

    // After the cool-down the breaker half-opens (no traffic yet): the gauge shows 2.
    await until("the breaker half-opens", async () => (await gauge(learn.reject)) === "2");
    expect((await readyz(learn.reject)).identity.breaker).toBe("half_open");
  }, 120_000);

  test("identity restarted: the breakers half-open and close; tokens verify again", async () => {
    authz = await startIdentity();

    // reject_all: the next request is the half-open trial; it reaches identity and closes the breaker.
    expect((await pets(learn.reject, tokens[5]!)).status).toBe(200);
    expect(await gauge(learn.reject)).toBe("0");
    expect((await readyz(learn.reject)).http).toBe(200);

    // The polled instances close by health polling; their logs show open -> half_open -> closed.
    for (const svc of [learn.cached, learn.allow]) {
      await until("the breaker closes by polling", async () => (await readyz(svc)).identity.breaker === "closed");
      const moves = svc.logs.filter((l) => l.includes("circuit breaker changed state")).map((l) => JSON.parse(l) as { from: string; to: string });
      // Failed trials while identity was down may repeat open -> half_open -> open.
      const path = moves.map((m) => `${m.from}->${m.to}`).join(" ");
      expect(path).toMatch(/^closed->open( open->half_open half_open->open)* open->half_open half_open->closed$/);
      expect(await gauge(svc)).toBe("0");
      expect((await readyz(svc)).identity).toMatchObject({ reachable: true, in_fallback: false, ok: true });
    }
    expect((await pets(learn.cached, tokens[6]!)).status).toBe(200);
    // allow_all checks signatures again once identity is back.
    expect((await pets(learn.allow, tampered(tokens[7]!, { sub: "mallory" }))).status).toBe(401);
    expect((await pets(learn.allow, tokens[7]!)).status).toBe(200);
  }, 120_000);
});
