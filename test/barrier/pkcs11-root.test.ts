/**
 * The barrier rooted in an HSM (SoftHSM2, Debian package softhsm2): root keys generated in
 * the token, intermediate keys wrapped there; the database holds only labels; data written
 * before rotations and restarts still decrypts; a token without the keys refuses to unseal.
 * Also learn-ps end to end with `hsm.*` configured.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Barrier, pkcs11RootLayer } from "../../src/barrier/index.ts";
import { Pkcs11Provider } from "../../src/crypto/pkcs11/index.ts";
import { AppError } from "../../src/service/errors.ts";
import { openDatabase } from "../../src/storage/index.ts";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, tempDir } from "../support/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

const softhsm: SoftHsm | undefined = await setupSoftHsm();
const secret = () => crypto.getRandomValues(new Uint8Array(32));

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error("expected an AppError");
}

if (softhsm) {
  let main: SoftHsmToken;
  let other: SoftHsmToken;
  let app: SoftHsmToken;
  let hsm: Pkcs11Provider;
  let otherHsm: Pkcs11Provider;
  let issuer: TestIssuer;

  beforeAll(async () => {
    main = softhsm.createToken("barrier-main");
    other = softhsm.createToken("barrier-other");
    app = softhsm.createToken("barrier-app");
    hsm = await Pkcs11Provider.open(main.config);
    otherHsm = await Pkcs11Provider.open(other.config);
    issuer = await startTestIssuer();
  });

  afterAll(async () => {
    await hsm?.close();
    await otherHsm?.close();
    await issuer?.stop();
    softhsm.cleanup();
  });

  describe("barrier with an HSM root layer", () => {
    test("round trip, rotations and restart; the database holds labels, not keys", async () => {
      const dir = tempDir();
      const open = () => openDatabase<any>({ service: "hsmtest", dataDir: dir });
      let store = await open();
      let barrier = new Barrier({ db: store.db, service: "hsmtest", rootLayer: pkcs11RootLayer(hsm) });
      const st = await barrier.unseal([secret()]);
      expect(st.rootLayer).toBe("pkcs11");
      const ct = await barrier.encrypt("top secret", "t/1");
      await barrier.rotateContent();
      await barrier.rotateIntermediate();
      await barrier.rotateRoot();
      const ct2 = await barrier.encrypt("after rotation", "t/2");
      const roots = await store.db.selectFrom("barrier_keys").select(["version", "wrapped"]).where("layer", "=", "root").execute();
      expect(roots.length).toBe(1); // the old root was retired after re-wrapping
      expect(new TextDecoder().decode(roots[0]!.wrapped)).toMatch(/^cryptoutil\/hsmtest\/barrier\/root\/v2-[0-9a-f]{12}$/);
      await barrier.seal();
      await store.close();

      store = await open();
      barrier = new Barrier({ db: store.db, service: "hsmtest", rootLayer: pkcs11RootLayer(hsm) });
      await barrier.unseal([]);
      expect(await barrier.decryptString(ct, "t/1")).toBe("top secret");
      expect(await barrier.decryptString(ct2, "t/2")).toBe("after rotation");
      expect((await failure(barrier.decrypt(ct, "t/other"))).code).toBe("decrypt_failed");
      await barrier.seal();
      await store.close();

      for (const f of readdirSync(dir).filter((f) => f.includes(".db"))) {
        const bytes = readFileSync(join(dir, f));
        expect(bytes.includes(Buffer.from("top secret"))).toBe(false);
      }
    });

    test("a token without the root keys, and a software-rooted database, refuse to unseal", async () => {
      const dir = tempDir();
      const store = await openDatabase<any>({ service: "hsmtest", dataDir: dir });
      const first = new Barrier({ db: store.db, service: "hsmtest", rootLayer: pkcs11RootLayer(hsm) });
      await first.unseal([]);
      await first.seal();
      const wrongToken = new Barrier({ db: store.db, service: "hsmtest", rootLayer: pkcs11RootLayer(otherHsm) });
      expect((await failure(wrongToken.unseal([]))).code).toBe("unseal_failed");
      await store.close();

      const softDir = tempDir();
      const soft = await openDatabase<any>({ service: "hsmtest", dataDir: softDir });
      const s = secret();
      const software = new Barrier({ db: soft.db, service: "hsmtest" });
      await software.unseal([s]);
      await software.seal();
      const asHsm = new Barrier({ db: soft.db, service: "hsmtest", rootLayer: pkcs11RootLayer(hsm) });
      expect((await failure(asHsm.unseal([]))).code).toBe("unseal_failed");
      await soft.close();
    });
  });

  describe("a service with hsm.* configured", () => {
    test("learn-ps stores and reads barrier-encrypted notes across a restart", async () => {
      const root = tempDir();
      const overrides = (c: ServiceConfig) => void (c.hsm = { module: softhsm.modulePath, token_label: app.label, pin_file: app.pinFile });
      const token = await issuer.mint({ tenant: "t", scope: "pets:read pets:write" });
      const auth = { authorization: `Bearer ${token}` };
      let svc = await startTestService(learnPs, { issuer, root, overrides });
      const health = (await (await svc.admin("/admin/v1/healthz")).json()) as { barrier: { rootLayer: string } };
      expect(health.barrier.rootLayer).toBe("pkcs11");
      const res = await svc.call("/service/api/v1/pets", { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ name: "Hsm", species: "cat", owner_note: "kept under an HSM root" }) });
      expect(res.status).toBe(201);
      const { id } = (await res.json()) as { id: string };
      await svc.stop();
      svc = await startTestService(learnPs, { issuer, root, overrides });
      try {
        const got = (await (await svc.call(`/service/api/v1/pets/${id}`, { headers: auth })).json()) as { owner_note: string };
        expect(got.owner_note).toBe("kept under an HSM root");
      } finally {
        await svc.stop();
      }
    });
  });
}
