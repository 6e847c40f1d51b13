/** identity-authz as a benchmark target: the real service, its own process, access log off; prints a ready client. */
import { dirname, join } from "node:path";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { startService } from "../../src/service/service.ts";

const [dataDir, port] = process.argv.slice(2);
const base = `https://127.0.0.1:${port}`;
const s = await startService(identityAuthz, {
  argv: [],
  env: {},
  logSink: () => {},
  overrides: (c) => {
    c.server.port = Number(port);
    c.data.dir = dataDir!;
    c.data.suite_dir = dirname(dataDir!);
    c.auth.issuer = `${base}/t/{tenant}`;
    c.auth.jwks_url = `${base}/t/{tenant}/jwks`;
    c.auth.ca_file = join(dataDir!, "trust-bundle.pem");
    c.log.access = false;
    c.log.level = "warn";
    c.security.rate_limit_rps = 1_000_000;
    c.security.rate_limit_burst = 1_000_000;
  },
});
const authz = Authz.of(s.ctx);
await authz.ready;
await authz.registry.createTenant({ id: "bench" });
const common = () => ({
  client_name: "bench",
  redirect_uris: [],
  post_logout_redirect_uris: [],
  grant_types: ["client_credentials" as const],
  scopes: ["pets:read", "pets:write"],
  audiences: ["learn-ps"],
  token_endpoint_auth_method: "client_secret_basic" as const,
  jwks: null,
  jwks_uri: null,
  require_par: false,
  dpop_bound_access_tokens: false,
  id_token_signed_response_alg: "ES256" as const,
  access_token_ttl_s: null,
});
const client = await authz.registry.createClient("bench", common());
// For introspection: a client whose access tokens are opaque references (RFC 7662 resolves them).
const opaque = await authz.registry.createClient("bench", { ...common(), client_name: "bench-opaque", access_token_format: "opaque" });
console.log(
  JSON.stringify({
    url: s.publicUrl,
    token_endpoint: `${base}/t/bench/token`,
    introspection_endpoint: `${base}/t/bench/introspect`,
    trust: s.trustBundlePath,
    client_id: client.client_id,
    client_secret: client.client_secret,
    opaque_client_id: opaque.client_id,
    opaque_client_secret: opaque.client_secret,
  }),
);
process.on("SIGTERM", () => void s.stop().then(() => process.exit(0)));
