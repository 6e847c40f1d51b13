/**
 * The command line that starts one service on a runtime: `bun run <main.ts> ...`, or
 * `deno run` with the permissions a service needs, and writes limited to its data root.
 * The launcher (`npm start -- --runtime=deno`) and the tests that start services on Deno
 * both build their commands here; the README states the same command.
 */
import { join } from "node:path";

export type ServiceRuntime = "bun" | "deno";

export const RUNTIMES: readonly ServiceRuntime[] = ["bun", "deno"];

/**
 * Deno's permissions for a service: network (its servers, its federated calls), reading the
 * project and its config, environment (config variables), FFI and system information (libSQL's
 * native binding is a Node-API module, and its loader asks the system which libc it has), and
 * writing only under the data root.
 */
export function denoPermissions(dataRoot: string): string[] {
  return ["--allow-net", "--allow-read", `--allow-write=${dataRoot}`, "--allow-env", "--allow-ffi", "--allow-sys"];
}

/** The argv that runs `main` (a service's main.ts) with `args` on `runtime`; `dataRoot` bounds Deno's writes. */
export function serviceCommand(runtime: ServiceRuntime, projectRoot: string, main: string, dataRoot: string, args: string[]): string[] {
  if (runtime === "bun") return [process.execPath, "run", main, ...args];
  const deno = join(projectRoot, "node_modules", ".bin", "deno");
  return [deno, "run", "--node-modules-dir=manual", "--no-prompt", ...denoPermissions(dataRoot), main, ...args];
}

/** Calls `onLine` for each line of a child's output stream; resolves at its end. */
export async function forEachLine(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) onLine(buf);
}
