/**
 * A fresh project folder for tests of what a newcomer runs: the repository's files linked into
 * an empty temporary folder (no data/, no config/), where `npm start` and `npx cryptoutil` run
 * exactly as the README says. The suite runs in its own process group and is stopped the way
 * a terminal's Ctrl-C stops it (SIGINT to the whole group).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dir, "../..");

/** What a project folder holds after a clone and `npm install`, as links. */
const ENTRIES = ["package.json", "node_modules", "apps", "cli", "schemas", "scripts", "src", "wasm", "tsconfig.json", "bunfig.toml"];

export function freshProject(): string {
  const dir = mkdtempSync(join(tmpdir(), "cryptoutil-project-"));
  for (const e of ENTRIES) symlinkSync(join(REPO, e), join(dir, e));
  return dir;
}

export interface RunningSuite {
  proc: ChildProcess;
  /** Everything printed on stdout so far. */
  out(): string;
  err(): string;
  /**
   * Ctrl-C: SIGINT to the process group (npm, the launcher, the services); resolves true once
   * the launcher has printed that every service stopped.
   */
  stop(): Promise<boolean>;
  exited: Promise<number | null>;
}

/** Runs `npm start [-- args]` in `dir` and resolves once the table is printed (or it exits). */
export async function npmStart(dir: string, args: string[] = [], env: Record<string, string> = {}, waitMs = 120_000): Promise<RunningSuite> {
  const proc = spawn("npm", ["start", ...(args.length ? ["--", ...args] : [])], {
    cwd: dir,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  const deadline = Date.now() + waitMs;
  let done = false;
  void exited.then(() => (done = true));
  while (!done && !out.includes("press Ctrl-C to stop") && Date.now() < deadline) await Bun.sleep(100);
  const stop = async () => {
    if (!done) {
      try {
        process.kill(-proc.pid!, "SIGINT");
      } catch {
        // already gone
      }
    }
    await exited;
    // npm leaves on the signal at once; the launcher finishes stopping the services after it.
    for (let i = 0; i < 300 && !out.includes("stopped."); i++) await Bun.sleep(100);
    return out.includes("stopped.");
  };
  return { proc, out: () => out, err: () => err, stop, exited };
}

/** Runs a bash script in `dir`; returns its exit code and output. */
export async function bash(dir: string, script: string, env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["bash", "-c", script], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}
