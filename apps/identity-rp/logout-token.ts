/**
 * OpenID Connect Back-Channel Logout 1.0 (section 2.6): checks a logout token before any
 * session ends. A JWT with header `typ: logout+jwt`, signed by the issuer (its JWKS), `iss` the
 * issuer, `aud` this client, `iat` and `exp` (60 s of clock tolerance), a `jti` used only once
 * (spent ids kept in the database until the token expires, so a replay to another instance is
 * refused too), the back-channel logout event, `sid` and/or `sub`, and no `nonce`.
 */
import { errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { AppError } from "../../src/service/errors.ts";

export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";
/** The longest lifetime accepted (`exp - iat`): logout tokens are meant to be used at once. */
const MAX_LIFETIME_S = 600;

export interface LogoutTarget {
  sid?: string;
  subject?: string;
}

export interface LogoutTokenChecks {
  issuer: string;
  clientId: string;
  keys: JWTVerifyGetKey;
  /** Records the token's id; false when it was seen before. */
  spend(key: string, expiresAt: number): Promise<boolean>;
}

const refused = (why: string) => new AppError("invalid_logout_token", why, { status: 400 });

export async function verifyLogoutToken(token: string, c: LogoutTokenChecks): Promise<LogoutTarget> {
  if (token.length > 16_384 || token.split(".").length !== 3) throw refused("the logout token is not a signed JWT");
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, c.keys, {
      issuer: c.issuer,
      audience: c.clientId,
      typ: "logout+jwt",
      algorithms: ["ES256", "ES384", "PS256", "RS256", "EdDSA"],
      requiredClaims: ["iat", "exp", "jti"],
      clockTolerance: 60,
    }));
  } catch (e) {
    if (e instanceof joseErrors.JOSEError) throw refused(`the logout token is not valid (${e.code})`);
    throw e; // the JWKS could not be fetched: not the sender's fault
  }
  const events = payload.events;
  if (typeof events !== "object" || events === null || Array.isArray(events)) throw refused("the logout token has no events claim");
  const event = (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT];
  if (typeof event !== "object" || event === null || Array.isArray(event)) throw refused("the logout token does not carry the back-channel logout event");
  if ("nonce" in payload) throw refused("a logout token must not carry a nonce");
  const sid = typeof payload.sid === "string" && payload.sid.length > 0 ? payload.sid : undefined;
  const subject = typeof payload.sub === "string" && payload.sub.length > 0 ? payload.sub : undefined;
  if (!sid && !subject) throw refused("the logout token names neither sid nor sub");
  const iat = payload.iat as number;
  const exp = payload.exp as number;
  if (exp - iat > MAX_LIFETIME_S) throw refused("the logout token lives too long");
  const jti = payload.jti as string;
  if (jti.length > 200 || !(await c.spend(`logout+jwt:${c.issuer}:${jti}`, exp + 60))) throw refused("the logout token was used before");
  return { sid, subject };
}
