/**
 * The runtime the process runs on, chosen once at start from the globals the runtime
 * defines. The only module that decides; see README.md in this folder.
 */
import type { Runtime } from "./types.ts";

export type { FetchTls, HttpServer, Runtime, ServeOptions, SqliteEngine } from "./types.ts";

async function detect(): Promise<Runtime> {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  if (g.Bun !== undefined) return (await import("./bun.ts")).bunRuntime;
  if (g.Deno !== undefined) return (await import("./deno.ts")).denoRuntime;
  throw new Error("cryptoutil runs on Bun or Deno: this runtime is neither");
}

/** The runtime of this process. */
export const runtime: Runtime = await detect();
