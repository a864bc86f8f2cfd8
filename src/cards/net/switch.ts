// The network card's learning switch. Each VM attachment is a port with the MAC the card assigned it: frames from
// it must carry that source address (anything else is spoofing and dropped), and frames to that address go to it
// alone. The uplink (a TAP to the host) may carry any source address but a VM's. Other addresses are learned from
// the frames' sources and forgotten after AGEING_MS; broadcast, multicast and unknown destinations are flooded to
// every port but the one the frame came from.

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

export interface SwitchCounters {
  forwarded: number;
  flooded: number;
  /** Frames whose source was not their port's MAC (or, from the uplink, a VM's). */
  spoofed: number;
  /** Frames too short to be Ethernet, or from a multicast source. */
  malformed: number;
}

/** A MAC as a number (48 bits fit a double exactly). */
export function macKey(bytes: Uint8Array, offset = 0): number {
  let k = 0;
  for (let i = 0; i < 6; i++) k = k * 256 + (bytes[offset + i] ?? 0);
  return k;
}

const isGroup = (bytes: Uint8Array, offset: number): boolean => ((bytes[offset] ?? 0) & 1) === 1;

export class VirtualSwitch {
  readonly counters: SwitchCounters = { forwarded: 0, flooded: 0, spoofed: 0, malformed: 0 };
  private readonly ports = new Set<SwitchPort>();
  /** VM ports by their assigned MAC. */
  private readonly assigned = new Map<number, SwitchPort>();
  /** Addresses seen behind the uplink (or any port without an assigned MAC). */
  private readonly learned = new Map<number, { port: SwitchPort; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  attach(port: SwitchPort): void {
    if (port.mac) {
      const key = macKey(port.mac);
      if (this.assigned.has(key)) throw new Error(`MAC ${key.toString(16)} is already assigned to a port`);
      this.assigned.set(key, port);
      this.learned.delete(key);
    }
    this.ports.add(port);
  }

  detach(port: SwitchPort): void {
    this.ports.delete(port);
    if (port.mac && this.assigned.get(macKey(port.mac)) === port) this.assigned.delete(macKey(port.mac));
    for (const [key, entry] of this.learned) if (entry.port === port) this.learned.delete(key);
  }

  get portCount(): number {
    return this.ports.size;
  }

  /** Switches one frame that arrived on `from`. */
  forward(from: SwitchPort, frame: Uint8Array): void {
    if (frame.length < ETH_HEADER || isGroup(frame, 6)) {
      this.counters.malformed++;
      return;
    }
    const source = macKey(frame, 6);
    if (from.mac ? source !== macKey(from.mac) : this.assigned.has(source)) {
      this.counters.spoofed++;
      return;
    }
    if (!from.mac) this.learned.set(source, { port: from, at: this.now() });
    const to = isGroup(frame, 0) ? undefined : this.lookup(macKey(frame, 0));
    if (to) {
      if (to !== from) {
        this.counters.forwarded++;
        to.deliver(frame);
      }
      return;
    }
    this.counters.flooded++;
    for (const port of this.ports) if (port !== from) port.deliver(frame);
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
