/**
 * sm-im over real HTTPS, with `jose` (an independent JOSE implementation) as the senders' and
 * recipients' devices: General JSON JWE with ECDH-ES+A256KW on P-256 and X25519.
 * - a message reaches each recipient device, and the sender's own devices (sent box);
 * - a device registered after a message was sent holds no copy of it (404);
 * - tampered ciphertext, tag, iv or wrapped key fails to decrypt on the device;
 * - envelope checks: foreign kids, uncovered recipients, other protected members, sizes;
 * - tenants are apart; deletes and retention (injected clock) remove messages;
 * - the database file and the logs hold no plaintext; malformed-input fuzz gives no 5xx.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, flattenedDecrypt, GeneralEncrypt, generateKeyPair, importJWK, type CryptoKey as JoseKey } from "jose";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { createSmIm } from "../../apps/sm-im/service.ts";
import { Messenger } from "../../apps/sm-im/domain.ts";
import { ImStore } from "../../apps/sm-im/store.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";

const API = "/service/api/v1";
const SECRET_TEXT = "the vault code is 4417-cobalt";
let issuer: TestIssuer;
let svc: TestService;
let nowMs = Date.parse("2031-03-01T12:00:00Z");

beforeAll(async () => {
  issuer = await startTestIssuer({ audience: "sm-im" });
  svc = await startTestService(createSmIm({ now: () => new Date(nowMs) }), {
    issuer,
    overrides: (c) => {
      quiet(c);
      c.log.access = true;
      c.log.level = "info";
      (c as { app?: unknown }).app = { retention_days: 30, tenants: { short: { retention_days: 1 } } };
    },
  });
});
afterAll(async () => {
  await svc?.stop();
  await issuer?.stop();
});

interface User {
  tenant: string;
  subject: string;
  token: string;
}
const user = async (tenant: string, subject: string): Promise<User> => ({ tenant, subject, token: await issuer.mint({ tenant, sub: subject, scope: "im:read im:write" }, { expiresIn: "1h" }) });

async function call(u: User, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${u.token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await svc.call(API + path, { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

interface Device {
  id: string;
  privateKey: JoseKey;
  publicJwk: Record<string, string>;
}
async function device(u: User, crv: "P-256" | "X25519" = "P-256"): Promise<Device> {
  const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { crv });
  const { kty, crv: c, x, y } = await exportJWK(publicKey);
  const r = await call(u, "POST", "/devices", { name: `device ${crv}`, public_key: { kty, crv: c, x, ...(y ? { y } : {}) } });
  expect(r.status).toBe(201);
  return { id: r.body.id, privateKey, publicJwk: r.body.public_key };
}

/** A General JSON JWE of `content` for each device (as the browser client makes it), with jose. */
async function seal(content: unknown, devices: Array<{ id: string; publicJwk: Record<string, string> }>) {
  let e = new GeneralEncrypt(new TextEncoder().encode(JSON.stringify(content))).setProtectedHeader({ enc: "A256GCM" });
  for (const d of devices) {
    const { kty, crv, x, y } = d.publicJwk;
    const key = await importJWK({ kty, crv, x, ...(y ? { y } : {}) }, "ECDH-ES+A256KW");
    e = e.addRecipient(key).setUnprotectedHeader({ alg: "ECDH-ES+A256KW", kid: d.id }).done();
  }
  return e.encrypt();
}

async function open(u: User, d: Device, messageId: string) {
  const r = await call(u, "GET", `/messages/${messageId}/copy?device=${d.id}`);
  if (r.status !== 200) return { status: r.status, content: undefined };
  const out = await flattenedDecrypt(r.body, d.privateKey);
  return { status: 200, content: JSON.parse(new TextDecoder().decode(out.plaintext)), copy: r.body };
}

