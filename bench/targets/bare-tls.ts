/** The framework ceiling: a bare Bun.serve TLS 1.3 server answering the same JSON as learn-ps. */
import { throwawayTls } from "../../test/support/tls.ts";

const tlsId = await throwawayTls("bare");
const pet = JSON.parse(process.argv[2] ?? "{}");
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  tls: tlsId.serve,
  fetch: () => Response.json(pet),
});
console.log(JSON.stringify({ url: `https://127.0.0.1:${server.port}`, ca: tlsId.caPem }));
