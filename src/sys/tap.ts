// TAP devices (<linux/if_tun.h>): opening one (which creates it when it does not exist, given CAP_NET_ADMIN) and
// giving an interface an IPv4 address and bringing it up, through the classic socket ioctls.
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';
import * as libc from './libc.js';

// <linux/if_tun.h>, <net/if.h>, <netinet/in.h>; test/virtio/net.test.ts checks them against the headers.
export const TUNSETIFF = 0x400454ca;
export const IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_UP = 0x1;
export const SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914, SIOCSIFADDR = 0x8916, SIOCSIFNETMASK = 0x891c, SIOCSIFHWADDR = 0x8924;
/** <net/if_arp.h>: the hardware type of an Ethernet address. */
export const ARPHRD_ETHER = 1;
export const IFNAMSIZ = 16;

export const ifreq = defineStruct('ifreq', 'struct ifreq', 40, {
  name: { offset: 0, type: { bytes: IFNAMSIZ }, c: 'ifr_name' },
  flags: { offset: 16, type: 'u16', c: 'ifr_flags' },
  addr: { offset: 16, type: { bytes: 16 }, c: 'ifr_addr' },
});

export const sockaddrIn = defineStruct('sockaddr_in', 'struct sockaddr_in', 16, {
  family: { offset: 0, type: 'u16', c: 'sin_family' }, port: { offset: 2, type: 'u16', c: 'sin_port' },
  addr: { offset: 4, type: { bytes: 4 }, c: 'sin_addr' },
});

function request(name: string): StructView<keyof typeof ifreq.fields> {
  const r = StructView.alloc(ifreq);
  r.bytes().set(new TextEncoder().encode(name).subarray(0, IFNAMSIZ - 1), 0);
  return r;
}

function withAddress(name: string, ip: readonly number[]): Uint8Array {
  const r = request(name);
  const sa = new StructView(sockaddrIn, r.bytes(), ifreq.fields.addr.offset).set('family', libc.AF_INET);
  sa.bytes().set(ip, sockaddrIn.fields.addr.offset);
  return r.bytes();
}

/**
 * Opens TAP `name` (non-blocking, frames without packet information), creating it if needed; a name with "%d" gets
 * the kernel's next free index. Returns the fd (the device goes away with it unless it existed before) and the name.
 */
export function openTap(name: string): { fd: number; name: string } {
  if (name.length === 0 || name.length >= IFNAMSIZ) {
    throw new AzoteError('BadTapName', `TAP name ${JSON.stringify(name)} is not 1 to ${IFNAMSIZ - 1} characters`, 'choose a shorter name');
  }
  let fd: number;
  try {
    fd = libc.open('/dev/net/tun', libc.O_RDWR | libc.O_NONBLOCK | libc.O_CLOEXEC);
  } catch (e) {
    throw new AzoteError('TapUnavailable', `cannot open /dev/net/tun: ${(e as Error).message}`, 'load the tun module (modprobe tun)');
  }
  const r = request(name).set('flags', IFF_TAP | IFF_NO_PI);
  try {
    libc.ioctlBuf(fd, TUNSETIFF, r.bytes());
  } catch (e) {
    libc.close(fd);
    const errno = e instanceof libc.SysError ? e.errno : 0;
    throw new AzoteError('TapCreate', `cannot open TAP device ${name}: ${(e as Error).message}`,
      errno === 1 ? 'it needs CAP_NET_ADMIN: run as root, or give node the capability (setcap cap_net_admin+ep $(which node))'
        : errno === 16 ? `another process has ${name} open; choose another name` : undefined);
  }
  return { fd, name: new TextDecoder().decode(r.bytes().subarray(0, IFNAMSIZ)).replace(/\0.*$/s, '') };
}

/** Gives interface `name` the Ethernet address `mac` (a struct sockaddr: family ARPHRD_ETHER, then the bytes). */
export function setHardwareAddress(name: string, mac: Uint8Array): void {
  const r = request(name);
  const at = ifreq.fields.addr.offset;
  new DataView(r.bytes().buffer).setUint16(at, ARPHRD_ETHER, true);
  r.bytes().set(mac.subarray(0, 6), at + 2);
  const s = libc.socket(libc.AF_INET, libc.SOCK_DGRAM);
  try {
    libc.ioctlBuf(s, SIOCSIFHWADDR, r.bytes());
  } catch (e) {
    throw new AzoteError('TapConfigure', `cannot give ${name} its MAC: ${(e as Error).message}`, 'run as root (CAP_NET_ADMIN)');
  } finally {
    libc.close(s);
  }
}

/** Gives interface `name` the IPv4 address `ip` with netmask `mask`, and brings it up. */
export function setInterfaceAddress(name: string, ip: readonly number[], mask: readonly number[]): void {
  const s = libc.socket(libc.AF_INET, libc.SOCK_DGRAM);
  try {
    libc.ioctlBuf(s, SIOCSIFADDR, withAddress(name, ip));
    libc.ioctlBuf(s, SIOCSIFNETMASK, withAddress(name, mask));
    const flags = request(name);
    libc.ioctlBuf(s, SIOCGIFFLAGS, flags.bytes());
    flags.set('flags', flags.get('flags') | IFF_UP);
    libc.ioctlBuf(s, SIOCSIFFLAGS, flags.bytes());
  } catch (e) {
    throw new AzoteError('TapConfigure', `cannot give ${name} the address ${ip.join('.')}: ${(e as Error).message}`, 'run as root (CAP_NET_ADMIN)');
  } finally {
    libc.close(s);
  }
}
