/** Process entry shared by every app's main.ts: start, print URLs, stop cleanly on signals. */
import { AppError } from "./errors.ts";
import type { ServiceDefinition } from "./context.ts";
import { startService } from "./service.ts";

export async function runMain(def: ServiceDefinition): Promise<void> {
  let running;
  try {
    running = await startService(def);
  } catch (e) {
    const msg = e instanceof AppError ? `${e.code}: ${e.message}` : (e as Error).message;
    process.stderr.write(`${def.name}: cannot start: ${msg}\n`);
    process.exit(2);
  }
  // One machine-readable line the suite launcher reads.
  process.stdout.write(
    JSON.stringify({
      msg: "cryptoutil.ready",
      service: def.name,
      public: running.publicUrl,
      admin: running.adminUrl,
      docs: running.docsUrl,
      trust_bundle: running.trustBundlePath,
    }) + "\n",
  );
  const onSignal = () => void running.stop();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  await running.stopped;
  process.exit(0);
}
