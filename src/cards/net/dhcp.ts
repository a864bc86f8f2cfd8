// The network card's DHCP server (RFC 2131, options from RFC 2132): a guest's unmodified client (busybox udhcpc,
// dhclient, systemd-networkd) gets the address the card assigned its port, with the subnet's mask, its gateway as
// router, the DNS server a VPC names (its base address + 2, as EC2's), a host name ip-A-B-C-D and a lease. The address
// is fixed per port: a DISCOVER is offered it, a REQUEST for it is acknowledged, a REQUEST for any other is refused
// (NAK), RELEASE and DECLINE change nothing. Every field read is bounds-checked against the frame (a guest chooses
// its length and contents); what is not a well-formed client message gets no answer.
// Layouts: BOOTP's fixed header (RFC 2131 section 2, 236 bytes, then the magic cookie and options); IPv4 (RFC 791)
// and UDP (RFC 768) headers as the card writes them (no IPv4 options; UDP checksum 0, which IPv4 allows).

import { ipBytes, maskBytes } from '../../virtio/net-addressing.js';

export const DHCP_SERVER_PORT = 67, DHCP_CLIENT_PORT = 68;
export const BOOTP = {
  op: 0, htype: 1, hlen: 2, hops: 3, xid: 4, secs: 8, flags: 10, ciaddr: 12, yiaddr: 16, siaddr: 20, giaddr: 24,
  chaddr: 28, sname: 44, file: 108, cookie: 236, options: 240,
} as const;
export const MAGIC_COOKIE = 0x63825363;
const BOOTREQUEST = 1, BOOTREPLY = 2, HTYPE_ETHERNET = 1;
const FLAG_BROADCAST = 0x8000;

/** DHCP message types (option 53). */
export const DHCP = { DISCOVER: 1, OFFER: 2, REQUEST: 3, DECLINE: 4, ACK: 5, NAK: 6, RELEASE: 7, INFORM: 8 } as const;
/** The options the server reads or writes (RFC 2132). */
export const OPTION = {
  PAD: 0, SUBNET_MASK: 1, ROUTER: 3, DNS: 6, HOST_NAME: 12, REQUESTED_IP: 50, LEASE_TIME: 51, MESSAGE_TYPE: 53,
  SERVER_ID: 54, RENEWAL_TIME: 58, REBINDING_TIME: 59, END: 255,
} as const;

const ETH_HEADER = 14, IPV4_HEADER = 20, UDP_HEADER = 8, UDP = 17;
const TYPE_IPV4 = 0x0800;
/** The lease a client gets: an hour, renewed at half and rebound at seven eighths, as RFC 2131 suggests. */
export const LEASE_SECONDS = 3600;

export interface DhcpRequest {
  readonly type: number;
  readonly xid: number;
  readonly flags: number;
  readonly ciaddr: number;
  readonly chaddr: Uint8Array;
  readonly requestedIp: number | undefined;
  readonly serverId: number | undefined;
}

/** What a port's client is told. */
export interface DhcpLease {
  readonly ip: number;
  readonly prefix: number;
  readonly gateway: number;
  readonly gatewayMac: Uint8Array;
  readonly dns: number;
}

const u16 = (f: Uint8Array, at: number): number => ((f[at] ?? 0) << 8) | (f[at + 1] ?? 0);
const u32 = (f: Uint8Array, at: number): number => u16(f, at) * 0x10000 + u16(f, at + 2);

/** Whether an Ethernet frame is (or claims to be) a UDP datagram to the DHCP server's port: the card's to answer. */
export function isToDhcpServer(f: Uint8Array): boolean {
  if (f.length < ETH_HEADER + IPV4_HEADER + UDP_HEADER || u16(f, 12) !== TYPE_IPV4 || f[ETH_HEADER + 9] !== UDP) return false;
  const header = ((f[ETH_HEADER] ?? 0) & 0x0f) * 4;
  return f.length >= ETH_HEADER + header + UDP_HEADER && u16(f, ETH_HEADER + header + 2) === DHCP_SERVER_PORT;
}

