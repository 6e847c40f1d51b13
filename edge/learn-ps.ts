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
import { answer, EdgeCache, edgeError, fromOrigin, refreshMsOf, type Fetcher } from "./cache.ts";
import { verifyAccessToken, type TokenEnv } from "./token.ts";

interface Env extends TokenEnv {
  ORIGIN: Fetcher;
  REFRESH_S?: string;
}

const READ_PATH = /^\/service\/api\/v1\/pets(?:\/[A-Za-z0-9-]{1,64})?$/;
let cache: EdgeCache | undefined;

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    cache ??= new EdgeCache(refreshMsOf(env));
    const c = cache;
    const url = new URL(req.url);
    if (!READ_PATH.test(url.pathname)) return edgeError(404, "not_found", "not served at the edge");
    if (req.method !== "GET") return edgeError(405, "method_not_allowed", "only reads are served at the edge; writes go to the origin");
    try {
      const who = await verifyAccessToken(req, c, env, { audience: "learn-ps", scope: "pets:read" });
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
