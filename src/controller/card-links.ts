// The connections one hypervisor holds to its cards, made here (the hypervisor may connect nowhere) and handed over
// on its channel. The controller keeps a descriptor of each: when the hypervisor asks for a new connection to a
// card, the one it had is shut down first, and shutdown ends the connection itself, so the hypervisor's copy ends
// too. A hypervisor therefore holds at most one live connection per card however often it asks: it cannot use up
// a card's ports or the network's addresses. A connection to a card that must first hear what it serves (a network
// card: the port's lease) gets those bytes here, before the hypervisor ever holds it.
import * as libc from '../sys/libc.js';

/** How long a launch waits for a card that is being restarted. */
const CARD_WAIT_MS = 5000;

export class CardLinks {
  private readonly held = new Map<string, number>();

  /** `sockets`: each card's name on the channel and its vhost-user socket; `greetings`: what begins a card's connections. */
  constructor(readonly sockets: ReadonlyMap<string, string>, private readonly greetings: ReadonlyMap<string, Uint8Array> = new Map()) {}

  /**
   * Ends the connection to `card` the hypervisor had, if any, and makes a new one: a descriptor of it to hand over,
   * which the caller closes once sent (it is not read here). Throws a SysError (ECONNREFUSED, ENOENT, ...) when the
   * card takes none now.
   */
  renew(card: string): number {
    const socket = this.sockets.get(card);
    if (socket === undefined) throw new Error(`no card ${card} is attached to this instance`);
    this.cut(card);
    const fd = libc.connectUnix(socket);
    this.held.set(card, fd);
    const greeting = this.greetings.get(card);
    // A fresh connection's buffer takes these few bytes whole.
    if (greeting && libc.writeSome(fd, greeting) !== greeting.length) {
      this.cut(card);
      throw new Error(`the ${card} card took less than its connection's first ${greeting.length} bytes`);
    }
    return libc.dup(fd);
  }

  /** renew(), trying again while the card is being restarted (its socket refused, not there yet, or its queue full). */
  async renewWaiting(card: string): Promise<number> {
    const deadline = Date.now() + CARD_WAIT_MS;
    for (;;) {
      try {
        return this.renew(card);
      } catch (e) {
        const code = (e as libc.SysError).code;
        if (Date.now() > deadline || !['ECONNREFUSED', 'ENOENT', 'EAGAIN'].includes(code)) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Ends every connection (the hypervisor is gone). */
  close(): void {
    for (const card of [...this.held.keys()]) this.cut(card);
  }

  private cut(card: string): void {
    const fd = this.held.get(card);
    if (fd === undefined) return;
    this.held.delete(card);
    libc.shutdown(fd, libc.SHUT_RDWR);
    libc.close(fd);
  }
}
