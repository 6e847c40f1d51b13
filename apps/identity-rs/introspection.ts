/**
 * Opaque access tokens: RFC 7662 introspection at the issuer, with identity-rs's own client
 * credentials (`client_secret_basic`), through the federated identity client (timeouts,
 * retries, breaker). JWTs never come here: the template verifies them locally with the JWKS.
 *
 * An answer counts only when it is `active`, an access token (not `token_type:
 * refresh_token`), from the configured issuer (whose `/t/{tenant}` names the tenant), for this
 * service's audience and not expired. Active answers are cached for `cache_s` at most (never
 * past the token's `exp`), so a revoked opaque token may work that long; inactive ones are not
 * cached.
 */
import * as v from "valibot";
import { readFileSync } from "node:fs";
import type { ServiceConfig } from "../../src/service/config.ts";
import type { Logger } from "../../src/service/log.ts";
import type { Federation } from "../../src/federation/federation.ts";
import { FederationError } from "../../src/federation/errors.ts";
import { AppError } from "../../src/service/errors.ts";
import type { Principal, VerifiedToken } from "../../src/auth/bearer.ts";
import type { RsConfig } from "./config.ts";

const Answer = v.object({
  active: v.boolean(),
  iss: v.optional(v.string()),
  sub: v.optional(v.string()),
  aud: v.optional(v.union([v.string(), v.array(v.string())])),
  scope: v.optional(v.string()),
  exp: v.optional(v.number()),
  client_id: v.optional(v.string()),
  token_type: v.optional(v.string()),
  cnf: v.optional(v.record(v.string(), v.unknown())),
});

const MAX_CACHE = 10_000;
const TENANT_OF_ISSUER = /\/t\/([A-Za-z0-9._-]{1,64})$/;

export function introspector(cfg: NonNullable<RsConfig["introspection"]>, deps: { config: ServiceConfig; logger: Logger; federation: Federation }) {
  const secret = readFileSync(cfg.client_secret_file, "utf8").trim();
  const basic = `Basic ${btoa(`${encodeURIComponent(cfg.client_id)}:${encodeURIComponent(secret)}`)}`;
  const issuer = cfg.issuer ?? cfg.endpoint.replace(/\/introspect$/, "");
  const tenant = issuer.match(TENANT_OF_ISSUER)?.[1];
  const audience = deps.config.auth.audience;
  const cache = new Map<string, { verified: VerifiedToken; until: number }>();

  return async (token: string): Promise<VerifiedToken | null> => {
    const now = Date.now() / 1000;
    const hit = cache.get(token);
    if (hit && hit.until > now) return hit.verified;
    const client = deps.federation.client("identity");
    if (!client) throw new AppError("unavailable", "introspection needs the identity service (auth.jwks_url or federation.identity.url)");
    let res: Response;
    try {
      res = await client.request(cfg.endpoint, {
        method: "POST",
        idempotent: true,
        headers: { authorization: basic, "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: new URLSearchParams({ token, token_type_hint: "access_token" }).toString(),
      });
    } catch (e) {
      if (e instanceof FederationError) throw new AppError("unavailable", "the token issuer could not be asked about the access token", { cause: e, headers: { "Retry-After": "5" } });
      throw e;
    }
    const parsed = v.safeParse(Answer, res.ok ? await res.json().catch(() => undefined) : undefined);
    if (!parsed.success) {
      deps.logger.warn("introspection answered unexpectedly", { status: res.status });
      throw new AppError("unavailable", "the token issuer's introspection answer was not usable", { headers: { "Retry-After": "5" } });
    }
    const a = parsed.output;
    const auds = Array.isArray(a.aud) ? a.aud : a.aud === undefined ? [] : [a.aud];
    if (!a.active || a.token_type === "refresh_token" || a.iss !== issuer || !tenant || !a.sub || !auds.includes(audience) || typeof a.exp !== "number" || a.exp <= now) return null;
    const cnf = a.cnf as { jkt?: unknown; "x5t#S256"?: unknown } | undefined;
    const principal: Principal = {
      kind: "service",
      tenant,
      subject: a.sub,
      scopes: new Set((a.scope ?? "").split(" ").filter(Boolean)),
      clientId: a.client_id,
      confirmation: cnf ? { jkt: typeof cnf.jkt === "string" ? cnf.jkt : undefined, "x5t#S256": typeof cnf["x5t#S256"] === "string" ? cnf["x5t#S256"] : undefined } : undefined,
    };
    const verified = { principal, exp: a.exp };
    if (cache.size >= MAX_CACHE) cache.clear();
    cache.set(token, { verified, until: Math.min(a.exp, now + cfg.cache_s) });
    return verified;
  };
}
