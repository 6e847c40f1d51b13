/**
 * pki-ca with ACME as a benchmark target: tenant `bench` on one auto-approved P-256 profile for
 * `*.bench.test`. `acme.json` next to the data dir carries the validation settings of the run:
 * the http-01 port of the bench's responder and the DNS server that resolves the bench's names.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { benchPkiApp } from "./pki-ca-app.ts";
import { serveBenchTarget } from "./service.ts";

const acme = JSON.parse(readFileSync(join(dirname(process.argv[2]!), "acme.json"), "utf8")) as { http01_port: number; dns_resolvers: string[] };
const unlimited = { limit: 0, window_seconds: 60 };

await serveBenchTarget(pkiCa, {
  config: (c) => {
    c.app = {
      ...benchPkiApp(),
      acme: {
        tenants: { bench: { profiles: ["bench"] } },
        http01_port: acme.http01_port,
        dns_resolvers: acme.dns_resolvers,
        // The bench's responder is on loopback, as pebble's is.
        allow_private_addresses: true,
        rate_limits: { orders_per_account: unlimited, orders_per_identifier: unlimited, accounts_per_ip: unlimited },
      },
    };
  },
  ready: (s) => pkiCaOf(s.ctx),
});
