/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header
 * `version-traceid-parentid-flags`, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
 *
 * Parsing follows the spec's rules: version `ff` is invalid; version `00` must be exactly
 * 55 characters; a higher version may append fields after a dash, which are ignored; ids are
 * lowercase hex and never all zeros. Anything else is refused (undefined), and the caller
 * starts a new trace. `tracestate` is not kept (no vendor here writes one).
 */

/** Where a span sits: its trace, its own id, and whether the trace is being recorded. */
export interface SpanContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const HEX2 = /^[0-9a-f]{2}$/;
const ZERO32 = "0".repeat(32);
const ZERO16 = "0".repeat(16);

/** The parent named by a `traceparent` header, or undefined when it is absent or not valid. */
export function parseTraceparent(header: string | null | undefined): SpanContext | undefined {
  if (!header || header.length < 55) return undefined;
  const h = header.trim();
  const version = h.slice(0, 2);
  if (!HEX2.test(version) || version === "ff") return undefined;
  if (version === "00" ? h.length !== 55 : h.length > 55 && h[55] !== "-") return undefined;
  if (h[2] !== "-" || h[35] !== "-" || h[52] !== "-") return undefined;
  const traceId = h.slice(3, 35);
  const spanId = h.slice(36, 52);
  const flags = h.slice(53, 55);
  if (!HEX32.test(traceId) || !HEX16.test(spanId) || !HEX2.test(flags)) return undefined;
  if (traceId === ZERO32 || spanId === ZERO16) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** The `traceparent` header (version 00) that makes `ctx` the parent of the callee's span. */
export function formatTraceparent(ctx: SpanContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? "01" : "00"}`;
}
