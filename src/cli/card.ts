// `azote card block` and `azote card net`: a card in this process, until it is killed (SIGTERM).
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { serveBlockCard, type VolumeSpec } from '../cards/block/card.js';
import { serveNetCard } from '../cards/net/card.js';
import { MAX_PREFIX, MIN_PREFIX, parseSubnet } from '../virtio/net-addressing.js';
import { parseDisk } from './run.js';

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** NAME=FILE[,ro], or FILE[,ro] (named after the file, without its extension). */
export function parseVolume(spec: string): VolumeSpec {
  const eq = spec.indexOf('=');
  const disk = parseDisk(eq >= 0 ? spec.slice(eq + 1) : spec);
  const name = eq >= 0 ? spec.slice(0, eq) : path.basename(disk.path).replace(/\.[^.]*$/, '');
  if (!VOLUME_NAME.test(name)) {
    throw new AzoteError('BadVolume', `volume name ${JSON.stringify(name)} is not letters, digits, ".", "_" and "-"`,
      'write --volume NAME=FILE, e.g. --volume vol-1=./vol1.img');
  }
  return { name, path: disk.path, readOnly: disk.readOnly };
}

export function runBlockCard(socket: string, volumes: string[], log: Logger): never {
  const specs = volumes.map(parseVolume);
  const names = new Set(specs.map((v) => v.name));
  if (names.size !== specs.length) throw new AzoteError('BadVolume', 'two volumes have the same name', 'name each: --volume NAME=FILE');
  return serveBlockCard(socket, specs, log);
}

export function runNetCard(socket: string, subnet: string, uplink: string | undefined, log: Logger): never {
  const parsed = parseSubnet(subnet);
  if (!parsed) {
    throw new AzoteError('BadSubnet', `--subnet ${subnet} is not a network address with a prefix from /${MIN_PREFIX} to /${MAX_PREFIX}`,
      'write it as A.B.C.D/P with the host bits zero, e.g. --subnet 10.77.0.0/24');
  }
  return serveNetCard({ socket, subnet: parsed, uplink }, log);
}
