// A descriptor chain's buffers as one byte stream: requests may be split across descriptors in any way (with
// VERSION_1 the device must not assume a layout), so devices read and write them by offset into the stream.
import type { GuestBuffer } from './split-queue.js';
import type { DeviceMemory } from './device.js';

/** The guest ranges covering `length` bytes of `buffers` from byte `skip` on (fewer when the buffers end first). */
export function* ranges(buffers: readonly GuestBuffer[], skip: number, length: number): Generator<GuestBuffer> {
  for (const b of buffers) {
    if (length === 0) return;
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const len = Math.min(b.len - skip, length);
    yield { addr: b.addr + skip, len };
    length -= len;
    skip = 0;
  }
}

/** A copy of `length` bytes of the stream from `skip` (zeros where the buffers end first). */
export function gather(mem: DeviceMemory, buffers: readonly GuestBuffer[], skip: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const r of ranges(buffers, skip, length)) {
    out.set(mem.slice(r.addr, r.len), at);
    at += r.len;
  }
  return out;
}

/** Writes `data` into the stream from `skip` (as much as the buffers hold). */
export function scatter(mem: DeviceMemory, buffers: readonly GuestBuffer[], skip: number, data: Uint8Array): void {
  let at = 0;
  for (const r of ranges(buffers, skip, data.length)) {
    mem.write(r.addr, data.subarray(at, at + r.len));
    at += r.len;
  }
}
