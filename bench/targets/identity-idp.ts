/**
 * identity-idp as a benchmark target: the real service, its own process, access log off. Prints
 * a user with one passkey (an ES256 key whose private half is handed to the load generator, as a
 * software authenticator) so the bench can sign in with it.
 */
import { identityIdp } from "../../apps/identity-idp/service.ts";
import { IdpStore } from "../../apps/identity-idp/store.ts";
import { serveBenchTarget } from "./service.ts";

// Args: <data dir> <issuer> <jwks url> <issuer CA file> (serveBenchTarget's; the admin API is not used here).
await serveBenchTarget(identityIdp, {
  info: async (s) => {
    const store = new IdpStore(s.ctx.db);
    const tenant = "bench";
    const t = Math.floor(Date.now() / 1000);
    const userId = crypto.randomUUID();
    await store.insertUser({ id: userId, tenant, username: "bench", password_hash: null, name: null, email: null, email_verified: 0, disabled: 0, password_changed_at: null, created_at: t, updated_at: t });
    const { publicKey, privateKey } = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", publicKey));
    // COSE_Key (RFC 9053) for ES256 in CBOR: {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
    const cose = new Uint8Array([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20, ...raw.slice(1, 33), 0x22, 0x58, 0x20, ...raw.slice(33, 65)]);
    const credentialId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url");
    await store.insertCredential({ id: credentialId, tenant, user_id: userId, name: "bench", public_key: cose, counter: 0, transports: "[]", fmt: "none", aaguid: "00000000-0000-0000-0000-000000000000", backed_up: 0, created_at: t, last_used_at: null });
    return { tenant, user_id: userId, credential_id: credentialId, private_jwk: await crypto.subtle.exportKey("jwk", privateKey) };
  },
});
