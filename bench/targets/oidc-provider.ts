/**
 * The anchor: `oidc-provider` (npm, OpenID Certified) configured for the same grant as
 * identity-authz's benchmark: client_credentials, client_secret_basic, ES256 JWT
 * access tokens (RFC 9068 via its resource-indicators feature) for audience learn-ps,
 * on a TLS 1.3 server in its own process. Runs under Bun, or under Node (its supported
 * runtime) after the benchmark strips the types. Args: port certFile keyFile clientSecret.
 */
import { createServer } from "node:https";
import { readFileSync } from "node:fs";
import { constants, generateKeyPairSync } from "node:crypto";
// @ts-expect-error oidc-provider ships no type declarations
import Provider from "oidc-provider";

const [port, certFile, keyFile, secret] = process.argv.slice(2);
const issuer = `https://127.0.0.1:${port}`;
const es = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });
const rs = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "bench",
      client_secret: secret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    },
    {
      // Opaque access tokens, for the introspection benchmark.
      client_id: "bench-opaque",
      client_secret: secret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [{ ...es, kid: "es", alg: "ES256", use: "sig" }, { ...rs, kid: "rs", alg: "RS256", use: "sig" }] },
  scopes: ["pets:read", "pets:write"],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // A client may introspect the tokens it was issued (identity-authz's rule for confidential clients too).
    introspection: { enabled: true, allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) => token.clientId === client.clientId },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "urn:learn-ps",
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx: unknown, _resource: string, client: { clientId: string }) =>
        client.clientId === "bench-opaque"
          ? { scope: "pets:read pets:write", audience: "learn-ps", accessTokenTTL: 600, accessTokenFormat: "opaque" }
          : { scope: "pets:read pets:write", audience: "learn-ps", accessTokenTTL: 600, accessTokenFormat: "jwt", jwt: { sign: { alg: "ES256" } } },
    },
  },
});
provider.on("server_error", (_ctx: unknown, err: unknown) => console.error(String(err)));

const server = createServer(
  { cert: readFileSync(certFile!, "utf8"), key: readFileSync(keyFile!, "utf8"), secureOptions: constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1 | constants.SSL_OP_NO_TLSv1_2 },
  provider.callback(),
);
server.keepAliveTimeout = 60_000;
server.listen(Number(port), "127.0.0.1", () => {
  console.log(JSON.stringify({ url: issuer, token_endpoint: `${issuer}/token`, introspection_endpoint: `${issuer}/token/introspection` }));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
