/**
 * Client authentication at the token, PAR, introspection and revocation endpoints:
 * client_secret_basic, client_secret_post, private_key_jwt (RFC 7523), tls_client_auth and
 * self_signed_tls_client_auth (RFC 8705, with the TLS client certificate of the mTLS
 * listener; see mtls-client-auth.ts) and none.
 * Validated: exactly one method per request, the registered method only, secrets
 * compared in constant time; assertions need iss = sub = client_id, an `aud` of
 * the issuer or the endpoint, a short `exp` and a single-use `jti`.
 */
import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, jwtVerify, type JSONWebKeySet, type JWK, type JWTPayload } from "jose";
import type { ClientCertificate } from "../../../src/auth/client-cert.ts";
import { holdsRegisteredKey, matchesTlsClientAuth } from "./mtls-client-auth.ts";
import type { AuthzStore } from "../store.ts";
import { oauthError } from "./oauth-error.ts";
import { Registry, type RegisteredClient } from "./registry.ts";
import { nowS } from "./crypto.ts";
import { jwksFetch, type ClientDocuments } from "./client-documents.ts";

export const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ASSERTION_ALGS = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"];
const MAX_ASSERTION_LIFETIME_S = 600;

export type Form = Map<string, string>;

function decodeBasicPart(s: string): string {
  if (!/[%+]/.test(s)) return s; // nothing encoded: the common case, no decoding work
  try {
    return decodeURIComponent(s.replace(/\+/g, "%20"));
  } catch {
    throw oauthError("invalid_request", "malformed Basic credentials");
  }
}

export class ClientAuthenticator {
  private readonly remoteSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(
    private readonly registry: Registry,
    private readonly store: AuthzStore,
    /** Fetches the client's jwks_uri under the client-document rules (client-documents.ts). */
    private readonly documents: ClientDocuments,
  ) {}

  /** The client's registered public keys as a list (self_signed_tls_client_auth). */
  private async registeredKeys(c: RegisteredClient): Promise<JWK[]> {
    if (c.jwks) return c.jwks.keys as JWK[];
    const set = this.remoteSet(c.jwks_uri!);
    if (!set.fresh) await set.reload().catch(() => undefined);
    return (set.jwks()?.keys ?? []) as JWK[];
  }

  /** The client's registered public keys (`jwks` or `jwks_uri`), for jose's verify. */
  keySet(c: RegisteredClient) {
    if (c.jwks) return createLocalJWKSet(c.jwks as unknown as JSONWebKeySet);
    return this.remoteSet(c.jwks_uri!);
  }

  private remoteSet(uri: string) {
    let set = this.remoteSets.get(uri);
    if (!set) {
      set = createRemoteJWKSet(new URL(uri), {
        timeoutDuration: 5000,
        cooldownDuration: 30_000,
        [customFetch]: jwksFetch(this.documents),
      });
      if (this.remoteSets.size > 1000) this.remoteSets.clear();
      this.remoteSets.set(uri, set);
    }
    return set;
  }

  /**
   * Authenticates the caller of an endpoint. `audiences` are the acceptable `aud`
   * values of a client assertion (the issuer and the endpoint URL); `cert` is the TLS client
   * certificate, on the mTLS listener.
   */
  async authenticate(tenant: string, req: Request, form: Form, audiences: string[], cert?: ClientCertificate): Promise<RegisteredClient> {
    const authz = req.headers.get("authorization");
    const basic = authz && /^basic /i.test(authz) ? authz.slice(6).trim() : null;
    const assertionType = form.get("client_assertion_type");
    const assertion = form.get("client_assertion");
    const secret = form.get("client_secret");
    const methods = [basic !== null, assertion !== undefined || assertionType !== undefined, secret !== undefined].filter(Boolean).length;
    if (methods > 1) throw oauthError("invalid_request", "use exactly one client authentication method");
    const invalid = (why: string) =>
      oauthError("invalid_client", why, basic !== null ? { "WWW-Authenticate": 'Basic realm="token", charset="UTF-8"' } : undefined);

    if (basic !== null) {
      let decoded: string;
      try {
        decoded = atob(basic);
      } catch {
        throw oauthError("invalid_request", "malformed Basic credentials");
      }
      const i = decoded.indexOf(":");
      if (i < 0) throw oauthError("invalid_request", "malformed Basic credentials");
      const id = decodeBasicPart(decoded.slice(0, i));
      const pw = decodeBasicPart(decoded.slice(i + 1));
      if (form.has("client_id") && form.get("client_id") !== id) throw oauthError("invalid_request", "client_id differs from the Basic credentials");
      const c = await this.registry.clientWithSecret(tenant, id, pw);
      if (!c || c.token_endpoint_auth_method !== "client_secret_basic") throw invalid("client authentication failed");
      return c;
    }

    if (assertion !== undefined || assertionType !== undefined) {
      if (assertionType !== JWT_BEARER) throw oauthError("invalid_request", "unsupported client_assertion_type");
      if (!assertion) throw oauthError("invalid_request", "client_assertion is missing");
      let claims: JWTPayload;
      try {
        claims = decodeJwt(assertion);
      } catch {
        throw invalid("client_assertion is not a JWT");
      }
      const id = typeof claims.sub === "string" ? claims.sub : "";
      if (form.has("client_id") && form.get("client_id") !== id) throw oauthError("invalid_request", "client_id differs from the assertion");
      const c = id ? await this.registry.client(tenant, id) : null;
      if (!c || c.token_endpoint_auth_method !== "private_key_jwt") throw invalid("client authentication failed");
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(assertion, this.keySet(c), {
          issuer: c.client_id,
          subject: c.client_id,
          audience: audiences,
          algorithms: ASSERTION_ALGS,
          requiredClaims: ["exp", "jti"],
          clockTolerance: 5,
        }));
      } catch {
        throw invalid("client assertion rejected");
      }
      const exp = payload.exp!;
      if (exp - nowS() > MAX_ASSERTION_LIFETIME_S) throw invalid("client assertion lives too long");
      if (typeof payload.jti !== "string" || payload.jti.length > 256) throw invalid("client assertion jti invalid");
      if (!(await this.store.useJti(tenant, `assertion:${c.client_id}`, payload.jti, exp + 10))) throw invalid("client assertion was already used");
      return c;
    }

    if (secret !== undefined) {
      const id = form.get("client_id");
      if (!id) throw oauthError("invalid_request", "client_id is missing");
      const c = await this.registry.clientWithSecret(tenant, id, secret);
      if (!c || c.token_endpoint_auth_method !== "client_secret_post") throw invalid("client authentication failed");
      return c;
    }

    const id = form.get("client_id");
    if (!id) throw invalid("client authentication is required");
    const c = await this.registry.client(tenant, id);
    if (!c) throw invalid("client authentication failed");
    switch (c.token_endpoint_auth_method) {
      case "none":
        return c;
      case "tls_client_auth":
        if (!cert) throw invalid("tls_client_auth needs a client certificate: use the mTLS endpoint");
        if (!matchesTlsClientAuth(c, cert)) throw invalid("client authentication failed");
        return c;
      case "self_signed_tls_client_auth":
        if (!cert) throw invalid("self_signed_tls_client_auth needs a client certificate: use the mTLS endpoint");
        if (!(await holdsRegisteredKey(cert, await this.registeredKeys(c)))) throw invalid("client authentication failed");
        return c;
      default:
        throw invalid("client authentication failed");
    }
  }
}
