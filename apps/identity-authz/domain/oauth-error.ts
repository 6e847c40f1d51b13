/** OAuth error codes (RFC 6749 5.2, RFC 9449, OIDC) as typed AppErrors; the routes render them as `{error, error_description}`. */
import { AppError } from "../../../src/service/errors.ts";

export const OAUTH_ERRORS = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  unsupported_response_type: 400,
  unsupported_token_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  invalid_dpop_proof: 400,
  use_dpop_nonce: 400,
  access_denied: 400,
  login_required: 400,
  consent_required: 400,
  interaction_required: 400,
  account_selection_required: 400,
  invalid_request_uri: 400,
  invalid_request_object: 400,
  request_not_supported: 400,
  authorization_pending: 400,
  slow_down: 400,
  expired_token: 400,
  invalid_redirect_uri: 400,
  invalid_client_metadata: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  server_error: 500,
} as const;

export type OAuthErrorCode = keyof typeof OAUTH_ERRORS;

export function oauthError(code: OAuthErrorCode, description: string, headers?: Record<string, string>): AppError {
  return new AppError(code, description, { status: OAUTH_ERRORS[code], headers });
}

export const isOAuthCode = (c: string): c is OAuthErrorCode => Object.hasOwn(OAUTH_ERRORS, c);
