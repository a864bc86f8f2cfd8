// A TAP device for one VM's virtio-net: created here (it needs CAP_NET_ADMIN), given a /30 whose first address is
// the host's end and whose second is the guest's, and brought up. The device lives as long as its fd: it goes
// away with the VM (no TUNSETPERSIST). Addresses come from 172.29.0.0/16 by the kernel's index in the name aztN.
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';
import * as libc from '../sys/libc.js';

// <linux/if_tun.h>, <net/if.h>, <netinet/in.h>; test/hypervisor/tap.test.ts checks them against the headers.
export const TUNSETIFF = 0x400454ca;
export const IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_UP = 0x1;
export const SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914, SIOCSIFADDR = 0x8916, SIOCSIFNETMASK = 0x891c;
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

const SUBNET_BASE = [172, 29, 0, 0] as const;
const PREFIX = 30;

export interface Tap {
  readonly fd: number;
  readonly name: string;
  readonly hostIp: string;
  readonly guestIp: string;
  readonly prefix: number;
  /** A locally administered unicast MAC for the guest's end. */
  readonly mac: Uint8Array;
}

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

/** The /30 for TAP index `k`: host .1, guest .2 of 172.29.0.0 + 4k. */
export function tapAddresses(k: number): { host: number[]; guest: number[]; mask: number[] } {
  if (!Number.isInteger(k) || k < 0 || k >= 16384) throw new RangeError(`TAP index ${k} is outside 0 to 16383`);
  const base = (SUBNET_BASE[2] << 8) + 4 * k;
  const at = (n: number): number[] => [SUBNET_BASE[0], SUBNET_BASE[1], ((base + n) >> 8) & 0xff, (base + n) & 0xff];
  return { host: at(1), guest: at(2), mask: [255, 255, 255, 252] };
}

export function createTap(): Tap {
  let fd: number;
  try {
    fd = libc.open('/dev/net/tun', libc.O_RDWR | libc.O_NONBLOCK | libc.O_CLOEXEC);
  } catch (e) {
    throw new AzoteError('TapUnavailable', `cannot open /dev/net/tun: ${(e as Error).message}`, 'load the tun module (modprobe tun)');
  }
  try {
    const r = request('azt%d').set('flags', IFF_TAP | IFF_NO_PI);
    try {
      libc.ioctlBuf(fd, TUNSETIFF, r.bytes());
    } catch (e) {
      const perm = e instanceof libc.SysError && e.errno === 1;
      throw new AzoteError('TapCreate', `cannot create a TAP device: ${(e as Error).message}`,
        perm ? 'it needs CAP_NET_ADMIN: run as root, or give node the capability (setcap cap_net_admin+ep $(which node))' : undefined);
    }
    const name = new TextDecoder().decode(r.bytes().subarray(0, IFNAMSIZ)).replace(/\0.*$/s, '');
    const k = Number(/^azt(\d+)$/.exec(name)?.[1] ?? NaN);
    const { host, guest, mask } = tapAddresses(k);
    const s = libc.socket(libc.AF_INET, libc.SOCK_DGRAM);
    try {
      libc.ioctlBuf(s, SIOCSIFADDR, withAddress(name, host));
      libc.ioctlBuf(s, SIOCSIFNETMASK, withAddress(name, mask));
      const flags = request(name);
      libc.ioctlBuf(s, SIOCGIFFLAGS, flags.bytes());
      flags.set('flags', flags.get('flags') | IFF_UP);
      libc.ioctlBuf(s, SIOCSIFFLAGS, flags.bytes());
    } catch (e) {
      throw new AzoteError('TapConfigure', `cannot give TAP ${name} its address: ${(e as Error).message}`, 'run as root (CAP_NET_ADMIN)');
    } finally {
      libc.close(s);
    }
    return {
      fd, name, hostIp: host.join('.'), guestIp: guest.join('.'), prefix: PREFIX,
      mac: Uint8Array.of(0x02, 0x41, 0x5a, (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff),
    };
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}
