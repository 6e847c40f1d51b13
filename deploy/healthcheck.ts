/**
 * Container health probe: `bun deploy/healthcheck.ts [livez|readyz]`.
 *
 * Calls the admin server on 127.0.0.1 (it never listens elsewhere) over HTTPS and
 * verifies its certificate against the suite trust bundle; exits 0 when the probe
 * answers 2xx, 1 otherwise (including bad TLS, timeout or a missing bundle).
 * Env: CRYPTOUTIL_SERVER_ADMIN_PORT (default 9090), CRYPTOUTIL_HEALTHCHECK_CA_FILE
 * (default /data/trust-bundle.pem), CRYPTOUTIL_HEALTHCHECK_TIMEOUT_MS (default 4000).
 */
import { readFile } from "node:fs/promises";

const PROBES = new Set(["livez", "readyz"]);

async function main(): Promise<number> {
  const probe = process.argv[2] ?? "livez";
  if (!PROBES.has(probe)) {
    console.error(`healthcheck: unknown probe "${probe}" (livez or readyz)`);
    return 1;
  }
  const port = Number(process.env.CRYPTOUTIL_SERVER_ADMIN_PORT ?? "9090");
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error("healthcheck: CRYPTOUTIL_SERVER_ADMIN_PORT is not a port number");
    return 1;
  }
  const caFile = process.env.CRYPTOUTIL_HEALTHCHECK_CA_FILE ?? "/data/trust-bundle.pem";
  let ca: string;
  try {
    ca = await readFile(caFile, "utf8");
  } catch {
    console.error(`healthcheck: cannot read the trust bundle ${caFile}`);
    return 1;
  }
  if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
    // Static TLS without a CA bundle leaves it empty; never fall back to unverified TLS.
    console.error(`healthcheck: the trust bundle ${caFile} holds no certificate`);
    return 1;
  }
  const timeout = Number(process.env.CRYPTOUTIL_HEALTHCHECK_TIMEOUT_MS ?? "4000");
  try {
    const res = await fetch(`https://127.0.0.1:${port}/admin/v1/${probe}`, {
      tls: { ca },
      signal: AbortSignal.timeout(timeout),
    } as RequestInit);
    await res.arrayBuffer();
    if (res.ok) return 0;
    console.error(`healthcheck: ${probe} answered ${res.status}`);
    return 1;
  } catch (e) {
    console.error(`healthcheck: ${probe} failed: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

process.exit(await main());
