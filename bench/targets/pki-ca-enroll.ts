/**
 * pki-ca with EST and SCEP as a benchmark target: tenant `bench` on one auto-approved profile
 * for `*.bench.test` that takes P-256 (EST) and RSA-2048 (SCEP clients sign with RSA) keys;
 * SCEP with the static challenge `bench-challenge`.
 */
import { createHash } from "node:crypto";
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { benchPkiApp } from "./pki-ca-app.ts";
import { serveBenchTarget } from "./service.ts";

const app = benchPkiApp() as { profiles: { bench: Record<string, unknown> } };
app.profiles.bench.key_types = ["P-256", "RSA-2048"];
app.profiles.bench.key_usage = ["digitalSignature", "keyEncipherment"];

await serveBenchTarget(pkiCa, {
  config: (c) => {
    c.app = {
      ...app,
      est: { tenants: { bench: { profiles: ["bench"] } } },
      scep: { tenants: { bench: { profiles: { bench: { challenge_sha256: createHash("sha256").update("bench-challenge").digest("hex") } } } } },
    };
  },
  ready: (s) => pkiCaOf(s.ctx),
});