describe("sending and reading", () => {
  let alice: User;
  let bob: User;
  let aliceLaptop: Device;
  let bobPhone: Device;
  let bobTablet: Device;
  let messageId: string;

  beforeAll(async () => {
    alice = await user("acme", "alice");
    bob = await user("acme", "bob");
    aliceLaptop = await device(alice);
    bobPhone = await device(bob);
    bobTablet = await device(bob, "X25519");
  });

  test("contacts list users with devices and their public keys (never a private member)", async () => {
    const r = await call(alice, "GET", "/contacts");
    expect(r.status).toBe(200);
    const subjects = r.body.items.map((c: { subject: string }) => c.subject).sort();
    expect(subjects).toEqual(["alice", "bob"]);
    const bobs = r.body.items.find((c: { subject: string }) => c.subject === "bob");
    expect(bobs.devices.map((d: { id: string }) => d.id).sort()).toEqual([bobPhone.id, bobTablet.id].sort());
    for (const d of bobs.devices) expect(d.public_key.d).toBeUndefined();
  });

  test("a message with an attachment reaches every recipient device and the sender's", async () => {
    const attachment = Buffer.from("%PDF-1.4 not really a pdf").toString("base64");
    const jwe = await seal({ subject: "plans", body: SECRET_TEXT, attachments: [{ name: "plans.pdf", type: "application/pdf", data: attachment }] }, [bobPhone, bobTablet, aliceLaptop]);
    const sent = await call(alice, "POST", "/messages", { to: ["bob"], jwe });
    expect(sent.status).toBe(201);
    expect(sent.body.copies).toBe(3);
    messageId = sent.body.id;
    for (const d of [bobPhone, bobTablet]) {
      const got = await open(bob, d, messageId);
      expect(got.status).toBe(200);
      expect(got.content.body).toBe(SECRET_TEXT);
      expect(got.content.attachments[0].data).toBe(attachment);
    }
    expect((await open(alice, aliceLaptop, messageId)).content.subject).toBe("plans");
    const inbox = await call(bob, "GET", "/messages?box=inbox");
    expect(inbox.body.items.map((m: { id: string }) => m.id)).toEqual([messageId]);
    expect(inbox.body.items[0]).toMatchObject({ from: "alice", to: ["bob"] });
    const sentBox = await call(alice, "GET", "/messages?box=sent");
    expect(sentBox.body.items.map((m: { id: string }) => m.id)).toEqual([messageId]);
    expect((await call(alice, "GET", "/messages?box=inbox")).body.items).toEqual([]);
  });

  test("a device registered later has no copy of earlier messages; another user's device is refused", async () => {
    const bobNew = await device(bob);
    expect((await call(bob, "GET", `/messages/${messageId}/copy?device=${bobNew.id}`)).status).toBe(404);
    // Alice cannot fetch with Bob's device, and Bob cannot with Alice's.
    expect((await call(alice, "GET", `/messages/${messageId}/copy?device=${bobPhone.id}`)).status).toBe(404);
    expect((await call(bob, "GET", `/messages/${messageId}/copy?device=${aliceLaptop.id}`)).status).toBe(404);
    // A third user of the tenant sees nothing of it.
    const carol = await user("acme", "carol");
    const carolDevice = await device(carol);
    expect((await call(carol, "GET", `/messages/${messageId}/copy?device=${carolDevice.id}`)).status).toBe(404);
    await call(bob, "DELETE", `/devices/${bobNew.id}`);
  });

  test("tampered ciphertext, tag, iv or wrapped key does not decrypt on the device", async () => {
    const got = await open(bob, bobPhone, messageId);
    const flip = (b64u: string) => {
      const b = Buffer.from(b64u, "base64url");
      b[0]! ^= 1;
      return b.toString("base64url");
    };
    for (const member of ["ciphertext", "tag", "iv", "encrypted_key", "protected"] as const) {
      const tampered = { ...got.copy, [member]: member === "protected" ? Buffer.from('{"enc":"A256GCM","x":1}').toString("base64url") : flip(got.copy[member]) };
      await expect(flattenedDecrypt(tampered, bobPhone.privateKey)).rejects.toThrow();
    }
  });

  test("envelope checks: foreign kid, uncovered recipient, duplicate device, other protected members, bad sizes", async () => {
    const carolSubject = "carol";
    const good = await seal({ body: "x" }, [bobPhone]);
    // Carol (a user with a device) is listed but gets no copy.
    expect((await call(alice, "POST", "/messages", { to: ["bob", carolSubject], jwe: good })).status).toBe(400);
    // A kid that is not a device of the sender or a recipient.
    const stranger = await user("acme", "dave");
    const daveDevice = await device(stranger);
    const foreign = await seal({ body: "x" }, [bobPhone, daveDevice]);
    expect((await call(alice, "POST", "/messages", { to: ["bob"], jwe: foreign })).status).toBe(400);
    // A user without devices.
    expect((await call(alice, "POST", "/messages", { to: ["nobody"], jwe: good })).status).toBe(404);
    const dup = { ...good, recipients: [good.recipients[0], good.recipients[0]] };
    expect((await call(alice, "POST", "/messages", { to: ["bob"], jwe: dup })).status).toBe(400);
    const extra = { ...good, protected: Buffer.from('{"enc":"A256GCM","zip":"DEF"}').toString("base64url") };
    const r = await call(alice, "POST", "/messages", { to: ["bob"], jwe: extra });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("malformed_jose");
    const shortIv = { ...good, iv: "AAAA" };
    expect((await call(alice, "POST", "/messages", { to: ["bob"], jwe: shortIv })).status).toBe(400);
    const withPrivate = await call(alice, "POST", "/devices", { name: "bad", public_key: { ...bobPhone.publicJwk, d: "AAAA" } });
    expect(withPrivate.status).toBe(400);
    const offCurve = await call(alice, "POST", "/devices", { name: "bad", public_key: { kty: "EC", crv: "P-256", x: "AQ", y: "AQ" } });
    expect(offCurve.status).toBe(400);
  });

  test("another tenant's user cannot address or read acme's messages", async () => {
    const eve = await user("other", "eve");
    const eveDevice = await device(eve);
    expect((await call(eve, "GET", `/messages/${messageId}/copy?device=${eveDevice.id}`)).status).toBe(404);
    expect((await call(eve, "DELETE", `/messages/${messageId}`)).status).toBe(404);
    const jwe = await seal({ body: "x" }, [bobPhone]);
    expect((await call(eve, "POST", "/messages", { to: ["bob"], jwe })).status).toBe(404);
    expect((await call(eve, "GET", "/contacts")).body.items.map((c: { subject: string }) => c.subject)).toEqual(["eve"]);
  });

  test("delete: out of the caller's boxes; the last holder's delete removes the message", async () => {
    expect((await call(bob, "DELETE", `/messages/${messageId}`)).status).toBe(204);
    expect((await call(bob, "GET", "/messages?box=inbox")).body.items).toEqual([]);
    expect((await call(bob, "GET", `/messages/${messageId}/copy?device=${bobPhone.id}`)).status).toBe(404);
    expect((await open(alice, aliceLaptop, messageId)).status).toBe(200);
    expect((await call(alice, "DELETE", `/messages/${messageId}`)).status).toBe(204);
    const rows = await svc.ctx.db.selectFrom("im_messages" as never).selectAll().where("id" as never, "=", messageId as never).execute();
    expect(rows).toEqual([]);
  });
});

