/**
 * The federated client's schedule on an injected clock and a scripted fetch: backoff with
 * jitter bounds, per-attempt timeout escalation, retries only for idempotent requests,
 * the breaker in front of the network, and the metrics of each state.
 */
import { describe, expect, test } from "bun:test";
import { attemptTimeoutMs, backoffCeilingMs, backoffDelayMs, type RetryPolicy } from "../../src/federation/backoff.ts";
import { FederatedClient } from "../../src/federation/client.ts";
import { FederationError } from "../../src/federation/errors.ts";
import { FederationMetrics } from "../../src/federation/metrics.ts";
import { HealthPoller } from "../../src/federation/health.ts";
import { FakeClock, settle } from "./fake-clock.ts";

const POLICY: RetryPolicy = { retries: 3, timeoutMs: 1000, timeoutEscalation: 2, maxTimeoutMs: 3000, backoffBaseMs: 100, backoffMaxMs: 300, jitter: 0.5 };

type Script = (url: string, init: RequestInit) => Promise<Response>;
const refused: Script = async () => {
  throw new TypeError("connection refused");
};
/** Never answers; rejects once aborted, as fetch does. */
const hangs: Script = (_url, init) => new Promise((_, reject) => init.signal!.addEventListener("abort", () => reject(init.signal!.reason)));
const answers = (status: number): Script => async () => new Response(status === 204 ? null : "{}", { status });

function client(script: Script, opts: { policy?: Partial<RetryPolicy>; failures?: number; cooldownMs?: number; random?: () => number } = {}) {
  const clock = new FakeClock();
  const metrics = new FederationMetrics();
  const calls: string[] = [];
  const c = new FederatedClient({
    peer: "identity",
    baseUrl: "https://identity.test:18000",
    policy: { ...POLICY, ...opts.policy },
    breaker: { failures: opts.failures ?? 100, cooldownMs: opts.cooldownMs ?? 10_000 },
    healthPath: "/livez",
    clock,
    random: opts.random ?? (() => 0),
    fetch: (url, init) => {
      calls.push(`${init.method ?? "GET"} ${url}`);
      return script(url, init);
    },
    metrics,
  });
  return { c, clock, metrics, calls };
}

const failureOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return e as FederationError;
  }
  throw new Error("expected a failure");
};

describe("retry schedule", () => {
  test("backoff doubles up to its ceiling; jitter stays within [d(1 - jitter), d]", () => {
    expect([1, 2, 3, 4].map((r) => backoffCeilingMs(POLICY, r))).toEqual([100, 200, 300, 300]);
    expect([1, 2, 3].map((r) => backoffDelayMs(POLICY, r, () => 0))).toEqual([100, 200, 300]);
    expect([1, 2, 3].map((r) => backoffDelayMs(POLICY, r, () => 0.999999))).toEqual([50, 100, 150]);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelayMs(POLICY, 2, Math.random);
      expect(d).toBeGreaterThanOrEqual(100);
      expect(d).toBeLessThanOrEqual(200);
    }
  });

  test("each attempt's timeout escalates up to its ceiling", () => {
    expect([0, 1, 2, 3].map((a) => attemptTimeoutMs(POLICY, a))).toEqual([1000, 2000, 3000, 3000]);
    expect(attemptTimeoutMs({ ...POLICY, timeoutEscalation: 1 }, 3)).toBe(1000);
  });

  test("a refused GET is tried 1 + retries times, with the backoff between attempts", async () => {
    const { c, clock, calls } = client(refused);
    const e = await failureOf(clock.run(c.request("/t/demo/jwks")));
    expect(e).toBeInstanceOf(FederationError);
    expect(e.reason).toBe("network");
    expect(e.code).toBe("unavailable");
    expect(calls).toEqual(Array(4).fill("GET https://identity.test:18000/t/demo/jwks"));
    // Each attempt arms its timeout (1000, 2000, 3000, 3000); the backoffs sit between them.
    expect(clock.sleeps).toEqual([1000, 100, 2000, 200, 3000, 300, 3000]);
  });

  test("a peer that never answers times out on each attempt, the timeout growing", async () => {
    const { c, clock, calls } = client(hangs, { random: () => 0.5 });
    const start = clock.now();
    const e = await failureOf(clock.run(c.request("https://identity.test:18000/t/demo/jwks")));
    expect(e.reason).toBe("timeout");
    expect(calls.length).toBe(4);
    expect(clock.sleeps).toEqual([1000, 75, 2000, 150, 3000, 225, 3000]);
    expect(clock.now() - start).toBe(1000 + 75 + 2000 + 150 + 3000 + 225 + 3000);
  });

  test("a POST is not retried unless marked idempotent", async () => {
    const { c, clock, calls } = client(refused);
    await failureOf(clock.run(c.request("/x", { method: "POST", body: "{}" })));
    expect(calls.length).toBe(1);
    await failureOf(clock.run(c.request("/x", { method: "POST", body: "{}", idempotent: true })));
    expect(calls.length).toBe(1 + 4);
  });

  test("5xx answers are failures and retried; a 4xx goes back to the caller at once", async () => {
    const { c, clock, calls } = client(answers(503));
    expect((await failureOf(clock.run(c.request("/a")))).reason).toBe("status");
    expect(calls.length).toBe(4);
    const four = client(answers(404));
    const res = await four.clock.run(four.c.request("/b"));
    expect(res.status).toBe(404);
    expect(four.calls.length).toBe(1);
    expect(four.c.breaker.state).toBe("closed");
  });

  test("recovers within the retries: the second attempt answers", async () => {
    let n = 0;
    const { c, clock, calls } = client(async () => (n++ === 0 ? Promise.reject(new TypeError("reset")) : new Response('{"ok":true}')));
    const res = await clock.run(c.request("/c"));
    expect(await res.json()).toEqual({ ok: true });
    expect(calls.length).toBe(2);
    expect(c.status().reachable).toBe(true);
  });
});

