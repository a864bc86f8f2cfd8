// Each VPC is a network of its own: one network card (a switch process with its own socket) per VPC, started with
// the VPC's first instance and supervised as every card is (restarted if it dies; its instances ask for a new
// connection, and the controller gives each its lease again). A frame can so never pass between two VPCs, even two
// with the same CIDR in two accounts: they share no switch, no process and no socket, which a tag per port in one
// shared card would only promise as long as every path through that card honoured it (and a card that one VPC's
// guest crashes or keeps busy would stall every VPC). Each card runs in its own jail (card-process.ts) with its
// listening socket and nothing else of the host: no file, no network of its own.
// The host reaches a VPC through an uplink: a TAP device made here (`azvpcN`) holding the VPC's first address (the
// default subnet's gateway, as the card's DHCP names it) with the VPC's prefix, handed to the card. Only a VPC whose
// CIDR overlaps no route of the host's (and so no other VPC's uplink) gets one: the host can route to one network
// per address. The others' instances reach each other, not the host; the log says which VPC got none, and why.
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../base/log.js';
import { errorMessage } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { openTap, setHardwareAddress, setInterfaceAddress } from '../sys/tap.js';
import {
  gatewayMac, ipBytes, ipToString, maskBytes, parseSubnet, subnetRange, type Ipv4Subnet,
} from '../virtio/net-addressing.js';
import { CardProcess, FIRST_CARD_FD, type CardJail } from './card-process.js';
import type { PidFiles } from './pid-files.js';

/** A VPC as its card serves it. */
export interface VpcNetwork {
  readonly id: string;
  readonly cidr: string;
}

interface VpcCard {
  readonly card: Promise<CardProcess>;
  /** The uplink TAP (the controller's copy, kept across the card's restarts), if the VPC has one. */
  readonly uplink: { readonly fd: number; readonly name: string } | undefined;
}

/** The host's IPv4 routes (but the default one) as subnets, from /proc/net/route (little-endian hex columns). */
export function hostRoutes(table = readFileSync('/proc/net/route', 'utf8')): Array<{ iface: string; network: number; prefix: number }> {
  const le = (hex: string): number => {
    const v = parseInt(hex, 16);
    return (((v & 0xff) << 24) | ((v >>> 8 & 0xff) << 16) | ((v >>> 16 & 0xff) << 8) | (v >>> 24)) >>> 0;
  };
  return table.trim().split('\n').slice(1).map((line) => line.trim().split(/\s+/)).filter((f) => f.length >= 8)
    .map((f) => {
      const mask = le(f[7] ?? '0');
      let prefix = 0;
      while (prefix < 32 && (mask >>> (31 - prefix)) & 1) prefix++;
      return { iface: f[0] ?? '', network: le(f[1] ?? '0'), prefix };
    }).filter((r) => r.prefix > 0);
}

const overlaps = (a: Ipv4Subnet, b: { network: number; prefix: number }): boolean => {
  const p = Math.min(a.prefix, b.prefix);
  const size = 2 ** (32 - p);
  return Math.floor(a.network / size) === Math.floor(b.network / size);
};

export class VpcNetworks {
  private readonly cards = new Map<string, VpcCard>();
  /** Cards get short socket names (a Unix socket's path has at most 107 bytes), numbered as they start. */
  private started = 0;
  private closed = false;

  /**
   * `admit` verifies and measures the card's code and gives its files and entry (before each start and restart);
   * `uplinks`: whether VPCs get an uplink to the host where their CIDR allows.
   */
  constructor(private readonly dir: string, private readonly admit: () => { dir: string; entryPath: string },
    private readonly jail: CardJail, private readonly pids: PidFiles, private readonly uplinks: boolean, private readonly log: Logger) {}

  /** The VPC's network card, started now if it is not running yet. */
  async cardOf(vpc: VpcNetwork): Promise<CardProcess> {
    if (this.closed) throw new Error('the host is shutting down');
    let entry = this.cards.get(vpc.id);
    if (!entry) {
      const subnet = parseSubnet(vpc.cidr);
      if (!subnet) throw new Error(`VPC ${vpc.id}'s CIDR ${vpc.cidr} is not one a network card serves (/8 to /30)`);
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const n = ++this.started;
      const socket = path.join(this.dir, `net-${n}.sock`);
      const uplink = this.uplinks ? this.makeUplink(vpc, subnet) : undefined;
      const card = CardProcess.start({
        name: `VPC ${vpc.id}'s network`, group: `card-net-${n}`, admit: this.admit, sockets: [socket], files: [], jail: this.jail,
        inherited: uplink ? [uplink.fd] : [],
        args: ['--socket', socket, '--listen-fd', String(FIRST_CARD_FD), '--subnet', vpc.cidr,
          ...(uplink ? ['--uplink-fd', String(FIRST_CARD_FD + 1)] : [])],
      }, this.pids, this.log);
      entry = { card, uplink };
      this.cards.set(vpc.id, entry);
      // A card that did not start is forgotten (with its uplink): the VPC's next launch tries again.
      const starting = entry;
      card.catch(() => {
        if (this.cards.get(vpc.id) !== starting) return;
        this.cards.delete(vpc.id);
        if (starting.uplink) libc.close(starting.uplink.fd);
      });
      this.log.info('a VPC\'s network card is starting', { vpc: vpc.id, cidr: vpc.cidr, socket, uplink: uplink?.name ?? 'none' });
    }
    return entry.card;
  }

  /** The uplink TAP of a VPC whose CIDR overlaps none of the host's routes, or undefined (logged) for any other. */
  private makeUplink(vpc: VpcNetwork, subnet: Ipv4Subnet): { fd: number; name: string } | undefined {
    const clash = hostRoutes().find((r) => overlaps(subnet, r));
    if (clash) {
      this.log.warn('a VPC has no uplink to the host: its CIDR overlaps a route the host has', {
        vpc: vpc.id, cidr: vpc.cidr, route: `${ipToString(clash.network)}/${clash.prefix} dev ${clash.iface}`,
        fix: 'create a VPC whose CIDR the host does not route to reach its instances from the host',
      });
      return undefined;
    }
    let tap: { fd: number; name: string } | undefined;
    try {
      tap = openTap('azvpc%d');
      setHardwareAddress(tap.name, gatewayMac(subnet));
      setInterfaceAddress(tap.name, ipBytes(subnetRange(subnet).gateway), maskBytes(subnet.prefix));
      return tap;
    } catch (e) {
      if (tap) libc.close(tap.fd);
      this.log.warn('a VPC has no uplink to the host: its TAP device could not be made', { vpc: vpc.id, why: errorMessage(e) });
      return undefined;
    }
  }

  /** Stops every VPC's card (once the instances are gone) and removes the uplinks. */
  async close(): Promise<void> {
    this.closed = true;
    const entries = [...this.cards.values()];
    this.cards.clear();
    const cards = await Promise.allSettled(entries.map((e) => e.card));
    for (const c of cards) if (c.status === 'fulfilled') c.value.stop();
    for (const e of entries) if (e.uplink) libc.close(e.uplink.fd);
  }
}
