/**
 * identity-idp's new tables on PostgreSQL (Debian package postgresql): YubiKey counters moved by
 * compare-and-set through the validation protocol, a magic link through the development outbox
 * (tokens, send limits), the tenant policy, and a passkey ceremony's challenge in the session.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { startPostgresEngine, type PostgresEngine } from "../support/engine.ts";
import { startIdp, type IdpHarness } from "./support/idp-harness.ts";
import { ScriptedBrowser } from "./support/browser.ts";
import { haveYkgenerate, TEST_KEY, ykOtp } from "./support/ykgenerate.ts";
import { wsapiSignature } from "../../apps/identity-idp/routes/wsapi.ts";

setDefaultTimeout(60_000);
const PASSWORD = "granite orchard pepper 63";
let engine: PostgresEngine | undefined;
let h: IdpHarness;

beforeAll(async () => {
  engine = await startPostgresEngine();
  if (engine) h = await startIdp({ engine });
}, 120_000);
afterAll(async () => {
  await h?.stop();
  await engine?.server.stop();
});

describe("on PostgreSQL (Debian package postgresql)", () => {
  test("YubiKey OTP: OK once, then REPLAYED_OTP", async () => {
    if (!engine || !haveYkgenerate()) return;
    const u = await h.createUser("pgyuki", PASSWORD);
    expect((await h.admin(`/users/${u.id}/yubikeys`, "POST", { public_id: TEST_KEY.publicId, private_id: TEST_KEY.privateId, aes_key: TEST_KEY.aes })).status).toBe(201);
    const client = (await (await h.admin("/yubico-clients", "POST")).json()) as { id: number; key: string };
    const verify = async (otp: string) => {
      const q: Record<string, string> = { id: String(client.id), otp, nonce: crypto.randomUUID().replace(/-/g, "") };
      q.h = await wsapiSignature(Buffer.from(client.key, "base64"), q);
      const text = await (await h.idp.call(`/wsapi/2.0/verify?${new URLSearchParams(q)}`)).text();
      return /status=(\w+)/.exec(text)![1];
    };
    const otp = ykOtp(3, 1);
    expect(await verify(otp)).toBe("OK");
    expect(await verify(otp)).toBe("REPLAYED_OTP");
    expect(await verify(ykOtp(3, 2))).toBe("OK");
  });

  test("magic link through the development outbox; policy; a passkey challenge in the session", async () => {
    if (!engine) return;
    await h.createUser("pgmia", PASSWORD, { email: "pgmia@example.test" });
    const b = new ScriptedBrowser(h.idp.ca);
    const form = await b.get(`${h.idp.publicUrl}/t/${h.tenant}/magic`);
    expect((await b.submit(form, "/magic", { email: "pgmia@example.test" })).status).toBe(200);
    let link: string | undefined;
    for (let i = 0; i < 100 && !link; i++) {
      const outbox = await b.get(`${h.idp.publicUrl}/dev/outbox`);
      link = /https:\/\/[^\s<]+magic\/open\?token=[A-Za-z0-9_-]+/.exec(outbox.html)?.[0];
      if (!link) await Bun.sleep(100);
    }
    const account = await b.get(link!);
    expect(account.url).toBe(`${h.idp.publicUrl}/t/${h.tenant}/account`);
    expect((await b.get(link!)).status).toBe(400);

    expect(await (await h.admin("/policy", "PUT", { self_registration: true })).json()).toEqual({ mfa: "optional", self_registration: true, user_verification: "preferred", password_min_length: 12, certificate_email: false, certificate_upn: false });

    const csrf = /data-csrf="([^"]+)"/.exec(account.html)![1]!;
    const options = await fetch(`${h.idp.publicUrl}/t/${h.tenant}/passkeys/register/options`, {
      method: "POST",
      headers: { cookie: b.cookieHeader(), "x-csrf-token": csrf, "content-type": "application/json" },
      body: '{"name":"x"}',
      tls: { ca: h.idp.ca },
    } as RequestInit);
    expect(options.status).toBe(200);
    expect(((await options.json()) as { authenticatorSelection: { residentKey: string } }).authenticatorSelection.residentKey).toBe("required");
  });
});
