/**
 * The notifications the services send themselves, over the template's `notifications` section,
 * to a real SMTP server and a signed-webhook receiver:
 *  - sm-kms and jose-ja send `key.rotated` when a key rotates, on request or on schedule;
 *  - audit sends `audit.chain_failure` when its self-check finds a row changed behind its back;
 *  - a receiver that keeps failing is retried with backoff, then dead-lettered; the dead letters
 *    are listed (paged, per tenant), inspected, retried once the receiver works, and discarded
 *    through the admin API, and the CLI lists them.
 */
import { DatabaseDeadLetters } from "../../src/notify/dead-letters.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac, timingSafeEqual } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "kysely";
import { startReceiver, startSmtp, until, type Hit, type SmtpSink, type WebhookSink } from "./receivers.ts";
import { tempDir } from "../support/service.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { startKms, type Kms } from "../sm-kms/harness.ts";
import { startJose, type Jose } from "../jose-ja/harness.ts";
import { event, startAudit, type Audit } from "../audit/harness.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

const dir = tempDir("cryptoutil-service-notify-");
const secretFile = join(dir, "hook.secret");
const secret = crypto.getRandomValues(new Uint8Array(32));
writeFileSync(secretFile, secret, { mode: 0o600 });

let smtp: SmtpSink;
let receiver: WebhookSink;
/** Whether the `flaky` path answers 503 (down) or 204. */
let flakyDown = true;

beforeAll(async () => {
  smtp = await startSmtp();
  receiver = startReceiver((path) => (path === "flaky" && flakyDown ? 503 : 204));
});

afterAll(async () => {
  receiver?.stop();
  await smtp?.stop();
});

const hitsOf = (path: string) => (receiver.hits[path] ??= []);
const bodies = (path: string) => hitsOf(path).map((h) => JSON.parse(h.body) as { type: string; tenant: string; data: Record<string, unknown> });

function expectSigned(h: Hit): void {
  const [t, v1] = h.headers.get("cryptoutil-signature")!.split(",").map((p) => p.split("=")[1]!);
  expect(timingSafeEqual(Buffer.from(v1!, "hex"), createHmac("sha256", secret).update(`${t}.${h.body}`).digest())).toBe(true);
}

/** The template's notifications section: a webhook on `path` and e-mail, for `events`. */
const notifyTo = (path: string, events: string[], retry_seconds = [0.05, 0.2]) => (c: ServiceConfig) => {
  c.notifications = {
    webhooks: [{ url: receiver.url(path), secret_file: secretFile, events }],
    email: [{ host: "127.0.0.1", port: smtp.port, security: "none", from: "cryptoutil@example.test", to: ["ops@example.test"], events }],
    slack: [],
    retry_seconds,
  };
};

