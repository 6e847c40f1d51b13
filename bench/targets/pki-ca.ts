/**
 * pki-ca as a benchmark target: the real service in its own process, one auto-approved P-256
 * profile. BENCH_HTTP_REVOCATION_PORT=N also opens its plain-HTTP revocation listener on N.
 */
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(pkiCa, {
  config: (c) => {
    c.app = {
      base_url: "http://pki.bench.test",
      issuing_cas: ["P-256"],
      profiles: {
        bench: {
          issuing_ca: "P-256",
          key_types: ["P-256"],
          max_validity_days: 90,
          default_validity_days: 30,
          key_usage: ["digitalSignature"],
          extended_key_usage: ["serverAuth"],
          dns: { allow: ["*.bench.test"] },
        },
      },
      ...(process.env.BENCH_HTTP_REVOCATION_PORT ? { http_revocation: { bind: "127.0.0.1", port: Number(process.env.BENCH_HTTP_REVOCATION_PORT) } } : {}),
    };
  },
  ready: (s) => pkiCaOf(s.ctx),
});
