/**
 * Remote and embedded-replica storage against a real libSQL server (sqld, see
 * test/support/sqld.ts), with JWT auth on: every request carries a real EdDSA token.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql, type Kysely } from "kysely";
import { Barrier } from "../../src/barrier/index.ts";
import { AppError } from "../../src/service/errors.ts";
import {
  openDatabase,
  ping,
  runMigrations,
  withTransaction,
  type Database,
  type Migration,
} from "../../src/storage/index.ts";
import { foreignToken, startSqld, type SqldServer } from "../support/sqld.ts";

const server = await startSqld();
const opened: Array<Database<any>> = [];
const servers: SqldServer[] = server ? [server] : [];
// Replica files live apart from the servers' directories, which stop() removes.
const scratch = await mkdtemp(join(tmpdir(), "remote-test-"));
afterAll(async () => {
  for (const d of opened) await d.close();
  for (const s of servers) await s.stop();
  await rm(scratch, { recursive: true, force: true });
});

async function remote(url: string, authToken: string | undefined): Promise<Database<any>> {
  const store = await openDatabase<any>({ service: "remote-test", url, authToken });
  opened.push(store);
  return store;
}

async function catchErr(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

function expectAppError(err: unknown, code: string): AppError {
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  return err as AppError;
}

/** Asserts a token appears nowhere in what an error exposes (message, details). */
function expectNoToken(err: AppError, token: string) {
  expect(err.message).not.toContain(token);
  expect(JSON.stringify(err.details ?? {})).not.toContain(token);
  expect(String(err)).not.toContain(token);
}

const petMigrations: Migration[] = [
  {
    version: 1,
    name: "owners-and-pets",
    up: async (db) => {
      await db.schema.createTable("owners").addColumn("id", "integer", (c) => c.primaryKey()).addColumn("name", "text").execute();
      await db.schema
        .createTable("pets")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("owner_id", "integer", (c) => c.notNull().references("owners.id"))
        .addColumn("name", "text", (c) => c.notNull().unique())
        .addColumn("photo", "blob")
        .execute();
    },
  },
  {
    version: 2,
    name: "counter",
    up: async (db) => {
      await sql`create table counter (id integer primary key, n integer not null)`.execute(db);
      await sql`insert into counter (id, n) values (1, 0)`.execute(db);
    },
  },
];

const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));

