/** The scopes each of sm-kms's operations needs, for its REST routes and its gRPC methods alike. */
export const ADMIN = ["kms:admin"];
export const ENCRYPT = ["kms:encrypt"];
export const DECRYPT = ["kms:decrypt"];
export const SIGN = ["kms:sign"];
export const VERIFY = ["kms:verify"];
export const MAC = ["kms:mac"];
/** Public keys are for whoever encrypts to or verifies with the key (any one of these). */
export const PUBLIC_KEY_SCOPES = ["kms:admin", "kms:encrypt", "kms:verify"];
