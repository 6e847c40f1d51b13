/**
 * The JWS of an ACME request (RFC 8555 §6.2-6.4), checked in this order: a flattened JWS with
 * only protected members; an allowed asymmetric `alg` (ES256, ES384, RS256, PS256, EdDSA; `none`
 * and MACs are refused); a nonce this server issued and nobody used; `url` equal to the request
 * URL; exactly one of `jwk` (a public key) or `kid` (an account URL); then the signature, by the
 * jose library. The caller says which of `jwk`/`kid` the endpoint takes. An account's imported
 * key is kept (by its stored JWK text and alg, a bounded number of them), so an account's every
 * request does not import its key again (an RSA import costs more than its verification).
 */
import { flattenedVerify, importJWK, type JWK, type ProtectedHeaderParameters } from "jose";
import { AcmeProblem, malformed, unauthorized } from "./problem.ts";
import { publicJwk, readJws } from "./domain.ts";
import type { NonceStore } from "./nonces.ts";

export const ACME_ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"] as const;

/** Imported account keys kept at most (oldest dropped first). */
const KEY_CACHE_SIZE = 4096;
const accountKeys = new Map<string, CryptoKey | Uint8Array>();

/** The account key (its stored JWK text) imported for `alg`: from the cache, or imported and kept. */
async function accountKey(jwkText: string, alg: string): Promise<CryptoKey | Uint8Array> {
  const id = `${alg} ${jwkText}`;
  const hit = accountKeys.get(id);
  if (hit) return hit;
  const key = await importJWK(JSON.parse(jwkText) as JWK, alg);
  if (accountKeys.size >= KEY_CACHE_SIZE) accountKeys.delete(accountKeys.keys().next().value!);
  accountKeys.set(id, key);
  return key;
}

export interface VerifiedRequest {
  header: ProtectedHeaderParameters;
  /** The JSON payload; undefined for POST-as-GET (empty payload). */
  payload: unknown;
  postAsGet: boolean;
  /** Set when the JWS carried a `jwk` (newAccount, revokeCert by the certificate's key). */
  jwk?: JWK;
  kid?: string;
}

/**
 * Verifies an ACME request body. `keyOf` turns a `kid` into the account's public JWK as stored
 * (JSON text; or throws accountDoesNotExist/unauthorized); `accept` names the key forms this
 * endpoint takes.
 */
export async function verifyRequest(
  body: unknown,
  opts: { url: string; nonces: NonceStore; accept: "jwk" | "kid" | "either"; keyOf: (kid: string) => Promise<string> },
): Promise<VerifiedRequest> {
  const { jws, header } = readJws(body);
  if (typeof header.alg !== "string" || !(ACME_ALGS as readonly string[]).includes(header.alg)) {
    throw new AcmeProblem("badSignatureAlgorithm", `alg must be one of ${ACME_ALGS.join(", ")}`);
  }
  if (!(await opts.nonces.consume(header.nonce))) throw new AcmeProblem("badNonce", "the nonce is missing, unknown, expired or used");
  if (typeof header.url !== "string" || header.url !== opts.url) throw unauthorized("the url header is not this request's URL");
  const hasJwk = header.jwk !== undefined;
  const hasKid = header.kid !== undefined;
  if (hasJwk === hasKid) throw malformed("the protected header needs exactly one of jwk and kid");
  if (hasJwk && opts.accept === "kid") throw malformed("this request must be signed by an account (kid), not a jwk");
  if (hasKid && opts.accept === "jwk") throw malformed("this request must carry the account key as jwk");
  let jwk: JWK | undefined;
  let key: CryptoKey | Uint8Array;
  if (hasJwk) {
    const raw = header.jwk as JWK;
    if (!raw || typeof raw !== "object" || Array.isArray(raw) || raw.kty === "oct" || "d" in raw || "p" in raw) throw new AcmeProblem("badPublicKey", "jwk must be a public EC, RSA or OKP key");
    jwk = publicJwk(raw);
  } else if (typeof header.kid !== "string") throw malformed("kid must be the account URL");
  const accountJwk = hasKid ? await opts.keyOf(header.kid as string) : undefined;
  try {
    key = accountJwk === undefined ? await importJWK(jwk!, header.alg) : await accountKey(accountJwk, header.alg);
  } catch {
    throw new AcmeProblem(hasJwk ? "badPublicKey" : "badSignatureAlgorithm", `the key cannot be used with ${header.alg}`);
  }
  let payload: Uint8Array;
  try {
    payload = (await flattenedVerify(jws, key, { algorithms: [header.alg] })).payload;
  } catch {
    throw malformed("the JWS signature does not verify");
  }
  const text = new TextDecoder().decode(payload);
  let parsed: unknown;
  if (text !== "") {
    try {
      parsed = JSON.parse(text);
    } catch {
      throw malformed("the payload is not JSON");
    }
  }
  return { header, payload: parsed, postAsGet: text === "", jwk, kid: hasKid ? (header.kid as string) : undefined };
}
