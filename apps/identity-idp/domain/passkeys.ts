/**
 * Passkeys and security keys (WebAuthn, through @simplewebauthn/server): registration and
 * sign-in ceremonies, several named credentials per user. No HTTP here; the challenge of a
 * ceremony lives in the browser's idp session (sealed), never in the browser.
 *
 * Guarantees: every ceremony checks origin, RP ID, challenge (single use: the caller drops it)
 * and the signature; credentials are discoverable (username-less sign-in); attestation `none`
 * is accepted and a `packed` statement is verified when the authenticator sends one; user
 * verification follows the tenant's policy; a signature counter that does not move forward (a
 * cloned authenticator) is refused, and the stored counter moves by compare-and-set.
 */
import type { AuthenticationResponseJSON, AuthenticatorTransport, RegistrationResponseJSON } from "@simplewebauthn/server";

/** The WebAuthn library, loaded at the first ceremony: it costs memory that most starts never use. */
let webauthn: Promise<typeof import("@simplewebauthn/server")> | undefined;
const lib = () => (webauthn ??= import("@simplewebauthn/server"));
import { AppError, notFound } from "../../../src/service/errors.ts";
import type { IdpStore, WebAuthnCredentialRow } from "../store.ts";

export type UserVerification = "required" | "preferred" | "discouraged";
/** Where a ceremony runs: the RP ID (a registrable domain of the page) and the page origins. */
export interface RelyingParty {
  id: string;
  name: string;
  origins: string[];
}

const refused = (why: string, cause?: unknown) => new AppError("passkey_refused", `the passkey was not accepted: ${why}`, { status: 400, cause });
const view = (r: WebAuthnCredentialRow) => ({ id: r.id, name: r.name, fmt: r.fmt, created_at: r.created_at, last_used_at: r.last_used_at });

export class Passkeys {
  constructor(
    private readonly store: IdpStore,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async list(tenant: string, userId: string) {
    return (await this.store.credentials(tenant, userId)).map(view);
  }

  async remove(tenant: string, userId: string, id: string): Promise<void> {
    if (!(await this.store.deleteCredential(tenant, userId, id))) throw notFound("passkey");
  }

  /** Options for `navigator.credentials.create`; the caller keeps `options.challenge` in the session. */
  async registrationOptions(rp: RelyingParty, tenant: string, user: { id: string; username: string; name: string | null }, uv: UserVerification) {
    const existing = await this.store.credentials(tenant, user.id);
    return (await lib()).generateRegistrationOptions({
      rpName: rp.name,
      rpID: rp.id,
      userName: user.username,
      userDisplayName: user.name ?? user.username,
      userID: new TextEncoder().encode(user.id),
      attestationType: "direct",
      excludeCredentials: existing.map((c) => ({ id: c.id, transports: JSON.parse(c.transports) as AuthenticatorTransport[] })),
      authenticatorSelection: { residentKey: "required", userVerification: uv },
      timeout: 120_000,
    });
  }

  /** Verifies a registration and stores the credential under `name`. */
  async register(rp: RelyingParty, tenant: string, userId: string, name: string, response: RegistrationResponseJSON, challenge: string, uv: UserVerification) {
    let r;
    try {
      r = await (await lib()).verifyRegistrationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        requireUserVerification: uv === "required",
      });
    } catch (e) {
      throw refused((e as Error).message, e);
    }
    if (!r.verified) throw refused("the attestation does not verify");
    const info = r.registrationInfo;
    if (info.fmt !== "none" && info.fmt !== "packed") throw refused(`attestation format ${info.fmt} is not accepted`);
    if (await this.store.credential(tenant, info.credential.id)) throw refused("this passkey is already registered");
    const row: WebAuthnCredentialRow = {
      id: info.credential.id,
      tenant,
      user_id: userId,
      name,
      public_key: info.credential.publicKey,
      counter: info.credential.counter,
      transports: JSON.stringify(info.credential.transports ?? response.response.transports ?? []),
      fmt: info.fmt,
      aaguid: info.aaguid,
      backed_up: info.credentialBackedUp ? 1 : 0,
      created_at: this.now(),
      last_used_at: null,
    };
    await this.store.insertCredential(row);
    return view(row);
  }

  /** Options for `navigator.credentials.get`: any discoverable credential, or only `userId`'s (second factor). */
  async authenticationOptions(rp: RelyingParty, tenant: string, uv: UserVerification, userId?: string) {
    const allow = userId ? (await this.store.credentials(tenant, userId)).map((c) => ({ id: c.id, transports: JSON.parse(c.transports) as AuthenticatorTransport[] })) : undefined;
    return (await lib()).generateAuthenticationOptions({ rpID: rp.id, userVerification: uv, allowCredentials: allow, timeout: 120_000 });
  }

  /**
   * Verifies an assertion; returns the user it signs in and whether the authenticator verified
   * the user. With `userId`, the credential must be that user's (second factor).
   */
  async authenticate(rp: RelyingParty, tenant: string, response: AuthenticationResponseJSON, challenge: string, uv: UserVerification, userId?: string) {
    const cred = await this.store.credential(tenant, response.id);
    if (!cred || (userId !== undefined && cred.user_id !== userId)) throw refused("unknown passkey");
    if (response.response.userHandle !== undefined && response.response.userHandle !== Buffer.from(cred.user_id).toString("base64url")) throw refused("the passkey belongs to another account");
    let r;
    try {
      r = await (await lib()).verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        requireUserVerification: uv === "required",
        credential: {
          id: cred.id,
          publicKey: new Uint8Array(cred.public_key),
          counter: cred.counter,
          transports: JSON.parse(cred.transports) as AuthenticatorTransport[],
        },
      });
    } catch (e) {
      // Includes a counter at or below the stored one: the sign of a cloned authenticator.
      throw refused((e as Error).message, e);
    }
    if (!r.verified) throw refused("the signature does not verify");
    if (!(await this.store.advanceCredentialCounter(tenant, cred.id, cred.counter, r.authenticationInfo.newCounter, this.now()))) {
      throw refused("the passkey was used by another sign-in at the same time");
    }
    return { userId: cred.user_id, userVerified: r.authenticationInfo.userVerified, credentialId: cred.id };
  }
}
