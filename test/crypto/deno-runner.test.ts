// Runs the WASM core's Deno tests (test/crypto/deno/) under the deno binary from
// node_modules, so `bun test` also proves the core works on Deno.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = fileURLToPath(new URL("../../node_modules/.bin/deno", import.meta.url));
const present = existsSync(deno);

if (!present) {
  if (process.env.CI === "true") {
    test("deno is installed (devDependency)", () => {
      expect(existsSync(deno)).toBe(true);
    });
  } else {
    console.warn("deno-runner: node_modules/.bin/deno not found (run npm install); Deno tests not run");
  }
} else {
  test("WASM core passes its Deno tests", async () => {
    const proc = Bun.spawn([deno, "test", "--allow-read", "--no-prompt", "test/crypto/deno/wasm_core.deno.ts"], {
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, NO_COLOR: "1" },
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) console.error(out, err);
    expect(code).toBe(0);
    expect(out).toMatch(/ok \| 5 passed \| 0 failed/);
  }, 120_000);
}
