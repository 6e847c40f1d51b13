/** sm-kms interop with the `jose` library against the service started on Deno: see interop-suite.ts. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ON_DENO } from "../support/engine.ts";
import { runtimeOf } from "../support/service.ts";
import { startKms, type Kms } from "./harness.ts";
import { kmsInteropSuite } from "./interop-suite.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms(undefined, { engine: ON_DENO });
}, 180_000);
afterAll(async () => {
  await kms?.stop();
});

test("the service under test runs on Deno", async () => {
  expect(await runtimeOf(kms.svc)).toBe("deno");
});

kmsInteropSuite(() => kms);
