/** The keyring files in src/ (import checks, shared JOSE ops, sweep, the HSM JWE parts and token objects) run unchanged on Deno. */
import { expect, test } from "bun:test";
import { moduleUrl, runOnDeno } from "../support/deno.ts";

test("src/keyring's import and jose-ops run on Deno", async () => {
  const src = (f: string) => moduleUrl(`src/keyring/${f}`);
  // The keyring's store reaches libSQL's native client, hence --allow-ffi and --allow-sys.
  const result = await runOnDeno(["--allow-read", "--allow-env", "--allow-ffi", "--allow-sys"], () => `import { normalizeImportedJwk } from ${src("import.ts")};
import { signatureInvalid, versionFromKid } from ${src("jose-ops.ts")};
import ${src("sweeper.ts")};
import { concatKdf, encryptContent, decryptContent, parseJwe } from ${src("jwe-parts.ts")};
import { tokenSpecOf } from ${src("hsm.ts")};
import { encodeBase64url } from ${src("base64url.ts")};
import { TokenKeyObjects } from ${moduleUrl("src/crypto/pkcs11/keyring-objects.ts")};
const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]) as CryptoKeyPair;
const r = await normalizeImportedJwk("ES256", { ...(await crypto.subtle.exportKey("jwk", pair.privateKey)) });
const id = "00000000-0000-4000-8000-000000000001";
let refused = "";
try { await normalizeImportedJwk("ES384", { ...(await crypto.subtle.exportKey("jwk", pair.publicKey)) }); } catch (e) { refused = (e as { code: string }).code; }
const z = new Uint8Array([158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196]);
const kdf = btoa(String.fromCharCode(...concatKdf(z, "A128GCM", 128, new TextEncoder().encode("Alice"), new TextEncoder().encode("Bob"))));
const cek = crypto.getRandomValues(new Uint8Array(32));
const p = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0";
const c = await encryptContent("A128CBC-HS256", cek, new TextEncoder().encode("deno"), new TextEncoder().encode(p));
const b = encodeBase64url;
const back = new TextDecoder().decode(await decryptContent("A128CBC-HS256", cek, parseJwe([p, "", b(c.iv), b(c.ciphertext), b(c.tag)].join("."))));
console.log(JSON.stringify({ isPrivate: r.isPrivate, members: Object.keys(r.jwk).sort(), version: versionFromKid(id + ".v3", id, signatureInvalid), refused, kdf, back, es: tokenSpecOf({ name: "ES512", purpose: "sign", jose: "ES512", asymmetric: true }), objects: typeof TokenKeyObjects }));
`);
  expect(result).toEqual({
      isPrivate: true,
      members: ["crv", "d", "kty", "x", "y"],
      version: 3,
      refused: "validation_failed",
      kdf: "VqqN6vgjbSBcIijNcacQGg==",
      back: "deno",
      es: { type: "ec", curve: "P-521", use: "sign" },
      objects: "function",
    });
}, 30_000);
