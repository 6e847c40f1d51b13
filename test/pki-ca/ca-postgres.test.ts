/** The pki-ca end-to-end suite (ca-suite.ts) on PostgreSQL (Debian package postgresql), one server for the file. */
import { afterAll, describe } from "bun:test";
import { startPostgresEngine } from "../support/engine.ts";
import { caSuite } from "./ca-suite.ts";

const engine = await startPostgresEngine();
describe("on PostgreSQL (Debian package postgresql)", () => {
  if (engine) caSuite(engine);
});
afterAll(() => engine?.server.stop());
