// `azote card block`: a block card in this process, until it is killed (SIGTERM).
import type { Logger } from '../base/log.js';
import { serveBlockCard } from '../cards/block/card.js';
import { parseDisk } from './run.js';

export function runBlockCard(socket: string, volume: string, log: Logger): never {
  const v = parseDisk(volume);
  return serveBlockCard({ socket, volume: v.path, readOnly: v.readOnly }, log);
}
