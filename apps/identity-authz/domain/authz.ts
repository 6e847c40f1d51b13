/** identity-authz's domain, wired once per service context: registry, keys, client auth, DPoP, tokens, front channel. */
import { chmodSync, existsSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ServiceContext } from "../../../src/service/context.ts";
import { parseAppConfig, type AuthzConfig } from "../config.ts";
import { AppError } from "../../../src/service/errors.ts";
import { AuthzStore } from "../store.ts";
import { Registry } from "./registry.ts";
import { KeyRing } from "./keys.ts";
import { ClientAuthenticator } from "./client-auth.ts";
import { DpopVerifier } from "./dpop.ts";
import { TokenService } from "./tokens.ts";
import { AuthorizeService } from "./authorize.ts";
import { DeviceService } from "./device.ts";
import { DynamicRegistration } from "./registration.ts";
import { PairwiseSubjects } from "./pairwise.ts";
import { clientDocuments, clientRequests, sectorDocument } from "./client-documents.ts";
import { BackchannelLogout } from "./backchannel-logout.ts";
import type { AuditSender } from "../../../src/audit/sender.ts";

export const ROOT_TENANT = "root";
export const BOOTSTRAP_CLIENT = "bootstrap-admin";
export const BOOTSTRAP_SECRET_FILE = "bootstrap-admin.secret";
export const ADMIN_SCOPE = "identity:admin";

const instances = new WeakMap<ServiceContext, Authz>();

export class Authz {
  readonly cfg: AuthzConfig;
  readonly store: AuthzStore;
  readonly registry: Registry;
  readonly keys: KeyRing;
  readonly clientAuth: ClientAuthenticator;
  readonly dpop: DpopVerifier;
  readonly tokens: TokenService;
  readonly front: AuthorizeService;
  readonly device: DeviceService;
  readonly registration: DynamicRegistration;
  readonly pairwise: PairwiseSubjects;
  /** OIDC back-channel logout: the clients of each session, told when it ends. */
  readonly backchannel: BackchannelLogout;
  /** The service's security events (token issuance, sign-ins, admin changes) to the audit service. */
  readonly audit: AuditSender;
  /** Resolves once the bootstrap has run; every endpoint awaits it. */
  readonly ready: Promise<void>;
  private base?: string;
  private ca?: { pem: string | undefined };

  private constructor(private readonly ctx: ServiceContext) {
    this.cfg = parseAppConfig(ctx.config);
    this.audit = ctx.audit;
    const s = ctx.config.server;
    if (s.public_url) this.base = s.public_url.replace(/\/+$/, "");
    else if (s.port !== 0) this.base = `https://${s.bind === "0.0.0.0" || s.bind === "::" ? "127.0.0.1" : s.bind.includes(":") ? `[${s.bind}]` : s.bind}:${s.port}`;
    this.store = new AuthzStore(ctx.db);
    const caPem = () => this.caPem();
    const documents = clientDocuments(this.cfg, caPem);
    this.registry = new Registry(this.store, ctx.changes, this.cfg.registry_cache_s, (uri) => sectorDocument(documents, uri));
    this.keys = new KeyRing(this.store, ctx.protector, this.cfg.max_token_ttl_s, ctx.changes, this.cfg.key_reload_s, ctx.hsm ? { provider: ctx.hsm, crypto: ctx.crypto } : undefined);
    this.clientAuth = new ClientAuthenticator(this.registry, this.store, documents);
    this.dpop = new DpopVerifier(this.store, this.cfg.proof_window_s);
    const issuer = (t: string) => this.issuer(t);
    this.pairwise = new PairwiseSubjects(this.store, ctx.protector);
    this.tokens = new TokenService(this.store, this.registry, this.keys, ctx.protector, this.dpop, this.cfg, issuer, this.pairwise);
    // On the service's notifier: the template stops it at shutdown and keeps its dead letters.
    this.backchannel = new BackchannelLogout(this.store, this.registry, this.keys, issuer, clientRequests(this.cfg, caPem), ctx.logger, ctx.notifier);
    this.front = new AuthorizeService(this.store, this.registry, this.keys, this.tokens, ctx.protector, this.cfg, issuer, caPem, documents, ctx.audit, this.clientAuth, this.backchannel);
    this.device = new DeviceService(this.store, ctx.protector, this.cfg, issuer);
    this.registration = new DynamicRegistration(this.store, this.registry, this.keys, issuer);
    this.ready = this.bootstrap().catch((e) => {
      ctx.logger.error("bootstrap failed", { error: String(e) });
      throw e;
    });
    this.ready.catch(() => {});
    const timer = setInterval(() => void this.housekeeping(), this.cfg.key_rotation_check_s * 1000);
    (timer as { unref?: () => void }).unref?.();
  }

