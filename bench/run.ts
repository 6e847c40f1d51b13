/**
 * Benchmark harness: `npm run bench -- <name>` runs bench/<name>.ts.
 * Every benchmark measures its anchor in the same run and prints the ratio.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

const ALIASES: Record<string, string> = { "learn-ps": "learn-ps", http: "learn-ps" };
/**
 * Benchmarks that pin by default (BENCH_PIN=0 turns it off): acme, whose anchor (Debian's
 * pebble 2.4) deadlocks within seconds at 32 clients when its goroutines run on both cores,
 * and answers throughout on one (see bench/acme.ts).
 */
const PINNED_BY_DEFAULT = new Set(["acme"]);
const name = process.argv[2];
const dir = import.meta.dir;
const available = readdirSync(dir)
  .filter((f) => f.endsWith(".ts") && !["run.ts", "lib.ts", "wrk.ts", "dudect.ts", "crypto-ec.ts"].includes(f))
  .map((f) => f.slice(0, -3));
if (!name || !existsSync(join(dir, `${ALIASES[name] ?? name}.ts`))) {
  console.error(`usage: npm run bench -- <name>\navailable: ${available.join(", ")}`);
  process.exit(2);
}
const env = { ...process.env, ...(PINNED_BY_DEFAULT.has(name) && process.env.BENCH_PIN === undefined ? { BENCH_PIN: "1" } : {}) };
const proc = Bun.spawn([process.execPath, "run", join(dir, `${ALIASES[name] ?? name}.ts`), ...process.argv.slice(3)], {
  stdout: "inherit",
  stderr: "inherit",
  env,
});
process.exit(await proc.exited);
