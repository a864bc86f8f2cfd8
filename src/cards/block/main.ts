// The block card's process entry, as the controller starts it from its verified bundle:
//   main.js --socket PATH --volume NAME=FILE[,ro] [--volume ...] [--controller PID]
import { createLogger } from '../../base/log.js';
import { errorMessage } from '../../base/errors.js';
import { cardArgs, dieWithController } from '../main-args.js';
import { serveBlockCard } from './card.js';
import { parseVolumes } from './volume-spec.js';

const log = createLogger('card-block');
try {
  const args = cardArgs(process.argv.slice(2), ['socket', 'volume', 'controller']);
  dieWithController(args);
  const socket = args.get('socket')?.[0];
  if (!socket) throw new Error('--socket is required');
  serveBlockCard(socket, parseVolumes(args.get('volume') ?? []), log);
} catch (e) {
  log.error('the block card cannot start', { why: errorMessage(e) });
  process.exit(1);
}
