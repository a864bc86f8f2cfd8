// A block card's volume on its command line: NAME=FILE[,ro], or FILE[,ro] (named after the file, without its
// extension); from the controller, NAME=fd:N[,ro], a file it opened and handed over as descriptor N.
import path from 'node:path';
import { AzoteError } from '../../base/errors.js';
import { inheritedFd } from '../main-args.js';
import type { VolumeSpec } from './card.js';

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** `inherited`: FILE may be fd:N (the card's entry, started by the controller; not `azote card` by hand). */
export function parseVolume(spec: string, inherited = false): VolumeSpec {
  const eq = spec.indexOf('=');
  const rest = eq >= 0 ? spec.slice(eq + 1) : spec;
  const readOnly = rest.endsWith(',ro');
  const file = readOnly ? rest.slice(0, -3) : rest;
  if (file === '') throw new AzoteError('BadVolume', `--volume ${spec} names no file`, 'write --volume NAME=FILE[,ro]');
  const name = eq >= 0 ? spec.slice(0, eq) : path.basename(file).replace(/\.[^.]*$/, '');
  if (!VOLUME_NAME.test(name)) {
    throw new AzoteError('BadVolume', `volume name ${JSON.stringify(name)} is not letters, digits, ".", "_" and "-"`,
      'write --volume NAME=FILE, e.g. --volume vol-1=./vol1.img');
  }
  const fd = inherited && file.startsWith('fd:') ? inheritedFd(file.slice(3), `--volume ${name}=`) : undefined;
  // An inherited file is named after its volume in messages.
  return fd !== undefined ? { name, path: name, fd, readOnly } : { name, path: file, readOnly };
}

export function parseVolumes(specs: readonly string[], inherited = false): VolumeSpec[] {
  const volumes = specs.map((s) => parseVolume(s, inherited));
  if (new Set(volumes.map((v) => v.name)).size !== volumes.length) {
    throw new AzoteError('BadVolume', 'two volumes have the same name', 'name each: --volume NAME=FILE');
  }
  return volumes;
}
