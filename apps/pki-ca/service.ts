/**
 * pki-ca: the certificate authority. An instance root and online issuing CAs
 * (keys barrier-encrypted), profile policy, an RA with approval, revocation with
 * CRLs, and an OCSP responder. The hierarchy loads (or is created) once per
 * service context and is shared by both API prefixes and the public routes.
 */
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { parsePkiCaConfig } from "./config.ts";
import { PkiStore } from "./store.ts";
import { loadOrCreateHierarchy, renewSigners, type CaUrls, type HierarchyOptions } from "./hierarchy.ts";
import { loadExternalHierarchy } from "./ceremony/external.ts";
import { PkiCa, REVOCATIONS_CHANNEL } from "./domain.ts";
import { pkiCaChannels } from "./webhooks.ts";
import { caApi, caPublicRoutes } from "./routes.ts";
import { caPages } from "./console/index.ts";
import { Elysia } from "elysia";
import { errorResponse, mapError } from "../../src/service/http.ts";
import { AppError } from "../../src/service/errors.ts";
import { toPem } from "../../src/pki/keys.ts";
import { runtime } from "../../src/runtime/index.ts";
import { AcmeAuthority } from "./acme/domain.ts";
import { AcmeStore } from "./acme/store.ts";
import type { NonceScope } from "./acme/nonces.ts";
import { ValidationAuthority } from "./acme/validation.ts";
import { acmeAdminApi, acmeFastRoutes, acmeRoutes } from "./acme/routes.ts";
import { EstAuthority } from "./est/domain.ts";
import { EstStore } from "./est/store.ts";
import { estAdminApi, estRoutes } from "./est/routes.ts";
import { ScepAuthority } from "./scep/domain.ts";
import { ScepStore } from "./scep/store.ts";
import { scepAdminApi, scepRoutes } from "./scep/routes.ts";
import { CmpAuthority } from "./cmp/domain.ts";
import { CmpStore } from "./cmp/store.ts";
import { cmpAdminApi, cmpRoutes } from "./cmp/routes.ts";
import { CmcAuthority, sweepNonces } from "./cmc/domain.ts";
import { CmcStore } from "./cmc/store.ts";
import { cmcAdminApi, cmcRoutes } from "./cmc/routes.ts";
import { enrollmentEndpoints } from "./endpoints.ts";

const instances = new WeakMap<ServiceContext, Promise<PkiCa>>();
/** How often each instance deletes CMC senderNonces past their retention. */
const NONCE_SWEEP_MS = 60 * 60_000;

/**
 * The CA of a service context, created on first use; also schedules CRL regeneration. A seal
 * drops it, keys, caches and timers with it (sealed means no CA key in memory); the first use
 * after unseal loads it again from the database through the barrier.
 */
