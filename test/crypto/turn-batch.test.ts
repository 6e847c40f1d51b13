/** turnBatched: calls of one turn run together, each caller gets its own result or error. */
import { expect, test } from "bun:test";
import { turnBatched } from "../../src/crypto/turn-batch.ts";

test("the calls of one turn run together, after the turn, in order", async () => {
  const ran: number[] = [];
  const double = turnBatched((x: number) => {
    ran.push(x);
    return x * 2;
  });
  const ps = [1, 2, 3].map((x) => double(x));
  expect(ran).toEqual([]); // nothing runs inside the caller's turn
  expect(await Promise.all(ps)).toEqual([2, 4, 6]);
  expect(ran).toEqual([1, 2, 3]);
  // A later turn is a new batch.
  expect(await double(5)).toBe(10);
  expect(ran).toEqual([1, 2, 3, 5]);
});

test("an error reaches only its own caller", async () => {
  const f = turnBatched((x: number) => {
    if (x === 2) throw new Error("bad input 2");
    return x;
  });
  const [a, b, c] = await Promise.allSettled([f(1), f(2), f(3)]);
  expect(a).toEqual({ status: "fulfilled", value: 1 });
  expect(b.status).toBe("rejected");
  expect((b as PromiseRejectedResult).reason.message).toBe("bad input 2");
  expect(c).toEqual({ status: "fulfilled", value: 3 });
});

test("calls queued while a batch runs go to the next batch", async () => {
  const order: string[] = [];
  let inner: Promise<string> | undefined;
  const f = turnBatched((x: string): string => {
    order.push(x);
    if (x === "a") inner = f("b");
    return x;
  });
  expect(await f("a")).toBe("a");
  expect(await inner).toBe("b");
  expect(order).toEqual(["a", "b"]);
});
