/**
 * The JWS checks of ACME requests signed by an account (`kid`), which run on a node:crypto key
 * for ES256, ES384, RS256, PS256 and EdDSA: each alg verifies, and every way a signature, its
 * encoding, the alg or the key can be wrong is refused, as jose refuses it. The nonce check
 * before them is the real store's in the other ACME tests; here every nonce counts as fresh.
 */
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { exportJWK, FlattenedSign, generateKeyPair, type JWK } from "jose";
import { verifyRequest } from "../../apps/pki-ca/acme/jws.ts";
import { AcmeProblem } from "../../apps/pki-ca/acme/problem.ts";
import type { NonceStore } from "../../apps/pki-ca/acme/nonces.ts";

const URL_ = "https://ca.example.test/acme/t/order/abc";
const KID = "https://ca.example.test/acme/t/acct/xyz";
const fresh = { consume: async () => true } as unknown as NonceStore;

type Alg = "ES256" | "ES384" | "RS256" | "PS256" | "EdDSA";
async function keys(alg: Alg) {
  const opts = alg === "EdDSA" ? { crv: "Ed25519", extractable: true } : alg.startsWith("ES") ? { extractable: true } : { modulusLength: 2048, extractable: true };
  const k = (await generateKeyPair(alg, opts)) as CryptoKeyPair;
  return { privateKey: k.privateKey, jwk: await exportJWK(k.publicKey) };
}

async function signed(key: CryptoKey, alg: string, payload: unknown, extra: Record<string, unknown> = {}) {
  const s = await new FlattenedSign(new TextEncoder().encode(payload === "" ? "" : JSON.stringify(payload)))
    .setProtectedHeader({ alg, nonce: "n", url: URL_, kid: KID, ...extra } as never)
    .sign(key, extra.crit ? { crit: Object.fromEntries((extra.crit as string[]).map((n) => [n, true])) } : undefined);
  return { protected: s.protected!, payload: s.payload, signature: s.signature };
}

function verify(body: unknown, accountJwk: JWK) {
  return verifyRequest(body, { url: URL_, nonces: fresh, accept: "kid", keyOf: async () => JSON.stringify(accountJwk) });
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (x) => x,
  );
  expect(e).toBeInstanceOf(AcmeProblem);
  return (e as AcmeProblem).type;
}

/** The signature's bytes changed at `i` (base64url in, base64url out). */
function flipped(sig: string, i = 5): string {
  const b = Buffer.from(sig, "base64url");
  b[i]! ^= 1;
  return b.toString("base64url");
}

describe("ACME JWS by an account key", () => {
  for (const alg of ["ES256", "ES384", "RS256", "PS256", "EdDSA"] as Alg[]) {
    test(`${alg}: verifies, and a changed signature, payload or encoding is refused`, async () => {
      const k = await keys(alg);
      const body = await signed(k.privateKey, alg, { hello: alg });
      const ok = await verify(body, k.jwk);
      expect(ok.payload).toEqual({ hello: alg });
      expect(ok.postAsGet).toBe(false);
      expect(ok.kid).toBe(KID);
      // POST-as-GET: the empty payload.
      expect((await verify(await signed(k.privateKey, alg, ""), k.jwk)).postAsGet).toBe(true);

      expect(await refusal(verify({ ...body, signature: flipped(body.signature) }, k.jwk))).toBe("malformed");
      const other = await signed(k.privateKey, alg, { hello: "other" });
      expect(await refusal(verify({ ...body, payload: other.payload }, k.jwk))).toBe("malformed");
      // Characters outside base64url are not skipped over.
      expect(await refusal(verify({ ...body, signature: `${body.signature.slice(0, 10)}+${body.signature.slice(10)}` }, k.jwk))).toBe("malformed");
      expect(await refusal(verify({ ...body, payload: `${body.payload}.` }, k.jwk))).toBe("malformed");
      expect(await refusal(verify({ ...body, signature: "" }, k.jwk))).toBe("malformed");
      // Another account's key.
      expect(await refusal(verify(body, (await keys(alg)).jwk))).toBe("malformed");
    });
  }

  test("ECDSA: a signature in DER or one byte short is refused; ES384 over a P-256 key is refused", async () => {
    const k = await keys("ES256");
    const body = await signed(k.privateKey, "ES256", {});
    const rs = Buffer.from(body.signature, "base64url");
    expect(await refusal(verify({ ...body, signature: rs.subarray(0, 63).toString("base64url") }, k.jwk))).toBe("malformed");
    const int = (b: Buffer) => (b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
    const [r, s] = [int(rs.subarray(0, 32)), int(rs.subarray(32))];
    const der = Buffer.concat([Buffer.from([0x30, r.length + s.length + 4, 2, r.length]), r, Buffer.from([2, s.length]), s]);
    expect(await refusal(verify({ ...body, signature: der.toString("base64url") }, k.jwk))).toBe("malformed");
    // The header's alg does not fit the account's P-256 key.
    const p384 = await keys("ES384");
    const wrongAlg = await signed(p384.privateKey, "ES384", {});
    expect(await refusal(verify(wrongAlg, k.jwk))).toBe("badSignatureAlgorithm");
  });

  test("RSA: RS256 and PS256 signatures are not interchangeable; a key under 2048 bits is refused", async () => {
    const k = await keys("RS256");
    const rs = await signed(k.privateKey, "RS256", {});
    const header = JSON.parse(Buffer.from(rs.protected, "base64url").toString()) as Record<string, unknown>;
    const asPs = Buffer.from(JSON.stringify({ ...header, alg: "PS256" })).toString("base64url");
    expect(await refusal(verify({ ...rs, protected: asPs }, k.jwk))).toBe("malformed");
    // A 1024-bit key as an account's (newAccount refuses one; a stored one must not verify either).
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
    const sig = await signed(small.privateKey as unknown as CryptoKey, "RS256", {}).catch(() => undefined);
    const smallJwk = small.publicKey.export({ format: "jwk" }) as JWK;
    if (sig) expect(await refusal(verify(sig, smallJwk))).toMatch(/malformed|badSignatureAlgorithm/);
    expect(await refusal(verify(rs, smallJwk))).toMatch(/malformed|badSignatureAlgorithm/);
  });

  test("a crit header naming an extension is refused (none is understood)", async () => {
    const k = await keys("ES256");
    const body = await signed(k.privateKey, "ES256", {}, { "x-ext": 1, crit: ["x-ext"] });
    expect(await refusal(verify(body, k.jwk))).toBe("malformed");
  });
});
