/**
 * Failures of a scaled-out sm-kms on PostgreSQL (Debian package postgresql; one server for the
 * file): one of two instances, each in its own process, killed with SIGKILL under write load
 * loses no acknowledged write and the other keeps answering; the database server stopped and
 * started again under a running instance makes it answer 503 (readyz and requests, never 500)
 * and then serve again without a restart; the change feed's listener comes back with it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { smKms } from "../../apps/sm-kms/service.ts";
import { databaseConfig, openTestDatabase, startPostgresEngine } from "../support/engine.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { tempDir, type TestService } from "../support/service.ts";
import { eventually, startInstance } from "./instances.ts";

const engine = await startPostgresEngine();
afterAll(() => engine?.server.stop());

const SCOPES = "kms:admin kms:encrypt kms:decrypt";
const plaintext = Buffer.from("kept").toString("base64url");

describe("on PostgreSQL (Debian package postgresql)", () => {
  if (!engine) return;

  describe("sm-kms: SIGKILL to one of two instances under write load", () => {
    const root = tempDir("cryptoutil-scale-kill-");
    let issuer: TestIssuer;
    let token: string;
    const procs: Array<ReturnType<typeof Bun.spawn>> = [];
    const instances: Array<{ url: string; ca: string }> = [];

    /** Starts instance `i` in a process of its own; resolves once it serves. */
    async function spawnInstance(i: number, database: object): Promise<void> {
      const args = { root, index: i, database, issuer: { issuer: issuer.issuer, jwksUrl: issuer.jwksUrl, caPem: issuer.caPem } };
      const proc = Bun.spawn([process.execPath, join(import.meta.dir, "instance-process.ts"), JSON.stringify(args)], { stdout: "pipe", stderr: "inherit" });
      procs[i] = proc;
      const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`instance ${i} exited before it was ready`);
        text += new TextDecoder().decode(value);
      }
      reader.releaseLock();
      instances[i] = JSON.parse(text.split("\n")[0]!) as { url: string; ca: string };
    }
    const call = (i: number, path: string, method = "GET", body?: unknown) =>
      fetch(`${instances[i]!.url}/service/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        tls: { ca: instances[i]!.ca },
      } as RequestInit);

    beforeAll(async () => {
      issuer = await startTestIssuer({ audience: "sm-kms" });
      token = await issuer.mint({ tenant: "acme", scope: SCOPES });
      const database = await databaseConfig(engine, join(root, "sm-kms"));
      // One after the other: the first creates the schema and the barrier's keys.
      await spawnInstance(0, database);
      await spawnInstance(1, database);
    }, 120_000);
    afterAll(async () => {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.all(procs.map((p) => p.exited));
      await issuer?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    test("every acknowledged key survives, and the other instance answers every request", async () => {
      const acked: Array<{ id: string; via: number }> = [];
      const survivorFailures: string[] = [];
      let killed = false;
      let afterKill = 0;
      let n = 0;
      const worker = async () => {
        while (afterKill < 60) {
          const i = killed ? 1 : n++ % 2;
          const name = `k-${crypto.randomUUID()}`;
          try {
            const r = await call(i, "/keys", "POST", { name, algorithm: "A256GCM" });
            const body = (await r.json()) as { id?: string; error?: { code: string } };
            if (r.status === 201) {
              acked.push({ id: body.id!, via: i });
              if (killed) afterKill++;
            } else if (i === 1) survivorFailures.push(`${r.status} ${body.error?.code}`);
          } catch (e) {
            // The killed instance's connections break; nothing it did not answer was acknowledged.
            if (i === 1) survivorFailures.push(String(e));
          }
          if (!killed && acked.length >= 60) {
            killed = true;
            procs[0]!.kill("SIGKILL");
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      expect(await procs[0]!.exited).not.toBe(0);
      expect(survivorFailures).toEqual([]);
      expect(acked.filter((a) => a.via === 0).length).toBeGreaterThan(0);
      // Every acknowledged write is there, whichever instance took it.
      const missing: string[] = [];
      for (const { id } of acked) {
        const r = await call(1, `/keys/${id}`);
        if (r.status !== 200) missing.push(`${id}: ${r.status}`);
        await r.body?.cancel();
      }
      expect(missing).toEqual([]);
      const enc = await call(1, `/keys/${acked[0]!.id}/encrypt`, "POST", { plaintext });
      expect(enc.status).toBe(200);
    }, 120_000);
  });

  describe("sm-kms: PostgreSQL stopped and started again under a running instance", () => {
    const root = tempDir("cryptoutil-scale-outage-");
    let issuer: TestIssuer;
    let kms: TestService;
    let token: string;
    const call = (path: string, method = "GET", body?: unknown) =>
      kms.call(`/service/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const readyz = async () => (await kms.admin("/admin/v1/readyz")).status;

    beforeAll(async () => {
      issuer = await startTestIssuer({ audience: "sm-kms" });
      token = await issuer.mint({ tenant: "acme", scope: SCOPES });
      kms = await startInstance(smKms, 0, { engine, root, issuer });
    }, 60_000);
    afterAll(async () => {
      await engine.server.start(); // in case a failed test left it halted
      await kms?.stop();
      await issuer?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    test("readyz and requests answer 503 unavailable while it is down, and work again once it is back", async () => {
      const made = await call("/keys", "POST", { name: "before", algorithm: "A256GCM" });
      expect(made.status).toBe(201);
      const id = ((await made.json()) as { id: string }).id;
      expect((await call(`/keys/${id}/encrypt`, "POST", { plaintext })).status).toBe(200);

      await engine.server.halt();
      expect(await eventually(readyz, 503)).toBe(503);
      for (const [path, method, body] of [
        [`/keys/${id}/encrypt`, "POST", { plaintext }],
        [`/keys/${id}`, "GET", undefined],
        ["/keys", "POST", { name: "during", algorithm: "A256GCM" }],
      ] as const) {
        const r = await call(path, method, body);
        const err = ((await r.json()) as { error: { code: string } }).error;
        expect([path, method, r.status, err.code]).toEqual([path, method, 503, "unavailable"]);
      }
      expect((await kms.admin("/admin/v1/livez")).status).toBe(200);

      await engine.server.start();
      expect(await eventually(readyz, 200)).toBe(200);
      expect((await call(`/keys/${id}/encrypt`, "POST", { plaintext })).status).toBe(200);
      expect((await call("/keys", "POST", { name: "after", algorithm: "A256GCM" })).status).toBe(201);
    }, 120_000);

    test("the change feed's listener reconnects: subscribers resync, then notices arrive again", async () => {
      const a = await openTestDatabase(engine, "feed");
      const heard: string[] = [];
      let resyncs = 0;
      a.changes.subscribe("test.feed", (p) => heard.push(p), () => resyncs++);
      expect(await eventually(async () => resyncs, 1)).toBe(1); // listening
      await a.changes.publish("test.feed", "one");
      expect(await eventually(async () => heard.join(), "one")).toBe("one");

      await engine.server.halt();
      await engine.server.start();
      expect(await eventually(async () => resyncs, 2)).toBe(2);
      await a.changes.publish("test.feed", "two");
      expect(await eventually(async () => heard.join(), "one,two")).toBe("one,two");
      await a.close();
    }, 120_000);
  });
});
