/** Request and response schemas of sm-im, shared by its routes and its OpenAPI document. */
import * as v from "valibot";

/** Most devices one user may register. */
export const MAX_DEVICES = 20;
/** Most recipients (users) of one message. */
export const MAX_RECIPIENTS = 50;
/** Most per-device copies of the content key in one message (recipients' and the sender's devices). */
export const MAX_KEY_COPIES = 200;

const b64u = (max: number, what: string) => v.pipe(v.string(`${what} must be base64url text`), v.maxLength(max, `${what} is too long`), v.regex(/^[A-Za-z0-9_-]*$/, `${what} must be base64url text`));
const coordinate = b64u(64, "a key coordinate");

/** A device's public key agreement key: P-256 or X25519, public members only. */
export const DevicePublicKey = v.union(
  [
    v.strictObject({ kty: v.literal("EC"), crv: v.literal("P-256"), x: coordinate, y: coordinate }),
    v.strictObject({ kty: v.literal("OKP"), crv: v.literal("X25519"), x: coordinate }),
  ],
  "public_key must be a public P-256 (EC) or X25519 (OKP) JWK with no other members",
);
export type DevicePublicKey = v.InferOutput<typeof DevicePublicKey>;

/** The opt-in post-quantum hybrid's key management algorithm (a private name: not registered for JOSE). */
export const HYBRID_ALG = "ECDH-ES+ML-KEM-768+A256KW";
/** ML-KEM-768 sizes (FIPS 203): the encapsulation key and the ciphertext, in bytes. */
export const ML_KEM_768_PUBLIC_KEY_BYTES = 1184;
export const ML_KEM_768_CIPHERTEXT_BYTES = 1088;
const b64uLength = (bytes: number) => Math.ceil((bytes * 4) / 3);

export const RegisterDevice = v.strictObject({
  name: v.pipe(v.string(), v.trim(), v.minLength(1, "name is required"), v.maxLength(100, "name has at most 100 characters")),
  public_key: DevicePublicKey,
  /** Optional: the device's ML-KEM-768 encapsulation key (base64url), so senders may use the hybrid. */
  kem_public_key: v.optional(v.pipe(b64u(2048, "kem_public_key"), v.length(b64uLength(ML_KEM_768_PUBLIC_KEY_BYTES), `kem_public_key must be a ${ML_KEM_768_PUBLIC_KEY_BYTES}-byte ML-KEM-768 encapsulation key`))),
});

export const Device = v.object({
  id: v.string(),
  name: v.string(),
  /** The key management algorithm senders use with this device's key. */
  alg: v.literal("ECDH-ES+A256KW"),
  public_key: v.record(v.string(), v.string()),
  /** Present when the device takes the hybrid: its ML-KEM-768 encapsulation key and the hybrid's alg. */
  kem_public_key: v.optional(v.string()),
  hybrid_alg: v.optional(v.literal(HYBRID_ALG)),
  created_at: v.string(),
});
export const DeviceList = v.object({ items: v.array(Device) });
export const DeviceId = v.object({ id: v.pipe(v.string(), v.regex(/^dev_[A-Za-z0-9_-]{16,32}$/, "not a device id")) });

/** A user of the tenant who can receive messages (has at least one device). */
export const Contact = v.object({ subject: v.string(), name: v.nullable(v.string()), devices: v.array(Device) });
export const ContactList = v.object({ items: v.array(Contact) });
export const ContactsQuery = v.strictObject({ subject: v.optional(v.pipe(v.string(), v.maxLength(256))) });

export const EpkSchema = v.union([
  v.strictObject({ kty: v.literal("EC"), crv: v.literal("P-256"), x: coordinate, y: coordinate }),
  v.strictObject({ kty: v.literal("OKP"), crv: v.literal("X25519"), x: coordinate }),
], "epk must be a public P-256 or X25519 JWK");

/**
 * One recipient entry of a JSON-serialized JWE (RFC 7516 §7.2.1): ECDH-ES+A256KW, or the opt-in
 * hybrid that adds an ML-KEM-768 ciphertext `ek`. Its alg, kid, epk (and ek) sit here, or (with a
 * single recipient) in the protected header.
 */
const JweRecipient = v.strictObject({
  header: v.optional(v.strictObject({
    alg: v.optional(v.picklist(["ECDH-ES+A256KW", HYBRID_ALG], `each recipient's alg must be ECDH-ES+A256KW or ${HYBRID_ALG}`)),
    kid: v.optional(v.pipe(v.string(), v.maxLength(64))),
    epk: v.optional(EpkSchema),
    /** The hybrid's ML-KEM-768 ciphertext (base64url). */
    ek: v.optional(b64u(2048, "ek")),
  }, "a recipient header holds alg, kid, epk and (for the hybrid) ek only"), {}),
  encrypted_key: b64u(64, "encrypted_key"),
});

/** The message: one ciphertext, the content key wrapped once per recipient device (General JWE JSON). */
export const GeneralJwe = v.strictObject({
  protected: b64u(512, "protected"),
  recipients: v.pipe(v.array(JweRecipient), v.minLength(1, "at least one recipient"), v.maxLength(MAX_KEY_COPIES, `at most ${MAX_KEY_COPIES} recipient entries`)),
  iv: b64u(32, "iv"),
  ciphertext: b64u(8 * 1024 * 1024, "ciphertext"),
  tag: b64u(32, "tag"),
});
export type GeneralJwe = v.InferOutput<typeof GeneralJwe>;

export const SendMessage = v.strictObject({
  /** The users (subjects) the message is for; the sender's own devices may hold copies too. */
  to: v.pipe(v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(256))), v.minLength(1, "at least one recipient"), v.maxLength(MAX_RECIPIENTS, `at most ${MAX_RECIPIENTS} recipients`)),
  jwe: GeneralJwe,
});

export const MessageSummary = v.object({
  id: v.string(),
  from: v.string(),
  from_name: v.nullable(v.string()),
  to: v.array(v.string()),
  created_at: v.string(),
  expires_at: v.string(),
  size: v.number(),
});
export const MessageList = v.object({ items: v.array(MessageSummary), next_page_token: v.nullable(v.string()) });
export const MessageId = v.object({ id: v.pipe(v.string(), v.regex(/^msg_[A-Za-z0-9_-]{16,32}$/, "not a message id")) });
export const ListMessagesQuery = v.strictObject({
  box: v.optional(v.picklist(["inbox", "sent"], "box is inbox or sent"), "inbox"),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/, "limit is a number"), v.transform(Number), v.minValue(1), v.maxValue(100)), "20"),
  page_token: v.optional(v.pipe(v.string(), v.maxLength(128))),
});
export const CopyQuery = v.strictObject({ device: v.pipe(v.string(), v.regex(/^dev_[A-Za-z0-9_-]{16,32}$/, "device must be a device id")) });

/** One device's copy: a flattened JWE (RFC 7516 §7.2.2) it alone can decrypt. */
export const FlattenedCopy = v.object({
  protected: v.string(),
  header: v.record(v.string(), v.unknown()),
  encrypted_key: v.string(),
  iv: v.string(),
  ciphertext: v.string(),
  tag: v.string(),
});
