/**
 * The access-token check the edge modules share: a JWT of the configured issuer (which may
 * hold `{tenant}`), verified against the issuer's JWKS copied at the edge (EdgeCache), its
 * audience and expiry checked. Sender-constrained tokens (`cnf`) are refused here: the edge
 * sees no client certificate and keeps no DPoP replay state across isolates, so those go to
 * the origin.
 */
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload } from "jose";
import { edgeError, fromOrigin, type EdgeCache, type Fetcher } from "./cache.ts";

export interface TokenEnv {
  IDENTITY: Fetcher;
  ISSUER: string;
  JWKS_PATH: string;
  AUDIENCE?: string;
}

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const ALGORITHMS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"];

const unauthenticated = (message: string) => {
  const r = edgeError(401, "unauthenticated", message);
  r.headers.set("www-authenticate", 'Bearer error="invalid_token"');
  return r;
};

/** The verified token's tenant and claims, or the error answer (401, 403 without `scope`, 503). */
export async function verifyAccessToken(req: Request, c: EdgeCache, env: TokenEnv, expect: { audience: string; scope?: string }): Promise<{ tenant: string; payload: JWTPayload } | Response> {
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
    payload = (await jwtVerify(token, createLocalJWKSet(jwks), { issuer, audience: env.AUDIENCE ?? expect.audience, algorithms: ALGORITHMS })).payload;
  } catch (e) {
    return unauthenticated(`the token is not valid here (${(e as { code?: string }).code ?? "invalid"})`);
  }
  if (payload.cnf !== undefined) return unauthenticated("a sender-constrained token is not a bearer token; send it to the origin");
  const tenant = issuerTenant || (typeof payload.tenant === "string" ? payload.tenant : "");
  if (!TENANT.test(tenant)) return unauthenticated("the token names no tenant");
  const scopes = new Set(String(payload.scope ?? "").split(" "));
  if (expect.scope && !scopes.has(expect.scope)) return edgeError(403, "insufficient_scope", `the token lacks the scope ${expect.scope}`);
  return { tenant, payload };
}
