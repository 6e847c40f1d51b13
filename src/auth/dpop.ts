/**
 * DPoP proofs (RFC 9449), checked the same way by the authorization server's endpoints and by
 * every resource server's `/service/api`.
 *
 * Validated: a single `DPoP` header of bounded size; `typ: dpop+jwt`; an asymmetric algorithm;
 * a public `jwk` (no private members) that verifies the signature; `htm` equal to the request
 * method and `htu` equal to the URL the server expects (scheme, host, path; no query or
 * fragment; the caller names that URL from its configuration, never from the request's Host);
 * `iat` inside the window; `ath` when an access token is presented; `jti` single use per key,
 * recorded in a replay store that every instance of the service shares (its database), so a
 * proof replayed to another instance is refused as well. No server nonce.
 */
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from "jose";
import { createHash } from "node:crypto";

/** Algorithms accepted for proofs; `Ed25519` is jose's name for EdDSA over Ed25519. */
export const DPOP_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519"];

/** Where the `jti` of accepted proofs is kept until the window has passed. */
export interface ProofReplayStore {
  /** Records `key` until `expiresAt` (seconds); false if it was recorded before (a replay). */
  useOnce(key: string, expiresAt: number): Promise<boolean>;
}

export interface ProofRequest {
  /** The `DPoP` header as received (null when absent). */
  proof: string | null;
  method: string;
  /** The URL the proof must name: the server's configured URL of this endpoint. */
  htu: string;
  /** The access token sent with the proof, whose hash `ath` must carry. */
  accessToken?: string;
}

/** How a failed check is reported: the caller's error (OAuth's 400 at a token endpoint, 401 at a resource). */
export type ProofFailure = (why: string) => Error;

const MAX_PROOF = 8192;

/** `scheme://host/path` of a URL, lower-case host, or null when it is not one. */
export function normalizeHtu(u: string): string | null {
  if (!URL.canParse(u)) return null;
  const x = new URL(u);
  return `${x.protocol}//${x.host.toLowerCase()}${x.pathname}`;
}

/** base64url SHA-256 of an access token: the `ath` claim of its proofs. */
export function accessTokenHash(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("base64url");
}

export class DpopProofVerifier {
  constructor(
    private readonly replay: ProofReplayStore,
    /** Accepted age of a proof, in seconds; `iat` may also be up to 5 s ahead. */
    private readonly windowS: number,
  ) {}

  /**
   * Checks the request's proof; returns the JWK SHA-256 thumbprint of its key (`cnf.jkt`), or
   * null when the request carries no proof. Every failure goes through `fail`.
   */
  async verify(r: ProofRequest, fail: ProofFailure): Promise<string | null> {
    const header = r.proof;
    if (header === null) return null;
    if (header.includes(",") || header.length > MAX_PROOF) throw fail("exactly one DPoP proof is allowed");
    let jwk: JWK;
    let alg: string;
    try {
      const h = decodeProtectedHeader(header);
      if (h.typ !== "dpop+jwt") throw new Error("typ");
      alg = String(h.alg);
      if (!DPOP_ALGS.includes(alg)) throw new Error("alg");
      jwk = h.jwk as JWK;
      if (!jwk || typeof jwk !== "object" || "d" in jwk || "p" in jwk || "k" in jwk) throw new Error("jwk");
    } catch {
      throw fail("the DPoP proof header is not acceptable");
    }
    let payload;
    try {
      const key = await importJWK(jwk, alg);
      ({ payload } = await jwtVerify(header, key, { typ: "dpop+jwt", algorithms: [alg] }));
    } catch {
      throw fail("the DPoP proof does not verify");
    }
    const t = Math.floor(Date.now() / 1000);
    if (typeof payload.iat !== "number" || payload.iat < t - this.windowS || payload.iat > t + 5) throw fail("the DPoP proof is too old or from the future");
    if (typeof payload.jti !== "string" || payload.jti.length < 8 || payload.jti.length > 256) throw fail("the DPoP proof needs a jti");
    if (payload.htm !== r.method) throw fail("htm does not match the request method");
    const expected = normalizeHtu(r.htu);
    if (typeof payload.htu !== "string" || expected === null || normalizeHtu(payload.htu) !== expected) throw fail("htu does not match the request URL");
    if (r.accessToken !== undefined && payload.ath !== accessTokenHash(r.accessToken)) throw fail("ath does not match the access token");
    const jkt = await calculateJwkThumbprint(jwk, "sha256");
    if (!(await this.replay.useOnce(`${jkt}:${payload.jti}`, t + this.windowS + 10))) throw fail("the DPoP proof was already used");
    return jkt;
  }
}
