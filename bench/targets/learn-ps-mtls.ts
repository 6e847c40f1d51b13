/**
 * learn-ps with its mutual-TLS port: the service's own client certificate
 * (spiffe://cryptoutil/learn-ps) is mapped to tenant "bench" and written next to the data
 * dir as client.crt / client.key for the load generator.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(learnPs, {
  config: (c) => {
    c.server.mtls_port = 0;
    c.mtls.principals = [{ uri: "spiffe://cryptoutil/learn-ps", tenant: "bench", scopes: ["pets:read", "pets:write"] }];
  },
  ready: async (s) => {
    const m = s.certificates.client!.current;
    writeFileSync(join(s.config.data.dir, "client.crt"), m.certChainPem);
    writeFileSync(join(s.config.data.dir, "client.key"), m.keyPem, { mode: 0o600 });
  },
});
