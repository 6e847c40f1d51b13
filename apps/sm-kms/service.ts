/**
 * sm-kms: the Secrets Manager key management service. Elastic keys (per-tenant key rings
 * from `src/keyring`) encrypt, decrypt, wrap, sign, verify and MAC with JOSE outputs.
 * `domain.ts` holds the rules, `routes.ts` the HTTP layer; storage is the keyring's.
 */
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { KeyImporter, serviceKeyring } from "../../src/keyring/index.ts";
import { ByokImporter } from "./byok.ts";
import { migrations } from "./migrations.ts";
import { KmsService, parseKmsConfig } from "./domain.ts";
import { kmsRoutes } from "./routes.ts";
import { RawOps } from "./raw-ops.ts";
import { rawRoutes } from "./raw-routes.ts";
import { kmsGrpc } from "./grpc.ts";
import { kmsPages } from "./console/index.ts";

const instances = new WeakMap<ServiceContext, KmsService>();

/** One domain per service context (the template calls `api` once per prefix), with its sweep timer. */
function kmsOf(ctx: ServiceContext): KmsService {
  let kms = instances.get(ctx);
  if (!kms) {
    const cfg = parseKmsConfig(ctx.config.app);
    const ring = serviceKeyring(ctx, cfg);
    kms = new KmsService(ring, cfg, new ByokImporter(ctx.db, ctx.protector, ring, new KeyImporter(ring)));
    instances.set(ctx, kms);
  }
  return kms;
}

export const smKms: ServiceDefinition = {
  name: "sm-kms",
  title: "sm-kms: Key Management",
  description:
    "Multi-tenant key management on elastic keys: JWE encrypt/decrypt with an encryption context, data keys, rewrap, JWS sign/verify, HMAC, random bytes, public JWK export, batches. Key material is stored barrier-encrypted, or kept in the HSM when one is configured.",
  version: "1.0.0",
  defaultPort: 8080,
  migrations,
  checkConfig: (c) => void parseKmsConfig(c.app),
  api: (ctx) => {
    const kms = kmsOf(ctx);
    return kmsRoutes(kms, ctx.audit).use(rawRoutes(new RawOps(kms.ring)));
  },
  grpc: (ctx) => kmsGrpc(kmsOf(ctx)),
  pages: (ctx) => kmsPages(ctx, kmsOf(ctx)),
};
