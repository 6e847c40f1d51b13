/**
 * Several instances of one service on one database, as a scaled-out deployment runs them:
 * each instance has its own data directory (admin token, TLS leaf, bootstrap files) and
 * ports, and they share the data root, hence the database on the engine, the unseal secret
 * and the suite CA. `startInstances` starts them at the same moment.
 */
import { join } from "node:path";
import type { ServiceDefinition } from "../../src/service/context.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { databaseConfig, type TestEngine } from "../support/engine.ts";
import type { TestIssuer } from "../support/issuer.ts";
import { startTestService, type TestService } from "../support/service.ts";

export interface InstanceOptions {
  engine: TestEngine;
  root: string;
  issuer?: TestIssuer;
  /** Each instance's config; `i` is its index (data directory `<service>-<i>`). */
  overrides?: (c: ServiceConfig, i: number) => void;
}

/** Starts `n` instances together on one new (or the root's existing) database. */
export async function startInstances(def: ServiceDefinition, n: number, o: InstanceOptions): Promise<TestService[]> {
  // Created before the instances start, so they do not each create a database of their own.
  await databaseConfig(o.engine, join(o.root, def.name));
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      startTestService(def, {
        engine: o.engine,
        root: o.root,
        issuer: o.issuer,
        overrides: (c) => {
          c.data.dir = join(o.root, `${def.name}-${i}`);
          c.log.level = "warn";
          c.log.access = false;
          c.security.rate_limit_rps = 100_000;
          c.security.rate_limit_burst = 100_000;
          o.overrides?.(c, i);
        },
      }),
    ),
  );
}
