/**
 * identity-authz's back-channel logout sender at the domain level, against a receiver run by the
 * test: a session's clients are told once each (its rows are taken), a refused delivery is
 * retried with a fresh token, the token verifies with the tenant's JWKS (typ logout+jwt, iss,
 * aud, iat, exp, jti, sid, sub, the event, no nonce), a client that never answers ends in the dead
 * letters, and no log line carries a token. The receiver is on loopback, which the
 * client-URL rules refuse by default: with the default settings nothing is sent there (the
 * delivery is dead-lettered naming why); allowing its origin, or private addresses, lets it through.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { createLocalJWKSet, jwtVerify } from "jose";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { BackchannelLogout, BACKCHANNEL_LOGOUT_CHANNEL, BACKCHANNEL_LOGOUT_EVENT } from "../../apps/identity-authz/domain/backchannel-logout.ts";
import { createLogger } from "../../src/service/log.ts";
import { Notifier } from "../../src/notify/notifier.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";
import { serveHttps, type TestHttpsServer } from "../support/tls.ts";
import { clientRequests } from "../../apps/identity-authz/domain/client-documents.ts";
import { parseAppConfig, type AuthzConfig } from "../../apps/identity-authz/config.ts";

setDefaultTimeout(60_000);
const T = "bcl";
let svc: TestService;
let authz: Authz;
let receiver: TestHttpsServer;
const received: { status: number; form: URLSearchParams }[] = [];
let answers: number[] = [];
const lines: string[] = [];

beforeAll(async () => {
  svc = await startTestService(identityAuthz, { overrides: (c) => quiet(c) });
  authz = Authz.of(svc.ctx);
  await authz.ready;
  await authz.registry.createTenant({ id: T });
  receiver = await serveHttps("bcl-receiver", async (req) => {
    const form = new URLSearchParams(await req.text());
    const status = answers.shift() ?? 200;
    received.push({ status, form });
    return new Response(null, { status });
  });
});

afterAll(async () => {
  receiver?.stop();
  await svc?.stop();
});

const client = (name: string, uri: string) =>
  authz.registry.createClient(T, {
    client_name: name,
    grant_types: ["authorization_code"],
    redirect_uris: ["https://app.example/cb"],
    backchannel_logout_uri: uri,
    backchannel_logout_session_required: true,
  } as never);

/**
 * A sender on a notifier of its own (dead letters in memory), retrying after 20 ms twice,
 * trusting the receiver's CA; loopback allowed unless `rules` say otherwise.
 */
const sender = (rules: Partial<AuthzConfig> = { client_urls_allow_private_addresses: true }) => {
  const logger = createLogger({ level: "debug", service: "test", sink: (l) => lines.push(l) });
  const notifier = new Notifier([], { logger, retryDelaysMs: [20, 20] });
  const send = clientRequests({ ...parseAppConfig(svc.ctx.config), ...rules }, () => receiver.caPem);
  return { bl: new BackchannelLogout(authz.store, authz.registry, authz.keys, (t) => authz.issuer(t), send, logger, notifier), notifier };
};

