/** pki-ca as a benchmark target: the real service, its own process, access log off, one auto-approved P-256 profile. */
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { startService } from "../../src/service/service.ts";

const [dataDir, issuer, jwksUrl, caFile] = process.argv.slice(2);
const s = await startService(pkiCa, {
  argv: [],
  env: {},
  logSink: () => {},
  overrides: (c) => {
    c.server.port = 0;
    c.data.dir = dataDir!;
    c.auth.issuer = issuer;
    c.auth.jwks_url = jwksUrl;
    c.auth.audience = "pki-ca";
    c.auth.ca_file = caFile;
    c.log.access = false;
    c.log.level = "warn";
    c.security.rate_limit_rps = 1_000_000;
    c.security.rate_limit_burst = 1_000_000;
    c.app = {
      base_url: "http://pki.bench.test",
      issuing_cas: ["P-256"],
      profiles: {
        bench: {
          issuing_ca: "P-256",
          key_types: ["P-256"],
          max_validity_days: 90,
          default_validity_days: 30,
          key_usage: ["digitalSignature"],
          extended_key_usage: ["serverAuth"],
          dns: { allow: ["*.bench.test"] },
        },
      },
    };
  },
});
await pkiCaOf(s.ctx);
console.log(JSON.stringify({ url: s.publicUrl, trust: s.trustBundlePath }));
process.on("SIGTERM", () => void s.stop().then(() => process.exit(0)));
