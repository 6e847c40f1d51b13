/**
 * identity-authz's back-channel logout deliveries land in the service's durable dead letters:
 * a user signs in (the idp names the session `sid`), the idp reports the session ended, and the
 * client's receiver (real HTTPS, run by the test) refuses every attempt. The delivery is retried
 * per `notifications.retry_seconds`, then dead-lettered in the service's database: listed by
 * `/admin/v1/notifications/dead-letters` and by `cryptoutil admin dead-letters list`, still there
 * after the service restarts on the same data, holding no logout token, and retried through the
 * admin API once the receiver works (a fresh token, signed with the tenant's key). The
 * operators' own notification channels never see these events.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, jwtVerify } from "jose";
import { followToClient, startAuthz, type TestAuthz } from "./support/authz.ts";
import { tempDir } from "../support/service.ts";
import { serveHttps, type TestHttpsServer } from "../support/tls.ts";
import { runCli } from "../cli/support/suite.ts";
import { BACKCHANNEL_LOGOUT_EVENT } from "../../apps/identity-authz/domain/backchannel-logout.ts";

setDefaultTimeout(120_000);

const T = "bcdl";
const CB = "https://rp.example/cb";
const SID = "s".repeat(20) + "ID-of-the-session-at-the-idp";
const root = tempDir("cryptoutil-authz-bcdl-");
const hookSecret = join(root, "ops-hook.secret");
writeFileSync(hookSecret, crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600 });

let receiver: TestHttpsServer;
/** What the receiver answers at /bcl (the client's logout URI). */
let bclStatus = 503;
const hits: { path: string; body: string }[] = [];
let authz: TestAuthz | undefined;
let clientId: string;

type Letter = { id: string; channel: string; attempts: number; error: string; notification: { type: string; tenant: string; data: Record<string, unknown> } };

/** identity-authz on `root`, trusting the test idp and the receiver, retrying fast, with an operators' webhook that takes every broadcast event. */
const start = () =>
  startAuthz({
    root,
    overrides: (c) => {
      const app = c.app as { ca_file: string };
      const both = join(root, "authz-trust.pem");
      writeFileSync(both, readFileSync(app.ca_file, "utf8") + receiver.caPem);
      app.ca_file = both;
      c.notifications = {
        webhooks: [{ url: `${receiver.url}/ops`, secret_file: hookSecret, ca_file: both }],
        email: [],
        slack: [],
        retry_seconds: [0.05, 0.2],
      };
    },
  });

const deadLetters = async (a: TestAuthz): Promise<Letter[]> => {
  const r = await a.admin("/admin/v1/notifications/dead-letters?tenant=" + T, { headers: { authorization: `Bearer ${a.adminToken}` } });
  expect(r.status).toBe(200);
  return ((await r.json()) as { dead_letters: Letter[] }).dead_letters;
};

async function until<X>(what: string, f: () => Promise<X | undefined>): Promise<X> {
  for (let i = 0; i < 600; i++) {
    const x = await f();
    if (x !== undefined) return x;
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  receiver = await serveHttps("bcl-receiver", async (req) => {
    const path = new URL(req.url).pathname;
    hits.push({ path, body: await req.text() });
    return new Response(null, { status: path === "/bcl" ? bclStatus : 204 });
  });
  authz = await start();
  await authz.createTenant(T);
  const c = await authz.createClient(T, {
    client_name: "RP with a broken logout receiver",
    grant_types: ["authorization_code"],
    redirect_uris: [CB],
    scopes: ["openid"],
    backchannel_logout_uri: `${receiver.url}/bcl`,
    backchannel_logout_session_required: true,
  });
  clientId = c.client_id;
});

afterAll(async () => {
  await authz?.stop();
  receiver?.stop();
});

