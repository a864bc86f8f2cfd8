// The network card's process entry, as the controller starts it from its verified bundle, in its jail, with its
// listening socket (named PATH), its VPC's CIDR, and, if the VPC has an uplink to the host, the TAP the controller
// made for it (the card opens nothing itself); every connection begins with its port's lease (port-lease.ts):
//   main.js --socket PATH --listen-fd N --subnet CIDR [--uplink-fd M]
import { createLogger } from '../../base/log.js';
import { errorMessage } from '../../base/errors.js';
import { parseSubnet } from '../../virtio/net-addressing.js';
import { cardArgs, inheritedFd, listenFds, lockDown, sayReady } from '../main-args.js';
import { NET_CARD_SECCOMP } from './seccomp-profile.js';
import { serveNetCard } from './card.js';

const log = createLogger('card-net');
try {
  const args = cardArgs(process.argv.slice(2), ['socket', 'listen-fd', 'subnet', 'uplink-fd']);
  const [listenFd, ...more] = listenFds(args);
  lockDown(NET_CARD_SECCOMP.process);
  if (more.length > 0) throw new Error('a network card takes one --listen-fd');
  const socket = args.get('socket')?.[0];
  const subnet = parseSubnet(args.get('subnet')?.[0] ?? '');
  if (!socket || !subnet) throw new Error('--socket PATH and --subnet A.B.C.D/P are required');
  const uplink = args.get('uplink-fd')?.[0];
  const uplinkFd = uplink === undefined ? undefined : inheritedFd(uplink, '--uplink-fd');
  serveNetCard({ socket, subnet, listenFd, uplinkFd, addressing: 'leased', ready: sayReady }, log);
} catch (e) {
  log.error('the network card cannot start', { why: errorMessage(e) });
  process.exit(1);
}
