/**
 * jose-ja's HTTP layer: routes, schemas, scopes, status codes, JWKS caching and the audit
 * hook. Rules live in domain.ts.
 *
 * Every key operation is audited (principal, operation, key, version, ok or error code),
 * whether it succeeds or fails; the audit row never holds request or response bodies.
 */
import { Elysia } from "elysia";
import { appBase, principalOf, requestInfo } from "../../src/service/http.ts";
import { AppError, notFound } from "../../src/service/errors.ts";
import * as S from "../../schemas/jose-ja.ts";
import { b64u, fromB64u, type JoseService, type Jwks } from "./domain.ts";
import type { AuditLog } from "./audit.ts";

const ADMIN = ["jose:admin"];
const SIGN = ["jose:sign"];
const VERIFY = ["jose:verify"];
const ENCRYPT = ["jose:encrypt"];
const DECRYPT = ["jose:decrypt"];
/** Public keys are for whoever verifies with or encrypts to the key. */
const PUBLIC_KEY_SCOPES = ["jose:admin", "jose:verify", "jose:encrypt"];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const tenantOf = (request: Request) => principalOf(request).tenant;
const utf8 = new TextEncoder();

/** A JWKS response with a strong ETag (SHA-256 of the body); a matching If-None-Match gets 304. */
async function jwksResponse(request: Request, jwks: Jwks, maxAge: number): Promise<Response> {
  const body = JSON.stringify(jwks);
  const etag = `"${b64u(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(body))))}"`;
  const headers = { "cache-control": `public, max-age=${maxAge}`, etag, "content-type": "application/jwk-set+json" };
  const inm = request.headers.get("if-none-match");
  if (inm && inm.split(",").some((t) => ((t = t.trim()), t === "*" || t.replace(/^W\//, "") === etag))) {
    return new Response(null, { status: 304, headers: { "cache-control": headers["cache-control"], etag } });
  }
  return new Response(body, { status: 200, headers });
}

export function joseRoutes(jose: JoseService, audit: AuditLog) {
  /** Runs a key operation and records it in the audit log (see AuditLog.around). */
  const audited = <T>(request: Request, operation: string, keyId: string | null, fn: (tenant: string) => Promise<T>) =>
    audit.around(principalOf(request), operation, keyId, fn, requestInfo(request).id);

  return (
    new Elysia({ tags: ["jose"] } as never)
      .use(appBase)
      // --- JWK management -------------------------------------------------------------------
      .post(
        "/keys",
        async ({ request, body, set }) => {
          set.status = 201;
          return audited(request, "generate", null, (t) => jose.generate(t, body));
        },
        { body: S.GenerateKey, response: { 201: S.ElasticKey }, scopes: ADMIN, detail: { summary: "Generate an elastic key (a key ring of one algorithm)" } },
      )
      .post(
        "/keys/import",
        async ({ request, body, set }) => {
          set.status = 201;
          return audited(request, "import", null, (t) => jose.importNew(t, body));
        },
        { body: S.ImportKey, response: { 201: S.ElasticKey }, scopes: ADMIN, detail: { summary: "Import a public or private JWK as version 1 of a new key ring (import allowed)" } },
      )
      .get("/keys", ({ request, query }) => audited(request, "list", null, (t) => jose.list(t, query)), {
        query: S.ListKeysQuery,
        response: S.ElasticKeyList,
        scopes: ADMIN,
        detail: { summary: "List key rings, filtered by purpose, status or tag, paginated" },
      })
      .get("/keys/:id", ({ request, params }) => audited(request, "get", params.id, (t) => jose.get(t, params.id)), {
        params: S.KeyId,
        response: S.ElasticKeyWithJwk,
        scopes: ADMIN,
        detail: { summary: "Get a key ring, its versions and its current public JWK (never private material)" },
      })
      .get(
        "/keys/:id/jwk",
        ({ request, params, query }) => {
          const p = principalOf(request);
          if (!PUBLIC_KEY_SCOPES.some((s) => p.scopes.has(s))) throw new AppError("insufficient_scope", `one of these scopes is needed: ${PUBLIC_KEY_SCOPES.join(" ")}`);
          return audited(request, "get_jwk", params.id, (t) => jose.publicJwk(t, params.id, query.version));
        },
        { params: S.KeyId, query: S.VersionQuery, response: S.PublicJwk, detail: { summary: "A version's public JWK (default current)" } },
      )
      .post("/keys/:id/import", ({ request, params, body }) => audited(request, "import_version", params.id, (t) => jose.importVersion(t, params.id, body.jwk)), {
        params: S.KeyId,
        body: S.ImportVersion,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Import a JWK as the new current version of a key ring that allows import" },
      })
      .patch("/keys/:id", ({ request, params, body }) => audited(request, "update", params.id, (t) => jose.update(t, params.id, body)), {
        params: S.KeyId,
        body: S.UpdateKey,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Update description, tags, import allowed, minimum decryption version (older versions leave the JWKS)" },
      })
      .post("/keys/:id/disable", ({ request, params }) => audited(request, "disable", params.id, (t) => jose.disable(t, params.id)), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Disable the key (every operation is refused; its public keys stay published)" },
      })
      .post("/keys/:id/enable", ({ request, params }) => audited(request, "enable", params.id, (t) => jose.enable(t, params.id)), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Enable a disabled key" },
      })
      .delete("/keys/:id", ({ request, params, query }) => audited(request, "delete", params.id, (t) => jose.delete(t, params.id, query.waiting_period_days)), {
        params: S.KeyId,
        query: S.DeleteQuery,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Schedule deletion after a waiting period of 7..30 days (default 30)" },
      })
      .post("/keys/:id/restore", ({ request, params }) => audited(request, "restore", params.id, (t) => jose.restore(t, params.id)), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Cancel a scheduled deletion (the key comes back disabled)" },
      })
      .post("/keys/:id/rotate", ({ request, params }) => audited(request, "rotate", params.id, (t) => jose.rotate(t, params.id)), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Rotate: a new version becomes current; older ones stay published and verify" },
      })
      .put("/keys/:id/rotation", ({ request, params, body }) => audited(request, "set_rotation", params.id, (t) => jose.setRotation(t, params.id, body.rotation_period_days)), {
        params: S.KeyId,
        body: S.RotationSchedule,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Set (days) or clear (null) the automatic rotation schedule" },
      })
      // --- JWS / JWE / JWT ------------------------------------------------------------------
      .post("/keys/:id/sign", ({ request, params, body }) => audited(request, "sign", params.id, (t) => jose.sign(t, params.id, fromB64u(body.payload), body)), {
        params: S.KeyId,
        body: S.SignRequest,
        response: S.SignResult,
        scopes: SIGN,
        detail: { summary: "Sign to a compact JWS with the current version" },
      })
      .post("/keys/:id/verify", ({ request, params, body }) => audited(request, "verify", params.id, (t) => jose.verify(t, params.id, body.jws)), {
        params: S.KeyId,
        body: S.VerifyRequest,
        response: S.VerifyResult,
        scopes: VERIFY,
        detail: { summary: "Verify a compact JWS (version from its kid); a bad signature is 400 signature_invalid" },
      })
      .post("/keys/:id/encrypt", ({ request, params, body }) => audited(request, "encrypt", params.id, (t) => jose.encrypt(t, params.id, fromB64u(body.plaintext), body.cty)), {
        params: S.KeyId,
        body: S.EncryptRequest,
        response: S.EncryptResult,
        scopes: ENCRYPT,
        detail: { summary: "Encrypt to a compact JWE with the current version" },
      })
      .post(
        "/keys/:id/decrypt",
        ({ request, params, body }) =>
          audited(request, "decrypt", params.id, async (t) => {
            const r = await jose.decrypt(t, params.id, body.jwe);
            return { kid: r.kid, version: r.version, plaintext: b64u(r.plaintext) };
          }),
        { params: S.KeyId, body: S.DecryptRequest, response: S.DecryptResult, scopes: DECRYPT, detail: { summary: "Decrypt a compact JWE (version from its kid)" } },
      )
      .post("/keys/:id/jwt", ({ request, params, body }) => audited(request, "jwt_issue", params.id, (t) => jose.issueJwt(t, params.id, body)), {
        params: S.KeyId,
        body: S.JwtIssueRequest,
        response: S.JwtIssueResult,
        scopes: SIGN,
        detail: { summary: "Issue a JWT: the caller's claims plus iat and exp (from ttl_s), iss/aud/sub as given, typ" },
      })
      .post("/keys/:id/jwt/validate", ({ request, params, body }) => audited(request, "jwt_validate", params.id, (t) => jose.validateJwt(t, params.id, body)), {
        params: S.KeyId,
        body: S.JwtValidateRequest,
        response: S.JwtValidateResult,
        scopes: VERIFY,
        detail: { summary: "Validate a JWT: signature, exp, nbf, iat, iss, aud, typ, required claims, with a clock skew" },
      })
      // --- tenant-wide: the key comes from the token's kid -----------------------------------
      .post(
        "/jwt/validate",
        ({ request, body }) => {
          const id = jose.keyIdOf(body.jwt);
          return audited(request, "jwt_validate", id, (t) => jose.validateJwt(t, id, body));
        },
        { body: S.JwtValidateRequest, response: S.JwtValidateResult, scopes: VERIFY, detail: { summary: "Validate a JWT signed by any of the tenant's keys (the key from its kid)" } },
      )
      .post(
        "/jws/verify",
        ({ request, body }) => {
          const id = jose.keyIdOf(body.jws);
          return audited(request, "verify", id, (t) => jose.verify(t, id, body.jws));
        },
        { body: S.VerifyRequest, response: S.VerifyResult, scopes: VERIFY, detail: { summary: "Verify a JWS (compact or flattened JSON) made by any of the tenant's keys (the key from its kid)" } },
      )
      // --- JWKS (also public at /t/{tenant}/jwks) -------------------------------------------
      .get("/jwks", async ({ request }) => jwksResponse(request, await jose.tenantJwks(tenantOf(request)), jose.cfg.jwks_max_age_s), {
        detail: { summary: "The tenant's JWKS (ETag, Cache-Control)" },
      })
      .get("/jwks/:id", async ({ request, params }) => jwksResponse(request, await jose.keyJwks(tenantOf(request), params.id), jose.cfg.jwks_max_age_s), {
        params: S.KeyId,
        detail: { summary: "One key ring's JWKS: every retained version (ETag, Cache-Control)" },
      })
      // --- audit ----------------------------------------------------------------------------
      .get("/audit", ({ request, query }) => audit.query(tenantOf(request), query), {
        query: S.AuditQuery,
        response: S.AuditPage,
        scopes: ADMIN,
        detail: { summary: "The tenant's audit log, newest first, filtered by key, operation and time range" },
      })
  );
}

/** Public JWKS for relying parties, without authentication, at /t/{tenant}/jwks[/{key}]. */
export function joseRootRoutes(jose: JoseService) {
  return new Elysia({ tags: ["jwks"] } as never)
    .use(appBase)
    .get("/t/:tenant/jwks", async ({ request, params }) => jwksResponse(request, await jose.tenantJwks(params.tenant), jose.cfg.jwks_max_age_s), {
      params: S.TenantParams,
      detail: { summary: "A tenant's public JWKS (no authentication; ETag, Cache-Control)" },
    })
    .get(
      "/t/:tenant/jwks/:id",
      async ({ request, params }) => {
        if (!UUID.test(params.id)) throw notFound("elastic key");
        return jwksResponse(request, await jose.keyJwks(params.tenant, params.id), jose.cfg.jwks_max_age_s);
      },
      { params: S.TenantKeyParams, detail: { summary: "One key ring's public JWKS (no authentication; ETag, Cache-Control)" } },
    );
}
