// The network card's learning switch. Each VM attachment is a port with its MAC and its lease (the address the card
// gives it by DHCP, with the gateway). A VM port's frames must carry that MAC as Ethernet source, and may only be ARP
// or IPv4 that speak for that address: an ARP sender or IPv4 source that is not the port's own would
// let a guest answer for another's address or send with its source, so such frames are dropped (guest-frame.ts says
// what is checked and why). Frames to a port's MAC go to it alone. The uplink (a TAP to the host) may carry any
// source address but a VM's. Other addresses are learned from the frames' sources and forgotten after AGEING_MS;
// broadcast, multicast and unknown destinations are flooded to every port but the one the frame came from.
// For a port with a lease, DHCP and ARP requests for its gateway are the card's to answer (dhcp.ts, arp.ts), never
// switched: no other guest and not the host sees them, and a VM's datagram from the DHCP server's port (a rogue
// server) is dropped. The card is also the router between a VPC's subnets: IPv4 a VM sends to its gateway's MAC for
// another VM's address goes to that VM (from the gateway's MAC, its TTL one less), as a VPC's implicit router
// routes; anything else sent to the gateway goes on to the uplink (the host holds the gateway's MAC there).
import { arpReply, isArpRequestFor } from './arp.js';
import { answerDhcp, checksum, isFromDhcpServer, isToDhcpServer, type DhcpLease } from './dhcp.js';
import { checkGuestFrame } from './guest-frame.js';

/** An Ethernet header: destination, source, type. */
export const ETH_HEADER = 14;
/** How long a learned address is kept without a frame from it (IEEE 802.1D's default). */
export const AGEING_MS = 300_000;

export interface SwitchPort {
  readonly name: string;
  /** The MAC of a VM's port; undefined for the uplink, which may carry any other source. */
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
  /** ARP requests from VMs for their gateway, answered by the card. */
  gatewayArp: number;
  /** IPv4 routed from one VM to another through the gateway. */
  routed: number;
  /** IPv4 to be routed whose TTL ran out (dropped, as a router does; no ICMP is sent). */
  ttlExpired: number;
}

const noDrops = (): SwitchDrops => ({ spoofed: 0, spoofedArp: 0, spoofedIp: 0, tagged: 0, otherProtocol: 0, malformed: 0, rogueDhcp: 0 });


/** A MAC as a number (48 bits fit a double exactly). */
export function macKey(bytes: Uint8Array, offset = 0): number {
  let k = 0;
  for (let i = 0; i < 6; i++) k = k * 256 + (bytes[offset + i] ?? 0);
  return k;
}

const isGroup = (bytes: Uint8Array, offset: number): boolean => ((bytes[offset] ?? 0) & 1) === 1;

interface Attached {
  /** A VM port's lease (undefined for the uplink, or a VM port without an address). */
  readonly lease: DhcpLease | undefined;
  readonly drops: SwitchDrops;
}

export class VirtualSwitch {
  readonly counters: SwitchCounters = { forwarded: 0, flooded: 0, dhcp: 0, gatewayArp: 0, routed: 0, ttlExpired: 0, ...noDrops() };
  /** VM ports by their leased address. */
  private readonly byAddress = new Map<number, SwitchPort>();
  private readonly ports = new Map<SwitchPort, Attached>();
  /** VM ports by their assigned MAC. */
  private readonly assigned = new Map<number, SwitchPort>();
  /** Addresses seen behind the uplink (or any port without an assigned MAC). */
  private readonly learned = new Map<number, { port: SwitchPort; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** `lease`: a VM port's address (which alone it may speak for), given by DHCP with its subnet's gateway. */
  attach(port: SwitchPort, lease?: DhcpLease): void {
    if (port.mac) {
      const key = macKey(port.mac);
      if (this.assigned.has(key)) throw new Error(`MAC ${key.toString(16)} is already assigned to a port`);
      this.assigned.set(key, port);
      this.learned.delete(key);
    }
    this.ports.set(port, { lease: port.mac ? lease : undefined, drops: noDrops() });
    if (port.mac && lease) this.byAddress.set(lease.ip, port);
  }

  /** Takes the port off the switch; returns what was dropped from it while attached (for its log). */
  detach(port: SwitchPort): SwitchDrops {
    const state = this.ports.get(port);
    const drops = state?.drops ?? noDrops();
    this.ports.delete(port);
    if (state?.lease && this.byAddress.get(state.lease.ip) === port) this.byAddress.delete(state.lease.ip);
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
    const lease = state.lease;
    if (from.mac && lease) {
      if (isToDhcpServer(frame)) {
        this.counters.dhcp++;
        const reply = answerDhcp(frame, from.mac, lease);
        if (reply) from.deliver(reply);
        return;
      }
      if (isArpRequestFor(frame, lease.gateway)) {
        this.counters.gatewayArp++;
        from.deliver(arpReply(frame, lease.gateway, lease.gatewayMac));
        return;
      }
      if (isFromDhcpServer(frame)) {
        this.counters.rogueDhcp++;
        state.drops.rogueDhcp++;
        return;
      }
      if (macKey(frame, 0) === macKey(lease.gatewayMac)) {
        if (this.route(frame, lease.gatewayMac)) return;
        // For the host behind the gateway: the uplink's alone, never flooded to the VMs.
        this.counters.forwarded++;
        for (const port of this.ports.keys()) if (!port.mac) port.deliver(frame);
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

  /**
   * Routes IPv4 sent to the gateway to the VM holding its destination address, if one does: true if the frame was
   * the router's (delivered or dropped for its TTL). The frame passed the guest checks: its IPv4 header is whole.
   */
  private route(frame: Uint8Array, gatewayMac: Uint8Array): boolean {
    if (((frame[12] ?? 0) << 8 | (frame[13] ?? 0)) !== 0x0800) return false;
    const ip = ETH_HEADER;
    const destination = ((frame[ip + 16] ?? 0) * 2 ** 24) + ((frame[ip + 17] ?? 0) << 16) + ((frame[ip + 18] ?? 0) << 8) + (frame[ip + 19] ?? 0);
    const to = this.byAddress.get(destination);
    if (!to?.mac) return false;
    const ttl = frame[ip + 8] ?? 0;
    if (ttl <= 1) {
      this.counters.ttlExpired++;
      return true;
    }
    const out = frame.slice();
    out.set(to.mac.subarray(0, 6), 0);
    out.set(gatewayMac.subarray(0, 6), 6);
    out[ip + 8] = ttl - 1;
    const header = ((out[ip] ?? 0) & 0x0f) * 4;
    out[ip + 10] = 0;
    out[ip + 11] = 0;
    const sum = checksum(out.subarray(ip, ip + header));
    out[ip + 10] = sum >> 8;
    out[ip + 11] = sum & 0xff;
    this.counters.routed++;
    to.deliver(out);
    return true;
  }

  private check(from: SwitchPort, state: Attached, frame: Uint8Array): 'ok' | keyof SwitchDrops {
    if (frame.length < ETH_HEADER || isGroup(frame, 6)) return 'malformed';
    const source = macKey(frame, 6);
    if (!from.mac) return this.assigned.has(source) ? 'spoofed' : 'ok';
    if (source !== macKey(from.mac)) return 'spoofed';
    // A VM port without a lease has no address to speak for: it may send no ARP or IPv4 at all.
    return checkGuestFrame(frame, from.mac, state.lease?.ip ?? -1);
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
