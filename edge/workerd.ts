/**
 * Runs an edge module in workerd, Cloudflare's open-source Workers runtime (npm `workerd`, no
 * account): bundles the module and its packages into one ES module (Bun's bundler, browser
 * target), writes a workerd config (capnp text) with one socket and the ORIGIN service, and
 * starts `workerd serve`. Used by the edge tests and `npm run bench -- edge`; a deployment
 * uses the same module with its own config (docs/edge.md).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, type ChildProcess } from "node:child_process";

const ROOT = new URL("../", import.meta.url).pathname;
/** A date this workerd release supports; the Workers APIs the modules use predate it. */
const COMPATIBILITY_DATE = "2026-11-01";

export interface EdgeOptions {
  /** The module under edge/ (`pki-ca`, `jose-ja`, `learn-ps`). */
  module: string;
  /** Where workerd listens (127.0.0.1). */
  port: number;
  /** Serve HTTPS (TLS 1.3 only) with this certificate chain and key instead of plain HTTP. */
  tls?: { cert: string; key: string };
  /** The origin (binding ORIGIN): host:port, over plain HTTP or HTTPS verified with `ca` (PEM) for `host`. */
  origin: Upstream;
  /** More upstream services, by binding name (e.g. IDENTITY for a JWKS). */
  upstreams?: Record<string, Upstream>;
  /** Text bindings (REFRESH_S, ...). */
  vars?: Record<string, string>;
}

export interface Upstream {
  address: string;
  https?: { ca: string; host?: string };
}

export interface RunningEdge {
  url: string;
  process: ChildProcess;
  /** Everything workerd wrote. */
  output: string[];
  stop(): Promise<void>;
}

/** Bundles edge/<module>.ts into one ES module file in `dir`; returns its file name. */
export async function bundleEdgeModule(module: string, dir: string): Promise<string> {
  const result = await Bun.build({ entrypoints: [join(ROOT, "edge", `${module}.ts`)], target: "browser", format: "esm", outdir: dir, naming: `${module}.js` });
  if (!result.success) throw new Error(`bundling edge/${module}.ts failed: ${result.logs.map(String).join("; ")}`);
  return `${module}.js`;
}

const capnpText = (s: string) => JSON.stringify(s);

/** The workerd config for `o`, referring to files in its own directory. */
export function workerdConfig(o: EdgeOptions, moduleFile: string): string {
  const vars = Object.entries(o.vars ?? {}).map(([k, v]) => `(name = ${capnpText(k)}, text = ${capnpText(v)})`);
  const upstreams = { ORIGIN: o.origin, ...o.upstreams };
  const external = (name: string, u: Upstream) => {
    const protocol = u.https
      ? `https = (tlsOptions = (trustedCertificates = [embed ${capnpText(`${name}-ca.pem`)}], minVersion = tls1Dot3)${u.https.host ? `, certificateHost = ${capnpText(u.https.host)}` : ""})`
      : "http = ()";
    return `(name = ${capnpText(name.toLowerCase())}, external = (address = ${capnpText(u.address)}, ${protocol}))`;
  };
  const socket = o.tls
    ? `https = (options = (), tlsOptions = (keypair = (privateKey = embed "edge-key.pem", certificateChain = embed "edge-cert.pem"), minVersion = tls1Dot3))`
    : "http = ()";
  const bindings = [...Object.keys(upstreams).map((n) => `(name = ${capnpText(n)}, service = ${capnpText(n.toLowerCase())})`), ...vars];
  return `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edgeWorker),
    ${Object.entries(upstreams).map(([n, u]) => external(n, u)).join(",\n    ")},
  ],
  sockets = [(name = "public", address = ${capnpText(`127.0.0.1:${o.port}`)}, ${socket}, service = "edge")],
);

const edgeWorker :Workerd.Worker = (
  modules = [(name = "edge", esModule = embed ${capnpText(moduleFile)})],
  compatibilityDate = ${capnpText(COMPATIBILITY_DATE)},
  bindings = [${bindings.join(", ")}],
);
`;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Bundles the module, writes the config and starts workerd; resolves once it accepts connections. */
export async function startEdge(o: EdgeOptions): Promise<RunningEdge> {
  const dir = mkdtempSync(join(tmpdir(), `cryptoutil-edge-${o.module}-`));
  mkdirSync(dir, { recursive: true });
  const moduleFile = await bundleEdgeModule(o.module, dir);
  for (const [name, u] of Object.entries({ ORIGIN: o.origin, ...o.upstreams })) if (u.https) writeFileSync(join(dir, `${name}-ca.pem`), u.https.ca);
  if (o.tls) {
    writeFileSync(join(dir, "edge-cert.pem"), o.tls.cert);
    writeFileSync(join(dir, "edge-key.pem"), o.tls.key, { mode: 0o600 });
  }
  const configFile = join(dir, "config.capnp");
  writeFileSync(configFile, workerdConfig(o, moduleFile));
  const workerd = join(ROOT, "node_modules", ".bin", "workerd");
  const proc = spawn(workerd, ["serve", configFile, "--verbose"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  proc.stdout!.on("data", (d) => output.push(String(d)));
  proc.stderr!.on("data", (d) => output.push(String(d)));
  for (let i = 0; i < 300 && !(await listening(o.port)); i++) {
    if (proc.exitCode !== null) throw new Error(`workerd exited (${proc.exitCode}):\n${output.join("")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!(await listening(o.port))) {
    proc.kill("SIGKILL");
    throw new Error(`workerd did not listen on ${o.port}:\n${output.join("")}`);
  }
  return {
    url: `${o.tls ? "https" : "http"}://127.0.0.1:${o.port}`,
    process: proc,
    output,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise<void>((r) => proc.once("exit", () => r()));
      proc.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null) proc.kill("SIGKILL");
    },
  };
}
