/** `login`, `logout` and `context list|use|remove`: where the CLI's contexts come from. */
import type { Command } from "commander";
import { resolve } from "node:path";
import * as oauth from "oauth4webapi";
import { TokenSource, readCaFile } from "../auth.ts";
import { browserLogin } from "../browser-login.ts";
import { deviceLogin, headless } from "../device-login.ts";
import { collect, emit, globals, sub, table } from "../command.ts";
import { CONTEXT_NAME, forgetTokens, loadConfig, saveConfig, type Context } from "../config.ts";
import { UsageError } from "../errors.ts";
import { contextsOf, readSuite, suitePath } from "../suite.ts";
import { scopesOf } from "../../schemas/scopes.ts";

/** The scopes each service's API checks (as its routes name them). */

/** What `login --browser` asks for by default: openid, profile and every scope of the context's services. */
export function browserScope(ctx: Context): string {
  return ["openid", "profile", ...scopesOf(Object.keys(ctx.services))].join(" ");
}

interface LoginOpts {
  suite?: string;
  issuer?: string;
  clientId?: string;
  clientSecretFile?: string;
  caFile?: string;
  service?: string[];
  adminService?: string[];
  browser?: boolean;
  device?: boolean;
  open: boolean;
  scope?: string;
}

function namedUrls(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const m = /^([a-z0-9][a-z0-9-]{0,62})=(https:\/\/\S+)$/.exec(item);
    if (!m) throw new UsageError(`${flag} takes NAME=https://host:port, not '${item}'`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** The context the explicit flags describe. */
function explicitContext(o: LoginOpts, previous?: Context): Context {
  if (!o.issuer) throw new UsageError("--issuer is required with explicit login flags");
  if (!o.caFile) throw new UsageError("--ca-file is required with explicit login flags");
  if (!/^https:\/\//.test(o.issuer)) throw new UsageError("--issuer must be an https:// URL");
  readCaFile(resolve(o.caFile));
  const tenant = /\/t\/([a-z0-9][a-z0-9-]{0,62})\/?$/.exec(o.issuer)?.[1];
  if (!tenant) throw new UsageError("--issuer must be a tenant issuer, https://host:port/t/TENANT");
  const publicUrls = namedUrls(o.service, "--service");
  const adminUrls = namedUrls(o.adminService, "--admin-service");
  const services: Context["services"] = { ...(previous?.services ?? {}) };
  for (const [name, url] of Object.entries(publicUrls)) services[name] = { ...services[name], public: url, audience: name };
  for (const [name, url] of Object.entries(adminUrls)) {
    if (!services[name]) throw new UsageError(`--admin-service ${name} needs --service ${name}=... too`);
    services[name] = { ...services[name]!, admin: url };
  }
  let auth: Context["auth"];
  if (o.browser) {
    if (!o.clientId) throw new UsageError("--client-id is required");
    auth = { kind: "browser", client_id: o.clientId };
  } else {
    if (!o.clientId || !o.clientSecretFile) throw new UsageError("--client-id and --client-secret-file are required (or --browser)");
    auth = { kind: "client_credentials", client_id: o.clientId, client_secret_file: resolve(o.clientSecretFile) };
  }
  return { tenant, issuer: o.issuer.replace(/\/+$/, ""), ca_file: resolve(o.caFile), auth, services };
}

async function login(cmd: Command, o: LoginOpts): Promise<void> {
  const g = globals(cmd);
  // A user login: --browser, or --device; --browser becomes --device on a machine without a
  // display, unless --no-open says the URL is to be opened by hand (an SSH tunnel to the loopback port).
  const device = !!o.device || (!!o.browser && o.open && headless());
  if (device) o.browser = true;
  if (g.context !== undefined && !CONTEXT_NAME.test(g.context)) throw new UsageError("--context names are letters, digits, '.', '_' and '-'");
  const config = loadConfig();
  const explicit = o.issuer !== undefined || o.clientId !== undefined || o.clientSecretFile !== undefined || o.service !== undefined;
  let name: string;
  const imported: Record<string, Context> = {};
  if (explicit) {
    name = g.context ?? "default";
    imported[name] = explicitContext(o, config.contexts[name]);
  } else if (o.browser && g.context && config.contexts[g.context]) {
    name = g.context;
    imported[name] = config.contexts[name]!;
  } else {
    const path = suitePath(o.suite);
    Object.assign(imported, contextsOf(readSuite(path), path));
    if (Object.keys(imported).length === 0) throw new UsageError(`${path} has no contexts (the suite ran without identity-authz)`);
    name = g.context ?? (imported.demo ? "demo" : Object.keys(imported)[0]!);
    if (!imported[name]) throw new UsageError(`the suite file has no context '${name}' (it has: ${Object.keys(imported).join(", ") || "none"})`);
  }
  let ctx = imported[name]!;
  if (o.browser) {
    const clientId = o.clientId ?? ctx.browser_client_id;
    if (!clientId) throw new UsageError(`context '${name}' names no browser client: pass --client-id`);
    ctx = { ...ctx, auth: { kind: "browser", client_id: clientId } };
    imported[name] = ctx;
  }
  forgetTokens(name);
  const tokens = new TokenSource(name, ctx);
  const t =
    ctx.auth.kind !== "browser"
      ? await tokens.clientCredentials()
      : device
        ? await deviceLogin(tokens, ctx.auth.client_id, o.scope ?? browserScope(ctx))
        : await browserLogin(tokens, ctx.auth.client_id, o.scope ?? browserScope(ctx), { open: o.open });
  if (ctx.auth.kind === "browser") {
    if (!t.refresh_token) throw new UsageError("the issuer returned no refresh token: the client needs the refresh_token grant");
    tokens.storeRefresh({ refresh_token: t.refresh_token, scope: t.scope ?? "" });
  }
  tokens.cache(undefined, t);

  for (const [n, c] of Object.entries(imported)) {
    if (c !== ctx) forgetTokens(n);
    config.contexts[n] = c;
  }
  config.current = name;
  saveConfig(config);
  emit(cmd, { context: name, tenant: ctx.tenant, issuer: ctx.issuer, auth: ctx.auth.kind, client_id: ctx.auth.client_id, contexts: Object.keys(imported), services: Object.keys(ctx.services) }, (r) =>
    [`logged in: context '${r.context}' (tenant ${r.tenant}, client ${r.client_id}, ${r.auth === "browser" ? "browser login" : "client credentials"})`, `services: ${r.services.join(", ") || "none"}`, r.contexts.length > 1 ? `contexts imported: ${r.contexts.join(", ")}` : undefined]
      .filter(Boolean)
      .join("\n"),
  );
}

export function registerLogin(program: Command): void {
  sub(program, "login", "Import the suite's contexts from suite.json, or define one with flags, and check its credentials", [
    "login                                  # reads ./data/suite.json (or $CRYPTOUTIL_SUITE); context 'demo'",
    "login --context admin                  # the suite's root-tenant admin context",
    "login --browser                        # authorization code + PKCE in your browser",
    "login --device                         # a code to enter in a browser elsewhere (RFC 8628)",
    "login --context prod --issuer https://id.example.com/t/acme --client-id ci --client-secret-file ci.secret \\\n      --ca-file ca.pem --service sm-kms=https://kms.example.com",
  ])
    .option("--suite <path>", "the suite file written by npm start (default $CRYPTOUTIL_SUITE or ./data/suite.json)")
    .option("--issuer <url>", "the tenant's issuer, https://host:port/t/TENANT")
    .option("--client-id <id>", "the client to log in as")
    .option("--client-secret-file <file>", "file holding the client's secret")
    .option("--ca-file <file>", "CA bundle to verify the services' TLS certificates")
    .option("--service <name=url>", "a service's public URL (repeatable); its name is the token audience", collect)
    .option("--admin-service <name=url>", "a service's admin URL (repeatable)", collect)
    .option("--browser", "log in as a user in the browser (authorization code + PKCE, loopback redirect)")
    .option("--device", "log in as a user with a code entered in a browser on any device (device grant, RFC 8628); what --browser does without DISPLAY/WAYLAND_DISPLAY unless --no-open is given")
    .option("--no-open", "print the login URL instead of opening a browser")
    .option("--scope <scopes>", "scopes to ask for with --browser or --device (default: openid profile and every service scope)")
    .action((o: LoginOpts, cmd: Command) => login(cmd, o));

  sub(program, "logout", "Forget the tokens of a context (and revoke its browser login's refresh token)", ["logout", "logout --context admin"]).action(async (_: unknown, cmd: Command) => {
    const g = globals(cmd);
    const config = loadConfig();
    const name = g.context ?? config.current;
    if (!name || !config.contexts[name]) throw new UsageError(name ? `no context named '${name}'` : "no context: nothing to log out of");
    const ctx = config.contexts[name]!;
    let revoked = false;
    if (ctx.auth.kind === "browser") {
      const tokens = new TokenSource(name, ctx);
      const rt = tokens.storedRefresh();
      if (rt) {
        // Best effort: the local tokens go whether or not the issuer can be reached.
        try {
          const as = await tokens.metadata();
          const client = { client_id: ctx.auth.client_id, token_endpoint_auth_method: "none" };
          const res = await oauth.revocationRequest(as, client, oauth.None(), rt.refresh_token, tokens.fetchOptions);
          revoked = res.ok;
        } catch {
          revoked = false;
        }
      }
    }
    forgetTokens(name);
    emit(cmd, { context: name, revoked_refresh_token: revoked }, (r) => `logged out of context '${r.context}'${r.revoked_refresh_token ? " (refresh token revoked)" : ""}`);
  });

  const context = sub(program, "context", "List the contexts or choose the current one", ["context list", "context use admin"]);
  sub(context, "list", "List the contexts", ["context list", "context list --json"]).action((_: unknown, cmd: Command) => {
    const c = loadConfig();
    const rows = Object.entries(c.contexts).map(([n, x]) => ({ name: n, current: n === c.current, tenant: x.tenant, issuer: x.issuer, auth: x.auth.kind, client_id: x.auth.client_id, services: Object.keys(x.services) }));
    emit(cmd, { current: c.current, contexts: rows }, (r) =>
      r.contexts.length === 0 ? "no contexts: run cryptoutil login" : table(["", "NAME", "TENANT", "CLIENT", "AUTH", "ISSUER"], r.contexts.map((x) => [x.current ? "*" : "", x.name, x.tenant, x.client_id, x.auth, x.issuer])),
    );
  });
  sub(context, "use <name>", "Make a context the current one", ["context use admin"]).action((name: string, _: unknown, cmd: Command) => {
    const c = loadConfig();
    if (!c.contexts[name]) throw new UsageError(`no context named '${name}' (cryptoutil context list shows them)`);
    c.current = name;
    saveConfig(c);
    emit(cmd, { current: name }, (r) => `current context: ${r.current}`);
  });
  sub(context, "remove <name>", "Remove a context and its tokens", ["context remove old-prod"]).action((name: string, _: unknown, cmd: Command) => {
    const c = loadConfig();
    if (!c.contexts[name]) throw new UsageError(`no context named '${name}'`);
    delete c.contexts[name];
    if (c.current === name) c.current = null;
    forgetTokens(name);
    saveConfig(c);
    emit(cmd, { removed: name }, (r) => `removed context '${r.removed}'`);
  });
}
