/**
 * The suite's confidential test client (`cliClient`) through oauth4webapi: an authorization
 * request started in a scripted browser, and, once the browser is back at the client's redirect
 * URI, the code exchanged and the ID token's claims validated.
 */
import * as oauth from "oauth4webapi";
import type { IdentitySuite } from "./e2e-suite.ts";
import type { Page, ScriptedBrowser } from "./browser.ts";

export interface CliLogin {
  /** The idp's login page the authorization request led to. */
  page: Page;
  verifier: string;
  state: string;
}

const fetchOf = (s: IdentitySuite) => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: s.ca } } as RequestInit) });

/** The suite issuer's discovery document. */
export async function discover(s: IdentitySuite): Promise<oauth.AuthorizationServer> {
  const iss = new URL(s.issuer);
  return oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { algorithm: "oidc", ...fetchOf(s) }));
}

/** Starts the client's authorization request (code + PKCE, `openid profile`) in `b`. */
export async function startCliLogin(s: IdentitySuite, as: oauth.AuthorizationServer, b: ScriptedBrowser): Promise<CliLogin> {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const u = new URL(as.authorization_endpoint!);
  u.search = new URLSearchParams({ response_type: "code", client_id: s.cliClient.client_id, redirect_uri: s.cliRedirect, scope: "openid profile", state, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256" }).toString();
  return { page: await b.get(u.toString(), (x) => x.startsWith(s.cliRedirect)), verifier, state };
}

/** Exchanges the code at `backUrl` (the client's redirect URI) and returns the validated ID token claims. */
export async function finishCliLogin(s: IdentitySuite, as: oauth.AuthorizationServer, login: CliLogin, backUrl: string): Promise<oauth.IDToken> {
  const client: oauth.Client = { client_id: s.cliClient.client_id, id_token_signed_response_alg: "ES256" };
  const params = oauth.validateAuthResponse(as, client, new URL(backUrl), login.state);
  const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.ClientSecretBasic(s.cliClient.client_secret), params, s.cliRedirect, login.verifier, fetchOf(s));
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, res, { requireIdToken: true });
  return oauth.getValidatedIdTokenClaims(tokens)!;
}
