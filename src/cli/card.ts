// `azote card block`: a block card in this process, until it is killed (SIGTERM).
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { serveBlockCard, type VolumeSpec } from '../cards/block/card.js';
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
