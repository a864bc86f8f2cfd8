// Where Azote keeps what it builds and downloads: AZOTE_CACHE_DIR, else $XDG_CACHE_HOME/azote, else ~/.cache/azote.
import { homedir } from 'node:os';
import path from 'node:path';

export function cacheDir(): string {
  const own = process.env['AZOTE_CACHE_DIR'];
  if (own) return path.resolve(own);
  const xdg = process.env['XDG_CACHE_HOME'];
  return path.join(xdg ? path.resolve(xdg) : path.join(homedir(), '.cache'), 'azote');
}
