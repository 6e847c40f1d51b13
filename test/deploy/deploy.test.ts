/**
 * Checks of the deploy files without a container engine: compose.yml and the Kubernetes
 * manifests are parsed and checked field by field, the Dockerfile by a small instruction
 * parser; `docker compose config` / `docker-compose config` and `kubectl kustomize` validate
 * them too when those clients are installed (they need no daemon or cluster). The health
 * check script is run for real against a TLS server using the suite's auto certificates.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { loadOrCreateTlsMaterial, type TlsMaterial } from "../../src/pki/tls-material.ts";
import { DirectoryStore } from "../../src/pki/store.ts";
import { suiteCaSealerFromSecrets } from "../../src/pki/sealer.ts";
import { createSuiteCa } from "../../src/pki/suite-ca.ts";
import { barrierSealer, tempDir } from "../pki/helpers.ts";
import { resolveConfig } from "../../src/service/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import type { ServiceDefinition } from "../../src/service/context.ts";
import { AUDIT_MTLS_PORT, IDP_MTLS_PORT, suiteDefaults } from "../../scripts/suite/manifest.ts";
import { parsePkiCaConfig } from "../../apps/pki-ca/config.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
const APPS = new URL("../../apps/", import.meta.url).pathname;

/**
 * The suite: what `npm start` runs (every app with a main.ts), each app's definition from its
 * service.ts, and its default public port.
 */
const DEFS: Record<string, ServiceDefinition> = {};
for (const app of (await readdir(APPS)).sort()) {
  if (!(await Bun.file(join(APPS, app, "main.ts")).exists())) continue;
  const mod = (await import(join(APPS, app, "service.ts"))) as Record<string, unknown>;
  const def = Object.values(mod).find((x): x is ServiceDefinition => typeof x === "object" && x !== null && (x as Obj).name === app && typeof (x as Obj).defaultPort === "number");
  if (!def) throw new Error(`apps/${app}/service.ts exports no service definition named ${app}`);
  DEFS[app] = def;
}
const SUITE: Record<string, number> = Object.fromEntries(Object.entries(DEFS).map(([n, d]) => [n, d.defaultPort]));
const NAMES = Object.keys(SUITE).sort();
/** The mutual-TLS ports the deployment opens: audit's event intake, identity-idp's certificate sign-in. */
const MTLS: Record<string, number> = { audit: AUDIT_MTLS_PORT, "identity-idp": IDP_MTLS_PORT };
/** Where a service's own trust bundle (with the suite root) is written in the container. */
const TRUST_BUNDLE = "/data/trust-bundle.pem";

type Obj = Record<string, any>;

