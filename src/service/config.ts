/**
 * The one config loader of cryptoutil.
 *
 * Precedence, lowest to highest: built-in defaults, the suite's wiring (JSON in
 * `CRYPTOUTIL_SUITE_DEFAULTS`, set by the `npm start` launcher), YAML files
 * (`CRYPTOUTIL_CONFIG`, then each `--config PATH` in order, each merged over the last),
 * environment variables `CRYPTOUTIL_<SECTION>_<KEY>` (`CRYPTOUTIL_APP_<KEY>` for a top-level
 * key of the app's own section, a string unless it is a JSON list or object; JSON for a list of
 * objects), then command-line flags
 * `--section.key=value`. The merged tree is validated
 * with valibot once at start; the first bad value stops start-up with one
 * message that names its key (`server.port: ...`).
 */
import * as v from "valibot";
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { AppError } from "./errors.ts";
import { BrowserLoginConfig } from "../auth/bff.ts";
import { defaultFederationConfig, FederationConfig } from "../federation/config.ts";
import { TelemetryConfig } from "../telemetry/config.ts";
import { MtlsPrincipalConfig } from "../auth/client-cert.ts";
import { NotificationsConfig } from "../notify/channels.ts";

const port = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535));
const positiveInt = v.pipe(v.number(), v.integer(), v.minValue(1));
const stringList = v.array(v.pipe(v.string(), v.minLength(1)));

