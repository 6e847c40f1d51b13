/**
 * identity-authz's suites (authz-*-suite.ts) on PostgreSQL (Debian package postgresql): one
 * server for the file, a database per service; the HSM suite also needs softhsm2.
 */
import { afterAll, describe } from "bun:test";
import { startPostgresEngine } from "../support/engine.ts";
import { setupSoftHsm } from "../support/softhsm.ts";
import { authzAdminSuite } from "./authz-admin-suite.ts";
import { authzClientCredentialsSuite } from "./authz-client-credentials-suite.ts";
import { authzCodeSuite } from "./authz-code-suite.ts";
import { authzDeviceSuite } from "./authz-device-suite.ts";
import { authzRegisterSuite } from "./authz-register-suite.ts";
import { authzJarSuite } from "./authz-jar-suite.ts";
import { authzPairwiseSuite } from "./authz-pairwise-suite.ts";
import { authzHsmSuite } from "./authz-hsm-suite.ts";

const engine = await startPostgresEngine();
const softhsm = engine ? await setupSoftHsm() : undefined;
describe("on PostgreSQL (Debian package postgresql)", () => {
  if (!engine) return;
  describe("admin", () => authzAdminSuite(engine));
  describe("client credentials", () => authzClientCredentialsSuite(engine));
  describe("authorization code", () => authzCodeSuite(engine));
  describe("device authorization grant", () => authzDeviceSuite(engine));
  describe("dynamic client registration", () => authzRegisterSuite(engine));
  describe("request objects (RFC 9101)", () => authzJarSuite(engine));
  describe("pairwise subjects", () => authzPairwiseSuite(engine));
  if (softhsm) describe("HSM (Debian package softhsm2)", () => authzHsmSuite(engine, softhsm));
});
afterAll(() => engine?.server.stop());
