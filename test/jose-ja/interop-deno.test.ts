/** jose-ja interop with the `jose` library against the service started on Deno: see interop-suite.ts. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ON_DENO } from "../support/engine.ts";
import { runtimeOf } from "../support/service.ts";
import { startJose, type Jose } from "./harness.ts";
import { joseInteropSuite } from "./interop-suite.ts";

let j: Jose;
beforeAll(async () => {
  j = await startJose(undefined, { engine: ON_DENO });
}, 180_000);
afterAll(async () => {
  await j?.stop();
});

test("the service under test runs on Deno", async () => {
  expect(await runtimeOf(j.svc)).toBe("deno");
});

joseInteropSuite(() => j);
