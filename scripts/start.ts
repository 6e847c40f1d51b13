/**
 * The suite launcher (`npm start`): runs every app under apps/ that has a main.ts, each in its
 * own process as in per-service containers, wired together, and prints a table of URLs.
 *
 * 1. Checks every service's configuration first (`--check-config`: built-in defaults, then
 *    `config/<service>.yaml` when present, env and flags); a bad key stops the start with one
 *    line naming the service and the key, before anything is written to disk.
 * 2. Starts identity-authz, then (development mode: no unseal files configured) makes the demo
 *    tenant and its clients through its admin API, then starts the others, each trusting
 *    identity-authz's per-tenant issuers (scripts/suite/manifest.ts has the wiring).
 * 3. Makes the demo user, writes `<data>/suite.json` (what the `cryptoutil` CLI reads), and
 *    prints the services, their memory and the next steps. Ctrl-C stops everything cleanly.
 *
 * Flags: --only=a,b (subset), --data=DIR (data root, default ./data), --config-dir=DIR
 * (per-service files, default ./config); both relative to the working directory.
 * --runtime=deno runs every service on Deno (`deno run`, writes limited to the data root;
 * scripts/suite/runtime.ts has the command) instead of Bun.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { suiteDefaults, type SuiteLayout, DEMO_TENANT, demoFile } from "./suite/manifest.ts";
import { forEachLine, RUNTIMES, serviceCommand, type ServiceRuntime } from "./suite/runtime.ts";
import type { ServiceEndpoint } from "../src/service/context.ts";
import { CLI_BROWSER_CLIENT, CLI_CLIENT, DEMO_USER, DEMO_USER_EMAIL, SUITE_ADMIN_CLIENT, provisionClients, provisionKmsGrpcClient, provisionSuiteAdmin, provisionUser } from "./suite/demo.ts";

interface Ready {
  service: string;
  public: string;
  admin: string;
  docs: string;
  trust_bundle: string;
  /** host:port of the gRPC API, when the service serves one. */
  grpc?: string;
  /** Protocol endpoints to print (pki-ca's enrollment URLs per tenant). */
  endpoints?: ServiceEndpoint[];
  /** The mutual-TLS listener's URL, when the service has one. */
  mtls?: string;
}

interface Checked {
  service: string;
  development: boolean;
  public?: string;
  data_dir: string;
}

const root = resolve(import.meta.dir, "..");
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=") as [string, string]));
// Relative to where `npm start` runs (the project folder): data/ and config/ beside package.json.
const dataRoot = resolve(args.data ?? "data");
const configDir = resolve(args["config-dir"] ?? "config");
const only = args.only ? new Set(args.only.split(",")) : undefined;
const runtime = (args.runtime ?? "bun") as ServiceRuntime;
if (!RUNTIMES.includes(runtime)) {
  console.error(`--runtime: one of ${RUNTIMES.join(", ")}`);
  process.exit(2);
}

const apps = readdirSync(join(root, "apps"))
  .filter((name) => existsSync(join(root, "apps", name, "main.ts")))
  .filter((name) => !only || only.has(name))
  .sort();
if (apps.length === 0) {
  console.error("no apps to start");
  process.exit(1);
}

/** The command line of a service: its main.ts, its data directory, and its config file if any. */
function commandOf(name: string, extra: string[] = []): string[] {
  const file = join(configDir, `${name}.yaml`);
  const flags = [`--data.dir=${join(dataRoot, name)}`, `--data.suite_dir=${dataRoot}`, ...(existsSync(file) ? ["--config", file] : []), ...extra];
  return serviceCommand(runtime, root, join(root, "apps", name, "main.ts"), dataRoot, flags);
}

const childEnv = (suite?: Record<string, unknown>): Record<string, string | undefined> => ({
  ...process.env,
  CRYPTOUTIL_LOG_ACCESS: process.env.CRYPTOUTIL_LOG_ACCESS ?? "false",
  CRYPTOUTIL_SUPERVISOR_PID: String(process.pid),
  CRYPTOUTIL_SUITE_DEFAULTS: suite && Object.keys(suite).length ? JSON.stringify(suite) : undefined,
});