  /** One domain per service context (the template calls `api` once per prefix). */
  static of(ctx: ServiceContext): Authz {
    let a = instances.get(ctx);
    if (!a) {
      a = new Authz(ctx);
      instances.set(ctx, a);
    }
    return a;
  }

  /** The public base URL: configured, derived from a fixed port, or (port 0, tests) the public listener's address. */
  baseUrl(req?: Request): string {
    if (!this.base) this.base = this.ctx.urls.public ?? (req && new URL(req.url).origin);
    return this.base ?? "https://127.0.0.1";
  }

  issuer(tenant: string): string {
    return `${this.baseUrl()}/t/${tenant}`;
  }

  /** The tenant's endpoints on the mTLS listener (RFC 8705 `mtls_endpoint_aliases`), when it runs. */
  mtlsIssuerBase(tenant: string): string | undefined {
    return this.ctx.urls.mtls && `${this.ctx.urls.mtls}/t/${tenant}`;
  }

  private caPem(): string | undefined {
    if (!this.ca) {
      const file = this.cfg.ca_file ?? join(resolve(this.ctx.config.data.dir), "trust-bundle.pem");
      this.ca = { pem: existsSync(file) ? readFileSync(file, "utf8") : undefined };
    }
    return this.ca.pem;
  }

  /**
   * First start: tenant `root` and the `bootstrap-admin` client, its secret in a 0600 file (never
   * logged). Instances starting together on an empty database all try; the database lets one
   * insert each row (a conflict is another instance's success), so exactly one instance creates
   * the client and writes the secret file, into its own data directory, and the others go on.
   */
  private async bootstrap(): Promise<void> {
    if (!this.cfg.bootstrap || (await this.store.getTenant(ROOT_TENANT))) return;
    await this.registry.createTenant({ id: ROOT_TENANT, display_name: "Root tenant" }).catch((e: unknown) => {
      if (!(e instanceof AppError && e.code === "conflict")) throw e;
    });
    if (await this.store.getClient(ROOT_TENANT, BOOTSTRAP_CLIENT)) return;
    const c = await this.registry.createClient(ROOT_TENANT, {
      client_id: BOOTSTRAP_CLIENT,
      client_name: "Bootstrap administrator",
      redirect_uris: [],
      post_logout_redirect_uris: [],
      grant_types: ["client_credentials"],
      scopes: [ADMIN_SCOPE],
      audiences: [this.ctx.config.auth.audience],
      token_endpoint_auth_method: "client_secret_basic",
      jwks: null,
      jwks_uri: null,
      require_par: false,
      dpop_bound_access_tokens: false,
      id_token_signed_response_alg: "ES256",
      access_token_ttl_s: null,
    }).catch((e: unknown) => {
      if (e instanceof AppError && e.code === "conflict") return undefined; // another instance created it
      throw e;
    });
    if (!c) return;
    const file = join(resolve(this.ctx.config.data.dir), BOOTSTRAP_SECRET_FILE);
    if (existsSync(file)) unlinkSync(file);
    writeFileSync(file, c.client_secret + "\n", { mode: 0o600, flag: "wx" });
    chmodSync(file, 0o600);
    await this.keys.signer(ROOT_TENANT, "ES256");
    this.ctx.logger.warn("created the bootstrap admin client; its secret is in the file named here", {
      tenant: ROOT_TENANT,
      client_id: BOOTSTRAP_CLIENT,
      path: file,
    });
  }

  private async housekeeping(): Promise<void> {
    try {
      await this.keys.rotateDue(this.cfg.key_rotation_days * 86_400);
      await this.store.sweep();
    } catch (e) {
      this.ctx.logger.error("housekeeping failed", { error: String(e) });
    }
  }
}
