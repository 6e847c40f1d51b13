/** Runs wrk (Debian package `wrk`) as the HTTP load generator and parses its report. */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  /** wrk's own words about the errors, if any. */
  detail: string;
}

function toMs(v: string): number {
  const m = v.match(/^([\d.]+)(us|ms|s)$/);
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
}

export function parseWrk(out: string): WrkResult {
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1]);
  const p50 = out.match(/\s50%\s+([\d.]+\w+)/)?.[1];
  const p99 = out.match(/\s99%\s+([\d.]+\w+)/)?.[1];
  const non2xx = Number(out.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0);
  const sockErr = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  if (!rps || !p50 || !p99) throw new Error(`cannot parse wrk output:\n${out}`);
  const detail = [out.match(/Non-2xx or 3xx responses:\s+\d+/)?.[0], sockErr?.[0]].filter(Boolean).join("; ");
  return { rps, p50ms: toMs(p50), p99ms: toMs(p99), errors, detail };
}

/**
 * With BENCH_PIN=1 on a machine with 2+ cores, targets run pinned to core 0 and wrk to core 1
 * (taskset, from util-linux), so the load generator and the server never take each other's
 * core. Only on an otherwise quiet machine: other work landing on core 0 skews it badly.
 */
export const PIN = process.env.BENCH_PIN === "1" && Bun.which("taskset") !== null && navigator.hardwareConcurrency >= 2;
const pinned = (core: number, cmd: string[]) => (PIN ? ["taskset", "-c", String(core), ...cmd] : cmd);

/**
 * `cmd` in a session of its own (setsid, from util-linux; it execs in place, since a spawned
 * child leads no process group, so the pid stays the command's own). With the kernel's autogroup
 * scheduling (sched_autogroup_enabled=1) each session is one scheduling group: PostgreSQL's
 * backends each get one (every child of the postmaster calls setsid), while service instances and
 * wrk processes spawned here would otherwise all share the bench's. See bench/scale.ts.
 */
const ownSession = (on: boolean | undefined, cmd: string[]) => (on && Bun.which("setsid") ? ["setsid", ...cmd] : cmd);

/**
 * Writes a wrk Lua script that sends `body` with `method` and `headers` on every request; returns its path.
 * Lua decimal escapes carry any bytes, binary DER included.
 */
export function wrkScript(file: string, method: string, body: string | Uint8Array, headers: Record<string, string>): string {
  const h = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join("\n");
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  writeFileSync(file, `wrk.method = "${method}"\nwrk.body = "${Array.from(bytes, (b) => `\\${b}`).join("")}"\n${h}\n`);
  return file;
}

export async function wrk(
  url: string,
  opts: { connections: number; seconds: number; threads?: number; headers?: Record<string, string>; script?: string; ownSession?: boolean },
): Promise<WrkResult> {
  const args = ownSession(opts.ownSession, pinned(1, ["wrk", `-t${opts.threads ?? 1}`, `-c${opts.connections}`, `-d${opts.seconds}s`, "--latency"]));
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push("-H", `${k}: ${v}`);
  if (opts.script) args.push("-s", opts.script);
  args.push(url);
  const p = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  const err = await new Response(p.stderr).text();
  if ((await p.exited) !== 0) throw new Error(`wrk failed: ${err || out}`);
  return parseWrk(out);
}

export function haveWrk(): boolean {
  return Bun.which("wrk") !== null;
}

const children: Array<{ kill(signal?: number | NodeJS.Signals): void }> = [];
// No benchmark target outlives the run, even when a step throws.
process.on("exit", () => children.forEach((c) => c.kill("SIGTERM")));

/** Starts a target process and waits for the JSON line it prints once it listens. */
/**
 * Starts a target process and waits for its one-line JSON ready message. With
 * BENCH_CPU_PROF=DIR, Bun targets write a CPU profile (and its markdown summary) to DIR
 * when they exit.
 */
export async function spawnTarget(cmd: string[], env?: Record<string, string>, opts: { ownSession?: boolean } = {}): Promise<{ proc: ReturnType<typeof Bun.spawn>; info: any }> {
  const prof = process.env.BENCH_CPU_PROF;
  if (prof && cmd[0] === process.execPath) cmd = [cmd[0], "--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${prof}`, ...cmd.slice(1)];
  // The environment as it is now (Bun.spawn's default is the one the process started with).
  const p = Bun.spawn(ownSession(opts.ownSession, pinned(0, cmd)), { stdout: "pipe", stderr: "inherit", env: { ...process.env, ...env } });
  children.push(p);
  const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited before it was ready`);
    buf += new TextDecoder().decode(value);
  }
  return { proc: p, info: JSON.parse(buf.slice(0, buf.indexOf("\n"))) };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Creates the pet the learn-ps benchmarks read, through the public API with `token`. */
export async function createBenchPet(baseUrl: string, token: string, ca: string): Promise<{ id: string } & Record<string, unknown>> {
  const created = await fetch(`${baseUrl}/service/api/v1/pets`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "Bench", species: "dog", age_years: 3, tags: ["bench"] }),
    tls: { ca },
  } as RequestInit);
  if (created.status !== 201) throw new Error(`create failed: ${created.status} ${await created.text()}`);
  return (await created.json()) as { id: string };
}

/** /proc/<pid>/stat fields after the command name: state is [0], ppid [1], utime [11], stime [12], cutime [13], cstime [14]. */
function statFields(pid: number, thread?: number): string[] | undefined {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, ms) process `pid` has used so far; NaN where /proc is not there. */
export function cpuMsOf(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) * 10 : NaN; // clock ticks of 10 ms
}

/**
 * CPU time (ms) of process `pid`'s main thread alone: a JavaScript runtime's event loop, where
 * one process's requests queue, without its JIT, GC and worker threads; NaN where /proc is not there.
 */
export function mainThreadCpuMsOf(pid: number): number {
  const f = statFields(pid, pid);
  return f ? (Number(f[11]) + Number(f[12])) * 10 : NaN;
}

/**
 * Scheduler time (ms) of process `pid`'s main thread (its event loop) from /proc schedstat: how
 * long it has run on a CPU, and how long it was runnable but waiting for one (the run queue);
 * NaN where /proc is not there. A request whose event loop waits in the run queue waits with it.
 */
export function mainThreadSchedMs(pid: number): { run: number; wait: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ").map(Number);
    return { run: run! / 1e6, wait: wait! / 1e6 };
  } catch {
    return { run: NaN, wait: NaN };
  }
}

/**
 * CPU time (ms) of a process tree one level deep, as a PostgreSQL server is (the postmaster and
 * its backends): the parent's own and its waited-for children's, plus its live children's.
 */
export function treeCpuMs(parent: number): number {
  const f = statFields(parent);
  if (!f) return NaN;
  let ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const c = statFields(Number(name));
    if (c && Number(c[1]) === parent) ticks += Number(c[11]) + Number(c[12]);
  }
  return ticks * 10;
}
