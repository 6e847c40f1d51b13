/**
 * Real notification receivers for tests: an SMTP server (the `smtp-server` package) that keeps
 * each mail, and an HTTP receiver that keeps each POST by path and answers as the test decides.
 */
import { SMTPServer } from "smtp-server";

export interface Mail {
  from: string;
  to: string[];
  raw: string;
}

export interface SmtpSink {
  port: number;
  mails: Mail[];
  stop(): Promise<void>;
}

export async function startSmtp(): Promise<SmtpSink> {
  const mails: Mail[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    onData(stream, session, cb) {
      let raw = "";
      stream.on("data", (c: Buffer) => (raw += c.toString("utf8")));
      stream.on("end", () => {
        // The body is quoted-printable: soft line breaks and "=" undone for the checks.
        mails.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to: session.envelope.rcptTo.map((r) => r.address), raw: raw.replace(/=\r\n/g, "").replace(/=3D/g, "=") });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", () => resolve()));
  return { port: (smtp.server.address() as { port: number }).port, mails, stop: () => new Promise<void>((resolve) => smtp.close(() => resolve())) };
}

export interface Hit {
  headers: Headers;
  body: string;
}

export interface WebhookSink {
  hits: Record<string, Hit[]>;
  url(path: string): string;
  stop(): void;
}

/** `status(path)` answers each POST (default 204); every request is kept under its path. */
export function startReceiver(status: (path: string) => number = () => 204): WebhookSink {
  const hits: Record<string, Hit[]> = {};
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname.slice(1);
      (hits[path] ??= []).push({ headers: req.headers, body: await req.text() });
      const s = status(path);
      return new Response(s === 204 ? null : "down", { status: s });
    },
  });
  return { hits, url: (p) => `http://127.0.0.1:${server.port}/${p}`, stop: () => void server.stop(true) };
}

/** Waits (polling) until `ok()`; fails after `ms`. */
export async function until(ok: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}
