// The network card: a process that connects VMs to a virtual switch over vhost-user. Every connection to its socket
// is a switch port with a MAC and an address, which the guest learns by DHCP (dhcp.ts). Run by the controller
// (`leased` addressing), each connection begins with its port's lease (port-lease.ts: MAC, address, subnet, gateway,
// DNS server, as the control plane allocated them in the VPC this card serves); the frontend reads the MAC from the
// virtio-net configuration space and may not change it. Run by hand (`free` addressing), the card gives each
// connection the next free address of its subnet and offers a MAC naming it (virtio/net-addressing.ts); a frontend
// with a MAC of its own (QEMU's -device virtio-net,mac=...) keeps it: the port takes the source of its first frame
// as its MAC. A frontend may claim a particular free address by writing the MAC naming it with SET_CONFIG before its
// rings run (a hypervisor reconnecting after a card restart keeps its guest's address so). With an uplink (a TAP the
// card opens by name, or one the controller made and handed over), the card switches frames between it and the VMs;
// the uplink holds the network's gateway address. The card sleeps in poll() on its socket, the uplink, the
// frontends' connections and the rings' kick fds.
import type { Logger } from '../../base/log.js';
import * as libc from '../../sys/libc.js';
import { openTap, setHardwareAddress, setInterfaceAddress } from '../../sys/tap.js';
import { listenAtPath } from '../../sys/unix-listen.js';
import { BackendSession } from '../../vhost-user/backend.js';
import { MAX_FRAME, NetDataPath, NetModel, RX_QUEUE } from '../../virtio/net.js';
import {
  addressFromMac, formatMac, gatewayMac, ipBytes, ipToString, macForAddress, maskBytes, subnetRange, type Ipv4Subnet,
} from '../../virtio/net-addressing.js';
import type { DhcpLease } from './dhcp.js';
import { decodeLease, LEASE_BYTES, type PortLease } from './port-lease.js';
import { VmPort } from './port.js';
import { VirtualSwitch, type SwitchPort } from './switch.js';

export interface NetCardOptions {
  /** Its socket's path; the card listens there itself unless it is handed the listening socket (`listenFd`). */
  readonly socket: string;
  readonly listenFd?: number | undefined;
  /** Called once it takes connections. */
  readonly ready?: (() => void) | undefined;
  /** The network: every port's address is in it (its first address is the gateway of a card run by hand). */
  readonly subnet: Ipv4Subnet;
  /** Where ports' addresses come from: each connection's first bytes (the controller's), or the card itself. */
  readonly addressing: 'leased' | 'free';
  /** A TAP device to the host, opened and given the gateway's address here. */
  readonly uplink?: string | undefined;
  /** A TAP device to the host that the controller made and addressed. */
  readonly uplinkFd?: number | undefined;
}

/** Frames read from the uplink per wake-up, so that the host cannot starve the VMs' rings. */
const UPLINK_BATCH = 64;

interface Attachment {
  readonly port: VmPort;
  readonly model: NetModel;
  readonly session: BackendSession;
  lease: DhcpLease;
  /** Free addressing: the port takes its first frame's source as its MAC (a frontend with a MAC of its own). */
  adoptsMac: boolean;
}

/** A connection whose lease has not fully arrived yet. */
interface Pending {
  readonly fd: number;
  readonly bytes: Uint8Array;
  got: number;
}

interface Uplink {
  readonly fd: number;
  readonly name: string;
  readonly port: SwitchPort;
  readonly counters: { toHost: number; toHostDropped: number; fromHost: number };
}

function openUplink(o: NetCardOptions, log: Logger): Uplink | undefined {
  let tap: { fd: number; name: string };
  if (o.uplinkFd !== undefined) tap = { fd: o.uplinkFd, name: `fd ${o.uplinkFd}` };
  else if (o.uplink !== undefined) {
    tap = openTap(o.uplink);
    setHardwareAddress(tap.name, gatewayMac(o.subnet));
    setInterfaceAddress(tap.name, ipBytes(subnetRange(o.subnet).gateway), maskBytes(o.subnet.prefix));
  } else return undefined;
  const counters = { toHost: 0, toHostDropped: 0, fromHost: 0 };
  const port: SwitchPort = {
    name: `uplink ${tap.name}`,
    mac: undefined,
    deliver(frame) {
      if (libc.writeSome(tap.fd, frame) === frame.length) counters.toHost++;
      else counters.toHostDropped++; // the host's queue is full: dropped, as on a congested link
    },
  };
  log.info('network card uplink', { tap: tap.name, gateway: ipToString(subnetRange(o.subnet).gateway), prefix: o.subnet.prefix });
  return { fd: tap.fd, name: tap.name, port, counters };
}

