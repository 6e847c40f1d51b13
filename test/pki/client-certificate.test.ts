/**
 * The suite CA's client certificates for services (URI SAN, clientAuth only) and their
 * renewal in place (`RenewingTlsMaterial`), with an injected clock.
 */
import { expect, test } from "bun:test";
import { createSuiteCa, issueLeaf, loadOrCreateTlsMaterial, RenewingTlsMaterial, sansOf, x509, type KeyValueStore, type Sealer } from "../../src/pki/index.ts";

const DAY_MS = 86_400_000;

class MemoryStore implements KeyValueStore {
  readonly items = new Map<string, Uint8Array>();
  async get(name: string) {
    return this.items.get(name);
  }
  async put(name: string, value: Uint8Array) {
    this.items.set(name, value);
  }
}
const plainSealer: Sealer = { seal: async (p) => p.slice(), open: async (c) => c.slice() };

test("a client leaf carries the URI SAN and clientAuth alone; a server leaf keeps both EKUs", async () => {
  const ca = await createSuiteCa();
  const client = await issueLeaf(ca, { serviceName: "sm-kms", dnsNames: [], ipAddresses: [], uris: ["spiffe://cryptoutil/sm-kms"], usage: "client" });
  expect(sansOf(client.cert)).toEqual({ dnsNames: [], ipAddresses: [], uris: ["spiffe://cryptoutil/sm-kms"] });
  expect(client.cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
  const server = await issueLeaf(ca, { serviceName: "sm-kms", dnsNames: ["localhost"], ipAddresses: [] });
  expect(server.cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
  expect(sansOf(server.cert)).toEqual({ dnsNames: ["localhost"], ipAddresses: [] });
  await expect(issueLeaf(ca, { serviceName: "x", dnsNames: [], ipAddresses: [], uris: ["not a uri"] })).rejects.toThrow("not a valid URI name");
});

test("renews only once less than a third of the validity remains, and stores what it issued", async () => {
  const ca = await createSuiteCa();
  const store = new MemoryStore();
  let now = new Date();
  const load = async (at: Date) =>
    (await loadOrCreateTlsMaterial({ store, sealer: plainSealer, serviceName: "jose-ja", sans: { dnsNames: [], ipAddresses: [], uris: ["spiffe://cryptoutil/jose-ja"] }, label: "client", usage: "client", validityDays: 3, suiteCa: { ca }, now: at })).material;
  const renewed: string[] = [];
  const first = await load(now);
  const certs = new RenewingTlsMaterial(first, { reload: load, clock: () => now, onRenew: (m) => renewed.push(m.leaf.serialNumber) });
  now = new Date(now.getTime() + 1.9 * DAY_MS); // 1.1 of 3 days remain
  expect(await certs.renewIfDue()).toBe(false);
  now = new Date(now.getTime() + 0.2 * DAY_MS); // 0.9 remain
  expect(await certs.renewIfDue()).toBe(true);
  expect(certs.current.leaf.serialNumber).not.toBe(first.leaf.serialNumber);
  expect(renewed).toEqual([certs.current.leaf.serialNumber]);
  // A restart at the same time loads the renewed certificate instead of issuing another.
  expect((await load(now)).leaf.serialNumber).toBe(certs.current.leaf.serialNumber);
  expect(await certs.renewIfDue()).toBe(false);
});
