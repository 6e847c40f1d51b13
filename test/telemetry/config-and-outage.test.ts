/**
 * The `telemetry` config section, and a traced service whose collector is down: requests
 * are answered as always, and the spans it could not send are counted in its metrics.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { resolveConfig } from "../../src/service/service.ts";
import { createTracing } from "../../src/telemetry/index.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";
import { freePort } from "../identity/support/authz.ts";
import { until } from "./otlp-receiver.ts";

const configWith = (env: Record<string, string>) => resolveConfig(learnPs, { argv: [], env });
const refusal = (env: Record<string, string>) => {
  try {
    configWith(env);
  } catch (e) {
    return (e as Error).message;
  }
  return "accepted";
};

describe("telemetry config", () => {
  test("off by default; the endpoint from the environment turns it on, sampling everything", () => {
    const off = configWith({});
    expect(off.telemetry).toEqual({});
    expect(createTracing(off.telemetry, "learn-ps")).toBeUndefined();
    const on = configWith({ CRYPTOUTIL_TELEMETRY_OTLP_ENDPOINT: "https://collector.example:4318", CRYPTOUTIL_TELEMETRY_SAMPLE_RATIO: "0.25" });
    expect(on.telemetry).toEqual({ otlp_endpoint: "https://collector.example:4318", sample_ratio: 0.25 });
    const tracing = createTracing(on.telemetry, "learn-ps");
    expect(tracing?.tracer.service).toBe("learn-ps");
  });

  test("bad values stop the start, naming the key", () => {
    expect(refusal({ CRYPTOUTIL_TELEMETRY_OTLP_ENDPOINT: "ftp://collector.example" })).toMatch(/^telemetry\.otlp_endpoint: /);
    expect(refusal({ CRYPTOUTIL_TELEMETRY_OTLP_ENDPOINT: "not a url" })).toMatch(/^telemetry\.otlp_endpoint: /);
    expect(refusal({ CRYPTOUTIL_TELEMETRY_SAMPLE_RATIO: "1.5" })).toMatch(/^telemetry\.sample_ratio: /);
    expect(refusal({ CRYPTOUTIL_TELEMETRY_SAMPLE_RATIO: "-0.1" })).toMatch(/^telemetry\.sample_ratio: /);
    const withMissingCa = configWith({ CRYPTOUTIL_TELEMETRY_OTLP_ENDPOINT: "https://collector.example", CRYPTOUTIL_TELEMETRY_CA_FILE: "/nonexistent/ca.pem" });
    expect(() => createTracing(withMissingCa.telemetry, "learn-ps")).toThrow(/^telemetry\.ca_file: cannot read/);
  });
});

describe("collector down", () => {
  let svc: TestService | undefined;
  afterAll(async () => {
    await svc?.stop();
  });

  test("every request is answered; unsent spans are dropped and counted", async () => {
    const deadPort = await freePort(); // nothing listens there
    svc = await startTestService(learnPs, {
      overrides: (c) => {
        quiet(c);
        c.telemetry.otlp_endpoint = `http://127.0.0.1:${deadPort}`;
      },
    });
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(Array.from({ length: 40 }, () => svc!.call("/livez")));
      for (const r of answers) expect(r.status).toBe(200);
      await Promise.all(answers.map((r) => r.arrayBuffer()));
    }
    const dropped = await until("the exporter has given up on a batch", async () => {
      const text = await (await svc!.admin("/admin/v1/metrics")).text();
      const n = Number(text.match(/^telemetry_spans_dropped_total\{service="learn-ps"\} (\d+)$/m)?.[1] ?? 0);
      return n > 0 && n;
    });
    expect(dropped).toBeGreaterThan(0);
    expect((await svc.call("/livez")).status).toBe(200);
  }, 120_000);
});
