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
  /** Holds the database (`database` names it instead, in a process of its own). */
  engine: TestEngine;
  root: string;
  issuer?: Pick<TestIssuer, "issuer" | "jwksUrl" | "caPem">;
  /** The database of an instance started apart from its engine (instance-process.ts). */
  database?: Partial<ServiceConfig["database"]>;
  /** Each instance's config; `i` is its index (data directory `<service>-<i>`). */
  overrides?: (c: ServiceConfig, i: number) => void;
}

/** Starts `n` instances together on one new (or the root's existing) database. */
export async function startInstances(def: ServiceDefinition, n: number, o: InstanceOptions): Promise<TestService[]> {
  // Created before the instances start, so they do not each create a database of their own.
  await databaseConfig(o.engine, join(o.root, def.name));
  return Promise.all(Array.from({ length: n }, (_, i) => startInstance(def, i, o)));
}

/** Starts instance `i` of `def` on the root's database. */
export function startInstance(def: ServiceDefinition, i: number, o: InstanceOptions): Promise<TestService> {
  return startTestService(def, {
    engine: o.engine,
    root: o.root,
    issuer: o.issuer as TestIssuer | undefined,
    overrides: (c) => {
      c.data.dir = join(o.root, `${def.name}-${i}`);
      Object.assign(c.database, o.database ?? {});
      c.log.level = "warn";
      c.log.access = false;
      c.security.rate_limit_rps = 100_000;
      c.security.rate_limit_burst = 100_000;
      o.overrides?.(c, i);
    },
  });
}

/**
 * Asks `probe` until it gives `want` (a change notice on its way, a server coming back), every
 * 100 ms for at most `limitMs` (default 20 s); returns the last answer for the caller to check.
 */
export async function eventually<T>(probe: () => Promise<T>, want: T, limitMs = 20_000): Promise<T> {
  const end = Date.now() + limitMs;
  let got = await probe();
  while (got !== want && Date.now() < end) {
    await Bun.sleep(100);
    got = await probe();
  }
  return got;
}
