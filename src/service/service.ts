/**
 * The service template: everything a cryptoutil service does before and around
 * its own routes. `startService(def)` loads config, opens the database and runs
 * migrations, unseals the barrier, loads or creates TLS certificates, and starts
 * two HTTPS servers, TLS 1.3 only: the public one and the admin one on 127.0.0.1, and
 * optionally a third, the mutual-TLS listener (`server.mtls_port`, see mtls-listener.ts).
 *
 * The servers come from the runtime seam (src/runtime: Bun or Deno, chosen at start); the
 * apps' Elysia instances are Web-standard, so `buildPublicApp(...).handle` can be mounted
 * on any runtime.
 */
import { Elysia } from "elysia";
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Kysely } from "kysely";
import { AppError } from "./errors.ts";
import { equalStrings } from "../crypto/constant-time.ts";
import { defaultConfig, isDevelopment, loadConfig, serverUrl, ServiceConfigSchema, type ServiceConfig } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import { runtime } from "../runtime/index.ts";
import type { HttpServer } from "../runtime/types.ts";
import { HttpMetrics } from "./metrics.ts";
import { IpAllowlist, RateLimiter } from "./guard.ts";
import { adminHandler, appBase, errorResponse, malformedResponse, mapError, publicHandler, requestInfo, RUNTIME_BODY_CAP, SECURITY_HEADERS, type PipelineDeps } from "./http.ts";
import { startMtlsListener, type MtlsListener, type MtlsPeer } from "./mtls-listener.ts";
import type { GrpcListener } from "./grpc-listener.ts";
import { CertificatePrincipals, parseClientCertificate, serviceSpiffeId, withinValidity, type ClientCertificate } from "../auth/client-cert.ts";
import { docsPlugin, DOCS_PATH, OAUTH_SCHEME } from "./docs.ts";
import type { ServiceContext, ServiceDefinition } from "./context.ts";
import { BearerVerifier } from "../auth/bearer.ts";
import { DpopProofVerifier } from "../auth/dpop.ts";
import { createProofReplayTable, DatabaseProofReplay } from "../auth/proof-replay.ts";
import { checkFederationConfig, Federation, identityEndpoints, retryPolicy } from "../federation/index.ts";
import { AuditSender, createAuditSpool } from "../audit/sender.ts";
import { Notifier } from "../notify/notifier.ts";
import { createDeadLetterTable, DatabaseDeadLetters } from "../notify/dead-letters.ts";
import { channelsOf } from "../notify/channels.ts";
import { deadLetterRoutes } from "../notify/admin.ts";
import { addSessionName, addSessionOpSid, createSessionTable, SessionStore } from "../auth/session.ts";
import { browserLogin } from "../auth/bff.ts";
import { createDispatcher, createWasmProvider, createWebCryptoProvider, openPkcs11Provider } from "../crypto/index.ts";
import { openDatabase, ping, runMigrations, storageLatencyOf, type Database } from "../storage/index.ts";
import { Barrier, pkcs11RootLayer } from "../barrier/index.ts";
import { createTracing, type Tracing } from "../telemetry/index.ts";
import {
  DirectoryStore,
  loadOrCreateTlsMaterial,
  loadStaticTlsMaterial,
  RenewingTlsMaterial,
  serverSans,
  suiteCaSealerFromFiles,
  writeTrustBundle,
  type TlsMaterial,
} from "../pki/index.ts";

export { TLS13_ONLY } from "../runtime/tls.ts";

/** How long a graceful stop answers new requests 503 + Connection: close before closing connections. */
const DRAIN_GRACE_MS = 500;

/** The migrations every service runs before its own. */
export const templateMigrations = [
  { version: 1, name: "sessions", up: createSessionTable },
  {
    version: 2,
    name: "service secrets",
    up: (db: Kysely<any>) =>
      db.schema
        .createTable("service_secrets")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("value", "blob", (c) => c.notNull())
        .execute(),
  },
  { version: 3, name: "session display names", up: addSessionName },
  { version: 4, name: "spent DPoP proofs", up: createProofReplayTable },
  { version: 5, name: "audit spool", up: createAuditSpool },
  { version: 6, name: "notification dead letters", up: createDeadLetterTable },
  { version: 7, name: "session provider sid", up: addSessionOpSid },
];

/** How often spent DPoP proof ids past their window are deleted. */
const PROOF_SWEEP_MS = 60_000;

