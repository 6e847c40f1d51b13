/** The scopes each service's API checks (its routes hold the same names); the launcher and the CLI share this map. */
export const SERVICE_SCOPES: Record<string, string[]> = {
  "identity-authz": ["identity:admin"],
  "identity-idp": ["identity:admin"],
  "sm-kms": ["kms:admin", "kms:encrypt", "kms:decrypt", "kms:sign", "kms:verify", "kms:mac"],
  "jose-ja": ["jose:admin", "jose:sign", "jose:verify", "jose:encrypt", "jose:decrypt"],
  "pki-ca": ["pki:request", "pki:read", "pki:approve", "pki:revoke", "pki:admin"],
  "learn-ps": ["pets:read", "pets:write"],
  "sm-secrets": ["secrets:read", "secrets:write", "secrets:delete", "secrets:admin"],
  "sm-im": ["im:read", "im:write"],
  "identity-rs": ["notes:read", "notes:write"],
  // audit:ingest (events of any tenant) is for the suite's services, by client certificate.
  audit: ["audit:read", "audit:write", "audit:admin"],
};

/** The scopes of a set of services, each once. */
export const scopesOf = (services: string[]): string[] => [...new Set(services.flatMap((s) => SERVICE_SCOPES[s] ?? []))];