describe("the ML-KEM-768 hybrid (envelope checks; the browser test exchanges one for real)", () => {
  test("a device publishes a checked ML-KEM-768 key; hybrid copies need it, and an ek of the right size", async () => {
    const carol = await user("pq", "carol");
    const dan = await user("pq", "dan");
    const { publicKey } = ml_kem768.keygen();
    const kemKey = Buffer.from(publicKey).toString("base64url");
    const { kty, crv, x, y } = await exportJWK((await generateKeyPair("ECDH-ES+A256KW", { crv: "P-256" })).publicKey);
    const ecKey = { kty, crv, x, y };

    // Coefficients of 12 bits at or above q = 3329 fail the FIPS 203 modulus check; a short key fails the schema.
    const badKey = Buffer.alloc(1184, 0xff).toString("base64url");
    expect((await call(carol, "POST", "/devices", { name: "bad", public_key: ecKey, kem_public_key: badKey })).body.error.code).toBe("malformed_key");
    expect((await call(carol, "POST", "/devices", { name: "bad", public_key: ecKey, kem_public_key: kemKey.slice(10) })).status).toBe(400);

    const pqDevice = await call(carol, "POST", "/devices", { name: "pq", public_key: ecKey, kem_public_key: kemKey });
    expect(pqDevice.status).toBe(201);
    expect(pqDevice.body.kem_public_key).toBe(kemKey);
    expect(pqDevice.body.hybrid_alg).toBe("ECDH-ES+ML-KEM-768+A256KW");
    const plain = await device(dan);

    const classic = await seal({ body: "x" }, [{ id: pqDevice.body.id, publicJwk: pqDevice.body.public_key }]);
    const entry = classic.recipients![0]!;
    const ek = Buffer.from(ml_kem768.encapsulate(publicKey).cipherText).toString("base64url");
    const hybridEntry = { ...entry, header: { ...entry.header, alg: "ECDH-ES+ML-KEM-768+A256KW", ek } };
    const send = (to: string, recipients: unknown[]) => call(dan, "POST", "/messages", { to: [to], jwe: { ...classic, recipients } });

    expect((await send("carol", [hybridEntry])).status).toBe(201);
    const noEk = await send("carol", [{ ...hybridEntry, header: { ...entry.header, alg: "ECDH-ES+ML-KEM-768+A256KW" } }]);
    expect(noEk.body.error.code).toBe("malformed_jose");
    const ekOnClassic = await send("carol", [{ ...entry, header: { ...entry.header, ek } }]);
    expect(ekOnClassic.body.error.code).toBe("malformed_jose");
    const shortEk = await send("carol", [{ ...hybridEntry, header: { ...hybridEntry.header, ek: ek.slice(4) } }]);
    expect(shortEk.body.error.code).toBe("malformed_jose");
    // Dan's own device published no ML-KEM key: a hybrid copy for it is refused.
    const toPlain = await seal({ body: "x" }, [plain]);
    const forPlain = { ...toPlain.recipients![0]!, header: { ...toPlain.recipients![0]!.header, alg: "ECDH-ES+ML-KEM-768+A256KW", ek } };
    const r = await call(carol, "POST", "/messages", { to: ["dan"], jwe: { ...toPlain, recipients: [forPlain] } });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("validation_failed");
  });
});