/** The config path of an env name's rest (`database_password_file` -> database.password_file), found in `config`. */
function lookup(node: any, lower: string): unknown {
  for (const key of Object.keys(node ?? {})) {
    if (lower === key) return node[key];
    if (lower.startsWith(key + "_") && typeof node[key] === "object") {
      const v = lookup(node[key], lower.slice(key.length + 1));
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

/** Resolves a service's config from a container's environment and checks that every CRYPTOUTIL_ variable landed on its key. */
function configOf(app: string, env: Record<string, string>): ServiceConfig {
  const config = resolveConfig(DEFS[app]!, { argv: [], env });
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith("CRYPTOUTIL_")) continue;
    const got = lookup(config, k.slice("CRYPTOUTIL_".length).toLowerCase());
    // A list of objects, or an object, is JSON; other lists are comma-separated.
    if (/^\s*[[{]/.test(v)) expect({ k, got }).toEqual({ k, got: JSON.parse(v) });
    else expect({ k, got: Array.isArray(got) ? got.join(",") : String(got) }).toEqual({ k, got: v });
  }
  return config;
}

/**
 * The deployment wires a service as `npm start` does (scripts/suite/manifest.ts), with the
 * services' addresses in the deployment (`urls`) and the container's own trust bundle as the CA
 * file: /service trusts identity-authz's tokens (issuer `public`, keys in-network), events go to
 * audit's mTLS port, audit maps every other service's client certificate, identity-idp has its
 * mTLS port and pki-ca, identity-authz and identity-idp find each other, pki-ca knows its URL.
 * `publicUrls` are the browser-facing URLs (identity-authz's issuer, identity-idp, pki-ca).
 */
function expectSuiteWiring(app: string, config: ServiceConfig, urls: Record<string, string>, publicUrls: Record<string, string>): void {
  const want = suiteDefaults(app, { dataRoot: "/unused", urls: { ...urls, ...publicUrls }, demo: false }) as Obj;
  const inNetwork = suiteDefaults(app, { dataRoot: "/unused", urls, demo: false }) as Obj;
  const app_ = (config.app ?? {}) as Obj;
  if (app === "identity-authz") {
    // Its issuer (what the others expect) is its public URL; its admin API trusts its own tokens,
    // with the keys fetched in-network like everyone else.
    const issuer = publicUrls["identity-authz"] ?? urls["identity-authz"];
    expect(config.server.public_url).toBe(issuer);
    expect(config.auth.issuer).toBe(`${issuer}/t/{tenant}`);
    expect(config.auth.jwks_url).toBe(`${urls["identity-authz"]}/t/{tenant}/jwks`);
    expect(config.auth.ca_file).toBe(TRUST_BUNDLE);
    expect(app_.idp_url).toBe(want.app.idp_url);
    expect(app_.idp_jwks_url).toBe(`${urls["identity-idp"]}/t/{tenant}/jwks`);
    // The suite's own services, in-network, may receive its requests (back-channel logout).
    expect([...(app_.client_urls_allowed_origins as string[])].sort()).toEqual([...inNetwork.app.client_urls_allowed_origins].sort());
  } else {
    expect({ app, issuer: config.auth.issuer }).toEqual({ app, issuer: want.auth.issuer });
    expect({ app, jwks: config.auth.jwks_url }).toEqual({ app, jwks: inNetwork.auth.jwks_url });
    expect({ app, ca: config.auth.ca_file }).toEqual({ app, ca: TRUST_BUNDLE });
  }
  if (app === "audit") {
    expect(config.server.mtls_port).toBe(AUDIT_MTLS_PORT);
    expect(config.federation.audit.url).toBeUndefined();
    const byUri = (list: Obj[]) => [...list].sort((a, b) => String(a.uri).localeCompare(String(b.uri)));
    expect(byUri(config.mtls.principals)).toEqual(byUri(want.mtls.principals));
    expect(config.mtls.principals.map((p) => p.subject).sort()).toEqual(NAMES.filter((n) => n !== "audit"));
  } else {
    expect({ app, audit: config.federation.audit.url }).toEqual({ app, audit: want.federation.audit.url });
    expect({ app, ca: config.federation.audit.ca_file }).toEqual({ app, ca: TRUST_BUNDLE });
    expect(config.mtls.principals).toEqual([]);
  }
  if (app === "identity-idp") {
    expect(config.server.mtls_port).toBe(IDP_MTLS_PORT);
    expect(config.federation.ca.url).toBe(inNetwork.federation.ca.url);
    expect(config.federation.ca.ca_file).toBe(TRUST_BUNDLE);
    expect(app_.authz_url).toBe(want.app.authz_url);
    expect(app_.authz_jwks_url).toBe(`${urls["identity-authz"]}/t/{tenant}/jwks`);
    const idp = publicUrls["identity-idp"] ?? urls["identity-idp"]!;
    expect(config.server.public_url).toBe(idp);
    const mtls = new URL(config.server.mtls_public_url!);
    expect([mtls.hostname, mtls.port]).toEqual([new URL(idp).hostname, String(IDP_MTLS_PORT)]);
  } else if (app !== "audit") {
    expect({ app, mtls: config.server.mtls_port }).toEqual({ app, mtls: undefined });
  }
  // pki-ca's base URL (in what it issues) defaults to its server.public_url.
  if (app === "pki-ca") expect(config.server.public_url).toBe(publicUrls["pki-ca"] ?? want.app.base_url);
}

/**
 * The optional external validators: absent is a failure in CI, a printed skip elsewhere.
 * A candidate with `probe` must also answer that command (e.g. the docker CLI without its compose plugin).
 */
function tool(candidates: Array<{ cmd: string[]; probe?: string[] }>, what: string): string[] | undefined {
  for (const { cmd, probe } of candidates) {
    if (Bun.which(cmd[0]!) === null) continue;
    if (probe === undefined) return cmd;
    if (Bun.spawnSync([...cmd, ...probe], { stdout: "ignore", stderr: "ignore" }).exitCode === 0) return cmd;
  }
  if (process.env.CI === "true") throw new Error(`${what} is required in CI`);
  console.warn(`SKIPPED: ${what} not installed`);
  return undefined;
}

// ---------- Dockerfile ----------

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Splits a Dockerfile into instructions: comments dropped, backslash continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "";
  let stage = -1;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (pending !== "" && line.startsWith("#")) continue;
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1).trimEnd() + " ";
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(full);
    if (!m) throw new Error(`unparsable Dockerfile line: ${full}`);
    const op = m[1]!.toUpperCase();
    if (op === "FROM") stage++;
    out.push({ op, args: m[2]!.trim(), stage });
  }
  return out;
}

function jsonArgs(args: string): string[] {
  const a = JSON.parse(args);
  expect(Array.isArray(a)).toBe(true);
  return a as string[];
}

