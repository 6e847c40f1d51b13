/** The keyring suite (keyring-suite.ts) on PostgreSQL (Debian package postgresql), one server for the file. */
import { afterAll, describe } from "bun:test";
import { startPostgresEngine } from "../support/engine.ts";
import { keyringSuite } from "./keyring-suite.ts";

const engine = await startPostgresEngine();
describe("on PostgreSQL (Debian package postgresql)", () => {
  if (engine) keyringSuite(engine);
});
afterAll(() => engine?.server.stop());
