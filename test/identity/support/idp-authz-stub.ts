/**
 * Stands in for identity-authz's side of the login hand-off when testing the idp alone: an
 * ES256 key whose JWKS is served over real HTTPS (TLS 1.3, suite-CA certificate) at
 * `/t/{T}/jwks`, and a signer of `login_challenge` JWS. Nothing in the idp is bypassed.
 */
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { throwawayTls } from "../../support/tls.ts";

export interface AuthzStub {
  url: string;
  caPem: string;
  issuer(tenant: string): string;
  challenge(tenant: string, claims?: Record<string, unknown>, opts?: { exp?: number; typ?: string; foreignKey?: boolean; iss?: string; aud?: string }): Promise<string>;
  stop(): Promise<void>;
}

export async function startAuthzStub(): Promise<AuthzStub> {
  const tlsId = await throwawayTls("authz-stub");
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const foreign = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "authz-1", alg: "ES256", use: "sig" };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: tlsId.serve,
    fetch(req) {
      if (/^\/t\/[A-Za-z0-9._-]+\/jwks$/.test(new URL(req.url).pathname)) return Response.json({ keys: [jwk] });
      return new Response("not found", { status: 404 });
    },
  });
  const url = `https://127.0.0.1:${server.port}`;
  const issuer = (t: string) => `${url}/t/${t}`;
  return {
    url,
    caPem: tlsId.caPem,
    issuer,
    challenge(tenant, claims = {}, o = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ client_id: "pets-web", client_name: "Pet Store", scope: "openid profile pets:read", ...claims })
        .setProtectedHeader({ alg: "ES256", kid: "authz-1", typ: o.typ ?? "login-challenge+jwt" })
        .setIssuer(o.iss ?? issuer(tenant))
        .setAudience(o.aud ?? "identity-idp")
        .setJti(crypto.randomUUID())
        .setIssuedAt(now)
        .setExpirationTime(o.exp ?? now + 600)
        .sign(o.foreignKey ? foreign.privateKey : privateKey);
    },
    async stop() {
      await server.stop(true);
    },
  };
}
