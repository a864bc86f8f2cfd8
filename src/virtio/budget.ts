// Per-turn budgets for queue work. A guest that adds chains as fast as the device takes them would otherwise keep the
// thread that serves every other queue (of its VM, or of every VM on a card) busy for ever: a turn serves at most
// QUEUE_BUDGET chains of a queue, and the runner gives what is left another turn after the other work that is ready.
import type { DescriptorChain, SplitQueue } from './split-queue.js';

/** Chains served from one queue per turn. */
export const QUEUE_BUDGET = 64;

/** The queues of a data path whose last turn ended at its budget with chains left. */
export class Backlog {
  private readonly left = new Set<number>();

  /**
   * Serves up to QUEUE_BUDGET chains of queue `index`: `each` does one and returns the bytes it wrote into it.
   * Returns whether the driver wants an interrupt.
   */
  serve(index: number, queue: SplitQueue, each: (chain: DescriptorChain) => number): boolean {
    this.left.delete(index);
    let interrupt = false;
    for (let n = 0; n < QUEUE_BUDGET; n++) {
      const chain = queue.pop();
      if (!chain) return interrupt;
      interrupt = queue.push(chain.head, each(chain)) || interrupt;
    }
    if (queue.pending() > 0) this.left.add(index);
    return interrupt;
  }

  has(index: number): boolean {
    return this.left.has(index);
  }
}
