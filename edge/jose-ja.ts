/**
 * jose-ja's public paths as a Workers-style module for an edge runtime (workerd): the public
 * JWKS (`/t/{tenant}/jwks`, `/t/{tenant}/jwks/{key}`), copied from the origin and refreshed
 * after REFRESH_S, and JWT validation against those keys
 * (`POST /t/{tenant}/jwks/{key}/validate`, body `{ "jwt": "...", "issuer"?, "audience"? }`).
 * Only public keys reach the edge; signing, encryption and key management stay at the origin.
 *
 * Bindings: ORIGIN (service: jose-ja's public HTTPS server), REFRESH_S (default 60).
 */
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet } from "jose";
import { answer, EdgeCache, edgeError, fromOrigin, refreshMsOf, type Fetcher } from "./cache.ts";

interface Env {
  ORIGIN: Fetcher;
  REFRESH_S?: string;
}

const SEGMENT = "[A-Za-z0-9._~-]{1,128}";
const JWKS_PATH = new RegExp(`^/t/(${SEGMENT})/jwks(?:/(${SEGMENT}))?$`);
const VALIDATE_PATH = new RegExp(`^/t/(${SEGMENT})/jwks/(${SEGMENT})/validate$`);
const MAX_BODY = 64 * 1024;
/** What a key published by jose-ja may sign with (its `alg` members are checked against this). */
const SIGNING_ALGS = new Set(["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]);

let cache: EdgeCache | undefined;

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", "cache-control": "no-store" } });
}

async function validate(req: Request, c: EdgeCache, env: Env, jwksPath: string): Promise<Response> {
  if (!/^application\/json\s*(;|$)/i.test(req.headers.get("content-type") ?? "")) return edgeError(415, "unsupported_media_type", "the body must be application/json");
  if (Number(req.headers.get("content-length") ?? 0) > MAX_BODY) return edgeError(413, "payload_too_large", `the body exceeds ${MAX_BODY} bytes`);
  const text = await req.text();
  if (text.length > MAX_BODY) return edgeError(413, "payload_too_large", `the body exceeds ${MAX_BODY} bytes`);
  let body: { jwt?: unknown; issuer?: unknown; audience?: unknown };
  try {
    body = JSON.parse(text);
  } catch {
    return edgeError(400, "malformed_input", "the body is not JSON");
  }
  if (!body || typeof body !== "object" || typeof body.jwt !== "string" || body.jwt.length === 0) return edgeError(400, "validation_failed", "jwt: a compact JWT is required");
  for (const k of ["issuer", "audience"] as const) if (body[k] !== undefined && typeof body[k] !== "string") return edgeError(400, "validation_failed", `${k}: must be a string`);
  const keys = await c.get(`get:${jwksPath}`, () => fromOrigin(env.ORIGIN, jwksPath));
  if (keys.status === 404) return edgeError(404, "not_found", "no such key");
  if (keys.status !== 200) return edgeError(503, "unavailable", "the key set cannot be fetched from the origin");
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(new TextDecoder().decode(keys.body)) as JSONWebKeySet;
  } catch {
    return edgeError(503, "unavailable", "the origin's key set is not JSON");
  }
  const algorithms = [...new Set(jwks.keys.map((k) => k.alg).filter((a): a is string => typeof a === "string" && SIGNING_ALGS.has(a)))];
  if (algorithms.length === 0) return json(200, { valid: false, error: "no signing key in the key set" });
  try {
    const r = await jwtVerify(body.jwt, createLocalJWKSet(jwks), {
      algorithms,
      ...(body.issuer ? { issuer: body.issuer as string } : {}),
      ...(body.audience ? { audience: body.audience as string } : {}),
    });
    return json(200, { valid: true, payload: r.payload, protected_header: r.protectedHeader });
  } catch (e) {
    if (e instanceof errors.JOSEError) return json(200, { valid: false, error: e.code });
    return json(200, { valid: false, error: "ERR_JWT_INVALID" });
  }
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    cache ??= new EdgeCache(refreshMsOf(env));
    const c = cache;
    const path = new URL(req.url).pathname;
    const v = VALIDATE_PATH.exec(path);
    if (v) {
      if (req.method !== "POST") return edgeError(405, "method_not_allowed", "validation is POST");
      try {
        return await validate(req, c, env, `/t/${v[1]}/jwks/${v[2]}`);
      } catch {
        return edgeError(503, "unavailable", "the origin cannot be reached and nothing is cached");
      }
    }
    if (JWKS_PATH.test(path)) {
      if (req.method !== "GET" && req.method !== "HEAD") return edgeError(405, "method_not_allowed", "only GET and HEAD");
      try {
        return answer(c, await c.get(`get:${path}`, () => fromOrigin(env.ORIGIN, path)));
      } catch {
        return edgeError(503, "unavailable", "the origin cannot be reached and nothing is cached");
      }
    }
    return edgeError(404, "not_found", "not served at the edge");
  },
};
