// The network card's process entry, as the controller starts it from its verified bundle:
//   main.js --socket PATH --subnet CIDR [--uplink TAP] [--controller PID]
import { createLogger } from '../../base/log.js';
import { errorMessage } from '../../base/errors.js';
import { parseSubnet } from '../../virtio/net-addressing.js';
import { cardArgs, dieWithController } from '../main-args.js';
import { serveNetCard } from './card.js';

const log = createLogger('card-net');
try {
  const args = cardArgs(process.argv.slice(2), ['socket', 'subnet', 'uplink', 'controller']);
  dieWithController(args);
  const socket = args.get('socket')?.[0];
  const subnet = parseSubnet(args.get('subnet')?.[0] ?? '');
  if (!socket || !subnet) throw new Error('--socket PATH and --subnet A.B.C.D/P are required');
  serveNetCard({ socket, subnet, uplink: args.get('uplink')?.[0] }, log);
} catch (e) {
  log.error('the network card cannot start', { why: errorMessage(e) });
  process.exit(1);
}
