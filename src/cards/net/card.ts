// The network card: a process that connects VMs to a virtual switch over vhost-user. Every connection to its socket
// is a new attachment (a switch port) with the next free address of the card's subnet, told to the frontend as the
// MAC in the virtio-net configuration space (virtio/net-addressing.ts). A frontend may claim a particular free
// address by writing that MAC with SET_CONFIG before its rings run (a hypervisor reconnecting after a card restart
// keeps its guest's address so). With an uplink, the card opens (or creates) that TAP device, gives it the subnet's
// gateway address, and switches frames between it and the VMs. The card sleeps in poll() on its socket, the uplink,
// the frontends' connections and the rings' kick fds.
import type { Logger } from '../../base/log.js';
import * as libc from '../../sys/libc.js';
import { openTap, setHardwareAddress, setInterfaceAddress } from '../../sys/tap.js';
import { listenAtPath } from '../../sys/unix-listen.js';
import { BackendSession } from '../../vhost-user/backend.js';
import { MAX_FRAME, NetDataPath, NetModel, RX_QUEUE } from '../../virtio/net.js';
import {
  addressFromMac, formatMac, ipBytes, ipToString, macForAddress, maskBytes, subnetRange, type Ipv4Subnet,
} from '../../virtio/net-addressing.js';
import { VmPort } from './port.js';
import { VirtualSwitch, type SwitchPort } from './switch.js';

export interface NetCardOptions {
  /** Its socket's path; the card listens there itself unless it is handed the listening socket (`listenFd`). */
  readonly socket: string;
  readonly listenFd?: number | undefined;
  /** Called once it takes connections. */
  readonly ready?: (() => void) | undefined;
  readonly subnet: Ipv4Subnet;
  /** A TAP device to the host. */
  readonly uplink?: string | undefined;
}

/** Frames read from the uplink per wake-up, so that the host cannot starve the VMs' rings. */
const UPLINK_BATCH = 64;

interface Attachment {
  readonly port: VmPort;
  readonly model: NetModel;
  readonly session: BackendSession;
  ip: number;
}

interface Uplink {
  readonly fd: number;
  readonly name: string;
  readonly port: SwitchPort;
  readonly counters: { toHost: number; toHostDropped: number; fromHost: number };
}

function openUplink(name: string, subnet: Ipv4Subnet, log: Logger): Uplink {
  const tap = openTap(name);
  const { gateway } = subnetRange(subnet);
  // The gateway's MAC follows from its address, so that guests' ARP entries stay right across the card's restarts.
  setHardwareAddress(tap.name, macForAddress(gateway, subnet.prefix));
  setInterfaceAddress(tap.name, ipBytes(gateway), maskBytes(subnet.prefix));
  const counters = { toHost: 0, toHostDropped: 0, fromHost: 0 };
  const port: SwitchPort = {
    name: `uplink ${tap.name}`,
    mac: undefined,
    deliver(frame) {
      if (libc.writeSome(tap.fd, frame) === frame.length) counters.toHost++;
      else counters.toHostDropped++; // the host's queue is full: dropped, as on a congested link
    },
  };
  log.info('network card uplink', { tap: tap.name, gateway: ipToString(gateway), prefix: subnet.prefix });
  return { fd: tap.fd, name: tap.name, port, counters };
}

