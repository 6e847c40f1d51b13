import { afterAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gcm } from "@noble/ciphers/aes.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { sql } from "kysely";
import { Barrier, type BarrierTables } from "../../src/barrier/index.ts";
import { AppError } from "../../src/service/errors.ts";
import { openDatabase, type Database } from "../../src/storage/index.ts";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "barrier-test-"));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const utf8 = new TextEncoder();

async function expectCode(p: Promise<unknown>, code: string, status?: number): Promise<AppError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  if (status !== undefined) expect((err as AppError).status).toBe(status);
  return err as AppError;
}

async function memoryDb(): Promise<Database<any>> {
  return openDatabase<any>({ service: "test", url: ":memory:" });
}

describe("Barrier", () => {
  test("round-trips bytes and text; versioned header; fresh IV each time", async () => {
    const store = await memoryDb();
    try {
      const barrier = new Barrier({ db: store.db, service: "test" });
      expect(barrier.status()).toEqual({ state: "sealed", sealed: true, rootLayer: "software" });
      const st = await barrier.unseal([random(32)]);
      expect(st).toEqual({
        state: "unsealed",
        sealed: false,
        rootLayer: "software",
        versions: { root: 1, intermediate: 1, content: 1 },
      });
      const bytes = random(1000);
      const ct = await barrier.encrypt(bytes, "t/col/1");
      expect(ct[0]).toBe(1); // format version
      expect([...ct.subarray(1, 5)]).toEqual([0, 0, 0, 1]); // content key version 1
      expect(ct.length).toBe(5 + 12 + 1000 + 16);
      expect([...(await barrier.decrypt(ct, "t/col/1"))]).toEqual([...bytes]);

      const a = await barrier.encrypt("hello wörld", "t/col/2");
      const b = await barrier.encrypt("hello wörld", "t/col/2");
      expect(Buffer.from(a.subarray(5, 17)).equals(Buffer.from(b.subarray(5, 17)))).toBe(false);
      expect(await barrier.decryptString(a, "t/col/2")).toBe("hello wörld");
      expect(await barrier.decryptString(b, "t/col/2")).toBe("hello wörld");
      // empty plaintext is valid
      expect((await barrier.decrypt(await barrier.encrypt(new Uint8Array(0), "t/e"), "t/e")).length).toBe(0);
    } finally {
      await store.close();
    }
  });

  test("operations while sealed fail with 503 sealed, before unseal and after seal", async () => {
    const store = await memoryDb();
    try {
      const barrier = new Barrier({ db: store.db, service: "test" });
      await expectCode(barrier.encrypt("x", "c"), "sealed", 503);
      await expectCode(barrier.decrypt(new Uint8Array(40), "c"), "sealed", 503);
      await expectCode(barrier.rotateContent(), "sealed", 503);
      await expectCode(barrier.rotateIntermediate(), "sealed", 503);
      await expectCode(barrier.rotateRoot(), "sealed", 503);
      const secret = random(40);
      await barrier.unseal([secret]);
      const ct = await barrier.encrypt("x", "c");
      const st = await barrier.seal();
      expect(st.sealed).toBe(true);
      expect(barrier.sealed).toBe(true);
      await expectCode(barrier.decrypt(ct, "c"), "sealed", 503);
      await expectCode(barrier.encrypt("x", "c"), "sealed", 503);
      await barrier.unseal([secret]);
      expect(await barrier.decryptString(ct, "c")).toBe("x");
    } finally {
      await store.close();
    }
  });

  test("wrong, short, missing or reordered unseal secrets are refused with unseal_failed", async () => {
    const store = await memoryDb();
    try {
      const s1 = random(32);
      const s2 = random(64);
      const first = new Barrier({ db: store.db, service: "test" });
      await first.unseal([s1, s2]);
      const ct = await first.encrypt("data", "c");
      await first.seal();

      const again = new Barrier({ db: store.db, service: "test" });
      for (const bad of [[random(32), s2], [s2, s1], [s1], [s1, s2, random(32)]]) {
        const e = await expectCode(again.unseal(bad), "unseal_failed");
        expect(e.message).not.toMatch(/[0-9a-f]{16}/i);
        expect(again.sealed).toBe(true);
      }
      await expectCode(again.unseal([]), "unseal_failed");
      await expectCode(again.unseal([random(31)]), "unseal_failed");
      // a different service name derives a different unseal key
      await expectCode(new Barrier({ db: store.db, service: "other" }).unseal([s1, s2]), "unseal_failed");

      await again.unseal([s1, s2]);
      expect(await again.decryptString(ct, "c")).toBe("data");
      // already unsealed: wrong secrets are still refused, and the barrier stays unsealed
      await expectCode(again.unseal([random(32)]), "unseal_failed");
      expect(again.sealed).toBe(false);
      expect(await again.decryptString(ct, "c")).toBe("data");
    } finally {
      await store.close();
    }
  });

  test("tampering, wrong context, unknown key version and bad format give decrypt_failed", async () => {
    const store = await memoryDb();
    try {
      const barrier = new Barrier({ db: store.db, service: "test" });
      await barrier.unseal([random(32)]);
      const ct = await barrier.encrypt("the secret", "sm-kms/secrets/value/1");
      await expectCode(barrier.decrypt(ct, "sm-kms/secrets/value/2"), "decrypt_failed", 500);
      await expectCode(barrier.decrypt(ct, "sm-kms/secrets/name/1"), "decrypt_failed");
      // flip one bit in each region: format, key version, IV, ciphertext, tag
      for (const i of [0, 1, 4, 5, 16, 17, ct.length - 17, ct.length - 1]) {
        const t = ct.slice();
        t[i]! ^= 0x01;
        await expectCode(barrier.decrypt(t, "sm-kms/secrets/value/1"), "decrypt_failed");
      }
      await expectCode(barrier.decrypt(ct.subarray(0, ct.length - 1), "sm-kms/secrets/value/1"), "decrypt_failed");
      await expectCode(barrier.decrypt(ct.subarray(0, 32), "sm-kms/secrets/value/1"), "decrypt_failed");
      await expectCode(barrier.decrypt(new Uint8Array(0), "sm-kms/secrets/value/1"), "decrypt_failed");
      const unknownVersion = ct.slice();
      unknownVersion.set([0, 0, 0, 99], 1);
      await expectCode(barrier.decrypt(unknownVersion, "sm-kms/secrets/value/1"), "decrypt_failed");
      const zeroVersion = ct.slice();
      zeroVersion.set([0, 0, 0, 0], 1);
      await expectCode(barrier.decrypt(zeroVersion, "sm-kms/secrets/value/1"), "decrypt_failed");
      await expectCode(barrier.decrypt("not bytes" as unknown as Uint8Array, "c"), "decrypt_failed");
      // contexts are checked at the boundary
      await expectCode(barrier.encrypt("x", ""), "bad_request");
      await expectCode(barrier.encrypt("x", "x".repeat(1025)), "bad_request");
      await expectCode(barrier.decrypt(ct, ""), "bad_request");
      await expectCode(barrier.encrypt(42 as unknown as Uint8Array, "c"), "bad_request");
      // the untouched ciphertext still decrypts
      expect(await barrier.decryptString(ct, "sm-kms/secrets/value/1")).toBe("the secret");
    } finally {
      await store.close();
    }
  });

  test("each rotation makes a new current version and old ciphertexts keep decrypting", async () => {
    const store = await memoryDb();
    try {
      const secret = random(32);
      const barrier = new Barrier({ db: store.db, service: "test" });
      await barrier.unseal([secret]);
      const cts: Array<[Uint8Array, string]> = [];
      const add = async (label: string) => cts.push([await barrier.encrypt(label, `ctx/${label}`), label]);
      await add("v1");
      expect((await barrier.rotateContent()).versions).toEqual({ root: 1, intermediate: 1, content: 2 });
      await add("after-content");
      expect((await barrier.rotateIntermediate()).versions).toEqual({ root: 1, intermediate: 2, content: 2 });
      await add("after-intermediate");
      expect((await barrier.rotateContent()).versions).toEqual({ root: 1, intermediate: 2, content: 3 });
      await add("content-3");
      expect((await barrier.rotateRoot()).versions).toEqual({ root: 2, intermediate: 2, content: 3 });
      await add("after-root");
      expect((await barrier.rotateRoot()).versions).toEqual({ root: 3, intermediate: 2, content: 3 });

      // headers carry the content key version in force
      expect(cts.map(([ct]) => ct[4])).toEqual([1, 2, 2, 3, 3]);
      for (const [ct, label] of cts) expect(await barrier.decryptString(ct, `ctx/${label}`)).toBe(label);

      // root rotation re-wrapped every intermediate under the new root and deleted the old roots
      const rows = await (store.db as any)
        .selectFrom("barrier_keys")
        .select(["layer", "version", "parent_version"])
        .orderBy("layer")
        .orderBy("version")
        .execute();
      expect(rows).toEqual([
        { layer: "content", version: 1, parent_version: 1 },
        { layer: "content", version: 2, parent_version: 1 },
        { layer: "content", version: 3, parent_version: 2 },
        { layer: "intermediate", version: 1, parent_version: 3 },
        { layer: "intermediate", version: 2, parent_version: 3 },
        { layer: "root", version: 3, parent_version: 0 },
      ]);

      // a fresh barrier on the same database (as after a restart) reads everything
      await barrier.seal();
      const restarted = new Barrier({ db: store.db, service: "test" });
      expect((await restarted.unseal([secret])).versions).toEqual({ root: 3, intermediate: 2, content: 3 });
      for (const [ct, label] of cts) expect(await restarted.decryptString(ct, `ctx/${label}`)).toBe(label);
    } finally {
      await store.close();
    }
  });

  test("an instance picks up content and intermediate keys another instance created", async () => {
    const store = await memoryDb();
    try {
      const secret = random(32);
      const a = new Barrier({ db: store.db, service: "test" });
      const b = new Barrier({ db: store.db, service: "test" });
      await a.unseal([secret]);
      await b.unseal([secret]);
      await a.rotateIntermediate();
      await a.rotateContent();
      const ct = await a.encrypt("from a", "c");
      expect(ct[4]).toBe(2);
      expect(await b.decryptString(ct, "c")).toBe("from a");
    } finally {
      await store.close();
    }
  });

  test("a tampered wrapped key in the database stops unseal with decrypt_failed", async () => {
    const store = await memoryDb();
    try {
      const secret = random(32);
      await new Barrier({ db: store.db, service: "test" }).unseal([secret]);
      const db = store.db as any;
      const row = await db
        .selectFrom("barrier_keys")
        .select("wrapped")
        .where("layer", "=", "intermediate")
        .executeTakeFirstOrThrow();
      const bad = (row.wrapped as Uint8Array).slice();
      bad[20]! ^= 0x80;
      await db.updateTable("barrier_keys").set({ wrapped: bad }).where("layer", "=", "intermediate").execute();
      const fresh = new Barrier({ db: store.db, service: "test" });
      await expectCode(fresh.unseal([secret]), "decrypt_failed");
      expect(fresh.sealed).toBe(true);
    } finally {
      await store.close();
    }
  });

  test("restart: close and reopen the file database, unseal from the same secret files, read the data", async () => {
    const dir = await tempDir();
    const s1 = join(dir, "unseal-1");
    const s2 = join(dir, "unseal-2");
    await writeFile(s1, random(32));
    await writeFile(s2, utf8.encode("a text secret that is long enough, with a newline\n"));
    await chmod(s1, 0o600);
    const cfg = { service: "sm-kms", dataDir: join(dir, "data") };

    let store = await openDatabase<any>(cfg);
    let barrier = new Barrier({ db: store.db, service: "sm-kms" });
    await barrier.unsealFromFiles([s1, s2]);
    await sql`create table secrets (id integer primary key, value blob not null)`.execute(store.db);
    const ct = await barrier.encrypt("persisted secret", "sm-kms/secrets/value/1");
    await store.db.insertInto("secrets").values({ id: 1, value: ct }).execute();
    await barrier.seal();
    await store.close();

    store = await openDatabase<any>(cfg);
    try {
      barrier = new Barrier({ db: store.db, service: "sm-kms" });
      await expectCode(barrier.unsealFromFiles([s2, s1]), "unseal_failed");
      await expectCode(barrier.unsealFromFiles([s1, join(dir, "missing")]), "unseal_failed");
      const short = join(dir, "short");
      await writeFile(short, random(31));
      await expectCode(barrier.unsealFromFiles([short]), "unseal_failed");
      await expectCode(barrier.unsealFromFiles([dir]), "unseal_failed");
      await barrier.unsealFromFiles([s1, s2]);
      const row = await store.db.selectFrom("secrets").select("value").where("id", "=", 1).executeTakeFirstOrThrow();
      expect(await barrier.decryptString(row.value, "sm-kms/secrets/value/1")).toBe("persisted secret");
    } finally {
      await store.close();
    }
  });
});

