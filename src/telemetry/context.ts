/**
 * The one seam to the runtime's async context: the span a piece of work runs under follows
 * it across awaits, timers and callbacks. `AsyncLocalStorage` from node:async_hooks works on
 * Bun, Deno and Node; an edge runtime without it would replace this file only.
 *
 * Nothing here runs unless tracing is on: the pipeline enters a context per request only
 * when a tracer is configured.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { SpanContext } from "./trace-context.ts";

const storage = new AsyncLocalStorage<SpanContext>();

/** The span (or non-recorded trace position) the current work runs under, if any. */
export function activeContext(): SpanContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `ctx` as the active span of everything it starts. */
export function runInContext<T>(ctx: SpanContext, fn: () => T): T {
  return storage.run(ctx, fn);
}
