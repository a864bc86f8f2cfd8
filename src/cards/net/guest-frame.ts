// What a VM may put on the network: ARP and IPv4 that speak for its own address only. Every field read is
// bounds-checked against the frame (a guest chooses its length and contents). Allowed from a port whose MAC is M and
// address is A:
//  - ARP (Ethernet/IPv4 only) whose sender is M and A; gratuitous ARP for A is such a frame. An ARP probe (RFC 5227:
//    a request with sender address 0.0.0.0, as DHCP clients send before taking an address) claims nothing and is
//    allowed too.
//  - IPv4 whose source is A, or DHCP discovery from 0.0.0.0 (an unfragmented UDP datagram from port 68 to 67), which
//    a guest sends before it has an address (for the DHCP of the VPC work to come).
// 802.1Q/802.1ad tagged frames and other protocols (IPv6 among them: the network assigns no IPv6 address, so there
// would be nothing to check its sources against) are dropped.

export type GuestFrameVerdict = 'ok' | 'spoofedArp' | 'spoofedIp' | 'tagged' | 'otherProtocol' | 'malformed';

const ETHERTYPE = 12, L3 = 14;
const TYPE_IPV4 = 0x0800, TYPE_ARP = 0x0806;
const VLAN_TYPES = new Set([0x8100, 0x88a8, 0x9100]);
/** An Ethernet/IPv4 ARP packet: hardware type, protocol type, their lengths, operation, sender and target. */
const ARP_LENGTH = 28;
const IPV4_MIN_HEADER = 20, UDP_HEADER = 8, UDP = 17;
const DHCP_CLIENT = 68, DHCP_SERVER = 67;
const ARP_REQUEST = 1;

const u16 = (f: Uint8Array, at: number): number => ((f[at] ?? 0) << 8) | (f[at + 1] ?? 0);
const u32 = (f: Uint8Array, at: number): number => u16(f, at) * 0x10000 + u16(f, at + 2);
const sameBytes = (f: Uint8Array, at: number, want: Uint8Array): boolean => want.every((b, i) => f[at + i] === b);

function checkArp(f: Uint8Array, mac: Uint8Array, ip: number): GuestFrameVerdict {
  if (f.length < L3 + ARP_LENGTH) return 'malformed';
  if (u16(f, L3) !== 1 || u16(f, L3 + 2) !== TYPE_IPV4 || f[L3 + 4] !== 6 || f[L3 + 5] !== 4) return 'malformed';
  const senderMac = L3 + 8, senderIp = L3 + 14;
  if (!sameBytes(f, senderMac, mac.subarray(0, 6))) return 'spoofedArp';
  const sender = u32(f, senderIp);
  if (sender === ip || (sender === 0 && u16(f, L3 + 6) === ARP_REQUEST)) return 'ok';
  return 'spoofedArp';
}

function checkIpv4(f: Uint8Array, ip: number): GuestFrameVerdict {
  if (f.length < L3 + IPV4_MIN_HEADER) return 'malformed';
  const versionIhl = f[L3] ?? 0;
  const header = (versionIhl & 0x0f) * 4;
  const total = u16(f, L3 + 2);
  if (versionIhl >> 4 !== 4 || header < IPV4_MIN_HEADER || total < header || L3 + total > f.length) return 'malformed';
  const source = u32(f, L3 + 12);
  if (source === ip) return 'ok';
  if (source !== 0) return 'spoofedIp';
  // From 0.0.0.0 only DHCP discovery: the ports are only in the first fragment, so fragments are refused.
  const unfragmented = (u16(f, L3 + 6) & 0x3fff) === 0;
  const udp = L3 + header;
  const dhcp = unfragmented && f[L3 + 9] === UDP && total >= header + UDP_HEADER
    && u16(f, udp) === DHCP_CLIENT && u16(f, udp + 2) === DHCP_SERVER;
  return dhcp ? 'ok' : 'spoofedIp';
}

/** Whether a frame from a VM port with `mac` and address `ip` (its Ethernet source already checked) may go on. */
export function checkGuestFrame(f: Uint8Array, mac: Uint8Array, ip: number): GuestFrameVerdict {
  if (f.length < L3) return 'malformed';
  const type = u16(f, ETHERTYPE);
  if (type === TYPE_ARP) return checkArp(f, mac, ip);
  if (type === TYPE_IPV4) return checkIpv4(f, ip);
  return VLAN_TYPES.has(type) ? 'tagged' : 'otherProtocol';
}
