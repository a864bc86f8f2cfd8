// `azote card block` and `azote card net`: a card in this process, until it is killed (SIGTERM).
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { serveBlockCard } from '../cards/block/card.js';
import { parseVolumes } from '../cards/block/volume-spec.js';
import { serveNetCard } from '../cards/net/card.js';
import { MAX_PREFIX, MIN_PREFIX, parseSubnet } from '../virtio/net-addressing.js';

export function runBlockCard(socket: string, volumes: string[], log: Logger): never {
  return serveBlockCard({ socket, volumes: parseVolumes(volumes) }, log);
}

export function runNetCard(socket: string, subnet: string, uplink: string | undefined, log: Logger): never {
  const parsed = parseSubnet(subnet);
  if (!parsed) {
    throw new AzoteError('BadSubnet', `--subnet ${subnet} is not a network address with a prefix from /${MIN_PREFIX} to /${MAX_PREFIX}`,
      'write it as A.B.C.D/P with the host bits zero, e.g. --subnet 10.77.0.0/24');
  }
  return serveNetCard({ socket, subnet: parsed, uplink, addressing: 'free' }, log);
}
