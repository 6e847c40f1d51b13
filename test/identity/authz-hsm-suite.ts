/**
 * identity-authz with an HSM (SoftHSM2, Debian package softhsm2): ES256 signing keys are
 * generated inside the token as non-extractable objects, only their label is stored, tokens
 * verify with jose against the published JWKS, and a restart finds the same key again.
 * Run embedded by authz-hsm.test.ts and on PostgreSQL by authz-postgres.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify } from "jose";
import type { SoftHsm, SoftHsmToken } from "../support/softhsm.ts";
import type { TestEngine } from "../support/engine.ts";
import { basic, startAuthz, type TestAuthz } from "./support/authz.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { startTestService } from "../support/service.ts";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { AppError } from "../../src/service/errors.ts";

/** Registers the HSM tests on services whose databases are on `engine`, with keys in `softhsm`'s tokens. */
export function authzHsmSuite(engine: TestEngine, softhsm: SoftHsm): void {
  let token: SoftHsmToken;
  let fresh: SoftHsmToken;
  let authz: TestAuthz;
  const hsmConfig = () => ({ module: softhsm.modulePath, token_label: token.label, pin_file: token.pinFile });

  beforeAll(async () => {
    token = softhsm.createToken("authz-keys");
    // Tokens must exist before the module initializes; this one is never logged in.
    fresh = softhsm.createToken("authz-other");
    authz = await startAuthz({ engine, overrides: (c) => (c.hsm = hsmConfig()) });
  });

  afterAll(async () => {
    await authz?.stop();
    softhsm.cleanup();
  });

  async function grant(t: TestAuthz): Promise<string> {
    await t.fetch(`${t.publicUrl}/t/root/.well-known/openid-configuration`); // waits for the bootstrap (it writes the secret)
    const secret = (await Bun.file(`${t.root}/identity-authz/bootstrap-admin.secret`).text()).trim();
    const r = await t.fetch(`${t.publicUrl}/t/root/token`, {
      method: "POST",
      headers: { authorization: basic("bootstrap-admin", secret), "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials",
    });
    expect(r.status).toBe(200);
    return ((await r.json()) as { access_token: string }).access_token;
  }

  describe("signing keys in the HSM", () => {
    test("tokens are signed in the token and verify against the JWKS", async () => {
      const at = await grant(authz);
      const jwks = createRemoteJWKSet(new URL(`${authz.publicUrl}/t/root/jwks`), {
        [customFetch]: (url, init) => fetch(url, { ...init, tls: { ca: authz.ca } } as RequestInit),
      });
      const { payload } = await jwtVerify(at, jwks, { issuer: `${authz.publicUrl}/t/root`, typ: "at+jwt" });
      expect(payload.client_id).toBe("bootstrap-admin");
      const signer = await Authz.of(authz.ctx).keys.signer("root");
      expect(signer.location).toBe("hsm");
      expect(decodeProtectedHeader(at).kid).toBe(signer.kid);
    });

    test("the key is non-extractable in the token and the database holds only its label", async () => {
      const signer = await Authz.of(authz.ctx).keys.signer("root");
      const key = await authz.ctx.hsm!.findKey(`identity-authz/root/${signer.kid}`);
      const protection = await authz.ctx.hsm!.keyProtection(key);
      expect(protection).toMatchObject({ sensitive: true, extractable: false, neverExtractable: true, persistent: true });
      const row = await authz.ctx.db.selectFrom("signing_keys").selectAll().where("kid", "=", signer.kid).executeTakeFirstOrThrow();
      const stored = JSON.parse(new TextDecoder().decode(await authz.ctx.protector.decrypt(row.private_jwk, `identity-authz/signing_keys/root/${signer.kid}`)));
      expect(stored).toEqual({ hsm: `identity-authz/root/${signer.kid}` });
    });

    test("a restart finds the same key in the token", async () => {
      const kidBefore = (await Authz.of(authz.ctx).keys.signer("root")).kid;
      const root = authz.root;
      await authz.stop();
      authz = await startAuthz({ engine, root, overrides: (c) => (c.hsm = hsmConfig()) });
      const at = await grant(authz);
      expect(decodeProtectedHeader(at).kid).toBe(kidBefore);
    });

    test("a wrong PIN is refused even for a token this process already logged in", async () => {
      const wrongPin = softhsm.pinFile("wrong-again", "not-the-pin");
      let error: unknown;
      try {
        const s = await startTestService(identityAuthz, { engine, overrides: (c) => (c.hsm = { ...hsmConfig(), pin_file: wrongPin }) });
        await s.stop();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).details).toEqual({ reason: "pin_incorrect" });
    });

    test("a wrong PIN stops the start with a clear error", async () => {
      // A token of its own: the running service keeps its token logged in for this process.
      const wrongPin = softhsm.pinFile("wrong", "not-the-pin");
      let error: unknown;
      try {
        const s = await startTestService(identityAuthz, {
          engine,
          overrides: (c) => (c.hsm = { module: softhsm.modulePath, token_label: fresh.label, pin_file: wrongPin }),
        });
        await s.stop();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).details).toEqual({ reason: "pin_incorrect" });
    });
  });
}
