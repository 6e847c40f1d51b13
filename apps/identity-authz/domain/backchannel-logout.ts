/**
 * OpenID Connect Back-Channel Logout 1.0, the sending side: which clients each idp session
 * (`sid`) signed in to, and, when a session ends, a logout token POSTed to every one of them
 * that registered a `backchannel_logout_uri`.
 *
 * Guarantees: a logout token is a JWT of `typ: logout+jwt` signed with the tenant's key for the
 * client's ID token algorithm, carrying iss, aud (the client id), iat, exp (two minutes), a fresh
 * jti, the back-channel logout event, sid and sub, and never a nonce. Delivery runs in the
 * background on the service's notifier (src/notify), on a channel of its own that takes no
 * other event and whose events reach no other channel: retried after each of
 * `notifications.retry_seconds` (1, 4 and 16 s by default), then dead-lettered in the service's
 * database, where `/admin/v1/notifications/dead-letters` lists, retries and discards them across
 * restarts and instances. The logout that caused it never waits; a token is minted per attempt
 * and never logged or kept (a dead letter holds the client, sid and sub only).
 */
import type { Logger } from "../../../src/service/log.ts";
import type { Notifier } from "../../../src/notify/notifier.ts";
import type { Notification } from "../../../src/notify/channels.ts";
import { OutboundRefused } from "../../../src/net/small-document.ts";
import type { ClientRequests } from "./client-documents.ts";
import type { AuthzStore, SessionClientRow } from "../store.ts";
import type { KeyRing } from "./keys.ts";
import type { Registry } from "./registry.ts";
import { nowS, randomToken } from "./crypto.ts";

export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";
const LOGOUT_TOKEN_TTL_S = 120;
const SEND_TIMEOUT_MS = 10_000;
/** The notifier channel of logout deliveries, as dead letters name it. */
export const BACKCHANNEL_LOGOUT_CHANNEL = "backchannel-logout";
const EVENT = "backchannel_logout";

export interface LogoutTokenClaims {
  iss: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  sid: string;
  /** Absent for a pairwise client (the session's sid names it). */
  sub?: string;
  events: Record<string, Record<string, never>>;
}

export class BackchannelLogout {
  constructor(
    private readonly store: AuthzStore,
    private readonly registry: Registry,
    private readonly keys: KeyRing,
    private readonly issuer: (tenant: string) => string,
    /** POSTs to the client's URI under the client-URL rules (client-documents.ts). */
    private readonly send: ClientRequests,
    private readonly logger: Logger,
    /** The service's notifier (`ServiceContext.notifier`): its retries and its dead letters. */
    private readonly notifier: Notifier,
  ) {
    notifier.addChannels([{ name: BACKCHANNEL_LOGOUT_CHANNEL, direct: true, send: (n) => this.deliver(n) }]);
  }

  /** Records that session `sid` of `sub` signed in to `clientId` (kept until `expiresAt`). */
  async joined(tenant: string, sid: string, sub: string, clientId: string, expiresAt: number): Promise<void> {
    await this.store.joinSession({ tenant, sid, client_id: clientId, subject: sub, created_at: nowS(), expires_at: expiresAt });
  }

  /**
   * A session ended (one `sid`), or every session of a user (`subject`): its clients with a
   * back-channel logout URI are told in the background. Returns the number of clients told;
   * never throws (the logout that calls it stands whatever happens here).
   */
  async sessionEnded(tenant: string, by: { sid: string } | { subject: string }): Promise<number> {
    let rows: SessionClientRow[];
    try {
      rows = await this.store.takeSessionClients(tenant, by);
    } catch (e) {
      // The logout itself stands; only its notice to the clients is lost, and said so.
      this.logger.error("back-channel logout: the session's clients could not be read", { tenant, error: e instanceof Error ? e.message : String(e) });
      return 0;
    }
    let told = 0;
    for (const r of rows) {
      const client = await this.registry.client(tenant, r.client_id);
      if (!client?.backchannel_logout_uri) continue;
      // A pairwise client knows the user by another subject: its token names the session (sid) only.
      this.notifier.emit(EVENT, tenant, { client_id: r.client_id, sid: r.sid, ...(client.subject_type === "pairwise" ? {} : { sub: r.subject }) }, BACKCHANNEL_LOGOUT_CHANNEL);
      told++;
    }
    return told;
  }

  /** The claims of a logout token for one client and session. */
  claims(tenant: string, r: Pick<SessionClientRow, "client_id" | "sid"> & { subject?: string }): LogoutTokenClaims {
    const iat = nowS();
    return {
      iss: this.issuer(tenant),
      aud: r.client_id,
      iat,
      exp: iat + LOGOUT_TOKEN_TTL_S,
      jti: randomToken(16),
      sid: r.sid,
      ...(r.subject !== undefined ? { sub: r.subject } : {}),
      events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
    };
  }

  /** One attempt: mint a token and POST it; a non-2xx answer or a network error is retried. */
  private async deliver(n: Notification): Promise<void> {
    const d = n.data as { client_id: string; sid: string; sub?: string };
    // Read again each attempt: a client deleted or changed since stops being told.
    const client = await this.registry.client(n.tenant, d.client_id);
    if (!client?.backchannel_logout_uri) return;
    const signer = await this.keys.signer(n.tenant, client.id_token_signed_response_alg);
    const token = await signer.signJwt("logout+jwt", { ...this.claims(n.tenant, { client_id: d.client_id, sid: d.sid, subject: d.sub }) });
    let status: number;
    try {
      const res = await this.send(client.backchannel_logout_uri, SEND_TIMEOUT_MS, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "cache-control": "no-store" },
        body: new URLSearchParams({ logout_token: token }).toString(),
      });
      status = res.status;
      await res.body?.cancel().catch(() => undefined);
    } catch (e) {
      // The message names the client and the failure, never the token.
      const why = e instanceof OutboundRefused ? e.message : e instanceof Error ? e.name : "error";
      throw new Error(`client ${d.client_id}: ${why} reaching its back-channel logout URI`);
    }
    if (status < 200 || status > 299) throw new Error(`client ${d.client_id}: its back-channel logout URI answered ${status}`);
    this.logger.info("back-channel logout delivered", { tenant: n.tenant, client_id: d.client_id });
  }
}
