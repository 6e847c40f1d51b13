/**
 * One sm-kms instance in a process of its own, to be killed: `bun test/scale/instance-process.ts
 * '<json {root, index, database, issuer}>'` starts instance `index` of the data root (see
 * instances.ts) on `database` ({url, password_file}), prints `{"url", "admin", "ca"}` once it serves,
 * and stops on SIGTERM.
 */
import { smKms } from "../../apps/sm-kms/service.ts";
import { EMBEDDED } from "../support/engine.ts";
import { startInstance } from "./instances.ts";

const { root, index, database, issuer } = JSON.parse(process.argv[2]!);
const svc = await startInstance(smKms, index, { engine: EMBEDDED, root, database, issuer });
console.log(JSON.stringify({ url: svc.publicUrl, admin: svc.adminUrl, ca: svc.ca }));
process.on("SIGTERM", () => {
  void svc.stop().finally(() => process.exit(0));
});