test("each client of the ended session gets one token, retried after a refusal with a fresh jti; the rows are taken", async () => {
  const app = await client("app", `${receiver.url}/bcl`);
  const other = await client("other", `${receiver.url}/bcl`);
  const silent = await authz.registry.createClient(T, { client_name: "no uri", grant_types: ["authorization_code"], redirect_uris: ["https://x.example/cb"] } as never);
  const { bl, notifier } = sender();
  const sid = "S".repeat(43);
  for (const c of [app, other, silent]) await bl.joined(T, sid, "user-1", c.client_id, Math.floor(Date.now() / 1000) + 600);
  await bl.joined(T, "O".repeat(43), "user-2", app.client_id, Math.floor(Date.now() / 1000) + 600);

  answers = [503];
  expect(await bl.sessionEnded(T, { sid })).toBe(2);
  await notifier.settle();
  expect(received.map((r) => r.status)).toEqual([503, 200, 200]);
  // Nothing left of that session: a second end tells no one; the other session is untouched.
  expect(await bl.sessionEnded(T, { sid })).toBe(0);
  expect((await authz.store.listSessionClients(T, "user-2")).length).toBe(1);

  const keys = createLocalJWKSet({ keys: await authz.keys.publicKeys(T) } as never);
  const seen = new Set<string>();
  for (const r of received) {
    const token = r.form.get("logout_token")!;
    const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer: authz.issuer(T), typ: "logout+jwt", requiredClaims: ["iat", "exp", "jti"] });
    expect(protectedHeader.typ).toBe("logout+jwt");
    expect([app.client_id, other.client_id]).toContain(payload.aud as string);
    expect(payload).toMatchObject({ sid, sub: "user-1", events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } });
    expect(payload.nonce).toBeUndefined();
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(120);
    seen.add(payload.jti!);
  }
  expect(seen.size).toBe(3); // the retry was a new token
  expect(lines.join("\n")).not.toContain(received[0]!.form.get("logout_token")!.split(".")[1]!);
});

test("a client that never answers ends in the dead letters; the log names the client, never the token", async () => {
  const closed = await serveHttps("bcl-closed", () => new Response(null, { status: 500 }));
  const uri = `${closed.url}/bcl`;
  closed.stop();
  const gone = await client("gone", uri);
  const { bl, notifier } = sender();
  await bl.joined(T, "G".repeat(43), "user-3", gone.client_id, Math.floor(Date.now() / 1000) + 600);
  await bl.joined(T, "H".repeat(43), "user-3", gone.client_id, Math.floor(Date.now() / 1000) + 600);
  // Every session of a user (a disabled user), here two.
  expect(await bl.sessionEnded(T, { subject: "user-3" })).toBe(2);
  await notifier.settle();
  const dead = await notifier.deadLetters();
  expect(dead.length).toBe(2);
  expect(dead.every((d) => d.notification.data.client_id === gone.client_id && d.attempts === 3 && d.channel === BACKCHANNEL_LOGOUT_CHANNEL)).toBe(true);
  const warned = lines.filter((l) => l.includes("dead-lettered"));
  expect(warned.length).toBe(2);
  for (const l of warned) {
    expect(l).toContain(gone.client_id);
    expect(l).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  }
});

test("with the default settings a loopback URI is never sent to (dead-lettered, naming why); its origin allowed, it is", async () => {
  const c = await client("loopback", `${receiver.url}/bcl`);
  const before = received.length;
  const strict = sender({});
  await strict.bl.joined(T, "L".repeat(43), "user-4", c.client_id, Math.floor(Date.now() / 1000) + 600);
  expect(await strict.bl.sessionEnded(T, { sid: "L".repeat(43) })).toBe(1);
  await strict.notifier.settle();
  expect(received.length).toBe(before);
  const dead = await strict.notifier.deadLetters();
  expect(dead.length).toBe(1);
  expect(dead[0]!.error).toContain("127.0.0.1 is a loopback, private or reserved address");

  const byOrigin = sender({ client_urls_allowed_origins: [receiver.url] });
  await byOrigin.bl.joined(T, "M".repeat(43), "user-4", c.client_id, Math.floor(Date.now() / 1000) + 600);
  expect(await byOrigin.bl.sessionEnded(T, { sid: "M".repeat(43) })).toBe(1);
  await byOrigin.notifier.settle();
  expect(received.length).toBe(before + 1);
  expect(received.at(-1)!.form.get("logout_token")).toBeTruthy();
  expect(await byOrigin.notifier.deadLetters()).toEqual([]);
});

test("a session nobody signed in to tells no one", async () => {
  expect(await sender().bl.sessionEnded("nobody", { subject: "x" })).toBe(0);
  expect(await sender().bl.sessionEnded(T, { sid: "N".repeat(43) })).toBe(0);
});
