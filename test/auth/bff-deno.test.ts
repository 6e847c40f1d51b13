/** src/auth/bff.ts must load unchanged on Deno (Web-standard fetch, oauth4webapi, valibot). */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

test("src/auth/bff.ts imports and validates its config on Deno", async () => {
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  expect(await Bun.file(deno).exists()).toBe(true); // a dev dependency, so never optional
  const dir = mkdtempSync(join(tmpdir(), "bff-deno-"));
  try {
    const script = join(dir, "check.ts");
    const bff = new URL("../../src/auth/bff.ts", import.meta.url).href;
    writeFileSync(
      script,
      `import * as bff from ${JSON.stringify(bff)};
const c = bff.parseBrowserLoginConfig({ issuer: "https://id.example/t/acme", client_id: "web", client_secret_file: "s" });
let refused = "";
try { bff.parseBrowserLoginConfig({ issuer: "http://id.example/t/acme", client_id: "web", client_secret_file: "s" }); } catch (e) { refused = e.code; }
console.log(JSON.stringify({ scope: c.scope, alg: c.id_token_alg, refused, plugin: typeof bff.browserLogin }));
`,
    );
    const p = Bun.spawn([deno, "run", "--allow-read", "--allow-env", "--node-modules-dir=manual", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).not.toContain("error");
    expect(code).toBe(0);
    expect(JSON.parse(out.trim().split("\n").pop()!)).toEqual({ scope: "openid profile", alg: "ES256", refused: "config_invalid", plugin: "function" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