/** Step 1: every service validates its configuration without writing anything. */
async function checkAll(): Promise<Map<string, Checked>> {
  const results = await Promise.all(
    apps.map(async (name) => {
      const proc = Bun.spawn(commandOf(name, ["--check-config"]), { stdout: "pipe", stderr: "pipe", env: childEnv() });
      const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      if (code !== 0) return { name, error: err.trim().split("\n").pop() || `${name}: configuration check failed (code ${code})` };
      const line = out.split("\n").find((l) => l.includes('"cryptoutil.config"'));
      return line ? { name, checked: JSON.parse(line) as Checked } : { name, error: `${name}: the configuration check printed no result` };
    }),
  );
  const errors = results.filter((r) => "error" in r).map((r) => (r as { error: string }).error);
  if (errors.length) {
    for (const e of errors) console.error(e);
    process.exit(2);
  }
  return new Map(results.map((r) => [r.name, (r as { checked: Checked }).checked]));
}

interface Child {
  name: string;
  proc: ReturnType<typeof Bun.spawn>;
  ready: Promise<Ready>;
}
const children: Child[] = [];

function spawnService(name: string, suite: Record<string, unknown>): Child {
  const proc = Bun.spawn(commandOf(name), { stdout: "pipe", stderr: "inherit", env: childEnv(suite) });
  // The services stop by themselves if this process goes away without stopping them
  // (killed, or its terminal closed): see src/service/main.ts.
  const ready = new Promise<Ready>(async (resolveReady, reject) => {
    let found = false;
    await forEachLine(proc.stdout as ReadableStream<Uint8Array>, (line) => {
      if (!found && line.includes('"cryptoutil.ready"')) {
        found = true;
        resolveReady(JSON.parse(line) as Ready);
      } else if (process.env.CRYPTOUTIL_VERBOSE || line.includes('"level":"error"') || line.includes('"level":"warn"')) {
        process.stdout.write(`[${name}] ${line}\n`);
      }
    });
    if (!found) reject(new Error(`${name} exited before it was ready (code ${await proc.exited})`));
  });
  ready.catch(() => undefined);
  const child = { name, proc, ready };
  children.push(child);
  // Any child dying on its own stops the suite, so a half-running suite never looks healthy.
  void proc.exited.then((code) => {
    if (!shuttingDown) {
      console.error(`${name} exited (code ${code}); stopping the suite`);
      void shutdown(1);
    }
  });
  return child;
}

let shuttingDown = false;
async function shutdown(code: number) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.log("\nstopping the suite ...");
  for (const c of children) c.proc.kill("SIGTERM");
  const all = Promise.all(children.map((c) => c.proc.exited));
  const timer = setTimeout(() => children.forEach((c) => c.proc.kill("SIGKILL")), 15_000);
  await all;
  clearTimeout(timer);
  console.log("stopped.");
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));
process.on("SIGHUP", () => void shutdown(0));

async function waitReady(r: Ready): Promise<void> {
  const ca = readFileSync(r.trust_bundle, "utf8");
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`${r.admin}/admin/v1/readyz`, { tls: { ca } } as RequestInit);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(100);
  }
  throw new Error(`${r.service} did not become ready`);
}

async function start(c: Child): Promise<Ready> {
  const r = await c.ready;
  await waitReady(r);
  return r;
}

/** Resident memory of a process in MiB, from /proc (Linux); undefined elsewhere. */
function rssMiB(pid: number): string {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    return Number.isFinite(kb) ? `${Math.round(kb / 1024)} MiB` : "-";
  } catch {
    return "-";
  }
}

const rel = (p: string) => relative(dataRoot, p);

/**
 * A service's protocol endpoints, two aligned columns under a heading: in development mode the
 * demo tenant's only (and those of no tenant), otherwise every tenant's, each URL once.
 */
