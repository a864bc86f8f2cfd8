// The card answers a VM's ARP request for its subnet's gateway itself (RFC 826), as a VPC's router does: the gateway
// is the card's, whether or not a host uplink is attached, so a guest can always resolve it (its default route and
// DHCP server) and the request is never flooded to the other ports. Every field read is bounds-checked (the guest
// chose the frame); the switch has already checked that the sender is the port's own MAC and address (or 0.0.0.0).

const ETH_HEADER = 14, ARP_LENGTH = 28, TYPE_ARP = 0x0806, TYPE_IPV4 = 0x0800;
const REQUEST = 1, REPLY = 2;

const u16 = (f: Uint8Array, at: number): number => ((f[at] ?? 0) << 8) | (f[at + 1] ?? 0);
const u32 = (f: Uint8Array, at: number): number => u16(f, at) * 0x10000 + u16(f, at + 2);

/** Whether the frame is an Ethernet/IPv4 ARP request for `target`. */
export function isArpRequestFor(f: Uint8Array, target: number): boolean {
  const a = ETH_HEADER;
  return f.length >= a + ARP_LENGTH && u16(f, 12) === TYPE_ARP && u16(f, a) === 1 && u16(f, a + 2) === TYPE_IPV4
    && f[a + 4] === 6 && f[a + 5] === 4 && u16(f, a + 6) === REQUEST && u32(f, a + 24) === target;
}

/** The reply to an ARP request (isArpRequestFor) saying that `ip` is at `mac`, addressed to the requester. */
export function arpReply(request: Uint8Array, ip: number, mac: Uint8Array): Uint8Array {
  const a = ETH_HEADER;
  const f = new Uint8Array(ETH_HEADER + ARP_LENGTH);
  const senderMac = request.subarray(a + 8, a + 14), senderIp = request.subarray(a + 14, a + 18);
  f.set(senderMac, 0);
  f.set(mac.subarray(0, 6), 6);
  f.set([TYPE_ARP >> 8, TYPE_ARP & 0xff, 0, 1, TYPE_IPV4 >> 8, TYPE_IPV4 & 0xff, 6, 4, 0, REPLY], 12);
  f.set(mac.subarray(0, 6), a + 8);
  f.set([(ip >>> 24) & 0xff, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff], a + 14);
  f.set(senderMac, a + 18);
  f.set(senderIp, a + 24);
  return f;
}
