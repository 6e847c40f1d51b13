/**
 * YubiKey OTP at identity-idp: keys imported over the admin API, OTPs made by `ykgenerate`
 * (Debian libyubikey-dev, Yubico's own library) used as the second factor on the login pages,
 * and the Yubico validation protocol 2.0 endpoint answering signed requests.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { startIdp, type IdpHarness } from "./support/idp-harness.ts";
import { ScriptedBrowser } from "./support/browser.ts";
import { wsapiSignature } from "../../apps/identity-idp/routes/wsapi.ts";
import { crc16, modhexDecode, modhexEncode, openOtp } from "../../apps/identity-idp/domain/yubico-otp.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { haveYkgenerate, TEST_KEY, ykOtp } from "./support/ykgenerate.ts";

setDefaultTimeout(30_000);
const PASSWORD = "amber kettle signal 905";
const { aes: AES, privateId: PRIVATE_ID, publicId: PUBLIC_ID } = TEST_KEY;
let h: IdpHarness;
let user: { id: string };
const otp = (session: number, use: number, aes = AES) => ykOtp(session, use, { ...TEST_KEY, aes });
const hasTool = haveYkgenerate;

beforeAll(async () => {
  h = await startIdp({ app: { lockout_user_threshold: 50 } });
  user = await h.createUser("yuki", PASSWORD);
});
afterAll(async () => {
  await h?.stop();
});

describe("Yubico OTP format", () => {
  test("modhex round trip, CRC residual, an OTP of ykgenerate opens with its key only", () => {
    if (!hasTool()) return;
    expect(modhexEncode(Uint8Array.of(0x00, 0x1f, 0xff))).toBe("ccbvvv");
    expect(modhexDecode("ccbvvv")).toEqual(Uint8Array.of(0x00, 0x1f, 0xff));
    const o = otp(5, 3);
    const key = Uint8Array.from(Buffer.from(AES, "hex"));
    const t = openOtp(o.slice(-32), key, Uint8Array.from(Buffer.from(PRIVATE_ID, "hex")));
    expect(t).toMatchObject({ sessionCounter: 5, useCounter: 3, timestamp: 0x561234 });
    expect(openOtp(o.slice(-32), key, Uint8Array.from(Buffer.from("000000000000", "hex")))).toBeUndefined();
    const other = Uint8Array.from(key);
    other[0] = other[0]! ^ 1;
    expect(openOtp(o.slice(-32), other, Uint8Array.from(Buffer.from(PRIVATE_ID, "hex")))).toBeUndefined();
    // A flipped ciphertext bit breaks the CRC.
    const flipped = o.slice(-32, -1) + (o.at(-1) === "c" ? "b" : "c");
    expect(openOtp(flipped, key, Uint8Array.from(Buffer.from(PRIVATE_ID, "hex")))).toBeUndefined();
    expect(crc16(new Uint8Array(0))).toBe(0xffff);
  });
});

describe("admin import", () => {
  test("import, list, conflict, bad input, tenant isolation; the secret never comes back", async () => {
    const bad = await h.admin(`/users/${user.id}/yubikeys`, "POST", { public_id: "abc!", private_id: PRIVATE_ID, aes_key: AES });
    expect(bad.status).toBe(400);
    const r = await h.admin(`/users/${user.id}/yubikeys`, "POST", { public_id: PUBLIC_ID, private_id: PRIVATE_ID, aes_key: AES, name: "Blue key" });
    expect(r.status).toBe(201);
    const key = (await r.json()) as Record<string, unknown>;
    expect(key).toMatchObject({ public_id: PUBLIC_ID, name: "Blue key", last_used_at: null });
    expect(JSON.stringify(key)).not.toContain(AES);
    expect((await h.admin(`/users/${user.id}/yubikeys`, "POST", { public_id: PUBLIC_ID, private_id: PRIVATE_ID, aes_key: AES })).status).toBe(409);
    const list = (await (await h.admin(`/users/${user.id}/yubikeys`)).json()) as { items: Array<{ id: string }> };
    expect(list.items.map((k) => k.id)).toEqual([key.id as string]);
    expect((await h.admin(`/users/${crypto.randomUUID()}/yubikeys`)).status).toBe(404);
    const other = await h.issuer.mint({ sub: "c", tenant: "other", scope: "identity:admin" });
    const foreign = await h.idp.call(`/service/api/v1/users/${user.id}/yubikeys`, { headers: { authorization: `Bearer ${other}` } });
    expect(foreign.status).toBe(404);
  });
});

describe("second factor on the login pages", () => {
  test("password then a YubiKey OTP signs in (amr pwd+hwk); the same OTP and an older one are refused", async () => {
    if (!hasTool()) return;
    const isCallback = (u: string) => u.startsWith(h.authz.url);
    const login = async () => {
      const b = new ScriptedBrowser(h.idp.ca);
      const ch = await h.authz.challenge(h.tenant);
      const page = await b.get(`${h.idp.publicUrl}/t/${h.tenant}/login?login_challenge=${encodeURIComponent(ch)}`);
      const mfa = await b.submit(page, "/login", { username: "yuki", password: PASSWORD }, isCallback);
      expect(mfa.url).toContain("/mfa");
      return { b, mfa };
    };
    const first = await login();
    const good = otp(2, 1);
    const consent = await first.b.submit(first.mfa, "/mfa", { code: good }, isCallback);
    expect(consent.url).toContain("/consent");
    const back = await first.b.submit(consent, "/consent", { decision: "allow" }, isCallback);
    const verifier = JSON.parse(Buffer.from(new URL(back.url).searchParams.get("login_verifier")!.split(".")[1]!, "base64url").toString());
    expect(verifier).toMatchObject({ sub: user.id, amr: ["pwd", "hwk"], acr: "urn:cryptoutil:acr:mfa" });

    const second = await login();
    const replay = await second.b.submit(second.mfa, "/mfa", { code: good });
    expect(replay.status).toBe(401);
    const older = await second.b.submit(second.mfa, "/mfa", { code: otp(1, 9) });
    expect(older.status).toBe(401);
    const sameSessionLowerUse = await second.b.submit(second.mfa, "/mfa", { code: otp(2, 0) });
    expect(sameSessionLowerUse.status).toBe(401);
    // The next OTP works; consent is remembered, so straight back to authz.
    const next = await second.b.submit(second.mfa, "/mfa", { code: otp(2, 2) }, isCallback);
    expect(isCallback(next.url)).toBe(true);
  });
});

describe("Yubico validation protocol 2.0", () => {
  let client: { id: number; key: string };
  const parse = (text: string) => Object.fromEntries(text.trim().split(/\r\n/).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  async function verify(params: Record<string, string>, sign: string | false = client.key) {
    const q = { ...params };
    if (sign) q.h = await wsapiSignature(Buffer.from(sign, "base64"), q);
    const r = await h.idp.call(`/wsapi/2.0/verify?${new URLSearchParams(q)}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/plain");
    const out = parse(await r.text());
    return out;
  }
  /** The answer's own signature must verify under the client's key. */
  async function signedBy(out: Record<string, string>, key = client.key) {
    expect(out.h).toBe(await wsapiSignature(Buffer.from(key, "base64"), out));
  }

  beforeAll(async () => {
    const r = await h.admin("/yubico-clients", "POST");
    expect(r.status).toBe(201);
    client = (await r.json()) as { id: number; key: string };
    expect(Buffer.from(client.key, "base64").length).toBe(20);
  });

  test("OK once, then REPLAYED_OTP; an older OTP REPLAYED_OTP; a foreign OTP BAD_OTP; answers signed", async () => {
    if (!hasTool()) return;
    const nonce = () => crypto.randomUUID().replace(/-/g, "");
    const fresh = otp(7, 1);
    const ok = await verify({ id: String(client.id), otp: fresh, nonce: nonce(), timestamp: "1" });
    expect(ok).toMatchObject({ status: "OK", otp: fresh, sessioncounter: "7", sessionuse: "1", timestamp: String(0x561234) });
    expect(ok.t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ0\d{3}$/);
    await signedBy(ok);
    const n = nonce();
    const replay = await verify({ id: String(client.id), otp: fresh, nonce: n });
    expect(replay).toMatchObject({ status: "REPLAYED_OTP", nonce: n });
    await signedBy(replay);
    expect((await verify({ id: String(client.id), otp: otp(6, 200), nonce: nonce() })).status).toBe("REPLAYED_OTP");
    expect((await verify({ id: String(client.id), otp: otp(7, 2), nonce: nonce() })).status).toBe("OK");
    // Another key's OTP under a known public id, and an unknown public id.
    expect((await verify({ id: String(client.id), otp: otp(9, 1, "00".repeat(16)), nonce: nonce() })).status).toBe("BAD_OTP");
    expect((await verify({ id: String(client.id), otp: "cccccccccccb" + otp(9, 1).slice(-32), nonce: nonce() })).status).toBe("BAD_OTP");
    expect((await verify({ id: String(client.id), otp: "not-an-otp", nonce: nonce() })).status).toBe("BAD_OTP");
  });

  test("BAD_SIGNATURE, NO_SUCH_CLIENT, MISSING_PARAMETER", async () => {
    const base = { id: String(client.id), otp: PUBLIC_ID + "c".repeat(32), nonce: "abcdefghijklmnop0123" };
    const forged = await verify(base, Buffer.alloc(20, 7).toString("base64"));
    expect(forged.status).toBe("BAD_SIGNATURE");
    await signedBy(forged);
    const noClient = await verify({ ...base, id: "999" }, Buffer.alloc(20, 7).toString("base64"));
    expect(noClient.status).toBe("NO_SUCH_CLIENT");
    expect(noClient.h).toBeUndefined();
    expect((await verify({ id: base.id, otp: base.otp })).status).toBe("MISSING_PARAMETER");
    expect((await verify({ ...base, nonce: "short" })).status).toBe("MISSING_PARAMETER");
    expect((await verify(base, false)).status).toBe("MISSING_PARAMETER");
    expect((await verify({ otp: base.otp, nonce: base.nonce })).status).toBe("MISSING_PARAMETER");
  });

  test("fuzz: the verify endpoint and the admin import never answer 5xx", async () => {
    const r = rng(18_005);
    const keys = ["id", "otp", "nonce", "h", "timestamp", "sl", "timeout", "x"];
    const queries = Array.from({ length: 150 }, () => {
      const q = new URLSearchParams();
      for (const k of keys) if (r(2)) q.set(k, ["", "1", String(client.id), "c".repeat(r(60)), "%00", "a".repeat(r(300)), "vv" + "b".repeat(42)][r(7)]!);
      return q.toString();
    });
    await fuzz(queries, (q) => h.idp.call(`/wsapi/2.0/verify?${q}`), { describe: (q) => q, maxMs: 15_000, concurrency: 4 });
    const seed = { public_id: PUBLIC_ID, private_id: PRIVATE_ID, aes_key: AES, name: "x" };
    const bodies = Array.from({ length: 150 }, () => mutateJson(seed, r));
    const out = await fuzz(
      bodies.filter((b) => !b.includes(`"public_id":"${PUBLIC_ID}"`) || r(2) === 0),
      (b) => h.idp.call(`/service/api/v1/users/${user.id}/yubikeys`, { method: "POST", headers: { authorization: `Bearer ${h.token}`, "content-type": "application/json" }, body: b }),
      { describe: (b) => b, maxMs: 15_000, concurrency: 4 },
    );
    expect(out.statuses.size).toBeGreaterThan(0);
  });
});
