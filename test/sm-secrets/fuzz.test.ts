/**
 * Mutation fuzz of sm-secrets's write endpoints: the API's `PUT /secrets/data/{path}` and the
 * Vault surface's `POST /v1/secret/data/{path}`, 10,000 mutated bodies each (FUZZ_JSON_N
 * overrides): replaced and unknown members, long strings, broken text, nesting and array
 * bombs. No answer is a 5xx, and each endpoint still serves a normal write afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { API, startSecrets, type Secrets } from "./harness.ts";

const N = Number(process.env.FUZZ_JSON_N ?? 10_000);
let s: Secrets;

beforeAll(async () => {
  s = await startSecrets();
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

const SEED = { data: { user: "svc", password: "p", nested: { list: [1, "two", null], flag: true } }, cas: 0 };
const VAULT_SEED = { data: SEED.data, options: { cas: 0 } };

describe(`write endpoints under ${N} mutated bodies each`, () => {
  for (const [name, path, method, seed, header] of [
    ["API", `${API}/secrets/data/fuzz/api`, "PUT", SEED, "authorization"],
    ["Vault", "/v1/secret/data/fuzz/vault", "POST", VAULT_SEED, "x-vault-token"],
  ] as const) {
    test(`${name}: no 5xx, still serving`, async () => {
      const token = await s.token("tenant-fuzz");
      const auth = header === "authorization" ? `Bearer ${token}` : token;
      const r = rng(name === "API" ? 0x5ec_0001 : 0x5ec_0002);
      const cases = Array.from({ length: N }, () => mutateJson(seed, r));
      const send = (body: string) => s.svc.call(path, { method, headers: { [header]: auth, "content-type": "application/json" }, body });
      // No time bound that a loaded machine could break: the harness's bound is set far out.
      const { statuses } = await fuzz(cases, send, { describe: (body) => `${name} ${body}`, concurrency: 8, maxMs: 120_000 });
      expect(statuses.has(429)).toBe(false);
      expect([...statuses.keys()].some((x) => x >= 400 && x < 500)).toBe(true);
      expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
      const ok = await send(JSON.stringify({ data: { after: "fuzz" } }));
      expect(ok.status).toBe(200);
    }, 600_000);
  }
});