describe("breaker in the client", () => {
  test("opens after N failed attempts, then refuses without touching the network", async () => {
    const { c, clock, calls, metrics } = client(refused, { failures: 3, policy: { retries: 5 } });
    const e = await failureOf(clock.run(c.request("/jwks")));
    // The third failure opened the breaker; the fourth attempt was refused by it.
    expect(calls.length).toBe(3);
    expect(e.reason).toBe("breaker_open");
    expect(c.breaker.state).toBe("open");
    expect(c.inFallback).toBe(true);
    expect((await failureOf(clock.run(c.request("/jwks")))).reason).toBe("breaker_open");
    expect(calls.length).toBe(3);
    const text = metrics.render("sm-kms").join("\n");
    expect(text).toContain('federation_circuit_breaker_state{service="sm-kms",federated_service="identity"} 1');
    expect(text).toContain('federation_request_failures_total{service="sm-kms",federated_service="identity",reason="network"} 3');
    expect(text).toContain('federation_request_failures_total{service="sm-kms",federated_service="identity",reason="breaker_open"} 2');
    expect(text).toContain('federation_request_duration_seconds_count{service="sm-kms",federated_service="identity"} 3');
  });

  test("health polling half-opens the breaker after the cool-down and closes it on recovery", async () => {
    let up = false;
    const { c, clock, calls, metrics } = client(async () => (up ? new Response('{"status":"alive"}') : Promise.reject(new TypeError("refused"))), {
      failures: 2,
      cooldownMs: 4500,
    });
    const gauge = () => metrics.render("learn-ps").find((l) => l.startsWith("federation_circuit_breaker_state{"))!.split(" ")[1];
    const poller = new HealthPoller(c, 1000, clock);
    poller.start();
    await settle();
    expect(calls).toEqual(["GET https://identity.test:18000/livez"]);
    expect(c.breaker.state).toBe("closed");
    expect(gauge()).toBe("0");
    await clock.advance(1000); // t=1000: the second failed probe opens it
    expect(c.breaker.state).toBe("open");
    expect(gauge()).toBe("1");
    await clock.advance(3000); // open: the probes at 2000, 3000 and 4000 send nothing
    expect(calls.length).toBe(2);
    up = true;
    await clock.advance(1500);
    // t=5500: the cool-down has passed, the next probe (at 6000) has not run: half_open.
    expect(c.breaker.state).toBe("half_open");
    expect(gauge()).toBe("2");
    expect(calls.length).toBe(2);
    await clock.advance(500); // the probe at 6000 is the trial
    expect(c.breaker.state).toBe("closed");
    expect(gauge()).toBe("0");
    expect(c.status()).toMatchObject({ breaker: "closed", reachable: true });
    await poller.stop();
  });

  test("a failed half-open trial opens it again", async () => {
    const { c, clock, calls } = client(refused, { failures: 1, cooldownMs: 2000, policy: { retries: 0 } });
    await failureOf(clock.run(c.request("/x")));
    expect(c.breaker.state).toBe("open");
    await clock.advance(2000);
    expect(c.breaker.state).toBe("half_open");
    await failureOf(clock.run(c.request("/x")));
    expect(calls.length).toBe(2);
    expect(c.breaker.state).toBe("open");
  });

  test("a caller's abort rejects with its reason and does not count against the peer", async () => {
    const { c, clock } = client(hangs, { failures: 1 });
    const ctl = new AbortController();
    const p = c.request("/slow", { signal: ctl.signal });
    p.catch(() => undefined);
    await settle();
    ctl.abort(new Error("caller gave up"));
    await expect(clock.run(p)).rejects.toThrow("caller gave up");
    expect(c.breaker.state).toBe("closed");
  });

  test("a signal aborted before the request starts rejects at once (no hang)", async () => {
    const { c, clock } = client(hangs, { failures: 1 });
    const ctl = new AbortController();
    ctl.abort(new Error("already gone"));
    const t0 = clock.now();
    await expect(clock.run(c.request("/slow", { signal: ctl.signal }))).rejects.toThrow("already gone");
    expect(clock.now()).toBe(t0); // refused at once, not after the attempt's timeout
    expect(c.breaker.state).toBe("closed");
  });
});
