// What the controller tells the network card about a port before the port's frontend speaks: its MAC and its
// address, with the subnet the address is in, the subnet's gateway and the VPC's DNS server. The controller makes
// every connection to a card it runs and writes this first, before handing the connection to the hypervisor (which
// may connect nowhere itself), so the card learns each port's address from the control plane and never from what a
// frontend claims. The card reads exactly LEASE_BYTES before any vhost-user message.
// Layout (network byte order): magic "AZL1" (0..3), MAC (4..9), prefix length (10), reserved 0 (11), address (12..15),
// gateway (16..19), DNS server (20..23).

export interface PortLease {
  readonly mac: Uint8Array;
  readonly ip: number;
  readonly prefix: number;
  readonly gateway: number;
  readonly dns: number;
}

export const LEASE_BYTES = 24;
const MAGIC = [0x41, 0x5a, 0x4c, 0x31];
const AT = { mac: 4, prefix: 10, reserved: 11, ip: 12, gateway: 16, dns: 20 } as const;

const u32 = (b: Uint8Array, at: number): number => (((b[at] ?? 0) << 24) >>> 0) + ((b[at + 1] ?? 0) << 16) + ((b[at + 2] ?? 0) << 8) + (b[at + 3] ?? 0);

function put32(b: Uint8Array, at: number, v: number): void {
  b.set([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff], at);
}

export function encodeLease(l: PortLease): Uint8Array {
  const b = new Uint8Array(LEASE_BYTES);
  b.set(MAGIC, 0);
  b.set(l.mac.subarray(0, 6), AT.mac);
  b[AT.prefix] = l.prefix;
  put32(b, AT.ip, l.ip);
  put32(b, AT.gateway, l.gateway);
  put32(b, AT.dns, l.dns);
  return b;
}

/**
 * The lease in `b`, or why it is none: a wrong magic, a group or all-zero MAC, a prefix outside /8../30, an address
 * that is its subnet's network, gateway or broadcast address, or a gateway outside the subnet.
 */
export function decodeLease(b: Uint8Array): PortLease | string {
  if (b.length !== LEASE_BYTES || MAGIC.some((m, i) => b[i] !== m) || b[AT.reserved] !== 0) return 'not a port lease';
  const mac = b.slice(AT.mac, AT.mac + 6);
  if (((mac[0] ?? 0) & 1) === 1 || mac.every((x) => x === 0)) return 'its MAC is not a unicast address';
  const prefix = b[AT.prefix] ?? 0;
  if (prefix < 8 || prefix > 30) return `its prefix /${prefix} is not from /8 to /30`;
  const ip = u32(b, AT.ip), gateway = u32(b, AT.gateway), dns = u32(b, AT.dns);
  const size = 2 ** (32 - prefix);
  const network = ip - (ip % size);
  if (ip === network || ip === network + size - 1 || ip === gateway) return 'its address is not a host address of its subnet';
  if (gateway - (gateway % size) !== network) return 'its gateway is outside its subnet';
  return { mac, ip, prefix, gateway, dns };
}
