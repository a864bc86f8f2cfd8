// A guest as a card sees it, driven from a test: memory on a sealed memfd (as the hypervisor's) mapped here and
// shared with the card, rings the test writes with Driver, and a kick and a call eventfd per ring.
import * as libc from '../../src/sys/libc.js';
import type { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/device.js';
import type { QueueConfig } from '../../src/virtio/split-queue.js';
import { Driver, PlainMemory } from './virtio.js';

export class SharedGuest {
  readonly fd = libc.memfdCreate('azote-shared-guest', libc.MFD_ALLOW_SEALING);
  readonly mapping: libc.Mapping;
  readonly mem: PlainMemory;
  readonly drivers: Driver[];
  readonly kicks: number[];
  readonly calls: number[];

  /** `queues[i]` is ring i (all of the device's rings, in order). */
  constructor(readonly f: VhostUserFrontend, size: number, readonly queues: readonly QueueConfig[]) {
    libc.ftruncate(this.fd, size);
    libc.addSeals(this.fd, libc.F_SEAL_SHRINK | libc.F_SEAL_GROW | libc.F_SEAL_SEAL);
    this.mapping = libc.mmap(size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, this.fd, 0);
    this.mem = new PlainMemory(new Uint8Array(this.mapping.buffer));
    this.drivers = queues.map((q) => new Driver(this.mem, q));
    this.kicks = queues.map(() => libc.eventfd(0, libc.EFD_NONBLOCK));
    this.calls = queues.map(() => libc.eventfd(0, libc.EFD_NONBLOCK));
  }

  /** Gives the card the memory and every ring (VERSION_1 only: no indirect descriptors, no EVENT_IDX). */
  start(): void {
    const user = (gpa: number): bigint => this.mapping.address + BigInt(gpa);
    this.f.setFeatures(1n << VIRTIO_F_VERSION_1);
    this.f.setMemTable([{ guestAddr: 0n, size: BigInt(this.mapping.length), userAddr: user(0), mmapOffset: 0n }], [this.fd]);
    this.queues.forEach((q, index) => {
      this.f.setVringNum(index, q.size);
      this.f.setVringBase(index, 0);
      this.f.setVringAddr({ index, flags: 0, desc: user(q.descAddr), used: user(q.usedAddr), avail: user(q.availAddr), log: 0n });
      this.f.setVringCall(index, this.calls[index] ?? -1);
      this.f.setVringKick(index, this.kicks[index] ?? -1);
      this.f.setVringEnable(index, true);
    });
  }

  /** Offers the chain at `head` on ring `index` and notifies the card. */
  offer(index: number, head: number): void {
    this.drivers[index]?.offer(head);
    libc.eventfdSignal(this.kicks[index] ?? -1);
  }

  /** Ring `index`'s used index (chains the card returned, modulo 2^16). */
  used(index: number): number {
    const q = this.queues[index];
    return q ? this.mem.readU16(q.usedAddr + 2) : 0;
  }

  close(): void {
    this.f.close();
    libc.munmap(this.mapping);
    for (const fd of [this.fd, ...this.kicks, ...this.calls]) libc.close(fd);
  }
}
