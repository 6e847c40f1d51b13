/**
 * `npm run bench -- supacrypt-pkcs11`: ES256 signatures per second through the PKCS#11 module
 * (libcryptoutil-pkcs11.so -> sm-kms's raw sign route over mTLS), next to the same operation in
 * the same run over sm-kms's HTTPS API (bearer token, from this process) and directly on
 * SoftHSM2. The module and SoftHSM2 are driven by the same C driver
 * (providers/pkcs11/tools/p11-driver.c) with N threads, one session each: CKM_ECDSA_SHA256
 * through the module, and CKM_ECDSA over a SHA-256 digest on both (SoftHSM2 2.6 has no
 * CKM_ECDSA_SHA256).
 * sm-kms runs as its own process; the driver and this process share the machine with it.
 * Target (issue 21): 1,000 operations per second through the module.
 *
 *   npm run bench -- supacrypt-pkcs11 [--threads 16] [--seconds 10]
 *
 * `pkcs11Rows()` gives the rows without printing, for a benchmark that shows them beside others
 * (`npm run bench -- supacrypt`).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileDriver, MODULE, run, startKmsBackend } from "../test/providers/pkcs11-harness.ts";
import { printTable, type Row } from "./lib.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so";
const TARGET = 1000;

export interface Pkcs11Figures {
  module: number;
  moduleOne: number;
  modulePrehash: number;
  https: number;
  softhsm?: number;
}

/** Measures every path in one run; `rows` are for printTable. */
export async function pkcs11Rows(threads = 16, seconds = 10): Promise<{ rows: Row[]; figures: Pkcs11Figures }> {
  const [THREADS, SECONDS] = [threads, seconds];
  const b = await startKmsBackend([{ label: "bench", tenant: "tenant-bench", pin: "bench-pin" }]);
  const rows: Row[] = [];
  try {
    const driver = await compileDriver(b.root);
    const created = await b.api("tenant-bench", "POST", "/keys", { name: "es256", algorithm: "ES256" });
    if (created.status !== 201) throw new Error(`create key: ${JSON.stringify(created.body)}`);
    const keyId = created.body.id as string;

    const driverRate = async (module: string, token: string, pin: string, threads: number, env: NodeJS.ProcessEnv, mechanism = "ecdsa-sha256") => {
      const r = await run([driver, module, token, pin, "es256", "bench", String(threads), String(SECONDS), mechanism], { env });
      const m = /ops (\d+) seconds ([\d.]+) errors (\d+)/.exec(r.stdout);
      if (r.status !== 0 || !m) throw new Error(`driver: ${r.stderr}`);
      if (Number(m[3]) > 0) throw new Error(`driver: ${m[3]} failed signatures (${r.stdout.trim()})`);
      return Number(m[1]) / Number(m[2]);
    };

    // Through the module, N threads and one.
    const module = await driverRate(MODULE, "bench", "bench-pin", THREADS, b.env);
    const moduleOne = await driverRate(MODULE, "bench", "bench-pin", 1, b.env);
    // The same CKM_ECDSA over a digest that SoftHSM2 gets below.
    const modulePrehash = await driverRate(MODULE, "bench", "bench-pin", THREADS, b.env, "ecdsa");

    // sm-kms's HTTPS API: the same raw sign, N requests in flight from this process.
    const token = await b.issuer.mint({ tenant: "tenant-bench", scope: "kms:sign" });
    const ca = await Bun.file(b.trustBundle).text();
    const body = JSON.stringify({ mechanism: "ECDSA-SHA256", data: Buffer.from("bench message").toString("base64url") });
    const sign = async () => {
      const res = await fetch(`${b.publicUrl}/service/api/v1/keys/${keyId}/raw/sign`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body,
        tls: { ca },
      } as RequestInit);
      if (res.status !== 200) throw new Error(`HTTPS sign: ${res.status}`);
      await res.arrayBuffer();
    };
    for (let i = 0; i < 50; i++) await sign();
    let done = 0;
    const end = performance.now() + SECONDS * 1000;
    const started = performance.now();
    await Promise.all(Array.from({ length: THREADS }, async () => {
      while (performance.now() < end) {
        await sign();
        done++;
      }
    }));
    const https = done / ((performance.now() - started) / 1000);

    // Directly on SoftHSM2: a token of its own with a P-256 key made by pkcs11-tool.
    let softhsm: number | undefined;
    if (await Bun.file(SOFTHSM).exists()) {
      const dir = join(b.root, "softhsm");
      mkdirSync(join(dir, "tokens"), { recursive: true });
      writeFileSync(join(dir, "softhsm2.conf"), `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`);
      const env = { ...process.env, SOFTHSM2_CONF: join(dir, "softhsm2.conf") };
      const init = await run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"], { env });
      if (init.status !== 0) throw new Error(`softhsm2-util: ${init.stderr}`);
      const gen = await run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", "bench", "--login", "--pin", "1234", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "es256"], { env });
      if (gen.status !== 0) throw new Error(`pkcs11-tool keypairgen: ${gen.stderr}`);
      // SoftHSM2 2.6 has no CKM_ECDSA_SHA256: the driver hashes and signs the digest with CKM_ECDSA.
      softhsm = await driverRate(SOFTHSM, "bench", "1234", THREADS, env, "ecdsa");
    } else {
      console.log(`SoftHSM2 not found at ${SOFTHSM}: its row is left out`);
    }

    rows.push({ group: "ES256 sign", name: `PKCS#11 module, ${THREADS} threads`, opsPerSec: module, anchor: `target ${TARGET} ops/s`, ratio: module / TARGET });
    rows.push({ group: "ES256 sign", name: "PKCS#11 module, 1 thread", opsPerSec: moduleOne });
    rows.push({ group: "ES256 sign", name: `PKCS#11 module, CKM_ECDSA on a digest, ${THREADS} threads`, opsPerSec: modulePrehash });
    rows.push({ group: "ES256 sign", name: `sm-kms HTTPS API, ${THREADS} in flight`, opsPerSec: https, anchor: "module / HTTPS", ratio: module / https });
    if (softhsm !== undefined) rows.push({ group: "ES256 sign", name: `SoftHSM2 direct, CKM_ECDSA on a digest, ${THREADS} threads`, opsPerSec: softhsm, anchor: "module (digest) / SoftHSM2", ratio: modulePrehash / softhsm });
    return { rows, figures: { module, moduleOne, modulePrehash, https, softhsm } };
  } finally {
    await b.stop();
  }
}

if (import.meta.main) {
  const THREADS = arg("threads", 16);
  const SECONDS = arg("seconds", 10);
  const { rows, figures } = await pkcs11Rows(THREADS, SECONDS);
  printTable(`Supacrypt PKCS#11: ES256 signatures per second (${SECONDS} s each, ${navigator.hardwareConcurrency} CPUs, sm-kms in its own process)`, rows);
  console.log(`\nthrough the module: ${Math.round(figures.module)} ops/s, ${figures.module >= TARGET ? "meets" : "below"} the ${TARGET} ops/s target`);
  console.log(JSON.stringify(figures, (_k, v) => (typeof v === "number" ? Math.round(v) : v)));
}
