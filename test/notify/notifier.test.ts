/**
 * Notifications over real receivers: an SMTP server (the `smtp-server` package) gets the
 * e-mail, a webhook receiver checks the signature, a Slack-compatible receiver gets the text;
 * a receiver that keeps failing is retried on the backoff schedule, then dead-lettered; one that
 * recovers gets the event on a retry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac, timingSafeEqual } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { emailChannel, slackChannel, webhookChannel } from "../../src/notify/channels.ts";
import { Notifier } from "../../src/notify/notifier.ts";
import { startReceiver, startSmtp, type SmtpSink, type WebhookSink } from "./receivers.ts";
import { tempDir } from "../support/service.ts";
import { ed25519Csr, startCa } from "../pki-ca/helpers.ts";

const dir = tempDir("cryptoutil-notify-");
const secret = crypto.getRandomValues(new Uint8Array(32));
writeFileSync(join(dir, "hook.secret"), secret, { mode: 0o600 });

let smtp: SmtpSink;
let receiver: WebhookSink;
let mails: SmtpSink["mails"];
let smtpPort: number;
let flakyFailures = 2;
const hits: Record<string, Array<{ headers: Headers; body: string }>> = { hook: [], slack: [], failing: [], flaky: [] };

beforeAll(async () => {
  smtp = await startSmtp();
  mails = smtp.mails;
  smtpPort = smtp.port;
  receiver = startReceiver((path) => (path === "failing" ? 503 : path === "flaky" && flakyFailures-- > 0 ? 502 : 204));
  Object.assign(receiver.hits, hits);
});

afterAll(async () => {
  receiver?.stop();
  await smtp?.stop();
});

const url = (p: string) => receiver.url(p);

describe("channels", () => {
  test("expiry and revocation reach an SMTP server, a signed webhook and a Slack-compatible receiver", async () => {
    const n = new Notifier([
      emailChannel({ host: "127.0.0.1", port: smtpPort, security: "none", from: "ca@example.test", to: ["ops@example.test"], events: ["certificate.expiring", "certificate.revoked"] }),
      webhookChannel({ url: url("hook"), secret_file: join(dir, "hook.secret") }),
      slackChannel({ url: url("slack"), events: ["certificate.revoked"] }),
    ]);
    n.emit("certificate.expiring", "acme", { serial: "0a1b", days_left: 30, threshold_days: 30 });
    n.emit("certificate.revoked", "acme", { serial: "0a1b", reason: "keyCompromise" });
    n.emit("request.pending", "acme", { request_id: "r1" });
    await n.settle();

    expect(mails).toHaveLength(2);
    expect(mails[0]!.from).toBe("ca@example.test");
    expect(mails[0]!.to).toEqual(["ops@example.test"]);
    expect(mails.map((m) => /^Subject: (.*)$/m.exec(m.raw)?.[1])).toEqual(["cryptoutil: certificate.expiring (acme)", "cryptoutil: certificate.revoked (acme)"]);
    expect(mails[1]!.raw).toContain("reason=keyCompromise");

    expect(hits.hook!.map((h) => JSON.parse(h.body).type)).toEqual(["certificate.expiring", "certificate.revoked", "request.pending"]);
    for (const h of hits.hook!) {
      const [t, v1] = h.headers.get("cryptoutil-signature")!.split(",").map((p) => p.split("=")[1]!);
      const expected = createHmac("sha256", secret).update(`${t}.${h.body}`).digest();
      expect(timingSafeEqual(Buffer.from(v1!, "hex"), expected)).toBe(true);
    }
    expect(hits.slack!.map((h) => JSON.parse(h.body).text)).toEqual(["[acme] certificate.revoked: serial=0a1b, reason=keyCompromise"]);
    expect(await n.deadLetters()).toHaveLength(0);
  });

  test("a failing receiver is retried with backoff, then dead-lettered; a flaky one is delivered on a retry", async () => {
    const waits: number[] = [];
    const n = new Notifier([slackChannel({ url: url("failing") }), webhookChannel({ url: url("flaky"), secret_file: join(dir, "hook.secret") })], {
      retryDelaysMs: [10, 40, 160],
      sleep: (ms) => {
        waits.push(ms);
        return Bun.sleep(ms);
      },
    });
    n.emit("certificate.revoked", "acme", { serial: "ff" });
    await n.settle();
    expect(hits.failing).toHaveLength(4); // the first attempt and three retries
    expect(hits.flaky).toHaveLength(3); // two refusals, then delivered
    expect(waits.sort((a, b) => a - b)).toEqual([10, 10, 40, 40, 160]);
    const dead = await n.deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ channel: expect.stringContaining("slack"), attempts: 4, error: "status 503" });
    expect(dead[0]!.notification).toMatchObject({ type: "certificate.revoked", tenant: "acme", data: { serial: "ff" } });
  });

  test("an unreachable SMTP server is dead-lettered too; bad channel settings are refused", async () => {
    const n = new Notifier([emailChannel({ host: "127.0.0.1", port: 1, security: "none", from: "ca@example.test", to: ["ops@example.test"] })], { retryDelaysMs: [5] });
    n.emit("certificate.expiring", "acme", { serial: "01" });
    await n.settle();
    expect((await n.deadLetters())[0]).toMatchObject({ attempts: 2 });
    expect(() => emailChannel({ host: "mail.example.test", port: 25, security: "none", from: "a@example.test", to: ["b@example.test"] })).toThrow(/loopback/);
    writeFileSync(join(dir, "short.secret"), "short");
    expect(() => webhookChannel({ url: url("hook"), secret_file: join(dir, "short.secret") })).toThrow(/32 bytes/);
  });

  test("an event emitted to one channel by name reaches only it; a direct channel takes no broadcast event", async () => {
    hits.hook!.length = 0;
    const own: string[] = [];
    const n = new Notifier([webhookChannel({ url: url("hook"), secret_file: join(dir, "hook.secret") })], { retryDelaysMs: [5] });
    n.addChannels([{ name: "own", direct: true, send: async (x) => void own.push(x.type) }]);
    expect(n.active).toBe(true);
    n.emit("session.ended", "acme", { sid: "s1" }, "own");
    n.emit("certificate.revoked", "acme", { serial: "02" });
    await n.settle();
    expect(own).toEqual(["session.ended"]);
    expect(hits.hook!.map((h) => JSON.parse(h.body).type)).toEqual(["certificate.revoked"]);
    expect(new Notifier([{ name: "own", direct: true, send: async () => {} }]).active).toBe(false);
  });
});

describe("pki-ca's notifications run on it", () => {
  test("a revocation in pki-ca reaches its e-mail and Slack channels", async () => {
    mails.length = 0;
    hits.slack!.length = 0;
    const ca = await startCa({
      email: [{ host: "127.0.0.1", port: smtpPort, security: "none", from: "ca@example.test", to: ["pki-ops@example.test"], events: ["certificate.revoked"] }],
      slack: [{ url: url("slack") }],
    });
    try {
      const token = await ca.token("acme", "pki:request pki:revoke");
      const { pem } = await ed25519Csr("www.example.com");
      const issued = await ca.api("/certificates", token, { body: { csr: pem, profile: "server" } });
      expect(issued.status).toBe(201);
      const serial = ((await issued.json()) as { certificate: { serial: string } }).certificate.serial;
      expect((await ca.api(`/certificates/${serial}/revoke`, token, { body: { reason: "keyCompromise" } })).status).toBe(200);
      const deadline = Date.now() + 30_000;
      while ((mails.length < 1 || hits.slack!.length < 2) && Date.now() < deadline) await Bun.sleep(50);
      expect(mails.map((m) => m.to)).toEqual([["pki-ops@example.test"]]);
      expect(mails[0]!.raw).toContain(`serial=${serial}`);
      expect(hits.slack!.map((h) => JSON.parse(h.body).text.split(":")[0])).toEqual(["[acme] certificate.issued", "[acme] certificate.revoked"]);
    } finally {
      await ca.stop();
    }
  }, 120_000);
});

