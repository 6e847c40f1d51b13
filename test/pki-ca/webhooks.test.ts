/**
 * pki-ca webhooks: signed POSTs on request and certificate state changes, retries, and
 * expiry notices at 90/30/7 days (once per threshold).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHmac, timingSafeEqual } from "node:crypto";
import { makeCsr, startCa, write, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { PkiCa } from "../../apps/pki-ca/domain.ts";
import { PkiStore, type PkiDb } from "../../apps/pki-ca/store.ts";
import { openDatabase } from "../../src/storage/index.ts";

interface Received {
  type: string;
  tenant: string;
  data: Record<string, any>;
}

const secret = crypto.getRandomValues(new Uint8Array(32));
const received: Received[] = [];
let failuresLeft = 0;
let receiver: ReturnType<typeof Bun.serve>;
let f: CaFixture;

/** Checks the signature as a receiver would: HMAC over "<t>.<body>", fresh timestamp. */
function verify(header: string | null, body: string): boolean {
  const m = header?.match(/^t=(\d+),v1=([0-9a-f]{64})$/);
  if (!m) return false;
  if (Math.abs(Date.now() / 1000 - Number(m[1])) > 300) return false;
  const want = createHmac("sha256", secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(want, Buffer.from(m[2]!, "hex"));
}

beforeAll(async () => {
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = await req.text();
      if (!verify(req.headers.get("cryptoutil-signature"), body)) return new Response("bad signature", { status: 401 });
      if (failuresLeft > 0) {
        failuresLeft--;
        return new Response("try later", { status: 503 });
      }
      received.push(JSON.parse(body) as Received);
      return new Response(null, { status: 204 });
    },
  });
  const dir = (await import("../support/service.ts")).tempDir();
  const secretFile = write(dir, "hook.secret", secret);
  f = await startCa({ webhooks: [{ url: `http://127.0.0.1:${receiver.port}/hook`, secret_file: secretFile }], webhook_retry_seconds: [0.05, 0.05, 0.05] }, dir);
});

afterAll(async () => {
  await f?.stop();
  await receiver?.stop(true);
});

async function settle() {
  await (await pkiCaOf(f.svc.ctx)).notifier!.settle();
}

test("issued, pending, rejected and revoked each send one signed event", async () => {
  const tok = await f.token("acme", "pki:request pki:read pki:revoke pki:approve");
  const auto = makeCsr(f.dir, "a", { subj: "/CN=a.example.com", san: "DNS:a.example.com" });
  const issued = (await (await f.api("/certificates", tok, { body: { csr: auto.csr, profile: "server" } })).json()) as any;
  const serial = issued.certificate.serial;
  const manual = makeCsr(f.dir, "m", { subj: "/CN=m.example.com", san: "DNS:m.example.com" });
  const pending = (await (await f.api("/certificates", tok, { body: { csr: manual.csr, profile: "manual" } })).json()) as any;
  const rejected = await f.api(`/requests/${pending.request.id}/reject`, tok, { body: { reason: "not today" } });
  expect(rejected.status).toBe(200);
  expect((await f.api(`/certificates/${serial}/revoke`, tok, { body: { reason: "superseded" } })).status).toBe(200);
  await settle();
  expect(received.map((e) => e.type)).toEqual(["certificate.issued", "request.pending", "request.rejected", "certificate.revoked"]);
  expect(received.every((e) => e.tenant === "acme")).toBe(true);
  expect(received[0]!.data).toMatchObject({ serial, decided_by: "policy", sans: ["dns:a.example.com"] });
  expect(received[3]!.data).toMatchObject({ serial, reason: "superseded" });
  expect(JSON.stringify(received)).not.toContain("PRIVATE");
});

test("a receiver that fails twice still gets the event (retries)", async () => {
  received.length = 0;
  failuresLeft = 2;
  const tok = await f.token("acme", "pki:request");
  const csr = makeCsr(f.dir, "r", { subj: "/CN=r.example.com", san: "DNS:r.example.com" });
  expect((await f.api("/certificates", tok, { body: { csr: csr.csr, profile: "server" } })).status).toBe(201);
  await settle();
  expect(received.map((e) => e.type)).toEqual(["certificate.issued"]);
});

test("expiry notices: one per threshold, the smallest crossed", async () => {
  received.length = 0;
  const ca = await pkiCaOf(f.svc.ctx);
  const tok = await f.token("globex", "pki:request");
  const csr = makeCsr(f.dir, "e", { subj: "/CN=e.example.com", san: "DNS:e.example.com" });
  const cert = ((await (await f.api("/certificates", tok, { body: { csr: csr.csr, profile: "server", validity_days: 60 } })).json()) as any).certificate;
  await settle();
  received.length = 0;
  const notAfter = Date.parse(cert.not_after);
  const at = (daysBefore: number) => new Date(notAfter - daysBefore * 86_400_000);
  await ca.expirySweep(at(59)); // 59 days left: the 90-day notice
  await ca.expirySweep(at(58)); // nothing new
  await ca.expirySweep(at(5)); // jumped past 30 and 7: only the 7-day notice
  await ca.expirySweep(at(4));
  await settle();
  const mine = received.filter((e) => e.data.serial === cert.serial);
  expect(mine.map((e) => [e.type, e.data.threshold_days])).toEqual([
    ["certificate.expiring", 90],
    ["certificate.expiring", 7],
  ]);
  expect(mine[0]!.tenant).toBe("globex");
});

test("expiry notices: two instances sweeping the same database at once send each notice once", async () => {
  const ca = await pkiCaOf(f.svc.ctx);
  const other = await openDatabase<PkiDb>({ service: "pki-ca", dataDir: f.svc.dataDir });
  try {
    const peer = new PkiCa(ca.config, new PkiStore(other.db), ca.hierarchy);
    peer.notifier = ca.notifier;
    const tok = await f.token("initech", "pki:request");
    const csr = makeCsr(f.dir, "two", { subj: "/CN=two.example.com", san: "DNS:two.example.com" });
    const cert = ((await (await f.api("/certificates", tok, { body: { csr: csr.csr, profile: "server", validity_days: 60 } })).json()) as any).certificate;
    await settle();
    received.length = 0;
    const at = new Date(Date.parse(cert.not_after) - 20 * 86_400_000);
    const [one, two] = await Promise.all([ca.expirySweep(at), peer.expirySweep(at)]);
    await settle();
    expect(received.filter((e) => e.data.serial === cert.serial).map((e) => e.data.threshold_days)).toEqual([30]);
    expect(one + two).toBeGreaterThanOrEqual(1);
  } finally {
    await other.close();
  }
});

test("webhook URLs must be https except on loopback", async () => {
  const { WebhookSchema } = await import("../../apps/pki-ca/webhooks.ts");
  const v = await import("valibot");
  expect(v.safeParse(WebhookSchema, { url: "http://hooks.example.com/x", secret_file: "s" }).success).toBe(false);
  expect(v.safeParse(WebhookSchema, { url: "https://hooks.example.com/x", secret_file: "s" }).success).toBe(true);
  expect(v.safeParse(WebhookSchema, { url: "http://127.0.0.1:9/x", secret_file: "s" }).success).toBe(true);
});
