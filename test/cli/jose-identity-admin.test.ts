/**
 * The CLI's jose, identity and admin commands against identity-authz, identity-idp and
 * jose-ja over real HTTPS: a JWT issued by the CLI verified with the jose library against the
 * service's JWKS, JWS and JWE round trips, tenants, clients and users, a service's admin
 * server, and the bash completion script.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLocalJWKSet, jwtVerify } from "jose";
import { oneErrorLine, startCliSuite, type CliSuite } from "./support/suite.ts";

setDefaultTimeout(60_000);
let s: CliSuite;
let home: string;

beforeAll(async () => {
  s = await startCliSuite(["jose-ja", "identity-idp"]);
  home = await s.loggedInHome();
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

const run = (args: string[], opts?: Parameters<CliSuite["cli"]>[2]) => s.cli(home, args, opts);
const f = (name: string) => join(home, name);

describe("jose", () => {
  test("jwt sign, then verify with the jose library against the service's public JWKS", async () => {
    expect((await run(["jose", "jwk", "create", "tokens", "--alg", "ES256"])).code).toBe(0);
    const signed = await run(["jose", "jwt", "sign", "tokens", "--sub", "alice", "--aud", "api", "--iss", "https://issuer.example", "--claim", "role=admin", "--ttl", "15m"]);
    expect(signed.stderr).toBe("");
    expect(signed.code).toBe(0);
    const jwt = signed.stdout.trim();
    const jose = s.services["jose-ja"]!;
    const jwks = await jose.call("/t/demo/jwks");
    expect(jwks.status).toBe(200);
    const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet((await jwks.json()) as never), { issuer: "https://issuer.example", audience: "api" });
    expect(payload.sub).toBe("alice");
    expect(payload.role).toBe("admin");
    expect(protectedHeader.alg).toBe("ES256");

    writeFileSync(f("token.jwt"), jwt);
    const ok = await run(["jose", "jwt", "verify", f("token.jwt"), "--aud", "api", "--json"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).claims.sub).toBe("alice");
    const wrongAud = await run(["jose", "jwt", "verify", f("token.jwt"), "--aud", "other"]);
    expect(wrongAud.code).toBe(1);
    expect(oneErrorLine(wrongAud.stderr)).toMatch(/^error: jwt_claim_invalid: /);
  });

  test("jws sign and verify; the verified payload comes back", async () => {
    writeFileSync(f("doc.json"), '{"hello":"world"}');
    expect((await run(["jose", "jws", "sign", "tokens", f("doc.json"), "-o", f("doc.jws")])).code).toBe(0);
    const v = await run(["jose", "jws", "verify", f("doc.jws"), "--out", f("doc.out")]);
    expect(v.code).toBe(0);
    expect(readFileSync(f("doc.out"), "utf8")).toBe('{"hello":"world"}');
  });

  test("jwe encrypt and decrypt; jwk list, get, rotate; jwks", async () => {
    expect((await run(["jose", "jwk", "create", "wrap", "--alg", "RSA-OAEP-256"])).code).toBe(0);
    const enc = await run(["jose", "jwe", "encrypt", "wrap"], { stdin: "a secret" });
    expect(enc.code).toBe(0);
    const dec = await run(["jose", "jwe", "decrypt", "wrap"], { stdin: enc.stdout });
    expect(dec.stdout).toBe("a secret");
    const list = await run(["jose", "jwk", "list", "--json"]);
    expect((JSON.parse(list.stdout).items as Array<{ name: string }>).map((k) => k.name).sort()).toEqual(["tokens", "wrap"]);
    expect(JSON.parse((await run(["jose", "jwk", "rotate", "tokens", "--json"])).stdout).current_version).toBe(2);
    const jwks = await run(["jose", "jwks", "tokens"]);
    expect((JSON.parse(jwks.stdout).keys as unknown[]).length).toBe(2);
    const del = await run(["jose", "jwk", "delete", "wrap", "--json"]);
    expect(JSON.parse(del.stdout).status).toBe("pending_deletion");
  });
});

describe("identity", () => {
  test("user create with a password file, list, get by username, mfa reset", async () => {
    writeFileSync(f("alice.pw"), "cobalt harbour willow 311\n");
    const c = await run(["identity", "user", "create", "alice", "--password-file", f("alice.pw"), "--name", "Alice", "--email", "alice@example.com", "--json"]);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout).has_password).toBe(true);
    const list = await run(["identity", "user", "list"]);
    expect(list.stdout).toContain("alice");
    expect(JSON.parse((await run(["identity", "user", "get", "alice", "--json"])).stdout).email).toBe("alice@example.com");
    expect((await run(["identity", "user", "mfa", "reset", "alice"])).code).toBe(0);
    const weak = await run(["identity", "user", "create", "bob", "--password-file", f("bob.pw")]);
    expect(weak.code).toBe(2);
    expect(oneErrorLine(weak.stderr)).toContain("no such file");
    // Delete: the user and everything kept for them go; a second delete finds nobody.
    expect((await run(["identity", "user", "create", "carol"])).code).toBe(0);
    const del = await run(["identity", "user", "delete", "carol"]);
    expect(del.stdout).toContain("deleted user carol");
    expect(del.code).toBe(0);
    expect((await run(["identity", "user", "list"])).stdout).not.toContain("carol");
    const again = await run(["identity", "user", "get", "carol"]);
    expect(again.code).not.toBe(0);
  });

  test("client create writes the secret 0600; list, get, delete; the new client can log in", async () => {
    const c = await run(["identity", "client", "create", "ci", "--client-id", "ci-bot", "--scope", "jose:verify", "--audience", "jose-ja", "--secret-out", f("ci.secret")]);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    expect(statSync(f("ci.secret")).mode & 0o777).toBe(0o600);
    expect((await run(["identity", "client", "list"])).stdout).toContain("ci-bot");
    expect(JSON.parse((await run(["identity", "client", "get", "ci-bot", "--json"])).stdout).audiences).toEqual(["jose-ja"]);
    const other = s.newHome();
    const login = await s.cli(other, [
      "login", "--context", "ci", "--issuer", `${s.authzUrl}/t/demo`, "--client-id", "ci-bot", "--client-secret-file", f("ci.secret"),
      "--ca-file", join(s.root, "identity-authz", "trust-bundle.pem"), "--service", `jose-ja=${s.services["jose-ja"]!.publicUrl}`,
    ]);
    expect(login.code).toBe(0);
    // jose:verify only: listing keys needs jose:admin.
    const refused = await s.cli(other, ["jose", "jwk", "list"]);
    expect(refused.code).toBe(1);
    expect(oneErrorLine(refused.stderr)).toMatch(/^error: insufficient_scope: /);
    expect((await run(["identity", "client", "delete", "ci-bot"])).code).toBe(0);
  });

  test("tenants with the admin context; a tenant admin of demo may not create tenants", async () => {
    const other = s.newHome();
    expect((await s.cli(other, ["login", "--context", "admin"])).code).toBe(0);
    const t = await s.cli(other, ["identity", "tenant", "create", "acme", "--display-name", "Acme"]);
    expect(t.stderr).toBe("");
    expect(t.code).toBe(0);
    expect((await s.cli(other, ["identity", "tenant", "list"])).stdout).toContain("acme");
    expect(JSON.parse((await s.cli(other, ["identity", "tenant", "get", "acme", "--json"])).stdout).display_name).toBe("Acme");
    const denied = await run(["identity", "tenant", "create", "evil"]);
    expect(denied.code).toBe(1);
    expect(oneErrorLine(denied.stderr)).toMatch(/^error: forbidden: /);
    // Delete: a tenant admin of demo may not; the root admin may, with the tenant's clients.
    expect((await s.cli(other, ["identity", "client", "create", "acme-ci", "--tenant", "acme", "--client-id", "acme-ci", "--scope", "jose:verify", "--audience", "jose-ja", "--secret-out", f("acme.secret")])).code).toBe(0);
    expect((await run(["identity", "tenant", "delete", "acme"])).code).toBe(1);
    expect((await s.cli(other, ["identity", "tenant", "delete", "root"])).code).toBe(1);
    const del = await s.cli(other, ["identity", "tenant", "delete", "acme"]);
    expect(del.stderr).toBe("");
    expect(del.code).toBe(0);
    expect((await s.cli(other, ["identity", "tenant", "list"])).stdout).not.toContain("acme");
    const gone = await s.cli(other, ["identity", "client", "get", "acme-ci", "--tenant", "acme"]);
    expect(oneErrorLine(gone.stderr)).toMatch(/^error: not_found: /);
  });
});

describe("admin", () => {
  test("health of a service through its admin URL; rotate a barrier layer with the admin token", async () => {
    const h = await run(["admin", "health", "--service", "jose-ja", "--json"]);
    expect(h.stderr).toBe("");
    expect(h.code).toBe(0);
    expect(JSON.parse(h.stdout).status).toBe("ready");
    const r = await run(["admin", "rotate", "content", "--service", "jose-ja"]);
    expect(r.code).toBe(0);
    writeFileSync(f("wrong.token"), "not-the-token\n");
    const bad = await run(["admin", "rotate", "content", "--service", "jose-ja", "--admin-token-file", f("wrong.token")]);
    expect(bad.code).toBe(1);
    expect(oneErrorLine(bad.stderr)).toMatch(/^error: unauthenticated: /);
    const unknown = await run(["admin", "health", "--service", "nope"]);
    expect(unknown.code).toBe(2);
    expect(oneErrorLine(unknown.stderr)).toContain("no service 'nope'");
  });

  test("dead letters of a service's notifications: listed, and a missing one named", async () => {
    const list = await run(["admin", "dead-letters", "list", "--service", "jose-ja", "--tenant", "demo", "--json"]);
    expect(list.stderr).toBe("");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual({ dead_letters: [], next: null });
    const missing = await run(["admin", "dead-letters", "retry", crypto.randomUUID(), "--service", "jose-ja"]);
    expect(missing.code).toBe(1);
    expect(oneErrorLine(missing.stderr)).toMatch(/^error: not_found: /);
    const bad = await run(["admin", "dead-letters", "show", "not-an-id", "--service", "jose-ja"]);
    expect(bad.code).toBe(2);
  });
});

describe("completion", () => {
  test("bash completion completes subcommands from the command tree", async () => {
    const r = await run(["completion", "bash"]);
    expect(r.code).toBe(0);
    writeFileSync(f("completion.sh"), r.stdout);
    const p = Bun.spawnSync(["bash", "-c", `source ${f("completion.sh")}; COMP_WORDS=(cryptoutil --context demo jose jw); COMP_CWORD=4; _cryptoutil; echo "\${COMPREPLY[@]}"`]);
    expect(p.stdout.toString().trim().split(" ").sort()).toEqual(["jwe", "jwk", "jwks", "jws", "jwt"]);
  });

  test("every command has --help with an example", async () => {
    for (const path of [["kms", "encrypt"], ["jose", "jwt", "sign"], ["ca", "certificate"], ["identity", "user", "create"], ["admin", "rotate"], ["login"]]) {
      const r = await run([...path, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("Examples:");
      expect(r.stdout).toContain("$ cryptoutil ");
    }
  });
});
