/**
 * sm-im's rules: devices publish key agreement keys, senders encrypt in the browser, the
 * service stores and relays ciphertext only. No HTTP here (routes.ts); no plaintext anywhere.
 *
 * A message is one General JSON JWE (RFC 7516 §7.2.1): the content (A256GCM) once, its key
 * wrapped with ECDH-ES+A256KW once per recipient device (and per sender device, for the sent
 * box). The service checks the envelope, not the content, which it cannot read:
 * - `protected` holds `enc: A256GCM` (and optionally `cty`), nothing else; each recipient
 *   header holds alg, kid and epk; the two never share a member (RFC 7516 §7.2.1).
 * - every kid is a device of the sender or of a listed recipient, at most once, with an epk on
 *   the device key's curve; every listed recipient gets at least one copy.
 * The opt-in hybrid (`ECDH-ES+ML-KEM-768+A256KW`, a private name): a device that published an
 * ML-KEM-768 encapsulation key may receive copies whose key-wrapping key comes from both the
 * ECDH shared secret and an ML-KEM-768 shared secret (the recipient header's `ek` is the ML-KEM
 * ciphertext); see the README for the key derivation. The service checks sizes and that the
 * device has such a key; it cannot check the ciphertext itself.
 * A device sees only the copies wrapped for it: one registered after a message was sent has
 * none, so it cannot read earlier messages. Tampering shows on the device: the JWE's tag
 * covers the ciphertext, iv and protected header, and AES key wrap fails on a changed key.
 *
 * Retention: a message expires `retention_days` after it was sent (per tenant, default 30)
 * and the sweeper removes it, its boxes and its copies. Deleting a message takes it out of the
 * caller's boxes; the last holder's delete removes it at once.
 */
import { AppError, notFound } from "../../src/service/errors.ts";
import type { Principal } from "../../src/auth/bearer.ts";
import { decodePageToken, encodePageToken } from "../../src/storage/index.ts";
import * as v from "valibot";
import { EpkSchema, HYBRID_ALG, MAX_DEVICES, ML_KEM_768_CIPHERTEXT_BYTES, ML_KEM_768_PUBLIC_KEY_BYTES, type DevicePublicKey, type GeneralJwe } from "../../schemas/sm-im.ts";
import type { ImStore, DeviceRow, MessageSummaryRow, CopyRow } from "./store.ts";

export interface ImSettings {
  retention_days: number;
  /** Per tenant: `{ retention_days }`. */
  tenants: Record<string, { retention_days?: number }>;
  /** Largest ciphertext (base64url characters) of one message, attachments included. */
  max_message_bytes: number;
}

const DAY_MS = 86_400_000;
const ALG = "ECDH-ES+A256KW" as const;
const PROTECTED_MEMBERS = new Set(["enc", "cty"]);
/** Members that name one recipient: in the protected header only when there is just one. */
const SINGLE_RECIPIENT_MEMBERS = new Set(["kid", "epk", "ek"]);
const KEY_MANAGEMENT_ALGS = new Set<unknown>([ALG, HYBRID_ALG]);

const randomId = (prefix: string) => `${prefix}_${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url")}`;

function decodeJsonB64u(text: string, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(text, "base64url")));
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // refused below
  }
  throw new AppError("malformed_jose", `${what} is not a base64url JSON object`);
}

const byteLength = (b64u: string) => Math.floor((b64u.length * 3) / 4);

export interface DeviceView {
  id: string;
  name: string;
  alg: typeof ALG;
  public_key: Record<string, string>;
  kem_public_key?: string;
  hybrid_alg?: typeof HYBRID_ALG;
  created_at: string;
}

const deviceView = (d: DeviceRow): DeviceView => ({
  id: d.id,
  name: d.name,
  alg: ALG,
  public_key: { ...JSON.parse(d.public_key), kid: d.id, alg: ALG, use: "enc" },
  ...(d.kem_public_key ? { kem_public_key: d.kem_public_key, hybrid_alg: HYBRID_ALG } : {}),
  created_at: d.created_at,
});

export class Messenger {
  constructor(
    private readonly store: ImStore,
    private readonly settings: ImSettings,
    private readonly now: () => Date = () => new Date(),
  ) {}

  // --- devices ---

  async registerDevice(p: Principal, name: string, key: DevicePublicKey, kemPublicKey?: string): Promise<DeviceView> {
    await checkPublicKey(key);
    if (kemPublicKey !== undefined) checkKemPublicKey(kemPublicKey);
    const row: DeviceRow = { tenant: p.tenant, id: randomId("dev"), subject: p.subject, subject_name: p.name ?? null, name, public_key: JSON.stringify(key), kem_public_key: kemPublicKey ?? null, created_at: this.now().toISOString() };
    if (!(await this.store.insertDevice(row, MAX_DEVICES))) throw new AppError("conflict", `a user has at most ${MAX_DEVICES} devices; remove one first`);
    return deviceView(row);
  }

