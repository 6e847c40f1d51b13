/**
 * The identity fallbacks inside the bearer verifier, with a scripted identity (fetch) and an
 * injected clock: what each mode does when the JWKS cannot be fetched, and how long a
 * cached JWKS is trusted.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { BearerVerifier } from "../../src/auth/bearer.ts";
import { defaultFederationConfig, type FederationConfig } from "../../src/federation/config.ts";
import { Federation } from "../../src/federation/federation.ts";
import { FakeClock } from "./fake-clock.ts";

const BASE = "https://identity.test:18000";
let privateKey: CryptoKey;
let jwk: JWK;

beforeAll(async () => {
  const pair = await generateKeyPair("ES256");
  privateKey = pair.privateKey as CryptoKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256" };
});

const mint = (claims: Record<string, unknown> = {}) =>
  new SignJWT({ scope: "pets:read", ...claims })
    .setProtectedHeader({ alg: "ES256", kid: "k1", typ: "at+jwt" })
    .setIssuer(`${BASE}/t/demo`)
    .setAudience("learn-ps")
    .setSubject("client-1")
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(privateKey);

function setup(fallback: FederationConfig["identity"]["fallback"], identity: Partial<FederationConfig["identity"]> = {}) {
  const clock = new FakeClock();
  const state = { up: true, fetches: 0 };
  const config = defaultFederationConfig();
  Object.assign(config.identity, { fallback, retries: 0, breaker_failures: 3, jwks_refresh_ms: 60_000, jwks_max_stale_ms: 3_600_000 }, identity);
  const fed = new Federation(config, { identity: { baseUrl: BASE } }, {
    clock,
    fetch: async (url) => {
      state.fetches++;
      if (!state.up) throw new TypeError("connection refused");
      return url.endsWith("/t/demo/jwks") ? Response.json({ keys: [jwk] }) : new Response("not found", { status: 404 });
    },
  });
  const verifier = new BearerVerifier({
    issuer: `${BASE}/t/{tenant}`,
    jwksUrl: `${BASE}/t/{tenant}/jwks`,
    audience: "learn-ps",
    clockToleranceS: 5,
    algorithms: ["ES256"],
    keys: fed.identity,
  });
  const verify = (token: string) => verifier.verify(`Bearer ${token}`);
  return { fed, clock, state, verify };
}

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as { code: string }).code;
  }
};

/** A token whose payload was changed after signing. */
const tamper = (jwt: string, change: Record<string, unknown> = { sub: "mallory" }) => {
  const [h, p, s] = jwt.split(".") as [string, string, string];
  const claims = { ...JSON.parse(Buffer.from(p, "base64url").toString()), ...change };
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
};

describe("identity fallbacks in the bearer verifier", () => {
  test("cached_jwks: a failed refresh verifies with the cached JWKS, until it is older than jwks_max_stale_ms", async () => {
    const { clock, state, verify, fed } = setup("cached_jwks");
    expect((await verify(await mint())).subject).toBe("client-1");
    state.up = false;
    await clock.advance(60_000); // the cached set is due for a refresh, which fails
    expect(await codeOf(verify(await mint({ n: 1 })))).toBe("ok");
    expect(await codeOf(verify(tamper(await mint({ n: 2 }))))).toBe("invalid_token");
    expect(fed.readiness().ok).toBe(true);
    await clock.advance(3_600_000); // now older than the bound
    expect(await codeOf(verify(await mint({ n: 3 })))).toBe("unavailable");
    expect(fed.identity!.covered()).toBe(false);
  });

  test("cached_jwks with nothing cached yet: 503 unavailable", async () => {
    const { state, verify } = setup("cached_jwks");
    state.up = false;
    expect(await codeOf(verify(await mint()))).toBe("unavailable");
  });

  test("an unknown tenant's JWKS (404 from a live identity) is the caller's 401, never a fallback", async () => {
    const { verify } = setup("allow_all");
    const token = await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer(`${BASE}/t/nobody`).setAudience("learn-ps").setSubject("x").setExpirationTime("5m").sign(privateKey);
    expect(await codeOf(verify(token))).toBe("invalid_token");
  });

  test("reject_all: a failed fetch is 503; once the breaker is open even a verified token is refused", async () => {
    const { state, verify, fed } = setup("reject_all", { breaker_failures: 1 });
    const seen = await mint();
    expect(await codeOf(verify(seen))).toBe("ok");
    state.up = false;
    const fetches = state.fetches;
    expect(await codeOf(verify(await mint({ n: 1 })))).toBe("ok"); // fresh cache: identity not asked
    expect(state.fetches).toBe(fetches);
    await fed.client("identity")!.probe(); // the health poll finds identity gone: open
    expect(await codeOf(verify(seen))).toBe("unavailable");
    expect(fed.readiness()).toMatchObject({ ok: false, peers: { identity: { breaker: "open", in_fallback: true, fallback: "reject_all" } } });
  });

  test("allow_all: a failed fetch, and an open breaker, skip the signature but not the claims; nothing is cached", async () => {
    const { state, verify, fed } = setup("allow_all", { breaker_failures: 2 });
    state.up = false;
    // Breaker still closed: the fetch fails and the fallback applies to this request.
    expect((await verify(tamper(await mint()))).subject).toBe("mallory");
    await fed.client("identity")!.probe();
    expect(fed.client("identity")!.breaker.state).toBe("open");
    expect(await codeOf(verify(tamper(await mint())))).toBe("ok");
    expect(await codeOf(verify(tamper(await mint(), { aud: "sm-kms" })))).toBe("invalid_token");
    expect(await codeOf(verify(tamper(await mint(), { exp: Math.floor(Date.now() / 1000) - 3600 })))).toBe("invalid_token");
    expect(await codeOf(verify(tamper(await mint(), { iss: "https://elsewhere.test/t/demo" })))).toBe("invalid_token");
    expect(fed.readiness().ok).toBe(true);
  });
});
