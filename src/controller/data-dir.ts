// Where this host keeps its state (the controller's data directory: host keys, jails, instances, the API's store).
// A module of its own: `azote run` needs the path on every run without loading the controller.
import { homedir } from 'node:os';
import path from 'node:path';

export function defaultDataDir(): string {
  return process.env['AZOTE_DATA_DIR'] || path.join(process.env['XDG_DATA_HOME'] || path.join(homedir(), '.local', 'share'), 'azote');
}
