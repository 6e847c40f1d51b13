/** sm-kms interop with the `jose` library, service without an HSM: see interop-suite.ts. */
import { afterAll, beforeAll } from "bun:test";
import { startKms, type Kms } from "./harness.ts";
import { kmsInteropSuite } from "./interop-suite.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms();
});
afterAll(async () => {
  await kms?.stop();
});

kmsInteropSuite(() => kms);
