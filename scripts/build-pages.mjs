// Bundles the browser-side libraries that pages load from their own origin (no CDN, no inline
// script): sm-im's ML-KEM-768 (from @noble/post-quantum) into apps/sm-im/pages/build/ml-kem.js.
// Runs on `npm install` (postinstall) with the Bun that npm installed; offline, well under a second.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules", ".bin", process.platform === "win32" ? "bun.exe" : "bun");
const bundles = [{ entry: join(root, "apps", "sm-im", "pages", "ml-kem-entry.js"), out: join(root, "apps", "sm-im", "pages", "build", "ml-kem.js") }];

if (!existsSync(bun)) {
  console.log("build-pages: skipped, Bun is not installed in node_modules; sm-im's page offers no post-quantum hybrid");
  process.exit(0);
}
for (const b of bundles) {
  mkdirSync(dirname(b.out), { recursive: true });
  const r = spawnSync(bun, ["build", b.entry, "--format", "iife", "--minify", "--target", "browser", "--outfile", b.out], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) {
    console.error(`build-pages: bundling ${b.entry} failed`);
    process.exit(1);
  }
  console.log(`build-pages: ${b.out.slice(root.length + 1)} built`);
}
