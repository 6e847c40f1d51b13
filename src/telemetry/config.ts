/**
 * The `telemetry` config section and the tracing it turns on. Tracing is off unless
 * `otlp_endpoint` is set (`CRYPTOUTIL_TELEMETRY_OTLP_ENDPOINT`); then every request is
 * traced and `sample_ratio` (default 1) of new traces are recorded and exported.
 */
import * as v from "valibot";
import { readFileSync } from "node:fs";
import { AppError } from "../service/errors.ts";
import { OtlpHttpExporter } from "./exporter.ts";
import { Tracer } from "./tracer.ts";

export const TelemetryConfig = v.strictObject({
  /** Base URL of an OTLP/HTTP collector (spans go to `{url}/v1/traces`); unset: tracing off. */
  otlp_endpoint: v.optional(v.pipe(v.string(), v.url(), v.regex(/^https?:\/\//i, "must be an http or https URL"))),
  /** Share of new traces recorded, 0..1 (default 1); an incoming `traceparent` decides for its own trace. */
  sample_ratio: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
  /** PEM bundle that verifies an https collector; unset: the runtime's trust store. */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
});
export type TelemetryConfig = v.InferOutput<typeof TelemetryConfig>;

/** Tracing of a running service: its tracer and the exporter behind it. */
export interface Tracing {
  tracer: Tracer;
  exporter: OtlpHttpExporter;
}

/**
 * The tracing `config` asks for, or undefined when tracing is off. A `ca_file` that cannot
 * be read stops the start, naming the key.
 */
export function createTracing(config: TelemetryConfig, service: string, opts: { instanceId?: string } = {}): Tracing | undefined {
  if (!config.otlp_endpoint) return undefined;
  let caPem: string | undefined;
  if (config.ca_file) {
    try {
      caPem = readFileSync(config.ca_file, "utf8");
    } catch (e) {
      throw new AppError("config_invalid", `telemetry.ca_file: cannot read ${config.ca_file} (${(e as NodeJS.ErrnoException).code ?? "error"})`, { status: 400 });
    }
  }
  const exporter = new OtlpHttpExporter({
    endpoint: config.otlp_endpoint,
    caPem,
    resource: { "service.name": service, "service.instance.id": opts.instanceId ?? crypto.randomUUID(), "telemetry.sdk.name": "cryptoutil", "telemetry.sdk.language": "webjs" },
  });
  return { tracer: new Tracer(service, exporter, config.sample_ratio ?? 1), exporter };
}
