#!/usr/bin/env node
/**
 * The `cryptoutil` command for npm's bin links: needs only Node and npm. It runs
 * cli/main.ts on the Bun that `npm install` put in the repository's node_modules,
 * passing arguments, standard streams and the exit code (or signal) through.
 */
import { spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// Through an npm bin link this file is reached by a symlink: resolve it to find the repository.
const cliDir = dirname(dirname(realpathSync(fileURLToPath(import.meta.url))));
const root = dirname(cliDir);
const bun = join(root, "node_modules", ".bin", process.platform === "win32" ? "bun.cmd" : "bun");
if (!existsSync(bun)) {
  process.stderr.write(`error: Bun is not installed in ${root}: run npm install there\n`);
  process.exit(2);
}
const child = spawn(bun, [join(cliDir, "main.ts"), ...process.argv.slice(2)], { stdio: "inherit" });
// The child gets the terminal's signals itself; the shim only waits for it.
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(s, () => {});
child.on("error", (e) => {
  process.stderr.write(`error: cannot start Bun: ${e.message}\n`);
  process.exit(2);
});
child.on("exit", (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 1);
});
