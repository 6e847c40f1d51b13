/**
 * A throwaway PostgreSQL server for tests, from the Debian package `postgresql`.
 *
 * One server per test file (`startPostgres()` in the file's top level or beforeAll, `stop()`
 * in afterAll): initdb in a temp directory, `postgres` on a free loopback port, password
 * authentication (SCRAM) for a superuser with a generated password kept in a 0600 file,
 * fsync off (the data is thrown away; `durable` keeps PostgreSQL's defaults, for benchmarks that
 * compare it with the embedded database, which syncs every commit). `createDatabase()` makes a fresh empty database per
 * test or suite; `halt()` and `start()` stop the server and start it again on the same port and
 * data, for tests of an outage. PostgreSQL refuses to run as root, and tests and CI run as root: then
 * initdb and postgres run as the `postgres` system user (setpriv), in a directory it owns.
 * When the package is missing: `CI=true` fails the run; otherwise the caller skips with the
 * printed reason.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { exited, freePort } from "./server-process.ts";

export interface PostgresServer {
  readonly port: number;
  /** The superuser the tests connect as. */
  readonly user: string;
  /** File (mode 0600) holding the superuser's password: `database.password_file`. */
  readonly passwordFile: string;
  /** A new empty database; its `postgres://` url (without the password). */
  createDatabase(prefix?: string): Promise<string>;
  /** Everything the server wrote so far (for failure messages). */
  log(): string;
  /** Stops the server (fast shutdown) and keeps its data, as an outage does; `start()` brings it back. */
  halt(): Promise<void>;
  /** Starts the halted server again on the same port, with the same data. */
  start(): Promise<void>;
  /** Stops the server (fast shutdown, then SIGKILL after 10 s) and removes its directory. */
  stop(): Promise<void>;
}

const USER = "cryptoutil";

/** The newest installed server's bin directory (`/usr/lib/postgresql/<major>/bin`), if any. */
function binDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, "bin", "postgres")) && existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(root, majors[0], "bin") : undefined;
}

/** The uid and gid to run the server as when we are root (PostgreSQL refuses root). */
function serverAccount(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
  const [u, g] = [id("-u"), id("-g")];
  if (u.status !== 0 || g.status !== 0) return undefined;
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Why PostgreSQL cannot be used here, or undefined when it can. */
export function postgresMissing(): string | undefined {
  if (!binDir()) return "PostgreSQL server not found under /usr/lib/postgresql (Debian package postgresql)";
  if (process.getuid?.() === 0) {
    if (!serverAccount()) return "running as root and there is no 'postgres' system user to run the server as";
    if (spawnSync("setpriv", ["--version"]).status !== 0) return "running as root and setpriv (util-linux) is missing";
  }
  return undefined;
}

/**
 * Starts a server, or returns undefined (after printing why) when PostgreSQL is missing
 * outside CI. Under CI a missing server throws, failing the suite.
 */
export async function startPostgres(opts: { durable?: boolean } = {}): Promise<PostgresServer | undefined> {
  const missing = postgresMissing();
  if (missing) {
    if (process.env.CI === "true") throw new Error(`PostgreSQL is required under CI: ${missing}`);
    console.warn(`[skip] PostgreSQL tests skipped: ${missing}`);
    return undefined;
  }
  const bin = binDir()!;
  const account = serverAccount();
  // As root: exec the server binaries as the postgres user (setpriv execs, so the pid we get
  // is the server's own and signals reach it).
  const asServer = (cmd: string, args: string[]): [string, string[]] =>
    account ? ["setpriv", [`--reuid=${account.uid}`, `--regid=${account.gid}`, "--clear-groups", cmd, ...args]] : [cmd, args];
  const own = (path: string) => {
    if (account) chownSync(path, account.uid, account.gid);
  };

  const dir = mkdtempSync(join(tmpdir(), "cryptoutil-pg-"));
  own(dir);
  const password = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64url");
  const passwordFile = join(dir, "password");
  writeFileSync(passwordFile, password + "\n", { mode: 0o600 });
  own(passwordFile);
  const data = join(dir, "data");
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C" };

  // C collation: text sorts by bytes, as it does in SQLite.
  const [initCmd, initArgs] = asServer(join(bin, "initdb"), [
    "-D", data, "-U", USER, `--pwfile=${passwordFile}`, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
  ]);
  const init = spawnSync(initCmd, initArgs, { cwd: dir, env, encoding: "utf8" });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);
  }

  /** One run of the server on `port`; undefined (and its output kept) when it did not become ready. */
  let output = "";
  const launch = async (port: number): Promise<{ proc: ChildProcess; admin: pg.Pool; onExit: () => void } | undefined> => {
    const [cmd, args] = asServer(join(bin, "postgres"), [
      "-D", data, "-p", String(port), "-k", dir,
      "-c", "listen_addresses=127.0.0.1",
      ...(opts.durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
      "-c", "max_connections=300", "-c", "shared_buffers=32MB",
    ]);
    const proc = spawn(cmd, args, { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    const collect = (b: Buffer) => {
      output = (output + b.toString("utf8")).slice(-8000);
    };
    proc.stdout!.on("data", collect);
    proc.stderr!.on("data", collect);
    // A test process that dies must not leave the server behind.
    const onExit = () => proc.kill("SIGKILL");
    process.once("exit", onExit);
    const admin = new pg.Pool({ host: "127.0.0.1", port, user: USER, password, database: "postgres", max: 2 });
    admin.on("error", () => undefined);
    if (await waitUntilReady(admin, proc, 30_000)) return { proc, admin, onExit };
    await admin.end().catch(() => undefined);
    proc.kill("SIGKILL");
    await exited(proc);
    process.removeListener("exit", onExit);
    return undefined;
  };
  /** Fast shutdown (ends the sessions, no waiting for clients), then SIGKILL after 10 s. */
  const shutdown = async (run: NonNullable<Awaited<ReturnType<typeof launch>>>) => {
    await run.admin.end().catch(() => undefined);
    const done = exited(run.proc);
    run.proc.kill("SIGINT");
    const timer = setTimeout(() => run.proc.kill("SIGKILL"), 10_000);
    await done;
    clearTimeout(timer);
    process.removeListener("exit", run.onExit);
  };

  // The free port may be taken between probe and bind by another process: retry a few times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    let run = await launch(port);
    if (!run) continue;
    let stopped = false;
    let n = 0;
    return {
      port,
      user: USER,
      passwordFile,
      log: () => output,
      async createDatabase(prefix = "t") {
        const name = `${prefix.replace(/[^a-z0-9_]/g, "_")}_${process.pid}_${++n}`;
        await run!.admin.query(`create database "${name}"`);
        return `postgres://${USER}@127.0.0.1:${port}/${name}`;
      },
      async halt() {
        if (!run) return;
        const r = run;
        run = undefined;
        await shutdown(r);
      },
      async start() {
        if (run) return;
        run = await launch(port);
        if (!run) throw new Error(`PostgreSQL did not start again on port ${port}:\n${output}`);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        if (run) await shutdown(run);
        run = undefined;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`PostgreSQL did not start; last output:\n${output}`);
}

async function waitUntilReady(admin: pg.Pool, proc: ChildProcess, deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    try {
      await admin.query("select 1");
      return true;
    } catch {
      // still starting
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