/** A random 32-byte secret of the service (e.g. the CSRF HMAC key), kept barrier-encrypted. */
async function loadOrCreateServiceSecret(db: Kysely<any>, barrier: Barrier, name: string): Promise<Uint8Array> {
  const context = `template/service_secrets/${name}`;
  const row = await db.selectFrom("service_secrets").select("value").where("name", "=", name).executeTakeFirst();
  if (row) return barrier.decrypt(new Uint8Array(row.value as ArrayBuffer), context);
  const secret = crypto.getRandomValues(new Uint8Array(32));
  await db
    .insertInto("service_secrets")
    .values({ name, value: await barrier.encrypt(secret, context) })
    .onConflict((oc) => oc.column("name").doNothing())
    .execute();
  // Another instance may have won the race: read back what is stored.
  secret.fill(0);
  return loadOrCreateServiceSecret(db, barrier, name);
}

/** What the service needs of a listening server, Bun's or the node listener. */
interface Listener {
  readonly port: number | undefined;
  readonly pendingRequests: number;
  stop(force: boolean): Promise<void>;
}

export interface RunningService {
  name: string;
  config: ServiceConfig;
  publicUrl: string;
  adminUrl: string;
  /** The mutual-TLS listener's URL, when `server.mtls_port` is set. */
  mtlsUrl?: string;
  /** The gRPC listener's `host:port`, when `server.grpc_port` is set. */
  grpcAddress?: string;
  /** Whether the gRPC listener's unary calls take its direct path (see grpc-listener.ts). */
  grpcDirect?: boolean;
  docsUrl: string;
  /** PEM file clients use to verify the servers (`curl --cacert`). */
  trustBundlePath: string;
  /** Bearer token for the unsafe admin endpoints (shutdown, rotation); kept in data.dir. */
  adminToken: string;
  ctx: ServiceContext;
  barrier: Barrier;
  database: Database<any>;
  /**
   * Certificates renewed while the service runs (auto mode): the service's client certificate
   * (`spiffe://cryptoutil/<name>`, presented on federated calls) and the mTLS listener's leaf.
   */
  certificates: { client?: RenewingTlsMaterial; mtlsServer?: RenewingTlsMaterial };
  /** Graceful stop: no new connections, in-flight requests finish, then storage closes. */
  stop(): Promise<void>;
  /** Resolves once the service has stopped (by stop() or POST /admin/v1/shutdown). */
  stopped: Promise<void>;
}

export interface StartOptions {
  argv?: string[];
  env?: Record<string, string | undefined>;
  /** Overrides applied after file, env and flags (tests). */
  overrides?: (c: ServiceConfig) => void;
  logSink?: (line: string) => void;
  /** The clock certificate renewal decides and issues by (tests); default the system clock. */
  clock?: () => Date;
}

/**
 * Reads a secret file, creating it with random content first if absent. Several services
 * of the suite start at once and share the development unseal secret: the file is written
 * under a temporary name and hard-linked into place, so exactly one content wins and no
 * reader ever sees a half-written file.
 */
function readOrCreateSecretFile(path: string, bytes: number, logger: Logger, what: string): Uint8Array {
  if (existsSync(path)) return readFileSync(path);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("base64url");
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, secret + "\n", { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, path);
    logger.warn(`created ${what}`, { file: path });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  } finally {
    unlinkSync(tmp);
  }
  return readFileSync(path);
}

function tlsOptions(m: TlsMaterial) {
  return { cert: m.certChainPem, key: m.keyPem };
}

/** The public Elysia app of a service (docs, API under both prefixes, pages). */
export function buildPublicApp(def: ServiceDefinition, ctx: ServiceContext) {
  const { explorer, auth } = ctx.config;
  const oauth = explorer.token_url ? { tokenUrl: explorer.token_url, audience: auth.audience, clientId: explorer.client_id } : undefined;
  const app = new Elysia()
    .headers(SECURITY_HEADERS)
    .use(appBase)
    .onError(mapError)
    .use(docsPlugin({ title: def.title, version: def.version, description: def.description, oauth }))
    // One API, two front doors; the document tags and secures each prefix on its own.
    .group("/service/api/v1", { detail: { tags: ["machines: /service, OAuth bearer token"], security: [...(oauth ? [{ [OAUTH_SCHEME]: [] }] : []), { bearer: [] }] } } as never, (g) =>
      g.use(def.api(ctx)),
    )
    .group("/browser/api/v1", { detail: { tags: ["browsers: /browser, session cookie + CSRF"], security: [{ session: [] }] } } as never, (g) =>
      g.use(def.api(ctx)),
    )
    .get("/", ({ redirect }) => redirect(def.pages ? "/browser/" : DOCS_PATH), { detail: { hide: true } })
    // Public liveness, what other services' federation clients poll: no work, no secrets.
    .get("/livez", () => ({ status: "alive" }), { detail: { hide: true } });
  if (def.routes) app.use(def.routes(ctx));
  if (ctx.config.browser.login) app.use(browserLogin(ctx, ctx.config.browser.login));
  if (def.pages) app.use(def.pages(ctx));
  return app;
}

