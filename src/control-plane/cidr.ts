// IPv4 CIDR blocks as EC2 checks them: parsing (a network address and a prefix, nothing else), containment,
// overlap, and the addresses a subnet gives to interfaces (AWS keeps the first four and the last for itself).

export interface Cidr {
  /** The network address, as an unsigned 32-bit number. */
  readonly network: number;
  readonly prefix: number;
}

/** Addresses of a subnet that AWS reserves: the network, the router, DNS, one for future use, and the broadcast. */
export const RESERVED_LOW = 4;
export const RESERVED_HIGH = 1;

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** A dotted-quad address as a number, or undefined (no leading zeros beyond a lone 0, each part up to 255). */
export function parseIp(s: string): number | undefined {
  const m = DOTTED.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1, 5);
  if (parts.some((p) => p.length > 1 && p.startsWith('0'))) return undefined;
  const octets = parts.map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((a, o) => a * 256 + o, 0);
}

export function ipString(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff].join('.');
}

/** Parses "A.B.C.D/P": undefined unless it is a network address (no host bits set) with a prefix of 0 to 32. */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(s.slice(0, slash));
  const p = s.slice(slash + 1);
  if (ip === undefined || !/^(\d|[12]\d|3[0-2])$/.test(p)) return undefined;
  const prefix = Number(p);
  if (ip % size({ network: 0, prefix }) !== 0) return undefined;
  return { network: ip, prefix };
}

export const cidrString = (c: Cidr): string => `${ipString(c.network)}/${c.prefix}`;

/** How many addresses the block holds. */
export const size = (c: Cidr): number => 2 ** (32 - c.prefix);

/** Whether `inner` lies wholly inside `outer`. */
export function contains(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && inner.network >= outer.network && inner.network + size(inner) <= outer.network + size(outer);
}

/** Whether the two blocks share an address (CIDR blocks either nest or are apart). */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.network < b.network + size(b) && b.network < a.network + size(a);
}

/** The first and last address a subnet gives to interfaces. */
export function usableRange(c: Cidr): { first: number; last: number } {
  return { first: c.network + RESERVED_LOW, last: c.network + size(c) - 1 - RESERVED_HIGH };
}

/** How many addresses a subnet gives to interfaces. */
export const usableCount = (c: Cidr): number => Math.max(0, size(c) - RESERVED_LOW - RESERVED_HIGH);

/** The lowest usable address of `c` not in `taken`, or undefined when every one is taken. */
export function firstFree(c: Cidr, taken: ReadonlySet<number>): number | undefined {
  const { first, last } = usableRange(c);
  for (let ip = first; ip <= last; ip++) if (!taken.has(ip)) return ip;
  return undefined;
}
