/**
 * Maps PKCS#11 return values (pkcs11js `Pkcs11Error`, message `CKR_NAME`) to `AppError`s with
 * stable codes. Only the CKR name goes into messages: never data, keys or PINs.
 */
import { AppError } from "../../service/errors.ts";

/** The CKR_* name of a pkcs11js error, or undefined for any other error. */
export function ckrName(e: unknown): string | undefined {
  if (e && typeof e === "object" && "message" in e) {
    const m = /^(CKR_[A-Z0-9_]+)/.exec(String((e as { message: unknown }).message));
    if (m) return m[1];
  }
  return undefined;
}

/** Converts an error thrown during `what` into an AppError (AppErrors pass through). */
export function toAppError(e: unknown, what: string): AppError {
  if (e instanceof AppError) return e;
  const ckr = ckrName(e);
  switch (ckr) {
    case "CKR_KEY_HANDLE_INVALID":
    case "CKR_OBJECT_HANDLE_INVALID":
      return new AppError("not_found", `${what}: key not found in the token`, { details: { ckr } });
    case "CKR_KEY_UNEXTRACTABLE":
    case "CKR_ATTRIBUTE_SENSITIVE":
    case "CKR_KEY_FUNCTION_NOT_PERMITTED":
    case "CKR_KEY_TYPE_INCONSISTENT":
      return new AppError("forbidden", `${what}: the token refuses this use of the key`, { details: { ckr } });
    case "CKR_DATA_LEN_RANGE":
    case "CKR_DATA_INVALID":
    case "CKR_ARGUMENTS_BAD":
    case "CKR_ATTRIBUTE_VALUE_INVALID":
    case "CKR_DOMAIN_PARAMS_INVALID":
    case "CKR_WRAPPED_KEY_LEN_RANGE":
    case "CKR_MECHANISM_PARAM_INVALID":
      return new AppError("malformed_input", `${what}: the token refused the input`, { details: { ckr } });
    case "CKR_DEVICE_ERROR":
    case "CKR_DEVICE_REMOVED":
    case "CKR_TOKEN_NOT_PRESENT":
    case "CKR_SESSION_HANDLE_INVALID":
    case "CKR_SESSION_CLOSED":
    case "CKR_CRYPTOKI_NOT_INITIALIZED":
    case "CKR_USER_NOT_LOGGED_IN":
      return new AppError("unavailable", `${what}: the HSM is not available`, { details: { ckr } });
    default:
      return new AppError("internal", `${what} failed in the HSM`, { details: { ckr: ckr ?? "native_error" }, cause: e });
  }
}
