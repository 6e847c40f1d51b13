/**
 * Runs a script on Deno, for the tests that require src/ to run unchanged there. Deno is a
 * dev dependency, so a missing binary is a failure, not a skip.
 */
import { expect } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A JSON string literal of the file URL of `path` (from the project root), for an import. */
export const moduleUrl = (path: string): string => JSON.stringify(new URL(path, `file://${ROOT}`).href);

/**
 * Writes the script `source(dir)` into a fresh temporary directory `dir`, runs it with
 * `deno run` and the given permission flags from the project root (its node_modules), and
 * returns the JSON of its last line of output, after requiring a clean exit.
 */
export async function runOnDeno(permissions: string[], source: (dir: string) => string): Promise<unknown> {
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  expect(await Bun.file(deno).exists()).toBe(true);
  const dir = mkdtempSync(join(tmpdir(), "cryptoutil-deno-"));
  try {
    const script = join(dir, "check.ts");
    writeFileSync(script, source(dir));
    const p = Bun.spawn([deno, "run", ...permissions, "--node-modules-dir=manual", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).not.toContain("error");
    expect(code).toBe(0);
    return JSON.parse(out.trim().split("\n").pop()!);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
