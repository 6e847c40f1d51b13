/** Process entry shared by every app's main.ts: start, print URLs, stop cleanly on signals. */
import { AppError } from "./errors.ts";
import type { ServiceDefinition } from "./context.ts";
import { resolveConfig, startService } from "./service.ts";
import { isDevelopment, serverUrl } from "./config.ts";

/**
 * `--check-config` validates the configuration exactly as a start would, writes nothing, and
 * prints one JSON line (the suite launcher checks every service this way before starting any).
 */
function checkOnly(def: ServiceDefinition, argv: string[]): never {
  const config = resolveConfig(def, { argv });
  const { server, data } = config;
  const publicUrl = server.public_url ?? (server.port ? serverUrl(server.bind, server.port) : undefined);
  process.stdout.write(JSON.stringify({ msg: "cryptoutil.config", service: def.name, development: isDevelopment(config), public: publicUrl, data_dir: data.dir }) + "\n");
  process.exit(0);
}

export async function runMain(def: ServiceDefinition): Promise<void> {
  // A launcher that went away closes our stdout: stop writing instead of throwing EPIPE.
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);
  const args = process.argv.slice(2);
  const check = args.includes("--check-config");
  const argv = args.filter((a) => a !== "--check-config");
  let running;
  try {
    if (check) checkOnly(def, argv);
    running = await startService(def, { argv });
  } catch (e) {
    const msg = e instanceof AppError ? `${e.code}: ${e.message}` : (e as Error).message;
    process.stderr.write(`${def.name}: cannot start: ${msg}\n`);
    process.exit(2);
  }
  // Signals stop gracefully from the moment the ready line is out (a launcher may act on it at once).
  const onSignal = () => void running.stop();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  // One machine-readable line the suite launcher reads.
  process.stdout.write(
    JSON.stringify({
      msg: "cryptoutil.ready",
      service: def.name,
      public: running.publicUrl,
      admin: running.adminUrl,
      docs: running.docsUrl,
      trust_bundle: running.trustBundlePath,
      ...(running.grpcAddress ? { grpc: running.grpcAddress } : {}),
      ...(def.endpoints ? { endpoints: def.endpoints(running.config, running.publicUrl) } : {}),
      ...(running.mtlsUrl ? { mtls: running.mtlsUrl } : {}),
    }) + "\n",
  );
  watchSupervisor(onSignal);
  await running.stopped;
  process.exit(0);
}

/**
 * Under the suite launcher (which sets CRYPTOUTIL_SUPERVISOR_PID), stops gracefully once the
 * launcher is gone, so a launcher that was killed outright leaves no services running.
 */
function watchSupervisor(stop: () => void): void {
  const pid = Number(process.env.CRYPTOUTIL_SUPERVISOR_PID);
  if (!Number.isInteger(pid) || pid <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(pid, 0); // signal 0: only asks whether the process exists
    } catch (e) {
      if ((e as { code?: string }).code !== "ESRCH") return; // exists, but not ours to signal
      clearInterval(timer);
      stop();
    }
  }, 1000);
  timer.unref();
}
