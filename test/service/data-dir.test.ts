/**
 * Where a service started alone writes: with `--data.dir` in a fresh directory, everything
 * (database, admin token, development unseal secret, suite CA, trust bundle) lands inside it
 * and nothing beside it. Under `npm start`, `--data.suite_dir` names the shared data root that
 * holds the development unseal secret and the suite CA. On Bun and on Deno (where the process
 * may only write inside the data directory: a write outside would fail its start).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../support/service.ts";
import { startServiceProcess } from "../support/service-process.ts";
import { RUNTIMES } from "../../scripts/suite/runtime.ts";

for (const runtime of RUNTIMES) {
  describe(`on ${runtime}`, () => {
    test("a service alone writes only inside its --data.dir", async () => {
      const parent = tempDir("cryptoutil-datadir-");
      const dataDir = join(parent, "svc");
      const svc = await startServiceProcess("learn-ps", { runtime, dataRoot: dataDir, args: [`--data.dir=${dataDir}`, "--server.port=0"] });
      try {
        expect((await svc.admin("/admin/v1/readyz")).status).toBe(200);
      } finally {
        expect(await svc.stop()).toBe(0);
      }
      expect(readdirSync(parent)).toEqual(["svc"]);
      for (const f of ["dev-unseal.secret", "admin.token", "trust-bundle.pem", "suite-ca", "learn-ps.db"]) expect(existsSync(join(dataDir, f))).toBe(true);
    });

    test("with --data.suite_dir (npm start's layout) the shared files live in that root", async () => {
      const root = tempDir("cryptoutil-suiteroot-");
      const dataDir = join(root, "learn-ps");
      const svc = await startServiceProcess("learn-ps", { runtime, dataRoot: root, args: [`--data.dir=${dataDir}`, `--data.suite_dir=${root}`, "--server.port=0"] });
      expect(await svc.stop()).toBe(0);
      expect(readdirSync(root).sort()).toEqual(["dev-unseal.secret", "learn-ps", "suite-ca"]);
      expect(existsSync(join(dataDir, "dev-unseal.secret"))).toBe(false);
    });
  });
}
