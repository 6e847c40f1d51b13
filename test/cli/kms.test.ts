/**
 * The CLI against identity-authz and sm-kms over real HTTPS, run as a subprocess: login from
 * suite.json, the token cache (files 0600 in a 0700 directory, reused, refetched when
 * near expiry), kms keys, encrypt/decrypt of files and stdin, many files at once, sign/verify,
 * MAC, data keys, and the refusals: one line on stderr, exit 1 or 2, never a stack.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { oneErrorLine, startCliSuite, type CliSuite } from "./support/suite.ts";

// Real HTTPS services and a subprocess per command: slow on a loaded machine.
setDefaultTimeout(60_000);
let s: CliSuite;
let home: string;

beforeAll(async () => {
  s = await startCliSuite(["sm-kms"]);
  home = s.newHome();
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

const run = (args: string[], opts?: Parameters<CliSuite["cli"]>[2]) => s.cli(home, args, opts);
const mode = (p: string) => statSync(p).mode & 0o777;

describe("login", () => {
  test("imports the suite's contexts, checks the credentials and caches the token 0600", async () => {
    const r = await run(["login"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("context 'demo'");
    const list = await run(["context", "list", "--json"]);
    const ctx = JSON.parse(list.stdout) as { current: string; contexts: Array<{ name: string }> };
    expect(ctx.current).toBe("demo");
    expect(ctx.contexts.map((c) => c.name).sort()).toEqual(["admin", "demo"]);
    expect(mode(home)).toBe(0o700);
    expect(mode(join(home, "config.json"))).toBe(0o600);
    expect(mode(join(home, "tokens", "demo"))).toBe(0o700);
    const files = readdirSync(join(home, "tokens", "demo"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(mode(join(home, "tokens", "demo", f))).toBe(0o600);
  });

  test("--context admin logs the root tenant's admin in; context use switches back", async () => {
    const other = s.newHome();
    const r = await s.cli(other, ["login", "--context", "admin"]);
    expect(r.code).toBe(0);
    expect(JSON.parse((await s.cli(other, ["context", "list", "--json"])).stdout).current).toBe("admin");
    expect((await s.cli(other, ["context", "use", "demo"])).code).toBe(0);
    expect(JSON.parse((await s.cli(other, ["context", "list", "--json"])).stdout).current).toBe("demo");
    const bad = await s.cli(other, ["context", "use", "nope"]);
    expect(bad.code).toBe(2);
    expect(oneErrorLine(bad.stderr)).toContain("no context named 'nope'");
  });

  test("the explicit form defines a context from flags", async () => {
    const other = s.newHome();
    const kms = s.services["sm-kms"]!;
    const r = await s.cli(other, [
      "login", "--context", "ci", "--issuer", `${s.authzUrl}/t/demo`, "--client-id", "demo-cli",
      "--client-secret-file", join(s.root, "demo", "demo-cli.secret"), "--ca-file", join(s.root, "identity-authz", "trust-bundle.pem"),
      "--service", `sm-kms=${kms.publicUrl}`,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const keys = await s.cli(other, ["kms", "key", "list", "--json"]);
    expect(keys.code).toBe(0);
  });

  test("a missing suite file is one line and exit 2", async () => {
    const r = await s.cli(s.newHome(), ["login", "--suite", join(s.root, "nope.json")]);
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain("no such file");
  });

  test("a wrong client secret is refused by the issuer: exit 1 with its code", async () => {
    const other = s.newHome();
    const secret = join(other, "wrong.secret");
    writeFileSync(secret, "not-the-secret\n");
    const r = await s.cli(other, [
      "login", "--context", "bad", "--issuer", `${s.authzUrl}/t/demo`, "--client-id", "demo-cli", "--client-secret-file", secret,
      "--ca-file", join(s.root, "identity-authz", "trust-bundle.pem"), "--service", `sm-kms=${s.services["sm-kms"]!.publicUrl}`,
    ]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: invalid_client: /);
  });
});

describe("kms", () => {
  test("key create, list, get by name", async () => {
    const c = await run(["kms", "key", "create", "notes", "--alg", "A256GCM", "--json"]);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    const key = JSON.parse(c.stdout) as { id: string; name: string; status: string };
    expect(key.name).toBe("notes");
    const list = await run(["kms", "key", "list"]);
    expect(list.stdout).toContain(key.id);
    const got = await run(["kms", "key", "get", "notes", "--json"]);
    expect(JSON.parse(got.stdout).id).toBe(key.id);
  });

  test("encrypt a file, decrypt it: the same bytes; stdin and stdout work too", async () => {
    const plain = crypto.getRandomValues(new Uint8Array(5000));
    const input = join(home, "secret.bin");
    writeFileSync(input, plain);
    const enc = await run(["kms", "encrypt", "notes", input, "--out", join(home, "secret.jwe"), "--encryption-context", "dept=ops"]);
    expect(enc.stderr).toBe("");
    expect(enc.code).toBe(0);
    expect(readFileSync(join(home, "secret.jwe"), "utf8").split(".").length).toBe(5);
    const dec = await run(["kms", "decrypt", "notes", join(home, "secret.jwe"), "--encryption-context", "dept=ops"]);
    expect(dec.code).toBe(0);
    expect(Buffer.from(dec.bytes).equals(Buffer.from(plain))).toBe(true);

    const piped = await run(["kms", "encrypt", "notes"], { stdin: "through a pipe" });
    expect(piped.code).toBe(0);
    const back = await run(["kms", "decrypt", "notes", "-"], { stdin: piped.stdout });
    expect(back.stdout).toBe("through a pipe");
  });

  test("the wrong encryption context is refused by the service: exit 1 with its code", async () => {
    const r = await run(["kms", "decrypt", "notes", join(home, "secret.jwe"), "--encryption-context", "dept=sales"]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: decryption_failed: /);
  });

  test("many files at once into --out-dir, and back", async () => {
    const names = ["a.txt", "b.txt", "c.txt"];
    for (const n of names) writeFileSync(join(home, n), `content of ${n}`);
    const enc = await run(["kms", "encrypt", "notes", ...names.map((n) => join(home, n)), "--out-dir", join(home, "enc")]);
    expect(enc.code).toBe(0);
    expect(readdirSync(join(home, "enc")).sort()).toEqual(names.map((n) => `${n}.jwe`));
    const dec = await run(["kms", "decrypt", "notes", ...names.map((n) => join(home, "enc", `${n}.jwe`)), "--out-dir", join(home, "dec")]);
    expect(dec.code).toBe(0);
    for (const n of names) expect(readFileSync(join(home, "dec", n), "utf8")).toBe(`content of ${n}`);
    const noDir = await run(["kms", "encrypt", "notes", join(home, "a.txt"), join(home, "b.txt")]);
    expect(noDir.code).toBe(2);
    expect(oneErrorLine(noDir.stderr)).toContain("--out-dir");
  });

  test("rewrap after rotation keeps the plaintext", async () => {
    expect((await run(["kms", "key", "rotate", "notes"])).code).toBe(0);
    const r = await run(["kms", "rewrap", "notes", join(home, "secret.jwe"), "--out", join(home, "rewrapped.jwe"), "--encryption-context", "dept=ops"]);
    expect(r.code).toBe(0);
    const header = JSON.parse(Buffer.from(readFileSync(join(home, "rewrapped.jwe"), "utf8").split(".")[0]!, "base64url").toString()) as { kid: string };
    expect(header.kid.endsWith(".v2")).toBe(true);
  });

  test("sign and verify, attached and detached; a tampered JWS is refused", async () => {
    expect((await run(["kms", "key", "create", "signer", "--alg", "ES256"])).code).toBe(0);
    writeFileSync(join(home, "doc.txt"), "signed document");
    expect((await run(["kms", "sign", "signer", join(home, "doc.txt"), "-o", join(home, "doc.jws")])).code).toBe(0);
    const ok = await run(["kms", "verify", "signer", join(home, "doc.jws")]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("valid");
    expect((await run(["kms", "sign", "signer", join(home, "doc.txt"), "--detached", "-o", join(home, "doc.sig")])).code).toBe(0);
    expect((await run(["kms", "verify", "signer", join(home, "doc.sig"), "--payload", join(home, "doc.txt")])).code).toBe(0);
    writeFileSync(join(home, "other.txt"), "another document");
    const bad = await run(["kms", "verify", "signer", join(home, "doc.sig"), "--payload", join(home, "other.txt")]);
    expect(bad.code).toBe(1);
    expect(oneErrorLine(bad.stderr)).toMatch(/^error: signature_invalid: /);
  });

  test("mac and mac --verify; data-key writes the plaintext key 0600", async () => {
    expect((await run(["kms", "key", "create", "hmac", "--alg", "HS256"])).code).toBe(0);
    writeFileSync(join(home, "m.bin"), "message");
    expect((await run(["kms", "mac", "hmac", join(home, "m.bin"), "-o", join(home, "m.mac")])).code).toBe(0);
    expect((await run(["kms", "mac", "hmac", join(home, "m.bin"), "--verify", join(home, "m.mac")])).code).toBe(0);
    const dk = await run(["kms", "data-key", "notes", "--out", join(home, "dek.jwe"), "--plaintext-out", join(home, "dek.bin")]);
    expect(dk.code).toBe(0);
    expect(mode(join(home, "dek.bin"))).toBe(0o600);
    expect(readFileSync(join(home, "dek.bin")).length).toBe(32);
  });

  test("key disable refuses encryption with the service's code; enable, delete, restore", async () => {
    expect((await run(["kms", "key", "disable", "notes"])).code).toBe(0);
    const r = await run(["kms", "encrypt", "notes"], { stdin: "x" });
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: key_disabled: /);
    expect((await run(["kms", "key", "enable", "notes"])).code).toBe(0);
    const del = await run(["kms", "key", "delete", "notes", "--waiting-days", "7", "--json"]);
    expect(JSON.parse(del.stdout).status).toBe("pending_deletion");
    expect(JSON.parse((await run(["kms", "key", "restore", "notes", "--json"])).stdout).status).toBe("disabled");
  });
});

describe("tokens", () => {
  test("a cached token is reused; one near its expiry is fetched again", async () => {
    const file = join(home, "tokens", "demo", "sm-kms.json");
    const before = JSON.parse(readFileSync(file, "utf8")) as { access_token: string; expires_at: number };
    expect((await run(["kms", "key", "list"])).code).toBe(0);
    expect(JSON.parse(readFileSync(file, "utf8")).access_token).toBe(before.access_token);
    // 20 s left: inside the 30 s margin, so the next command fetches a new token.
    writeFileSync(file, JSON.stringify({ ...before, expires_at: Math.floor(Date.now() / 1000) + 20 }));
    expect((await run(["kms", "key", "list"])).code).toBe(0);
    const after = JSON.parse(readFileSync(file, "utf8")) as { access_token: string };
    expect(after.access_token).not.toBe(before.access_token);
    expect(mode(file)).toBe(0o600);
  });

  test("a cached token the service refuses is replaced once, then the command succeeds", async () => {
    const file = join(home, "tokens", "demo", "sm-kms.json");
    writeFileSync(file, JSON.stringify({ access_token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", expires_at: Math.floor(Date.now() / 1000) + 3600 }), { mode: 0o600 });
    const r = await run(["kms", "key", "list"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});

describe("usage errors and refusals", () => {
  test("an unknown flag: exit 2, one line", async () => {
    const r = await run(["kms", "key", "list", "--bogus"]);
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain("--bogus");
  });

  test("a missing input file: exit 2, one line", async () => {
    const r = await run(["kms", "encrypt", "signer", join(home, "does-not-exist.txt")]);
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain("no such file");
  });

  test("an unknown key name: exit 2, one line", async () => {
    const r = await run(["kms", "encrypt", "no-such-key"], { stdin: "x" });
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain("no key named 'no-such-key'");
  });

  test("input the service's schema refuses is caught before sending: exit 2", async () => {
    const r = await run(["kms", "key", "create", "bad name!", "--alg", "A256GCM"]);
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain("invalid input (name)");
  });

  test("a refused request: exit 1 with the server's code", async () => {
    const r = await run(["kms", "key", "get", "00000000-0000-4000-8000-000000000000"]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: not_found: /);
  });

  test("a service that is down: exit 1, one line naming it", async () => {
    const other = s.newHome();
    const dead = `https://127.0.0.1:${await (await import("../identity/support/authz.ts")).freePort()}`;
    expect(
      (
        await s.cli(other, [
          "login", "--context", "down", "--issuer", `${s.authzUrl}/t/demo`, "--client-id", "demo-cli",
          "--client-secret-file", join(s.root, "demo", "demo-cli.secret"), "--ca-file", join(s.root, "identity-authz", "trust-bundle.pem"), "--service", `sm-kms=${dead}`,
        ])
      ).code,
    ).toBe(0);
    const r = await s.cli(other, ["kms", "key", "list"]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toContain(`cannot reach sm-kms at ${dead}: connection refused`);
  });

  test("no login yet: exit 2, one line", async () => {
    const r = await s.cli(s.newHome(), ["kms", "key", "list"], { env: { CRYPTOUTIL_SUITE: "" } });
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain("run cryptoutil login");
  });
});
