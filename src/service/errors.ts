/**
 * The one error model of cryptoutil.
 *
 * Domain code throws `AppError` (or a subclass) with a stable, machine-readable
 * `code`; the HTTP layer maps it to a status and a JSON body in one place
 * (`errorBody`). Messages are for humans and never carry secrets or key material.
 *
 * @example
 *   throw new AppError("pet_not_found", "no pet with that id");
 */

/** Stable error codes and the HTTP status each maps to. */
export const ERROR_STATUS = {
  // 400
  bad_request: 400,
  malformed_json: 400,
  body_too_deep: 400,
  body_too_complex: 400,
  validation_failed: 400,
  malformed_input: 400,
  config_invalid: 400,
  malformed_jose: 400,
  malformed_key: 400,
  signature_invalid: 400,
  mac_invalid: 400,
  key_purpose_mismatch: 400,
  key_not_asymmetric: 400,
  batch_too_large: 400,
  csr_signature_invalid: 400,
  jwt_expired: 400,
  import_token_expired: 400,
  jwt_not_yet_valid: 400,
  jwt_claim_invalid: 400,
  unseal_failed: 400,
  decryption_failed: 400,
  mechanism_not_allowed: 400,
  // 401 / 403
  unauthenticated: 401,
  invalid_token: 401,
  insufficient_scope: 403,
  forbidden: 403,
  csrf_failed: 403,
  ip_not_allowed: 403,
  // 404 / 405 / 409 / 413 / 415 / 429
  not_found: 404,
  unknown_profile: 404,
  method_not_allowed: 405,
  conflict: 409,
  key_disabled: 409,
  key_pending_deletion: 409,
  key_version_below_minimum: 409,
  key_public_only: 409,
  import_not_allowed: 409,
  key_version_not_current: 409,
  payload_too_large: 413,
  policy_rejected: 422,
  algorithm_not_in_hsm: 422,
  raw_op_not_in_hsm: 422,
  certificate_rejected: 422,
  lint_failed: 422,
  unsupported_media_type: 415,
  rate_limited: 429,
  header_too_large: 431,
  // 5xx: only for faults of the service itself, never for bad input
  sealed: 503,
  shutting_down: 503,
  ca_not_ready: 503,
  unavailable: 503,
  internal: 500,
  // the request's HTTP version (RFC 9110 §15.6.6): the protocol's own answer to it
  http_version_not_supported: 505,
  // stored data that no longer opens: a server-side fault, never the caller's
  decrypt_failed: 500,
  sealed_open_failed: 500,
  stored_material_corrupt: 500,
  migration_failed: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** An error whose code and status are part of the public API. */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details?: unknown;
  /** Extra response headers (e.g. Retry-After, WWW-Authenticate). */
  readonly headers?: Record<string, string>;

  constructor(
    code: ErrorCode | string,
    message: string,
    opts: { status?: number; details?: unknown; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "AppError";
    this.code = code;
    this.status = opts.status ?? (ERROR_STATUS as Record<string, number>)[code] ?? 400;
    this.details = opts.details;
    this.headers = opts.headers;
  }
}

/** Shorthand constructors for the common cases. */
export const notFound = (what: string) => new AppError("not_found", `${what} not found`);
export const badRequest = (message: string, details?: unknown) =>
  new AppError("bad_request", message, { details });

/** The JSON body every error response carries. */
export interface ErrorBody {
  error: { code: string; message: string; request_id?: string; details?: unknown };
}

export function errorBody(err: AppError, requestId?: string): ErrorBody {
  const body: ErrorBody = { error: { code: err.code, message: err.message } };
  if (requestId) body.error.request_id = requestId;
  if (err.details !== undefined) body.error.details = err.details;
  return body;
}
