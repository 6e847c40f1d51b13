// Builds the constant-time crypto core (wasm/assembly) with AssemblyScript into
// wasm/build/core.wasm (scalar) and wasm/build/core-simd.wasm (SIMD enabled).
// Runs on `npm install` (postinstall): offline, a few seconds.
import asc from "assemblyscript/asc";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "wasm", "assembly", "index.ts");
const outDir = join(root, "wasm", "build");
mkdirSync(outDir, { recursive: true });

const common = [
  entry,
  "-O3",
  "--runtime", "stub",
  "--noAssert",
  "--use", "abort=",
  "--initialMemory", "4", // static data (EC comb tables, AES constants) needs ~2 pages; leave room
];

const variants = [
  { file: "core.wasm", flags: [] },
  { file: "core-simd.wasm", flags: ["--enable", "simd"] },
];

let failed = false;
for (const v of variants) {
  const started = Date.now();
  const { error, stderr } = await asc.main([...common, ...v.flags, "--outFile", join(outDir, v.file)]);
  if (error) {
    failed = true;
    console.error(`build-wasm: ${v.file} failed: ${error.message}`);
    console.error(stderr.toString());
  } else {
    console.log(`build-wasm: ${v.file} built in ${Date.now() - started} ms`);
  }
}
if (failed) process.exit(1);