test("a logout the client never accepts is dead-lettered durably: listed, kept across a restart, shown by the CLI, retried once it works", async () => {
  const a = authz!;
  // The user signs in at the client; the idp's verifier names its session.
  a.idp.nextLogin = { sub: "user-7", tamper: (claims) => void (claims.sid = SID) };
  const challenge = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  const q = new URLSearchParams({ client_id: clientId, response_type: "code", redirect_uri: CB, scope: "openid", state: "st", code_challenge: challenge, code_challenge_method: "S256" });
  const signIn = await followToClient(`${a.publicUrl}/t/${T}/authorize?${q}`, CB, a.caAll);
  expect(signIn.callback?.searchParams.get("code")).toBeTruthy();

  // The idp reports the session ended: the client is told in the background.
  const report = await a.idp.signVerifier({ aud: `${a.publicUrl}/t/${T}`, sid: SID }, { typ: "session-ended+jwt" });
  const ended = await a.fetch(`${a.publicUrl}/t/${T}/sessions/ended`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ session_ended: report }).toString(),
  });
  expect(ended.status).toBe(200);
  expect(await ended.json()).toEqual({ clients_notified: 1 });

  const [letter] = await until("the dead letter", async () => {
    const l = await deadLetters(a);
    return l.length ? l : undefined;
  });
  expect(letter).toMatchObject({
    channel: "backchannel-logout",
    attempts: 3,
    error: `client ${clientId}: its back-channel logout URI answered 503`,
    notification: { type: "backchannel_logout", tenant: T, data: { client_id: clientId, sid: SID, sub: "user-7" } },
  });
  // The first attempt and the two retries reached the receiver; the operators' webhook saw none of it.
  expect(hits.filter((h) => h.path === "/bcl")).toHaveLength(3);
  expect(hits.filter((h) => h.path === "/ops")).toHaveLength(0);
  // A dead letter holds no logout token (each attempt mints its own and forgets it).
  expect(JSON.stringify(letter)).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);

  // A restart on the same data: the letter is still there, with the same id.
  await a.stop();
  authz = undefined;
  const b = (authz = await start());
  expect((await deadLetters(b)).map((l) => l.id)).toEqual([letter!.id]);

  // `cryptoutil admin dead-letters list` shows it too.
  const home = mkdtempSync(join(tmpdir(), "cryptoutil-cli-home-"));
  const dataDir = join(root, "identity-authz");
  const login = await runCli(home, [
    "login", "--context", "ops", "--issuer", `${b.publicUrl}/t/root`, "--client-id", "bootstrap-admin",
    "--client-secret-file", join(dataDir, "bootstrap-admin.secret"), "--ca-file", join(dataDir, "trust-bundle.pem"),
    "--service", `identity-authz=${b.publicUrl}`, "--admin-service", `identity-authz=${b.adminUrl}`,
  ]);
  expect(login.stderr).toBe("");
  expect(login.code).toBe(0);
  const listed = await runCli(home, ["admin", "dead-letters", "list", "--service", "identity-authz", "--tenant", T, "--admin-token-file", join(dataDir, "admin.token"), "--json"]);
  expect(listed.stderr).toBe("");
  expect(listed.code).toBe(0);
  expect((JSON.parse(listed.stdout) as { dead_letters: Letter[] }).dead_letters.map((l) => [l.id, l.channel])).toEqual([[letter!.id, "backchannel-logout"]]);

  // The receiver works again: a retry through the admin API delivers a fresh, valid logout token.
  bclStatus = 200;
  const before = hits.length;
  const retried = await b.admin(`/admin/v1/notifications/dead-letters/${letter!.id}/retry`, { method: "POST", headers: { authorization: `Bearer ${b.adminToken}` } });
  expect(retried.status).toBe(200);
  expect(await retried.json()).toEqual({ id: letter!.id, delivered: true });
  const sent = hits.slice(before);
  expect(sent.map((h) => h.path)).toEqual(["/bcl"]);
  const token = new URLSearchParams(sent[0]!.body).get("logout_token")!;
  const jwks = (await (await b.fetch(`${b.publicUrl}/t/${T}/jwks`)).json()) as never;
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: `${b.publicUrl}/t/${T}`, audience: clientId, typ: "logout+jwt" });
  expect(payload).toMatchObject({ sid: SID, sub: "user-7", events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } });
  expect(await deadLetters(b)).toEqual([]);
});
