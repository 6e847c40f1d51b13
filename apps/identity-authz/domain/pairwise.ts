/**
 * Pairwise subject identifiers (OpenID Connect Core §8.1): a client registered with
 * `subject_type: pairwise` sees each user as HMAC-SHA-256(tenant salt, sector "\n" local sub),
 * base64url: clients of different sectors cannot correlate users, clients of one sector see the
 * same value. The sector is the host of `sector_identifier_uri` when registered, else the host of
 * the redirect URIs (which must then be one host), else the client id (a client without redirect
 * URIs, such as a device-grant client, is its own sector). The salt is 256 random bits per
 * tenant, barrier-encrypted, made once (the first instance to store it wins; the others read it).
 */
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import type { DataProtector } from "../../../src/service/context.ts";
import type { AuthzStore } from "../store.ts";
import type { RegisteredClient } from "./registry.ts";

const saltCtx = (tenant: string) => `identity-authz/pairwise_salt/${tenant}`;

/** The sector of a pairwise client (see above). */
export function sectorOf(c: Pick<RegisteredClient, "client_id" | "redirect_uris" | "sector_identifier_uri">): string {
  if (c.sector_identifier_uri) return new URL(c.sector_identifier_uri).host;
  const first = c.redirect_uris[0];
  return first ? new URL(first).host : `client:${c.client_id}`;
}

/** The hosts of a client's redirect URIs. */
export const redirectHosts = (uris: readonly string[]) => new Set(uris.map((u) => new URL(u).host));

export class PairwiseSubjects {
  private readonly salts = new Map<string, Buffer>();

  constructor(
    private readonly store: AuthzStore,
    private readonly protector: DataProtector,
  ) {}

  private async salt(tenant: string): Promise<Buffer> {
    const hit = this.salts.get(tenant);
    if (hit) return hit;
    let sealed = await this.store.pairwiseSalt(tenant);
    if (!sealed) {
      await this.store.insertPairwiseSalt(tenant, await this.protector.encrypt(crypto.getRandomValues(new Uint8Array(32)), saltCtx(tenant)));
      sealed = await this.store.pairwiseSalt(tenant);
      if (!sealed) throw new Error("the pairwise salt could not be stored");
    }
    const salt = Buffer.from(await this.protector.decrypt(sealed, saltCtx(tenant)));
    if (this.salts.size > 10_000) this.salts.clear();
    this.salts.set(tenant, salt);
    return salt;
  }

  /** Forgets a deleted tenant's salt (a tenant of the same id later gets a new one). */
  forget(tenant: string): void {
    this.salts.delete(tenant);
  }

  /** The subject `client` sees for the user whose local subject is `sub`. */
  async subject(tenant: string, client: RegisteredClient, sub: string): Promise<string> {
    if (client.subject_type !== "pairwise") return sub;
    return createHmac("sha256", await this.salt(tenant)).update(`${sectorOf(client)}\n${sub}`, "utf8").digest("base64url");
  }
}