/** The config every service shares. Apps add their own section under `app`. */
/** Sections shared by every service; strict, since an unknown key is a typo. */
const sections = {
  server: v.strictObject({
    /** Public bind address. */
    bind: v.pipe(v.string(), v.minLength(1)),
    port,
    /** Admin port; the admin server always binds 127.0.0.1. */
    admin_port: port,
    /** Largest request body accepted, in bytes. */
    body_limit: positiveInt,
    /** How long a graceful shutdown waits for in-flight requests. */
    shutdown_timeout_ms: positiveInt,
    /** Public base URL override (for links and redirects behind a proxy). */
    public_url: v.optional(v.pipe(v.string(), v.url())),
    /** Port of the mutual-TLS listener, bound like the public one (`server.bind`); unset: no such listener. */
    mtls_port: v.optional(port),
    /**
     * What serves the public port: `bun` (Bun.serve, the fastest; no ALPN, and the runtime
     * answers malformed HTTP itself) or `node` (node:http2 with allowHTTP1: strict ALPN h2 and
     * http/1.1, every answer in the service's own form, about 0.6 of the throughput).
     */
    listener: v.picklist(["bun", "node"]),
    /**
     * Port of the app's gRPC API (sm-kms's KeyService), bound like the public one, mutual TLS with
     * the mTLS listener's CA and `mtls.principals`; unset: no gRPC listener, and gRPC is never loaded.
     */
    grpc_port: v.optional(port),
    /** The mTLS listener's base URL as clients reach it (DPoP `htu`, identity-authz's mTLS endpoint aliases). Default: its bind address and port. */
    mtls_public_url: v.optional(v.pipe(v.string(), v.url(), v.startsWith("https://"))),
  }),
  tls: v.strictObject({
    mode: v.picklist(["auto", "static"]),
    /** Extra DNS names / IPs for the auto certificate. */
    hostnames: stringList,
    cert_file: v.optional(v.string()),
    cert_pem: v.optional(v.string()),
    key_file: v.optional(v.string()),
    key_pem: v.optional(v.string()),
    /** Where the suite CA lives (shared by all services on one host). Default: `<data.suite_dir>/suite-ca`. */
    suite_ca_dir: v.optional(v.string()),
  }),
  data: v.strictObject({
    /** The service's data directory (database, trust bundle). */
    dir: v.pipe(v.string(), v.minLength(1)),
    /**
     * The data root shared by the services of one suite (the development unseal secret and
     * the suite CA); `npm start` sets it to its `--data` folder. Default: data.dir itself, so
     * a service started alone writes nothing outside the directory its operator chose.
     */
    suite_dir: v.optional(v.pipe(v.string(), v.minLength(1))),
  }),
  database: v.strictObject({
    /** ":memory:", "file:...", "libsql://...", "http(s)://...", "postgres://user@host/db". Default: file in data.dir. */
    url: v.optional(v.string()),
    auth_token_file: v.optional(v.string()),
    /** PostgreSQL: file holding the password (never put it in the url). */
    password_file: v.optional(v.pipe(v.string(), v.minLength(1))),
    /** PostgreSQL: connections in each instance's pool (default 10). */
    pool_size: v.optional(v.pipe(positiveInt, v.maxValue(1000))),
    /** Embedded replica: the remote primary to sync from. */
    sync_url: v.optional(v.string()),
    sync_interval_s: v.optional(positiveInt),
  }),
  barrier: v.strictObject({
    /** Files holding the unseal secret(s). Empty: a development secret is created in data.suite_dir (default data.dir). */
    unseal_files: stringList,
  }),
  auth: v.strictObject({
    /** Expected `iss` of access tokens. Unset: /service rejects every request. */
    issuer: v.optional(v.pipe(v.string(), v.url())),
    /** JWKS URL of the issuer; default `<issuer>/.well-known/jwks.json` is NOT assumed: set it. */
    jwks_url: v.optional(v.pipe(v.string(), v.url())),
    /** Expected audience of access tokens. */
    audience: v.pipe(v.string(), v.minLength(1)),
    /** PEM bundle that verifies the issuer's TLS certificate. */
    ca_file: v.optional(v.string()),
    clock_tolerance_s: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(300)),
    /** Allowed JWS algorithms for access tokens. */
    algorithms: stringList,
    /** Accepted age of a DPoP proof (RFC 9449) sent with a DPoP-bound access token, in seconds. */
    dpop_proof_window_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(5), v.maxValue(600)), 60),
    /**
     * Origins whose pages may call /service/api/ with a token in the request (CORS without
     * credentials: no cookie is ever accepted there), e.g. a single-page app holding a DPoP-bound token.
     */
    cors_origins: stringList,
  }),
  /** The API explorer at /docs. */
  explorer: v.strictObject({
    /**
     * Token endpoint for the explorer's OAuth 2 client-credentials flow ("Test Request" fetches
     * a token there, with `resource` = auth.audience). Unset: the explorer takes a pasted token.
     */
    token_url: v.optional(v.pipe(v.string(), v.url(), v.startsWith("https://"))),
    /** Client id the explorer fills in (its secret is never served). */
    client_id: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200))),
  }),
  browser: v.strictObject({
    /** Origins allowed for CORS and for the Origin check of unsafe requests. */
    cors_origins: stringList,
    session_idle_s: positiveInt,
    session_absolute_s: positiveInt,
    /** Log-in through identity-authz (authorization code + PKCE); absent: no /browser/login. */
    login: v.optional(BrowserLoginConfig),
    /** The suite's consoles in the navigation bar (name, /browser/ URL); empty: this service only. */
    consoles: v.optional(
      v.array(v.strictObject({ name: v.pipe(v.string(), v.minLength(1), v.maxLength(40)), url: v.pipe(v.string(), v.url(), v.startsWith("https://")) })),
      [],
    ),
  }),
  security: v.strictObject({
    /** CIDR ranges allowed to reach the public server. */
    ip_allowlist: stringList,
    /** Token bucket per client IP: sustained requests per second and burst size. */
    rate_limit_rps: positiveInt,
    rate_limit_burst: positiveInt,
  }),
  /** A PKCS#11 token (HSM). Configured when `pin_file` is set; a bad module, token or PIN stops the start. */
  hsm: v.strictObject({
    module: v.optional(v.pipe(v.string(), v.minLength(1))),
    token_label: v.optional(v.pipe(v.string(), v.minLength(1))),
    slot: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
    pin_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  }),
  /** Mutual TLS: who may call the mTLS port, and the service's own client certificate. */
  mtls: v.strictObject({
    /** PEM bundle that client certificates must chain to. Unset: the suite CA (auto mode only). */
    ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
    /** Client certificates allowed on `/service/api` of the mTLS port, and the principal each becomes. */
    principals: v.array(MtlsPrincipalConfig),
    /**
     * Also accept client certificates that do not chain to the CA (self-signed, RFC 8705 §2.2):
     * they never map to a principal, and only bind access tokens (and authenticate identity-authz's
     * `self_signed_tls_client_auth` clients). Default false: such a handshake fails.
     */
    self_signed: v.optional(v.boolean(), false),
    /** Validity of the service's own client certificate (auto mode); renewed when a third remains. */
    client_validity_days: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(397)),
    /** How often the certificates are checked for renewal. */
    renew_check_s: positiveInt,
  }),
  /** Where the other services of the suite are and how they are called (src/federation/config.ts). */
  federation: FederationConfig,
  /** Tracing: OpenTelemetry spans exported over OTLP/HTTP when an endpoint is set (src/telemetry/config.ts). */
  telemetry: TelemetryConfig,
  /** Channels the service's notifications go to (src/notify): signed webhooks, e-mail, Slack-compatible. */
  notifications: NotificationsConfig,
  log: v.strictObject({
    level: v.picklist(["debug", "info", "warn", "error"]),
    /** One JSON line per request. */
    access: v.boolean(),
  }),
};

