/**
 * `admin health|seal|unseal|rotate|shutdown --service NAME` and
 * `admin dead-letters list|show|retry|discard --service NAME`: a service's admin server
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

async function call(cmd: Command, o: AdminOpts, method: "GET" | "POST" | "DELETE", path: string, needsToken: boolean): Promise<Record<string, unknown>> {
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
  if (res.status === 204) return {};
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
  registerDeadLetters(admin);
  withService(sub(admin, "shutdown", "Stop the service gracefully (in-flight requests finish)", ["admin shutdown --service learn-ps"])).action(async (o: AdminOpts, cmd: Command) => {
    emit(cmd, await call(cmd, o, "POST", "/shutdown", true), () => `${o.service}: stopping`);
  });
}

interface DeadLetterView {
  id: string;
  channel: string;
  attempts: number;
  error: string;
  at: string;
  notification: { type: string; tenant: string; created_at: string; data: Record<string, unknown> };
}

const DL = "/notifications/dead-letters";
const idOf = (id: string) => {
  if (!/^[0-9a-f-]{36}$/i.test(id)) throw new UsageError("a dead letter's id is a UUID (see admin dead-letters list)");
  return id;
};

/** `admin dead-letters`: notifications no delivery attempt got through, on the service's admin API. */
function registerDeadLetters(admin: Command): void {
  const dl = sub(admin, "dead-letters", "Notifications that could not be delivered: list, show, retry, discard", ["admin dead-letters list --service pki-ca", "admin dead-letters retry <id> --service sm-kms"]);
  withService(sub(dl, "list", "List dead letters, oldest first (one page)", ["admin dead-letters list --service sm-kms --tenant acme"]))
    .option("--tenant <tenant>", "only this tenant's")
    .option("--limit <n>", "page size (1-500)", "50")
    .option("--after <id>", "the page after this dead letter (the `next` of the previous page)")
    .action(async (o: AdminOpts & { tenant?: string; limit: string; after?: string }, cmd: Command) => {
      const q = new URLSearchParams({ limit: o.limit });
      if (o.tenant) q.set("tenant", o.tenant);
      if (o.after) q.set("after", idOf(o.after));
      const page = (await call(cmd, o, "GET", `${DL}?${q}`, true)) as { dead_letters: DeadLetterView[]; next: string | null };
      emit(cmd, page, (p) =>
        [...p.dead_letters.map((d) => `${d.id}  ${d.at}  ${d.notification.tenant}  ${d.notification.type}  ${d.channel}  attempts=${d.attempts}  ${d.error}`), ...(p.next ? [`next page: --after ${p.next}`] : [])].join("\n") || "no dead letters",
      );
    });
  withService(sub(dl, "show <id>", "One dead letter: the event, the channel, attempts and the last error", ["admin dead-letters show <id> --service sm-kms"])).action(async (id: string, o: AdminOpts, cmd: Command) => {
    emit(cmd, await call(cmd, o, "GET", `${DL}/${idOf(id)}`, true), (d) => JSON.stringify(d, null, 2));
  });
  withService(sub(dl, "retry <id>", "Try one dead letter again now; delivered, it leaves the list", ["admin dead-letters retry <id> --service sm-kms"])).action(async (id: string, o: AdminOpts, cmd: Command) => {
    const r = await call(cmd, o, "POST", `${DL}/${idOf(id)}/retry`, true);
    emit(cmd, r, (x) => (x.delivered ? `${id}: delivered` : `${id}: still refused (attempts=${String(x.attempts)}: ${String(x.error)})`));
    if (!r.delivered) process.exitCode = 1;
  });
  withService(sub(dl, "discard <id>", "Drop a dead letter", ["admin dead-letters discard <id> --service sm-kms"])).action(async (id: string, o: AdminOpts, cmd: Command) => {
    emit(cmd, await call(cmd, o, "DELETE", `${DL}/${idOf(id)}`, true), () => `${id}: discarded`);
  });
}
