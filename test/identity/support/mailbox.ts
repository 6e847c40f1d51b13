/**
 * A real SMTP server for tests (npm `smtp-server`), STARTTLS with a throwaway suite-CA
 * certificate, that keeps every message it receives so a test can read the links in them.
 */
import { SMTPServer } from "smtp-server";
import { throwawayTls } from "../../support/tls.ts";

export interface Received {
  to: string[];
  raw: string;
}

export interface Mailbox {
  port: number;
  caPem: string;
  received: Received[];
  /** The next message to `to` not yet taken; waits for it (polling, with a generous bound). */
  next(to: string): Promise<Received>;
  /** The text of a message, quoted-printable soft breaks and "=3D" undone. */
  text(m: Received): string;
  /** The first https link of a message. */
  link(m: Received): string;
  stop(): Promise<void>;
}

const text = (m: Received) => m.raw.replace(/=\r?\n/g, "").replace(/=3D/g, "=");

export async function startMailbox(): Promise<Mailbox> {
  const tls = await throwawayTls("smtp");
  const received: Received[] = [];
  const taken = new Set<Received>();
  const server = new SMTPServer({
    key: tls.keyPem,
    cert: tls.certPem,
    authOptional: true,
    disabledCommands: ["AUTH"],
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString("utf8") });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.server.address() as { port: number }).port;
  return {
    port,
    caPem: tls.caPem,
    received,
    async next(to) {
      for (let i = 0; i < 300; i++) {
        const m = received.find((r) => !taken.has(r) && r.to.includes(to));
        if (m) {
          taken.add(m);
          return m;
        }
        await Bun.sleep(100);
      }
      throw new Error(`no mail to ${to} arrived`);
    },
    text,
    link(m) {
      const body = text(m);
      const found = /https:\/\/[^\s]+/.exec(body);
      if (!found) throw new Error("no link in the mail: " + body.slice(0, 500));
      return found[0];
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