/** The config schema of a service: the shared sections plus the app's own `app` section. */
export function serviceConfigSchema<A extends v.GenericSchema>(app: A) {
  return v.strictObject({ ...sections, app });
}

/** The shared schema with a free-form `app` section, which each app validates itself. */
export const ServiceConfigSchema = serviceConfigSchema(v.optional(v.record(v.string(), v.unknown())));

export type ServiceConfig = v.InferOutput<typeof ServiceConfigSchema>;

/** An app's own `app` section checked against its schema: a bad member is `config_invalid` naming `app.<key>`. */
export function parseAppSection<S extends v.GenericSchema>(schema: S, app: unknown): v.InferOutput<S> {
  const r = v.safeParse(schema, app ?? {});
  if (r.success) return r.output;
  const issue = r.issues[0];
  const path = issue.path?.map((p) => String(p.key)).join(".");
  throw new AppError("config_invalid", `app${path ? "." + path : ""}: ${issue.message}`);
}

/** Built-in defaults; a service overrides its port and data dir. */
export function defaultConfig(service: string, publicPort: number): ServiceConfig {
  return {
    server: {
      bind: "127.0.0.1",
      port: publicPort,
      admin_port: 0,
      listener: "bun",
      body_limit: 1024 * 1024,
      shutdown_timeout_ms: 10_000,
    },
    tls: { mode: "auto", hostnames: [] },
    data: { dir: `data/${service}` },
    database: {},
    barrier: { unseal_files: [] },
    auth: {
      audience: service,
      clock_tolerance_s: 30,
      algorithms: ["ES256", "ES384", "PS256", "RS256", "EdDSA"],
      dpop_proof_window_s: 60,
      cors_origins: [],
    },
    explorer: {},
    browser: { cors_origins: [], session_idle_s: 1800, session_absolute_s: 12 * 3600, consoles: [] },
    security: { ip_allowlist: ["0.0.0.0/0", "::/0"], rate_limit_rps: 1000, rate_limit_burst: 2000 },
    hsm: {},
    mtls: { principals: [], self_signed: false, client_validity_days: 30, renew_check_s: 3600 },
    federation: defaultFederationConfig(),
    telemetry: {},
    notifications: { webhooks: [], email: [], slack: [], retry_seconds: [1, 4, 16] },
    log: { level: "info", access: true },
  };
}

/** Development mode: no unseal files configured, so the barrier runs on a development secret. */
export function isDevelopment(config: Pick<ServiceConfig, "barrier">): boolean {
  return config.barrier.unseal_files.length === 0;
}

/** The https URL clients use for a server bound to `host` (a wildcard bind is reached on 127.0.0.1). */
export function serverUrl(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return `https://${h}:${port}`;
}

type Tree = Record<string, unknown>;

const isTree = (x: unknown): x is Tree => typeof x === "object" && x !== null && !Array.isArray(x);

function deepMerge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, val] of Object.entries(over)) {
    out[k] = isTree(val) && isTree(out[k]) ? deepMerge(out[k] as Tree, val) : val;
  }
  return out;
}

/** The schema node at a dotted path, unwrapping optionals, to coerce strings from env and flags. */
function schemaAt(schema: v.GenericSchema, path: string[]): v.GenericSchema | undefined {
  let node: any = schema;
  for (const key of path) {
    while (node?.type === "optional" || node?.type === "nullable") node = node.wrapped;
    if (node?.type !== "object" && node?.type !== "strict_object") return undefined;
    node = node.entries[key];
  }
  while (node?.type === "optional" || node?.type === "nullable") node = node.wrapped;
  return node;
}

