/**
 * Issue 14 (5 and 9): what each listener answers outside the pipeline's happy path.
 *
 * learn-ps runs twice: once with the default public listener (Bun.serve) and once with
 * `server.listener: node` (node:http2 with allowHTTP1). The admin port is the node listener in
 * both. Checked from outside with openssl, gnutls-cli, curl and raw TLS sockets:
 * - ALPN: the node listener negotiates h2 or http/1.1 and refuses a client that offers only
 *   `imap` (no_application_protocol), on the public port when configured and on every admin port.
 * - Malformed HTTP/1.1 (headers over the limit, a request line that is not HTTP, an unknown
 *   HTTP version) gets 431/400/505 in the error model, with the security headers and a request
 *   id, and is counted in the metrics, on the node listener.
 * - Bodies far over `body_limit`, declared or chunked, get the pipeline's own 413 on Bun.serve
 *   too (the runtime's cap is a gigabyte).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { connect } from "node:tls";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";

const LIMIT = 64 * 1024;
let issuer: TestIssuer;
let onBun: TestService;
let onNode: TestService;
let token: string;

beforeAll(async () => {
  issuer = await startTestIssuer({ audience: "learn-ps" });
  const settings = (listener: "bun" | "node") => ({
    issuer,
    overrides: (c: Parameters<typeof quiet>[0]) => {
      quiet(c);
      c.server.listener = listener;
      c.server.body_limit = LIMIT;
    },
  });
  onBun = await startTestService(learnPs, settings("bun"));
  onNode = await startTestService(learnPs, settings("node"));
  token = await issuer.mint({ tenant: "tenant-a", scope: "pets:read pets:write" });
});

afterAll(async () => {
  await onBun?.stop();
  await onNode?.stop();
  await issuer?.stop();
});

/** Runs a tool without blocking the event loop (the services answer in this process). */
async function run(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(), 60_000);
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return stdout + stderr;
}

const portOf = (url: string) => new URL(url).port;
const sClient = (svc: TestService, url: string, alpn: string) =>
  run(["openssl", "s_client", "-connect", `127.0.0.1:${portOf(url)}`, "-CAfile", svc.trustBundlePath, "-tls1_3", "-alpn", alpn]);

/** Sends `request` as raw bytes over TLS and returns everything the server writes before closing. */
function rawExchange(svc: TestService, url: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port: Number(portOf(url)), ca: svc.ca, servername: "localhost", ALPNProtocols: ["http/1.1"] }, () => socket.write(request));
    let out = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (out += d));
    socket.on("close", () => resolve(out));
    socket.on("error", reject);
    socket.setTimeout(60_000, () => socket.destroy(new Error("no answer")));
  });
}

/** The status, headers (lower-cased) and JSON body of one raw HTTP/1.1 answer. */
function parseAnswer(raw: string): { status: number; headers: Map<string, string>; body: any } {
  const [head, body] = [raw.slice(0, raw.indexOf("\r\n\r\n")), raw.slice(raw.indexOf("\r\n\r\n") + 4)];
  const [statusLine, ...lines] = head.split("\r\n");
  const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()] as [string, string]));
  return { status: Number(statusLine!.split(" ")[1]), headers, body: JSON.parse(body) };
}

describe("ALPN", () => {
  test("node public listener: h2 and http/1.1 negotiated, imap-only refused (openssl s_client)", async () => {
    expect(await sClient(onNode, onNode.publicUrl, "h2,http/1.1")).toContain("ALPN protocol: h2");
    expect(await sClient(onNode, onNode.publicUrl, "http/1.1")).toContain("ALPN protocol: http/1.1");
    const imap = await sClient(onNode, onNode.publicUrl, "imap");
    expect(imap).toContain("no application protocol");
    expect(imap).not.toContain("ALPN protocol: imap");
  });

  test("every admin port is the node listener: imap-only refused there too", async () => {
    for (const svc of [onBun, onNode]) {
      expect(await sClient(svc, svc.adminUrl, "http/1.1")).toContain("ALPN protocol: http/1.1");
      expect(await sClient(svc, svc.adminUrl, "imap")).toContain("no application protocol");
    }
  });

  test("gnutls-cli: imap-only refused on the node public listener (Debian package gnutls-bin)", async () => {
    if (spawnSync("gnutls-cli", ["--version"]).status !== 0) {
      if (process.env.CI === "true") throw new Error("gnutls-cli is required (Debian package gnutls-bin)");
      console.warn("skipped: gnutls-cli not installed (Debian package gnutls-bin)");
      return;
    }
    const gnutls = (alpn: string) => run(["gnutls-cli", "--x509cafile", onNode.trustBundlePath, "--alpn", alpn, "-p", portOf(onNode.publicUrl), "127.0.0.1"]);
    expect(await gnutls("imap")).toContain("No supported application protocol could be negotiated");
  });

  test("the API works over h2 and HTTP/1.1 on the node public listener (curl)", async () => {
    for (const version of ["--http2", "--http1.1"]) {
      const out = await run(["curl", "-sS", "--max-time", "60", version, "--cacert", onNode.trustBundlePath, "-H", `authorization: Bearer ${token}`, "-w", "\n%{http_version} %{http_code}", `${onNode.publicUrl}/service/api/v1/pets?limit=1`]);
      expect(out.trim().split("\n").pop()).toBe(version === "--http2" ? "2 200" : "1.1 200");
    }
  });
});

