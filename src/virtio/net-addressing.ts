// How an Azote network tells a guest its IPv4 address: through the MAC it assigns. A network card gives each
// attachment the MAC 02:PP:AA:BB:CC:DD, where 02 marks a locally administered unicast address, PP is the subnet's
// prefix length and AA.BB.CC.DD is the attachment's address; the subnet's first address is its gateway. A frontend
// reads the MAC from the device's configuration space and tells the guest's init its address (azote.net=).
// Docker builds MACs from addresses the same way (02:42 + IPv4).

export interface Ipv4Subnet {
  /** The network address, as a 32-bit number. */
  readonly network: number;
  readonly prefix: number;
}

export interface GuestAddress {
  /** The address as a 32-bit number. */
  readonly address: number;
  readonly ip: string;
  readonly prefix: number;
  readonly gateway: string;
}

/** Subnets a card may serve: room for a gateway and at least one guest. */
export const MIN_PREFIX = 8, MAX_PREFIX = 30;

export function ipToString(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff].join('.');
}

export function ipBytes(ip: number): number[] {
  return [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff];
}

export function maskBytes(prefix: number): number[] {
  return ipBytes(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
}

/** Parses "A.B.C.D/P"; undefined unless it is a network address with a prefix from MIN_PREFIX to MAX_PREFIX. */
export function parseSubnet(cidr: string): Ipv4Subnet | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix < MIN_PREFIX || prefix > MAX_PREFIX) return undefined;
  const ip = octets.reduce((a, o) => a * 256 + o, 0);
  const hostBits = 2 ** (32 - prefix);
  if (ip % hostBits !== 0) return undefined;
  return { network: ip, prefix };
}

/** The gateway (first address) and the guests' addresses (the rest, up to the broadcast address) of a subnet. */
export function subnetRange(s: Ipv4Subnet): { gateway: number; first: number; last: number } {
  const size = 2 ** (32 - s.prefix);
  return { gateway: s.network + 1, first: s.network + 2, last: s.network + size - 2 };
}

export function macForAddress(ip: number, prefix: number): Uint8Array {
  return Uint8Array.of(0x02, prefix, ...ipBytes(ip));
}

/** The address a MAC assigned by an Azote network stands for; undefined for any other MAC. */
export function addressFromMac(mac: Uint8Array): GuestAddress | undefined {
  if (mac.length < 6 || mac[0] !== 0x02) return undefined;
  const prefix = mac[1] ?? 0;
  if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) return undefined;
  const ip = ((mac[2] ?? 0) * 2 ** 24) + ((mac[3] ?? 0) << 16) + ((mac[4] ?? 0) << 8) + (mac[5] ?? 0);
  const s = { network: ip - (ip % 2 ** (32 - prefix)), prefix };
  const { gateway, first, last } = subnetRange(s);
  if (ip < first || ip > last) return undefined;
  return { address: ip, ip: ipToString(ip), prefix, gateway: ipToString(gateway) };
}

export function formatMac(mac: Uint8Array): string {
  return [...mac.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
