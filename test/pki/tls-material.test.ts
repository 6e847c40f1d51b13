import { describe, expect, test } from "bun:test";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../../src/service/errors.ts";
import { fromBase64 } from "../../src/pki/codec.ts";
import { sansOf } from "../../src/pki/leaf.ts";
import { suiteCaSealerFromFiles, suiteCaSealerFromSecrets } from "../../src/pki/sealer.ts";
import { DirectoryStore } from "../../src/pki/store.ts";
import { loadOrCreateSuiteCa, SUITE_CA_RECORD } from "../../src/pki/suite-ca-store.ts";
import { leafRecordName, loadOrCreateTlsMaterial, writeTrustBundle } from "../../src/pki/tls-material.ts";
import * as x509 from "../../src/pki/x509.ts";
import { barrierSealer, haveOpenssl, includesBytes, openssl, tempDir } from "./helpers.ts";

const SANS = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] };

/** One simulated "process start": every object built afresh from what is on disk. */
async function start(dataDir: string, secretFile: string, barrierRaw: Uint8Array, opts: { sans?: typeof SANS; now?: Date } = {}) {
  const { sealer } = await barrierSealer(barrierRaw);
  return loadOrCreateTlsMaterial({
    store: new DirectoryStore(join(dataDir, "sm-kms")),
    sealer,
    serviceName: "sm-kms",
    sans: opts.sans ?? SANS,
    suiteCa: { store: new DirectoryStore(join(dataDir, "suite-ca")), sealer: await suiteCaSealerFromFiles([secretFile]) },
    now: opts.now,
  });
}

async function setup() {
  const t = await tempDir("tls");
  const secretFile = join(t.dir, "unseal-1.secret");
  await writeFile(secretFile, crypto.getRandomValues(new Uint8Array(32)));
  const { raw } = await barrierSealer();
  return { ...t, secretFile, raw };
}

async function allFiles(dir: string): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(new Uint8Array(await readFile(join(e.parentPath, e.name))));
  }
  return out;
}

function pemDer(pem: string): Uint8Array {
  return new Uint8Array(x509.PemConverter.decodeFirst(pem));
}

