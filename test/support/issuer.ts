/**
 * A token issuer for tests until identity-authz exists: an ES256 key, its JWKS
 * served over real HTTPS (TLS 1.3, certificate from the suite CA code), and a
 * `mint` that signs RFC 9068 access tokens. Services verify these exactly as
 * they will verify identity-authz's tokens: nothing is bypassed.
 */
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from "jose";
import { throwawayTls } from "./tls.ts";

export interface TestIssuer {
  issuer: string;
  jwksUrl: string;
  caPem: string;
  mint(claims: JWTPayload & { tenant?: string; scope?: string }, opts?: { expiresIn?: string | number; key?: "current" | "foreign"; alg?: string }): Promise<string>;
  jwksFetches(): number;
  stop(): Promise<void>;
}

/** `audience` is the default `aud` of minted tokens (a claim in `mint` overrides it). */
export async function startTestIssuer(settings: { audience?: string } = {}): Promise<TestIssuer> {
  const tlsId = await throwawayTls("test-issuer");

  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const foreign = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  let fetches = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: tlsId.serve,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/jwks.json" || /^\/t\/[A-Za-z0-9._-]+\/jwks$/.test(path)) {
        fetches++;
        return Response.json({ keys: [jwk] });
      }
      return new Response("not found", { status: 404 });
    },
  });
  const issuer = `https://127.0.0.1:${server.port}`;
  return {
    issuer,
    jwksUrl: `${issuer}/jwks.json`,
    caPem: tlsId.caPem,
    jwksFetches: () => fetches,
    async mint(claims, opts = {}) {
      const key = opts.key === "foreign" ? foreign.privateKey : privateKey;
      return new SignJWT({ aud: settings.audience ?? "learn-ps", ...claims })
        .setProtectedHeader({ alg: opts.alg ?? "ES256", kid: "k1", typ: "at+jwt" })
        .setIssuer((claims.iss as string) ?? issuer)
        .setIssuedAt()
        .setExpirationTime(opts.expiresIn ?? "5m")
        .setSubject((claims.sub as string) ?? "client-1")
        .sign(key);
    },
    async stop() {
      await server.stop(true);
    },
  };
}
