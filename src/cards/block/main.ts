// The block card's process entry, as the controller starts it from its verified bundle, in its jail, with a listening
// socket per volume (named PATH:NAME) and the volumes' files as descriptors:
//   main.js --socket PATH --listen-fd N [--listen-fd ...] --volume NAME=fd:N[,ro] [--volume ...]
import { createLogger } from '../../base/log.js';
import { errorMessage } from '../../base/errors.js';
import { cardArgs, listenFds, lockDown, sayReady } from '../main-args.js';
import { BLOCK_CARD_SECCOMP } from './seccomp-profile.js';
import { serveBlockCard } from './card.js';
import { parseVolumes } from './volume-spec.js';

const log = createLogger('card-block');
try {
  const args = cardArgs(process.argv.slice(2), ['socket', 'listen-fd', 'volume']);
  const inherited = listenFds(args);
  lockDown(BLOCK_CARD_SECCOMP.process);
  const socket = args.get('socket')?.[0];
  if (!socket) throw new Error('--socket is required');
  serveBlockCard({ socket, volumes: parseVolumes(args.get('volume') ?? [], true), listenFds: inherited, ready: sayReady }, log);
} catch (e) {
  log.error('the block card cannot start', { why: errorMessage(e) });
  process.exit(1);
}
