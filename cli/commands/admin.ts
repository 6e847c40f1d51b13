/**
 * `admin health|seal|unseal|rotate|shutdown --service NAME`: a service's admin server
 * (127.0.0.1 only), with the admin token from the suite's `admin_token_file` or
 * `--admin-token-file`.
 */
import type { Command } from "commander";
import { readSecretFile } from "../auth.ts";
import { emit, fields, Session, sub } from "../command.ts";
import { UsageError } from "../errors.ts";
import { expectJson, ServiceClient } from "../http.ts";

interface AdminOpts {
  service: string;
  adminTokenFile?: string;
}

async function call(cmd: Command, o: AdminOpts, method: "GET" | "POST", path: string, needsToken: boolean): Promise<Record<string, unknown>> {
  const s = Session.open(cmd);
  const svc = s.service(o.service);
  if (!svc.admin) throw new UsageError(`context '${s.name}' has no admin URL for ${o.service} (log in with --admin-service ${o.service}=https://127.0.0.1:PORT)`);
  const headers: Record<string, string> = {};
  if (needsToken) {
    const file = o.adminTokenFile ?? svc.admin_token_file;
    if (!file) throw new UsageError(`no admin token file for ${o.service}: pass --admin-token-file`);
    headers.authorization = `Bearer ${readSecretFile(file)}`;
  }
  const res = await new ServiceClient(o.service, svc.admin, s.caPem()).raw(method, `/admin/v1${path}`, { headers });
  return expectJson<Record<string, unknown>>(res);
}

const withService = (c: Command) =>
  c.requiredOption("--service <name>", "the service (sm-kms, jose-ja, pki-ca, identity-authz, identity-idp, learn-ps)").option("--admin-token-file <file>", "the service's admin token (default: from the suite file)");

export function registerAdmin(program: Command): void {
  const admin = sub(program, "admin", "A service's admin server: health, barrier seal/unseal/rotate, shutdown", ["admin health --service sm-kms", "admin rotate content --service sm-kms"]);
  withService(sub(admin, "health", "Readiness and details of a service", ["admin health --service sm-kms", "admin health --service pki-ca --json"])).action(async (o: AdminOpts, cmd: Command) => {
    const r = await call(cmd, o, "GET", "/healthz", false);
    emit(cmd, r, (x) => fields(x));
  });
  withService(sub(admin, "seal", "Seal the service's barrier: it refuses work until unsealed", ["admin seal --service sm-kms"])).action(async (o: AdminOpts, cmd: Command) => {
    emit(cmd, await call(cmd, o, "POST", "/barrier/seal", true), (x) => `${o.service}: sealed ${fields(x)}`.trim());
  });
  withService(sub(admin, "unseal", "Unseal the barrier from the service's configured unseal files", ["admin unseal --service sm-kms"])).action(async (o: AdminOpts, cmd: Command) => {
    emit(cmd, await call(cmd, o, "POST", "/barrier/unseal", true), (x) => `${o.service}: unsealed ${fields(x)}`.trim());
  });
  withService(sub(admin, "rotate <layer>", "Rotate a barrier layer: root, intermediate or content", ["admin rotate content --service sm-kms", "admin rotate root --service pki-ca"])).action(
    async (layer: string, o: AdminOpts, cmd: Command) => {
      if (!["root", "intermediate", "content"].includes(layer)) throw new UsageError("the layer is root, intermediate or content");
      emit(cmd, await call(cmd, o, "POST", `/barrier/rotate/${layer}`, true), (x) => `${o.service}: ${layer} key rotated`);
    },
  );
  withService(sub(admin, "shutdown", "Stop the service gracefully (in-flight requests finish)", ["admin shutdown --service learn-ps"])).action(async (o: AdminOpts, cmd: Command) => {
    emit(cmd, await call(cmd, o, "POST", "/shutdown", true), () => `${o.service}: stopping`);
  });
}
