import { expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "./helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

// src/ must run unchanged on Deno: create a suite CA, a leaf and stored TLS material there.
test("src/pki runs on Deno", async () => {
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  expect(await Bun.file(deno).exists()).toBe(true); // a dev dependency, so never optional
  const t = await tempDir("deno");
  try {
    const script = join(t.dir, "check.ts");
    const index = new URL("../../src/pki/index.ts", import.meta.url).href;
    await writeFile(
      script,
      `import * as pki from ${JSON.stringify(index)};
const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
const dir = ${JSON.stringify(t.dir)};
const opts = {
  store: new pki.DirectoryStore(dir + "/svc"), sealer: new pki.AesGcmSealer(key), serviceName: "jose-ja",
  sans: pki.serverSans({ bindAddresses: ["127.0.0.1"] }),
  suiteCa: { store: new pki.DirectoryStore(dir + "/suite-ca"), sealer: await pki.suiteCaSealerFromSecrets([new Uint8Array(32).fill(7)]) },
};
const a = await pki.loadOrCreateTlsMaterial(opts);
const b = await pki.loadOrCreateTlsMaterial(opts);
console.log(JSON.stringify({ first: a.outcome, second: b.outcome, same: a.material.certChainPem === b.material.certChainPem }));
`,
    );
    const p = Bun.spawn([deno, "run", "--allow-read", "--allow-write", "--allow-env", "--node-modules-dir=manual", script], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).not.toContain("error");
    expect(code).toBe(0);
    expect(JSON.parse(out.trim().split("\n").pop()!)).toEqual({ first: "absent", second: "loaded", same: true });
  } finally {
    await t.cleanup();
  }
}, 30_000);
