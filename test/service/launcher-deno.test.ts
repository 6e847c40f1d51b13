/**
 * `npm start -- --runtime=deno`: the launcher starts the services on Deno (`deno run`), wires
 * them as on Bun, provisions the demo tenant and user, and stops them cleanly on Ctrl-C. A
 * token identity-authz issues on Deno is accepted by sm-kms on Deno (its JWKS fetched over TLS
 * with the suite CA). Ports come from per-service config files, free ports of this machine.
 */
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "../support/service.ts";
import { freePort } from "../support/server-process.ts";
import { forEachLine } from "../../scripts/suite/runtime.ts";

const root = resolve(import.meta.dir, "../..");
const SERVICES = ["identity-authz", "identity-idp", "sm-kms"];

test("the launcher runs the suite on Deno", async () => {
  const data = tempDir();
  const configDir = tempDir();
  // identity-idp's mTLS port too (18101 under npm start's wiring): every port a free one.
  for (const s of SERVICES) writeFileSync(join(configDir, `${s}.yaml`), `server:\n  port: ${await freePort()}\n${s === "identity-idp" ? `  mtls_port: ${await freePort()}\n` : ""}`);
  const proc = Bun.spawn([process.execPath, "run", join(root, "scripts/start.ts"), "--runtime=deno", `--only=${SERVICES.join(",")}`, `--data=${data}`, `--config-dir=${configDir}`], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const lines: string[] = [];
  const running = Promise.withResolvers<void>();
  const done = forEachLine(proc.stdout, (l) => {
    lines.push(l);
    if (l.includes("press Ctrl-C")) running.resolve();
  });
  void done.then(() => running.reject(new Error(`the launcher ended early:\n${lines.join("\n")}`)));
  try {
    await running.promise;
    const out = lines.join("\n");
    expect(out).toContain("cryptoutil is running on deno");
    const suite = JSON.parse(readFileSync(join(data, "suite.json"), "utf8"));
    const tls = { tls: { ca: readFileSync(join(data, "identity-authz", "trust-bundle.pem"), "utf8") } } as RequestInit;
    for (const s of SERVICES) expect((await fetch(`${suite.services[s].admin}/admin/v1/readyz`, tls)).status).toBe(200);
    // Demo user provisioned through identity-idp (its Argon2 worker pool, on Deno).
    expect(readFileSync(join(data, "demo", "user.password"), "utf8").length).toBeGreaterThan(8);

    const secret = readFileSync(join(data, "demo", "demo-sm-kms.secret"), "utf8").trim();
    const tokenRes = await fetch(`${suite.services["identity-authz"].public}/t/demo/token`, {
      ...tls,
      method: "POST",
      headers: { authorization: `Basic ${btoa(`demo-sm-kms:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials&scope=kms:admin",
    });
    expect(tokenRes.status).toBe(200);
    const { access_token } = (await tokenRes.json()) as { access_token: string };
    const created = await fetch(`${suite.services["sm-kms"].public}/service/api/v1/keys`, {
      ...tls,
      method: "POST",
      headers: { authorization: `Bearer ${access_token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "on-deno", algorithm: "A256GCM" }),
    });
    expect(created.status).toBe(201);
  } finally {
    proc.kill("SIGINT");
  }
  await done;
  expect(await proc.exited).toBe(0);
  expect(lines.join("\n")).toContain("stopped.");
}, 300_000);
