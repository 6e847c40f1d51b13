/**
 * Issue 21 (2), unmodified software on the PKCS#11 module: openssl with libp11's pkcs11
 * engine makes a CA certificate and a CSR and signs a certificate with keys that live in
 * sm-kms, and `openssl verify` accepts the chain; `ssh-keygen -D` lists the keys as ssh public
 * keys, and an ssh login to a test sshd (loopback, a free port, this user, its own host key and
 * config) authenticates with a key held in sm-kms, EC and RSA in turn.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { MODULE, requireTools, run, startKmsBackend, type KmsBackend } from "./pkcs11-harness.ts";
import { exited, freePort } from "../support/server-process.ts";

const ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";
const SSHD = "/usr/sbin/sshd";
const ready = requireTools([["openssl", ["version"]], ["ssh", ["-V"]], ["ssh-keygen", ["-?"]]], [MODULE, ENGINE, SSHD]);
const PIN = "engine-pin";
let b: KmsBackend;
const keys: Record<string, string> = {};
const file = (name: string) => join(b.root, name);

beforeAll(async () => {
  if (!ready) return;
  b = await startKmsBackend([
    { label: "pki", tenant: "tenant-pki", pin: PIN },
    { label: "ssh", tenant: "tenant-ssh" },
  ]);
  for (const [name, algorithm, tenant] of [
    ["ca-key", "ES256", "tenant-pki"],
    ["leaf-key", "RS256", "tenant-pki"],
    ["ssh-ec", "ES256", "tenant-ssh"],
    ["ssh-rsa", "RS256", "tenant-ssh"],
  ] as const) {
    const r = await b.api(tenant, "POST", "/keys", { name, algorithm });
    expect(r.status).toBe(201);
    keys[name] = r.body.id;
  }
});
afterAll(async () => {
  await b?.stop();
});

describe.if(ready)("openssl with the pkcs11 engine", () => {
  const conf = () => {
    const path = file("openssl-pkcs11.cnf");
    writeFileSync(
      path,
      [
        "openssl_conf = openssl_init",
        "[openssl_init]",
        "engines = engine_section",
        "[engine_section]",
        "pkcs11 = pkcs11_section",
        "[pkcs11_section]",
        "engine_id = pkcs11",
        `dynamic_path = ${ENGINE}`,
        `MODULE_PATH = ${MODULE}`,
        "init = 0",
        "[req]",
        "distinguished_name = dn",
        "[dn]",
        "",
      ].join("\n"),
    );
    return path;
  };
  const uri = (object: string) => `pkcs11:token=pki;object=${object};type=private;pin-value=${PIN}`;
  const openssl = (args: string[]) => run(["openssl", ...args], { env: { ...b.env, OPENSSL_CONF: conf() } });

  test("a CA certificate, a CSR and a certificate signed with keys in sm-kms; openssl verify accepts the chain", async () => {
    const ca = await openssl([
      "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", uri("ca-key"), "-sha256", "-days", "1",
      "-subj", "/CN=sm-kms held CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", file("ca.pem"),
    ]);
    expect(ca.stderr).not.toContain("error");
    expect(ca.status).toBe(0);
    const csr = await openssl(["req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key", uri("leaf-key"), "-sha256", "-subj", "/CN=leaf.example", "-out", file("leaf.csr")]);
    expect(csr.status).toBe(0);
    const csrCheck = await run(["openssl", "req", "-in", file("leaf.csr"), "-verify", "-noout"]);
    expect(csrCheck.stdout + csrCheck.stderr).toMatch(/verify OK/i);
    const cert = await openssl([
      "x509", "-req", "-in", file("leaf.csr"), "-engine", "pkcs11", "-CA", file("ca.pem"), "-CAkeyform", "engine", "-CAkey", uri("ca-key"),
      "-sha256", "-days", "1", "-set_serial", "42", "-out", file("leaf.pem"),
    ]);
    expect(cert.status).toBe(0);
    const verify = await run(["openssl", "verify", "-CAfile", file("ca.pem"), file("leaf.pem")]);
    expect(verify.stdout.trim()).toBe(`${file("leaf.pem")}: OK`);
    // The CA's public key is the one sm-kms holds.
    const { body: jwk } = await b.api("tenant-pki", "GET", `/keys/${keys["ca-key"]}/public-key`);
    const text = (await run(["openssl", "x509", "-in", file("ca.pem"), "-noout", "-pubkey"])).stdout;
    const { createPublicKey } = await import("node:crypto");
    expect(createPublicKey(text).export({ format: "jwk" })).toMatchObject({ x: jwk.x, y: jwk.y });
  }, 120_000);
});

describe.if(ready)("ssh", () => {
  /**
   * The module with only the slot whose key needs no PIN: ssh loads provider keys without
   * logging in, and gives up on a provider when any of its tokens asks for a PIN it cannot prompt for.
   */
  const sshEnv = () => {
    const config = JSON.parse(readFileSync(b.configFile, "utf8"));
    config.slots = config.slots.filter((s: { label: string }) => s.label === "ssh");
    writeFileSync(file("pkcs11-ssh.json"), JSON.stringify(config));
    return { ...b.env, CRYPTOUTIL_PKCS11_CONFIG: file("pkcs11-ssh.json") };
  };
  let sshd: ChildProcess | undefined;
  let sshdLog = "";
  let port = 0;

  afterAll(async () => {
    sshd?.kill("SIGTERM");
    if (sshd) await exited(sshd);
  });

  test("ssh-keygen -D lists the keys of sm-kms as ssh public keys", async () => {
    const r = await run(["ssh-keygen", "-D", MODULE], { env: sshEnv() });
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.filter((l) => l.startsWith("ecdsa-sha2-nistp256 ")).length).toBe(1);
    expect(lines.filter((l) => l.startsWith("ssh-rsa ")).length).toBe(1);
    // The EC line carries sm-kms's public point.
    const { body: jwk } = await b.api("tenant-ssh", "GET", `/keys/${keys["ssh-ec"]}/public-key`);
    const blob = Buffer.from(lines.find((l) => l.startsWith("ecdsa"))!.split(" ")[1]!, "base64");
    const point = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x, "base64url"), Buffer.from(jwk.y, "base64url")]);
    expect(blob.includes(point)).toBe(true);
    writeFileSync(file("ssh-keys.pub"), r.stdout);
  });

  test("an ssh login to a loopback sshd authenticates with each key held in sm-kms", async () => {
    const hostKey = file("ssh_host_ed25519_key");
    expect((await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey])).status).toBe(0);
    port = await freePort();
    const config = file("sshd_config");
    const authorized = file("authorized_keys");
    writeFileSync(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${file("sshd.pid")}`,
        `AuthorizedKeysFile ${authorized}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
    );
    // Run as root, sshd wants its privilege separation directory (the Debian service creates it).
    if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    const pub = readFileSync(file("ssh-keys.pub"), "utf8").trim().split("\n");
    for (const kind of ["ecdsa-sha2-nistp256", "ssh-rsa"]) {
      writeFileSync(authorized, pub.find((l) => l.startsWith(kind + " ")) + "\n", { mode: 0o600 });
      if (!sshd) {
        sshd = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
        sshd.stderr!.on("data", (d) => (sshdLog += d));
        for (let i = 0; i < 100 && !sshdLog.includes("Server listening"); i++) await Bun.sleep(100);
        expect(sshdLog).toContain("Server listening");
      }
      const r = await run(
        [
          "ssh", "-F", "/dev/null", "-p", String(port),
          "-o", `PKCS11Provider=${MODULE}`, "-o", "IdentityFile=none", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
          "-o", "StrictHostKeyChecking=no", "-o", `UserKnownHostsFile=${file("known_hosts")}`, "-o", "PasswordAuthentication=no",
          `${spawnSync("id", ["-un"], { encoding: "utf8" }).stdout.trim()}@127.0.0.1`, "echo", `logged-in-with-${kind}`,
        ],
        { env: sshEnv() },
      );
      expect(r.stderr).not.toContain("Permission denied");
      expect(r.stdout.trim()).toBe(`logged-in-with-${kind}`);
      expect(r.status).toBe(0);
    }
    expect(sshdLog).toMatch(/Accepted publickey for \S+ from 127\.0\.0\.1 port \d+ ssh2: ECDSA SHA256:/);
    expect(sshdLog).toMatch(/Accepted publickey for \S+ from 127\.0\.0\.1 port \d+ ssh2: RSA SHA256:/);
  }, 120_000);
});