/** Serves until the process is killed (SIGTERM): this thread sleeps in poll(), with no JavaScript signal handler. */
export function serveNetCard(o: NetCardOptions, log: Logger): never {
  const range = subnetRange(o.subnet);
  const routerMac = gatewayMac(o.subnet);
  const sw = new VirtualSwitch(Date.now);
  const listenFd = o.listenFd ?? listenAtPath(o.socket, 'the card socket').fd;
  const uplink = openUplink(o, log);
  if (uplink) sw.attach(uplink.port);
  log.info('network card serving', {
    socket: o.socket, subnet: `${ipToString(o.subnet.network)}/${o.subnet.prefix}`, addressing: o.addressing,
  });
  o.ready?.();
  const attachments = new Set<Attachment>();
  const pending = new Set<Pending>();
  /** Ports that got frames since their receive ring was last served. */
  const waiting = new Set<VmPort>();
  let attached = 0;

  const taken = (ip: number, except?: Attachment): boolean => [...attachments].some((a) => a !== except && a.lease.ip === ip);
  const macTaken = (mac: Uint8Array, except?: Attachment): boolean =>
    [...attachments].some((a) => a !== except && a.port.mac.every((b, i) => b === mac[i])) || routerMac.every((b, i) => b === mac[i]);
  const inSubnet = (ip: number): boolean => ip >= o.subnet.network && ip < o.subnet.network + 2 ** (32 - o.subnet.prefix);
  const freeAddress = (): number | undefined => {
    for (let ip = range.first; ip <= range.last; ip++) if (!taken(ip)) return ip;
    return undefined;
  };
  /** A card run by hand is one subnet: its gateway and DNS server are its first address (the uplink's). */
  const freeLease = (ip: number): DhcpLease => ({ ip, prefix: o.subnet.prefix, gateway: range.gateway, gatewayMac: routerMac, dns: range.gateway });

  const attach = (fd: number, lease: DhcpLease, mac: Uint8Array, adoptsMac: boolean): void => {
    const model = new NetModel(mac);
    const port = new VmPort(`port${++attached}`, mac, (from, frame) => {
      if (attachment.adoptsMac) adoptMac(attachment, frame);
      sw.forward(from, frame);
    }, (p) => waiting.add(p));
    const attachment: Attachment = {
      port, model, lease, adoptsMac,
      session: new BackendSession(fd, {
        model,
        dataPath: (mem, queues) => new NetDataPath(mem, queues, port),
        setConfig: (offset, data) => claim(attachment, offset, data),
      }, log),
    };
    attachments.add(attachment);
    sw.attach(port, lease);
    log.info('network port attached', { port: port.name, mac: formatMac(mac), ip: ipToString(lease.ip), gateway: ipToString(lease.gateway) });
  };

  const accept = (fd: number): void => {
    if (o.addressing === 'leased') {
      pending.add({ fd, bytes: new Uint8Array(LEASE_BYTES), got: 0 });
      return;
    }
    const ip = freeAddress();
    if (ip === undefined) {
      log.warn('an attachment was refused: every address of the subnet is in use', { socket: o.socket });
      libc.close(fd);
      return;
    }
    attach(fd, freeLease(ip), macForAddress(ip, o.subnet.prefix), true);
  };

  /** Reads what has come of a connection's lease; attaches it once whole, or closes it if it is none or in use. */
  const readLease = (p: Pending): void => {
    let n: number;
    try {
      n = libc.readSome(p.fd, p.bytes.subarray(p.got));
    } catch {
      n = 0;
    }
    if (n < 0) return;
    p.got += n;
    if (n > 0 && p.got < LEASE_BYTES) return;
    pending.delete(p);
    const lease: PortLease | string = n === 0 ? 'the connection ended before its lease' : decodeLease(p.bytes);
    const refused = typeof lease === 'string' ? lease
      : !inSubnet(lease.ip) ? `${ipToString(lease.ip)} is outside this card's network`
        : taken(lease.ip) ? `${ipToString(lease.ip)} is attached already`
          : macTaken(lease.mac) ? `MAC ${formatMac(lease.mac)} is attached already` : undefined;
    if (refused !== undefined || typeof lease === 'string') {
      log.warn('a connection was refused', { why: refused });
      libc.close(p.fd);
      return;
    }
    attach(p.fd, { ip: lease.ip, prefix: lease.prefix, gateway: lease.gateway, gatewayMac: routerMac, dns: lease.dns }, lease.mac, false);
  };

  const reattach = (a: Attachment, mac: Uint8Array, lease: DhcpLease): void => {
    sw.detach(a.port);
    a.port.mac = mac;
    a.model.setMac(mac);
    a.lease = lease;
    sw.attach(a.port, lease);
  };

  /** Free addressing: a port's first frame names the MAC its frontend uses (its own, or the one offered). */
  const adoptMac = (a: Attachment, frame: Uint8Array): void => {
    a.adoptsMac = false;
    if (frame.length < 14) return;
    const source = frame.slice(6, 12);
    if (((source[0] ?? 0) & 1) === 1 || source.every((b, i) => b === a.port.mac[i]) || macTaken(source, a)) return;
    reattach(a, source, a.lease);
    log.info('network port took its frontend\'s MAC', { port: a.port.name, mac: formatMac(source), ip: ipToString(a.lease.ip) });
  };

  /** A frontend asks for the MAC it had (its guest's, before the card restarted). */
  const claim = (a: Attachment, offset: number, data: Uint8Array): void => {
    if (offset !== 0 || data.length < 6) throw new Error('only the MAC (offset 0, 6 bytes) may be written');
    const mac = data.slice(0, 6);
    if (mac.every((b, i) => b === a.port.mac[i])) return;
    if (o.addressing === 'leased') throw new Error('this port\'s MAC is the one its interface was given: it cannot be changed');
    const wanted = addressFromMac(mac);
    const ip = wanted?.address ?? -1;
    if (!wanted || wanted.prefix !== o.subnet.prefix || ip < range.first || ip > range.last) {
      throw new Error(`MAC ${formatMac(mac)} is not an address of this card's subnet`);
    }
    if (taken(ip, a)) throw new Error(`${wanted.ip} is attached already`);
    reattach(a, mac, freeLease(ip));
    a.adoptsMac = false;
    log.info('network port claimed its address', { port: a.port.name, mac: formatMac(mac), ip: wanted.ip });
  };

  const detach = (a: Attachment): void => {
    attachments.delete(a);
    waiting.delete(a.port);
    const dropped = sw.detach(a.port);
    log.info('network port detached', { port: a.port.name, ip: ipToString(a.lease.ip), ...a.port.counters, dropped, switch: sw.counters });
  };

  const frame = new Uint8Array(MAX_FRAME + 64);
  const fromHost = (): void => {
    if (!uplink) return;
    for (let n = 0; n < UPLINK_BATCH; n++) {
      const got = libc.readSome(uplink.fd, frame);
      if (got <= 0) return;
      uplink.counters.fromHost++;
      sw.forward(uplink.port, frame.subarray(0, got));
    }
  };

  for (;;) {
    const live = [...attachments];
    const leases = [...pending];
    const reads = [listenFd, ...(uplink ? [uplink.fd] : []), ...leases.map((p) => p.fd), ...live.flatMap((a) => a.session.watched())];
    const writes = live.flatMap((a) => [...a.session.watchedWritable()]);
    // Ports still holding frames after their ring was served, and rings left with work at their budget, get another
    // turn once every ready fd had its own: each port in turn, none for ever.
    const ready = libc.pollFds(reads, writes, waiting.size > 0 || live.some((a) => a.session.hasBacklog) ? 0 : -1);
    for (const fd of ready.write) for (const a of live) if (a.session.watchedWritable().includes(fd)) a.session.writable(fd);
    for (const fd of ready.read) {
      if (fd === listenFd) {
        for (let c = libc.acceptNonBlocking(fd); c >= 0; c = libc.acceptNonBlocking(fd)) accept(c);
      } else if (fd === uplink?.fd) {
        fromHost();
      } else if (leases.some((p) => p.fd === fd)) {
        const p = leases.find((x) => x.fd === fd);
        if (p) readLease(p);
      } else {
        const a = live.find((x) => !x.session.closed && x.session.watched().includes(fd));
        a?.session.readable(fd);
        // A receive kick serves a batch; what is left waits for the next turn.
        if (a && a.port.queued > 0) waiting.add(a.port);
      }
    }
    for (const a of live) a.session.serveBacklog();
    for (const a of live) if (a.session.closed) detach(a);
    for (const port of [...waiting]) {
      const a = live.find((x) => x.port === port);
      const before = port.queued;
      a?.session.serveRing(RX_QUEUE);
      // Without progress the guest has no buffers: its next receive kick serves the port.
      if (!a || a.session.closed || port.queued === 0 || port.queued === before) waiting.delete(port);
    }
  }
}
