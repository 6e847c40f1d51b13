/** The app section of pki-ca's benchmark targets: one auto-approved P-256 profile for `*.bench.test`. */
export function benchPkiApp(): Record<string, unknown> {
  return {
    base_url: "http://pki.bench.test",
    issuing_cas: ["P-256"],
    profiles: {
      bench: {
        issuing_ca: "P-256",
        key_types: ["P-256"],
        max_validity_days: 90,
        default_validity_days: 30,
        key_usage: ["digitalSignature"],
        extended_key_usage: ["serverAuth"],
        dns: { allow: ["*.bench.test"] },
      },
    },
  };
}