describe("key rotation", () => {
  let kms: Kms;
  let jose: Jose;
  beforeAll(async () => {
    kms = await startKms((c) => {
      notifyTo("kms", ["key.rotated"])(c);
      c.app = { ...(c.app ?? {}), rotation_check_s: 1 };
      c.log.access = false;
    });
    jose = await startJose((c) => {
      notifyTo("jose", ["key.rotated"])(c);
      c.log.access = false;
    });
  }, 120_000);
  afterAll(async () => {
    await kms?.stop();
    await jose?.stop();
  });

  test("sm-kms: a requested rotation reaches the webhook (signed) and the SMTP server", async () => {
    const key = await kms.req("POST", "/keys", { name: "notify-manual", algorithm: "A256GCM" });
    expect(key.status).toBe(201);
    expect((await kms.req("POST", `/keys/${key.body.id}/rotate`)).status).toBe(200);
    await until(() => bodies("kms").some((b) => b.data.key_id === key.body.id), "the sm-kms rotation webhook");
    const hook = hitsOf("kms").find((h) => JSON.parse(h.body).data.key_id === key.body.id)!;
    expectSigned(hook);
    expect(JSON.parse(hook.body)).toMatchObject({ type: "key.rotated", tenant: "tenant-a", data: { service: "sm-kms", key_id: key.body.id, name: "notify-manual", algorithm: "A256GCM", version: 2, scheduled: false } });
    await until(() => smtp.mails.some((m) => m.raw.includes(`key_id=${key.body.id}`)), "the sm-kms rotation mail");
    const mail = smtp.mails.find((m) => m.raw.includes(`key_id=${key.body.id}`))!;
    expect(mail.to).toEqual(["ops@example.test"]);
    expect(/^Subject: (.*)$/m.exec(mail.raw)?.[1]).toBe("cryptoutil: key.rotated (tenant-a)");
  });

  test("sm-kms: a scheduled rotation is notified too", async () => {
    const key = await kms.req("POST", "/keys", { name: "notify-scheduled", algorithm: "ES256", rotation_period_days: 1 }, { tenant: "tenant-b" });
    expect(key.status).toBe(201);
    // The rotation falls due: its date moved to the past, as a day passing would.
    await sql`update elastic_keys set next_rotation_at = ${new Date(Date.now() - 60_000).toISOString()} where id = ${key.body.id}`.execute(kms.svc.database.db);
    await until(() => bodies("kms").some((b) => b.data.key_id === key.body.id), "the scheduled rotation webhook");
    expect(bodies("kms").find((b) => b.data.key_id === key.body.id)).toMatchObject({ tenant: "tenant-b", data: { version: 2, scheduled: true } });
  });

  test("jose-ja: a rotation reaches the webhook", async () => {
    const key = await jose.req("POST", "/keys", { name: "notify-jose", algorithm: "ES256" });
    expect(key.status).toBe(201);
    expect((await jose.req("POST", `/keys/${key.body.id}/rotate`)).status).toBe(200);
    await until(() => bodies("jose").some((b) => b.data.key_id === key.body.id), "the jose-ja rotation webhook");
    expect(bodies("jose").find((b) => b.data.key_id === key.body.id)).toMatchObject({ type: "key.rotated", data: { service: "jose-ja", version: 2, scheduled: false } });
  });

  describe("dead letters", () => {
    let flaky: Kms;
    const adminCall = (path: string, init: RequestInit = {}, token = flaky.svc.adminToken) =>
      flaky.svc.admin(`/admin/v1/notifications/dead-letters${path}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
    const adminJson = async (path: string, init?: RequestInit) => {
      const r = await adminCall(path, init);
      return { status: r.status, body: r.status === 204 ? undefined : ((await r.json()) as any) };
    };
    beforeAll(async () => {
      flaky = await startKms((c) => {
        notifyTo("flaky", ["key.rotated"], [0.05, 0.2])(c);
        c.notifications.email = [];
        c.log.access = false;
      });
    }, 120_000);
    afterAll(async () => {
      await flaky?.stop();
    });

    test("a failing receiver is retried with backoff, dead-lettered, listed, inspected, retried once it works, and discarded", async () => {
      const ids: string[] = [];
      for (const tenant of ["tenant-a", "tenant-b", "tenant-a"]) {
        const k = await flaky.req("POST", "/keys", { name: `dl-${ids.length}`, algorithm: "A256GCM" }, { tenant });
        ids.push(k.body.id);
        expect((await flaky.req("POST", `/keys/${k.body.id}/rotate`, undefined, { tenant })).status).toBe(200);
      }
      await until(async () => (await flaky.svc.ctx.notifier.deadLetters()).length === 3, "three dead letters");
      // Kept in the service's database: another instance on it (a second store here) sees the same list.
      const shared = await new DatabaseDeadLetters(flaky.svc.ctx.db).list({ limit: 10 });
      expect(shared.letters.map((d) => d.notification.data.key_id)).toEqual(ids);
      // Each delivery: the first attempt and the two retries of retry_seconds.
      for (const id of ids) expect(bodies("flaky").filter((b) => b.data.key_id === id)).toHaveLength(3);

      expect((await adminCall("", {}, "wrong-token")).status).toBe(401);
      const all = await adminJson("");
      expect(all.status).toBe(200);
      expect(all.body.dead_letters.map((d: any) => d.notification.data.key_id)).toEqual(ids);
      expect(all.body.next).toBeNull();
      const a1 = await adminJson("?tenant=tenant-a&limit=1");
      expect(a1.body.dead_letters.map((d: any) => d.notification.data.key_id)).toEqual([ids[0]]);
      const a2 = await adminJson(`?tenant=tenant-a&limit=1&after=${a1.body.next}`);
      expect(a2.body.dead_letters.map((d: any) => d.notification.data.key_id)).toEqual([ids[2]]);
      expect(a2.body.next).toBeNull();
      expect((await adminJson("?tenant=tenant-b")).body.dead_letters).toHaveLength(1);

      const first = all.body.dead_letters[0];
      const one = await adminJson(`/${first.id}`);
      expect(one.status).toBe(200);
      expect(one.body).toMatchObject({ id: first.id, attempts: 3, error: "status 503", channel: `webhook ${receiver.url("flaky")}`, notification: { type: "key.rotated", tenant: "tenant-a" } });
      // Identifiers only: no key material in a dead letter.
      expect(Object.keys(one.body.notification.data).sort()).toEqual(["algorithm", "key_id", "name", "scheduled", "service", "version"]);

      // Still down: the retry is counted and the letter stays.
      expect((await adminJson(`/${first.id}/retry`, { method: "POST" })).body).toEqual({ id: first.id, delivered: false, attempts: 4, error: "status 503" });
      flakyDown = false;
      const before = hitsOf("flaky").length;
      expect((await adminJson(`/${first.id}/retry`, { method: "POST" })).body).toEqual({ id: first.id, delivered: true });
      const delivered = hitsOf("flaky").slice(before);
      expect(delivered).toHaveLength(1);
      expectSigned(delivered[0]!);
      expect(JSON.parse(delivered[0]!.body).data.key_id).toBe(ids[0]);
      expect((await adminJson(`/${first.id}`)).status).toBe(404);

      const second = all.body.dead_letters[1].id;
      expect((await adminJson(`/${second}`, { method: "DELETE" })).status).toBe(204);
      expect((await adminJson(`/${second}`, { method: "DELETE" })).status).toBe(404);
      expect((await adminJson("")).body.dead_letters.map((d: any) => d.notification.data.key_id)).toEqual([ids[2]]);
      expect((await adminJson(`/${crypto.randomUUID()}/retry`, { method: "POST" })).status).toBe(404);
    });

    test("malformed dead-letter requests get 4xx, never 5xx", async () => {
      const r = rng(19);
      const pieces = ["", "/", `/${crypto.randomUUID()}`, "/not-a-uuid", "/%00", "/..%2f..", `/${"a".repeat(5000)}`, "?limit=0", "?limit=-1", "?limit=99999", "?limit=abc", "?after=x", "?tenant=%ff", "?tenant=" + "t".repeat(100), "?extra=1", "/retry", `/${crypto.randomUUID()}/retry`];
      const methods = ["GET", "POST", "DELETE", "PUT", "PATCH"];
      const cases = Array.from({ length: 2000 }, (_, i) => {
        const p = pieces[Math.floor(r(pieces.length))]! + (i % 3 === 0 ? pieces[Math.floor(r(pieces.length))]! : "");
        return { path: p, method: methods[Math.floor(r(methods.length))]!, body: i % 2 ? mutateJson({ id: crypto.randomUUID() }, r) : undefined };
      });
      const out = await fuzz(cases, (c) => adminCall(c.path, { method: c.method, body: c.method === "GET" ? undefined : c.body, headers: c.body ? { "content-type": "application/json" } : {} }), {
        describe: (c) => `${c.method} ${c.path}`,
        maxMs: 30_000,
        concurrency: 8,
      });
      expect(out.statuses.has(200) || out.statuses.has(404)).toBe(true);
    }, 300_000);
  });
});

describe("audit-chain failure", () => {
  let a: Audit;
  beforeAll(async () => {
    a = await startAudit({
      overrides: (c) => {
        notifyTo("audit", ["audit.chain_failure"])(c);
        c.app = { ...(c.app ?? {}), self_check_interval_ms: 200 };
      },
    });
  }, 120_000);
  afterAll(async () => {
    await a?.stop();
  });

  test("a row changed behind the log's back is found by the self-check and notified, once, naming the entry", async () => {
    await a.ingest(Array.from({ length: 12 }, (_, i) => event(i % 2 ? "tenant-a" : "tenant-b")));
    expect((await a.req("POST", "/checkpoints", undefined, { tenant: "root" })).status).toBe(201);
    // A few checks pass on the untouched log: nothing is sent.
    await Bun.sleep(800);
    expect(hitsOf("audit")).toHaveLength(0);
    const db = a.svc.database.db;
    await sql.raw("drop trigger audit_events_no_update").execute(db);
    const original = (await sql<{ entry: string }>`select entry from audit_events where seq = 7`.execute(db)).rows[0]!.entry;
    await sql`update audit_events set entry = ${original.replace('"result":"ok"', '"result":"denied"')} where seq = 7`.execute(db);
    await until(() => hitsOf("audit").length > 0 && smtp.mails.some((m) => m.raw.includes("audit.chain_failure")), "the chain-failure notifications");
    expectSigned(hitsOf("audit")[0]!);
    expect(bodies("audit")[0]).toMatchObject({ type: "audit.chain_failure", tenant: "root", data: { tree_size: 12, first_bad: 7 } });
    expect(String(bodies("audit")[0]!.data.reason)).toContain("entry 7 was changed");
    // The same failure is not sent again at each check.
    await Bun.sleep(800);
    expect(hitsOf("audit")).toHaveLength(1);
    await sql`update audit_events set entry = ${original} where seq = 7`.execute(db);
  });
});