describe("malformed HTTP/1.1 on the node listener", () => {
  const cases = [
    { name: "headers over the limit", request: `GET /livez HTTP/1.1\r\nHost: localhost\r\nX-Filler: ${"a".repeat(20_000)}\r\n\r\n`, status: 431, code: "header_too_large" },
    { name: "a request line that is not HTTP", request: "GARBAGE\r\n\r\n", status: 400, code: "malformed_request" },
    { name: "an unknown HTTP version", request: "GET /livez HTTP/3.0\r\nHost: localhost\r\n\r\n", status: 505, code: "http_version_not_supported" },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.status} ${c.code} with the error model, security headers and a request id`, async () => {
      for (const url of [onNode.publicUrl, onNode.adminUrl]) {
        const answer = parseAnswer(await rawExchange(onNode, url, c.request));
        expect(answer.status).toBe(c.status);
        expect(answer.body.error.code).toBe(c.code);
        expect(answer.headers.get("x-content-type-options")).toBe("nosniff");
        expect(answer.headers.get("strict-transport-security")).toContain("max-age=");
        expect(answer.headers.get("x-request-id")).toBe(answer.body.error.request_id);
        expect(answer.headers.get("connection")).toBe("close");
      }
    });
  }

  test("each refusal is counted under the route (malformed)", async () => {
    await rawExchange(onNode, onNode.publicUrl, "GARBAGE\r\n\r\n");
    const metrics = await (await onNode.admin("/admin/v1/metrics", { headers: { authorization: `Bearer ${onNode.adminToken}` } })).text();
    expect(metrics).toMatch(/route="\(malformed\)",status="400"/);
    expect(metrics).toMatch(/route="\(malformed\)",status="431"/);
  });
});

describe("bodies far over body_limit", () => {
  const big = JSON.stringify({ name: "Rex", species: "dog", owner_note: "x".repeat(4 * LIMIT) });
  const post = (svc: TestService, body: BodyInit, extra: Record<string, unknown> = {}) =>
    svc.call("/service/api/v1/pets", { method: "POST", body, headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, ...extra } as RequestInit);
  const stream = (text: string) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        // In pieces, as a client streaming a large upload would send it.
        const bytes = new TextEncoder().encode(text);
        for (let i = 0; i < bytes.length; i += 16_384) c.enqueue(bytes.slice(i, i + 16_384));
        c.close();
      },
    });

  for (const name of ["bun", "node"] as const) {
    test(`${name} listener: declared and chunked, four times the limit, get the pipeline's 413`, async () => {
      const svc = name === "bun" ? onBun : onNode;
      for (const res of [await post(svc, big), await post(svc, stream(big), { duplex: "half" })]) {
        expect(res.status).toBe(413);
        expect(res.headers.get("x-content-type-options")).toBe("nosniff");
        const body = (await res.json()) as { error: { code: string; request_id: string } };
        expect(body.error.code).toBe("payload_too_large");
        expect(body.error.request_id).toBe(res.headers.get("x-request-id")!);
      }
      // A chunked body under the limit is read whole and served.
      const ok = await post(svc, stream(JSON.stringify({ name: "Rex", species: "dog" })), { duplex: "half" });
      expect(ok.status).toBe(201);
    });
  }
});
