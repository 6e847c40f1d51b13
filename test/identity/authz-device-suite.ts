/**
 * identity-authz, device authorization grant (RFC 8628), driven by oauth4webapi's device flow
 * functions, and by openid-client's (initiate, then poll until the user approves), against the
 * real service over HTTPS. The user's side is plain HTTP: the user code
 * typed at `/device`, the sign-in hand-off to the scripted idp (support/authz.ts) and back, the
 * approval form.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import * as openid from "openid-client";
import { decodeJwt } from "jose";
import { startAuthz, form, basic, type TestAuthz } from "./support/authz.ts";
import type { TestEngine } from "../support/engine.ts";
import { fuzz, rng, type Rng } from "../support/fuzz.ts";

const DEVICE = "urn:ietf:params:oauth:grant-type:device_code";
const INTERVAL = 3;

/** Form bodies around `base`: values replaced by odd strings, keys dropped, repeated or added. */
export function mutateForm(base: Record<string, string>, r: Rng): string {
  const odd = ["", " ", "%", "%ZZ", "\u0000", "a".repeat(20_000), "é", "BCDF-GHJK", "-1", "null", "{}", "urn:x", DEVICE];
  const pairs = Object.entries(base);
  const out: [string, string][] = [];
  for (const [k, v] of pairs) {
    switch (r(6)) {
      case 0: break; // dropped
      case 1: out.push([k, odd[r(odd.length)]!]); break;
      case 2: out.push([k, v], [k, v]); break; // repeated
      default: out.push([k, v]);
    }
  }
  if (r(3) === 0) out.push([`x${r(1000)}`, odd[r(odd.length)]!]);
  const body = new URLSearchParams(out).toString();
  return r(8) === 0 ? body.replace(/=/g, "%") : body;
}

