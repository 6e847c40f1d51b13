/**
 * Headless Chromium (Debian `chromium`, driven by playwright-core) for tests of what a person
 * sees, trusting exactly the suite's server keys: certificate verification stays on for
 * everything else.
 */
import { existsSync } from "node:fs";
import { connect } from "node:tls";
import { X509Certificate } from "node:crypto";
import type { Browser } from "playwright-core";

/** SHA-256 of the TLS public key (SPKI), base64, of the servers on these loopback ports. */
export async function spkiPins(ports: number[], ca: string): Promise<string[]> {
  const pins: string[] = [];
  for (const port of ports) {
    const der = await new Promise<Buffer>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, ca, servername: undefined }, () => {
        resolve(s.getPeerCertificate().raw);
        s.end();
      });
      s.once("error", reject);
    });
    const spki = new X509Certificate(der).publicKey.export({ type: "spki", format: "der" });
    pins.push(Buffer.from(await crypto.subtle.digest("SHA-256", spki)).toString("base64"));
  }
  return pins;
}

/** The Debian package's binary (or CHROMIUM_PATH); undefined, with a printed reason, when missing outside CI. */
export function chromiumPath(): string | undefined {
  const exe = process.env.CHROMIUM_PATH ?? Bun.which("chromium") ?? Bun.which("chromium-browser");
  if (exe && existsSync(exe)) return exe;
  if (process.env.CI === "true") throw new Error(`the Debian package chromium is required (missing ${exe ?? "chromium on PATH"})`);
  console.warn("skipping the Chromium test: chromium is not installed (apt-get install -y chromium, or set CHROMIUM_PATH)");
  return undefined;
}

export async function launchChromium(exe: string, pins: string[]): Promise<Browser> {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: exe,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--ignore-certificate-errors-spki-list=${pins.join(",")}`,
    ],
  });
}