describe("Dockerfile", async () => {
  const text = await readFile(join(DEPLOY, "Dockerfile"), "utf8");
  const ins = parseDockerfile(text);
  const last = Math.max(...ins.map((i) => i.stage));
  const final = ins.filter((i) => i.stage === last);

  test("every FROM is an official image pinned by version", () => {
    const froms = ins.filter((i) => i.op === "FROM");
    expect(froms.length).toBeGreaterThanOrEqual(1);
    for (const f of froms) {
      const image = f.args.split(/\s+/)[0]!;
      expect(image).toMatch(/^[a-z0-9/._-]+:\d+\.\d+\.\d+(-[a-z0-9.-]+)?(@sha256:[0-9a-f]{64})?$/);
      expect(image).not.toContain("latest");
    }
    expect(final.find((i) => i.op === "FROM")!.args).toMatch(/^oven\/bun:\d+\.\d+\.\d+/);
  });

  test("npm ci builds; APP selects apps/$APP/main.ts", () => {
    expect(ins.some((i) => i.op === "RUN" && /\bnpm ci\b/.test(i.args))).toBe(true);
    expect(final.some((i) => i.op === "ARG" && i.args === "APP")).toBe(true);
    expect(final.some((i) => i.op === "ENV" && /\bAPP=\$\{APP\}/.test(i.args))).toBe(true);
    const cmd = jsonArgs(final.find((i) => i.op === "CMD")!.args).join(" ");
    expect(cmd).toContain("apps/${APP:?");
    expect(cmd).toContain("/main.ts");
    expect(cmd).toContain("exec bun");
  });

  test("runs as a non-root user, with a data volume and admin port 9090", () => {
    const users = final.filter((i) => i.op === "USER");
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1]!.args.split(":")[0]!;
    expect(["root", "0"]).not.toContain(user);
    // USER comes before HEALTHCHECK and CMD so both run unprivileged.
    expect(final.indexOf(users[users.length - 1]!)).toBeLessThan(final.findIndex((i) => i.op === "CMD"));
    expect(final.find((i) => i.op === "VOLUME")!.args).toContain("/data");
    const env = final.filter((i) => i.op === "ENV").map((i) => i.args).join(" ");
    expect(env).toContain("CRYPTOUTIL_SERVER_ADMIN_PORT=9090");
    expect(env).toContain("CRYPTOUTIL_DATA_DIR=/data");
  });

  test("HEALTHCHECK calls the admin livez with the trust bundle; EXPOSE lists the public ports", async () => {
    const hc = final.filter((i) => i.op === "HEALTHCHECK");
    expect(hc.length).toBe(1);
    const m = /CMD\s+(\[.*\])$/.exec(hc[0]!.args)!;
    expect(jsonArgs(m[1]!)).toEqual(["bun", "/app/deploy/healthcheck.ts", "livez"]);
    expect(ins.some((i) => i.op === "COPY" && i.args.includes("deploy/healthcheck.ts"))).toBe(true);
    expect(await Bun.file(join(DEPLOY, "healthcheck.ts")).exists()).toBe(true);
    const exposed = final.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/)).map(Number).sort((a, b) => a - b);
    expect(exposed).toEqual([...Object.values(SUITE), ...Object.values(MTLS)].sort((a, b) => a - b));
  });

  test("the parser sees through continuations and comments", () => {
    const p = parseDockerfile("# c\nFROM a:1.2.3 AS x\nRUN a \\\n  # inner\n  b\nUSER 1000\n");
    expect(p).toEqual([
      { op: "FROM", args: "a:1.2.3 AS x", stage: 0 },
      { op: "RUN", args: "a b", stage: 0 },
      { op: "USER", args: "1000", stage: 0 },
    ]);
  });
});

// ---------- compose.yml ----------

/** The services that run as two instances on PostgreSQL (compose and Kubernetes), and their databases. */
const SCALED: Record<string, string> = { "sm-kms": "sm_kms", "pki-ca": "pki_ca", "identity-authz": "identity_authz" };

