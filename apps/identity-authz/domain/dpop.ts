/**
 * DPoP proofs at identity-authz's endpoints (token, PAR, userinfo): the shared proof checks
 * (src/auth/dpop.ts) with this service's single-use store (`used_jtis`, kind `dpop`, per
 * tenant) and its OAuth error answers.
 */
import { DpopProofVerifier, DPOP_ALGS } from "../../../src/auth/dpop.ts";
import type { AuthzStore } from "../store.ts";
import { oauthError } from "./oauth-error.ts";

export { DPOP_ALGS };

export class DpopVerifier {
  constructor(
    private readonly store: AuthzStore,
    private readonly windowS: number,
  ) {}

  /** Returns the JWK thumbprint of the proof's key, or null when the request carries no proof. */
  async verify(tenant: string, req: Request, htu: string, accessToken?: string, errorCode: "invalid_dpop_proof" | "invalid_token" = "invalid_dpop_proof"): Promise<string | null> {
    const replay = { useOnce: (key: string, expiresAt: number) => this.store.useJti(tenant, "dpop", key, expiresAt) };
    const headers = errorCode === "invalid_token" ? { "WWW-Authenticate": `DPoP error="invalid_token", algs="${DPOP_ALGS.join(" ")}"` } : undefined;
    return new DpopProofVerifier(replay, this.windowS).verify(
      { proof: req.headers.get("dpop"), method: req.method, htu, accessToken },
      (why) => oauthError(errorCode, why, headers),
    );
  }
}
