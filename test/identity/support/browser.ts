/**
 * A scripted browser for the HTML login pages: a cookie jar (host-only cookies, as for
 * 127.0.0.1 where ports share cookies), manual redirects, form and meta-refresh parsing.
 * Real HTTPS with the suite CA; used by the idp tests and the end-to-end tests.
 */
export interface Page {
  status: number;
  url: string;
  html: string;
  headers: Headers;
}

const unescapeHtml = (s: string) => s.replace(/&amp;/g, "&").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">");

export class ScriptedBrowser {
  readonly cookies = new Map<string, string>();
  /** `clientCert`: a TLS client certificate (PEM chain and key) presented to every server that asks. */
  constructor(
    private readonly ca: string,
    private readonly clientCert?: { cert: string; key: string },
  ) {}

  private store(res: Response) {
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const maxAge = attrs.map((a) => a.trim().toLowerCase()).find((a) => a.startsWith("max-age="));
      if (maxAge === "max-age=0" || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  /** One request, no redirect following. */
  async request(url: string, init: RequestInit = {}): Promise<Page> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set("cookie", this.cookieHeader());
    const res = await fetch(url, { ...init, headers, redirect: "manual", tls: { ca: this.ca, ...this.clientCert } } as RequestInit);
    this.store(res);
    return { status: res.status, url, html: await res.text(), headers: res.headers };
  }

  /**
   * Follows 3xx redirects and `<meta http-equiv="refresh">` pages until a page that is
   * neither, or until `stopAt(url)` is true for the next URL (returned unvisited as `url`).
   */
  async follow(p: Page, stopAt?: (url: string) => boolean, max = 20): Promise<Page> {
    for (let i = 0; i < max; i++) {
      let next: string | undefined;
      const loc = p.headers.get("location");
      if (p.status >= 300 && p.status < 400 && loc) next = new URL(loc, p.url).toString();
      else {
        const m = p.html.match(/<meta http-equiv="refresh" content="0;url=([^"]+)">/);
        if (m) next = new URL(unescapeHtml(m[1]!), p.url).toString();
      }
      if (!next) return p;
      if (stopAt?.(next)) return { status: 0, url: next, html: "", headers: new Headers() };
      p = await this.request(next);
    }
    throw new Error("too many redirects");
  }

  async get(url: string, stopAt?: (url: string) => boolean): Promise<Page> {
    return this.follow(await this.request(url), stopAt);
  }

  /** Submits the form whose action ends with `actionSuffix`, with its hidden fields plus `fields`. */
  async submit(p: Page, actionSuffix: string, fields: Record<string, string>, stopAt?: (url: string) => boolean): Promise<Page> {
    const forms = [...p.html.matchAll(/<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/g)];
    const form = forms.find((f) => unescapeHtml(f[1]!).endsWith(actionSuffix));
    if (!form) throw new Error(`no form posting to ${actionSuffix} on ${p.url} (status ${p.status}): ${p.html.slice(0, 400)}`);
    const body = new URLSearchParams();
    for (const h of form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) body.set(h[1]!, unescapeHtml(h[2]!));
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    const res = await this.request(new URL(unescapeHtml(form[1]!), p.url).toString(), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: new URL(p.url).origin },
      body,
    });
    return this.follow(res, stopAt);
  }
}

/** The base32 TOTP key shown on the enrolment page. */
export function enrolmentSecret(p: Page): string {
  const m = p.html.match(/<code id="otp-secret">([A-Z2-7 ]+)<\/code>/);
  if (!m) throw new Error("no TOTP secret on the page: " + p.html.slice(0, 300));
  return m[1]!.replace(/ /g, "");
}

export function recoveryCodes(p: Page): string[] {
  return [...p.html.matchAll(/<li>([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})<\/li>/g)].map((m) => m[1]!);
}
