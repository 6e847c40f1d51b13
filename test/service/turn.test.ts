/** turnBarrier: one shared wait per event-loop turn, opening after the turn's callbacks. */
import { expect, test } from "bun:test";
import { turnBarrier } from "../../src/service/turn.ts";

test("the waiters of one turn share one opening, after the turn; a later turn gets a new one", async () => {
  const next = turnBarrier();
  const a = next();
  const b = next();
  expect(a).toBe(b);
  const order: string[] = [];
  const waiting = Promise.all([a.then(() => order.push("a")), b.then(() => order.push("b"))]);
  order.push("sync");
  await Promise.resolve();
  expect(order).toEqual(["sync"]); // not opened by the microtask queue alone
  await waiting;
  expect(order).toEqual(["sync", "a", "b"]);
  const c = next();
  expect(c).not.toBe(a);
  await c;
});
