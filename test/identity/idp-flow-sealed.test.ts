/**
 * Issue 14 (9): identity-idp keeps the login in progress (the login challenge, with its
 * login_hint) barrier-encrypted in idp_sessions, bound to its row; sessions of a database from
 * before (plaintext flows) keep working after the migration, their unfinished flow cleared.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityIdp } from "../../apps/identity-idp/service.ts";
import { migrations } from "../../apps/identity-idp/migrations.ts";
import { IdpSessions } from "../../apps/identity-idp/domain/sessions.ts";
import { openDatabase, runMigrations } from "../../src/storage/index.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, tempDir, type TestService } from "../support/service.ts";
import { startAuthzStub, type AuthzStub } from "./support/idp-authz-stub.ts";

const T = "acme";
const HINT = "hinted.user-4f1c@example.com";
let authz: AuthzStub;
let issuer: TestIssuer;
let root: string;
let caFile: string;

const start = () =>
  startTestService(identityIdp, {
    root,
    issuer,
    overrides: (c) => {
      c.log.access = false;
      (c as { app?: unknown }).app = { authz_url: authz.url, ca_file: caFile };
    },
  });

beforeAll(async () => {
  authz = await startAuthzStub();
  issuer = await startTestIssuer({ audience: "identity-idp" });
  root = tempDir();
  caFile = join(root, "authz-ca.pem");
  writeFileSync(caFile, authz.caPem);
});
afterAll(async () => {
  await authz?.stop();
  await issuer?.stop();
});

test("a started login leaves no login_hint (nor the challenge) in the database; the login page still shows it", async () => {
  const idp: TestService = await start();
  try {
    const ch = await authz.challenge(T, { login_hint: HINT });
    const res = await idp.call(`/t/${T}/login?login_challenge=${encodeURIComponent(ch)}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(HINT);
    const cookie = res.headers.get("set-cookie")!.split(";")[0]!;
    const rows = await idp.ctx.db.selectFrom("idp_sessions").selectAll().execute();
    expect(rows.length).toBeGreaterThan(0);
    const raw = rows.map((r) => Object.values(r).map((v) => (v instanceof Uint8Array || v instanceof ArrayBuffer ? Buffer.from(v as Uint8Array).toString("latin1") : String(v))).join("|")).join("\n");
    expect(raw).not.toContain(HINT);
    expect(raw).not.toContain(ch.split(".")[1]!);
    // The flow opens again from its row: the session carries the challenge.
    const sessions = new IdpSessions(idp.ctx.db as any, idp.ctx.protector, idp.ctx.sessions, { idleS: 600, absoluteS: 3600 });
    const loaded = await sessions.load(new Request(idp.publicUrl, { headers: { cookie } }), T);
    expect(loaded?.flow.challenge).toBe(ch);
  } finally {
    await idp.stop();
  }
});

test("a database from before the sealed flows: sessions keep loading, the plaintext flow is gone", async () => {
  const dataDir = join(root, "old-idp");
  const database = await openDatabase<any>({ service: "identity-idp", dataDir });
  await runMigrations(database.db, "identity-idp", migrations.slice(0, 2));
  const t = Math.floor(Date.now() / 1000);
  await database.db
    .insertInto("idp_sessions")
    .values({ id_hash: "ab".repeat(32), tenant: T, user_id: null, auth_time: null, amr: null, flow: JSON.stringify({ challenge: `x.${HINT}.y` }), created_at: t, last_seen_at: t, expires_at: t + 600, revoked: 0 })
    .execute();
  await database.close();
  const idp = await startTestService(identityIdp, {
    root,
    issuer,
    overrides: (c) => {
      c.log.access = false;
      c.data.dir = dataDir;
      (c as { app?: unknown }).app = { authz_url: authz.url, ca_file: caFile };
    },
  });
  try {
    const rows = await idp.ctx.db.selectFrom("idp_sessions").selectAll().where("id_hash", "=", "ab".repeat(32)).execute();
    expect(rows.length).toBe(1);
    expect(JSON.stringify(rows[0])).not.toContain(HINT);
    expect(rows[0]!.flow_sealed).toBeNull();
  } finally {
    await idp.stop();
  }
});
