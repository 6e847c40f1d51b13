/**
 * pki-ca's enrollment endpoints per tenant, from its checked configuration: what a client is
 * pointed at (ACME directory, EST and CMP labels, SCEP paths, CMC), as `npm start` prints them.
 * Each protocol's README section has the client commands.
 */
import type { ServiceConfig } from "../../src/service/config.ts";
import { serverUrl } from "../../src/service/config.ts";
import type { ServiceEndpoint } from "../../src/service/context.ts";
import { parsePkiCaConfig } from "./config.ts";

export function enrollmentEndpoints(config: ServiceConfig, publicUrl: string): ServiceEndpoint[] {
  const c = parsePkiCaConfig(config);
  const out: ServiceEndpoint[] = [];
  const add = (name: string, tenant: string, url: string) => out.push({ name, tenant, url });
  for (const tenant of Object.keys(c.acme.tenants)) add("ACME directory", tenant, `${publicUrl}/acme/${tenant}/directory`);
  for (const [tenant, t] of Object.entries(c.est.tenants)) for (const p of t.profiles) add(`EST (profile ${p})`, tenant, `${publicUrl}/.well-known/est/${p}`);
  const plain = c.http_revocation?.scep && c.http_revocation.port !== 0 ? serverUrl(c.http_revocation.bind ?? config.server.bind, c.http_revocation.port).replace(/^https:/, "http:") : undefined;
  for (const [tenant, t] of Object.entries(c.scep.tenants)) {
    for (const p of Object.keys(t.profiles)) {
      add(`SCEP (profile ${p})`, tenant, `${publicUrl}/scep/${tenant}/${p}`);
      if (plain) add(`SCEP over http (profile ${p})`, tenant, `${plain}/scep/${tenant}/${p}`);
    }
  }
  for (const [tenant, t] of Object.entries(c.cmp.tenants)) for (const p of t.profiles) add(`CMP (profile ${p})`, tenant, `${publicUrl}/.well-known/cmp/p/${p}`);
  for (const tenant of Object.keys(c.cmc.tenants)) add("CMC", tenant, `${publicUrl}/cmc`);
  return out;
}
