/**
 * Starts a real service (real HTTPS, real embedded database file, or a database of its own
 * on a test PostgreSQL server with `engine`) in a temp data dir for tests.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceDefinition } from "../../src/service/context.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { startService, type RunningService } from "../../src/service/service.ts";
import { defaultConfig } from "../../src/service/config.ts";
import { startServiceProcess } from "./service-process.ts";
import type { TestIssuer } from "./issuer.ts";
import { databaseConfig, EMBEDDED, inProcess, type TestEngine } from "./engine.ts";

export interface TestService extends RunningService {
  ca: string;
  /** fetch against the public server, trusting the suite CA. */
  call(path: string, init?: RequestInit): Promise<Response>;
  /** fetch against the admin server. */
  admin(path: string, init?: RequestInit): Promise<Response>;
  dataDir: string;
  logs: string[];
}

/**
 * Makes a service trust identity-authz at `authzUrl` as `npm start` does: its per-tenant issuers,
 * their JWKS, the CA bundle in `caFile`, and access tokens for `audience`.
 */
export function trustIdentity(c: ServiceConfig, authzUrl: string, caFile: string, audience: string): void {
  c.auth.issuer = `${authzUrl}/t/{tenant}`;
  c.auth.jwks_url = `${authzUrl}/t/{tenant}/jwks`;
  c.auth.ca_file = caFile;
  c.auth.audience = audience;
}

/** Test services log only warnings and have no practical rate limit. */
export const quiet = (c: ServiceConfig) => {
  c.log.level = "warn";
  c.log.access = false;
  c.security.rate_limit_rps = 100_000;
  c.security.rate_limit_burst = 100_000;
};

export function tempDir(prefix = "cryptoutil-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startTestService(
  def: ServiceDefinition,
  opts: { issuer?: TestIssuer; root?: string; overrides?: (c: ServiceConfig) => void; engine?: TestEngine; clock?: () => Date } = {},
): Promise<TestService> {
  const root = opts.root ?? tempDir();
  const dataDir = join(root, def.name);
  const database = await databaseConfig(opts.engine ?? EMBEDDED, dataDir);
  const logs: string[] = [];
  let issuerCaFile: string | undefined;
  if (opts.issuer) {
    mkdirSync(root, { recursive: true });
    issuerCaFile = join(root, "issuer-ca.pem");
    writeFileSync(issuerCaFile, opts.issuer.caPem);
  }
  const overrides = (c: ServiceConfig) => {
    c.server.port = 0;
    c.data.dir = dataDir;
    // The services of one test share a suite root, as `npm start` shares data/.
    c.data.suite_dir = root;
    c.log.level = "debug";
    Object.assign(c.database, database);
    if (opts.issuer) {
      c.auth.issuer = opts.issuer.issuer;
      c.auth.jwks_url = opts.issuer.jwksUrl;
      c.auth.audience = def.name;
      c.auth.ca_file = issuerCaFile;
    }
    opts.overrides?.(c);
  };
  if (!inProcess(opts.engine ?? EMBEDDED)) return startOnDeno(def, root, dataDir, overrides);
  const running = await startService(def, { argv: [], env: {}, logSink: (l) => logs.push(l), clock: opts.clock, overrides });
  const ca = readFileSync(running.trustBundlePath, "utf8");
  return {
    ...running,
    ca,
    dataDir,
    logs,
    call: (path, init = {}) => fetch(running.publicUrl + path, { ...init, tls: { ca } } as RequestInit),
    admin: (path, init = {}) => fetch(running.adminUrl + path, { ...init, tls: { ca } } as RequestInit),
  };
}

/**
 * The service as a Deno process: the test's overrides applied to the built-in defaults and
 * handed over as its config file. Only what crosses a process boundary is set: URLs, the
 * trust bundle, the admin token, call/admin/stop; the context, barrier and database stay in
 * the other process (tests that need them run in-process only, see `inProcess`).
 */
async function startOnDeno(def: ServiceDefinition, root: string, dataDir: string, overrides: (c: ServiceConfig) => void): Promise<TestService> {
  const config = defaultConfig(def.name, def.defaultPort);
  overrides(config);
  mkdirSync(root, { recursive: true });
  const file = join(root, `${def.name}.config.json`);
  writeFileSync(file, JSON.stringify(config));
  const p = await startServiceProcess(def.name, { runtime: "deno", dataRoot: root, args: ["--config", file] });
  let stopped!: () => void;
  const done = new Promise<void>((r) => (stopped = r));
  const outside = (what: string) => () => {
    throw new Error(`${what} of a service on Deno is in its own process`);
  };
  const running = {
    name: def.name,
    config,
    publicUrl: p.publicUrl,
    adminUrl: p.adminUrl,
    docsUrl: p.docsUrl,
    trustBundlePath: p.trustBundlePath,
    adminToken: readFileSync(join(dataDir, "admin.token"), "utf8").trim(),
    certificates: {},
    async stop() {
      await p.stop();
      stopped();
    },
    stopped: done,
  };
  const svc = { ...running, ca: p.ca, dataDir, logs: p.output, call: p.call, admin: p.admin };
  for (const k of ["ctx", "barrier", "database"]) Object.defineProperty(svc, k, { get: outside(k) });
  return svc as unknown as TestService;
}

/** The runtime a service reports on its admin server (`/admin/v1/healthz`). */
export async function runtimeOf(svc: Pick<TestService, "admin" | "adminToken">): Promise<string> {
  const r = await svc.admin("/admin/v1/healthz");
  return ((await r.json()) as { runtime: string }).runtime;
}
