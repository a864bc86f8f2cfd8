// A TAP device for one VM's virtio-net: created here (it needs CAP_NET_ADMIN), given a /30 whose first address is
// the host's end and whose second is the guest's, and brought up. The device lives as long as its fd: it goes
// away with the VM (no TUNSETPERSIST). Addresses come from 172.29.0.0/16 by the kernel's index in the name aztN.
import * as libc from '../sys/libc.js';
import { openTap, setInterfaceAddress } from '../sys/tap.js';

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

/** The /30 for TAP index `k`: host .1, guest .2 of 172.29.0.0 + 4k. */
export function tapAddresses(k: number): { host: number[]; guest: number[]; mask: number[] } {
  if (!Number.isInteger(k) || k < 0 || k >= 16384) throw new RangeError(`TAP index ${k} is outside 0 to 16383`);
  const base = (SUBNET_BASE[2] << 8) + 4 * k;
  const at = (n: number): number[] => [SUBNET_BASE[0], SUBNET_BASE[1], ((base + n) >> 8) & 0xff, (base + n) & 0xff];
  return { host: at(1), guest: at(2), mask: [255, 255, 255, 252] };
}

export function createTap(): Tap {
  const { fd, name } = openTap('azt%d');
  try {
    const k = Number(/^azt(\d+)$/.exec(name)?.[1] ?? NaN);
    const { host, guest, mask } = tapAddresses(k);
    setInterfaceAddress(name, host, mask);
    return {
      fd, name, hostIp: host.join('.'), guestIp: guest.join('.'), prefix: PREFIX,
      mac: Uint8Array.of(0x02, 0x41, 0x5a, (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff),
    };
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}
