/**
 * The npm bin shim (cli/bin/cryptoutil.mjs) on Node: it finds the repository's Bun, runs
 * cli/main.ts and passes arguments, output and the exit code through.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO } from "./support/suite.ts";

const node = Bun.which("node");

describe("cli/bin/cryptoutil.mjs", () => {
  test.skipIf(!node)("runs the CLI on the repository's Bun with only Node: output and exit codes pass through", async () => {
    const home = mkdtempSync(join(tmpdir(), "cryptoutil-cli-shim-"));
    const run = async (args: string[]) => {
      const p = Bun.spawn([node!, join(REPO, "cli/bin/cryptoutil.mjs"), ...args], { cwd: home, env: { ...process.env, CRYPTOUTIL_HOME: home }, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { stdout, stderr, code };
    };
    const v = await run(["--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const bad = await run(["kms", "key", "list", "--bogus"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe("error: unknown option '--bogus'");
    const noLogin = await run(["kms", "key", "list"]);
    expect(noLogin.code).toBe(2);
    expect(noLogin.stderr).toContain("run cryptoutil login");
  });
});