/** Turns an env/flag string into the type the schema expects; leaves it a string when unsure. */
function coerce(schema: v.GenericSchema, path: string[], raw: string): unknown {
  const node: any = schemaAt(schema, path);
  switch (node?.type) {
    case "number": {
      const n = Number(raw);
      return raw.trim() === "" || Number.isNaN(n) ? raw : n;
    }
    case "boolean":
      return raw === "true" || raw === "1" ? true : raw === "false" || raw === "0" ? false : raw;
    case "array":
      // A list of objects (e.g. mtls.principals) is JSON; any other list is comma-separated.
      if (node.item?.type === "object" || node.item?.type === "strict_object") return jsonOr(raw);
      return raw === "" ? [] : raw.split(",").map((s) => s.trim());
    default:
      // A key the shared schema does not know (the app's own section, which the app checks
      // itself): a JSON list or object is parsed (e.g. app.client_urls_allowed_origins), anything
      // else stays a string.
      if (node === undefined && /^\s*[[{]/.test(raw)) return jsonOr(raw);
      return raw;
  }
}

/** The value of a JSON text, or the text itself (which validation then refuses, naming the key). */
function jsonOr(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function setPath(tree: Tree, path: string[], value: unknown): void {
  let node = tree;
  for (const key of path.slice(0, -1)) {
    if (!isTree(node[key])) node[key] = {};
    node = node[key] as Tree;
  }
  node[path[path.length - 1]!] = value;
}

/**
 * Resolves an env key like SERVER_ADMIN_PORT to ["server", "admin_port"], or
 * BROWSER_LOGIN_CLIENT_ID to ["browser", "login", "client_id"], using the schema's
 * nested objects (underscores are ambiguous, so the schema decides where a level ends).
 */
function envPath(schema: v.GenericSchema, rest: string): string[] | undefined {
  const walk = (node: any, lower: string): string[] | undefined => {
    while (node?.type === "optional" || node?.type === "nullable") node = node.wrapped;
    // A free-form section (the shared schema's `app`, which each app checks itself): the rest is
    // one key, e.g. APP_AUTHZ_URL -> app.authz_url; its value stays a string, as from a flag.
    if (node?.type === "record") return lower === "" ? undefined : [lower];
    if (node?.type !== "object" && node?.type !== "strict_object") return undefined;
    for (const key of Object.keys(node.entries)) {
      if (lower === key) return [key];
      if (lower.startsWith(key + "_")) {
        const deeper = walk(node.entries[key], lower.slice(key.length + 1));
        if (deeper) return [key, ...deeper];
      }
    }
    return undefined;
  };
  return walk(schema, rest.toLowerCase());
}

export interface LoadOptions<S extends v.GenericSchema> {
  schema: S;
  defaults: v.InferInput<S>;
  argv?: string[];
  env?: Record<string, string | undefined>;
}

/**
 * Loads and validates config. Throws `AppError("config_invalid")` with a message
 * naming the offending key.
 */
export function loadConfig<S extends v.GenericSchema>(opts: LoadOptions<S>): v.InferOutput<S> {
  const env = opts.env ?? process.env;
  const argv = opts.argv ?? process.argv.slice(2);
  let tree: Tree = structuredClone(opts.defaults) as Tree;

  const suite = env.CRYPTOUTIL_SUITE_DEFAULTS;
  if (suite) {
    let doc: unknown;
    try {
      doc = JSON.parse(suite);
    } catch (e) {
      throw new AppError("config_invalid", `CRYPTOUTIL_SUITE_DEFAULTS: ${(e as Error).message}`, { status: 400 });
    }
    if (!isTree(doc)) throw new AppError("config_invalid", "CRYPTOUTIL_SUITE_DEFAULTS: not a JSON object", { status: 400 });
    tree = deepMerge(tree, doc);
  }

  const flags: Array<[string, string]> = [];
  const configPaths = env.CRYPTOUTIL_CONFIG ? [env.CRYPTOUTIL_CONFIG] : [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new AppError("config_invalid", `unexpected argument '${arg}'`, { status: 400 });
    const eq = arg.indexOf("=");
    const key = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let value = eq >= 0 ? arg.slice(eq + 1) : argv[i + 1];
    if (eq < 0) i++;
    if (value === undefined) throw new AppError("config_invalid", `${key}: missing value`, { status: 400 });
    if (key === "config") configPaths.push(value);
    else flags.push([key, value]);
  }

  for (const configPath of configPaths) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(configPath, "utf8"));
    } catch (e) {
      throw new AppError("config_invalid", `config file ${configPath}: ${(e as Error).message}`, { status: 400 });
    }
    if (doc != null && !isTree(doc)) throw new AppError("config_invalid", `config file ${configPath}: not a mapping`, { status: 400 });
    if (doc) tree = deepMerge(tree, doc);
  }

  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("CRYPTOUTIL_") || name === "CRYPTOUTIL_CONFIG" || name === "CRYPTOUTIL_SUITE_DEFAULTS" || value === undefined) continue;
    const path = envPath(opts.schema, name.slice("CRYPTOUTIL_".length));
    if (!path) continue; // other CRYPTOUTIL_* variables belong to tools, not to this service
    setPath(tree, path, coerce(opts.schema, path, value));
  }

  for (const [key, value] of flags) {
    const path = key.split(".");
    // The `app` section belongs to the app, which validates it itself.
    const appKey = path[0] === "app" && path.length > 1;
    if (!appKey && !schemaAt(opts.schema, path)) throw new AppError("config_invalid", `${key}: unknown setting`, { status: 400 });
    setPath(tree, path, coerce(opts.schema, path, value));
  }

  const result = v.safeParse(opts.schema, tree);
  if (!result.success) {
    const issue = result.issues[0];
    const key = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "(root)";
    throw new AppError("config_invalid", `${key}: ${issue.message}`, { status: 400 });
  }
  return result.output;
}
