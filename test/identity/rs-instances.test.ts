/**
 * DPoP replay across instances: two identity-rs instances behind one public URL
 * (`server.public_url`) on one database, an embedded file and a PostgreSQL database (Debian
 * package postgresql). A proof accepted by one is refused by the other, because spent proof
 * ids live in the shared database, not in a process. The proof's `htu` must name the
 * configured public URL: one naming an instance's own listener address is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from "jose";
import { join } from "node:path";
import { identityRs } from "../../apps/identity-rs/service.ts";
import { accessTokenHash } from "../../src/auth/dpop.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { startPostgresEngine } from "../support/engine.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, tempDir, type TestService } from "../support/service.ts";
import { freePort } from "./support/authz.ts";

const PUBLIC_URL = "https://rs.example.test";
const engine = await startPostgresEngine();
afterAll(() => engine?.server.stop());

const setups: Array<[string, (() => Promise<(c: ServiceConfig) => void>) | undefined]> = [
  ["one embedded database file", async () => {
    const file = join(tempDir("cryptoutil-rs-shared-"), "shared.db");
    return (c) => void (c.database.url = `file:${file}`);
  }],
  ["one PostgreSQL database", engine && (async () => {
    const url = await engine.server.createDatabase("rs_instances");
    return (c) => Object.assign(c.database, { url, password_file: engine.server.passwordFile, pool_size: 4 });
  })],
];

for (const [where, setup] of setups) {
  describe(`two identity-rs instances on ${where}`, () => {
    if (!setup) return; // startPostgresEngine fails under CI=true when PostgreSQL is missing
    let issuer: TestIssuer;
    let a: TestService;
    let b: TestService;
    let keys: CryptoKeyPair;
    let token: string;
    /** The address each instance listens on (its public URL is the shared PUBLIC_URL). */
    const listeners = new Map<TestService, string>();

    beforeAll(async () => {
      issuer = await startTestIssuer({ audience: "identity-rs" });
      const root = tempDir("cryptoutil-rs-instances-");
      const database = await setup();
      const instance = async (name: string) => {
        const port = await freePort();
        const svc = await startTestService(identityRs, {
          issuer,
          root,
          overrides: (c) => {
            quiet(c);
            c.data.dir = join(root, name);
            database(c);
            c.server.port = port;
            c.server.public_url = PUBLIC_URL;
          },
        });
        listeners.set(svc, `https://127.0.0.1:${port}`);
        return svc;
      };
      a = await instance("a");
      b = await instance("b");
      keys = await generateKeyPair("ES256");
      const jkt = await calculateJwkThumbprint(await exportJWK(keys.publicKey));
      token = await issuer.mint({ tenant: "tenant-a", scope: "notes:read", cnf: { jkt } });
    });

    afterAll(async () => {
      await a?.stop();
      await b?.stop();
      await issuer?.stop();
    });

    const proof = async (htu: string) =>
      new SignJWT({ htm: "GET", htu, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ath: accessTokenHash(token) })
        .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(keys.publicKey) })
        .sign(keys.privateKey);

    const profile = (svc: TestService, dpop: string) =>
      fetch(`${listeners.get(svc)}/service/api/v1/profile`, { headers: { authorization: `DPoP ${token}`, dpop }, tls: { ca: svc.ca } } as RequestInit);

    test("a proof spent at one instance is refused at the other", async () => {
      const p = await proof(`${PUBLIC_URL}/service/api/v1/profile`);
      const first = await profile(a, p);
      expect(first.status).toBe(200);
      expect(((await first.json()) as { binding: string }).binding).toBe("dpop");
      const again = await profile(b, p);
      expect(again.status).toBe(401);
      expect(((await again.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "invalid_dpop_proof", message: "the DPoP proof was already used" });
      // A fresh proof works at the other instance: it is the replay that was refused.
      expect((await profile(b, await proof(`${PUBLIC_URL}/service/api/v1/profile`))).status).toBe(200);
    });

    test("htu is compared with the configured public URL, not with the address the request reached", async () => {
      const res = await profile(a, await proof(`${listeners.get(a)}/service/api/v1/profile`));
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe("htu does not match the request URL");
    });
  });
}
