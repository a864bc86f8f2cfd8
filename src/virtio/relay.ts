// The data path of a device served elsewhere (a card, over vhost-user): its queues are not touched here. The card
// reports used buffers on eventfds; each becomes the device's interrupt (the runner sets INT_VRING and raises the
// IRQ), which a virtio-mmio guest needs because the card cannot set the transport's InterruptStatus itself.
import * as libc from '../sys/libc.js';
import type { DataPath } from './device.js';

export class InterruptRelay implements DataPath {
  constructor(private readonly callFds: readonly number[]) {}

  process(): boolean {
    return false;
  }

  watched(): readonly number[] {
    return this.callFds;
  }

  readable(fd: number): boolean {
    return libc.eventfdRead(fd) > 0n;
  }
}
