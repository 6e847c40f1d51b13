/** Access-token verification: single issuer and per-tenant issuers (`{tenant}` in the issuer URL). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BearerVerifier, requireScopes } from "../../src/auth/bearer.ts";
import { AppError } from "../../src/service/errors.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";

let issuer: TestIssuer;
beforeAll(async () => {
  issuer = await startTestIssuer({ audience: "svc" });
});
afterAll(() => issuer.stop());

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as AppError).code;
  }
};

describe("per-tenant issuer", () => {
  const verifier = () =>
    new BearerVerifier({
      issuer: `${issuer.issuer}/t/{tenant}`,
      jwksUrl: `${issuer.issuer}/t/{tenant}/jwks`,
      audience: "svc",
      caPem: issuer.caPem,
      clockToleranceS: 5,
      algorithms: ["ES256"],
    });

  test("the tenant comes from the verified issuer", async () => {
    const t = await issuer.mint({ iss: `${issuer.issuer}/t/acme`, scope: "a b" });
    const p = await verifier().verify(`Bearer ${t}`);
    expect(p.tenant).toBe("acme");
    expect([...p.scopes]).toEqual(["a", "b"]);
    requireScopes(p, ["a"]);
    expect(() => requireScopes(p, ["c"])).toThrow(AppError);
  });

  test("a tenant claim that contradicts the issuer is refused", async () => {
    const t = await issuer.mint({ iss: `${issuer.issuer}/t/acme`, tenant: "other" });
    expect(await code(verifier().verify(`Bearer ${t}`))).toBe("invalid_token");
  });

  test("an issuer outside the pattern, or a tenant with bad characters, is refused", async () => {
    const v = verifier();
    for (const iss of [`${issuer.issuer}/x/acme`, `${issuer.issuer}/t/a/b`, `https://evil.example/t/acme`, `${issuer.issuer}/t/`]) {
      expect(await code(v.verify(`Bearer ${await issuer.mint({ iss })}`))).toBe("invalid_token");
    }
  });

  test("JWKS are fetched once per tenant and cached", async () => {
    const v = verifier();
    const before = issuer.jwksFetches();
    for (const tenant of ["t1", "t2", "t1", "t2"]) {
      await v.verify(`Bearer ${await issuer.mint({ iss: `${issuer.issuer}/t/${tenant}` })}`);
    }
    expect(issuer.jwksFetches() - before).toBe(2);
  });
});

describe("single issuer", () => {
  test("wrong algorithm list and no issuer configured are refused", async () => {
    const t = await issuer.mint({ tenant: "x" });
    const strict = new BearerVerifier({ issuer: issuer.issuer, jwksUrl: issuer.jwksUrl, audience: "svc", caPem: issuer.caPem, clockToleranceS: 5, algorithms: ["RS256"] });
    expect(await code(strict.verify(`Bearer ${t}`))).toBe("invalid_token");
    const none = new BearerVerifier({ audience: "svc", clockToleranceS: 5, algorithms: ["ES256"] });
    expect(await code(none.verify(`Bearer ${t}`))).toBe("invalid_token");
  });

  test("an unreachable JWKS is 503 unavailable, not 401", async () => {
    const t = await issuer.mint({ tenant: "x" });
    const v = new BearerVerifier({ issuer: issuer.issuer, jwksUrl: "https://127.0.0.1:1/jwks", audience: "svc", caPem: issuer.caPem, clockToleranceS: 5, algorithms: ["ES256"] });
    expect(await code(v.verify(`Bearer ${t}`))).toBe("unavailable");
  });

  test("a JWKS served with an untrusted certificate is not used", async () => {
    const t = await issuer.mint({ tenant: "x" });
    const v = new BearerVerifier({ issuer: issuer.issuer, jwksUrl: issuer.jwksUrl, audience: "svc", clockToleranceS: 5, algorithms: ["ES256"] });
    expect(await code(v.verify(`Bearer ${t}`))).not.toBe("ok");
  });
});
