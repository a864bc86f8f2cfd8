// Each account's instances are on a network of their own: one network card (a switch process with its own socket)
// per account, started with the account's first instance and supervised as every card is (restarted if it dies;
// its instances ask for a new connection and claim their addresses back). A frame can so never pass between two
// accounts' instances: they share no switch, no process and no socket, which a tag per port in one shared card would
// only promise as long as every path through that card honoured it (and a card that one account's guest crashes or
// keeps busy would stall every account). Every account's network has the host's subnet, as each AWS account has the
// same default VPC: two accounts' instances may have the same address, which is right since they never meet. For the
// same reason no account's network has an uplink to the host: the host could route to one of several networks on one
// subnet only. The VPC work is to refine this into a switch per VPC, and to route to it. Each card runs in its own
// jail (card-process.ts) with its listening socket and nothing else of the host: no file, no network.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../base/log.js';
import { CardProcess, FIRST_CARD_FD, type CardJail } from './card-process.js';
import type { PidFiles } from './pid-files.js';

export class AccountNetworks {
  /** Each account's card, or its start under way (so that two launches at once start one card). */
  private readonly cards = new Map<string, Promise<CardProcess>>();
  /** Cards get short socket names (a Unix socket's path has at most 107 bytes), numbered as they start. */
  private started = 0;
  private closed = false;

  /** `admit` verifies and measures the card's code and gives its files and entry (before each start and restart). */
  constructor(private readonly dir: string, private readonly subnet: string, private readonly admit: () => { dir: string; entryPath: string },
    private readonly jail: CardJail, private readonly pids: PidFiles, private readonly log: Logger) {}

  /** `account`'s network card, started now if it is not running yet. */
  async cardOf(account: string): Promise<CardProcess> {
    if (this.closed) throw new Error('the host is shutting down');
    let card = this.cards.get(account);
    if (!card) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const n = ++this.started;
      const socket = path.join(this.dir, `net-${n}.sock`);
      card = CardProcess.start({
        name: `account ${account}'s network`, group: `card-net-${n}`, admit: this.admit, sockets: [socket], files: [], jail: this.jail,
        args: ['--socket', socket, '--listen-fd', String(FIRST_CARD_FD), '--subnet', this.subnet],
      }, this.pids, this.log);
      this.cards.set(account, card);
      // A card that did not start is forgotten: the account's next launch tries again.
      const starting = card;
      starting.catch(() => {
        if (this.cards.get(account) === starting) this.cards.delete(account);
      });
      this.log.info('an account\'s network card is starting', { account, socket });
    }
    return card;
  }

  /** Stops every account's card (once the instances are gone). */
  async close(): Promise<void> {
    this.closed = true;
    const cards = await Promise.allSettled(this.cards.values());
    for (const c of cards) if (c.status === 'fulfilled') c.value.stop();
    this.cards.clear();
  }
}