describe("compose.yml", async () => {
  const text = await readFile(join(DEPLOY, "compose.yml"), "utf8");
  const doc = parse(text, { merge: true }) as Obj;
  /** Compose service name -> app: `<app>-1` and `<app>-2` for the scaled ones, `<app>` for the others. */
  const apps = new Map<string, string>();
  for (const n of NAMES) {
    if (SCALED[n]) for (const i of [1, 2]) apps.set(`${n}-${i}`, n);
    else apps.set(n, n);
  }

  test("every service of the suite, one image, its default port; two instances of the scaled ones", () => {
    expect(Object.keys(doc.services).sort()).toEqual([...apps.keys(), "postgres"].sort());
    const images = new Set([...apps.keys()].map((s) => doc.services[s].image));
    expect(images.size).toBe(1);
    for (const [name, app] of apps) {
      const s = doc.services[name];
      expect(s.environment.APP).toBe(app);
      expect(s.environment.CRYPTOUTIL_SERVER_PORT).toBe(String(SUITE[app]));
      // The first (or only) instance on the default host port, the second on the next one up.
      const hostPort = SUITE[app]! + (name.endsWith("-2") ? 1 : 0);
      // identity-idp's certificate sign-in port too (browsers reach it); audit's mTLS port is for the other containers only.
      expect(s.ports).toEqual([`${hostPort}:${SUITE[app]}`, ...(app === "identity-idp" ? [`${IDP_MTLS_PORT}:${IDP_MTLS_PORT}`] : [])]);
      expect(s.build.dockerfile).toBe("deploy/Dockerfile");
      expect(s.environment.CRYPTOUTIL_TLS_HOSTNAMES.split(",")).toContain(app);
    }
    const hostPorts = (Object.values(doc.services) as Obj[]).flatMap((s) => (s.ports ?? []).map((p: string) => p.split(":")[0]));
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });

  test("non-root, read-only, no capabilities, secrets, volumes, health checks on readyz", () => {
    expect(Object.keys(doc.secrets).sort()).toEqual(["postgres_password", "unseal_1", "unseal_2"]);
    for (const sec of Object.values(doc.secrets) as Obj[]) expect(sec.file).toMatch(/^\.\/secrets\/.+\.secret$/);
    const volumes = Object.keys(doc.volumes);
    for (const [name, app] of apps) {
      const s = doc.services[name];
      expect(s.user.split(":")[0]).not.toBe("0");
      expect(s.read_only).toBe(true);
      expect(s.cap_drop).toEqual(["ALL"]);
      expect(s.security_opt).toContain("no-new-privileges:true");
      expect(s.secrets).toEqual(SCALED[app] ? ["unseal_1", "unseal_2", "postgres_password"] : ["unseal_1", "unseal_2"]);
      expect(s.environment.CRYPTOUTIL_BARRIER_UNSEAL_FILES).toBe("/run/secrets/unseal_1,/run/secrets/unseal_2");
      // Each instance has a data volume of its own (admin token, TLS leaf).
      expect(s.volumes).toContain(`${name}-data:/data`);
      expect(s.volumes).toContain("suite-ca:/suite-ca");
      expect(volumes).toContain(`${name}-data`);
      expect(s.healthcheck.test).toEqual(["CMD", "bun", "/app/deploy/healthcheck.ts", "readyz"]);
    }
    expect(volumes).toContain("suite-ca");
    // Every service has a health check, PostgreSQL included.
    for (const [name, s] of Object.entries(doc.services) as Array<[string, Obj]>) {
      expect({ name, test: Array.isArray(s.healthcheck?.test) }).toEqual({ name, test: true });
      expect(s.healthcheck.interval).toBeDefined();
    }
  });

  test("PostgreSQL: the official image pinned, password from the secret file, a database per scaled service", async () => {
    const pg = doc.services.postgres;
    expect(pg.image).toMatch(/^postgres:\d+\.\d+(-[a-z0-9.-]+)?$/);
    expect(pg.environment.POSTGRES_PASSWORD_FILE).toBe("/run/secrets/postgres_password");
    expect(pg.environment.POSTGRES_PASSWORD).toBeUndefined();
    expect(pg.secrets).toEqual(["postgres_password"]);
    expect(pg.healthcheck.test.slice(0, 2)).toEqual(["CMD", "pg_isready"]);
    expect(pg.volumes).toContain("postgres-data:/var/lib/postgresql/data");
    const init = pg.volumes.find((v: string) => v.includes("/docker-entrypoint-initdb.d/"));
    const initSql = await readFile(join(DEPLOY, init.split(":")[0]), "utf8");
    for (const db of Object.values(SCALED)) expect(initSql).toContain(`CREATE DATABASE ${db};`);
  });

  test("the two instances of a scaled service share the database, the unseal secret and (identity-authz) the issuer", () => {
    const user = doc.services.postgres.environment.POSTGRES_USER;
    for (const [app, db] of Object.entries(SCALED)) {
      const [a, b] = [doc.services[`${app}-1`], doc.services[`${app}-2`]];
      for (const s of [a, b]) {
        expect(s.environment.CRYPTOUTIL_DATABASE_URL).toBe(`postgres://${user}@postgres:5432/${db}`);
        expect(s.environment.CRYPTOUTIL_DATABASE_PASSWORD_FILE).toBe("/run/secrets/postgres_password");
        expect(s.depends_on.postgres.condition).toBe("service_healthy");
        // Both answer to the service's name on the compose network.
        expect(s.networks.default.aliases).toEqual([app]);
      }
      for (const k of ["CRYPTOUTIL_DATABASE_URL", "CRYPTOUTIL_BARRIER_UNSEAL_FILES", "CRYPTOUTIL_SERVER_PUBLIC_URL"]) {
        expect(b.environment[k]).toBe(a.environment[k]);
      }
      expect(b.secrets).toEqual(a.secrets);
    }
    expect(doc.services["identity-authz-1"].environment.CRYPTOUTIL_SERVER_PUBLIC_URL).toMatch(/^\$\{CRYPTOUTIL_AUTHZ_PUBLIC_URL:-https:\/\/identity-authz:18000\}$/);
    // The embedded services keep their own database file: no database settings.
    for (const n of NAMES.filter((n) => !SCALED[n])) expect(doc.services[n].environment.CRYPTOUTIL_DATABASE_URL).toBeUndefined();
  });

  // Compose interpolation of `${NAME:-default}` with nothing set.
  const interpolate = (v: unknown) => String(v).replace(/\$\{\w+:-([^}]*)\}/g, "$1");
  const envOf = (name: string) => Object.fromEntries(Object.entries(doc.services[name].environment as Obj).map(([k, v]) => [k, interpolate(v)]));

  test("every container's environment is config its service reads: each CRYPTOUTIL_ variable lands on its key", () => {
    for (const [name, app] of apps) {
      const config = configOf(app, envOf(name));
      if (SCALED[app]) expect(config.database.url).toBe(`postgres://cryptoutil@postgres:5432/${SCALED[app]}`);
      else expect(config.database.url).toBeUndefined();
    }
  });

  test("the services are wired to each other by service name, as npm start wires them", () => {
    const urls = Object.fromEntries(NAMES.map((n) => [n, `https://${n}:${SUITE[n]}`]));
    for (const [name, app] of apps) expectSuiteWiring(app, configOf(app, envOf(name)), urls, {});
    // The browser-facing URLs come from one variable each, the same in every container that uses them.
    const raw = (name: string, k: string) => doc.services[name].environment[k];
    for (const name of apps.keys()) expect(raw(name, "CRYPTOUTIL_AUTH_ISSUER")).toBe("${CRYPTOUTIL_AUTHZ_PUBLIC_URL:-https://identity-authz:18000}/t/{tenant}");
    expect(raw("identity-idp", "CRYPTOUTIL_APP_AUTHZ_URL")).toBe("${CRYPTOUTIL_AUTHZ_PUBLIC_URL:-https://identity-authz:18000}");
    expect(raw("identity-idp", "CRYPTOUTIL_SERVER_PUBLIC_URL")).toBe("${CRYPTOUTIL_IDP_PUBLIC_URL:-https://identity-idp:18100}");
    expect(raw("identity-idp", "CRYPTOUTIL_SERVER_MTLS_PUBLIC_URL")).toBe("${CRYPTOUTIL_IDP_MTLS_PUBLIC_URL:-https://identity-idp:18101}");
    for (const i of [1, 2]) {
      expect(raw(`identity-authz-${i}`, "CRYPTOUTIL_APP_IDP_URL")).toBe("${CRYPTOUTIL_IDP_PUBLIC_URL:-https://identity-idp:18100}");
      expect(raw(`pki-ca-${i}`, "CRYPTOUTIL_SERVER_PUBLIC_URL")).toBe("${CRYPTOUTIL_CA_PUBLIC_URL:-https://pki-ca:8443}");
    }
    // Set, they reach every container that uses them.
    const publicUrls = {
      "identity-authz": "https://auth.example.com:18000",
      "identity-idp": "https://login.example.com:18100",
      "pki-ca": "https://ca.example.com:8443",
    };
    const set: Record<string, string> = {
      CRYPTOUTIL_AUTHZ_PUBLIC_URL: publicUrls["identity-authz"],
      CRYPTOUTIL_IDP_PUBLIC_URL: publicUrls["identity-idp"],
      CRYPTOUTIL_IDP_MTLS_PUBLIC_URL: "https://login.example.com:18101",
      CRYPTOUTIL_CA_PUBLIC_URL: publicUrls["pki-ca"],
    };
    const withSet = (v: unknown) => String(v).replace(/\$\{(\w+):-([^}]*)\}/g, (_, k: string, d: string) => set[k] ?? d);
    for (const [name, app] of apps) {
      const env = Object.fromEntries(Object.entries(doc.services[name].environment as Obj).map(([k, v]) => [k, withSet(v)]));
      expectSuiteWiring(app, configOf(app, env), urls, publicUrls);
    }
  });

  test("pki-ca's instances get the same profiles, for names under CRYPTOUTIL_CA_DOMAIN (default internal); pki-ca accepts them", () => {
    const profilesOf = (env: Record<string, string>) => parsePkiCaConfig(configOf("pki-ca", env)).profiles;
    const one = profilesOf(envOf("pki-ca-1"));
    expect(profilesOf(envOf("pki-ca-2"))).toEqual(one);
    expect(Object.keys(one).sort()).toEqual(["tls-client", "tls-server"]);
    expect(one["tls-server"]!.dns.allow).toEqual(["internal", "*.internal"]);
    expect(one["tls-client"]!.uri.allow).toEqual(["spiffe://internal/*"]);
    const raw = String(doc.services["pki-ca-1"].environment.CRYPTOUTIL_APP_PROFILES).replace(/\$\{CRYPTOUTIL_CA_DOMAIN:-internal\}/g, "corp.example");
    const set = profilesOf({ ...envOf("pki-ca-1"), CRYPTOUTIL_APP_PROFILES: raw });
    expect(set["tls-server"]!.dns.allow).toEqual(["corp.example", "*.corp.example"]);
    expect(set["tls-client"]!.dns.allow).toEqual(["*.corp.example"]);
  });

  test("docker compose config accepts it and rejects a broken copy", async () => {
    const cli = tool([{ cmd: ["docker", "compose"], probe: ["version"] }, { cmd: ["docker-compose"] }], "docker compose (or docker-compose)");
    if (!cli) return;
    const { dir, cleanup } = await tempDir("compose");
    try {
      await writeFile(join(dir, "compose.yml"), text.replace("    ports:\n", "    portz:\n"));
      const check = async (file: string) => {
        const p = Bun.spawn([...cli, "-f", file, "config", "-q"], { stdout: "ignore", stderr: "pipe" });
        return { code: await p.exited, err: await new Response(p.stderr).text() };
      };
      // Both at once: each run of the Python client costs about two seconds of start-up.
      const [ok, bad] = await Promise.all([check(join(DEPLOY, "compose.yml")), check(join(dir, "compose.yml"))]);
      expect(ok.err).toBe("");
      expect(ok.code).toBe(0);
      expect(bad.code).not.toBe(0);
    } finally {
      await cleanup();
    }
  }, 30_000);
});