// ---- at-rest scan ----------------------------------------------------------------------

/**
 * Re-derives every key of the hierarchy from the database and the unseal secret as format.ts
 * documents it, with an independent AES-GCM/HKDF implementation (@noble).
 */
async function deriveAllKeys(store: Database<BarrierTables>, service: string, secrets: Uint8Array[]) {
  const ikmParts: number[] = [];
  for (const s of secrets) {
    ikmParts.push((s.length >>> 24) & 255, (s.length >>> 16) & 255, (s.length >>> 8) & 255, s.length & 255, ...s);
  }
  const unseal = hkdf(
    sha256,
    new Uint8Array(ikmParts),
    utf8.encode(`cryptoutil.barrier.v1.unseal-salt|${service}`),
    utf8.encode("cryptoutil.barrier.v1.unseal-key"),
    32,
  );
  const rows = await store.db.selectFrom("barrier_keys").selectAll().orderBy("version").execute();
  const unwrap = (kek: Uint8Array, wrapped: Uint8Array, aad: string) =>
    gcm(kek, wrapped.subarray(0, 12), utf8.encode(aad)).decrypt(wrapped.subarray(12));
  const roots = new Map<number, Uint8Array>();
  const intermediates = new Map<number, Uint8Array>();
  const contents = new Map<number, Uint8Array>();
  for (const r of rows.filter((r) => r.layer === "root")) {
    roots.set(r.version, unwrap(unseal, r.wrapped, `cryptoutil.barrier.v1.key|root|${r.version}|unseal|0`));
  }
  for (const r of rows.filter((r) => r.layer === "intermediate")) {
    const kek = roots.get(r.parent_version)!;
    intermediates.set(
      r.version,
      unwrap(kek, r.wrapped, `cryptoutil.barrier.v1.key|intermediate|${r.version}|root|${r.parent_version}`),
    );
  }
  for (const r of rows.filter((r) => r.layer === "content")) {
    const kek = intermediates.get(r.parent_version)!;
    contents.set(
      r.version,
      unwrap(kek, r.wrapped, `cryptoutil.barrier.v1.key|content|${r.version}|intermediate|${r.parent_version}`),
    );
  }
  return { unseal, roots, intermediates, contents };
}