  async devices(p: Principal): Promise<{ items: DeviceView[] }> {
    return { items: (await this.store.devices(p.tenant, p.subject)).map(deviceView) };
  }

  async deleteDevice(p: Principal, id: string): Promise<void> {
    if (!(await this.store.deleteDevice(p.tenant, p.subject, id))) throw notFound("device");
  }

  /** The tenant's users who can receive messages, with their devices' public keys. */
  async contacts(p: Principal, subject?: string): Promise<{ items: Array<{ subject: string; name: string | null; devices: DeviceView[] }> }> {
    const rows = await this.store.devicesOf(p.tenant, subject === undefined ? undefined : [subject]);
    const bySubject = new Map<string, { subject: string; name: string | null; devices: DeviceView[] }>();
    for (const r of rows) {
      let c = bySubject.get(r.subject);
      if (!c) bySubject.set(r.subject, (c = { subject: r.subject, name: r.subject_name, devices: [] }));
      c.name ??= r.subject_name;
      c.devices.push(deviceView(r));
    }
    return { items: [...bySubject.values()] };
  }

  // --- messages ---

  async send(p: Principal, to: readonly string[], jwe: GeneralJwe): Promise<{ id: string; created_at: string; expires_at: string; copies: number }> {
    const recipients = [...new Set(to)];
    const header = decodeJsonB64u(jwe.protected, "protected");
    if (header.enc !== "A256GCM") throw new AppError("malformed_jose", "the protected header must name enc A256GCM");
    const single = jwe.recipients.length === 1;
    for (const k of Object.keys(header)) {
      if (!PROTECTED_MEMBERS.has(k) && !(single && SINGLE_RECIPIENT_MEMBERS.has(k)) && !(k === "alg" && KEY_MANAGEMENT_ALGS.has(header.alg))) {
        throw new AppError("malformed_jose", `the protected header may hold enc, cty and alg (and kid, epk and ek with one recipient), not ${k.slice(0, 32)}`);
      }
    }
    if (byteLength(jwe.iv) !== 12 || byteLength(jwe.tag) !== 16) throw new AppError("malformed_jose", "A256GCM takes a 96-bit iv and a 128-bit tag");
    if (jwe.ciphertext.length > this.settings.max_message_bytes) throw new AppError("payload_too_large", `a message is at most ${this.settings.max_message_bytes} bytes of ciphertext`);

    const devices = await this.store.devicesOf(p.tenant, [...new Set([...recipients, p.subject])], 10_000);
    const deviceById = new Map(devices.map((d) => [d.id, d]));
    for (const r of recipients) if (!devices.some((d) => d.subject === r)) throw new AppError("not_found", `recipient ${r.slice(0, 64)} has no device to receive messages`);

    const seen = new Set<string>();
    const covered = new Set<string>();
    const copies: CopyRow[] = [];
    const id = randomId("msg");
    for (const entry of jwe.recipients) {
      // The recipient's JOSE header: the protected members and its own, which never overlap.
      for (const k of Object.keys(entry.header)) if (k in header) throw new AppError("malformed_jose", `${k} is in both the protected and a recipient header`);
      const joined = { alg: header.alg ?? entry.header.alg, kid: header.kid ?? entry.header.kid, epk: header.epk ?? entry.header.epk, ek: header.ek ?? entry.header.ek } as { alg?: unknown; kid?: unknown; epk?: unknown; ek?: unknown };
      if (!KEY_MANAGEMENT_ALGS.has(joined.alg)) throw new AppError("malformed_jose", `each recipient's alg must be ${ALG} or ${HYBRID_ALG}`);
      const hybrid = joined.alg === HYBRID_ALG;
      if (hybrid !== (joined.ek !== undefined)) throw new AppError("malformed_jose", `ek (the ML-KEM-768 ciphertext) belongs to ${HYBRID_ALG} recipients, and each of them needs one`);
      if (hybrid && (typeof joined.ek !== "string" || !/^[A-Za-z0-9_-]*$/.test(joined.ek) || joined.ek.length !== Math.ceil((ML_KEM_768_CIPHERTEXT_BYTES * 4) / 3))) {
        throw new AppError("malformed_jose", `ek must be a ${ML_KEM_768_CIPHERTEXT_BYTES}-byte ML-KEM-768 ciphertext in base64url`);
      }
      const epk = v.safeParse(EpkSchema, joined.epk);
      if (typeof joined.kid !== "string" || !epk.success) throw new AppError("malformed_jose", "each recipient needs a kid and a public P-256 or X25519 epk");
      const device = deviceById.get(joined.kid);
      if (!device) throw new AppError("validation_failed", "a recipient kid is not a device of the sender or of a listed recipient");
      if (seen.has(device.id)) throw new AppError("validation_failed", "a device appears twice among the recipients");
      seen.add(device.id);
      if (hybrid && !device.kem_public_key) throw new AppError("validation_failed", `a ${HYBRID_ALG} copy is for a device that published no ML-KEM-768 key`);
      const key = JSON.parse(device.public_key) as DevicePublicKey;
      if (key.crv !== epk.output.crv) throw new AppError("malformed_jose", "an epk is not on its device key's curve");
      if (byteLength(entry.encrypted_key) !== 40) throw new AppError("malformed_jose", "an A256KW-wrapped content key is 40 bytes");
      covered.add(device.subject);
      copies.push({ tenant: p.tenant, message_id: id, device_id: device.id, subject: device.subject, header: JSON.stringify(entry.header), encrypted_key: entry.encrypted_key });
    }
    for (const r of recipients) if (!covered.has(r)) throw new AppError("validation_failed", `no copy of the content key for recipient ${r.slice(0, 64)}`);

    const created = this.now();
    const expires = new Date(created.getTime() + this.retentionDays(p.tenant) * DAY_MS);
    await this.store.insertMessage(
      {
        tenant: p.tenant,
        id,
        sender: p.subject,
        sender_name: p.name ?? null,
        recipients: JSON.stringify(recipients),
        protected: jwe.protected,
        iv: jwe.iv,
        ciphertext: jwe.ciphertext,
        tag: jwe.tag,
        size: byteLength(jwe.ciphertext),
        created_at: created.toISOString(),
        expires_at: expires.toISOString(),
      },
      copies,
      recipients,
    );
    return { id, created_at: created.toISOString(), expires_at: expires.toISOString(), copies: copies.length };
  }

