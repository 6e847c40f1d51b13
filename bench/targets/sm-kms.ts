/** sm-kms as a benchmark target: the real service, its own process, access log off. */
import { smKms } from "../../apps/sm-kms/service.ts";
import { startService } from "../../src/service/service.ts";

const [dataDir, issuer, jwksUrl, caFile] = process.argv.slice(2);
const s = await startService(smKms, {
  argv: [],
  env: {},
  logSink: () => {},
  overrides: (c) => {
    c.server.port = 0;
    c.data.dir = dataDir!;
    c.auth.issuer = issuer;
    c.auth.jwks_url = jwksUrl;
    c.auth.ca_file = caFile;
    c.auth.audience = "sm-kms";
    c.log.access = false;
    c.log.level = "warn";
    c.security.rate_limit_rps = 1_000_000;
    c.security.rate_limit_burst = 1_000_000;
  },
});
console.log(JSON.stringify({ url: s.publicUrl, trust: s.trustBundlePath }));
process.on("SIGTERM", () => void s.stop().then(() => process.exit(0)));
