// Frames through a TAP device's fd (opened IFF_TAP | IFF_NO_PI, non-blocking): one read or write per frame.
import * as libc from '../sys/libc.js';
import type { FrameBackend } from './net.js';

export class TapBackend implements FrameBackend {
  constructor(readonly fd: number) {}

  receive(into: Uint8Array): number {
    return Math.max(0, libc.readSome(this.fd, into));
  }

  send(frame: Uint8Array): boolean {
    // A TAP takes a whole frame or nothing; a full host queue (EAGAIN) drops it, as a congested link would.
    return libc.writeSome(this.fd, frame) === frame.length;
  }
}