export function authzDeviceSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  let short: TestAuthz;
  let as: oauth.AuthorizationServer;
  const T = "devices";
  const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });
  let cli: oauth.Client;
  let tv: { client_id: string; client_secret: string };
  let web: { client_id: string; client_secret: string };

  beforeAll(async () => {
    authz = await startAuthz({ engine, overrides: (c) => Object.assign((c as { app: object }).app, { device_poll_interval_s: INTERVAL, device_max_failures: 3 }) });
    // A second service whose device codes live 5 s, for the expiry answer.
    short = await startAuthz({ engine, overrides: (c) => Object.assign((c as { app: object }).app, { device_code_ttl_s: 5, device_poll_interval_s: 1 }) });
    await authz.createTenant(T);
    await authz.createTenant("guessing");
    await short.createTenant(T);
    await short.createClient(T, { client_id: "cli", client_name: "CLI", grant_types: [DEVICE], token_endpoint_auth_method: "none", scopes: ["openid"] });
    const scopes = ["openid", "profile", "email", "pets:read"];
    const c = await authz.createClient(T, { client_name: "cryptoutil CLI", grant_types: [DEVICE, "refresh_token"], token_endpoint_auth_method: "none", scopes, audiences: ["learn-ps"] });
    cli = { client_id: c.client_id, token_endpoint_auth_method: "none" };
    tv = (await authz.createClient(T, { client_name: "Living-room TV", grant_types: [DEVICE], scopes, audiences: ["learn-ps"] })) as never;
    web = (await authz.createClient(T, { client_name: "Web", grant_types: ["authorization_code"], redirect_uris: ["https://web.example/cb"], scopes })) as never;
    await authz.createClient("guessing", { client_id: "cli", client_name: "CLI", grant_types: [DEVICE], token_endpoint_auth_method: "none", scopes: ["openid"] });
    const iss = new URL(`${authz.publicUrl}/t/${T}`);
    as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
  });

  afterAll(async () => {
    await authz?.stop();
    await short?.stop();
  });

  async function start(client: oauth.Client = cli, auth: oauth.ClientAuth = oauth.None(), params: Record<string, string> = { scope: "openid profile pets:read" }) {
    return oauth.processDeviceAuthorizationResponse(as, client, await oauth.deviceAuthorizationRequest(as, client, auth, params, cf()));
  }

  async function poll(deviceCode: string, client: oauth.Client = cli, auth: oauth.ClientAuth = oauth.None()) {
    return oauth.processDeviceCodeResponse(as, client, await oauth.deviceCodeGrantRequest(as, client, auth, deviceCode, cf()));
  }

  /** The OAuth error a poll answers (oauth4webapi throws it), or "tokens". */
  async function pollError(deviceCode: string, client: oauth.Client = cli, auth: oauth.ClientAuth = oauth.None()): Promise<string> {
    try {
      await poll(deviceCode, client, auth);
      return "tokens";
    } catch (e) {
      if (e instanceof oauth.ResponseBodyError) return e.error;
      // A refused Basic authentication answers 401 with a Basic challenge.
      if (e instanceof oauth.WWWAuthenticateChallengeError) return `${e.status} ${e.cause[0]?.scheme}`;
      throw e;
    }
  }

  const get = (url: string, init: RequestInit = {}) => fetch(url, { ...init, redirect: "manual", tls: { ca: authz.caAll } } as RequestInit);

  /** The user: types the code, signs in at the idp, and reaches the approval page; returns its token. */
  async function signIn(typed: string, base = `${authz.publicUrl}/t/${T}`): Promise<string> {
    let r = await get(`${base}/device`, form({ user_code: typed }));
    expect(r.status).toBe(303);
    const idpLogin = r.headers.get("location")!;
    expect(idpLogin.startsWith(authz.idp.url)).toBe(true);
    r = await get(idpLogin);
    expect(r.status).toBe(303);
    r = await get(r.headers.get("location")!); // back at authz's /login/callback
    const html = await r.text();
    expect(r.status).toBe(200);
    const m = html.match(/name="confirmation" value="([A-Za-z0-9_-]{43})"/);
    expect(m).not.toBeNull();
    return m![1]!;
  }

  const decide = (token: string, decision: string) => get(`${authz.publicUrl}/t/${T}/device/confirm`, form({ confirmation: token, decision }));
  const wait = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

  test("openid-client's device flow: it polls (at the server's interval) until the user approves on another screen", async () => {
    const config = await openid.discovery(new URL(`${authz.publicUrl}/t/${T}`), cli.client_id, undefined, openid.None(), {
      [openid.customFetch]: (url: string, init: openid.CustomFetchOptions) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit),
    });
    const d = await openid.initiateDeviceAuthorization(config, { scope: "openid profile pets:read" });
    expect(d.interval).toBe(INTERVAL);
    const polled = openid.pollDeviceAuthorizationGrant(config, d);
    // The user, meanwhile: types the code, signs in, approves.
    const token = await signIn(d.user_code);
    expect((await decide(token, "approve")).status).toBe(200);
    const tokens = await polled;
    expect(decodeJwt(tokens.access_token)).toMatchObject({ sub: "user-1", client_id: cli.client_id, aud: "learn-ps" });
    expect(tokens.claims()).toMatchObject({ sub: "user-1", aud: cli.client_id });
  });

  test("discovery advertises the device endpoint and grant", async () => {
    expect(as.device_authorization_endpoint).toBe(`${authz.publicUrl}/t/${T}/device_authorization`);
    expect(as.grant_types_supported).toContain(DEVICE);
  });

  test("a public client signs a user in: pending, approved on another screen, tokens once", async () => {
    const d = await start();
    expect(d.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(d.verification_uri).toBe(`${authz.publicUrl}/t/${T}/device`);
    expect(d.verification_uri_complete).toBe(`${d.verification_uri}?user_code=${d.user_code}`);
    expect(d.interval).toBe(INTERVAL);
    expect(d.expires_in).toBe(600);
    expect(await pollError(d.device_code)).toBe("authorization_pending");

    // The page the QR code / link opens shows the code filled in.
    const page = await get(d.verification_uri_complete!);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(`value="${d.user_code}"`);
    expect(page.headers.get("content-security-policy")).toContain("form-action 'self'");

    // Typed in lower case without the dash: the same code.
    const token = await signIn(d.user_code.replace("-", "").toLowerCase());
    const challenge = authz.idp.challenges.at(-1)!;
    expect(challenge.client_id).toBe(cli.client_id);
    expect(challenge.scope).toBe("openid profile pets:read");
    expect((await decide(token, "approve")).status).toBe(200);
    expect((await decide(token, "approve")).status).toBe(400); // decided once

    await wait(INTERVAL + 1);
    const tokens = await poll(d.device_code);
    expect(tokens.token_type).toBe("bearer");
    expect(tokens.scope).toBe("openid profile pets:read");
    const at = decodeJwt(tokens.access_token);
    expect(at).toMatchObject({ sub: "user-1", client_id: cli.client_id, aud: "learn-ps", scope: "openid profile pets:read" });
    expect(decodeJwt(tokens.id_token!)).toMatchObject({ sub: "user-1", aud: cli.client_id, name: "Ada Lovelace" });
    const info = await oauth.processUserInfoResponse(as, cli, "user-1", await oauth.userInfoRequest(as, cli, tokens.access_token, cf()));
    expect(info.name).toBe("Ada Lovelace");

    // Refresh works as for any user grant.
    const refreshed = await oauth.processRefreshTokenResponse(as, cli, await oauth.refreshTokenGrantRequest(as, cli, oauth.None(), tokens.refresh_token!, cf()));
    expect(decodeJwt(refreshed.access_token).sub).toBe("user-1");

    // The device code is spent: a second redemption is refused and revokes what it issued.
    await wait(INTERVAL + 1);
    expect(await pollError(d.device_code)).toBe("invalid_grant");
    const intro = await authz.fetch(`${authz.publicUrl}/t/${T}/introspect`, form({ token: refreshed.access_token }, { authorization: basic(tv.client_id, tv.client_secret) }));
    expect(((await intro.json()) as { active: boolean }).active).toBe(false);
    // And the user code no longer leads anywhere.
    expect((await get(`${authz.publicUrl}/t/${T}/device`, form({ user_code: d.user_code }))).status).toBe(400);
  }, 60_000);

  test("polling sooner than the interval gets slow_down", async () => {
    const d = await start();
    expect(await pollError(d.device_code)).toBe("authorization_pending");
    expect(await pollError(d.device_code)).toBe("slow_down");
  });

  test("a denied request answers access_denied; a confidential client authenticates to poll", async () => {
    const client: oauth.Client = { client_id: tv.client_id };
    const auth = oauth.ClientSecretBasic(tv.client_secret);
    const d = await start(client, auth, { scope: "pets:read", resource: "learn-ps" });
    const token = await signIn(d.user_code);
    expect((await decide(token, "deny")).status).toBe(200);
    expect(await pollError(d.device_code, client, auth)).toBe("access_denied");
    // Another client cannot redeem it, nor can this one without its secret.
    expect(await pollError(d.device_code)).toBe("invalid_grant");
    expect(await pollError(d.device_code, client, oauth.ClientSecretBasic("wrong"))).toBe("401 basic");
  });

  test("an expired device code answers expired_token, and its user code is refused", async () => {
    const sf = { [oauth.customFetch]: (u: string, i: RequestInit) => fetch(u, { ...i, tls: { ca: short.caAll } } as RequestInit) };
    const iss = new URL(`${short.publicUrl}/t/${T}`);
    const meta = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, sf));
    const c: oauth.Client = { client_id: "cli" };
    const d = await oauth.processDeviceAuthorizationResponse(meta, c, await oauth.deviceAuthorizationRequest(meta, c, oauth.None(), { scope: "openid" }, sf));
    expect(d.expires_in).toBe(5);
    await wait(7);
    const r = await fetch(meta.token_endpoint!, { ...form({ grant_type: DEVICE, device_code: d.device_code, client_id: "cli" }), tls: { ca: short.caAll } } as RequestInit);
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBe("expired_token");
    const entry = await fetch(`${iss}/device`, { ...form({ user_code: d.user_code }), redirect: "manual", tls: { ca: short.caAll } } as RequestInit);
    expect(entry.status).toBe(400);
  }, 60_000);

  test("clients without the grant, unknown scopes and bad requests are refused with OAuth errors", async () => {
    const webClient: oauth.Client = { client_id: web.client_id };
    await expect(start(webClient, oauth.ClientSecretBasic(web.client_secret), {})).rejects.toMatchObject({ error: "unauthorized_client" });
    await expect(start(cli, oauth.None(), { scope: "identity:admin" })).rejects.toMatchObject({ error: "invalid_scope" });
    await expect(start(cli, oauth.None(), { scope: "openid", resource: "sm-kms" })).rejects.toMatchObject({ error: "invalid_target" });
    const tokenUrl = as.token_endpoint!;
    let r = await authz.fetch(tokenUrl, form({ grant_type: DEVICE, client_id: cli.client_id }));
    expect(((await r.json()) as { error: string }).error).toBe("invalid_request");
    r = await authz.fetch(tokenUrl, form({ grant_type: DEVICE, client_id: cli.client_id, device_code: "not-a-code" }));
    expect(((await r.json()) as { error: string }).error).toBe("invalid_grant");
    r = await authz.fetch(`${authz.publicUrl}/t/${T}/device/confirm`, form({ confirmation: "x".repeat(43), decision: "approve" }));
    expect(r.status).toBe(400);
    r = await authz.fetch(`${authz.publicUrl}/t/${T}/device/confirm`, form({ confirmation: "x".repeat(43), decision: "maybe" }));
    expect(((await r.json()) as { error: string }).error).toBe("invalid_request");
  });

  test("wrong user codes are counted per address: past the limit even a right one is refused", async () => {
    const G = "guessing";
    const gas = await oauth.processDiscoveryResponse(new URL(`${authz.publicUrl}/t/${G}`), await oauth.discoveryRequest(new URL(`${authz.publicUrl}/t/${G}`), cf()));
    const c: oauth.Client = { client_id: "cli" };
    const d = await oauth.processDeviceAuthorizationResponse(gas, c, await oauth.deviceAuthorizationRequest(gas, c, oauth.None(), { scope: "openid" }, cf()));
    const entry = (code: string) => get(`${authz.publicUrl}/t/${G}/device`, form({ user_code: code }));
    for (const wrong of ["BBBB-BBBB", "AEIO-U123", "BCDF"]) expect((await entry(wrong)).status).toBe(400);
    const r = await entry(d.user_code);
    expect(r.status).toBe(429);
    expect(await r.text()).toContain("too many wrong codes");
    // Another tenant counts its own.
    expect((await get(`${authz.publicUrl}/t/${T}/device`, form({ user_code: "BBBB-BBBB" }))).status).toBe(400);
  });

  test("fuzz: the device endpoints never answer 5xx", async () => {
    const r = rng(8628);
    const base = `${authz.publicUrl}/t/${T}`;
    const targets: [string, Record<string, string>][] = [
      ["device_authorization", { client_id: cli.client_id, scope: "openid pets:read", resource: "learn-ps" }],
      ["token", { grant_type: DEVICE, client_id: cli.client_id, device_code: "A".repeat(43) }],
      ["device/confirm", { confirmation: "B".repeat(43), decision: "approve" }],
      ["device", { user_code: "BCDF-GHJK" }],
    ];
    const cases = Array.from({ length: 240 }, (_, i) => ({ path: targets[i % targets.length]![0], body: mutateForm(targets[i % targets.length]![1], r) }));
    await fuzz(cases, (c) => authz.fetch(`${base}/${c.path}`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: c.body, redirect: "manual" }), {
      describe: (c) => `${c.path} ${c.body}`,
      maxMs: 15_000,
      concurrency: 4,
    });
  }, 60_000);
}