describe(server ? "remote mode (sqld)" : "remote mode (skipped: sqld missing)", () => {
  if (!server) return;

  test("migrations, CRUD, blobs, server-side foreign keys and ping over HTTP with a JWT", async () => {
    const token = await server.mintToken();
    const store = await remote(server.url, token);
    expect(store.mode).toBe("remote");
    expect(store.location).toBe(`${server.url}/`);
    expect(store.location).not.toContain(token);

    expect(await runMigrations(store.db, "pets", petMigrations)).toEqual({ app: "pets", applied: [1, 2], current: 2 });
    expect(await runMigrations(store.db, "pets", petMigrations)).toEqual({ app: "pets", applied: [], current: 2 });

    const db = store.db;
    await db.insertInto("owners").values({ id: 1, name: "ann" }).execute();
    const photo = random(64 * 1024);
    await db
      .insertInto("pets")
      .values([
        { id: 1, owner_id: 1, name: "rex", photo },
        { id: 2, owner_id: 1, name: "tom", photo: new Uint8Array(0) },
        { id: 3, owner_id: 1, name: "edge", photo: new Uint8Array([0, 255, 0, 128]) },
      ])
      .execute();
    const rows = await db.selectFrom("pets").select(["id", "name", "photo"]).orderBy("id").execute();
    expect(rows.map((r) => r.name)).toEqual(["rex", "tom", "edge"]);
    for (const r of rows) expect(r.photo).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(rows[0]!.photo).equals(Buffer.from(photo))).toBe(true);
    expect(rows[1]!.photo.length).toBe(0);
    expect([...rows[2]!.photo]).toEqual([0, 255, 0, 128]);

    const upd = await db.updateTable("pets").set({ name: "rexy" }).where("id", "=", 1).executeTakeFirst();
    expect(upd.numUpdatedRows).toBe(1n);
    const del = await db.deleteFrom("pets").where("id", "=", 2).executeTakeFirst();
    expect(del.numDeletedRows).toBe(1n);
    expect((await db.selectFrom("pets").select("name").orderBy("id").execute()).map((r) => r.name)).toEqual(["rexy", "edge"]);

    // sqld runs its connections with foreign keys on, so the constraint holds remotely too
    const fk = await catchErr(
      withTransaction(db, async (trx) => {
        await trx.insertInto("pets").values({ id: 9, owner_id: 42, name: "orphan" }).execute();
      }),
    );
    expect((expectAppError(fk, "conflict").details as { storage: string }).storage).toStartWith("SQLITE_CONSTRAINT");
    const dup = await catchErr(
      withTransaction(db, async (trx) => {
        await trx.insertInto("pets").values({ id: 10, owner_id: 1, name: "edge" }).execute();
      }),
    );
    expectAppError(dup, "conflict");

    const p = await ping(db);
    expect(p.ok).toBe(true);
  });

  test("transactions roll back as a whole, savepoints, read-only, and concurrent writers do not lose updates", async () => {
    const token = await server.mintToken();
    const store = await remote(server.url, token);
    const other = await remote(server.url, token);
    await sql`create table tx_t (id integer primary key, v text)`.execute(store.db);

    const boom = new AppError("bad_request", "boom");
    const err = await catchErr(
      withTransaction(store.db, async (trx) => {
        await trx.insertInto("tx_t").values({ id: 1, v: "a" }).execute();
        // inside the transaction its own write is visible...
        expect((await trx.selectFrom("tx_t").select("id").execute()).length).toBe(1);
        await trx.insertInto("tx_t").values({ id: 2, v: "b" }).execute();
        throw boom;
      }),
    );
    expect(err).toBe(boom);
    // ...and after the rollback no client sees anything
    expect(await other.db.selectFrom("tx_t").selectAll().execute()).toEqual([]);

    // a constraint failure in the middle undoes the earlier statement
    await store.db.insertInto("tx_t").values({ id: 5, v: "kept" }).execute();
    const conflict = await catchErr(
      withTransaction(store.db, async (trx) => {
        await trx.insertInto("tx_t").values({ id: 6, v: "new" }).execute();
        await trx.insertInto("tx_t").values({ id: 5, v: "dup" }).execute();
      }),
    );
    expectAppError(conflict, "conflict");
    expect(await other.db.selectFrom("tx_t").selectAll().execute()).toEqual([{ id: 5, v: "kept" }]);

    // savepoints over the server-side stream
    const trx = await store.db.startTransaction().execute();
    await trx.insertInto("tx_t").values({ id: 7, v: "outer" }).execute();
    const sp = await trx.savepoint("inner").execute();
    await sp.insertInto("tx_t").values({ id: 8, v: "inner" }).execute();
    await sp.rollbackToSavepoint("inner").execute();
    await trx.commit().execute();
    expect((await other.db.selectFrom("tx_t").select("id").orderBy("id").execute()).map((r) => r.id)).toEqual([5, 7]);

    // a read-only transaction (BEGIN TRANSACTION READONLY) reads; sqld 0.24 does not refuse
    // writes inside one, so read-only is a locking hint here, not an access control
    const n = await withTransaction(store.db, async (t) => (await t.selectFrom("tx_t").selectAll().execute()).length, {
      readOnly: true,
    });
    expect(n).toBe(2);

    // read-modify-write from two clients at once: write transactions are serialized, none lost
    await sql`create table tx_counter (id integer primary key, n integer not null)`.execute(store.db);
    await store.db.insertInto("tx_counter").values({ id: 1, n: 0 }).execute();
    const bump = (db: Kysely<any>) =>
      withTransaction(db, async (t) => {
        const { n } = await t.selectFrom("tx_counter").select("n").where("id", "=", 1).executeTakeFirstOrThrow();
        await t.updateTable("tx_counter").set({ n: n + 1 }).where("id", "=", 1).execute();
      });
    await Promise.all(Array.from({ length: 12 }, (_, i) => bump(i % 2 ? store.db : other.db)));
    const final = await store.db.selectFrom("tx_counter").select("n").executeTakeFirstOrThrow();
    expect(final.n).toBe(12);
  });

  test("ws:// and libsql://?tls=0 reach the same server and data", async () => {
    const token = await server.mintToken();
    const http = await remote(server.url, token);
    await sql`create table proto_t (k text primary key, v blob)`.execute(http.db);
    await http.db.insertInto("proto_t").values({ k: "from-http", v: new Uint8Array([7, 8]) }).execute();
    for (const url of [server.url.replace("http:", "ws:"), `${server.url.replace("http:", "libsql:")}?tls=0`]) {
      const store = await remote(url, token);
      expect(store.location).not.toContain(token);
      const row = await store.db.selectFrom("proto_t").selectAll().where("k", "=", "from-http").executeTakeFirstOrThrow();
      expect([...row.v]).toEqual([7, 8]);
      await withTransaction(store.db, async (t) => {
        await t.insertInto("proto_t").values({ k: url, v: null }).execute();
      });
      const rolled = await catchErr(
        withTransaction(store.db, async (t) => {
          await t.insertInto("proto_t").values({ k: `${url}#rolled`, v: null }).execute();
          throw new AppError("bad_request", "undo");
        }),
      );
      expectAppError(rolled, "bad_request");
      expect((await ping(store.db)).ok).toBe(true);
    }
    const keys = (await http.db.selectFrom("proto_t").select("k").execute()).map((r) => r.k);
    expect(keys.length).toBe(3);
    expect(keys.some((k) => k.endsWith("#rolled"))).toBe(false);
  });

  test("a refused token is a typed 503 naming the cause, never echoing the token", async () => {
    const good = await server.mintToken();
    const cases: Array<[string, string | undefined]> = [
      ["foreign key", await foreignToken()],
      ["expired", await server.mintToken({ expiresIn: "-10m" })],
      ["garbage", "not-a-jwt"],
      ["missing", undefined],
      ["tampered", `${good.slice(0, -6)}AAAAAA`],
    ];
    for (const [what, token] of cases) {
      for (const url of [server.url, server.url.replace("http:", "ws:")]) {
        const store = await remote(url, token);
        const err = await catchErr(withTransaction(store.db, async (t) => sql`select 1`.execute(t)));
        const e = expectAppError(err, "unavailable");
        expect([what, e.message]).toEqual([what, "the database server refused the credentials"]);
        expect(e.status).toBe(503);
        if (token) expectNoToken(e, token);
        expect(await ping(store.db)).toMatchObject({ ok: false, error: "credentials_refused" });
        // migrations at start fail too, typed
        expectAppError(await catchErr(runMigrations(store.db, "pets", petMigrations)), "migration_failed");
      }
    }
    // a read-only token reads but cannot write
    const ro = await remote(server.url, await server.mintToken({ access: "ro" }));
    expect((await ping(ro.db)).ok).toBe(true);
    const w = await catchErr(withTransaction(ro.db, async (t) => sql`create table ro_t (a int)`.execute(t)));
    expect((expectAppError(w, "unavailable").details as { httpStatus?: number }).httpStatus).toBe(403);
  });

  test("the barrier works on the remote database: unseal, encrypt, restart, decrypt", async () => {
    const token = await server.mintToken();
    const secret = random(32);
    const first = await remote(server.url, token);
    const barrier = new Barrier({ db: first.db, service: "remote-test" });
    const st = await barrier.unseal([secret]);
    expect(st.sealed).toBe(false);
    const ct = await barrier.encrypt("remote secret ✓", "remote-test/secrets/value/1");
    const bytes = random(300);
    const ctBytes = await barrier.encrypt(bytes, "remote-test/blob/2");
    await sql`create table sealed_values (id integer primary key, ct blob not null)`.execute(first.db);
    await first.db.insertInto("sealed_values").values([{ id: 1, ct }, { id: 2, ct: ctBytes }]).execute();
    await barrier.seal();
    await first.close();

    // a restarted service: new client, new barrier, same secret
    const second = await remote(server.url, token);
    const again = new Barrier({ db: second.db, service: "remote-test" });
    expectAppError(await catchErr(again.unseal([random(32)])), "unseal_failed");
    expect((await again.unseal([secret])).versions).toEqual(st.versions);
    const rows = await second.db.selectFrom("sealed_values").select(["id", "ct"]).orderBy("id").execute();
    expect(await again.decryptString(rows[0]!.ct, "remote-test/secrets/value/1")).toBe("remote secret ✓");
    expect([...(await again.decrypt(rows[1]!.ct, "remote-test/blob/2"))]).toEqual([...bytes]);
    expectAppError(await catchErr(again.decrypt(rows[1]!.ct, "remote-test/blob/3")), "decrypt_failed");
  });
});