/** Whether a frame is a UDP datagram from the DHCP server's port: a guest playing DHCP server for the others. */
export function isFromDhcpServer(f: Uint8Array): boolean {
  if (f.length < ETH_HEADER + IPV4_HEADER + UDP_HEADER || u16(f, 12) !== TYPE_IPV4 || f[ETH_HEADER + 9] !== UDP) return false;
  const header = ((f[ETH_HEADER] ?? 0) & 0x0f) * 4;
  return f.length >= ETH_HEADER + header + UDP_HEADER && u16(f, ETH_HEADER + header) === DHCP_SERVER_PORT;
}

/** The client message in an Ethernet frame, or undefined for anything that is not a well-formed one. */
export function parseDhcpRequest(f: Uint8Array): DhcpRequest | undefined {
  if (!isToDhcpServer(f)) return undefined;
  const ip = ETH_HEADER;
  const header = ((f[ip] ?? 0) & 0x0f) * 4;
  const total = u16(f, ip + 2);
  if ((f[ip] ?? 0) >> 4 !== 4 || header < IPV4_HEADER || total < header + UDP_HEADER || ip + total > f.length) return undefined;
  if ((u16(f, ip + 6) & 0x3fff) !== 0) return undefined; // a fragment
  const udp = ip + header;
  const udpLength = u16(f, udp + 4);
  if (udpLength < UDP_HEADER || udp + udpLength > ip + total) return undefined;
  const b = udp + UDP_HEADER;
  const end = udp + udpLength;
  if (end < b + BOOTP.options || f[b + BOOTP.op] !== BOOTREQUEST || f[b + BOOTP.htype] !== HTYPE_ETHERNET || f[b + BOOTP.hlen] !== 6) return undefined;
  if (u32(f, b + BOOTP.cookie) !== MAGIC_COOKIE) return undefined;
  const options = readOptions(f, b + BOOTP.options, end);
  if (!options) return undefined;
  const type = options.get(OPTION.MESSAGE_TYPE);
  if (type?.length !== 1) return undefined;
  const address = (o: Uint8Array | undefined): number | undefined => (o?.length === 4 ? u32(o, 0) : undefined);
  return {
    type: type[0] ?? 0, xid: u32(f, b + BOOTP.xid), flags: u16(f, b + BOOTP.flags), ciaddr: u32(f, b + BOOTP.ciaddr),
    chaddr: f.slice(b + BOOTP.chaddr, b + BOOTP.chaddr + 6),
    requestedIp: address(options.get(OPTION.REQUESTED_IP)), serverId: address(options.get(OPTION.SERVER_ID)),
  };
}

/** The options from `at` to `end` by code (the first of a repeated code), or undefined if one runs past the end. */
function readOptions(f: Uint8Array, at: number, end: number): Map<number, Uint8Array> | undefined {
  const options = new Map<number, Uint8Array>();
  let i = at;
  while (i < end) {
    const code = f[i] ?? OPTION.END;
    if (code === OPTION.END) return options;
    if (code === OPTION.PAD) {
      i++;
      continue;
    }
    if (i + 2 > end) return undefined;
    const length = f[i + 1] ?? 0;
    if (i + 2 + length > end) return undefined;
    if (!options.has(code)) options.set(code, f.subarray(i + 2, i + 2 + length));
    i += 2 + length;
  }
  return undefined; // no END option
}

/** What the server answers a port's client: the message type of the reply, or undefined for none. */
export function replyType(req: DhcpRequest, lease: DhcpLease, portMac: Uint8Array): number | undefined {
  // A client speaks for its port's MAC only (the switch checked the frame's source; BOOTP's chaddr must agree).
  if (!req.chaddr.every((b, i) => b === portMac[i])) return undefined;
  switch (req.type) {
    case DHCP.DISCOVER:
      return DHCP.OFFER;
    case DHCP.REQUEST: {
      if (req.serverId !== undefined && req.serverId !== lease.gateway) return undefined; // it chose another server
      const wanted = req.requestedIp ?? req.ciaddr;
      return wanted === lease.ip ? DHCP.ACK : DHCP.NAK;
    }
    case DHCP.INFORM:
      return DHCP.ACK;
    default:
      return undefined; // RELEASE, DECLINE: the port's address stays the port's
  }
}

/** The host name EC2 gives an address: ip-172-31-5-9. */
export function hostNameOf(ip: number): string {
  return `ip-${ipBytes(ip).join('-')}`;
}

