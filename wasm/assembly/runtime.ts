// Scratch memory shared by all exports of the core.
// JS copies inputs into the scratch area, calls an export with pointers into it
// and reads outputs back. Calls are synchronous, so one area is enough.
// Nothing here allocates on a managed heap: the scratch base sits above all
// static data (`__heap_base`) and memory only grows.

const PAGE: i32 = 65536;

/** Fixed, 16-byte aligned start of the scratch area. */
// @ts-ignore: __heap_base is provided by the compiler
const SCRATCH_BASE: usize = (__heap_base + 15) & ~<usize>15;

/**
 * Ensures memory holds at least `size` bytes from the scratch base and returns
 * the base (0 when the memory cannot grow that far).
 */
export function scratch(size: i32): usize {
  if (size < 0) return 0;
  const end: u64 = <u64>SCRATCH_BASE + <u64>size;
  const have: u64 = <u64>memory.size() * <u64>PAGE;
  if (end > have) {
    const need = <i32>((end - have + <u64>(PAGE - 1)) / <u64>PAGE);
    if (memory.grow(need) < 0) return 0;
  }
  return SCRATCH_BASE;
}
