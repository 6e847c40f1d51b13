/**
 * Starts a real service as a benchmark target, in its own process, with the access log off,
 * the rate limit out of the way and tokens from the bench's issuer. Prints one JSON line with
 * the public URL, the admin URL (127.0.0.1: /admin/v1/metrics), the trust bundle, the mTLS URL and gRPC address (if any) once it listens; stops on SIGTERM.
 *
 * Args: <data dir> <issuer> <jwks url> <issuer CA file> [<postgres:// url> <password file> [<pool size>]]
 * Without a database url the service uses its embedded database in the data dir. Instances whose
 * data dirs share a parent share the development unseal secret and the suite CA, so several of
 * them can run on one PostgreSQL database.
 * BENCH_OTLP_ENDPOINT=URL: tracing on, exporting to that OTLP/HTTP collector (to measure its cost).
 */
import type { ServiceDefinition } from "../../src/service/context.ts";
import { dirname } from "node:path";
import type { ServiceConfig } from "../../src/service/config.ts";
import { startService, type RunningService } from "../../src/service/service.ts";

export async function serveBenchTarget(
  def: ServiceDefinition,
  opts: {
    config?: (c: ServiceConfig) => void;
    ready?: (s: RunningService) => Promise<unknown>;
    /** More fields for the printed line (what the bench needs to drive the target). */
    info?: (s: RunningService) => Promise<Record<string, unknown>>;
  } = {},
): Promise<void> {
  const [dataDir, issuer, jwksUrl, caFile, databaseUrl, passwordFile, poolSize] = process.argv.slice(2);
  const s = await startService(def, {
    argv: [],
    env: {},
    logSink: () => {},
    overrides: (c) => {
      c.server.port = 0;
      c.data.dir = dataDir!;
      c.data.suite_dir = dirname(dataDir!);
      c.auth.issuer = issuer;
      c.auth.jwks_url = jwksUrl;
      c.auth.ca_file = caFile;
      c.auth.audience = def.name;
      c.log.access = false;
      c.log.level = "warn";
      c.security.rate_limit_rps = 1_000_000;
      c.security.rate_limit_burst = 1_000_000;
      if (process.env.BENCH_OTLP_ENDPOINT) c.telemetry.otlp_endpoint = process.env.BENCH_OTLP_ENDPOINT;
      if (databaseUrl) {
        c.database.url = databaseUrl;
        c.database.password_file = passwordFile;
        if (poolSize) c.database.pool_size = Number(poolSize);
      }
      opts.config?.(c);
    },
  });
  await opts.ready?.(s);
  console.log(JSON.stringify({ url: s.publicUrl, admin: s.adminUrl, trust: s.trustBundlePath, mtls: s.mtlsUrl, grpc: s.grpcAddress, ...(await opts.info?.(s)) }));
  process.on("SIGTERM", () => void s.stop().then(() => process.exit(0)));
}
