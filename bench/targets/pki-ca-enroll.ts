/**
 * pki-ca with EST and SCEP as a benchmark target: tenant `bench` on one auto-approved profile
 * for `*.bench.test` that takes P-256 (EST) and RSA-2048 (SCEP clients sign with RSA) keys;
 * SCEP with the static challenge `bench-challenge` at `/scep/bench/bench` (the default RA: one
 * RSA-3072 certificate that decrypts and signs), `/scep/bench/bench-2048` (one RSA-2048
 * certificate that decrypts and signs, `ra_key: RSA-2048`) and `/scep/bench/bench-ec` (the same
 * profile's RA with a P-256 signing certificate of its own, `ra_signing_key: P-256`).
 */
import { createHash } from "node:crypto";
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { benchPkiApp } from "./pki-ca-app.ts";
import { serveBenchTarget } from "./service.ts";

const app = benchPkiApp() as { profiles: Record<string, Record<string, unknown>> };
const bench = app.profiles.bench!;
bench.key_types = ["P-256", "RSA-2048"];
bench.key_usage = ["digitalSignature", "keyEncipherment"];
app.profiles["bench-ec"] = bench;
app.profiles["bench-2048"] = bench;
const challenge = createHash("sha256").update("bench-challenge").digest("hex");

await serveBenchTarget(pkiCa, {
  config: (c) => {
    c.app = {
      ...app,
      est: { tenants: { bench: { profiles: ["bench"] } } },
      scep: { tenants: { bench: { profiles: { bench: { challenge_sha256: challenge }, "bench-2048": { challenge_sha256: challenge, ra_key: "RSA-2048" }, "bench-ec": { challenge_sha256: challenge, ra_signing_key: "P-256" } } } } },
    };
  },
  ready: (s) => pkiCaOf(s.ctx),
});
