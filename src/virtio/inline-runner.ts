// Runs a data path on the caller's thread: a notification is served, turn after turn until no chain is left, before
// the register write returns (the notifying vCPU is the only one that waits). Used by the tests and fuzzers, and
// wherever a device has no thread of its own.
import { VirtqueueError, type QueueConfig } from './split-queue.js';
import type { DataPath, DataPathSpec, DeviceMemory, QueueRunner, RunnerEvents } from './device.js';
import { buildQueues, createDataPath } from './data-paths.js';

export class InlineRunner implements QueueRunner {
  private running: { path: DataPath; events: RunnerEvents } | undefined;

  constructor(private readonly mem: DeviceMemory, private readonly spec: DataPathSpec) {}

  /** The running data path, for tests that look at its counters. */
  get path(): DataPath | undefined {
    return this.running?.path;
  }

  start(queues: readonly (QueueConfig | undefined)[], features: bigint, events: RunnerEvents): void {
    this.running = { path: createDataPath(this.spec, this.mem, buildQueues(this.mem, queues), features), events };
  }

  notify(index: number): void {
    const r = this.running;
    if (!r) return;
    try {
      let interrupt = false;
      do interrupt = r.path.process(index) || interrupt; while (r.path.unfinished?.(index));
      if (interrupt) r.events.usedBuffers();
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.running = undefined;
      r.events.failed(`queue ${index}: ${e.message}`);
    }
  }

  stop(): void {
    this.running = undefined;
  }
}