// ---------- Kubernetes ----------

describe("Kubernetes manifests", async () => {
  const dir = join(DEPLOY, "k8s");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml")).sort();
  const objects: Obj[] = [];
  for (const f of files.filter((f) => f !== "kustomization.yaml")) {
    for (const d of parseAllDocuments(await readFile(join(dir, f), "utf8"))) {
      expect(d.errors).toEqual([]);
      objects.push(d.toJS() as Obj);
    }
  }
  const kustomization = parse(await readFile(join(dir, "kustomization.yaml"), "utf8")) as Obj;
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name);

  test("the kustomization lists every manifest and generates the unseal and PostgreSQL Secrets and the database URLs", () => {
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== "kustomization.yaml"));
    const gen = kustomization.secretGenerator.find((g: Obj) => g.name === "cryptoutil-unseal");
    expect(gen.files).toEqual(["unseal-1=secrets/unseal-1.secret", "unseal-2=secrets/unseal-2.secret"]);
    const pg = kustomization.secretGenerator.find((g: Obj) => g.name === "cryptoutil-postgres");
    expect(pg.files).toEqual(["password=secrets/postgres-password.secret"]);
    const urls = kustomization.configMapGenerator.find((g: Obj) => g.name === "cryptoutil-database");
    const byService = Object.fromEntries(urls.literals.map((l: string) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    expect(Object.keys(byService).sort()).toEqual(Object.keys(SCALED).sort());
    // No password in a URL: it comes from the Secret (database.password_file).
    for (const [n, url] of Object.entries(byService)) expect(url).toMatch(new RegExp(`^postgres://[a-z_]+@[a-z0-9.-]+:5432/${SCALED[n]}$`));
    expect(kustomization.generatorOptions.disableNameSuffixHash).toBe(true);
  });

  test("a Deployment, a Service and a PodDisruptionBudget per app, probes over HTTPS on the admin endpoints", () => {
    for (const n of NAMES) {
      const dep = find("Deployment", n)!;
      expect(dep).toBeDefined();
      const pdb = find("PodDisruptionBudget", n)!;
      expect(pdb.apiVersion).toBe("policy/v1");
      expect(pdb.spec).toEqual({ minAvailable: 1, selector: { matchLabels: { "app.kubernetes.io/name": n } } });
      const pod = dep.spec.template.spec;
      expect(dep.spec.selector.matchLabels).toEqual({ "app.kubernetes.io/name": n });
      expect(dep.spec.template.metadata.labels["app.kubernetes.io/name"]).toBe(n);
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(pod.containers.length).toBe(1);
      const c = pod.containers[0];
      const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value ?? e.valueFrom]));
      expect(env.APP).toBe(n);
      expect(env.CRYPTOUTIL_SERVER_PORT).toBe(String(SUITE[n]));
      expect(env.CRYPTOUTIL_SERVER_ADMIN_PORT).toBe("9090");
      const mtlsPort = MTLS[n] === undefined ? [] : [{ name: "mtls", containerPort: MTLS[n], protocol: "TCP" }];
      expect(c.ports).toEqual([{ name: "https", containerPort: SUITE[n], protocol: "TCP" }, ...mtlsPort]);
      expect(c.securityContext).toMatchObject({
        runAsNonRoot: true,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
      });
      expect(c.livenessProbe.exec.command).toEqual(["bun", "/app/deploy/healthcheck.ts", "livez"]);
      expect(c.readinessProbe.exec.command).toEqual(["bun", "/app/deploy/healthcheck.ts", "readyz"]);
      // Unseal secret files mounted read-only from the Secret, and named in the env.
      const unsealVol = pod.volumes.find((v: Obj) => v.secret?.secretName === "cryptoutil-unseal");
      expect(unsealVol.secret.defaultMode).toBe(0o440);
      const mount = c.volumeMounts.find((m: Obj) => m.name === unsealVol.name);
      expect(mount.readOnly).toBe(true);
      for (const f of env.CRYPTOUTIL_BARRIER_UNSEAL_FILES.split(",")) expect(f.startsWith(mount.mountPath + "/")).toBe(true);
      const svc = find("Service", n)!;
      expect(svc.spec.selector).toEqual({ "app.kubernetes.io/name": n });
      const mtlsSvc = MTLS[n] === undefined ? [] : [{ name: "mtls", port: MTLS[n], targetPort: "mtls", protocol: "TCP" }];
      expect(svc.spec.ports).toEqual([{ name: "https", port: SUITE[n], targetPort: "https", protocol: "TCP" }, ...mtlsSvc]);
      const data = pod.volumes.find((v: Obj) => v.name === c.volumeMounts.find((m: Obj) => m.mountPath === "/data").name);
      // Writable paths are volumes (the root file system is read-only).
      const mounts = c.volumeMounts.map((m: Obj) => m.mountPath).sort();
      if (!SCALED[n]) {
        expect(dep.spec.replicas).toBe(1);
        expect(dep.spec.strategy.type).toBe("Recreate");
        expect(mounts).toEqual(["/data", "/run/secrets/cryptoutil", "/suite-ca", "/tmp"]);
        expect(data.persistentVolumeClaim.claimName).toBe(`${n}-data`);
        expect(find("PersistentVolumeClaim", `${n}-data`)).toBeDefined();
        expect(env.CRYPTOUTIL_DATABASE_URL).toBeUndefined();
        continue;
      }
      // Scaled: two replicas on PostgreSQL, replaced one at a time, no state of their own.
      expect(dep.spec.replicas).toBe(2);
      expect(dep.spec.strategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
      expect(mounts).toEqual(["/data", "/run/secrets/cryptoutil", "/run/secrets/postgres", "/suite-ca", "/tmp"]);
      expect(data.emptyDir).toBeDefined();
      expect(find("PersistentVolumeClaim", `${n}-data`)).toBeUndefined();
      expect(env.CRYPTOUTIL_DATABASE_URL).toEqual({ configMapKeyRef: { name: "cryptoutil-database", key: n } });
      const pgVol = pod.volumes.find((v: Obj) => v.secret?.secretName === "cryptoutil-postgres");
      expect(pgVol.secret.defaultMode).toBe(0o440);
      const pgMount = c.volumeMounts.find((m: Obj) => m.name === pgVol.name);
      expect(pgMount.readOnly).toBe(true);
      expect(env.CRYPTOUTIL_DATABASE_PASSWORD_FILE).toBe(`${pgMount.mountPath}/password`);
    }
    expect(find("Deployment", "identity-authz")!.spec.template.spec.containers[0].env.find((e: Obj) => e.name === "CRYPTOUTIL_SERVER_PUBLIC_URL").valueFrom).toEqual({
      configMapKeyRef: { name: "cryptoutil-urls", key: "authz-public-url" },
    });
    expect(find("PersistentVolumeClaim", "cryptoutil-suite-ca")!.spec.accessModes).toEqual(["ReadWriteMany"]);
    expect(objects.filter((o) => o.kind === "Deployment").length).toBe(NAMES.length);
  });

  /** A generated ConfigMap's literals. */
  const literals = (name: string): Record<string, string> => {
    const gen = kustomization.configMapGenerator.find((g: Obj) => g.name === name);
    return Object.fromEntries(gen.literals.map((l: string) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  };
  /**
   * A container's environment as the kubelet gives it: values from the generated ConfigMaps,
   * `$(NAME)` replaced by an earlier variable's value (dependent environment variables).
   */
  const podEnv = (n: string, urls: Record<string, string>): Record<string, string> => {
    const maps: Record<string, Record<string, string>> = { "cryptoutil-database": literals("cryptoutil-database"), "cryptoutil-urls": urls, "cryptoutil-ca": literals("cryptoutil-ca") };
    const out: Record<string, string> = {};
    for (const e of find("Deployment", n)!.spec.template.spec.containers[0].env as Obj[]) {
      if (e.valueFrom) {
        const ref = e.valueFrom.configMapKeyRef;
        const v = maps[ref.name]?.[ref.key];
        expect({ n, ref, v: typeof v }).toEqual({ n, ref, v: "string" });
        out[e.name] = v!;
      } else {
        expect({ n, name: e.name, value: typeof e.value }).toEqual({ n, name: e.name, value: "string" });
        out[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, k: string) => out[k] ?? m);
        expect({ n, name: e.name, unresolved: /\$\(/.test(out[e.name]!) }).toEqual({ n, name: e.name, unresolved: false });
      }
    }
    return out;
  };

  test("every Deployment's environment is config its service reads: each CRYPTOUTIL_ variable lands on its key", () => {
    for (const n of NAMES) {
      const config = configOf(n, podEnv(n, literals("cryptoutil-urls")));
      if (SCALED[n]) expect(config.database.url).toBe(literals("cryptoutil-database")[n]);
      else expect(config.database.url).toBeUndefined();
    }
  });

  test("the services are wired to each other by their in-cluster names, as npm start wires them; the public URLs from one ConfigMap", () => {
    const urls = Object.fromEntries(NAMES.map((n) => [n, `https://${n}.cryptoutil.svc:${SUITE[n]}`]));
    const defaults = literals("cryptoutil-urls");
    expect(defaults).toEqual({
      "authz-public-url": urls["identity-authz"]!,
      "idp-public-url": urls["identity-idp"]!,
      "idp-mtls-public-url": `https://identity-idp.cryptoutil.svc:${IDP_MTLS_PORT}`,
      "ca-public-url": urls["pki-ca"]!,
    });
    for (const n of NAMES) expectSuiteWiring(n, configOf(n, podEnv(n, defaults)), urls, {});
    const publicUrls = {
      "identity-authz": "https://auth.example.com",
      "identity-idp": "https://login.example.com",
      "pki-ca": "https://ca.example.com",
    };
    const set = {
      "authz-public-url": publicUrls["identity-authz"],
      "idp-public-url": publicUrls["identity-idp"],
      "idp-mtls-public-url": `https://login.example.com:${IDP_MTLS_PORT}`,
      "ca-public-url": publicUrls["pki-ca"],
    };
    for (const n of NAMES) expectSuiteWiring(n, configOf(n, podEnv(n, set)), urls, publicUrls);
  });

  test("pki-ca's profiles come from the cryptoutil-ca ConfigMap and equal compose's defaults", async () => {
    const profiles = parsePkiCaConfig(configOf("pki-ca", podEnv("pki-ca", literals("cryptoutil-urls")))).profiles;
    const compose = parse(await readFile(join(DEPLOY, "compose.yml"), "utf8"), { merge: true }) as Obj;
    const composeRaw = String(compose.services["pki-ca-1"].environment.CRYPTOUTIL_APP_PROFILES).replace(/\$\{\w+:-([^}]*)\}/g, "$1");
    expect(JSON.parse(literals("cryptoutil-ca").profiles!)).toEqual(JSON.parse(composeRaw));
    expect(Object.keys(profiles).sort()).toEqual(["tls-client", "tls-server"]);
  });

  test("kubectl kustomize renders the suite (with secret files present) and fails without them", async () => {
    const cli = tool([{ cmd: ["kubectl"] }], "kubectl");
    if (!cli) return;
    const missing = Bun.spawnSync(["kubectl", "kustomize", dir], { stdout: "pipe", stderr: "pipe" });
    expect(missing.exitCode).not.toBe(0);
    const t = await tempDir("k8s");
    try {
      await cp(dir, t.dir, { recursive: true });
      await mkdir(join(t.dir, "secrets"), { recursive: true });
      for (const i of [1, 2]) await writeFile(join(t.dir, "secrets", `unseal-${i}.secret`), crypto.getRandomValues(new Uint8Array(32)));
      await writeFile(join(t.dir, "secrets", "postgres-password.secret"), "not-a-real-password\n");
      const r = Bun.spawnSync(["kubectl", "kustomize", t.dir], { stdout: "pipe", stderr: "pipe" });
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
      const rendered = parseAllDocuments(r.stdout.toString()).map((d) => d.toJS() as Obj);
      const secret = rendered.find((o) => o.kind === "Secret" && o.metadata.name === "cryptoutil-unseal")!;
      expect(secret.metadata).toMatchObject({ name: "cryptoutil-unseal", namespace: "cryptoutil" });
      expect(Object.keys(secret.data).sort()).toEqual(["unseal-1", "unseal-2"]);
      const pg = rendered.find((o) => o.kind === "Secret" && o.metadata.name === "cryptoutil-postgres")!;
      expect(Buffer.from(pg.data.password, "base64").toString()).toBe("not-a-real-password\n");
      const urls = rendered.find((o) => o.kind === "ConfigMap" && o.metadata.name === "cryptoutil-database")!;
      expect(Object.keys(urls.data).sort()).toEqual(Object.keys(SCALED).sort());
      const publicUrls = rendered.find((o) => o.kind === "ConfigMap" && o.metadata.name === "cryptoutil-urls")!;
      expect(Object.keys(publicUrls.data).sort()).toEqual(["authz-public-url", "ca-public-url", "idp-mtls-public-url", "idp-public-url"]);
      expect(rendered.filter((o) => o.kind === "PodDisruptionBudget").map((o) => o.metadata.name).sort()).toEqual(NAMES);
      expect(rendered.filter((o) => o.kind === "Deployment").map((o) => o.metadata.name).sort()).toEqual(NAMES);
      expect(rendered.every((o) => o.kind === "Namespace" || o.metadata.namespace === "cryptoutil")).toBe(true);
    } finally {
      await t.cleanup();
    }
  }, 30_000);
});