describe(server ? "embedded replica mode (sqld)" : "embedded replica mode (skipped: sqld missing)", () => {
  if (!server) return;

  test("open syncs, sync() pulls new rows, reads stay local, writes reach the primary", async () => {
    // Its own server: this test stops the primary to prove the replica reads locally.
    const primaryServer = (await startSqld())!;
    servers.push(primaryServer);
    const token = await primaryServer.mintToken();
    const primary = await remote(primaryServer.url, token);
    await runMigrations(primary.db, "pets", petMigrations);
    await primary.db.insertInto("owners").values({ id: 1, name: "ann" }).execute();
    await primary.db.insertInto("pets").values({ id: 1, owner_id: 1, name: "rex", photo: new Uint8Array([1, 2, 3]) }).execute();

    const replicaPath = join(scratch, "main", "replica.db");
    const replica = await openDatabase<any>({
      service: "remote-test",
      url: `file:${replicaPath}`,
      syncUrl: primaryServer.url,
      authToken: token,
    });
    opened.push(replica);
    expect(replica.mode).toBe("replica");
    expect(replica.filePath).toBe(replicaPath);
    expect(replica.location).not.toContain(token);
    expect(replica.journalMode).toBe("wal");
    const fk = await sql`pragma foreign_keys`.execute(replica.db);
    expect(Object.values(fk.rows[0] as object)[0]).toBe(1);

    // the open synced: the primary's rows are there
    const first = await replica.db.selectFrom("pets").selectAll().execute();
    expect(first.map((r) => [r.name, [...r.photo]])).toEqual([["rex", [1, 2, 3]]]);
    // migrations already applied on the primary are seen as applied through the replica
    expect((await runMigrations(replica.db, "pets", petMigrations)).applied).toEqual([]);

    // a row written on the primary is not visible until sync(): reads are local
    await primary.db.insertInto("pets").values({ id: 2, owner_id: 1, name: "tom" }).execute();
    expect((await replica.db.selectFrom("pets").select("id").execute()).length).toBe(1);
    await replica.sync();
    expect((await replica.db.selectFrom("pets").select("id").orderBy("id").execute()).map((r) => r.id)).toEqual([1, 2]);

    // a write through the replica runs on the primary and is visible on both at once
    await replica.db.insertInto("pets").values({ id: 3, owner_id: 1, name: "via-replica", photo: new Uint8Array([9]) }).execute();
    const onPrimary = await primary.db.selectFrom("pets").select(["name", "photo"]).where("id", "=", 3).executeTakeFirstOrThrow();
    expect([onPrimary.name, [...onPrimary.photo]]).toEqual(["via-replica", [9]]);
    expect((await replica.db.selectFrom("pets").select("id").where("id", "=", 3).execute()).length).toBe(1);

    // write transactions are forwarded whole: commit lands, rollback leaves nothing
    await withTransaction(replica.db, async (t) => {
      await t.insertInto("pets").values({ id: 4, owner_id: 1, name: "tx-commit" }).execute();
      await t.updateTable("counter").set({ n: 41 }).where("id", "=", 1).execute();
    });
    expect((await primary.db.selectFrom("counter").select("n").executeTakeFirstOrThrow()).n).toBe(41);
    const undo = await catchErr(
      withTransaction(replica.db, async (t) => {
        await t.insertInto("pets").values({ id: 5, owner_id: 1, name: "tx-rolled" }).execute();
        throw new AppError("bad_request", "undo");
      }),
    );
    expectAppError(undo, "bad_request");
    expect(await primary.db.selectFrom("pets").select("id").where("id", "=", 5).execute()).toEqual([]);

    // the primary's constraint failures come back typed as conflicts
    const dup = await catchErr(
      withTransaction(replica.db, async (t) => {
        await t.insertInto("pets").values({ id: 6, owner_id: 1, name: "rex" }).execute();
      }),
    );
    expect((expectAppError(dup, "conflict").details as { storage: string }).storage).toBe("SQLITE_CONSTRAINT_UNIQUE");
    const orphan = await catchErr(
      withTransaction(replica.db, async (t) => {
        await t.insertInto("pets").values({ id: 7, owner_id: 42, name: "orphan" }).execute();
      }),
    );
    expect((expectAppError(orphan, "conflict").details as { storage: string }).storage).toBe("SQLITE_CONSTRAINT_FOREIGNKEY");

    // a restart reopens the existing replica file and catches up
    await replica.close();
    await primary.db.insertInto("pets").values({ id: 9, owner_id: 1, name: "while-down" }).execute();
    const reopened = await openDatabase<any>({
      service: "remote-test",
      url: `file:${replicaPath}`,
      syncUrl: primaryServer.url,
      authToken: token,
    });
    opened.push(reopened);
    expect((await reopened.db.selectFrom("pets").select("id").orderBy("id").execute()).map((r) => r.id)).toEqual([1, 2, 3, 4, 9]);

    // with the primary gone, local reads still answer; writes and sync fail typed
    await primary.close();
    await primaryServer.stop();
    expect((await ping(reopened.db)).ok).toBe(true);
    expect((await reopened.db.selectFrom("pets").select("id").execute()).length).toBe(5);
    const offline = await catchErr(
      withTransaction(reopened.db, async (t) => {
        await t.insertInto("pets").values({ id: 8, owner_id: 1, name: "offline" }).execute();
      }),
    );
    expectNoToken(expectAppError(offline, "unavailable"), token);
    const syncErr = expectAppError(await catchErr(reopened.sync()), "unavailable");
    expectNoToken(syncErr, token);
    // libSQL contacts the primary when it opens a replica, so a replica cannot start offline
    const cold = await catchErr(
      openDatabase<any>({ service: "remote-test", url: `file:${replicaPath}`, syncUrl: primaryServer.url, authToken: token }),
    );
    expect(expectAppError(cold, "unavailable").details).toEqual({ storage: "REPLICA_SYNC_FAILED" });
    expectNoToken(cold as AppError, token);
  }, 15_000); // libSQL retries a failing sync for about 3 s before giving up

  test("the barrier unseals and decrypts through a replica of the primary it was created on", async () => {
    // Its own server: the barrier's tables are per database, and the shared one has a barrier.
    const own = (await startSqld())!;
    servers.push(own);
    const token = await own.mintToken();
    const secret = random(32);
    const primary = await remote(own.url, token);
    const onPrimary = new Barrier({ db: primary.db, service: "replica-barrier" });
    const st = await onPrimary.unseal([secret]);
    const ct = await onPrimary.encrypt("kept on the primary", "replica-barrier/v/1");

    const replica = await openDatabase<any>({
      service: "replica-barrier",
      url: `file:${join(scratch, "barrier", "replica.db")}`,
      syncUrl: own.url,
      authToken: token,
    });
    opened.push(replica);
    const onReplica = new Barrier({ db: replica.db, service: "replica-barrier" });
    expect((await onReplica.unseal([secret])).versions).toEqual(st.versions);
    expect(await onReplica.decryptString(ct, "replica-barrier/v/1")).toBe("kept on the primary");
    // and the other way round: encrypted through the replica, opened on the primary
    const back = await onReplica.encrypt("written via the replica", "replica-barrier/v/2");
    expect(await onPrimary.decryptString(back, "replica-barrier/v/2")).toBe("written via the replica");
  });

  test("syncInterval pulls the primary's rows in the background", async () => {
    const token = await server.mintToken();
    const primary = await remote(server.url, token);
    await sql`create table bg_t (id integer primary key)`.execute(primary.db);
    const replica = await openDatabase<any>({
      service: "remote-test",
      url: `file:${join(scratch, "bg", "replica.db")}`,
      syncUrl: server.url,
      authToken: token,
      syncInterval: 0.5,
    });
    opened.push(replica);
    await primary.db.insertInto("bg_t").values({ id: 1 }).execute();
    const deadline = Date.now() + 5000;
    let seen = 0;
    while (Date.now() < deadline) {
      seen = (await replica.db.selectFrom("bg_t").select("id").execute()).length;
      if (seen === 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen).toBe(1);
  });

  test("a replica whose token the primary refuses does not open, typed, without the token", async () => {
    const token = await foreignToken();
    const start = performance.now();
    const err = await catchErr(
      openDatabase<any>({
        service: "remote-test",
        url: `file:${join(scratch, "refused", "replica.db")}`,
        syncUrl: server.url,
        authToken: token,
      }),
    );
    const e = expectAppError(err, "unavailable");
    // a new replica forwards its first statements to the primary, which refuses the token
    expect(e.message).toBe("cannot open the replica database: the database server refused the credentials");
    expect(e.details).toEqual({ storage: "REPLICA_WRITE_UNAUTHENTICATED" });
    expectNoToken(e, token);
    expect(performance.now() - start).toBeLessThan(10_000);
  });
});
