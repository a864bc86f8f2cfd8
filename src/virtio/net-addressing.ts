// IPv4 subnets as the network card and the controller use them, and the MACs a network names its addresses with:
// 02:PP:AA:BB:CC:DD, where 02 marks a locally administered unicast address, PP is the subnet's prefix length and
// AA.BB.CC.DD the address (Docker builds MACs from addresses the same way, 02:42 + IPv4). A network's gateway (its
// first address) has such a MAC, which so stays the same across the card's restarts; a card run by hand offers its
// ports such MACs, and a frontend reconnecting after a restart claims its port's address back by writing its MAC.
// Guests never read an address from a MAC: they get it by DHCP.

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

/** Parses "A.B.C.D" into a 32-bit number; undefined for anything else. */
export function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  const octets = m?.slice(1, 5).map(Number);
  if (!octets || octets.some((o) => o > 255)) return undefined;
  return octets.reduce((a, o) => a * 256 + o, 0);
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

/** The MAC of a network's gateway (its first address). */
export function gatewayMac(s: Ipv4Subnet): Uint8Array {
  return macForAddress(subnetRange(s).gateway, s.prefix);
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
