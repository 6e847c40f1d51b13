/**
 * pki-ca as a benchmark target: the real service in its own process, one auto-approved P-256
 * profile. BENCH_HTTP_REVOCATION_PORT=N also opens its plain-HTTP revocation listener on N.
 */
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { benchPkiApp } from "./pki-ca-app.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(pkiCa, {
  config: (c) => {
    c.app = {
      ...benchPkiApp(),
      ...(process.env.BENCH_HTTP_REVOCATION_PORT ? { http_revocation: { bind: "127.0.0.1", port: Number(process.env.BENCH_HTTP_REVOCATION_PORT) } } : {}),
    };
  },
  ready: (s) => pkiCaOf(s.ctx),
});
