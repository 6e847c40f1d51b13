/**
 * `login --browser`: authorization code + PKCE (S256) for a native app (RFC 8252). A
 * one-shot HTTP listener on 127.0.0.1 and a random port receives the redirect
 * (`http://127.0.0.1:<port>/callback`, which identity-authz matches against the
 * registered `http://127.0.0.1/callback` with any port, RFC 8252 §7.3); the code is
 * exchanged at once and the refresh token kept for per-service tokens.
 */
import { spawn } from "node:child_process";
import * as oauth from "oauth4webapi";
import type { TokenAnswer, TokenSource } from "./auth.ts";
import { FailedError, RefusedError } from "./errors.ts";
import { refusal } from "./http.ts";

const WAIT_S = Number(process.env.CRYPTOUTIL_LOGIN_TIMEOUT_S) || 300;

const DONE_PAGE = `<!doctype html><meta charset="utf-8"><title>cryptoutil</title><p>Login complete. You can close this tab and return to the terminal.</p>`;

/** Opens `url` in the desktop's browser; failures are ignored (the URL is printed anyway). */
function openBrowser(url: string): void {
  const [cmd, args] = process.platform === "darwin" ? ["open", [url]] : process.platform === "win32" ? ["cmd", ["/c", "start", "", url]] : ["xdg-open", [url]];
  try {
    const child = spawn(cmd, args as string[], { stdio: "ignore", detached: true });
    child.on("error", () => {});
    child.unref();
  } catch {
    // no opener on this machine
  }
}

export async function browserLogin(tokens: TokenSource, clientId: string, scope: string, opts: { open: boolean }): Promise<TokenAnswer> {
  const as = await tokens.metadata();
  const client: oauth.Client = { client_id: clientId, token_endpoint_auth_method: "none" };
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();

  let deliver!: (u: URL) => void;
  const arrived = new Promise<URL>((resolve) => (deliver = resolve));
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const u = new URL(req.url);
      if (u.pathname !== "/callback") return new Response("not found", { status: 404 });
      deliver(u);
      return new Response(DONE_PAGE, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });
    },
  });
  try {
    const redirectUri = `http://127.0.0.1:${server.port}/callback`;
    const auth = new URL(as.authorization_endpoint!);
    auth.search = new URLSearchParams({
      response_type: "code",
      client_id: clientId,
      redirect_uri: redirectUri,
      scope,
      state,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
    }).toString();
    process.stderr.write(`Open this URL in a browser to log in (waiting up to ${WAIT_S} s):\n  ${auth}\n`);
    if (opts.open) openBrowser(auth.toString());

    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FailedError(`no login arrived within ${WAIT_S} s`)), WAIT_S * 1000);
    });
    const callback = await Promise.race([arrived, timeout]).finally(() => clearTimeout(timer));

    let params: URLSearchParams;
    try {
      params = oauth.validateAuthResponse(as, client, callback, state);
    } catch (e) {
      if (e instanceof oauth.AuthorizationResponseError) throw new RefusedError(e.error, e.error_description ?? "the login was refused", 400);
      throw new FailedError(`the login's answer is not valid: ${(e as Error).message}`);
    }
    const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri, verifier, tokens.fetchOptions);
    if (!res.ok) throw await refusal(res);
    return (await oauth.processAuthorizationCodeResponse(as, client, res)) as TokenAnswer;
  } finally {
    // Let the browser's request finish before the listener goes.
    await Bun.sleep(100);
    server.stop(true);
  }
}
