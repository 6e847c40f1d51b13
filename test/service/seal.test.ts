/**
 * Sealed means what it means in Vault: after `POST /admin/v1/barrier/seal` every operation of
 * every service is refused with 503 `sealed` — also those whose keys were already in memory
 * (a loaded CA, cached key versions, signing keys) — until an operator unseals; then they all
 * work again. Driven through the CLI and plain HTTPS, as an operator would.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCliSuite, type CliSuite } from "../cli/support/suite.ts";
import { clientToken } from "../../scripts/suite/demo.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";

setDefaultTimeout(60_000);
let s: CliSuite;
let home: string;
let work: string;

beforeAll(async () => {
  s = await startCliSuite(["sm-kms", "jose-ja", "pki-ca", "identity-idp"]);
  home = await s.loggedInHome();
  work = s.newHome();
  writeFileSync(join(work, "msg.txt"), "sealed means sealed\n");
  const ok = async (args: string[]) => {
    const r = await s.cli(home, args, { cwd: work });
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  };
  // Use every key once first, so each service holds key material in memory when it is sealed.
  await ok(["kms", "key", "create", "enc", "--alg", "A256GCM"]);
  await ok(["kms", "key", "create", "sig", "--alg", "ES256"]);
  await ok(["kms", "encrypt", "enc", "msg.txt", "-o", "msg.jwe"]);
  await ok(["kms", "sign", "sig", "msg.txt", "-o", "msg.jws"]);
  await ok(["jose", "jwk", "create", "tok", "--alg", "ES256"]);
  await ok(["jose", "jwt", "sign", "tok", "--sub", "a", "--ttl", "5m"]);
  await ok(["ca", "certificate", "svc.example.com", "svc.crt", "svc.key", "--san", "svc.example.com"]);
  await ok(["ca", "ocsp", "check", "svc.crt"]);
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

/** What each service refuses while sealed (and does again after unseal), as CLI commands. */
const OPERATIONS: Record<string, string[][]> = {
  "sm-kms": [
    ["kms", "encrypt", "enc", "msg.txt"],
    ["kms", "decrypt", "enc", "msg.jwe"],
    ["kms", "sign", "sig", "msg.txt"],
    ["kms", "verify", "sig", "msg.jws"],
    ["kms", "key", "list"],
  ],
  "jose-ja": [
    ["jose", "jwt", "sign", "tok", "--sub", "b", "--ttl", "5m"],
    ["jose", "jwks"],
  ],
  "pki-ca": [
    ["ca", "certificate", "svc2.example.com", "svc2.crt", "svc2.key", "--san", "svc2.example.com", "--force"],
    ["ca", "ocsp", "check", "svc.crt"],
    ["ca", "crl", "get"],
  ],
  "identity-idp": [["identity", "user", "list"]],
};

const admin = (service: string, verb: "seal" | "unseal") => s.cli(home, ["admin", verb, "--service", service], { cwd: work });

for (const [service, ops] of Object.entries(OPERATIONS)) {
  describe(service, () => {
    test("sealed: every operation is refused with 503 sealed; unsealed: each works again", async () => {
      const caBefore = service === "pki-ca" ? await pkiCaOf(s.services["pki-ca"]!.ctx) : undefined;
      expect((await admin(service, "seal")).code).toBe(0);
      for (const op of ops) {
        const r = await s.cli(home, op, { cwd: work });
        expect({ op: op.join(" "), code: r.code }).toEqual({ op: op.join(" "), code: 1 });
        expect(r.stderr).toContain("sealed");
      }
      // The same over plain HTTPS: a 503 with the error model and Retry-After.
      const res = await s.services[service]!.call("/service/api/v1/anything", { headers: { authorization: "Bearer x" } });
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("5");
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("sealed");

      expect((await admin(service, "unseal")).code).toBe(0);
      for (const op of ops) {
        const r = await s.cli(home, op, { cwd: work });
        expect({ op: op.join(" "), code: r.code, stderr: r.stderr }).toEqual({ op: op.join(" "), code: 0, stderr: expect.any(String) });
      }
      // The CA loaded before the seal was dropped with its keys; unseal loaded a new one.
      if (caBefore) expect(await pkiCaOf(s.services["pki-ca"]!.ctx)).not.toBe(caBefore);
    });
  });
}

test("pki-ca's anonymous OCSP, CRL and TSA endpoints answer 503 sealed too", async () => {
  const ca = s.services["pki-ca"]!;
  expect((await admin("pki-ca", "seal")).code).toBe(0);
  try {
    for (const [path, init] of [
      ["/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: new Uint8Array([0x30, 0]) }],
      ["/pki/tsa", { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: new Uint8Array([0x30, 0]) }],
      ["/pki/crl/issuing-p-256.crl", {}],
    ] as const) {
      const res = await ca.call(path, init as RequestInit);
      expect({ path, status: res.status }).toEqual({ path, status: 503 });
    }
  } finally {
    expect((await admin("pki-ca", "unseal")).code).toBe(0);
  }
  expect((await ca.call("/pki/crl/issuing-p-256.crl")).status).toBe(200);
});

test("identity-authz: a sealed issuer grants no token; unsealed, it does again", async () => {
  const secret = readFileSync(join(s.root, "demo", "demo-cli.secret"), "utf8").trim();
  const issuer = `${s.authzUrl}/t/demo`;
  expect((await admin("identity-authz", "seal")).code).toBe(0);
  try {
    await expect(clientToken(s.ca, issuer, "demo-cli", secret, "sm-kms")).rejects.toThrow(/503/);
  } finally {
    expect((await admin("identity-authz", "unseal")).code).toBe(0);
  }
  expect(await clientToken(s.ca, issuer, "demo-cli", secret, "sm-kms")).toMatch(/^ey/);
});
