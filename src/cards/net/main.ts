// The network card's process entry, as the controller starts it from its verified bundle, in its jail, with its
// listening socket (named PATH) and nothing else of the host (no uplink: `azote card net --uplink` by hand has one):
//   main.js --socket PATH --listen-fd N --subnet CIDR
import { createLogger } from '../../base/log.js';
import { errorMessage } from '../../base/errors.js';
import { parseSubnet } from '../../virtio/net-addressing.js';
import { cardArgs, listenFds, lockDown, sayReady } from '../main-args.js';
import { NET_CARD_SECCOMP } from './seccomp-profile.js';
import { serveNetCard } from './card.js';

const log = createLogger('card-net');
try {
  const args = cardArgs(process.argv.slice(2), ['socket', 'listen-fd', 'subnet']);
  const [listenFd, ...more] = listenFds(args);
  lockDown(NET_CARD_SECCOMP.process);
  if (more.length > 0) throw new Error('a network card takes one --listen-fd');
  const socket = args.get('socket')?.[0];
  const subnet = parseSubnet(args.get('subnet')?.[0] ?? '');
  if (!socket || !subnet) throw new Error('--socket PATH and --subnet A.B.C.D/P are required');
  serveNetCard({ socket, subnet, listenFd, ready: sayReady }, log);
} catch (e) {
  log.error('the network card cannot start', { why: errorMessage(e) });
  process.exit(1);
}
