/**
 * ACME on PostgreSQL as well as embedded: the nonces that concurrent requests spend are recorded
 * in one multi-row INSERT ... RETURNING per event-loop turn, and the hot reads (account, order,
 * authorizations) are prepared statements there. Each engine: the same nonce sent by many
 * requests at once is accepted exactly once (within one batch and across batches), distinct
 * nonces sent at once are each accepted, and a complete order (http-01, finalize, download) works.
 * Requests over HTTPS rarely land in one batch, so the store is also called directly, in one turn.
 * The service itself keeps its nonces in memory on embedded (`nonce_scope: auto`), and the
 * instance scope is tested here on both engines as well.
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
import { cachesAcmeAccounts, nonceScopeOf } from "../../apps/pki-ca/service.ts";

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

    test("orders and authorizations made before migration 14 (clustered by id on SQLite, narrower indexes) are found after it", async () => {
      const database = await openTestDatabase(engine!, "acme-cluster-upgrade");
      try {
        await runMigrations(database.db, "pki-ca", migrations.filter((m) => m.version < 14));
        const now = new Date().toISOString();
        const later = new Date(Date.now() + 3_600_000).toISOString();
        const order = { id: "o1", tenant: "t", account_id: "a1", status: "valid", identifiers: '[{"type":"dns","value":"up.localhost"}]', profile: "p", expires: later, error: null, request_id: "r1", serial: "0a1b", created_at: now, replaces: "aki.0a00", not_before: null, not_after: null };
        const authz = { id: "z1", tenant: "t", account_id: "a1", order_id: "o1", identifier_type: "dns", identifier_value: "up.localhost", status: "valid", expires: later, token: "tok", challenge_status: "valid", validated_at: now, error: null, wildcard: 0, challenge_type: "http-01" };
        await database.db.insertInto("acme_orders").values([order, { ...order, id: "o2", status: "pending", serial: null, replaces: null, request_id: null }]).execute();
        await database.db.insertInto("acme_authorizations").values(authz).execute();
        await database.db.insertInto("acme_order_authorizations").values({ tenant: "t", order_id: "o1", authz_id: "z1" }).execute();
        await runMigrations(database.db, "pki-ca", migrations);
        const store = new AcmeStore(database.db);
        expect(await store.order("t", "o1")).toEqual(order as never);
        expect((await store.order("t", "o2"))?.status).toBe("pending");
        expect((await store.orderBySerial("t", "0a1b"))?.id).toBe("o1");
        expect(await store.replacing("t", "aki.0a00")).toEqual([{ id: "o1", status: "valid" }]);
        expect(await store.authorization("t", "z1")).toEqual(authz as never);
        expect(await store.authorizationIdsOf("t", "o1")).toEqual(["z1"]);
        expect((await store.reusableAuthorization("t", "a1", "dns", "up.localhost", 0, now))?.id).toBe("z1");
        // A duplicate id is still refused (the primary key), and a new row goes in.
        await expect(database.db.insertInto("acme_orders").values({ ...order, serial: null, replaces: null }).execute()).rejects.toThrow();
        await database.db.insertInto("acme_orders").values({ ...order, id: "o3", serial: null, replaces: null }).execute();
        expect((await store.order("t", "o3"))?.id).toBe("o3");
        if (name === "embedded") {
          const ddl = await database.db.selectFrom("sqlite_master" as never).select("sql" as never).where("name" as never, "in", ["acme_orders", "acme_authorizations"] as never).execute();
          expect(ddl.map((r: any) => String(r.sql).toLowerCase())).toEqual([expect.stringContaining("without rowid"), expect.stringContaining("without rowid")]);
        }
      } finally {
        await database.close();
      }
    });

    test(`the service's nonces (nonce_scope auto): ${name === "embedded" ? "this process's, nothing written" : "spent in the database"}`, async () => {
      const count = () => f.svc.ctx.db.selectFrom("acme_nonces_spent").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow().then((r) => Number(r.n));
      const before = await count();
      const nonce = await c.nonce();
      expect(await postAsGet(nonce)).toBe(200);
      expect(await postAsGet(nonce)).toBe(400);
      expect(await count()).toBe(name === "embedded" ? before : before + 1);
    });

    test("instance-scoped nonces: once each, never by another store, a restarted one, or a store of the other scope", async () => {
      const spentRows = () => f.svc.ctx.db.selectFrom("acme_nonces_spent").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow().then((r) => Number(r.n));
      const before = await spentRows();
      const acmeStore = new AcmeStore(f.svc.ctx.db);
      const mine = new NonceStore(acmeStore, f.svc.ctx.protector, { scope: "instance" });
      const nonce = await mine.issue();
      const spent = await Promise.all(Array.from({ length: 12 }, () => mine.consume(nonce)));
      expect(spent.filter((ok) => ok)).toHaveLength(1);
      expect(await mine.consume(nonce)).toBe(false);
      // Another process (or this one restarted) has another tag; a shared store checks another MAC.
      const fresh = await mine.issue();
      expect(await new NonceStore(acmeStore, f.svc.ctx.protector, { scope: "instance" }).consume(fresh)).toBe(false);
      const shared = new NonceStore(acmeStore, f.svc.ctx.protector);
      expect(await shared.consume(fresh)).toBe(false);
      expect(await mine.consume(await shared.issue())).toBe(false);
      // Refused by the others, still good here; a changed counter breaks the MAC.
      const raw = Buffer.from(await mine.issue(), "base64url");
      raw[23]! ^= 1;
      expect(await mine.consume(raw.toString("base64url"))).toBe(false);
      expect(await mine.consume(fresh)).toBe(true);
      // Nothing was written for them.
      expect(await spentRows()).toBe(before);
    });

    test("instance-scoped nonces: only the last `window` are accepted, and none after its expiry", async () => {
      const store = new NonceStore(new AcmeStore(f.svc.ctx.db), f.svc.ctx.protector, { scope: "instance", window: 8 });
      const first = await store.issue();
      const kept = await store.issue();
      for (let i = 0; i < 7; i++) await store.issue();
      expect(await store.consume(first)).toBe(false);
      expect(await store.consume(kept)).toBe(true);
      const short = new NonceStore(new AcmeStore(f.svc.ctx.db), f.svc.ctx.protector, { scope: "instance", ttlMs: 1 });
      const n = await short.issue();
      await Bun.sleep(5);
      expect(await short.consume(n)).toBe(false);
      expect(() => new NonceStore(new AcmeStore(f.svc.ctx.db), f.svc.ctx.protector, { scope: "instance", window: 12 })).toThrow();
    });

    test("a complete order: http-01, finalize, download", async () => {
      const { url, order } = await c.orderReady([{ type: "dns", value: "pg.localhost" }], http01);
      expect(order.status).toBe("ready");
      const { leaf } = await c.issue(url, order, ["pg.localhost"]);
      expect(leaf.subject).toContain("pg.localhost");
    }, 60_000);
  });
}

describe("ACME nonce scope", () => {
  test("auto: this process on a local embedded database; the database where instances may share it; configured wins", () => {
    expect(nonceScopeOf("auto", {})).toBe("instance");
    expect(nonceScopeOf("auto", { url: "file:data/pki-ca.db" })).toBe("instance");
    expect(nonceScopeOf("auto", { url: ":memory:" })).toBe("instance");
    expect(nonceScopeOf("auto", { url: "file:replica.db", sync_url: "libsql://primary.example.test" })).toBe("shared");
    expect(nonceScopeOf("auto", { url: "postgres://ca@db.example.test/ca" })).toBe("shared");
    expect(nonceScopeOf("auto", { url: "https://libsql.example.test" })).toBe("shared");
    expect(nonceScopeOf("shared", {})).toBe("shared");
    expect(nonceScopeOf("instance", { url: "postgres://ca@db.example.test/ca" })).toBe("instance");
  });

  test("account rows are kept in the process only where it is the database's one ACME server (instance scope on a local file)", () => {
    expect(cachesAcmeAccounts("instance", {})).toBe(true);
    expect(cachesAcmeAccounts("instance", { url: "file:data/pki-ca.db" })).toBe(true);
    expect(cachesAcmeAccounts("shared", { url: "file:data/pki-ca.db" })).toBe(false);
    expect(cachesAcmeAccounts("instance", { url: "postgres://ca@db.example.test/ca" })).toBe(false);
    expect(cachesAcmeAccounts("instance", { url: "file:replica.db", sync_url: "libsql://primary.example.test" })).toBe(false);
    expect(cachesAcmeAccounts("instance", { url: "https://libsql.example.test" })).toBe(false);
  });
});

acmeOn("embedded", EMBEDDED);
acmeOn("PostgreSQL", pg);