export function pkiCaOf(ctx: ServiceContext): Promise<PkiCa> {
  let p = instances.get(ctx);
  if (!p) {
    const config = parsePkiCaConfig(ctx.config);
    if (!sealHooked.has(ctx)) {
      sealHooked.add(ctx);
      ctx.protector.onSeal(() => void dropCa(ctx));
      ctx.onStop(() => dropCa(ctx));
      // pki-ca's own channels join the service's notifier once (it outlives a seal).
      ctx.notifier.addChannels(pkiCaChannels(config));
    }
    const store = new PkiStore(ctx.db);
    const timers: Array<ReturnType<typeof setInterval>> = [];
    p = (async () => {
      const urls: CaUrls = {
        crl: (id) => `${config.base_url}/pki/crl/${id}.crl`,
        caIssuers: (id) => `${config.base_url}/pki/ca/${id}.crt`,
        ocsp: `${config.base_url}/pki/ocsp`,
      };
      const opts: HierarchyOptions = { crlShards: config.crl_shards, responderValidityHours: config.responder_validity_hours, tsaValidityHours: config.tsa_validity_hours };
      const hierarchy = await (config.root === "external" ? loadExternalHierarchy : loadOrCreateHierarchy)(store, ctx.protector, config.issuing_cas, urls, opts);
      const ca = new PkiCa(config, store, hierarchy);
      ca.timers = timers;
      ca.audit = ctx.audit;
      // Certificates this CA issued authenticate EST enrollment on the mTLS port (an offline
      // root's issuing CAs join once the ceremony has given them their certificates).
      const trustOwn = () => {
        const certs = [() => hierarchy.root.cert, ...[...hierarchy.issuing.values()].map((i) => () => i.cert)];
        for (const certOf of certs) {
          try {
            const c = certOf();
            if (c.rawData.byteLength > 0) ctx.addClientCa(toPem("CERTIFICATE", new Uint8Array(c.rawData)));
          } catch {
            // an offline root's certificate not imported yet (its getter says ca_not_ready)
          }
        }
      };
      trustOwn();
      ca.onHierarchyChange = trustOwn;
      ca.signerRenewal = (now) => renewSigners(store, ctx.protector, hierarchy, urls, opts, now, config.signer_renewal_fraction);
      for (const [t, i] of hierarchy.issuing) {
        if (i.crlShards !== config.crl_shards) ctx.logger.warn("issuing CA keeps the CRL shard count it was created with", { issuing_ca: t, crl_shards: i.crlShards, configured: config.crl_shards });
      }
      await ca.renewSigners();
      ca.notifier = ctx.notifier;
      // Cached OCSP answers are re-signed before they go stale (a quarter of their validity ahead);
      // responder and TSA certificates nearing expiry are renewed on the same schedule.
      const ocspRefresh = setInterval(() => {
        ca.renewSigners()
          .then((ids) => ids.length && ctx.logger.info("renewed signer certificates", { ids }))
          .catch((e) => ctx.logger.warn("signer renewal failed", { error: e }))
          .then(() => ca.refreshOcsp())
          .catch((e) => ctx.logger.warn("OCSP refresh failed", { error: e }));
      }, Math.max(15_000, (config.ocsp_validity_minutes * 60_000) / 8));
      timers.push(ocspRefresh);
      // Revocations by other instances sharing the database reach this one's OCSP cache: at
      // once through their change notices (PostgreSQL), and every revocation_check_ms in any case
      // (embedded files shared by processes; notices lost while the listener was down).
      await ca.checkPeerRevocations();
      const check = coalesced(() => ca.checkPeerRevocations().then(() => undefined, (e) => ctx.logger.warn("revocation check failed", { error: e })));
      ca.changes = ctx.changes;
      ca.unsubscribe = ctx.changes.subscribe(REVOCATIONS_CHANNEL, check, check);
      timers.push(setInterval(check, config.revocation_check_ms));
      const expiry = setInterval(() => {
        ca.expirySweep().catch((e) => ctx.logger.warn("expiry notice sweep failed", { error: e }));
      }, config.expiry_check_minutes * 60_000);
      timers.push(expiry);
      // CMC's senderNonce log keeps nonce_retention_hours: swept at load and hourly, by every instance.
      const nonceSweep = () => void sweepNonces(new CmcStore(ctx.db), config.cmc).catch((e) => ctx.logger.warn("CMC nonce sweep failed", { error: e }));
      nonceSweep();
      timers.push(setInterval(nonceSweep, NONCE_SWEEP_MS));
      await ca.refreshCrls();
      const timer = setInterval(() => {
        ca.refreshCrls().catch((e) => ctx.logger.error("CRL refresh failed", { error: e }));
      }, config.crl_refresh_minutes * 60_000);
      timers.push(timer);
      for (const t of timers) (t as { unref?: () => void }).unref?.();
      if (config.http_revocation && !httpListeners.has(ctx)) {
        const hostname = config.http_revocation.bind ?? ctx.config.server.bind;
        httpListeners.add(ctx);
        const listener = await startHttpRevocationListener(ctx, hostname, config.http_revocation.port, config.http_revocation.scep);
        ctx.onStop(() => listener.stop(true));
        ctx.logger.info("plain-HTTP revocation listener", { url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${listener.port}`, scep: config.http_revocation.scep });
      }
      ctx.logger.info("pki-ca hierarchy ready", { issuing_cas: config.issuing_cas, base_url: config.base_url });
      return ca;
    })();
    p.catch((e) => ctx.logger.error("pki-ca hierarchy failed to load", { error: e }));
    instances.set(ctx, p);
  }
  return p;
}

/**
 * Runs `fn` now, or once more right after the run in progress ends: calls that come while it
 * runs are never lost, and never run in parallel.
 */
function coalesced(fn: () => Promise<void>): () => void {
  let running = false;
  let again = false;
  const run = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    again = false;
    void fn().finally(() => {
      running = false;
      if (again) run();
    });
  };
  return run;
}

const acmeByCa = new WeakMap<PkiCa, AcmeAuthority>();

/**
 * ACME's nonce scope: as configured, or for `auto` `instance` on a local embedded database
 * (its one process checks its own nonces) and `shared` where instances may share the database
 * (PostgreSQL, a remote libSQL server, an embedded replica).
 */
export function nonceScopeOf(configured: "auto" | NonceScope, database: { url?: string; sync_url?: string }): NonceScope {
  if (configured !== "auto") return configured;
  return localEmbedded(database) ? "instance" : "shared";
}

/** A database only this machine's processes open: memory or a file, not a replica of a remote one. */
function localEmbedded(database: { url?: string; sync_url?: string }): boolean {
  const url = database.url;
  return (url === undefined || url === ":memory:" || url.startsWith("file:")) && database.sync_url === undefined;
}

/**
 * Whether ACME keeps account rows in the process (see `AcmeStoreOptions.cacheAccounts`): where
 * its nonces are the process's own on a local embedded database, this process is that
 * database's one ACME server, so no other process changes its accounts.
 */
export function cachesAcmeAccounts(scope: NonceScope, database: { url?: string; sync_url?: string }): boolean {
  return scope === "instance" && localEmbedded(database);
}

/**
 * The ACME front end of a context's CA: a new one with each loaded CA (after an unseal too), so
 * it never holds a dropped one. Validations in progress finish before the service stops.
 */
async function acmeOf(ctx: ServiceContext): Promise<AcmeAuthority> {
  const ca = await pkiCaOf(ctx);
  let acme = acmeByCa.get(ca);
  if (!acme) {
    const config = ca.config.acme;
    const scope = nonceScopeOf(config.nonce_scope, ctx.config.database);
    const store = new AcmeStore(ctx.db, { cacheAccounts: cachesAcmeAccounts(scope, ctx.config.database) });
    acme = new AcmeAuthority(config, ca, store, new ValidationAuthority(config), ctx.protector, (e) => ctx.logger.warn("ACME validation failed", { error: e }), scope);
    acmeByCa.set(ca, acme);
    const current = acme;
    ctx.onStop(() => current.dispose());
  }
  return acme;
}

const estByCa = new WeakMap<PkiCa, EstAuthority>();

/** The EST front end of a context's CA (a new one with each loaded CA, as ACME's). */
async function estOf(ctx: ServiceContext): Promise<EstAuthority> {
  const ca = await pkiCaOf(ctx);
  let est = estByCa.get(ca);
  if (!est) {
    est = new EstAuthority(ca.config.est, ca, new EstStore(ctx.db), async (profile) => (await scepOf(ctx)).ra(profile));
    estByCa.set(ca, est);
  }
  return est;
}

const scepByCa = new WeakMap<PkiCa, ScepAuthority>();

/** The SCEP front end of a context's CA (a new one with each loaded CA: its RA keys go with it at seal). */
async function scepOf(ctx: ServiceContext): Promise<ScepAuthority> {
  const ca = await pkiCaOf(ctx);
  let scep = scepByCa.get(ca);
  if (!scep) {
    scep = new ScepAuthority(ca.config.scep, ca, new ScepStore(ctx.db), ctx.protector);
    scepByCa.set(ca, scep);
  }
  return scep;
}

const cmpByCa = new WeakMap<PkiCa, CmpAuthority>();

/** The CMP front end of a context's CA (a new one with each loaded CA: its RA keys go with it at seal). */
async function cmpOf(ctx: ServiceContext): Promise<CmpAuthority> {
  const ca = await pkiCaOf(ctx);
  let cmp = cmpByCa.get(ca);
  if (!cmp) {
    cmp = new CmpAuthority(ca.config.cmp, ca, new CmpStore(ctx.db), ctx.protector);
    cmpByCa.set(ca, cmp);
  }
  return cmp;
}

const cmcByCa = new WeakMap<PkiCa, CmcAuthority>();

/** The CMC front end of a context's CA; its Full PKI Responses are signed by the issuing CA's RA (SCEP's). */
async function cmcOf(ctx: ServiceContext): Promise<CmcAuthority> {
  const ca = await pkiCaOf(ctx);
  let cmc = cmcByCa.get(ca);
  if (!cmc) {
    cmc = new CmcAuthority(ca.config.cmc, ca, new CmcStore(ctx.db), ctx.protector, async (profile) => (await scepOf(ctx)).ra(profile));
    cmcByCa.set(ca, cmc);
  }
  return cmc;
}

const sealHooked = new WeakSet<ServiceContext>();
const httpListeners = new WeakSet<ServiceContext>();

/** Forgets the context's CA (at seal and stop): its timers end, its keys and caches go with it. */
async function dropCa(ctx: ServiceContext): Promise<void> {
  const p = instances.get(ctx);
  instances.delete(ctx);
  await p?.then((ca) => ca.dispose(), () => undefined);
}

/**
 * The plain-HTTP listener: GET (and POST for OCSP) on /pki/ca, /pki/crl and /pki/ocsp, and
 * with `scep`, SCEP under /scep (GET and POST); nothing else — no API, no docs, no
 * time-stamping, no admin.
 */
function startHttpRevocationListener(ctx: ServiceContext, hostname: string, port: number, scep: boolean) {
  const base = new Elysia().onError(mapError).use(caPublicRoutes(() => pkiCaOf(ctx), { revocationOnly: true }));
  const app = scep ? base.use(scepRoutes(() => scepOf(ctx))) : base;
  const postable = (path: string) => path === "/pki/ocsp" || (scep && (path === "/scep" || path.startsWith("/scep/")));
  return runtime.serve({
    hostname,
    port,
    maxRequestBodySize: 64 * 1024,
    fetch(req) {
      const path = new URL(req.url).pathname;
      const allowed = req.method === "GET" || req.method === "HEAD" || (req.method === "POST" && postable(path));
      if (!allowed) return new Response(null, { status: 405, headers: { allow: "GET, HEAD, POST" } });
      if (ctx.protector.sealed) return errorResponse(new AppError("sealed", "the service is sealed"), "http-revocation");
      return app.handle(req);
    },
  });
}

export const pkiCa: ServiceDefinition = {
  name: "pki-ca",
  title: "pki-ca: Certificate Authority",
  description:
    "Issuing CAs under an instance root, profile policy and RA approval for PKCS#10 requests, revocation with CRLs, and an OCSP responder. CA keys are stored barrier-encrypted.",
  version: "1.0.0",
  defaultPort: 8443,
  migrations,
  checkConfig: (c) => void parsePkiCaConfig(c),
  endpoints: enrollmentEndpoints,
  // Validates the app section before anything starts: a bad profile stops the start.
  api: (ctx) =>
    caApi(() => pkiCaOf(ctx))
      .use(acmeAdminApi(() => acmeOf(ctx)))
      .use(estAdminApi(() => estOf(ctx)))
      .use(scepAdminApi(() => scepOf(ctx)))
      .use(cmpAdminApi(() => cmpOf(ctx)))
      .use(cmcAdminApi(() => cmcOf(ctx))),
  pages: (ctx) => caPages(ctx, () => pkiCaOf(ctx)),
  // ACME's requests skip the router (its endpoints stay in routes for the API document and HEAD).
  fastRoutes: (ctx) => acmeFastRoutes(() => acmeOf(ctx)),
  routes: (ctx) => {
    void pkiCaOf(ctx);
    return new Elysia()
      .use(caPublicRoutes(() => pkiCaOf(ctx)))
      .use(acmeRoutes(() => acmeOf(ctx)))
      .use(estRoutes(() => estOf(ctx)))
      .use(scepRoutes(() => scepOf(ctx)))
      .use(cmpRoutes(() => cmpOf(ctx)))
      .use(cmcRoutes(() => cmcOf(ctx)));
  },
};