async function dbFiles(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of await readdir(dir)) out.set(name, await readFile(join(dir, name)));
  return out;
}

function findings(files: Map<string, Buffer>, needles: Array<[string, Uint8Array]>): string[] {
  const hits: string[] = [];
  for (const [file, bytes] of files) {
    for (const [label, needle] of needles) {
      const raw = Buffer.from(needle);
      // raw bytes, and the two text encodings a careless store might use
      for (const form of [raw, Buffer.from(raw.toString("hex")), Buffer.from(raw.toString("base64"))]) {
        if (bytes.indexOf(form) >= 0) hits.push(`${label} in ${file}`);
      }
    }
  }
  return hits;
}

describe("at rest", () => {
  test("database, WAL and SHM files hold no plaintext secret and no key of any layer", async () => {
    const dir = await tempDir();
    const secretFile = join(dir, "unseal");
    const unsealSecret = random(48);
    await writeFile(secretFile, unsealSecret);
    const dataDir = join(dir, "data");
    const store = await openDatabase<any>({ service: "jose-ja", dataDir });
    const barrier = new Barrier({ db: store.db, service: "jose-ja" });
    await barrier.unsealFromFiles([secretFile]);
    await sql`create table vault (id integer primary key, name text not null, value blob not null)`.execute(store.db);

    const plaintexts = Array.from({ length: 6 }, (_, i) => `PLAINTEXT-${i}-${Buffer.from(random(24)).toString("hex")}`);
    const write = async (i: number) =>
      store.db
        .insertInto("vault")
        .values({ id: i, name: `entry-${i}`, value: await barrier.encrypt(plaintexts[i]!, `vault/value/${i}`) })
        .execute();
    await write(0);
    await write(1);
    await barrier.rotateContent();
    await write(2);
    await barrier.rotateIntermediate();
    await barrier.rotateContent();
    await write(3);
    await barrier.rotateRoot();
    await write(4);
    await write(5);

    const keys = await deriveAllKeys(store as Database<BarrierTables>, "jose-ja", [unsealSecret]);
    // the independent derivation is right: its content key opens a stored ciphertext (format.ts layout)
    const row = await store.db.selectFrom("vault").select("value").where("id", "=", 3).executeTakeFirstOrThrow();
    const v: Uint8Array = row.value;
    const cKey = keys.contents.get(v[4]!)!;
    const aad = new Uint8Array([
      ...utf8.encode("cryptoutil.barrier.v1.data\u0000"),
      ...v.subarray(0, 5),
      ...utf8.encode("vault/value/3"),
    ]);
    expect(new TextDecoder().decode(gcm(cKey, v.subarray(5, 17), aad).decrypt(v.subarray(17)))).toBe(plaintexts[3]!);
    expect(keys.roots.size).toBe(1);
    expect(keys.intermediates.size).toBe(2);
    expect(keys.contents.size).toBe(3);

    const needles: Array<[string, Uint8Array]> = [
      ...plaintexts.map((p, i): [string, Uint8Array] => [`plaintext ${i}`, utf8.encode(p)]),
      ["unseal secret", unsealSecret],
      ["unseal key", keys.unseal],
      ...[...keys.roots].map(([ver, k]): [string, Uint8Array] => [`root key ${ver}`, k]),
      ...[...keys.intermediates].map(([ver, k]): [string, Uint8Array] => [`intermediate key ${ver}`, k]),
      ...[...keys.contents].map(([ver, k]): [string, Uint8Array] => [`content key ${ver}`, k]),
    ];

    // while open: the WAL holds the recent pages
    const open = await dbFiles(dataDir);
    expect([...open.keys()].sort()).toEqual(["jose-ja.db", "jose-ja.db-shm", "jose-ja.db-wal"]);
    // positive control: the scan does find what is stored in the clear (names, ciphertexts)
    expect(findings(open, [["row name", utf8.encode("entry-4")], ["stored ciphertext", v]]).length).toBeGreaterThan(0);
    expect(findings(open, needles)).toEqual([]);

    await barrier.seal();
    await store.close();
    const closed = await dbFiles(dataDir);
    expect(closed.has("jose-ja.db")).toBe(true);
    expect(findings(closed, [["stored ciphertext", v]]).length).toBeGreaterThan(0);
    expect(findings(closed, needles)).toEqual([]);
  });
});
