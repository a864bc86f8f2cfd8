// The network card's learning switch. Each VM attachment is a port with the MAC the card assigned it, which also
// names its IPv4 address (virtio/net-addressing.ts). A VM port's frames must carry that MAC as Ethernet source, and
// may only be ARP or IPv4 that speak for that address: an ARP sender or IPv4 source that is not the port's own would
// let a guest answer for another's address or send with its source, so such frames are dropped (guest-frame.ts says
// what is checked and why). Frames to a port's MAC go to it alone. The uplink (a TAP to the host) may carry any
// source address but a VM's. Other addresses are learned from the frames' sources and forgotten after AGEING_MS;
// broadcast, multicast and unknown destinations are flooded to every port but the one the frame came from.
// On a network with a gateway, DHCP from a VM is the card's to answer (dhcp.ts), never switched: no other guest
// and not the host sees it, and a VM's datagram from the DHCP server's port (a rogue server) is dropped.
import { addressFromMac } from '../../virtio/net-addressing.js';
import { answerDhcp, isFromDhcpServer, isToDhcpServer, type DhcpLease } from './dhcp.js';
import { checkGuestFrame } from './guest-frame.js';

/** An Ethernet header: destination, source, type. */
export const ETH_HEADER = 14;
/** How long a learned address is kept without a frame from it (IEEE 802.1D's default). */
export const AGEING_MS = 300_000;

export interface SwitchPort {
  readonly name: string;
  /** The MAC assigned to a VM's port; undefined for the uplink, which may carry any other source. */
  readonly mac: Uint8Array | undefined;
  /** Takes a frame (the switch's buffer: copy what is kept). */
  deliver(frame: Uint8Array): void;
}

/** Why frames from a port were dropped, by reason. */
export interface SwitchDrops {
  /** The Ethernet source was not the port's MAC (or, from the uplink, a VM's). */
  spoofed: number;
  /** An ARP sender (hardware or protocol address) that is not the port's own. */
  spoofedArp: number;
  /** An IPv4 source that is not the port's own address (DHCP discovery from 0.0.0.0 excepted). */
  spoofedIp: number;
  /** 802.1Q / 802.1ad tagged frames from a VM: the network has no VLANs, and a tag would hide what is inside. */
  tagged: number;
  /** From a VM, a protocol other than ARP and IPv4: the network assigns nothing else, so nothing else is checked. */
  otherProtocol: number;
  /** Frames too short to be Ethernet (or the ARP or IPv4 they say they carry), or from a multicast source. */
  malformed: number;
  /** From a VM, UDP from the DHCP server's port: a guest answering others' DHCP. */
  rogueDhcp: number;
}

export interface SwitchCounters extends SwitchDrops {
  forwarded: number;
  flooded: number;
  /** DHCP messages from VMs, answered or not (a malformed one gets no answer). */
  dhcp: number;
}

const noDrops = (): SwitchDrops => ({ spoofed: 0, spoofedArp: 0, spoofedIp: 0, tagged: 0, otherProtocol: 0, malformed: 0, rogueDhcp: 0 });

/** What the card's DHCP server tells every port, besides the port's own address. */
export type DhcpNetwork = Omit<DhcpLease, 'ip'>;

/** A MAC as a number (48 bits fit a double exactly). */
export function macKey(bytes: Uint8Array, offset = 0): number {
  let k = 0;
  for (let i = 0; i < 6; i++) k = k * 256 + (bytes[offset + i] ?? 0);
  return k;
}

const isGroup = (bytes: Uint8Array, offset: number): boolean => ((bytes[offset] ?? 0) & 1) === 1;

interface Attached {
  /** A VM port's address, as its MAC names it (undefined for the uplink, or a MAC that names none). */
  readonly ip: number | undefined;
  readonly drops: SwitchDrops;
}

