/** The keyring files jose-ja added to src/ (import checks, shared JOSE ops, sweep) run unchanged on Deno. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

test("src/keyring's import and jose-ops run on Deno", async () => {
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  expect(await Bun.file(deno).exists()).toBe(true); // a dev dependency, so never optional
  const dir = mkdtempSync(join(tmpdir(), "jose-ja-deno-"));
  try {
    const src = (f: string) => JSON.stringify(new URL(`../../src/keyring/${f}`, import.meta.url).href);
    const script = join(dir, "check.ts");
    writeFileSync(
      script,
      `import { normalizeImportedJwk } from ${src("import.ts")};
import { signatureInvalid, versionFromKid } from ${src("jose-ops.ts")};
import ${src("sweeper.ts")};
const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]) as CryptoKeyPair;
const r = await normalizeImportedJwk("ES256", { ...(await crypto.subtle.exportKey("jwk", pair.privateKey)) });
const id = "00000000-0000-4000-8000-000000000001";
let refused = "";
try { await normalizeImportedJwk("ES384", { ...(await crypto.subtle.exportKey("jwk", pair.publicKey)) }); } catch (e) { refused = (e as { code: string }).code; }
console.log(JSON.stringify({ isPrivate: r.isPrivate, members: Object.keys(r.jwk).sort(), version: versionFromKid(id + ".v3", id, signatureInvalid), refused }));
`,
    );
    // The keyring's store reaches libSQL's native client, hence --allow-ffi and --allow-sys.
    const p = Bun.spawn([deno, "run", "--allow-read", "--allow-env", "--allow-ffi", "--allow-sys", "--node-modules-dir=manual", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).not.toContain("error");
    expect(code).toBe(0);
    expect(JSON.parse(out.trim().split("\n").pop()!)).toEqual({ isPrivate: true, members: ["crv", "d", "kty", "x", "y"], version: 3, refused: "validation_failed" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
