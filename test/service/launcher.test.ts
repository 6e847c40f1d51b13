/**
 * The suite launcher behind `npm start`: starts learn-ps in its own process on its
 * default port, prints the URL table, and stops cleanly on Ctrl-C (SIGINT).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "../support/service.ts";

const root = resolve(import.meta.dir, "../..");

/** Starts the launcher with learn-ps only and reads its output up to the URL table. */
async function startLauncher(env: Record<string, string> = {}) {
  const data = tempDir();
  const proc = Bun.spawn([process.execPath, "run", join(root, "scripts/start.ts"), "--only=learn-ps", `--data=${data}`], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const reader = proc.stdout.getReader();
  let out = "";
  const deadline = Date.now() + 30_000;
  while (!out.includes("press Ctrl-C") && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  return { data, proc, reader, out };
}

test("npm start's launcher prints the URLs, serves learn-ps on 8888 and stops on Ctrl-C", async () => {
  const { data, proc, reader, out: started } = await startLauncher();
  let out = started;
  try {
    expect(out).toContain("cryptoutil is running");
    const row = out.split("\n").find((l) => l.startsWith("learn-ps"))!;
    const [, publicUrl, adminUrl, docsUrl] = row.trim().split(/\s+/);
    expect(publicUrl).toBe("https://127.0.0.1:8888");
    expect(docsUrl).toBe("https://127.0.0.1:8888/docs");
    expect(adminUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = readFileSync(join(data, "learn-ps", "trust-bundle.pem"), "utf8");
    const tls = { tls: { ca } } as RequestInit;
    expect((await fetch(`${adminUrl}/admin/v1/livez`, tls)).status).toBe(200);
    expect((await fetch(`${publicUrl}/admin/v1/livez`, tls)).status).toBe(404);
    expect((await fetch(docsUrl!, tls)).status).toBe(200);
  } finally {
    proc.kill("SIGINT");
  }
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  expect(await proc.exited).toBe(0);
  expect(out).toContain("stopped.");
});

test("services stop by themselves when the launcher is killed outright", async () => {
  const { data, proc, out } = await startLauncher({ CRYPTOUTIL_SERVER_PORT: "0" });
  const row = out.split("\n").find((l) => l.startsWith("learn-ps"))!;
  const adminUrl = row.trim().split(/\s+/)[2]!;
  const tls = { tls: { ca: readFileSync(join(data, "learn-ps", "trust-bundle.pem"), "utf8") } } as RequestInit;
  expect((await fetch(`${adminUrl}/admin/v1/livez`, tls)).status).toBe(200);
  proc.kill("SIGKILL"); // no chance to stop its children
  await proc.exited;
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    await Bun.sleep(200);
    gone = await fetch(`${adminUrl}/admin/v1/livez`, tls).then(
      () => false,
      () => true,
    );
  }
  expect(gone).toBe(true);
}, 40_000);
