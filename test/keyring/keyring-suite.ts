/**
 * The keyring over a real barrier and a fresh database (in-memory, or PostgreSQL): lifecycle,
 * rotation, sweep, isolation. Run by keyring.test.ts and keyring-postgres.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CompactEncrypt, compactDecrypt, CompactSign, compactVerify } from "jose";
import { Barrier } from "../../src/barrier/barrier.ts";
import { runMigrations, type Database } from "../../src/storage/index.ts";
import { Keyring, keyringMigrations, parseKid, kidOf, canonicalJson, Lru } from "../../src/keyring/index.ts";
import { openTestDatabase, type TestEngine } from "../support/engine.ts";

/** Registers the keyring tests on a fresh database of `engine`. */
export function keyringSuite(engine: TestEngine): void {
  let store: Database<any>;
  let barrier: Barrier;
  let clock = new Date("2026-01-01T00:00:00Z");
  let ring: Keyring;

  beforeAll(async () => {
    store = await openTestDatabase(engine);
    barrier = new Barrier({ db: store.db, service: "test" });
    await barrier.unseal([crypto.getRandomValues(new Uint8Array(32))]);
    await runMigrations(store.db, "keyring-test", keyringMigrations(1));
    ring = new Keyring(store.db, barrier, { now: () => clock, cacheSize: 4 });
  });

  afterAll(async () => {
    await barrier?.seal();
    await store?.close();
  });

  describe(`keyring (${engine.kind})`, () => {
    test("the database is on the engine under test", () => {
      expect(store.mode).toBe(engine.kind === "postgres" ? "postgres" : "memory");
    });


    test("material is stored only barrier-encrypted", async () => {
      const k = await ring.create("t1", { name: "sealed", algorithm: "ES256" });
      const rows = await store.db.selectFrom("material_keys").selectAll().where("key_id", "=", k.id).execute();
      expect(rows.length).toBe(1);
      const text = new TextDecoder("latin1").decode(rows[0]!.material);
      expect(text).not.toContain('"d"');
      expect(text).not.toContain("P-256");
      // The sealed material is bound to its row: opening it under another key's context fails.
      await expect(barrier.decrypt(rows[0]!.material, `keyring/t1/${crypto.randomUUID()}/v1`)).rejects.toMatchObject({ code: "decrypt_failed" });
    });

    test("rotate keeps old versions usable; min decryption version cuts them off", async () => {
      const k = await ring.create("t1", { name: "enc", algorithm: "A256GCM", tags: ["a", "a", "b"] });
      expect(k.tags).toEqual(["a", "b"]);
      const v1 = await ring.current("t1", k.id, ["encrypt"]);
      expect(v1.kid).toBe(`${k.id}.v1`);
      const jwe = await new CompactEncrypt(new TextEncoder().encode("hi")).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: v1.kid }).encrypt(v1.usable.secret!);
      for (let i = 0; i < 3; i++) await ring.rotate("t1", k.id);
      const after = await ring.get("t1", k.id);
      expect(after.current_version).toBe(4);
      expect(after.versions!.map((v) => v.retired_at === null)).toEqual([false, false, false, true]);
      const old = await ring.version("t1", k.id, 1, ["encrypt"]);
      expect(new TextDecoder().decode((await compactDecrypt(jwe, old.usable.secret!)).plaintext)).toBe("hi");
      await ring.update("t1", k.id, { min_decryption_version: 2 });
      await expect(ring.version("t1", k.id, 1, ["encrypt"])).rejects.toMatchObject({ code: "key_version_below_minimum" });
      await expect(ring.update("t1", k.id, { min_decryption_version: 9 })).rejects.toMatchObject({ code: "validation_failed" });
      await expect(ring.version("t1", k.id, 5, ["encrypt"])).rejects.toMatchObject({ code: "not_found" });
    });

    test("purpose, status, deletion window, restore", async () => {
      const k = await ring.create("t1", { name: "sig", algorithm: "EdDSA", purpose: "sign" });
      await expect(ring.create("t1", { name: "bad", algorithm: "ES256", purpose: "encrypt" })).rejects.toMatchObject({ code: "validation_failed" });
      await expect(ring.create("t1", { name: "sig", algorithm: "ES256" })).rejects.toMatchObject({ code: "conflict" });
      await expect(ring.current("t1", k.id, ["encrypt"])).rejects.toMatchObject({ code: "key_purpose_mismatch" });
      const cur = await ring.current("t1", k.id, ["sign"]);
      const jws = await new CompactSign(new Uint8Array([1, 2])).setProtectedHeader({ alg: "EdDSA", kid: cur.kid }).sign(cur.usable.secret!);
      expect((await compactVerify(jws, cur.usable.public!)).protectedHeader.kid).toBe(cur.kid);

      await ring.disable("t1", k.id);
      await expect(ring.current("t1", k.id, ["sign"])).rejects.toMatchObject({ code: "key_disabled" });
      await ring.enable("t1", k.id);
      await expect(ring.scheduleDeletion("t1", k.id, 6)).rejects.toMatchObject({ code: "validation_failed" });
      await expect(ring.scheduleDeletion("t1", k.id, 31)).rejects.toMatchObject({ code: "validation_failed" });
      const pending = await ring.scheduleDeletion("t1", k.id);
      expect(pending.status).toBe("pending_deletion");
      expect(new Date(pending.deletion_date!).getTime() - clock.getTime()).toBe(30 * 86_400_000);
      await expect(ring.version("t1", k.id, 1, ["sign"])).rejects.toMatchObject({ code: "key_pending_deletion" });
      const restored = await ring.restore("t1", k.id);
      expect(restored.status).toBe("disabled");
      expect(restored.deletion_date).toBeNull();
    });

    test("tenant isolation: another tenant's key is not found", async () => {
      const k = await ring.create("t1", { name: "mine", algorithm: "HS256" });
      await expect(ring.get("t2", k.id)).rejects.toMatchObject({ code: "not_found" });
      await expect(ring.current("t2", k.id, ["mac"])).rejects.toMatchObject({ code: "not_found" });
      await expect(ring.rotate("t2", k.id)).rejects.toMatchObject({ code: "not_found" });
      expect((await ring.list("t2", {})).items.length).toBe(0);
    });

    test("list filters and paginates", async () => {
      for (let i = 0; i < 3; i++) await ring.create("t3", { name: `m${i}`, algorithm: "HS512", tags: i === 1 ? ["x"] : [] });
      await ring.create("t3", { name: "w", algorithm: "A256KW" });
      const p1 = await ring.list("t3", { purpose: "mac", limit: 2 });
      expect(p1.items.map((k) => k.name)).toEqual(["m0", "m1"]);
      const p2 = await ring.list("t3", { purpose: "mac", limit: 2, page_token: p1.next_page_token! });
      expect(p2.items.map((k) => k.name)).toEqual(["m2"]);
      expect(p2.next_page_token).toBeNull();
      expect((await ring.list("t3", { tag: "x" })).items.map((k) => k.name)).toEqual(["m1"]);
      expect((await ring.list("t3", { purpose: "wrap" })).items.map((k) => k.algorithm)).toEqual(["A256KW"]);
      await expect(ring.list("t3", { page_token: "%%%" })).rejects.toMatchObject({ code: "validation_failed" });
    });

    test("the sweep rotates due keys and purges keys past their deletion date", async () => {
      const k = await ring.create("t4", { name: "auto", algorithm: "ES384", rotation_period_days: 1 });
      const gone = await ring.create("t4", { name: "gone", algorithm: "A256GCMKW" });
      await ring.scheduleDeletion("t4", gone.id, 7);
      expect((await ring.sweep(new Date(clock.getTime() + 3_600_000))).rotated).toBe(0);
      clock = new Date(clock.getTime() + 86_400_000 + 1000);
      const r = await ring.sweep(clock);
      expect(r.rotated).toBeGreaterThanOrEqual(1);
      expect((await ring.get("t4", k.id)).current_version).toBe(2);
      expect((await ring.get("t4", gone.id)).status).toBe("pending_deletion");
      clock = new Date(clock.getTime() + 7 * 86_400_000);
      expect((await ring.sweep(clock)).purged).toBe(1);
      await expect(ring.get("t4", gone.id)).rejects.toMatchObject({ code: "not_found" });
      expect((await store.db.selectFrom("material_keys").selectAll().where("key_id", "=", gone.id).execute()).length).toBe(0);
    });

    test("kid, canonical JSON and LRU helpers", () => {
      const id = crypto.randomUUID();
      expect(parseKid(kidOf(id, 12))).toEqual({ id, version: 12 });
      for (const bad of [undefined, 3, "x.v1", `${id}.v0`, `${id}.v1.`, `${id}v1`]) expect(parseKid(bad)).toBeUndefined();
      expect(canonicalJson({ b: [2, { d: 1, c: null }], a: "é" })).toBe('{"a":"é","b":[2,{"c":null,"d":1}]}');
      const lru = new Lru<string, number>(2);
      lru.set("a", 1);
      lru.set("b", 2);
      lru.get("a");
      lru.set("c", 3);
      expect([lru.get("a"), lru.get("b"), lru.get("c")]).toEqual([1, undefined, 3]);
    });
  });
}