/** Serves until the process is killed (SIGTERM): this thread sleeps in poll(), with no JavaScript signal handler. */
export function serveNetCard(o: NetCardOptions, log: Logger): never {
  const range = subnetRange(o.subnet);
  // The DNS server named is the gateway (the host's side of the uplink, where there is one): EC2 names its VPC's
  // base address + 2, which this subnet gives to a guest until VPC subnets, which reserve it, reach the card.
  const sw = new VirtualSwitch(Date.now, {
    prefix: o.subnet.prefix, gateway: range.gateway, gatewayMac: macForAddress(range.gateway, o.subnet.prefix), dns: range.gateway,
  });
  const listenFd = o.listenFd ?? listenAtPath(o.socket, 'the card socket').fd;
  const uplink = o.uplink === undefined ? undefined : openUplink(o.uplink, o.subnet, log);
  if (uplink) sw.attach(uplink.port);
  log.info('network card serving', {
    socket: o.socket, subnet: `${ipToString(o.subnet.network)}/${o.subnet.prefix}`, gateway: ipToString(range.gateway),
  });
  o.ready?.();
  const attachments = new Set<Attachment>();
  /** Ports that got frames since their receive ring was last served. */
  const waiting = new Set<VmPort>();
  let attached = 0;

  const taken = (ip: number, except?: Attachment): boolean => [...attachments].some((a) => a !== except && a.ip === ip);
  const freeAddress = (): number | undefined => {
    for (let ip = range.first; ip <= range.last; ip++) if (!taken(ip)) return ip;
    return undefined;
  };

  const attach = (fd: number): void => {
    const ip = freeAddress();
    if (ip === undefined) {
      log.warn('an attachment was refused: every address of the subnet is in use', { socket: o.socket });
      libc.close(fd);
      return;
    }
    const mac = macForAddress(ip, o.subnet.prefix);
    const model = new NetModel(mac);
    const port = new VmPort(`port${++attached}`, mac, (from, frame) => sw.forward(from, frame), (p) => waiting.add(p));
    const attachment: Attachment = {
      port, model, ip,
      session: new BackendSession(fd, {
        model,
        dataPath: (mem, queues) => new NetDataPath(mem, queues, port),
        setConfig: (offset, data) => claim(attachment, offset, data),
      }, log),
    };
    attachments.add(attachment);
    sw.attach(port);
    log.info('network port attached', { port: port.name, mac: formatMac(mac), ip: ipToString(ip) });
  };

  /** A frontend asks for the address its MAC stands for (its guest had it before the card restarted). */
  const claim = (a: Attachment, offset: number, data: Uint8Array): void => {
    if (offset !== 0 || data.length < 6) throw new Error('only the MAC (offset 0, 6 bytes) may be written');
    const wanted = addressFromMac(data);
    const ip = wanted?.address ?? -1;
    if (!wanted || wanted.prefix !== o.subnet.prefix || ip < range.first || ip > range.last) {
      throw new Error(`MAC ${formatMac(data)} is not an address of this card's subnet`);
    }
    if (taken(ip, a)) throw new Error(`${wanted.ip} is attached already`);
    sw.detach(a.port);
    a.port.mac = data.slice(0, 6);
    a.model.setMac(a.port.mac);
    a.ip = ip;
    sw.attach(a.port);
    log.info('network port claimed its address', { port: a.port.name, mac: formatMac(data), ip: wanted.ip });
  };

  const detach = (a: Attachment): void => {
    attachments.delete(a);
    waiting.delete(a.port);
    const dropped = sw.detach(a.port);
    log.info('network port detached', { port: a.port.name, ip: ipToString(a.ip), ...a.port.counters, dropped, switch: sw.counters });
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
    const reads = [listenFd, ...(uplink ? [uplink.fd] : []), ...live.flatMap((a) => a.session.watched())];
    const writes = live.flatMap((a) => [...a.session.watchedWritable()]);
    // Ports still holding frames after their ring was served, and rings left with work at their budget, get another
    // turn once every ready fd had its own: each port in turn, none for ever.
    const ready = libc.pollFds(reads, writes, waiting.size > 0 || live.some((a) => a.session.hasBacklog) ? 0 : -1);
    for (const fd of ready.write) for (const a of live) if (a.session.watchedWritable().includes(fd)) a.session.writable(fd);
    for (const fd of ready.read) {
      if (fd === listenFd) {
        for (let c = libc.acceptNonBlocking(fd); c >= 0; c = libc.acceptNonBlocking(fd)) attach(c);
      } else if (fd === uplink?.fd) {
        fromHost();
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
