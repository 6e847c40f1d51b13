/**
 * learn-ps's read API as a Workers-style module for an edge runtime (workerd): `GET
 * /service/api/v1/pets` and `/service/api/v1/pets/{id}`. The edge checks the bearer token
 * itself (signature against the issuer's JWKS, copied at the edge; issuer, audience, expiry,
 * no sender constraint; scope `pets:read`), then answers from its copy of the tenant's state,
 * fetched from the origin over HTTPS with the caller's token on a miss and again after
 * REFRESH_S. A copy is keyed by the verified tenant, so a tenant only ever sees its own rows.
 * Writes are not served here: they go to the origin.
 *
 * Bindings: ORIGIN (learn-ps), IDENTITY (the token issuer's server), ISSUER (expected `iss`,
 * may hold `{tenant}`), JWKS_PATH (path of the JWKS on IDENTITY, may hold `{tenant}`),
 * AUDIENCE (default learn-ps), REFRESH_S (default 60).
 */
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload } from "jose";
import { answer, EdgeCache, edgeError, fromOrigin, refreshMsOf, type Fetcher } from "./cache.ts";

interface Env {
  ORIGIN: Fetcher;
  IDENTITY: Fetcher;
  ISSUER: string;
  JWKS_PATH: string;
  AUDIENCE?: string;
  REFRESH_S?: string;
}

const READ_PATH = /^\/service\/api\/v1\/pets(?:\/[A-Za-z0-9-]{1,64})?$/;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const ALGORITHMS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"];

let cache: EdgeCache | undefined;

const unauthenticated = (message: string) => {
  const r = edgeError(401, "unauthenticated", message);
  r.headers.set("www-authenticate", 'Bearer error="invalid_token"');
  return r;
};

/** The verified token's tenant, or the error answer. */
async function authenticate(req: Request, c: EdgeCache, env: Env): Promise<{ tenant: string } | Response> {
  const h = req.headers.get("authorization") ?? "";
  if (!/^Bearer [A-Za-z0-9._~+/-]+=*$/.test(h)) return unauthenticated("a bearer access token is required");
  const token = h.slice(7);
  let issuerTenant = "";
  let issuer = env.ISSUER;
  if (issuer.includes("{tenant}")) {
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      return unauthenticated("the token is not a JWT");
    }
    const [before, after] = issuer.split("{tenant}") as [string, string];
    const t = typeof iss === "string" && iss.startsWith(before) && iss.endsWith(after) ? iss.slice(before.length, iss.length - after.length) : "";
    if (!TENANT.test(t)) return unauthenticated("token claim 'iss' is not acceptable");
    issuerTenant = t;
    issuer = issuer.replace("{tenant}", t);
  }
  const jwksPath = env.JWKS_PATH.replace("{tenant}", encodeURIComponent(issuerTenant));
  const keys = await c.get(`jwks:${jwksPath}`, () => fromOrigin(env.IDENTITY, jwksPath), (a) => a.status === 200);
  if (keys.status !== 200) return edgeError(503, "unavailable", "the issuer's keys cannot be fetched");
  let payload: JWTPayload;
  try {
    const jwks = JSON.parse(new TextDecoder().decode(keys.body)) as JSONWebKeySet;
    payload = (await jwtVerify(token, createLocalJWKSet(jwks), { issuer, audience: env.AUDIENCE ?? "learn-ps", algorithms: ALGORITHMS })).payload;
  } catch (e) {
    return unauthenticated(`the token is not valid here (${(e as { code?: string }).code ?? "invalid"})`);
  }
  if (payload.cnf !== undefined) return unauthenticated("a sender-constrained token is not a bearer token");
  const tenant = issuerTenant || (typeof payload.tenant === "string" ? payload.tenant : "");
  if (!TENANT.test(tenant)) return unauthenticated("the token names no tenant");
  const scopes = new Set(String(payload.scope ?? "").split(" "));
  if (!scopes.has("pets:read")) return edgeError(403, "insufficient_scope", "the token lacks the scope pets:read");
  return { tenant };
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    cache ??= new EdgeCache(refreshMsOf(env));
    const c = cache;
    const url = new URL(req.url);
    if (!READ_PATH.test(url.pathname)) return edgeError(404, "not_found", "not served at the edge");
    if (req.method !== "GET") return edgeError(405, "method_not_allowed", "only reads are served at the edge; writes go to the origin");
    try {
      const who = await authenticate(req, c, env);
      if (who instanceof Response) return who;
      const target = url.pathname + url.search;
      const a = await c.get(`${who.tenant}:${target}`, () => fromOrigin(env.ORIGIN, target, { headers: { authorization: req.headers.get("authorization")! } }), (x) => x.status === 200 || x.status === 404);
      const r = answer(c, a);
      // Tenant data: private to the caller, never in a shared cache.
      r.headers.set("cache-control", "private, no-store");
      return r;
    } catch {
      return edgeError(503, "unavailable", "the origin cannot be reached and nothing is cached");
    }
  },
};
