/** What the template hands each app: its config, database, data protection and logger. */
import type { Kysely } from "kysely";
import type { Elysia } from "elysia";
import type { Logger } from "./log.ts";
import type { ServiceConfig } from "./config.ts";
import type { SessionStore } from "../auth/session.ts";
import type { Dispatcher } from "../crypto/dispatcher.ts";
import type { Pkcs11Provider } from "../crypto/pkcs11/index.ts";
import type { ChangeFeed } from "../storage/change-feed.ts";
import type { Federation } from "../federation/federation.ts";
import type { BearerVerifier, VerifiedToken } from "../auth/bearer.ts";
import type { AuditSender } from "../audit/sender.ts";
import type { Notifier } from "../notify/notifier.ts";
import type { GrpcApi } from "./grpc-listener.ts";

/** Encrypts values at rest; the barrier implements it. `context` binds a ciphertext to its place. */
export interface DataProtector {
  encrypt(plaintext: Uint8Array, context: string): Promise<Uint8Array>;
  decrypt(ciphertext: Uint8Array, context: string): Promise<Uint8Array>;
  /**
   * Registers `fn` to run at every seal: a holder of key material decrypted through this
   * protector (a cache of keys, a loaded CA) drops it there, so sealed means no key in memory.
   */
  onSeal(fn: () => void): void;
  /** True while sealed: nothing that needs a key may run. */
  readonly sealed: boolean;
}

export interface ServiceContext {
  name: string;
  config: ServiceConfig;
  /**
   * Development mode: no `barrier.unseal_files` configured, so the service runs on a
   * development unseal secret. Conveniences (demo data, default profiles) exist only then.
   */
  development: boolean;
  db: Kysely<any>;
  /** Change notices to the other instances on the database, to keep in-memory caches coherent. */
  changes: ChangeFeed;
  protector: DataProtector;
  sessions: SessionStore;
  logger: Logger;
  /** The crypto dispatcher (wasm, WebCrypto, and the HSM when configured). */
  crypto: Dispatcher;
  /** The HSM, when `hsm.pin_file` is configured: for keys that must be generated and kept there. */
  hsm?: Pkcs11Provider;
  /** The other services this one calls, each with its timeouts, retries, breaker and fallback. */
  federation: Federation;
  /**
   * The verifier of the service's access tokens, the one the pipeline applies under
   * /service/api/: for public `routes` that take the same token in a protocol's own header
   * (sm-secrets' Vault surface reads `X-Vault-Token`).
   */
  bearer: BearerVerifier;
  /**
   * The service's base URLs as clients reach them: `server.public_url` (or the public
   * listener's address) and the mTLS listener's (`server.mtls_public_url` or its address).
   * Filled in once the listeners are up, before the first request.
   */
  urls: { public?: string; mtls?: string };
  /** The service's security events to the audit service (a no-op unless `federation.audit.url` is set). */
  audit: AuditSender;
  /**
   * The service's notifications (key rotation, certificate expiry, audit-chain failure, ...) to
   * the channels of the `notifications` config section; apps may add their own channels.
   * Emitting with no channel configured does nothing.
   */
  notifier: Notifier;
  /** Registers work to run at graceful stop (timers, background jobs), before storage closes. */
  onStop(fn: () => void | Promise<void>): void;
  /**
   * Adds a CA (PEM) whose certificates the mTLS listener accepts besides `mtls.ca_file` (or
   * the suite CA), for new connections from now on: pki-ca adds its issuing CAs so that
   * certificates it issued authenticate enrollment (EST). Without an mTLS port it only records.
   */
  addClientCa(pem: string): void;
}

export interface Migration {
  version: number;
  name: string;
  up(db: Kysely<any>): Promise<void>;
}

/** A protocol endpoint of an app, as the suite launcher prints it (`npm start`). */
export interface ServiceEndpoint {
  /** What it is, e.g. "ACME directory" or "SCEP (profile tls-client)". */
  name: string;
  /** The tenant it serves, when it serves one. */
  tenant?: string;
  url: string;
}

