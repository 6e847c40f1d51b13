/**
 * The suite launcher (`npm start`): runs every app under apps/ that has a main.ts,
 * each in its own process as in per-service containers, waits until each is ready,
 * prints a table of URLs, and stops them all cleanly on Ctrl-C.
 *
 * Flags: --only=a,b (subset), --data=DIR (data root, default ./data).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

interface Ready {
  service: string;
  public: string;
  admin: string;
  docs: string;
  trust_bundle: string;
}

const root = resolve(import.meta.dir, "..");
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=") as [string, string]));
const dataRoot = resolve(args.data ?? join(root, "data"));
const only = args.only ? new Set(args.only.split(",")) : undefined;

const apps = readdirSync(join(root, "apps"))
  .filter((name) => existsSync(join(root, "apps", name, "main.ts")))
  .filter((name) => !only || only.has(name))
  .sort();
if (apps.length === 0) {
  console.error("no apps to start");
  process.exit(1);
}

const children = apps.map((name) => {
  const proc = Bun.spawn([process.execPath, "run", join(root, "apps", name, "main.ts"), `--data.dir=${join(dataRoot, name)}`], {
    cwd: root,
    stdout: "pipe",
    stderr: "inherit",
    // The services stop by themselves if this process goes away without stopping them
    // (killed, or its terminal closed): see src/service/main.ts.
    env: { ...process.env, CRYPTOUTIL_LOG_ACCESS: process.env.CRYPTOUTIL_LOG_ACCESS ?? "false", CRYPTOUTIL_SUPERVISOR_PID: String(process.pid) },
  });
  const ready = new Promise<Ready>(async (resolveReady, reject) => {
    const decoder = new TextDecoder();
    let buf = "";
    let found = false;
    const reader = proc.stdout.getReader();
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!found && line.includes('"cryptoutil.ready"')) {
          found = true;
          resolveReady(JSON.parse(line) as Ready);
        } else if (process.env.CRYPTOUTIL_VERBOSE) {
          process.stdout.write(`[${name}] ${line}\n`);
        } else if (line.includes('"level":"error"') || line.includes('"level":"warn"')) {
          process.stdout.write(`[${name}] ${line}\n`);
        }
      }
    }
    if (!found) reject(new Error(`${name} exited before it was ready (code ${await proc.exited})`));
  });
  return { name, proc, ready };
});

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
  for (let i = 0; i < 100; i++) {
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

try {
  const readies = await Promise.all(children.map((c) => c.ready));
  await Promise.all(readies.map(waitReady));
  const rows = readies.map((r) => [r.service, r.public, r.admin, r.docs]);
  const head = ["service", "public URL", "admin URL (127.0.0.1 only)", "API explorer"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log("\ncryptoutil is running:\n");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
  console.log(`\ntrust bundle (for curl --cacert): ${readies[0]!.trust_bundle}`);
  console.log("press Ctrl-C to stop\n");
} catch (e) {
  console.error(`start failed: ${(e as Error).message}`);
  await shutdown(1);
}

// Any child dying on its own stops the suite, so a half-running suite never looks healthy.
for (const c of children) {
  void c.proc.exited.then((code) => {
    if (!shuttingDown) {
      console.error(`${c.name} exited (code ${code}); stopping the suite`);
      void shutdown(1);
    }
  });
}