describe("retention", () => {
  test("a message expires after its tenant's retention and the sweep removes it", async () => {
    const a = await user("short", "ann");
    const b = await user("short", "ben");
    await device(a);
    const bd = await device(b);
    const jwe = await seal({ body: "short-lived" }, [bd]);
    const sent = await call(a, "POST", "/messages", { to: ["ben"], jwe });
    expect(sent.status).toBe(201);
    expect(Date.parse(sent.body.expires_at) - Date.parse(sent.body.created_at)).toBe(86_400_000);
    nowMs += 86_400_000 + 1000;
    expect((await call(b, "GET", `/messages/${sent.body.id}/copy?device=${bd.id}`)).status).toBe(404);
    // The service's sweeper runs on its interval; the same sweep is run here at once.
    const swept = await new Messenger(new ImStore(svc.ctx.db), { retention_days: 30, tenants: {}, max_message_bytes: 1 << 20 }, () => new Date(nowMs)).sweep();
    expect(swept).toBeGreaterThanOrEqual(1);
    expect((await call(b, "GET", "/messages?box=inbox")).body.items).toEqual([]);
  });
});

describe("no plaintext at rest or in logs", () => {
  test("a raw scan of the database file and of every log line finds no message text", async () => {
    const files = readdirSync(svc.dataDir).filter((f) => f.endsWith(".db") || f.endsWith(".db-wal") || f.includes(".sqlite"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const bytes = readFileSync(join(svc.dataDir, f));
      expect(bytes.includes(Buffer.from(SECRET_TEXT))).toBe(false);
      expect(bytes.includes(Buffer.from("plans.pdf"))).toBe(false);
    }
    const logs = svc.logs.join("\n");
    expect(logs.length).toBeGreaterThan(0);
    expect(logs).not.toContain(SECRET_TEXT);
  });
});

describe("malformed input", () => {
  test("10,000 mutations each of device registration and send: no 5xx", async () => {
    const u = await user("fuzz", "fuzzer");
    const d = await device(u);
    const seedSend = { to: ["fuzzer"], jwe: await seal({ body: "fuzz" }, [d]) };
    const seedDevice = { name: "x", public_key: d.publicJwk };
    const r = rng(0x5e11);
    const cases = [
      ...Array.from({ length: 10_000 }, () => ({ path: "/messages", body: mutateJson(seedSend, r) })),
      ...Array.from({ length: 10_000 }, () => ({ path: "/devices", body: mutateJson(seedDevice, r) })),
    ];
    const out = await fuzz(
      cases,
      (c) => svc.call(API + c.path, { method: "POST", headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" }, body: c.body }),
      { describe: (c) => `${c.path} ${c.body}`, maxMs: 20_000, concurrency: 8 },
    );
    expect([...out.statuses.keys()].some((s) => s >= 400 && s < 500)).toBe(true);
  }, 600_000);
});