function endpointLines(service: string, endpoints: ServiceEndpoint[], demo: boolean): string[] {
  const shown = endpoints.filter((e) => !demo || e.tenant === undefined || e.tenant === DEMO_TENANT);
  const rows = demo ? shown.map((e) => [e.name, e.url]) : shown.map((e) => [e.tenant ? `${e.name}, tenant ${e.tenant}` : e.name, e.url]);
  const unique = [...new Map(rows.map((r) => [r.join(" "), r])).values()];
  if (unique.length === 0) return [];
  const width = Math.max(...unique.map((r) => r[0]!.length));
  const readme = existsSync(join(root, "apps", service, "README.md")) ? `; client commands in apps/${service}/README.md` : "";
  return ["", `${service} endpoints${demo ? ` (tenant "${DEMO_TENANT}")` : ""}${readme}:`, ...unique.map(([name, url]) => `  ${name!.padEnd(width)}  ${url}`)];
}

try {
  const checked = await checkAll();
  const urls = Object.fromEntries(apps.map((a) => [a, checked.get(a)!.public]));
  const authzChecked = checked.get("identity-authz");
  const demo = !!authzChecked?.development;
  const layout: SuiteLayout = { dataRoot, urls, demo };

  // identity-authz first: every other service trusts its tokens, and the demo clients exist
  // before learn-ps and sm-im read their client secrets.
  const readies = new Map<string, Ready>();
  let ca: string | undefined;
  if (authzChecked) {
    const r = await start(spawnService("identity-authz", suiteDefaults("identity-authz", layout)));
    readies.set(r.service, r);
    urls["identity-authz"] = r.public;
    ca = readFileSync(r.trust_bundle, "utf8");
    const inputs = { dataRoot, ca, authz: r.public, urls, bootstrapSecretFile: join(dataRoot, "identity-authz", "bootstrap-admin.secret") };
    const rootToken = await provisionSuiteAdmin(inputs);
    if (demo && !rootToken) throw new Error(`the demo tenant needs the bootstrap administrator's secret (${inputs.bootstrapSecretFile}), which is gone`);
    if (demo) await provisionClients(inputs, rootToken!);
  }
  const rest = await Promise.all(apps.filter((a) => a !== "identity-authz").map((a) => start(spawnService(a, suiteDefaults(a, layout)))));
  for (const r of rest) readies.set(r.service, r);
  const idp = readies.get("identity-idp");
  if (demo && ca && idp) await provisionUser({ dataRoot, ca, authz: urls["identity-authz"]!, idp: idp.public });
  const kmsGrpc = readies.get("sm-kms")?.grpc;
  const grpcClient = demo && kmsGrpc ? await provisionKmsGrpcClient(dataRoot) : undefined;

  // What the CLI reads (`cryptoutil login`): paths relative to this file's folder.
  const first = [...readies.values()][0]!;
  const authzUrl = readies.get("identity-authz")?.public;
  const suiteFile = join(dataRoot, "suite.json");
  writeFileSync(
    suiteFile,
    JSON.stringify(
      {
        version: 1,
        development: demo,
        trust_bundle: rel(first.trust_bundle),
        services: Object.fromEntries(
          apps.map((a) => {
            const r = readies.get(a)!;
            return [a, { public: r.public, admin: r.admin, docs: r.docs, audience: a, admin_token_file: rel(join(dataRoot, a, "admin.token")) }];
          }),
        ),
        contexts: authzUrl
          ? {
              ...(demo
                ? { demo: { tenant: DEMO_TENANT, issuer: `${authzUrl}/t/${DEMO_TENANT}`, client_id: CLI_CLIENT, client_secret_file: rel(demoFile(dataRoot, `${CLI_CLIENT}.secret`)), browser_client_id: CLI_BROWSER_CLIENT } }
                : {}),
              admin: { tenant: "root", issuer: `${authzUrl}/t/root`, client_id: SUITE_ADMIN_CLIENT, client_secret_file: rel(join(dataRoot, "identity-authz", "bootstrap-admin.secret")) },
            }
          : {},
        ...(demo && idp ? { demo_user: { tenant: DEMO_TENANT, username: DEMO_USER, password_file: rel(demoFile(dataRoot, "user.password")) } } : {}),
      },
      null,
      2,
    ) + "\n",
  );

  const pids = new Map(children.map((c) => [c.name, c.proc.pid]));
  const rows = apps.map((a) => {
    const r = readies.get(a)!;
    return [r.service, r.public, r.admin, r.docs, rssMiB(pids.get(a)!)];
  });
  const head = ["service", "public URL", "admin URL (127.0.0.1 only)", "API explorer", "RSS"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const out: string[] = ["", `cryptoutil is running${runtime === "bun" ? "" : ` on ${runtime}`}:`, "", line(head), widths.map((w) => "-".repeat(w)).join("  ")];
  for (const r of rows) out.push(line(r));
  out.push("", `trust bundle (for curl --cacert): ${first.trust_bundle}`, `suite file (for the cryptoutil CLI): ${suiteFile}`);
  if (idp?.mtls) out.push(`identity-idp certificate sign-in (mutual TLS): ${idp.mtls}/t/<tenant>/login/certificate`);
  if (kmsGrpc) {
    out.push(`sm-kms gRPC API (mutual TLS, supacrypt.v1.KeyService): ${kmsGrpc}`);
    if (grpcClient) out.push(`  demo tenant's client certificate: ${grpcClient.certFile} (key ${grpcClient.keyFile})`);
  }
  for (const a of apps) out.push(...endpointLines(a, readies.get(a)!.endpoints ?? [], demo));
  if (demo) {
    const suiteFlag = suiteFile === resolve("data", "suite.json") ? "" : ` --suite ${suiteFile}`;
    const steps: string[] = [`npx cryptoutil login${suiteFlag}`];
    if (readies.has("sm-kms")) {
      steps.push("npx cryptoutil kms key create demo-key", 'echo "hello, world" | npx cryptoutil kms encrypt demo-key -o hello.jwe', "npx cryptoutil kms decrypt demo-key hello.jwe");
    }
    if (readies.has("pki-ca")) steps.push("npx cryptoutil ca certificate localhost localhost.crt localhost.key --san localhost --san 127.0.0.1");
    if (readies.has("pki-ca") && idp?.mtls) {
      steps.push(
        `npx cryptoutil ca certificate demo demo.crt demo.key --profile tls-client --san ${DEMO_USER_EMAIL}`,
        `curl --cacert ${first.trust_bundle} --cert demo.crt --key demo.key ${idp.mtls}/t/${DEMO_TENANT}/login/certificate   # "It signs you in as demo"`,
      );
    }
    if (readies.has("jose-ja")) steps.push("npx cryptoutil jose jwk create demo-signer --alg ES256", "npx cryptoutil jose jwt sign demo-signer --sub alice --ttl 15m");
    if (readies.has("sm-secrets")) steps.push("npx cryptoutil secrets put demo/db user=demo password=s3cret", "npx cryptoutil secrets get demo/db --field password");
    if (readies.has("audit")) steps.push("npx cryptoutil audit query --limit 10");
    out.push("", `development mode: tenant "${DEMO_TENANT}", secrets in ${demoFile(dataRoot, "")}`, "", "next steps:");
    for (const s of steps) out.push(`  ${s}`);
    if (readies.has("learn-ps") && idp) out.push(`  open ${readies.get("learn-ps")!.public}/browser/ and sign in as "${DEMO_USER}" (password in ${demoFile(dataRoot, "user.password")})`);
    if (readies.has("sm-im") && idp) out.push(`  open ${readies.get("sm-im")!.public}/browser/ to send an end-to-end encrypted message (the same sign-in)`);
    out.push("  (the README's quickstart has more; `npx cryptoutil --help` lists every command)");
  }
  out.push("", "press Ctrl-C to stop", "");
  console.log(out.join("\n"));
} catch (e) {
  console.error(`start failed: ${(e as Error).message}`);
  await shutdown(1);
}
