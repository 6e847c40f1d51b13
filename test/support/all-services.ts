/**
 * Every service of the suite over real HTTPS in one temp root, each with one JSON endpoint the
 * robustness tests aim at (and a well-formed request for it), tokens from one test issuer, and a
 * normal API call to show that the service keeps serving. Used by the JSON-bomb acceptance test
 * and the JSON fuzz test.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { identityIdp } from "../../apps/identity-idp/service.ts";
import { joseJa } from "../../apps/jose-ja/service.ts";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { smKms } from "../../apps/sm-kms/service.ts";
import type { ServiceDefinition } from "../../src/service/context.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { startAuthzStub, type AuthzStub } from "../identity/support/idp-authz-stub.ts";
import { BASE_URL, PROFILES } from "../pki-ca/helpers.ts";
import { startTestIssuer, type TestIssuer } from "./issuer.ts";
import { quiet, startTestService, tempDir, type TestService } from "./service.ts";

/** One JSON endpoint of a service: where to send, with which token, and a valid body to mutate. */
export interface JsonTarget {
  service: string;
  svc: TestService;
  method: string;
  path: string;
  /** Bearer token with the route's scopes; none for anonymous routes. */
  token?: string;
  /** A body the schema accepts (the seed of mutations). */
  seed: unknown;
  /** A normal authenticated API call that must keep answering 2xx; `claims` are its token's. */
  normal: { method: string; path: string; body?: unknown; token: string; claims: { aud: string; scope: string; tenant: string } };
}

export interface AllServices {
  targets: JsonTarget[];
  /** The issuer every service trusts (to mint tokens with other claims). */
  issuer: TestIssuer;
  stop(): Promise<void>;
}

const TENANT = "tenant-a";

/** Starts the six services one after the other (each start does TLS and key work; in parallel they only contend). */
export async function startAllServices(): Promise<AllServices> {
  const issuer: TestIssuer = await startTestIssuer();
  const stub: AuthzStub = await startAuthzStub();
  const root = tempDir("cryptoutil-all-");
  const stubCa = join(root, "authz-stub-ca.pem");
  writeFileSync(stubCa, stub.caPem);
  const services: TestService[] = [];
  const start = async (def: ServiceDefinition, app?: unknown) => {
    const svc = await startTestService(def, {
      issuer,
      root,
      overrides: (c) => {
        quiet(c);
        if (app !== undefined) (c as { app?: unknown }).app = app;
      },
    });
    services.push(svc);
    return svc;
  };
  const claims = new Map<string, { aud: string; scope: string; tenant: string }>();
  const mint = async (aud: string, scope: string, tenant = TENANT) => {
    const token = await issuer.mint({ aud, tenant, scope });
    claims.set(token, { aud, scope, tenant });
    return token;
  };
  try {
    const kms = await start(smKms);
    const jose = await start(joseJa);
    const ca = await start(pkiCa, { base_url: BASE_URL, issuing_cas: ["P-256"], profiles: { server: PROFILES.server } });
    const authz = await start(identityAuthz, { idp_url: stub.url, ca_file: stubCa });
    const idp = await start(identityIdp, { authz_url: stub.url, ca_file: stubCa });
    const pets = await start(learnPs);

    const kmsTok = await mint("sm-kms", "kms:admin kms:encrypt");
    const joseTok = await mint("jose-ja", "jose:admin jose:verify");
    const caTok = await mint("pki-ca", "pki:admin pki:read");
    // identity-authz has one tenant at start, root, whose admins manage every tenant.
    const authzTok = await mint("identity-authz", "identity:admin", "root");
    const idpTok = await mint("identity-idp", "identity:admin");
    const petsTok = await mint("learn-ps", "pets:read pets:write");
    const noKey = "00000000-0000-4000-8000-000000000000";
    const drafts: Array<Omit<JsonTarget, "normal"> & { normal: Omit<JsonTarget["normal"], "claims"> }> = [
      {
        service: "sm-kms",
        svc: kms,
        method: "POST",
        path: "/service/api/v1/keys",
        token: kmsTok,
        seed: { name: "fuzz-key", algorithm: "A256GCM", description: "seed", tags: ["a", "b"] },
        normal: { method: "POST", path: "/service/api/v1/random", body: { bytes: 16 }, token: kmsTok },
      },
      {
        service: "jose-ja",
        svc: jose,
        method: "POST",
        path: `/service/api/v1/keys/${noKey}/jwt/validate`,
        token: joseTok,
        seed: { jwt: "a.b.c", required_claims: ["sub", "aud"] },
        normal: { method: "GET", path: "/service/api/v1/keys", token: joseTok },
      },
      {
        service: "pki-ca",
        svc: ca,
        method: "POST",
        path: "/pki/revoke",
        seed: { certificate: "MIIB", timestamp: new Date().toISOString(), signature: "AAAA" },
        normal: { method: "GET", path: "/service/api/v1/certificates", token: caTok },
      },
      {
        service: "identity-authz",
        svc: authz,
        method: "POST",
        path: "/service/api/v1/tenants/root/clients",
        token: authzTok,
        seed: { client_name: "fuzz", redirect_uris: ["https://app.example.com/cb"], scopes: ["openid"], grant_types: ["authorization_code"] },
        normal: { method: "GET", path: "/service/api/v1/tenants", token: authzTok },
      },
      {
        service: "identity-idp",
        svc: idp,
        method: "POST",
        path: "/service/api/v1/users",
        token: idpTok,
        seed: { username: "fuzz", name: "Fuzz", email: "fuzz@example.com", email_verified: false },
        normal: { method: "GET", path: "/service/api/v1/users", token: idpTok },
      },
      {
        service: "learn-ps",
        svc: pets,
        method: "POST",
        path: "/service/api/v1/pets",
        token: petsTok,
        seed: { name: "Rex", species: "dog", tags: ["good"] },
        normal: { method: "GET", path: "/service/api/v1/pets", token: petsTok },
      },
    ];
    const targets: JsonTarget[] = drafts.map((t) => ({ ...t, normal: { ...t.normal, claims: claims.get(t.normal.token)! } }));
    return { targets, issuer, stop: () => stopAll(services, issuer, stub) };
  } catch (e) {
    await stopAll(services, issuer, stub);
    throw e;
  }
}

async function stopAll(services: TestService[], issuer: TestIssuer, stub: AuthzStub) {
  for (const s of services.reverse()) await s.stop().catch(() => undefined);
  await issuer.stop();
  await stub.stop();
}

/** Sends `body` (a JSON text) to the target; returns status and milliseconds. */
export async function sendJson(t: JsonTarget, body: string): Promise<{ status: number; ms: number; text: string }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (t.token) headers.authorization = `Bearer ${t.token}`;
  const start = performance.now();
  const res = await t.svc.call(t.path, { method: t.method, headers, body });
  const text = await res.text();
  return { status: res.status, ms: performance.now() - start, text };
}

/** The target's normal API call; returns status and milliseconds. */
export async function sendNormal(t: JsonTarget): Promise<{ status: number; ms: number }> {
  const n = t.normal;
  const headers: Record<string, string> = { authorization: `Bearer ${n.token}` };
  if (n.body !== undefined) headers["content-type"] = "application/json";
  const start = performance.now();
  const res = await t.svc.call(n.path, { method: n.method, headers, body: n.body === undefined ? undefined : JSON.stringify(n.body) });
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - start };
}