/**
 * The service's validated config: defaults, suite wiring, files, env and flags, then the
 * app's own section. Reads only the config files and writes nothing, so a bad key stops a
 * start before anything is on disk (`--check-config` runs just this).
 */
export function resolveConfig(def: ServiceDefinition, opts: Pick<StartOptions, "argv" | "env" | "overrides"> = {}): ServiceConfig {
  const config = loadConfig({
    schema: ServiceConfigSchema,
    defaults: defaultConfig(def.name, def.defaultPort) as never,
    argv: opts.argv,
    env: opts.env,
  }) as ServiceConfig;
  opts.overrides?.(config);
  def.configure?.(config);
  if (config.server.grpc_port !== undefined && !def.grpc) throw new AppError("config_invalid", `server.grpc_port: ${def.name} has no gRPC API`);
  checkFederationConfig(config.federation, isDevelopment(config));
  def.checkConfig?.(config);
  return config;
}

/** Starts a service from its definition; returns once both servers listen. */
export async function startService(def: ServiceDefinition, opts: StartOptions = {}): Promise<RunningService> {
  const config = resolveConfig(def, opts);

  const logger = createLogger({ level: config.log.level, service: def.name, sink: opts.logSink });
  const dataDir = resolve(config.data.dir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // What the services of one suite share lives in the suite's data root, by default data.dir.
  const suiteRoot = resolve(config.data.suite_dir ?? dataDir);
  const suiteDir = resolve(config.tls.suite_ca_dir ?? join(suiteRoot, "suite-ca"));

  // Unseal secrets: configured files, else one development secret shared by the suite's services.
  let unsealFiles = config.barrier.unseal_files.map((f) => resolve(f));
  if (unsealFiles.length === 0) {
    const devFile = join(suiteRoot, "dev-unseal.secret");
    readOrCreateSecretFile(devFile, 32, logger, "a development unseal secret; configure barrier.unseal_files in production");
    unsealFiles = [devFile];
  }
  const adminToken = new TextDecoder().decode(readOrCreateSecretFile(join(dataDir, "admin.token"), 32, logger, "the admin token")).trim();

  // Tracing is on only with `telemetry.otlp_endpoint`; off, nothing below gets a tracer.
  const tracing = createTracing(config.telemetry, def.name);
  const tracer = tracing?.tracer;
  const database = await openDatabase<any>(
    {
    service: def.name,
    dataDir,
    url: config.database.url,
    syncUrl: config.database.sync_url,
    authToken: config.database.auth_token_file ? readFileSync(config.database.auth_token_file, "utf8").trim() : undefined,
    syncInterval: config.database.sync_interval_s,
    password: config.database.password_file ? readFileSync(config.database.password_file, "utf8").replace(/\r?\n$/, "") : undefined,
    poolSize: config.database.pool_size,
    },
    { tracer },
  );
  try {
    return await startOnDatabase(def, config, logger, database, { dataDir, suiteDir, unsealFiles, adminToken, clock: opts.clock }, tracing);
  } catch (e) {
    // A failed start must not leave the database (and its file lock) open.
    await database.close().catch(() => undefined);
    await tracing?.exporter.shutdown(0);
    throw e;
  }
}

async function startOnDatabase(
  def: ServiceDefinition,
  config: ServiceConfig,
  logger: Logger,
  database: Database<any>,
  paths: { dataDir: string; suiteDir: string; unsealFiles: string[]; adminToken: string; clock?: () => Date },
  tracing: Tracing | undefined,
): Promise<RunningService> {
  const tracer = tracing?.tracer;
  const { dataDir, suiteDir, unsealFiles, adminToken } = paths;
  const clock = paths.clock ?? (() => new Date());
  const db = database.db;
  await runMigrations(db, "template", templateMigrations);
  await runMigrations(db, def.name, def.migrations);

  // The HSM opens first: a wrong module, token or PIN stops the start with a clear error.
  const hsm = config.hsm.pin_file
    ? await openPkcs11Provider({
        modulePath: config.hsm.module,
        tokenLabel: config.hsm.token_label,
        slot: config.hsm.slot,
        pinFile: config.hsm.pin_file,
      })
    : undefined;
  const cryptoDispatcher = createDispatcher({ providers: [createWasmProvider(), createWebCryptoProvider(), ...(hsm ? [hsm] : [])], tracer });

  // With an HSM, the barrier's root keys live in it; otherwise the unseal files protect them.
  const barrier = new Barrier({ db, service: def.name, rootLayer: hsm ? pkcs11RootLayer(hsm) : undefined });
  await barrier.unsealFromFiles(unsealFiles);

  const csrfSecret = await loadOrCreateServiceSecret(db, barrier, "csrf-hmac-key");
  const csrfKey = await crypto.subtle.importKey("raw", csrfSecret as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  csrfSecret.fill(0);
  const sessions = new SessionStore(db, csrfKey, { idleS: config.browser.session_idle_s, absoluteS: config.browser.session_absolute_s });

  // TLS: the suite CA shared on this host and a leaf per service, or operator-provided PEM.
  // In auto mode the service also gets a client certificate for mTLS calls, renewed in place.
  let material: TlsMaterial;
  let reloadServerLeaf: ((now: Date) => Promise<TlsMaterial>) | undefined;
  let clientCerts: RenewingTlsMaterial | undefined;
  if (config.tls.mode === "static") {
    material = await loadStaticTlsMaterial({
      certPath: config.tls.cert_file,
      certPem: config.tls.cert_pem,
      keyFile: config.tls.key_file,
      keyPem: config.tls.key_pem,
    });
  } else {
    const sans = serverSans({ bindAddresses: [config.server.bind, "127.0.0.1"], hostnames: config.tls.hostnames });
    const where = {
      store: new DirectoryStore(join(dataDir, "tls")),
      sealer: { seal: (p: Uint8Array, c: string) => barrier.encrypt(p, c), open: (c: Uint8Array, ctx: string) => barrier.decrypt(c, ctx) },
      serviceName: def.name,
      suiteCa: { store: new DirectoryStore(suiteDir), sealer: await suiteCaSealerFromFiles(unsealFiles) },
    };
    reloadServerLeaf = async (now) => (await loadOrCreateTlsMaterial({ ...where, sans, now })).material;
    const reloadClient = async (now: Date) =>
      (
        await loadOrCreateTlsMaterial({
          ...where,
          sans: { dnsNames: [], ipAddresses: [], uris: [serviceSpiffeId(def.name)] },
          label: "client",
          usage: "client",
          validityDays: config.mtls.client_validity_days,
          now,
        })
      ).material;
    material = await reloadServerLeaf(clock());
    clientCerts = new RenewingTlsMaterial(await reloadClient(clock()), {
      reload: reloadClient,
      clock,
      onRenew: (m) => logger.info("client certificate renewed", { serial: m.leaf.serialNumber, not_after: m.leaf.notAfter }),
      onError: (e) => logger.warn("client certificate renewal failed; retrying at the next check", { error: e }),
    });
  }
  const trustBundlePath = join(dataDir, "trust-bundle.pem");
  await writeTrustBundle(trustBundlePath, material);

  // The other services this one calls (identity for its tokens' keys), each behind its own
  // timeouts, retries, breaker and fallback; health polling starts once the servers listen.
  const federation = Federation.fromConfig(config, {
    logger,
    tracer,
    clientTls: clientCerts && (() => ({ cert: clientCerts.current.certChainPem, key: clientCerts.current.keyPem })),
  });
  const identity = identityEndpoints(config);
  // Spent DPoP proofs live in the service's database, so every instance on it refuses a replay.
  const proofReplay = new DatabaseProofReplay(db);
  const bearer = new BearerVerifier({
    issuer: identity.issuer,
    jwksUrl: identity.jwksUrl,
    audience: config.auth.audience,
    clockToleranceS: config.auth.clock_tolerance_s,
    algorithms: config.auth.algorithms,
    keys: federation.identity,
    dpop: new DpopProofVerifier(proofReplay, config.auth.dpop_proof_window_s),
    introspect: def.introspection?.({ config, logger, federation }),
  });
  const urls: ServiceContext["urls"] = {};

  // Security events go to the audit service when `federation.audit.url` is set, through a spool.
  const audit = new AuditSender({
    db,
    protector: barrier,
    client: federation.client("audit"),
    logger,
    policy: retryPolicy(config.federation.audit),
    batchSize: config.federation.audit.batch_size,
    pollMs: config.federation.audit.poll_ms,
  });

  // Notifications to the configured channels, with retries and a dead-letter list (src/notify).
  const notifier = new Notifier(channelsOf(config.notifications), {
    logger,
    retryDelaysMs: config.notifications.retry_seconds.map((s) => s * 1000),
    deadLetters: new DatabaseDeadLetters(db),
  });

  const stopHooks: Array<() => void | Promise<void>> = [];
  const clientCas = new ClientCaSet();
  const ctx: ServiceContext = {
    name: def.name,
    config,
    development: isDevelopment(config),
    db,
    changes: database.changes,
    protector: barrier,
    sessions,
    logger,
    crypto: cryptoDispatcher,
    hsm,
    federation,
    bearer,
    urls,
    audit,
    notifier,
    onStop: (fn) => void stopHooks.push(fn),
    addClientCa: (pem) => clientCas.add(pem),
  };
  const app = buildPublicApp(def, ctx);
  const metrics = new HttpMetrics();
  metrics.gauge("barrier_sealed", () => (barrier.sealed ? 1 : 0));
  // The last readiness answer (readyz's checks; the metrics route runs them before each export).
  let readyNow = false;
  metrics.gauge("service_ready", () => (readyNow ? 1 : 0));
  metrics.collector((service) => federation.metrics.render(service));
  const storageLatency = storageLatencyOf(db);
  if (storageLatency) metrics.collector((service) => storageLatency.render(service));
  if (tracing) metrics.collector((service) => tracing.exporter.metrics(service));
  // Set when a graceful stop begins: the pipeline answers new requests 503 + Connection: close.
  let draining = false;
  const pipeline: PipelineDeps = {
      app,
      fastRoutes: def.fastRoutes?.(ctx),
      logger,
      metrics,
      allowlist: new IpAllowlist(config.security.ip_allowlist),
      limiter: new RateLimiter(config.security.rate_limit_rps, config.security.rate_limit_burst),
      bodyLimit: config.server.body_limit,
      corsOrigins: config.browser.cors_origins,
      serviceCorsOrigins: config.auth.cors_origins,
      pageConnect: def.pageConnect?.(config),
      protocolCors: def.protocolCors?.(config),
      sealed: () => barrier.sealed,
      draining: () => draining,
      docsConnect: config.explorer.token_url ? [new URL(config.explorer.token_url).origin] : [],
      bearer,
      origin: () => urls.public,
      sessions,
      accessLog: config.log.access,
      tracer,
  };
  let runtimeServer: HttpServer | undefined;
  const onNode = config.server.listener === "node";
  const handler = publicHandler(pipeline, onNode ? (req) => requestInfo(req).ip : (req) => runtimeServer!.clientAddress(req));

  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  // The node listener serves the public port when configured (strict ALPN, every answer in the
  // service's own form) and always the admin port, where throughput does not matter.
  const nodeListener = (hostname: string, port: number, bodyLimit: number, serve: (req: Request) => Promise<Response>) =>
    startMtlsListener({
      hostname,
      port,
      tls: { cert: material.certChainPem, key: material.keyPem },
      maxRequestBodySize: bodyLimit,
      handler: (req, peer) => {
        requestInfo(req).ip = peer.address;
        return serve(req);
      },
      error: (e) => errorResponse(e, "unknown", logger),
      malformed: (kind) => malformedResponse(kind, metrics),
    });
  const publicServer: Listener = onNode
    ? await nodeListener(config.server.bind, config.server.port, 2 * config.server.body_limit, handler)
    : (runtimeServer = await runtime.serve({
        hostname: config.server.bind,
        port: config.server.port,
        tls: tlsOptions(material),
        // Far above body_limit: the pipeline refuses a declared length over the limit before
        // reading and reads a chunked body only up to the limit, answering 413 in the error
        // model itself; the runtime's own bare 413 is left for bodies of a gigabyte.
        maxRequestBodySize: RUNTIME_BODY_CAP,
        fetch: handler,
        error: (e) => errorResponse(e, "unknown", logger),
      }));

  const admin = adminApp({
    name: def.name,
    adminToken,
    metrics,
    logger,
    ready: async () => {
      const dbPing = await ping(db);
      const sealed = barrier.sealed;
      // A federated service counts while it is reachable or its fallback covers it.
      const fed = federation.readiness();
      readyNow = dbPing.ok && !sealed && !stopping && fed.ok;
      return {
        ready: readyNow,
        checks: { database: dbPing, barrier: { sealed }, draining: !!stopping, federation: fed.peers },
      };
    },
    details: () => ({ runtime: runtime.name, barrier: barrier.status(), database: { mode: database.mode, location: database.location }, tls: material.leaf }),
    barrier,
    unsealFiles,
    notifier,
    shutdown: () => void stop(),
  });
  const adminServer = await nodeListener("127.0.0.1", config.server.admin_port, 64 * 1024, adminHandler(admin, logger));
  const mtls = config.server.mtls_port === undefined ? undefined : await startMtls(config, pipeline, material, logger, reloadServerLeaf, clock, clientCas, () => urls.mtls);
  const grpcServer = config.server.grpc_port === undefined ? undefined : await startGrpc(def, ctx, material, () => barrier.sealed, reloadServerLeaf, clock);
  const proofSweep = setInterval(() => void proofReplay.sweep().catch((e) => logger.warn("sweeping spent DPoP proofs failed", { error: e })), PROOF_SWEEP_MS);
  (proofSweep as { unref?: () => void }).unref?.();

  async function stop(): Promise<void> {
    if (stopping) return stopping;
    stopping = (async () => {
      logger.info("stopping: draining in-flight requests");
      // First the pipeline refuses new requests with 503 + Connection: close while those in
      // flight finish, for at least DRAIN_GRACE_MS so clients on kept-alive connections hear
      // it; only then does the server stop taking connections and close the idle ones.
      draining = true;
      clearInterval(proofSweep);
      const deadline = Date.now() + config.server.shutdown_timeout_ms;
      const graceEnd = Date.now() + Math.min(DRAIN_GRACE_MS, config.server.shutdown_timeout_ms);
      const pending = () => publicServer.pendingRequests + (mtls?.listener.pendingRequests ?? 0);
      while (Date.now() < deadline && (Date.now() < graceEnd || pending() > 0)) await new Promise((r) => setTimeout(r, 20));
      const drain = Promise.all([publicServer.stop(false), mtls?.listener.stop(false), grpcServer?.listener.stop(false)]);
      const timeout = new Promise<void>((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref?.());
      await Promise.race([drain, timeout]);
      await publicServer.stop(true);
      await mtls?.listener.stop(true);
      await grpcServer?.listener.stop(true);
      await adminServer.stop(true);
      await clientCerts?.stop();
      await mtls?.serverCerts?.stop();
      await grpcServer?.serverCerts?.stop();
      await federation.stop();
      for (const hook of stopHooks) {
        try {
          await hook();
        } catch (e) {
          logger.warn("a stop hook failed", { error: e });
        }
      }
      // After the apps' hooks, which may still record events: what is not sent stays spooled.
      await audit.stop();
      // Deliveries in flight stop retrying: what fails now is dead-lettered and logged.
      notifier.stop();
      await notifier.settle();
      await barrier.seal();
      await hsm?.close();
      await database.close();
      // Last: the spans of the requests that finished during the drain go out too.
      await tracing?.exporter.shutdown();
      logger.info("stopped");
      resolveStopped();
    })();
    return stopping;
  }

  federation.start();
  audit.start();
  tracing?.exporter.start();
  clientCerts?.start(config.mtls.renew_check_s * 1000);
  mtls?.serverCerts?.start(config.mtls.renew_check_s * 1000);
  grpcServer?.serverCerts?.start(config.mtls.renew_check_s * 1000);
  const publicUrl = (config.server.public_url ?? serverUrl(config.server.bind, publicServer.port!)).replace(/\/+$/, "");
  urls.public = publicUrl;
  urls.mtls = mtls && (config.server.mtls_public_url ?? serverUrl(config.server.bind, mtls.listener.port)).replace(/\/+$/, "");
  const running: RunningService = {
    name: def.name,
    config,
    publicUrl,
    adminUrl: serverUrl("127.0.0.1", adminServer.port!),
    mtlsUrl: urls.mtls,
    grpcAddress: grpcServer && `${serverUrl(config.server.bind, grpcServer.listener.port).replace(/^https:\/\//, "")}`,
    grpcDirect: grpcServer?.listener.direct,
    docsUrl: `${publicUrl}${DOCS_PATH}`,
    trustBundlePath,
    adminToken,
    ctx,
    barrier,
    database,
    certificates: { client: clientCerts, mtlsServer: mtls?.serverCerts },
    stop,
    stopped,
  };
  // What starting allocated (migrations, bundles, key imports) is garbage now: give it back.
  runtime.collectGarbage();
  logger.info("listening", { public: running.publicUrl, admin: running.adminUrl, mtls: running.mtlsUrl, grpc: running.grpcAddress, docs: running.docsUrl, trust_bundle: trustBundlePath });
  return running;
}

/** CAs added at run time (`ServiceContext.addClientCa`) that the mTLS listener trusts too. */
class ClientCaSet {
  private readonly pems = new Set<string>();
  private listener?: () => void;

  add(pem: string): void {
    const text = pem.trim() + "\n";
    if (this.pems.has(text)) return;
    this.pems.add(text);
    this.listener?.();
  }

  pem(): string {
    return [...this.pems].join("");
  }

  onChange(fn: () => void): void {
    this.listener = fn;
  }
}

/** The PEM blocks after the first (the intermediates of a leaf-first chain). */
function chainAfterLeaf(chainPem: string): string {
  return (chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g) ?? []).slice(1).join("");
}

/** The certificates client certificates must chain to: `mtls.ca_file`, else (auto mode) the suite CA. */
function clientCaOf(config: ServiceConfig, material: TlsMaterial, port: string): string {
  if (config.mtls.ca_file) return readFileSync(config.mtls.ca_file, "utf8");
  if (config.tls.mode === "auto") return material.caBundlePem + chainAfterLeaf(material.certChainPem);
  throw new AppError("config_invalid", `mtls.ca_file: required for ${port} when tls.mode is static`);
}

/**
 * The gRPC listener (`server.grpc_port`) of an app with a gRPC API, on the mTLS listener's trust:
 * the same client CA and `mtls.principals`. gRPC is loaded here, only when the port is set.
 */
async function startGrpc(
  def: ServiceDefinition,
  ctx: ServiceContext,
  material: TlsMaterial,
  sealed: () => boolean,
  reloadServerLeaf: ((now: Date) => Promise<TlsMaterial>) | undefined,
  clock: () => Date,
): Promise<{ listener: GrpcListener; serverCerts?: RenewingTlsMaterial }> {
  const { config } = ctx;
  const ca = clientCaOf(config, material, "server.grpc_port");
  const { startGrpcListener } = await import("./grpc-listener.ts");
  const listener = await startGrpcListener({
    hostname: config.server.bind,
    port: config.server.grpc_port!,
    tls: { cert: material.certChainPem, key: material.keyPem, ca },
    principals: new CertificatePrincipals(config.mtls.principals),
    maxMessageBytes: config.server.body_limit,
    sealed,
    logger: ctx.logger,
    api: def.grpc!(ctx),
  });
  const serverCerts = renewingLeaf("gRPC", material, ctx.logger, reloadServerLeaf, clock, (m) => listener.setTls({ cert: m.certChainPem, key: m.keyPem, ca }));
  return { listener, serverCerts };
}

/**
 * The mutual-TLS listener (`server.mtls_port`): the public pipeline, whose `/service/api`
 * authenticates by client certificate (`mtls.principals`), or by an access token bound to that
 * certificate (RFC 8705 `cnf.x5t#S256`). Client certificates must chain to `mtls.ca_file`, by
 * default the suite CA (with `mtls.self_signed`, unchained ones are accepted too, for bound
 * tokens only); in auto mode the listener's own leaf renews in place.
 */
async function startMtls(
  config: ServiceConfig,
  pipeline: PipelineDeps,
  material: TlsMaterial,
  logger: Logger,
  reloadServerLeaf: ((now: Date) => Promise<TlsMaterial>) | undefined,
  clock: () => Date,
  clientCas: ClientCaSet,
  origin: () => string | undefined,
): Promise<{ listener: MtlsListener; serverCerts?: RenewingTlsMaterial }> {
  const base = clientCaOf(config, material, "server.mtls_port");
  const trusted = () => base + clientCas.pem();
  const ca = trusted();
  const principals = new CertificatePrincipals(config.mtls.principals);
  const acceptUnchained = config.mtls.self_signed;
  const handler = publicHandler(
    {
      ...pipeline,
      origin,
      serviceAuth: (req, info) => {
        const authorization = req.headers.get("authorization");
        if (authorization === null) return principals.authenticate(info.clientCert);
        return pipeline.bearer.verify(authorization, req, { htu: (r) => `${origin()}${new URL(r.url).pathname}`, clientCert: info.clientCert, mtls: true });
      },
    },
    (req) => requestInfo(req).ip,
  );
  // A connection's certificate is parsed once, for all the requests it carries.
  const parsed = new WeakMap<object, Promise<ClientCertificate | undefined>>();
  const certificateOf = (peer: MtlsPeer) => {
    if (!peer.certificate) return undefined;
    let p = parsed.get(peer.connection);
    if (!p) {
      // An unchained certificate had its dates checked by nobody: one outside them counts as none.
      p = parseClientCertificate(peer.certificate, peer.authorized).then((c) => (c.verified || withinValidity(c) ? c : undefined));
      parsed.set(peer.connection, p);
    }
    return p;
  };
  const listener = await startMtlsListener({
    hostname: config.server.bind,
    port: config.server.mtls_port!,
    tls: { cert: material.certChainPem, key: material.keyPem, ca, acceptUnchained },
    maxRequestBodySize: 2 * config.server.body_limit,
    handler: async (req, peer) => {
      const info = requestInfo(req);
      info.ip = peer.address;
      info.mtls = true;
      info.clientCert = await certificateOf(peer);
      return handler(req);
    },
    error: (e) => errorResponse(e, "unknown", logger),
  });
  let current = { cert: material.certChainPem, key: material.keyPem };
  clientCas.onChange(() => listener.setTls({ ...current, ca: trusted(), acceptUnchained }));
  const serverCerts = renewingLeaf("mTLS", material, logger, reloadServerLeaf, clock, (m) => {
    current = { cert: m.certChainPem, key: m.keyPem };
    listener.setTls({ ...current, ca: trusted(), acceptUnchained });
  });
  return { listener, serverCerts };
}

/** A listener's server leaf, renewed in place (auto mode); `apply` hands each new one to the listener. */
function renewingLeaf(
  what: string,
  material: TlsMaterial,
  logger: Logger,
  reloadServerLeaf: ((now: Date) => Promise<TlsMaterial>) | undefined,
  clock: () => Date,
  apply: (m: TlsMaterial) => void,
): RenewingTlsMaterial | undefined {
  return (
    reloadServerLeaf &&
    new RenewingTlsMaterial(material, {
      reload: reloadServerLeaf,
      clock,
      onRenew: (m) => {
        apply(m);
        logger.info(`${what} server certificate renewed`, { serial: m.leaf.serialNumber, not_after: m.leaf.notAfter });
      },
      onError: (e) => logger.warn(`${what} server certificate renewal failed; retrying at the next check`, { error: e }),
    })
  );
}

interface AdminDeps {
  name: string;
  adminToken: string;
  metrics: HttpMetrics;
  logger: Logger;
  ready(): Promise<{ ready: boolean; checks: Record<string, unknown> }>;
  details(): Record<string, unknown>;
  barrier: Barrier;
  unsealFiles: string[];
  notifier: Notifier;
  shutdown(): void;
}


/** The admin server's app: probes, metrics, and token-protected operations. */
function adminApp(d: AdminDeps) {
  const started = Date.now();
  const requireAdmin = ({ request }: { request: Request }) => {
    const h = request.headers.get("authorization") ?? "";
    if (!h.startsWith("Bearer ") || !equalStrings(h.slice(7), d.adminToken)) {
      throw new AppError("unauthenticated", "the admin token is required", { headers: { "WWW-Authenticate": "Bearer" } });
    }
  };
  return new Elysia({ prefix: "/admin/v1" })
    .use(appBase)
    .onError(mapError)
    .get("/livez", () => ({ status: "alive" }))
    .get("/readyz", async ({ set }) => {
      const r = await d.ready();
      set.status = r.ready ? 200 : 503;
      return { status: r.ready ? "ready" : "not_ready", checks: r.checks };
    })
    .get("/healthz", async () => {
      const r = await d.ready();
      return { service: d.name, status: r.ready ? "ready" : "not_ready", uptime_s: Math.round((Date.now() - started) / 1000), checks: r.checks, ...d.details() };
    })
    .get("/metrics", async () => {
      await d.ready(); // refreshes the service_ready gauge
      return new Response(d.metrics.render(d.name), { headers: { "content-type": "text/plain; version=0.0.4" } });
    })
    .post(
      "/shutdown",
      ({ set, request }) => {
        d.logger.warn("shutdown requested", { request_id: requestInfo(request).id });
        setTimeout(d.shutdown, 10);
        set.status = 202;
        return { status: "stopping" };
      },
      { beforeHandle: requireAdmin },
    )
    .use(deadLetterRoutes(d.notifier, requireAdmin))
    .post("/barrier/seal", () => d.barrier.seal(), { beforeHandle: requireAdmin })
    .post("/barrier/unseal", () => d.barrier.unsealFromFiles(d.unsealFiles), { beforeHandle: requireAdmin })
    .post(
      "/barrier/rotate/:layer",
      async ({ params }) => {
        const layer = params.layer;
        if (layer !== "root" && layer !== "intermediate" && layer !== "content") {
          throw new AppError("not_found", "layer must be root, intermediate or content");
        }
        const status =
          layer === "root" ? await d.barrier.rotateRoot() : layer === "intermediate" ? await d.barrier.rotateIntermediate() : await d.barrier.rotateContent();
        return { layer, status };
      },
      { beforeHandle: requireAdmin },
    );
}
