/**
 * Outgoing mail of identity-idp (links for sign-in, sign-up, password reset, address change).
 * `SmtpMailer` sends through a configured SMTP server with nodemailer (STARTTLS or implicit TLS,
 * certificate verification on; plain SMTP only in development). `DevOutbox` keeps the last mails
 * in memory for the development outbox page when no SMTP server is configured: never used in
 * production mode (see service.ts).
 */
import { readFileSync } from "node:fs";
import type { Transporter } from "nodemailer";

export interface Mail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
}

export interface SmtpSettings {
  host: string;
  port: number;
  tls: "starttls" | "implicit" | "none";
  user?: string;
  password_file?: string;
  from: string;
  ca_file?: string;
}

export class SmtpMailer implements Mailer {
  private transport?: Promise<Transporter>;

  constructor(private readonly s: SmtpSettings) {
    // Read now, so a missing file stops the start rather than the first mail.
    this.password = s.password_file ? readFileSync(s.password_file, "utf8").trim() : undefined;
    this.ca = s.ca_file ? readFileSync(s.ca_file, "utf8") : undefined;
  }

  private readonly password?: string;
  private readonly ca?: string;

  /** nodemailer, loaded with the first mail: a service that sends none never holds it. */
  private transporter(): Promise<Transporter> {
    const s = this.s;
    return (this.transport ??= import("nodemailer").then((nodemailer) =>
      nodemailer.createTransport({
        host: s.host,
        port: s.port,
        secure: s.tls === "implicit",
        requireTLS: s.tls === "starttls",
        ignoreTLS: s.tls === "none",
        auth: s.user ? { user: s.user, pass: this.password ?? "" } : undefined,
        // Mail servers commonly stop at TLS 1.2; the certificate is always verified.
        tls: { minVersion: "TLSv1.2", rejectUnauthorized: true, ...(this.ca ? { ca: this.ca } : {}) },
        connectionTimeout: 15_000,
        socketTimeout: 30_000,
      }),
    ));
  }

  async send(mail: Mail): Promise<void> {
    await (await this.transporter()).sendMail({ from: this.s.from, to: mail.to, subject: mail.subject, text: mail.text });
  }
}

/** The development outbox: the last 50 mails, newest first. */
export class DevOutbox implements Mailer {
  readonly mails: Array<Mail & { at: number }> = [];

  async send(mail: Mail): Promise<void> {
    this.mails.unshift({ ...mail, at: Date.now() });
    this.mails.length = Math.min(this.mails.length, 50);
  }
}