// ---------- healthcheck.ts, for real ----------

describe("deploy/healthcheck.ts", () => {
  let t: { dir: string; cleanup: () => Promise<void> };
  let material: TlsMaterial;
  let server: ReturnType<typeof Bun.serve>;
  let caFile = "";
  let ready = true;

  beforeAll(async () => {
    t = await tempDir("health");
    ({ material } = await loadOrCreateTlsMaterial({
      store: new DirectoryStore(join(t.dir, "svc")),
      sealer: (await barrierSealer()).sealer,
      serviceName: "sm-kms",
      sans: { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] },
      suiteCa: { store: new DirectoryStore(join(t.dir, "suite-ca")), sealer: await suiteCaSealerFromSecrets([crypto.getRandomValues(new Uint8Array(32))]) },
    }));
    caFile = join(t.dir, "trust-bundle.pem");
    await writeFile(caFile, material.caBundlePem);
    server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      tls: { cert: material.certChainPem, key: material.keyPem },
      fetch: (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/admin/v1/livez") return new Response("ok");
        if (path === "/admin/v1/readyz") return new Response(ready ? "ok" : "not ready", { status: ready ? 200 : 503 });
        return new Response("no", { status: 404 });
      },
    });
  });

  afterAll(async () => {
    server?.stop(true);
    await t?.cleanup();
  });

  async function run(args: string[], env: Record<string, string>): Promise<number> {
    const p = Bun.spawn([process.execPath, join(DEPLOY, "healthcheck.ts"), ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdout: "ignore",
      stderr: "ignore",
    });
    return p.exited;
  }

  test("exit 0 when the probe answers, 1 when not ready, on a bad trust anchor, or on bad input", async () => {
    const env = { CRYPTOUTIL_SERVER_ADMIN_PORT: String(server.port), CRYPTOUTIL_HEALTHCHECK_CA_FILE: caFile };
    const otherCa = join(t.dir, "other.pem");
    await writeFile(otherCa, (await createSuiteCa()).root.cert.toString("pem"));
    const emptyCa = join(t.dir, "empty.pem");
    await writeFile(emptyCa, "");
    const results = await Promise.all([
      run(["livez"], env),
      run(["readyz"], env),
      run([], env),
      run(["livez"], { ...env, CRYPTOUTIL_HEALTHCHECK_CA_FILE: otherCa }),
      run(["livez"], { ...env, CRYPTOUTIL_HEALTHCHECK_CA_FILE: join(t.dir, "absent.pem") }),
      run(["shutdown"], env),
      run(["livez"], { ...env, CRYPTOUTIL_HEALTHCHECK_CA_FILE: emptyCa }),
      run(["livez"], { ...env, CRYPTOUTIL_SERVER_ADMIN_PORT: "not-a-port" }),
    ]);
    expect(results).toEqual([0, 0, 0, 1, 1, 1, 1, 1]);
    ready = false;
    expect(await run(["readyz"], env)).toBe(1);
    expect(await run(["livez"], env)).toBe(0);
  }, 20_000);
});
