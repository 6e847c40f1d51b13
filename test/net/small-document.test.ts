/**
 * src/net/small-document.ts: which hosts are refused before any connection (loopback, private,
 * link-local, mapped and reserved addresses, names under localhost, names resolving to any such
 * address, http, credentials in the URL), and, against a real HTTPS server run by the test, the
 * body cap on a streamed answer without Content-Length and (Bun's fetch) a name fetched at the address
 * that was checked (not one the system resolver would give), its name kept for TLS and Host.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { runtime } from "../../src/runtime/index.ts";
import { fetchSmallDocument, OutboundRefused, type SmallDocumentOptions } from "../../src/net/small-document.ts";
import { serveHttps, type TestHttpsServer } from "../support/tls.ts";

let server: TestHttpsServer;
let ca: string;
let connections = 0;

beforeAll(async () => {
  server = await serveHttps("small-document", (req) => {
    connections++;
    if (new URL(req.url).pathname === "/stream") {
      // Chunked, no Content-Length: only counting the bytes read can stop it.
      let sent = 0;
      return new Response(
        new ReadableStream({
          pull(c) {
            if (sent >= 64 * 1024) return c.close();
            sent += 4096;
            c.enqueue(new Uint8Array(4096).fill(0x61));
          },
        }),
      );
    }
    if (new URL(req.url).pathname === "/host") return new Response(req.headers.get("host"));
    return new Response("eyJhbGciOiJFUzI1NiJ9.e30.sig");
  }, ["localhost", "docs.invalid"]);
  ca = server.caPem;
});

afterAll(() => server?.stop());

const strict = (o: Partial<SmallDocumentOptions> = {}): SmallDocumentOptions => ({ timeoutMs: 5000, maxBytes: 1024, allowPrivate: false, ca, ...o });

const reason = async (url: string, o = strict()) => {
  try {
    await fetchSmallDocument(url, o);
  } catch (e) {
    expect(e).toBeInstanceOf(OutboundRefused);
    return (e as Error).message;
  }
  throw new Error(`${url} was fetched`);
};

test("loopback, private, link-local, mapped and reserved hosts are refused without a connection", async () => {
  const hosts = ["127.0.0.1", "[::1]", "localhost", "api.localhost", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "[::ffff:127.0.0.1]", "[fd00::1]", "[fe80::1]", "2130706433", "0x7f000001"];
  for (const h of hosts) expect(await reason(`https://${h}:${server.server.port}/doc`)).toMatch(/is a loopback, private or reserved address/);
  // A name is refused when any of its addresses is not public.
  const resolve = async () => ["93.184.216.34", "192.168.0.10"];
  expect(await reason("https://mixed.example/doc", strict({ resolve }))).toBe("mixed.example is a loopback, private or reserved address, which is not fetched");
  expect(await reason("https://nowhere.example/doc", strict({ resolve: async () => Promise.reject(new Error("ENOTFOUND")) }))).toBe("nowhere.example does not resolve");
  expect(await reason(`http://93.184.216.34/doc`)).toBe("only https URLs are fetched");
  expect(await reason(`https://user:pw@93.184.216.34/doc`)).toBe("URLs with credentials are not fetched");
  expect(connections).toBe(0);
});

test("allowed private addresses are fetched; a streamed body over the cap is refused", async () => {
  expect(await fetchSmallDocument(`https://127.0.0.1:${server.server.port}/doc`, strict({ allowPrivate: true }))).toBe("eyJhbGciOiJFUzI1NiJ9.e30.sig");
  expect(await reason(`https://127.0.0.1:${server.server.port}/stream`, strict({ allowPrivate: true, maxBytes: 16_384 }))).toBe("the document is larger than 16384 bytes");
  // The server's certificate is verified against the given CA only.
  expect(await reason(`https://127.0.0.1:${server.server.port}/doc`, strict({ allowPrivate: true, ca: undefined }))).toMatch(/^the connection failed/);
});

test("a name is fetched at the checked address, with the name for TLS and Host", async () => {
  // The tests run on Bun, whose fetch takes the address and the TLS server name apart.
  expect(runtime.pinsAddresses).toBe(true);
  // `.invalid` never resolves (RFC 6761): the answer can only come from the address checked here.
  const resolve = async (host: string) => (host === "docs.invalid" ? ["127.0.0.1"] : []);
  const url = `https://docs.invalid:${server.server.port}/host`;
  expect(await fetchSmallDocument(url, strict({ allowPrivate: true, resolve }))).toBe(`docs.invalid:${server.server.port}`);
  // Checked first: the same name refused when private addresses are not allowed.
  expect(await reason(url, strict({ resolve }))).toBe("docs.invalid is a loopback, private or reserved address, which is not fetched");
});
