/** pki-ca as a benchmark target: the real service in its own process, one auto-approved P-256 profile. */
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { benchPkiApp } from "./pki-ca-app.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(pkiCa, {
  config: (c) => {
    c.app = benchPkiApp();
  },
  ready: (s) => pkiCaOf(s.ctx),
});