  async list(p: Principal, box: "inbox" | "sent", limit: number, pageToken?: string) {
    const before = pageToken === undefined ? undefined : decodePageToken(pageToken);
    const rows = await this.store.box(p.tenant, p.subject, box, limit + 1, before);
    const page = rows.slice(0, limit);
    const summary = (m: MessageSummaryRow) => ({ id: m.id, from: m.sender, from_name: m.sender_name, to: JSON.parse(m.recipients) as string[], created_at: m.created_at, expires_at: m.expires_at, size: m.size });
    return { items: page.map(summary), next_page_token: rows.length > limit ? encodePageToken(page[page.length - 1]!.seq) : null };
  }

  /** The flattened JWE one of the caller's devices can open; 404 when the device has no copy. */
  async copy(p: Principal, messageId: string, deviceId: string) {
    const device = await this.store.device(p.tenant, deviceId);
    if (!device || device.subject !== p.subject) throw notFound("device");
    const [held, msg, copy] = await Promise.all([this.store.holds(p.tenant, p.subject, messageId), this.store.message(p.tenant, messageId), this.store.copy(p.tenant, messageId, deviceId)]);
    if (!held || !msg || msg.expires_at <= this.now().toISOString()) throw notFound("message");
    if (!copy) throw new AppError("not_found", "this device holds no copy of the message (it was registered after the message was sent, or the sender did not include it)");
    return { protected: msg.protected, header: JSON.parse(copy.header) as Record<string, unknown>, encrypted_key: copy.encrypted_key, iv: msg.iv, ciphertext: msg.ciphertext, tag: msg.tag };
  }

  async delete(p: Principal, messageId: string): Promise<void> {
    if (!(await this.store.deleteFor(p.tenant, p.subject, messageId))) throw notFound("message");
  }

  /** Removes expired messages; returns how many. */
  async sweep(): Promise<number> {
    let total = 0;
    for (let n = -1; n !== 0; total += n) n = await this.store.sweep(this.now().toISOString());
    return total;
  }

  private retentionDays(tenant: string): number {
    return (Object.hasOwn(this.settings.tenants, tenant) ? this.settings.tenants[tenant]!.retention_days : undefined) ?? this.settings.retention_days;
  }
}

/** The key must be a point the runtime's ECDH accepts (on the curve, not the identity). */
async function checkPublicKey(key: DevicePublicKey): Promise<void> {
  try {
    const alg = key.crv === "P-256" ? { name: "ECDH", namedCurve: "P-256" } : { name: "X25519" };
    await crypto.subtle.importKey("jwk", { ...key, ext: true }, alg, true, []);
  } catch {
    throw new AppError("malformed_key", "public_key is not a valid point of its curve");
  }
}

/**
 * An ML-KEM-768 encapsulation key: 1184 bytes whose first 1152 encode 768 coefficients of 12
 * bits, each below q = 3329 (the FIPS 203 §7.2 modulus check), then the 32-byte seed rho.
 */
function checkKemPublicKey(b64u: string): void {
  const bytes = Buffer.from(b64u, "base64url");
  let ok = bytes.length === ML_KEM_768_PUBLIC_KEY_BYTES;
  for (let i = 0; ok && i < 1152; i += 3) {
    const a = bytes[i]! | ((bytes[i + 1]! & 0x0f) << 8);
    const b = (bytes[i + 1]! >> 4) | (bytes[i + 2]! << 4);
    ok = a < 3329 && b < 3329;
  }
  if (!ok) throw new AppError("malformed_key", "kem_public_key is not an ML-KEM-768 encapsulation key");
}
