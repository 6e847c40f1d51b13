/**
 * `login --device` (and `login --browser` on a machine without a display): the device
 * authorization grant (RFC 8628). The CLI prints a URL and a short code; the user opens the URL
 * on any device with a browser, enters the code, signs in and approves; the CLI polls the token
 * endpoint meanwhile at the interval the issuer asks for (5 s more after each `slow_down`).
 */
import * as oauth from "oauth4webapi";
import type { TokenAnswer, TokenSource } from "./auth.ts";
import { FailedError, RefusedError } from "./errors.ts";
import { refusal } from "./http.ts";

/**
 * Whether this machine has no display a browser could open on: Linux and the other Unix
 * systems without `DISPLAY` or `WAYLAND_DISPLAY` (a server, a container, an SSH session).
 * macOS and Windows always have one.
 */
export function headless(env: Record<string, string | undefined> = process.env, platform: string = process.platform): boolean {
  if (platform === "darwin" || platform === "win32") return false;
  return !env.DISPLAY && !env.WAYLAND_DISPLAY;
}

export async function deviceLogin(tokens: TokenSource, clientId: string, scope: string): Promise<TokenAnswer> {
  const as = await tokens.metadata();
  if (!as.device_authorization_endpoint) throw new FailedError("the issuer has no device authorization endpoint: use --browser on a machine with a display");
  const client: oauth.Client = { client_id: clientId, token_endpoint_auth_method: "none" };
  const res = await oauth.deviceAuthorizationRequest(as, client, oauth.None(), { scope }, tokens.fetchOptions);
  if (!res.ok) throw await refusal(res);
  const d = await oauth.processDeviceAuthorizationResponse(as, client, res);
  process.stderr.write(
    `To log in, open ${d.verification_uri} in a browser on any device and enter the code\n\n    ${d.user_code}\n\n` +
      (d.verification_uri_complete ? `(or open ${d.verification_uri_complete})\n` : "") +
      `Waiting up to ${d.expires_in} s for the approval...\n`,
  );
  let interval = d.interval ?? 5;
  const deadline = Date.now() + d.expires_in * 1000;
  while (Date.now() < deadline) {
    await Bun.sleep(interval * 1000);
    const r = await oauth.deviceCodeGrantRequest(as, client, oauth.None(), d.device_code, tokens.fetchOptions);
    try {
      return (await oauth.processDeviceCodeResponse(as, client, r)) as TokenAnswer;
    } catch (e) {
      if (!(e instanceof oauth.ResponseBodyError)) throw new FailedError(`the token endpoint's answer is not valid: ${(e as Error).message}`);
      if (e.error === "authorization_pending") continue;
      if (e.error === "slow_down") {
        interval += 5;
        continue;
      }
      if (e.error === "access_denied") throw new RefusedError("access_denied", "the login was denied", 400);
      if (e.error === "expired_token") throw new FailedError("the code expired before it was approved; run login again");
      throw new RefusedError(e.error, e.error_description ?? "the login was refused", e.status);
    }
  }
  throw new FailedError("the code expired before it was approved; run login again");
}