export class VirtualSwitch {
  readonly counters: SwitchCounters = { forwarded: 0, flooded: 0, dhcp: 0, ...noDrops() };
  private readonly ports = new Map<SwitchPort, Attached>();
  /** VM ports by their assigned MAC. */
  private readonly assigned = new Map<number, SwitchPort>();
  /** Addresses seen behind the uplink (or any port without an assigned MAC). */
  private readonly learned = new Map<number, { port: SwitchPort; at: number }>();

  /** `network`: the gateway, mask and DNS server the card's DHCP gives; without it DHCP is switched as any frame. */
  constructor(private readonly now: () => number = Date.now, private readonly network?: DhcpNetwork) {}

  attach(port: SwitchPort): void {
    if (port.mac) {
      const key = macKey(port.mac);
      if (this.assigned.has(key)) throw new Error(`MAC ${key.toString(16)} is already assigned to a port`);
      this.assigned.set(key, port);
      this.learned.delete(key);
    }
    this.ports.set(port, { ip: port.mac ? addressFromMac(port.mac)?.address : undefined, drops: noDrops() });
  }

  /** Takes the port off the switch; returns what was dropped from it while attached (for its log). */
  detach(port: SwitchPort): SwitchDrops {
    const drops = this.ports.get(port)?.drops ?? noDrops();
    this.ports.delete(port);
    if (port.mac && this.assigned.get(macKey(port.mac)) === port) this.assigned.delete(macKey(port.mac));
    for (const [key, entry] of this.learned) if (entry.port === port) this.learned.delete(key);
    return drops;
  }

  get portCount(): number {
    return this.ports.size;
  }

  /** What was dropped from an attached port so far. */
  drops(port: SwitchPort): SwitchDrops | undefined {
    const d = this.ports.get(port)?.drops;
    return d && { ...d };
  }

  /** Switches one frame that arrived on `from`. */
  forward(from: SwitchPort, frame: Uint8Array): void {
    const state = this.ports.get(from);
    if (!state) return;
    const verdict = this.check(from, state, frame);
    if (verdict !== 'ok') {
      this.counters[verdict]++;
      state.drops[verdict]++;
      return;
    }
    if (from.mac && this.network) {
      if (isToDhcpServer(frame)) {
        this.counters.dhcp++;
        const reply = state.ip === undefined ? undefined : answerDhcp(frame, from.mac, { ...this.network, ip: state.ip });
        if (reply) from.deliver(reply);
        return;
      }
      if (isFromDhcpServer(frame)) {
        this.counters.rogueDhcp++;
        state.drops.rogueDhcp++;
        return;
      }
    }
    if (!from.mac) this.learned.set(macKey(frame, 6), { port: from, at: this.now() });
    const to = isGroup(frame, 0) ? undefined : this.lookup(macKey(frame, 0));
    if (to) {
      if (to !== from) {
        this.counters.forwarded++;
        to.deliver(frame);
      }
      return;
    }
    this.counters.flooded++;
    for (const port of this.ports.keys()) if (port !== from) port.deliver(frame);
  }

  private check(from: SwitchPort, state: Attached, frame: Uint8Array): 'ok' | keyof SwitchDrops {
    if (frame.length < ETH_HEADER || isGroup(frame, 6)) return 'malformed';
    const source = macKey(frame, 6);
    if (!from.mac) return this.assigned.has(source) ? 'spoofed' : 'ok';
    if (source !== macKey(from.mac)) return 'spoofed';
    // A VM port whose MAC names no address has none to speak for: it may send no ARP or IPv4 at all.
    return checkGuestFrame(frame, from.mac, state.ip ?? -1);
  }

  private lookup(destination: number): SwitchPort | undefined {
    const vm = this.assigned.get(destination);
    if (vm) return vm;
    const entry = this.learned.get(destination);
    if (!entry) return undefined;
    if (this.now() - entry.at > AGEING_MS) {
      this.learned.delete(destination);
      return undefined;
    }
    return entry.port;
  }
}
