// How a hypervisor reaches a card. Run by hand (`azote run --volume`), it connects to the card's socket itself; run
// by the controller, it never connects anywhere: the controller makes each connection and hands it over on the
// hypervisor's channel, the first before the launch and a new one whenever the hypervisor asks (after the card was
// restarted).
import * as libc from '../sys/libc.js';
import { ProtocolError } from '../vhost-user/messages.js';

export interface CardLink {
  /** How messages name the card: its socket, or what the controller calls it. */
  readonly name: string;
  /** A new connection to the card (a connected Unix stream socket); throws when there is none to be had yet. */
  connect(): number;
}

/** A card this process connects to itself, at its socket's path. */
export function cardAtPath(path: string): CardLink {
  return {
    name: path,
    connect: () => {
      try {
        return libc.connectUnix(path);
      } catch (e) {
        throw new ProtocolError(`cannot connect to ${path}: ${(e as Error).message} (is the card running?)`);
      }
    },
  };
}

/** A card whose connections someone else makes: given ones are used in turn; when none is left, one is asked for. */
export class HandedCardLink implements CardLink {
  private readonly given: number[] = [];
  private asked = false;

  constructor(readonly name: string, private readonly ask: () => void) {}

  give(fd: number): void {
    this.given.push(fd);
    this.asked = false;
  }

  /** Nothing came back for the last request (the card is not back yet): the next connect() asks again. */
  refused(): void {
    this.asked = false;
  }

  connect(): number {
    const fd = this.given.shift();
    if (fd !== undefined) return fd;
    if (!this.asked) {
      this.asked = true;
      this.ask();
    }
    throw new ProtocolError(`no connection to ${this.name} yet (one was asked for)`);
  }
}
