/**
 * Starts a service's main.ts as a child process on Bun or Deno, as an operator (or
 * `npm start`) does, and waits for its ready line. For tests of the process itself (where it
 * writes, how it stops) and for running the suites against services started on Deno.
 */
import { expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { forEachLine, serviceCommand, type ServiceRuntime } from "../../scripts/suite/runtime.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

export interface ServiceProcess {
  name: string;
  runtime: ServiceRuntime;
  publicUrl: string;
  adminUrl: string;
  docsUrl: string;
  trustBundlePath: string;
  /** The trust bundle's PEM. */
  ca: string;
  /** Every line the process wrote to stdout and stderr so far. */
  output: string[];
  /** fetch against the public server, trusting the suite CA. */
  call(path: string, init?: RequestInit): Promise<Response>;
  /** fetch against the admin server, trusting the suite CA. */
  admin(path: string, init?: RequestInit): Promise<Response>;
  /** SIGTERM, then waits for the exit; resolves with the exit code. */
  stop(): Promise<number>;
}

export interface ProcessOptions {
  runtime: ServiceRuntime;
  /** Flags after main.ts (`--data.dir=...`, `--config file`). */
  args: string[];
  /** Where Deno may write (its --allow-write); the folder the data lives in. */
  dataRoot: string;
  /** Environment on top of this process's, without its CRYPTOUTIL_* settings. */
  env?: Record<string, string>;
  /** How long the first start may take (Deno compiles the sources on a cold cache). */
  readyTimeoutMs?: number;
}

/** Starts apps/<name>/main.ts; resolves once it printed its ready line. */
export async function startServiceProcess(name: string, o: ProcessOptions): Promise<ServiceProcess> {
  const main = join(ROOT, "apps", name, "main.ts");
  expect(existsSync(main)).toBe(true);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CRYPTOUTIL_")) env[k] = v;
  Object.assign(env, { NO_COLOR: "1" }, o.env);
  const proc = Bun.spawn(serviceCommand(o.runtime, ROOT, main, o.dataRoot, o.args), { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
  const output: string[] = [];
  const collect = (stream: ReadableStream<Uint8Array>, onLine?: (line: string) => void) =>
    forEachLine(stream, (line) => {
      output.push(line);
      onLine?.(line);
    });
  const ready = new Promise<Record<string, string>>((resolve, reject) => {
    void collect(proc.stdout, (line) => {
      if (line.includes('"cryptoutil.ready"')) resolve(JSON.parse(line));
    }).then(() => reject(new Error(`${name} on ${o.runtime} exited before it was ready:\n${output.join("\n")}`)));
  });
  void collect(proc.stderr);
  const timeout = o.readyTimeoutMs ?? 120_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    ready,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${name} on ${o.runtime} not ready after ${timeout} ms:\n${output.join("\n")}`)), timeout))),
  ]).catch((e) => {
    proc.kill("SIGKILL");
    throw e;
  });
  clearTimeout(timer);
  const ca = readFileSync(r.trust_bundle!, "utf8");
  const tls = { ca };
  return {
    name,
    runtime: o.runtime,
    publicUrl: r.public!,
    adminUrl: r.admin!,
    docsUrl: r.docs!,
    trustBundlePath: r.trust_bundle!,
    ca,
    output,
    call: (path, init = {}) => fetch(r.public + path, { ...init, tls } as RequestInit),
    admin: (path, init = {}) => fetch(r.admin + path, { ...init, tls } as RequestInit),
    async stop() {
      proc.kill("SIGTERM");
      const code = await Promise.race([proc.exited, new Promise<number>((res) => setTimeout(() => res(-1), 30_000))]);
      if (code === -1) proc.kill("SIGKILL");
      return code;
    },
  };
}
