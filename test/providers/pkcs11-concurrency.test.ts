/**
 * Issue 21 (2), concurrency and failure: 16 threads of a small C driver
 * (providers/pkcs11/tools/p11-driver.c, compiled here) sign at once through the module, each
 * on its own session; every signature verifies against the public key sm-kms exports. Then the
 * backend is killed (SIGKILL) while the threads sign: calls in flight and after return
 * CKR_DEVICE_ERROR (0x30), nothing crashes, and once sm-kms is back on the same ports the next
 * call of every thread works. AES-GCM through the module (encrypt, decrypt, a tampered tag
 * refused) and the return values of misuse run on the same driver.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileDriver, ecVerifier, MODULE, requireTools, run, startKmsBackend, type KmsBackend } from "./pkcs11-harness.ts";

const ready = requireTools([["cc", ["--version"]]], [MODULE]);
const PIN = "concurrency-pin";
let b: KmsBackend;
let driver: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  if (!ready) return;
  b = await startKmsBackend([{ label: "threads", tenant: "tenant-t", pin: PIN }]);
  driver = await compileDriver(b.root);
  for (const [name, algorithm] of [["es256", "ES256"], ["aes", "A256GCM"]] as const) {
    const r = await b.api("tenant-t", "POST", "/keys", { name, algorithm });
    expect(r.status).toBe(201);
    keys[name] = r.body.id;
  }
});
afterAll(async () => {
  await b?.stop();
});

describe.if(ready)("the module under threads", () => {
  test("16 threads signing at once give 16 x 20 signatures that all verify", async () => {
    const r = await run([driver, MODULE, "threads", PIN, "es256", "sign", "16", "20"], { env: b.env });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.length).toBe(320);
    const verify = await ecVerifier(b, "tenant-t", keys.es256!);
    const seen = new Set<string>();
    for (const line of lines) {
      const [thread, n, hex] = line.split(" ");
      seen.add(`${thread}-${n}`);
      const ok = await verify(new TextEncoder().encode(`t${thread}-${n}`), Buffer.from(hex!, "hex"));
      expect(ok).toBe(true);
    }
    expect(seen.size).toBe(320);
  }, 300_000);

  test("threads listing the keys while others sign: a key that exists never looks gone (no CKR_KEY_HANDLE_INVALID)", async () => {
    // Even threads find the key again (a new listing) before each signature, odd threads only
    // sign: listings overlap each other and every signature.
    const r = await run([driver, MODULE, "threads", PIN, "es256", "churn", "16", "10"], { env: b.env });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("churn ops 160 errors 0 first_error 0x0\n");
    expect(r.status).toBe(0);
  }, 300_000);

  test("misuse gets PKCS#11's own return values: bad handles, short buffers, order, sensitive attributes, logout, a wrong PIN, finalize", async () => {
    const r = await run([driver, MODULE, "threads", PIN, "es256", "errors", "1", "1"], { env: b.env });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("errors ok\n");
    expect(r.status).toBe(0);
  });

  test("without a config, C_Initialize fails with one line saying so", async () => {
    const r = await run([driver, MODULE, "threads", PIN, "es256", "sign", "1", "1"], { env: { ...b.env, CRYPTOUTIL_PKCS11_CONFIG: "" } });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("libcryptoutil-pkcs11: no usable config in CRYPTOUTIL_PKCS11_CONFIG");
    expect(r.stderr).toContain("C_Initialize failed: 0x5");
  });

  test("a plain client key that others can read is refused, as ssh refuses such keys", async () => {
    const config = JSON.parse(readFileSync(b.configFile, "utf8"));
    const key = join(b.root, "loose.key");
    const pem = spawnSync("openssl", ["pkey", "-in", config.slots[0].key, "-passin", `pass:${PIN}`], { encoding: "utf8" }).stdout;
    writeFileSync(key, pem, { mode: 0o644 });
    chmodSync(key, 0o644);
    config.slots[0].key = key;
    writeFileSync(join(b.root, "loose.json"), JSON.stringify(config));
    const r = await run([driver, MODULE, "threads", "-", "es256", "sign", "1", "1"], { env: { ...b.env, CRYPTOUTIL_PKCS11_CONFIG: join(b.root, "loose.json") } });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("slot 0: a plain key or token file must exist and be readable by its owner only (mode 0600)");
    chmodSync(key, 0o600);
    const ok = await run([driver, MODULE, "threads", "-", "es256", "sign", "1", "1"], { env: { ...b.env, CRYPTOUTIL_PKCS11_CONFIG: join(b.root, "loose.json") } });
    expect(ok.status).toBe(0);
  });

  test("the install step skips the module with a message when there is no compiler", async () => {
    const r = await run(["node", join(import.meta.dir, "..", "..", "scripts", "build-pkcs11.mjs")], { env: { ...process.env, CC: "no-such-cc" } });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("build-pkcs11: skipped, missing a C compiler (no-such-cc)");
  });

  test("AES-GCM through the module: encrypt, decrypt, a tampered tag fails", async () => {
    const r = await run([driver, MODULE, "threads", PIN, "aes", "gcm", "1", "1"], { env: b.env });
    expect(r.status).toBe(0);
    // CKR_ENCRYPTED_DATA_INVALID for the tampered tag.
    expect(r.stdout).toContain("gcm ok tampered 0x40");
  });

  test("killing the backend mid-call gives CKR_DEVICE_ERROR, no crash; after a restart the next call works", async () => {
    const p = spawn(driver, [MODULE, "threads", PIN, "es256", "recover", "16", "240"], { env: b.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    const readyLine = new Promise<void>((resolve) =>
      p.stdout.on("data", (d) => {
        out += d;
        if (out.includes("ready\n")) resolve();
      }),
    );
    const exit = new Promise<number | null>((resolve) => p.once("exit", (code, signal) => resolve(signal ? -1 : code)));
    await readyLine;
    // Every thread has signed once and goes on signing: the kill lands on calls in flight.
    await b.kill();
    await Bun.sleep(500);
    await b.restart();
    const code = await exit;
    expect(err).toBe("");
    expect(code).toBe(0);
    const results = out.trim().split("\n").filter((l) => l !== "ready");
    expect(results.length).toBe(16);
    for (const line of results) expect(line).toMatch(/^\d+ failed 0x30 recovered 1$/);
    // And a fresh run signs as before.
    const again = await run([driver, MODULE, "threads", PIN, "es256", "sign", "2", "2"], { env: b.env });
    expect(again.status).toBe(0);
  }, 300_000);
});
