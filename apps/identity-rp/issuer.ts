/**
 * identity-rp's conversation with the issuer, with `oauth4webapi`: discovery, pushed
 * authorization requests (RFC 9126) with PKCE (S256), the code exchange, refresh, revocation
 * and the RP-initiated logout URL. Client authentication is client_secret_basic over HTTPS
 * with the configured CA; every call has a timeout. The issuer's JWKS (for logout tokens) is
 * fetched the same way and cached by `jose`.
 */
import * as oauth from "oauth4webapi";
import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from "jose";
import { readFileSync } from "node:fs";
import { AppError } from "../../src/service/errors.ts";
import { runtime } from "../../src/runtime/index.ts";
import type { RpConfig } from "./config.ts";

const TIMEOUT_MS = 10_000;

export interface AuthorizationStart {
  /** Where to send the browser: the authorization endpoint with `client_id` and `request_uri`. */
  url: string;
  state: string;
  nonce: string;
  verifier: string;
}

export class IssuerClient {
  readonly client: oauth.Client;
  private readonly auth: oauth.ClientAuth;
  private readonly http: { [oauth.customFetch]: typeof fetch; signal: () => AbortSignal };
  private discovered?: Promise<oauth.AuthorizationServer>;
  private jwks?: JWTVerifyGetKey;
  readonly tlsFetch: (url: string, init: RequestInit) => Promise<Response>;

  constructor(
    private readonly cfg: RpConfig,
    caFile: string,
  ) {
    const secret = readFileSync(cfg.client_secret_file, "utf8").trim();
    if (!secret) throw new AppError("config_invalid", "app.client_secret_file: the file is empty", { status: 400 });
    let ca: string | undefined;
    this.tlsFetch = (url, init) => runtime.fetch(url, init, { ca: (ca ??= readFileSync(caFile, "utf8")) });
    this.http = { [oauth.customFetch]: this.tlsFetch as typeof fetch, signal: () => AbortSignal.timeout(TIMEOUT_MS) };
    this.client = { client_id: cfg.client_id, id_token_signed_response_alg: "ES256" };
    this.auth = oauth.ClientSecretBasic(secret);
  }

  /** The issuer's metadata, fetched once (again after a failure). */
  server(): Promise<oauth.AuthorizationServer> {
    this.discovered ??= (async () => {
      const issuer = new URL(this.cfg.issuer);
      return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...this.http }));
    })().catch((e) => {
      this.discovered = undefined;
      throw new AppError("unavailable", "the identity service could not be reached", { cause: e, headers: { "Retry-After": "5" } });
    });
    return this.discovered;
  }

  /** The issuer's signing keys, for logout tokens. */
  async keys(): Promise<JWTVerifyGetKey> {
    const as = await this.server();
    if (!as.jwks_uri) throw new AppError("unavailable", "the identity service publishes no JWKS");
    return (this.jwks ??= createRemoteJWKSet(new URL(as.jwks_uri), { [customFetch]: this.tlsFetch, timeoutDuration: TIMEOUT_MS } as never));
  }

  /** Pushes the authorization request (PAR) and returns where the browser goes next. */
  async startAuthorization(redirectUri: string): Promise<AuthorizationStart> {
    const as = await this.server();
    if (!as.authorization_endpoint || !as.pushed_authorization_request_endpoint) throw new AppError("unavailable", "the identity service offers no pushed authorization requests");
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const verifier = oauth.generateRandomCodeVerifier();
    const params = new URLSearchParams({
      response_type: "code",
      client_id: this.cfg.client_id,
      redirect_uri: redirectUri,
      scope: this.cfg.scope,
      resource: this.cfg.resource,
      state,
      nonce,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
    });
    let pushed: oauth.PushedAuthorizationResponse;
    try {
      pushed = await oauth.processPushedAuthorizationResponse(as, this.client, await oauth.pushedAuthorizationRequest(as, this.client, this.auth, params, this.http));
    } catch (e) {
      throw new AppError("unavailable", "the identity service refused the sign-in request", { cause: e });
    }
    const url = new URL(as.authorization_endpoint);
    url.search = new URLSearchParams({ client_id: this.cfg.client_id, request_uri: pushed.request_uri }).toString();
    return { url: url.toString(), state, nonce, verifier };
  }

  /** Checks the authorization response (state, `iss` per RFC 9207) and exchanges the code. */
  async finishAuthorization(current: URL, expected: { state: string; nonce: string; verifier: string }, redirectUri: string) {
    const as = await this.server();
    if (current.searchParams.get("iss") !== as.issuer) throw new oauth.OperationProcessingError("the response does not name the expected issuer");
    const params = oauth.validateAuthResponse(as, this.client, current, expected.state);
    const res = await oauth.authorizationCodeGrantRequest(as, this.client, this.auth, params, redirectUri, expected.verifier, { ...this.http, additionalParameters: { resource: this.cfg.resource } });
    const tokens = await oauth.processAuthorizationCodeResponse(as, this.client, res, { expectedNonce: expected.nonce, requireIdToken: true });
    return { tokens, claims: oauth.getValidatedIdTokenClaims(tokens)! };
  }

  async refresh(refreshToken: string): Promise<oauth.TokenEndpointResponse> {
    const as = await this.server();
    const res = await oauth.refreshTokenGrantRequest(as, this.client, this.auth, refreshToken, { ...this.http, additionalParameters: { resource: this.cfg.resource } });
    return oauth.processRefreshTokenResponse(as, this.client, res);
  }

  /** Revokes a refresh token (its whole family at identity-authz); failures are only logged by the caller. */
  async revoke(refreshToken: string): Promise<void> {
    const as = await this.server();
    await oauth.processRevocationResponse(await oauth.revocationRequest(as, this.client, this.auth, refreshToken, { ...this.http, additionalParameters: { token_type_hint: "refresh_token" } }));
  }

  /** The issuer's logout URL for this user (RP-initiated logout), or undefined when it has none. */
  async endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string): Promise<string | undefined> {
    const as = await this.server().catch(() => undefined);
    if (!as?.end_session_endpoint) return undefined;
    const u = new URL(as.end_session_endpoint);
    u.searchParams.set("client_id", this.cfg.client_id);
    if (idToken) u.searchParams.set("id_token_hint", idToken);
    u.searchParams.set("post_logout_redirect_uri", postLogoutRedirectUri);
    return u.toString();
  }
}
