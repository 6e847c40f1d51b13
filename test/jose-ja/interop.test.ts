/** jose-ja interop with the `jose` library, service without an HSM: see interop-suite.ts. */
import { afterAll, beforeAll } from "bun:test";
import { startJose, type Jose } from "./harness.ts";
import { joseInteropSuite } from "./interop-suite.ts";

let j: Jose;
beforeAll(async () => {
  j = await startJose();
});
afterAll(async () => {
  await j?.stop();
});

joseInteropSuite(() => j);
