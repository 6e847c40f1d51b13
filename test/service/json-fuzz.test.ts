/**
 * Mutation fuzzing of one JSON endpoint per service (pki-ca's anonymous /pki/revoke included):
 * replaced and removed members, unknown members, long strings, broken text, nesting bombs and
 * array bombs of up to 12,000 items. Every answer is 2xx/4xx, none hangs, and
 * each service still serves a normal call afterwards. FUZZ_JSON_N overrides the number of
 * mutations per endpoint (2,000 by default).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { sendNormal, startAllServices, type AllServices, type JsonTarget } from "../support/all-services.ts";

const N = Number(process.env.FUZZ_JSON_N ?? 2_000);
const SERVICES = ["sm-kms", "jose-ja", "pki-ca", "identity-authz", "identity-idp", "learn-ps"];
let all: AllServices;
beforeAll(async () => {
  all = await startAllServices();
});
afterAll(async () => {
  await all?.stop();
});

function send(t: JsonTarget, body: string): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (t.token) headers.authorization = `Bearer ${t.token}`;
  return t.svc.call(t.path, { method: t.method, headers, body });
}

describe(`JSON mutation fuzz (${N} per endpoint)`, () => {
  SERVICES.forEach((name, i) => {
    test(`${name}: no 5xx, no answer over 1 s, still serving`, async () => {
      const t = all.targets.find((x) => x.service === name)!;
      const r = rng(0x15_0000 + i);
      const cases = Array.from({ length: N }, () => mutateJson(t.seed, r));
      // The bombs are among the cases: the refusal codes of the shape bounds show up.
      expect(cases.some((c) => c.includes("[".repeat(70)) || c.includes('{"a":'.repeat(70)))).toBe(true);
      const { statuses } = await fuzz(cases, (body) => send(t, body), { describe: (body) => `${name} ${t.path} body ${body}`, concurrency: 8 });
      expect([...statuses.keys()].some((s) => s >= 400 && s < 500)).toBe(true);
      expect((await sendNormal(t)).status).toBeLessThan(300);
    }, 60_000);
  });
});
