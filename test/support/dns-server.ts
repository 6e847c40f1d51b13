/**
 * A small authoritative DNS server on 127.0.0.1 (UDP, node:dgram) for tests: answers A, AAAA,
 * TXT and CAA from a table the test edits, NXDOMAIN for names it has nothing for (or, with
 * `fallbackA`, an A record for every name), SERVFAIL for names marked failing. Wire format
 * after RFC 1035 §4 (names compressed only as the answer's pointer to the question) and RFC 8659
 * §4.1 (CAA RDATA). An HTTP control endpoint on 127.0.0.1 lets a separate process (a client's
 * hook script) add and remove TXT records: `POST /txt` and `DELETE /txt` with `<name> <value>`.
 */
import dgram from "node:dgram";

export interface CaaRecord {
  flags?: number;
  tag: string;
  value: string;
}

interface Entry {
  A: string[];
  AAAA: string[];
  TXT: string[];
  CAA: CaaRecord[];
  servfail: boolean;
}

const TYPES = { A: 1, TXT: 16, AAAA: 28, CAA: 257 } as const;

export class TestDns {
  private readonly table = new Map<string, Entry>();
  /** Names asked for, with their query type (for assertions about what the CA looked up). */
  readonly queries: Array<{ name: string; type: number }> = [];
  /** An A record answered for every name not in the table (e.g. 127.0.0.1 in a benchmark). */
  fallbackA: string | undefined;

  private constructor(
    private readonly socket: dgram.Socket,
    readonly port: number,
    private readonly control: { stop(force?: boolean): void; port?: number },
  ) {}

  static async start(): Promise<TestDns> {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, "127.0.0.1", () => resolve());
    });
    let self: TestDns | undefined;
    const control = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const [name, value] = (await req.text()).trim().split(/\s+/);
        if (new URL(req.url).pathname !== "/txt" || !name || !value) return new Response("POST|DELETE /txt with '<name> <value>'", { status: 400 });
        if (req.method === "POST") self!.addTxt(name, value);
        else if (req.method === "DELETE") self!.removeTxt(name, value);
        else return new Response("method", { status: 405 });
        return new Response("ok");
      },
    });
    self = new TestDns(socket, (socket.address() as { port: number }).port, control);
    socket.on("message", (msg, from) => {
      const answer = self!.answer(msg);
      if (answer) socket.send(answer, from.port, from.address);
    });
    return self;
  }

  /** `127.0.0.1:port`, as the CA's dns_resolvers and lego's --dns.resolvers take it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The control URL for hook scripts (POST/DELETE `<name> <value>`). */
  get controlUrl(): string {
    return `http://127.0.0.1:${this.control.port}/txt`;
  }

  private entry(name: string): Entry {
    const key = name.toLowerCase().replace(/\.$/, "");
    let e = this.table.get(key);
    if (!e) this.table.set(key, (e = { A: [], AAAA: [], TXT: [], CAA: [], servfail: false }));
    return e;
  }

  addA(name: string, ip: string) {
    this.entry(name)[ip.includes(":") ? "AAAA" : "A"].push(ip);
  }
  addTxt(name: string, value: string) {
    this.entry(name).TXT.push(value);
  }
  removeTxt(name: string, value: string) {
    const e = this.entry(name);
    e.TXT = e.TXT.filter((v) => v !== value);
  }
  setCaa(name: string, records: CaaRecord[]) {
    this.entry(name).CAA = records;
  }
  failing(name: string, on = true) {
    this.entry(name).servfail = on;
  }
  clear(name: string) {
    this.table.delete(name.toLowerCase().replace(/\.$/, ""));
  }

  /** The response to one query message; undefined for what is not a readable query. */
  private answer(msg: Buffer): Buffer | undefined {
    if (msg.length < 17 || (msg[2]! & 0x80) !== 0) return undefined;
    const labels: string[] = [];
    let o = 12;
    while (o < msg.length && msg[o] !== 0) {
      const len = msg[o]!;
      if (len > 63 || o + 1 + len > msg.length) return undefined;
      labels.push(msg.subarray(o + 1, o + 1 + len).toString("latin1"));
      o += 1 + len;
    }
    if (o + 5 > msg.length) return undefined;
    const question = msg.subarray(12, o + 5);
    const qtype = msg.readUInt16BE(o + 1);
    const name = labels.join(".").toLowerCase();
    this.queries.push({ name, type: qtype });
    const e = this.table.get(name);
    let rcode = 0;
    const rdatas: Buffer[] = [];
    if (e?.servfail) rcode = 2;
    else if (!e) {
      if (this.fallbackA && qtype === TYPES.A) rdatas.push(Buffer.from(this.fallbackA.split(".").map(Number)));
      else if (!this.fallbackA) rcode = 3;
    } else if (qtype === TYPES.A) rdatas.push(...e.A.map((ip) => Buffer.from(ip.split(".").map(Number))));
    else if (qtype === TYPES.AAAA) rdatas.push(...e.AAAA.map(ipv6Bytes));
    else if (qtype === TYPES.TXT) rdatas.push(...e.TXT.map(txtRdata));
    else if (qtype === TYPES.CAA) rdatas.push(...e.CAA.map(caaRdata));
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2);
    header[2] = 0x84 | (msg[2]! & 0x01); // QR, AA, RD copied
    header[3] = 0x80 | rcode; // RA
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(rdatas.length, 6);
    const answers = rdatas.map((rd) => {
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // the question's name
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(0, 6); // TTL 0: every test sees its latest change
      rr.writeUInt16BE(rd.length, 10);
      return Buffer.concat([rr, rd]);
    });
    return Buffer.concat([header, question, ...answers]);
  }

  stop(): void {
    this.socket.close();
    this.control.stop(true);
  }
}

function txtRdata(value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length || i === 0; i += 255) {
    const chunk = bytes.subarray(i, i + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

function caaRdata(r: CaaRecord): Buffer {
  const tag = Buffer.from(r.tag, "latin1");
  return Buffer.concat([Buffer.from([r.flags ?? 0, tag.length]), tag, Buffer.from(r.value, "utf8")]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head = "", tail = ""] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