describe("auto TLS material", () => {
  test("first start creates CA and leaf; a restart loads the same ones", async () => {
    const s = await setup();
    try {
      const first = await start(s.dir, s.secretFile, s.raw);
      expect(first.caCreated).toBe(true);
      expect(first.outcome).toBe("absent");
      const again = await start(s.dir, s.secretFile, s.raw);
      expect(again.caCreated).toBe(false);
      expect(again.outcome).toBe("loaded");
      expect(again.material.caBundlePem).toBe(first.material.caBundlePem);
      expect(again.material.certChainPem).toBe(first.material.certChainPem);
      expect(again.material.keyPem).toBe(first.material.keyPem);
      expect(first.material.certChainPem.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
      expect(first.material.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
    } finally {
      await s.cleanup();
    }
  });

  test("private keys are stored only sealed (byte scan of every stored file)", async () => {
    const s = await setup();
    try {
      const { material } = await start(s.dir, s.secretFile, s.raw);
      const files = await allFiles(s.dir);
      expect(files.length).toBeGreaterThanOrEqual(3); // secret, suite-ca.json, leaf record
      const rec = JSON.parse(await readFile(join(s.dir, "suite-ca", SUITE_CA_RECORD), "utf8"));
      const caSealer = await suiteCaSealerFromFiles([s.secretFile]);
      const rootRaw = fromBase64(rec.rootKeySealed);
      const rootCert = new x509.X509Certificate(rec.rootCertPem);
      const intCert = new x509.X509Certificate(rec.intermediateCertPem);
      const rootPk = await caSealer.open(rootRaw, `cryptoutil/suite-ca/v1/root-key/${rootCert.serialNumber.toLowerCase()}`);
      const intPk = await caSealer.open(fromBase64(rec.intermediateKeySealed), `cryptoutil/suite-ca/v1/intermediate-key/${intCert.serialNumber.toLowerCase()}`);
      const leafPk = pemDer(material.keyPem);
      const enc = new TextEncoder();
      for (const pk of [rootPk, intPk, leafPk]) {
        // The whole PKCS#8, its P-256 scalar d (bytes 36..68 of WebCrypto's PKCS#8) and their base64 must be absent.
        expect([pk[34], pk[35]]).toEqual([0x04, 0x20]);
        const d = pk.slice(36, 68);
        const needles = [pk, d, enc.encode(Buffer.from(pk).toString("base64")), enc.encode(Buffer.from(d).toString("base64").slice(0, 40))];
        for (const f of files) for (const n of needles) expect(includesBytes(f, n)).toBe(false);
      }
      // Certificates, on the other hand, are in clear.
      const leafCertDer = pemDer(material.certChainPem);
      const leafRec = await new DirectoryStore(join(s.dir, "sm-kms")).get(leafRecordName("sm-kms"));
      expect(new TextDecoder().decode(leafRec!)).toContain(Buffer.from(leafCertDer).toString("base64").slice(0, 60));
    } finally {
      await s.cleanup();
    }
  });

  test("changed SANs or a leaf near expiry reissue the leaf from the same CA", async () => {
    const s = await setup();
    try {
      const first = await start(s.dir, s.secretFile, s.raw);
      const wider = { dnsNames: ["localhost", "kms.internal"], ipAddresses: ["127.0.0.1", "::1"] };
      const moved = await start(s.dir, s.secretFile, s.raw, { sans: wider });
      expect(moved.outcome).toBe("sans_changed");
      expect(moved.material.caBundlePem).toBe(first.material.caBundlePem);
      expect(moved.material.leaf.serialNumber).not.toBe(first.material.leaf.serialNumber);
      expect(sansOf(new x509.X509Certificate(moved.material.certChainPem)).dnsNames).toEqual(["kms.internal", "localhost"]);
      // Same names in another order and spelling: no reissue.
      const same = await start(s.dir, s.secretFile, s.raw, { sans: { dnsNames: ["KMS.internal", "localhost"], ipAddresses: ["0::1", "127.0.0.1"] } });
      expect(same.outcome).toBe("loaded");
      // 20 days before the leaf's end: inside the 30-day window.
      const late = new Date(moved.material.leaf.notAfter.getTime() - 20 * 86_400_000);
      const renewed = await start(s.dir, s.secretFile, s.raw, { sans: wider, now: late });
      expect(renewed.outcome).toBe("renewal_due");
      expect(renewed.material.leaf.notAfter.getTime()).toBeGreaterThan(moved.material.leaf.notAfter.getTime());
      expect(renewed.material.caBundlePem).toBe(first.material.caBundlePem);
      const early = new Date(moved.material.leaf.notAfter.getTime() - 40 * 86_400_000);
      expect((await start(s.dir, s.secretFile, s.raw, { sans: wider, now: early })).outcome).toBe("loaded");
    } finally {
      await s.cleanup();
    }
  });

  test("a leaf whose sealed key no longer opens is reissued; a wiped CA reissues the leaf", async () => {
    const s = await setup();
    try {
      const first = await start(s.dir, s.secretFile, s.raw);
      const other = await barrierSealer();
      const rekeyed = await start(s.dir, s.secretFile, other.raw);
      expect(rekeyed.outcome).toBe("key_unusable");
      expect(rekeyed.material.caBundlePem).toBe(first.material.caBundlePem);
      const { rm } = await import("node:fs/promises");
      await rm(join(s.dir, "suite-ca"), { recursive: true });
      const fresh = await start(s.dir, s.secretFile, other.raw);
      expect(fresh.caCreated).toBe(true);
      expect(fresh.outcome).toBe("ca_changed");
      expect(fresh.material.caBundlePem).not.toBe(first.material.caBundlePem);
    } finally {
      await s.cleanup();
    }
  });

  test("wrong unseal secrets and a corrupt record give typed errors", async () => {
    const s = await setup();
    try {
      await start(s.dir, s.secretFile, s.raw);
      const wrong = join(s.dir, "other.secret");
      await writeFile(wrong, crypto.getRandomValues(new Uint8Array(32)));
      const err = await start(s.dir, wrong, s.raw).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("config_invalid");
      expect((err as AppError).message).toContain("unseal secret");

      await writeFile(join(s.dir, "suite-ca", SUITE_CA_RECORD), "{ not json");
      const err2 = await start(s.dir, s.secretFile, s.raw).then(() => undefined, (e: unknown) => e);
      expect((err2 as AppError).code).toBe("stored_material_corrupt");

      const short = await suiteCaSealerFromSecrets([new Uint8Array(8)]).then(() => undefined, (e: unknown) => e);
      expect((short as AppError).code).toBe("config_invalid");
      const missing = await suiteCaSealerFromFiles([join(s.dir, "nope")]).then(() => undefined, (e: unknown) => e);
      expect((missing as AppError).code).toBe("config_invalid");
    } finally {
      await s.cleanup();
    }
  });

  test("3 concurrent creations in one process yield one CA", async () => {
    const s = await setup();
    try {
      const sealer = await suiteCaSealerFromFiles([s.secretFile]);
      const results = await Promise.all(
        [1, 2, 3].map(() => loadOrCreateSuiteCa({ store: new DirectoryStore(join(s.dir, "suite-ca")), sealer })),
      );
      const roots = new Set(results.map((r) => r.ca.root.cert.serialNumber));
      expect(roots.size).toBe(1);
      expect(results.filter((r) => r.created).length).toBe(1);
      expect((await readdir(join(s.dir, "suite-ca"))).sort()).toEqual([SUITE_CA_RECORD]);
    } finally {
      await s.cleanup();
    }
  });

  test("3 concurrent processes yield one CA", async () => {
    const s = await setup();
    try {
      const worker = new URL("./fixtures/suite-ca-worker.ts", import.meta.url).pathname;
      const startAt = String(Date.now() + 1200);
      const procs = [1, 2, 3].map(() =>
        Bun.spawn([process.execPath, worker, join(s.dir, "suite-ca"), s.secretFile, startAt], { stdout: "pipe", stderr: "pipe" }),
      );
      const outs = await Promise.all(procs.map(async (p) => ({ code: await p.exited, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() })));
      for (const o of outs) expect(o.code, o.err).toBe(0);
      const parsed = outs.map((o) => JSON.parse(o.out) as { root: string; created: boolean });
      expect(new Set(parsed.map((p) => p.root)).size).toBe(1);
      expect(parsed.filter((p) => p.created).length).toBe(1);
    } finally {
      await s.cleanup();
    }
  }, 20_000);

  test("writeTrustBundle writes the root, usable as openssl -CAfile", async () => {
    const s = await setup();
    try {
      const { material } = await start(s.dir, s.secretFile, s.raw);
      const path = join(s.dir, "trust.pem");
      await writeTrustBundle(path, material);
      expect(await readFile(path, "utf8")).toBe(material.caBundlePem);
      if (!haveOpenssl()) return;
      const chain = join(s.dir, "chain.pem");
      await writeFile(chain, material.certChainPem);
      const intermediate = join(s.dir, "int.pem");
      const certs = material.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
      await writeFile(intermediate, certs[1]!);
      const leafPath = join(s.dir, "leaf.pem");
      await writeFile(leafPath, certs[0]!);
      const r = openssl(["verify", "-CAfile", path, "-untrusted", intermediate, "-verify_hostname", "localhost", leafPath]);
      expect(r.out).toContain("OK");
      expect(r.code).toBe(0);
    } finally {
      await s.cleanup();
    }
  });
});
