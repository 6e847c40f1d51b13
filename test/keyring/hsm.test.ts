/**
 * The keyring with its material in a real SoftHSM2 token (Debian package softhsm2): every
 * algorithm the token can hold is generated there, its operations (sign, MAC, JWE decrypt,
 * dir encrypt, key wrap) run there and `jose` verifies and decrypts the outputs; imports go
 * into the token; rows hold only sealed references; objects are sensitive, non-extractable and
 * unreadable; a new keyring over a re-opened token finds them; purge destroys them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  CompactEncrypt,
  FlattenedEncrypt,
  compactDecrypt,
  compactVerify,
  exportJWK,
  flattenedDecrypt,
  generateKeyPair,
  generateSecret,
  importJWK,
  type JWK,
} from "jose";
import { Barrier } from "../../src/barrier/barrier.ts";
import { openDatabase, runMigrations, type Database } from "../../src/storage/index.ts";
import { Keyring, keyringMigrations, type ActiveVersion } from "../../src/keyring/index.ts";
import { algorithmSpec, contentEncryptions } from "../../src/keyring/algorithms.ts";
import { encryptJwe, macOf, openJwe, signCompact, verifyCompact, verifyMac } from "../../src/keyring/jose-ops.ts";
import { tokenObjectLabel, tokenSpecOf } from "../../src/keyring/hsm.ts";
import { KeyImporter } from "../../src/keyring/import.ts";
import { Pkcs11Provider, TokenKeyObjects } from "../../src/crypto/pkcs11/index.ts";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";

const softhsm: SoftHsm | undefined = await setupSoftHsm();

const PRIVATE = ["d", "p", "q", "dp", "dq", "qi", "k", "priv", "oth"];
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

if (softhsm) {
  let token: SoftHsmToken;
  let hsm: Pkcs11Provider;
  let store: Database<any>;
  let barrier: Barrier;
  let ring: Keyring;
  let clock = new Date("2026-03-01T00:00:00Z");
  const T = "tenant-hsm";

  beforeAll(async () => {
    token = softhsm.createToken("keyring-keys");
    hsm = await Pkcs11Provider.open(token.config);
    store = await openDatabase<any>({ service: "test", url: ":memory:" });
    barrier = new Barrier({ db: store.db, service: "test" });
    await barrier.unseal([crypto.getRandomValues(new Uint8Array(32))]);
    await runMigrations(store.db, "keyring-hsm-test", keyringMigrations(1));
    ring = new Keyring(store.db, barrier, { hsm, now: () => clock });
  });

  afterAll(async () => {
    await barrier?.seal();
    await store?.close();
    await hsm?.close();
    softhsm.cleanup();
  });

  /** The unsealed document of every material row of key `id`. */
  async function unsealedRows(id: string): Promise<Array<{ origin: string; version: number; doc: Record<string, any> }>> {
    const rows = await store.db.selectFrom("material_keys").selectAll().where("key_id", "=", id).orderBy("version").execute();
    const out = [];
    for (const r of rows) {
      const doc = JSON.parse(text(await barrier.decrypt(r.material, `keyring/${r.tenant}/${id}/v${r.version}`)));
      out.push({ origin: r.origin as string, version: r.version as number, doc });
    }
    return out;
  }

  function expectNoPrivateMembers(doc: unknown): void {
    const walk = (v: unknown) => {
      if (!v || typeof v !== "object") return;
      for (const [k, val] of Object.entries(v)) {
        expect(PRIVATE).not.toContain(k);
        walk(val);
      }
    };
    walk(doc);
  }

  /** Asserts key `id`'s rows are token references and its objects are locked in the token. */
  async function expectInToken(id: string, algorithm: string, origin: "hsm" | "hsm-imported" = "hsm"): Promise<void> {
    const objects = new TokenKeyObjects(hsm);
    for (const row of await unsealedRows(id)) {
      expect(row.origin).toBe(origin);
      expectNoPrivateMembers(row.doc);
      expect(row.doc.hsm).toEqual({ token: "keyring-keys", label: tokenObjectLabel(T, id, row.version), id: expect.stringMatching(/^[0-9a-f]{32}$/) });
      const obj = await objects.find(row.doc.hsm, tokenSpecOf(algorithmSpec(algorithm))!);
      const p = await objects.protection(obj);
      expect(p).toMatchObject({ sensitive: true, extractable: false, persistent: true });
      if (origin === "hsm") expect(p.neverExtractable).toBe(true);
      await expect(objects.readValue(obj)).rejects.toMatchObject({ code: "forbidden" });
    }
  }

  const SIGN = ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"];
  const MAC = ["HS256", "HS384", "HS512"];
  const ENC = ["A256GCM", "A256KW", "A256GCMKW", "RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A256KW", "ECDH-ES/P-384", "ECDH-ES+A256KW/P-384"];

  describe("generated in the token", () => {
    for (const alg of SIGN) {
      test(`${alg}: signed in the token, verified by jose with the exported public JWK`, async () => {
        const key = await ring.create(T, { name: `gen-${alg}`, algorithm: alg });
        const active = await ring.current(T, key.id, ["sign"]);
        expect(active.usable.secret).toBeUndefined();
        expect(active.usable.token).toBeDefined();
        const jws = await signCompact(active, bytes(`hello ${alg}`), { typ: "x+jws" });
        const pub = await ring.publicKey(T, key.id);
        expectNoPrivateMembers(pub);
        const v = await compactVerify(jws, await importJWK(pub, alg), { algorithms: [alg] });
        expect(text(v.payload)).toBe(`hello ${alg}`);
        expect(v.protectedHeader).toEqual({ typ: "x+jws", alg, kid: `${key.id}.v1` });
        expect(text((await verifyCompact(ring, T, key.id, jws)).payload)).toBe(`hello ${alg}`);
        const [h, p, s] = jws.split(".");
        const bad = `${h}.${p}.${s![0] === "A" ? "B" : "A"}${s!.slice(1)}`;
        await expect(verifyCompact(ring, T, key.id, bad)).rejects.toMatchObject({ code: "signature_invalid" });
        await expectInToken(key.id, alg);
      });
    }

    for (const alg of MAC) {
      test(`${alg}: MAC and HMAC JWS in the token, same length as WebCrypto's, compared in constant time`, async () => {
        const key = await ring.create(T, { name: `gen-${alg}`, algorithm: alg });
        const active = await ring.current(T, key.id, ["mac"]);
        const mac = await macOf(active, bytes("data"));
        expect(mac.length).toBe(Number(alg.slice(2)) / 8);
        expect(await verifyMac(active, bytes("data"), mac)).toBe(true);
        expect(await verifyMac(active, bytes("datA"), mac)).toBe(false);
        expect(await verifyMac(active, bytes("data"), mac.subarray(1))).toBe(false);
        const jws = await signCompact(active, bytes("claims"));
        expect(text((await verifyCompact(ring, T, key.id, jws, ["mac"])).payload)).toBe("claims");
        await expect(verifyCompact(ring, T, key.id, jws.slice(0, -2) + (jws.endsWith("AA") ? "BB" : "AA"), ["mac"])).rejects.toMatchObject({ code: "signature_invalid" });
        await expectInToken(key.id, alg);
      });
    }

    for (const alg of ENC) {
      test(`${alg}: the service's JWEs open in the service; jose's JWEs to the public key open in the token`, async () => {
        const key = await ring.create(T, { name: `gen-${alg.replace("/", "_")}`, algorithm: alg });
        const active = await ring.current(T, key.id, ["encrypt", "wrap"]);
        const spec = active.spec;
        for (const enc of contentEncryptions(spec)) {
          const compact = (await encryptJwe(active, bytes(`compact ${enc}`), { enc, header: { ctx: "bound" } })) as string;
          expect(JSON.parse(text(Buffer.from(compact.split(".")[0]!, "base64url")))).toMatchObject({ alg: spec.jose, enc, kid: active.kid, ctx: "bound" });
          expect(text(await openJwe(active, compact))).toBe(`compact ${enc}`);
          const json = await encryptJwe(active, bytes(`json ${enc}`), { enc, format: "json", aad: bytes('{"a":"1"}') });
          expect(text(await openJwe(active, json as never))).toBe(`json ${enc}`);
          await expect(openJwe(active, { ...(json as object), aad: Buffer.from('{"a":"2"}').toString("base64url") } as never)).rejects.toMatchObject({ code: "decryption_failed" });
          // Tampering with any segment is refused.
          const parts = compact.split(".");
          for (let i = 1; i < 5; i++) {
            if (parts[i] === "") continue;
            const t = [...parts];
            const at = t[i]!.length >> 1;
            t[i] = t[i]!.slice(0, at) + (t[i]![at] === "A" ? "B" : "A") + t[i]!.slice(at + 1);
            await expect(openJwe(active, t.join("."))).rejects.toMatchObject({ code: "decryption_failed" });
          }
          if (spec.asymmetric) {
            const pub = await importJWK(await ring.publicKey(T, key.id), spec.jose);
            const fromJose = await new CompactEncrypt(bytes(`from jose ${enc}`)).setProtectedHeader({ alg: spec.jose, enc, kid: active.kid }).encrypt(pub);
            expect(text(await openJwe(active, fromJose))).toBe(`from jose ${enc}`);
            const flat = await new FlattenedEncrypt(bytes("flat")).setProtectedHeader({ alg: spec.jose, enc }).setAdditionalAuthenticatedData(bytes("aad")).encrypt(pub);
            expect(text(await openJwe(active, flat as never))).toBe("flat");
          }
        }
        await expectInToken(key.id, alg);
      });
    }
  });

  describe("imported into the token", () => {
    const cases: Array<[string, () => Promise<{ priv: JWK; pub?: JWK }>]> = [
      ["ES256", async () => jwkPair("ES256")],
      ["ES384", async () => jwkPair("ES384")],
      ["ES512", async () => jwkPair("ES512")],
      ["RS256", async () => jwkPair("RS256")],
      ["PS256", async () => jwkPair("PS256")],
      ["EdDSA", async () => jwkPair("EdDSA", { crv: "Ed25519" })],
      ["RSA-OAEP-256", async () => jwkPair("RSA-OAEP-256")],
      ["ECDH-ES+A256KW", async () => jwkPair("ECDH-ES+A256KW", { crv: "P-256" })],
      ["HS384", async () => ({ priv: await exportJWK(await generateSecret("HS384", { extractable: true })) })],
      ["A256KW", async () => ({ priv: await exportJWK(await generateSecret("A256KW", { extractable: true })) })],
      ["A256GCMKW", async () => ({ priv: await exportJWK(await generateSecret("A256GCMKW", { extractable: true })) })],
      ["A256GCM", async () => ({ priv: await exportJWK(await generateSecret("A256GCM", { extractable: true })) })],
    ];
    async function jwkPair(alg: string, opts: { crv?: string } = {}): Promise<{ priv: JWK; pub: JWK }> {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...opts });
      return { priv: await exportJWK(privateKey), pub: await exportJWK(publicKey) };
    }

    for (const [alg, make] of cases) {
      test(`${alg}: the caller's key goes into the token and interoperates with the caller's copy`, async () => {
        const { priv, pub } = await make();
        const importer = new KeyImporter(ring);
        const key = await importer.importNew(T, { name: `imp-${alg}`, algorithm: alg, jwk: { ...priv } });
        expect(key.versions![0]!.origin).toBe("imported");
        const spec = algorithmSpec(alg);
        const purposes = [spec.purpose];
        const active: ActiveVersion = await ring.current(T, key.id, purposes);
        expect(active.usable.token).toBeDefined();
        if (spec.purpose === "sign") {
          const jws = await signCompact(active, bytes("imported"));
          await compactVerify(jws, await importJWK(pub!, alg));
        } else if (spec.purpose === "mac") {
          const jws = await signCompact(active, bytes("imported"));
          await compactVerify(jws, await importJWK(priv, alg));
        } else {
          // The caller's copy decrypts what the token-held key encrypts, and the other way round.
          const jwe = (await encryptJwe(active, bytes("to caller"))) as string;
          const mine = spec.asymmetric ? await importJWK(priv, spec.jose) : await importJWK(priv, spec.jose === "dir" ? "A256GCM" : spec.jose);
          expect(text((await compactDecrypt(jwe, mine)).plaintext)).toBe("to caller");
          const theirs = spec.asymmetric ? await importJWK(pub!, spec.jose) : mine;
          const back = await new CompactEncrypt(bytes("from caller")).setProtectedHeader({ alg: spec.jose, enc: "A256GCM", kid: active.kid }).encrypt(theirs);
          expect(text(await openJwe(active, back))).toBe("from caller");
        }
        await expectInToken(key.id, alg, "hsm-imported");
      });
    }

    test("a public-only import has nothing secret: it stays a sealed public JWK and cannot sign", async () => {
      const { pub } = await jwkPair("ES256");
      const key = await new KeyImporter(ring).importNew(T, { name: "imp-public", algorithm: "ES256", jwk: { ...pub } });
      const [row] = await unsealedRows(key.id);
      expect(row!.origin).toBe("imported");
      expectNoPrivateMembers(row!.doc);
      await expect(signCompact(await ring.current(T, key.id, ["sign"]), bytes("x"))).rejects.toMatchObject({ code: "key_public_only" });
    });
  });

  describe("what the token cannot hold", () => {
    test("ML-DSA and X25519 are refused with algorithm_not_in_hsm (4xx), and nothing is stored", async () => {
      for (const algorithm of ["ML-DSA-44", "ECDH-ES/X25519"]) {
        await expect(ring.create(T, { name: `nohsm-${algorithm.replace("/", "_")}`, algorithm })).rejects.toMatchObject({ code: "algorithm_not_in_hsm", status: 422 });
      }
      const names = (await store.db.selectFrom("elastic_keys").select("name").where("name", "like", "nohsm-%").execute()).length;
      expect(names).toBe(0);
    });

    test("with software fallback they are barrier-sealed software keys, while the others still go to the token", async () => {
      const fallback = new Keyring(store.db, barrier, { hsm, softwareFallback: true, now: () => clock });
      const k = await fallback.create(T, { name: "fallback-mldsa", algorithm: "ML-DSA-44" });
      const [row] = await unsealedRows(k.id);
      expect(row!.origin).toBe("generated");
      expect(row!.doc.priv).toBeDefined(); // software material, sealed by the barrier
      const active = await fallback.current(T, k.id, ["sign"]);
      const jws = await signCompact(active, bytes("pq"));
      expect(text((await compactVerify(jws, await importJWK(await fallback.publicKey(T, k.id), "ML-DSA-44"))).payload)).toBe("pq");
      const es = await fallback.create(T, { name: "fallback-es", algorithm: "ES256" });
      await expectInToken(es.id, "ES256");
    });
  });

  describe("lifecycle", () => {
    test("rotation makes a new token object; a new keyring over a re-opened token finds both; purge destroys them", async () => {
      const key = await ring.create(T, { name: "life-gcm", algorithm: "A256GCM" });
      const v1 = await ring.current(T, key.id, ["encrypt"]);
      const before = (await encryptJwe(v1, bytes("before rotation"))) as string;
      await ring.rotate(T, key.id);
      const v2 = await ring.current(T, key.id, ["encrypt"]);
      expect(v2.version).toBe(2);
      const rows = await unsealedRows(key.id);
      expect(rows.map((r) => r.doc.hsm.label)).toEqual([tokenObjectLabel(T, key.id, 1), tokenObjectLabel(T, key.id, 2)]);
      await expectInToken(key.id, "A256GCM");
      const after = (await encryptJwe(v2, bytes("after rotation"))) as string;

      // A "restart": the provider closed and opened again (new handles), a new keyring with an empty cache.
      await hsm.close();
      hsm = await Pkcs11Provider.open(token.config);
      ring = new Keyring(store.db, barrier, { hsm, now: () => clock });
      expect(text(await openJwe(await ring.version(T, key.id, 1, ["encrypt"]), before))).toBe("before rotation");
      expect(text(await openJwe(await ring.version(T, key.id, 2, ["encrypt"]), after))).toBe("after rotation");

      await ring.scheduleDeletion(T, key.id, 7);
      clock = new Date(clock.getTime() + 8 * 86_400_000);
      expect((await ring.sweep()).purged).toBeGreaterThanOrEqual(1);
      const objects = new TokenKeyObjects(hsm);
      for (const r of rows) await expect(objects.find(r.doc.hsm as never, { type: "aes" })).rejects.toMatchObject({ code: "not_found" });
      expect(await store.db.selectFrom("material_keys").selectAll().where("key_id", "=", key.id).execute()).toEqual([]);
    });

    test("an object left behind by a crash (made, never stored) does not block its version; purge removes it too", async () => {
      const key = await ring.create(T, { name: "crash", algorithm: "ES256" });
      const objects = new TokenKeyObjects(hsm);
      const orphan = await objects.generate({ type: "ec", curve: "P-256", use: "sign" }, { label: tokenObjectLabel(T, key.id, 2), id: "00".repeat(16) });
      await ring.rotate(T, key.id);
      const v2 = await ring.current(T, key.id, ["sign"]);
      const jws = await signCompact(v2, bytes("after crash"));
      await compactVerify(jws, await importJWK(await ring.publicKey(T, key.id, 2), "ES256"));
      const rows = await unsealedRows(key.id);
      expect(rows[1]!.doc.hsm.id).not.toBe(orphan.ref.id);
      await ring.scheduleDeletion(T, key.id, 7);
      clock = new Date(clock.getTime() + 8 * 86_400_000);
      await ring.sweep();
      await expect(objects.find(orphan.ref, orphan.spec)).rejects.toMatchObject({ code: "not_found" });
      for (const r of rows) await expect(objects.find(r.doc.hsm as never, { type: "ec", curve: "P-256", use: "sign" })).rejects.toMatchObject({ code: "not_found" });
    });

    test("a sweep without the HSM leaves token keys for one with it; a fallback key the HSM cannot hold does not stop the sweep", async () => {
      const key = await ring.create(T, { name: "sweep-hs", algorithm: "HS512" });
      const fallback = new Keyring(store.db, barrier, { hsm, softwareFallback: true, now: () => clock });
      const pq = await fallback.create(T, { name: "sweep-pq", algorithm: "ML-DSA-44", rotation_period_days: 1 });
      await ring.scheduleDeletion(T, key.id, 7);
      clock = new Date(clock.getTime() + 8 * 86_400_000);
      const [row] = await unsealedRows(key.id);
      const noHsm = new Keyring(store.db, barrier, { now: () => clock });
      expect((await noHsm.sweep()).purged).toBe(0);
      expect((await unsealedRows(key.id)).length).toBe(1);
      expect((await ring.get(T, pq.id)).current_version).toBe(2); // a keyring without an HSM rotates in software
      clock = new Date(clock.getTime() + 2 * 86_400_000);
      // The HSM keyring without fallback cannot rotate the ML-DSA key, and still purges.
      expect(await ring.sweep()).toMatchObject({ purged: 1 });
      expect((await ring.get(T, pq.id)).current_version).toBe(2);
      await expect(new TokenKeyObjects(hsm).find(row!.doc.hsm, { type: "hmac", bytes: 64 })).rejects.toMatchObject({ code: "not_found" });
      // The fallback keyring rotates it (in software).
      expect((await fallback.sweep()).rotated).toBeGreaterThanOrEqual(1);
      expect((await fallback.get(T, pq.id)).current_version).toBe(3);
    });

    test("a reference copied to another row does not open there", async () => {
      const a = await ring.create(T, { name: "swap-a", algorithm: "HS256" });
      const b = await ring.create(T, { name: "swap-b", algorithm: "HS256" });
      const [docA] = await unsealedRows(a.id);
      // Re-seal A's reference under B's own context (as a database writer with the barrier could): refused.
      const forged = await barrier.encrypt(bytes(JSON.stringify(docA!.doc)), `keyring/${T}/${b.id}/v1`);
      await store.db.updateTable("material_keys").set({ material: forged }).where("key_id", "=", b.id).execute();
      const fresh = new Keyring(store.db, barrier, { hsm, now: () => clock });
      await expect(fresh.current(T, b.id, ["mac"])).rejects.toMatchObject({ code: "stored_material_corrupt" });
    });

    test("a key name conflict leaves no orphan object in the token", async () => {
      await ring.create(T, { name: "dup", algorithm: "ES256" });
      await expect(ring.create(T, { name: "dup", algorithm: "ES256" })).rejects.toMatchObject({ code: "conflict" });
      const labels = await hsm.withSession((s, p11, P) => {
        p11.C_FindObjectsInit(s, [{ type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY }]);
        const found = p11.C_FindObjects(s, 1000);
        p11.C_FindObjectsFinal(s);
        return found.map((h) => String(p11.C_GetAttributeValue(s, h, [{ type: P.CKA_LABEL }])[0]!.value));
      });
      const keyRows = await store.db.selectFrom("material_keys").select(["key_id", "version", "origin"]).execute();
      const expected = new Set(keyRows.filter((r) => r.origin.startsWith("hsm")).map((r) => tokenObjectLabel(T, r.key_id, r.version)));
      for (const l of labels) expect(expected.has(l)).toBe(true);
    });
  });
}
