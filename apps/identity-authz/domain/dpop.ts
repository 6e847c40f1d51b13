/**
 * DPoP proofs (RFC 9449). Validated: a single `DPoP` header; `typ: dpop+jwt`; an
 * asymmetric algorithm; a public `jwk` (no private members) that verifies the
 * signature; `htm` and `htu` (scheme, host, path; no query) of this request;
 * `iat` inside the window; `jti` single use per key; `ath` when a token is presented.
 */
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from "jose";
import type { AuthzStore } from "../store.ts";
import { oauthError } from "./oauth-error.ts";
import { nowS, sha256B64url } from "./crypto.ts";

export const DPOP_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519"];

function normalizeHtu(u: string): string | null {
  try {
    const x = new URL(u);
    return `${x.protocol}//${x.host.toLowerCase()}${x.pathname}`;
  } catch {
    return null;
  }
}

export class DpopVerifier {
  constructor(
    private readonly store: AuthzStore,
    private readonly windowS: number,
  ) {}

  /** Returns the JWK thumbprint of the proof's key, or null when the request carries no proof. */
  async verify(tenant: string, req: Request, htu: string, accessToken?: string, errorCode: "invalid_dpop_proof" | "invalid_token" = "invalid_dpop_proof"): Promise<string | null> {
    const header = req.headers.get("dpop");
    if (header === null) return null;
    const bad = (why: string) => oauthError(errorCode, why, errorCode === "invalid_token" ? { "WWW-Authenticate": `DPoP error="invalid_token", algs="${DPOP_ALGS.join(" ")}"` } : undefined);
    if (header.includes(",") || header.length > 8192) throw bad("exactly one DPoP proof is allowed");
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
      throw bad("the DPoP proof header is not acceptable");
    }
    let payload;
    try {
      const key = await importJWK(jwk, alg);
      ({ payload } = await jwtVerify(header, key, { typ: "dpop+jwt", algorithms: [alg] }));
    } catch {
      throw bad("the DPoP proof does not verify");
    }
    const t = nowS();
    if (typeof payload.iat !== "number" || payload.iat < t - this.windowS || payload.iat > t + 5) throw bad("the DPoP proof is too old or from the future");
    if (typeof payload.jti !== "string" || payload.jti.length < 8 || payload.jti.length > 256) throw bad("the DPoP proof needs a jti");
    if (payload.htm !== req.method) throw bad("htm does not match the request method");
    if (typeof payload.htu !== "string" || normalizeHtu(payload.htu) !== normalizeHtu(htu)) throw bad("htu does not match the request URL");
    if (accessToken !== undefined && payload.ath !== (await sha256B64url(accessToken))) throw bad("ath does not match the access token");
    const jkt = await calculateJwkThumbprint(jwk, "sha256");
    if (!(await this.store.useJti(tenant, "dpop", `${jkt}:${payload.jti}`, t + this.windowS + 10))) throw bad("the DPoP proof was already used");
    return jkt;
  }
}