/** An app plugged into the template. */
export interface ServiceDefinition {
  name: string;
  title: string;
  description: string;
  version: string;
  defaultPort: number;
  migrations: Migration[];
  /**
   * Adjusts the loaded config before start (optional), e.g. identity-authz pointing its
   * own token verifier at itself. Runs after file, env, flags and test overrides.
   */
  configure?(config: ServiceConfig): void;
  /**
   * Validates the app's own `app` section (optional); throws `config_invalid` naming the key.
   * Runs before the service writes anything to disk, and by `--check-config`.
   */
  checkConfig?(config: ServiceConfig): void;
  /** The API, mounted under both /service/api/v1 and /browser/api/v1. Called once per prefix. */
  api(ctx: ServiceContext): Elysia<any, any, any, any, any, any, any>;
  /**
   * Public routes outside /service/api and /browser/api (optional): protocol endpoints that
   * authenticate callers themselves, such as OAuth's /authorize and /token.
   */
  routes?(ctx: ServiceContext): Elysia<any, any, any, any, any, any, any>;
  /** UI pages under /browser (optional). */
  pages?(ctx: ServiceContext): Elysia<any, any, any, any, any, any, any>;
  /**
   * Hot routes served without the Elysia router (optional): the pipeline's guards, headers,
   * error model and metrics still apply, and each must also be declared as an Elysia route
   * (the API document and the fallback come from there). Two kinds:
   *  - protocol routes outside /service/ and /browser/, which authenticate callers themselves
   *    (identity-authz's token endpoint);
   *  - reads of the machine API under /service/api/ that declare `scopes`: the pipeline has
   *    verified the bearer token by then and checks the scopes before the handler runs.
   *    The handler validates its parameters and its answer with the route's valibot schemas
   *    (`apiRoute` in http.ts does both). Never under /browser/.
   */
  fastRoutes?(ctx: ServiceContext): FastRoute[];
  /**
   * Protocol endpoints that pages of other origins may call without credentials (optional),
   * e.g. identity-authz's token endpoint for the suite's API explorers.
   */
  protocolCors?(config: ServiceConfig): { paths: RegExp; origins: string[] } | undefined;
  /**
   * Origins the service's own pages call (optional): added to `connect-src` of the page CSP,
   * e.g. identity-spa calling identity-authz, identity-rp and identity-rs.
   */
  pageConnect?(config: ServiceConfig): string[];
  /**
   * Protocol endpoints a user points a client at (optional), e.g. pki-ca's enrollment URLs per
   * tenant: from the checked configuration and the public URL; printed by the suite launcher.
   */
  endpoints?(config: ServiceConfig, publicUrl: string): ServiceEndpoint[];
  /**
   * The app's gRPC API (optional), served on `server.grpc_port` when that is set, with mutual
   * TLS and the mTLS principals (see grpc-listener.ts). Called once, only when the port is set.
   */
  grpc?(ctx: ServiceContext): GrpcApi;
  /**
   * How this service checks access tokens that are not JWTs (optional): an RFC 7662
   * introspection client, say. Unset: opaque tokens are refused.
   */
  introspection?(deps: { config: ServiceConfig; logger: Logger; federation: Federation }): ((token: string) => Promise<VerifiedToken | null>) | undefined;
}

/** A route the pipeline dispatches itself (see `ServiceDefinition.fastRoutes`). */
export interface FastRoute {
  method: "GET" | "POST";
  /** Matched against the request path; capture groups are the route's parameters. */
  pattern: RegExp;
  /** The route's name in metrics, as Elysia would name it (e.g. "/t/:tenant/token"). */
  route: string;
  /** Required scopes: set on, and only on, routes under /service/api/ (see `fastRoutes`). */
  scopes?: string[];
  /**
   * The handler reads a JSON body with `requestBodyText` (http.ts), not from the request: the
   * pipeline hands over the text it read and checked instead of a copy of the request.
   */
  bodyText?: boolean;
  handle(req: Request, params: string[]): Promise<Response>;
}
