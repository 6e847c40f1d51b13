/**
 * identity-rs's token validation as a Workers-style module for an edge runtime (workerd):
 * `GET /service/api/v1/profile` answered at the edge from the verified access token alone
 * (the same answer as the origin's for a bearer token), so a customer's edge can tell who a
 * caller is without a round trip. The notes API keeps state and stays at the origin, as do
 * DPoP-bound and certificate-bound tokens (edge/token.ts says why).
 *
 * Bindings: IDENTITY (the token issuer's server), ISSUER (expected `iss`, may hold
 * `{tenant}`), JWKS_PATH (path of the JWKS on IDENTITY, may hold `{tenant}`), AUDIENCE
 * (default identity-rs), REFRESH_S (how long the JWKS copy is kept, default 60).
 */
import { EdgeCache, edgeError, refreshMsOf } from "./cache.ts";
import { verifyAccessToken, type TokenEnv } from "./token.ts";

interface Env extends TokenEnv {
  REFRESH_S?: string;
}

let cache: EdgeCache | undefined;

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    cache ??= new EdgeCache(refreshMsOf(env));
    const url = new URL(req.url);
    if (url.pathname !== "/service/api/v1/profile") return edgeError(404, "not_found", "not served at the edge");
    if (req.method !== "GET") return edgeError(405, "method_not_allowed", "only the profile is served at the edge");
    try {
      const who = await verifyAccessToken(req, cache, env, { audience: "identity-rs" });
      if (who instanceof Response) return who;
      const p = who.payload;
      const profile = {
        tenant: who.tenant,
        subject: typeof p.sub === "string" ? p.sub : "",
        client_id: typeof p.client_id === "string" ? p.client_id : null,
        scopes: String(p.scope ?? "").split(" ").filter(Boolean).sort(),
        binding: "none",
      };
      return new Response(JSON.stringify(profile), { headers: { "content-type": "application/json", "cache-control": "private, no-store" } });
    } catch {
      return edgeError(503, "unavailable", "the issuer's keys cannot be fetched and none are cached");
    }
  },
};
