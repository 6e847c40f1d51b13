/** Request and response schemas of identity-idp's admin API, shared by its routes and its OpenAPI document. */
import * as v from "valibot";

const username = v.pipe(v.string(), v.trim(), v.toLowerCase(), v.regex(/^[a-z0-9][a-z0-9._@+-]{0,127}$/, "usernames are 1-128 characters: letters, digits and . _ @ + -"));
const password = v.pipe(v.string(), v.minLength(1), v.maxLength(1024));
const displayName = v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200));
const email = v.pipe(v.string(), v.trim(), v.maxLength(254), v.email());

export const UserId = v.object({ id: v.pipe(v.string(), v.uuid()) });

export const CreateUser = v.strictObject({
  username,
  /** Initial password; checked against the password rules. Omit to create a user who cannot log in yet. */
  password: v.optional(password),
  name: v.optional(displayName),
  email: v.optional(email),
  email_verified: v.optional(v.boolean(), false),
});

export const UpdateUser = v.strictObject({
  name: v.optional(v.nullable(displayName)),
  email: v.optional(v.nullable(email)),
  email_verified: v.optional(v.boolean()),
  disabled: v.optional(v.boolean()),
});

export const ResetPassword = v.strictObject({ password });

export const ListUsersQuery = v.strictObject({
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(100))),
  page_token: v.optional(v.pipe(v.string(), v.regex(/^\d{1,15}$/))),
});

export const User = v.object({
  id: v.string(),
  username: v.string(),
  name: v.nullable(v.string()),
  email: v.nullable(v.string()),
  email_verified: v.boolean(),
  disabled: v.boolean(),
  has_password: v.boolean(),
  mfa: v.object({
    factors: v.array(
      v.object({
        id: v.string(),
        /** totp, hotp, yubikey or passkey. */
        kind: v.string(),
        name: v.optional(v.string()),
        /** Passkeys: the attestation format verified at registration (none, packed). */
        attestation: v.optional(v.string()),
        created_at: v.number(),
      }),
    ),
    recovery_codes_left: v.number(),
  }),
  created_at: v.number(),
  updated_at: v.number(),
  /** Until when (seconds since the epoch) failed sign-ins keep the username locked; null: not locked. */
  locked_until: v.optional(v.nullable(v.number())),
});

export const UserList = v.object({ items: v.array(User), next_page_token: v.nullable(v.string()) });

const mfaPolicy = v.picklist(["optional", "required"]);
const userVerification = v.picklist(["required", "preferred", "discouraged"]);

/** The tenant's sign-in policy as read; PUT takes any subset of its fields. */
/** The shortest password the tenant accepts (NIST 800-63B: at least 8). */
const passwordMinLength = v.pipe(v.number(), v.integer(), v.minValue(8), v.maxValue(64));
/** Whether a pki-ca client certificate signs in the user whose verified e-mail address is its e-mail SAN (default false). */
const certificateEmail = v.boolean();
/** Whether a pki-ca client certificate signs in the user whose username is its UPN SAN, case-insensitively (default false). */
const certificateUpn = v.boolean();
export const MfaPolicy = v.object({
  mfa: mfaPolicy,
  self_registration: v.boolean(),
  user_verification: userVerification,
  password_min_length: v.optional(passwordMinLength),
  certificate_email: certificateEmail,
  certificate_upn: certificateUpn,
});
export const PolicyUpdate = v.strictObject({
  certificate_email: v.optional(certificateEmail),
  certificate_upn: v.optional(certificateUpn),
  mfa: v.optional(mfaPolicy),
  self_registration: v.optional(v.boolean()),
  user_verification: v.optional(userVerification),
  password_min_length: v.optional(passwordMinLength),
});

export const UserSessionParams = v.object({ id: v.pipe(v.string(), v.uuid()), sid: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/, "a session id")) });
/** A user's signed-in session at the idp (no secret: `sid` only names it). */
export const UserSession = v.object({ sid: v.string(), created_at: v.number(), last_seen_at: v.number(), expires_at: v.number(), amr: v.array(v.string()) });
export const UserSessionList = v.object({ items: v.array(UserSession) });

const modhex = (min: number, max: number) => v.pipe(v.string(), v.toLowerCase(), v.regex(new RegExp(`^[cbdefghijklnrtuv]{${min},${max}}$`), "modhex characters (cbdefghijklnrtuv)"));
const hex = (n: number) => v.pipe(v.string(), v.toLowerCase(), v.regex(new RegExp(`^[0-9a-f]{${n}}$`), `${n} hexadecimal characters`));

/** A client certificate (PEM) registered as a user's sign-in on the idp's mutual-TLS port. */
export const RegisterCertificate = v.strictObject({
  certificate: v.pipe(v.string(), v.maxLength(20_000), v.includes("-----BEGIN CERTIFICATE-----")),
  name: v.optional(v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(64)), "Certificate"),
});
export const UserCertificate = v.object({ id: v.string(), name: v.string(), x5t_s256: v.string(), subject: v.string(), not_after: v.number(), created_at: v.number(), last_used_at: v.nullable(v.number()) });
export const UserCertificateList = v.object({ items: v.array(UserCertificate) });
export const UserCertificateId = v.object({ id: v.pipe(v.string(), v.uuid()), cert_id: v.pipe(v.string(), v.uuid()) });

/** A YubiKey's Yubico OTP credential as configured with ykpersonalize (or generated for it). */
export const ImportYubiKey = v.strictObject({
  /** The public id the key types first, 2-16 modhex characters (12 on keys as shipped). */
  public_id: modhex(2, 16),
  /** The 6-byte private id (uid), hex. */
  private_id: hex(12),
  /** The AES-128 key, hex. */
  aes_key: hex(32),
  name: v.optional(v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(64))),
});
export const YubiKey = v.object({ id: v.string(), public_id: v.string(), name: v.string(), created_at: v.number(), last_used_at: v.nullable(v.number()) });
export const YubiKeyList = v.object({ items: v.array(YubiKey) });
export const YubiKeyId = v.object({ id: v.pipe(v.string(), v.uuid()), key_id: v.pipe(v.string(), v.uuid()) });

/** An API client of the Yubico validation protocol (`/wsapi/2.0/verify`); the key is shown once. */
export const YubicoClient = v.object({ id: v.number(), created_at: v.number(), key: v.optional(v.string()) });
export const YubicoClientList = v.object({ items: v.array(YubicoClient) });
export const YubicoClientId = v.object({ id: v.pipe(v.string(), v.regex(/^[1-9][0-9]{0,9}$/), v.transform(Number)) });

export type CreateUserInput = v.InferOutput<typeof CreateUser>;
export type UpdateUserInput = v.InferOutput<typeof UpdateUser>;
export type UserView = v.InferOutput<typeof User>;