/** The Ethernet frame of the server's reply of `type` to `req`. */
export function buildDhcpReply(req: DhcpRequest, type: number, lease: DhcpLease): Uint8Array {
  const nak = type === DHCP.NAK;
  const inform = req.type === DHCP.INFORM;
  const options: Array<[number, number[]]> = [[OPTION.MESSAGE_TYPE, [type]], [OPTION.SERVER_ID, ipBytes(lease.gateway)]];
  if (!nak) {
    if (!inform) {
      options.push([OPTION.LEASE_TIME, be32(LEASE_SECONDS)], [OPTION.RENEWAL_TIME, be32(LEASE_SECONDS / 2)],
        [OPTION.REBINDING_TIME, be32((LEASE_SECONDS * 7) / 8)]);
    }
    options.push([OPTION.SUBNET_MASK, maskBytes(lease.prefix)], [OPTION.ROUTER, ipBytes(lease.gateway)], [OPTION.DNS, ipBytes(lease.dns)],
      [OPTION.HOST_NAME, [...Buffer.from(hostNameOf(lease.ip), 'ascii')]]);
  }
  const optionBytes = [...options.flatMap(([code, data]) => [code, data.length, ...data]), OPTION.END];
  const bootpLength = BOOTP.options + optionBytes.length;
  const udpLength = UDP_HEADER + bootpLength;
  const total = IPV4_HEADER + udpLength;
  const frame = new Uint8Array(ETH_HEADER + total);
  // RFC 2131 4.1: to a client that asked for broadcast, or after a NAK, broadcast; else unicast to the address.
  const broadcast = nak || (req.flags & FLAG_BROADCAST) !== 0;
  const to = inform ? req.ciaddr : nak ? 0xffffffff : broadcast ? 0xffffffff : lease.ip;
  frame.set(broadcast ? [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] : req.chaddr, 0);
  frame.set(lease.gatewayMac.subarray(0, 6), 6);
  frame.set([TYPE_IPV4 >> 8, TYPE_IPV4 & 0xff], 12);
  const ip = ETH_HEADER;
  frame.set([0x45, 0, total >> 8, total & 0xff, 0, 0, 0x40, 0, 64, UDP, 0, 0, ...ipBytes(lease.gateway), ...ipBytes(to)], ip);
  const sum = checksum(frame.subarray(ip, ip + IPV4_HEADER));
  frame.set([sum >> 8, sum & 0xff], ip + 10);
  const udp = ip + IPV4_HEADER;
  frame.set([DHCP_SERVER_PORT >> 8, DHCP_SERVER_PORT & 0xff, DHCP_CLIENT_PORT >> 8, DHCP_CLIENT_PORT & 0xff, udpLength >> 8, udpLength & 0xff, 0, 0], udp);
  const b = udp + UDP_HEADER;
  frame[b + BOOTP.op] = BOOTREPLY;
  frame[b + BOOTP.htype] = HTYPE_ETHERNET;
  frame[b + BOOTP.hlen] = 6;
  frame.set(be32(req.xid), b + BOOTP.xid);
  frame.set([req.flags >> 8, req.flags & 0xff], b + BOOTP.flags);
  if (inform) frame.set(ipBytes(req.ciaddr), b + BOOTP.ciaddr);
  if (!nak && !inform) frame.set(ipBytes(lease.ip), b + BOOTP.yiaddr);
  frame.set(req.chaddr, b + BOOTP.chaddr);
  frame.set(be32(MAGIC_COOKIE), b + BOOTP.cookie);
  frame.set(optionBytes, b + BOOTP.options);
  return frame;
}

function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** The Internet checksum (RFC 1071) of a header. */
export function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += ((b[i] ?? 0) << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The card's answer to a DHCP frame from a port with `portMac` and `lease`, or undefined for none. */
export function answerDhcp(frame: Uint8Array, portMac: Uint8Array, lease: DhcpLease): Uint8Array | undefined {
  const req = parseDhcpRequest(frame);
  if (!req) return undefined;
  const type = replyType(req, lease, portMac);
  return type === undefined ? undefined : buildDhcpReply(req, type, lease);
}
