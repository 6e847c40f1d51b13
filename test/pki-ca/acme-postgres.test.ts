/**
 * ACME on PostgreSQL as well as embedded: the nonces that concurrent requests spend are recorded
 * in one multi-row INSERT ... RETURNING per event-loop turn, and the hot reads (account, order,
 * authorizations) are prepared statements there. Each engine: the same nonce sent by many
 * requests at once is accepted exactly once (within one batch and across batches), distinct
 * nonces sent at once are each accepted, and a complete order (http-01, finalize, download) works.
 * Requests over HTTPS rarely land in one batch, so the store is also called directly, in one turn.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openTestDatabase, startPostgresEngine, EMBEDDED, type TestEngine } from "../support/engine.ts";
import { runMigrations } from "../../src/storage/index.ts";
import { migrations } from "../../apps/pki-ca/migrations.ts";
import type { CaFixture } from "./helpers.ts";
import { acmeApp, startHttp01, TestAcme } from "./acme-helpers.ts";
import { startCa } from "./helpers.ts";
import { NonceStore } from "../../apps/pki-ca/acme/nonces.ts";
import { AcmeStore } from "../../apps/pki-ca/acme/store.ts";

const pg = await startPostgresEngine();
afterAll(() => pg?.server.stop());

function acmeOn(name: string, engine: TestEngine | undefined): void {
  describe.skipIf(!engine)(`ACME nonces and orders (${name})`, () => {
    let f: CaFixture;
    let http01: ReturnType<typeof startHttp01>;
    let c: TestAcme;

    beforeAll(async () => {
      http01 = startHttp01();
      f = await startCa(acmeApp(http01.port), undefined, undefined, engine!);
      c = await TestAcme.create(`${f.svc.publicUrl}/acme/acme/directory`, f.svc.ca);
      expect((await c.register()).status).toBe(201);
    });
    afterAll(async () => {
      await f?.stop();
      http01?.stop();
    });

    const postAsGet = async (nonce: string) => (await c.post(c.kid!, "", { nonce })).status;

    test("one nonce sent by 12 requests at once: exactly one is accepted, the others get badNonce", async () => {
      const nonce = await c.nonce();
      const statuses = await Promise.all(Array.from({ length: 12 }, () => postAsGet(nonce)));
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 400)).toHaveLength(11);
      // And later, in a batch of its own.
      expect(await postAsGet(nonce)).toBe(400);
    });

    test("one nonce spent 12 times in one turn (one batch): accepted once; then refused by a second store on the same database", async () => {
      const store = new NonceStore(new AcmeStore(f.svc.ctx.db), f.svc.ctx.protector);
      const nonce = await store.issue();
      const spent = await Promise.all(Array.from({ length: 12 }, () => store.consume(nonce)));
      expect(spent.filter((ok) => ok)).toHaveLength(1);
      const other = new NonceStore(new AcmeStore(f.svc.ctx.db), f.svc.ctx.protector);
      expect(await other.consume(nonce)).toBe(false);
      expect(await other.consume(await store.issue())).toBe(true);
    });

    test("12 distinct nonces sent at once are each accepted once", async () => {
      const nonces = await Promise.all(Array.from({ length: 12 }, () => c.nonce()));
      expect(await Promise.all(nonces.map(postAsGet))).toEqual(nonces.map(() => 200));
      expect(await Promise.all(nonces.map(postAsGet))).toEqual(nonces.map(() => 400));
    });

    test("nonces spent before spent nonces were keyed by expiry are still refused after that migration", async () => {
      const database = await openTestDatabase(engine!, "acme-nonce-upgrade");
      try {
        await runMigrations(database.db, "pki-ca", migrations.filter((m) => m.version < 13));
        const later = Date.now() + 600_000;
        await database.db.insertInto("acme_nonces_used").values([{ nonce: "spent-before", expires: later }, { nonce: "expired-before", expires: Date.now() - 1000 }]).execute();
        await runMigrations(database.db, "pki-ca", migrations);
        const store = new AcmeStore(database.db);
        expect(await store.spendNonce("spent-before", later)).toBe(false);
        expect(await store.spendNonce("fresh", later)).toBe(true);
        expect(await store.spendNonce("fresh", later)).toBe(false);
        // Pruning goes by expiry: the expired one goes, the live ones stay spent.
        await store.pruneNonces(Date.now());
        expect((await database.db.selectFrom("acme_nonces_spent").select("nonce").orderBy("nonce").execute()).map((r) => r.nonce)).toEqual(["fresh", "spent-before"]);
      } finally {
        await database.close();
      }
    });

    test("a complete order: http-01, finalize, download", async () => {
      const { url, order } = await c.orderReady([{ type: "dns", value: "pg.localhost" }], http01);
      expect(order.status).toBe("ready");
      const { leaf } = await c.issue(url, order, ["pg.localhost"]);
      expect(leaf.subject).toContain("pg.localhost");
    }, 60_000);
  });
}

acmeOn("embedded", EMBEDDED);
acmeOn("PostgreSQL", pg);
