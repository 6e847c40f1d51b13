/**
 * A second pki-ca instance in its own process, on the data directory (database) of a test's
 * first one: `bun test/pki-ca/peer-instance.ts '<json {dir, app, issuer}>'`. Prints
 * `{"url": ...}` once its hierarchy is loaded; stops on SIGTERM. In one process, two
 * instances' synchronous SQLite busy waits would block each other's event loop.
 */
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { startCa } from "./helpers.ts";

const { dir, app, issuer } = JSON.parse(process.argv[2]!);
const f = await startCa(app, dir, { issuer });
await pkiCaOf(f.svc.ctx);
console.log(JSON.stringify({ url: f.svc.publicUrl }));
process.on("SIGTERM", () => {
  void f.stop().finally(() => process.exit(0));
});
