// Just enough of the i8042 keyboard controller for a guest to reset the machine: writing 0xfe (pulse the reset
// line) to the command port stops the VM. Linux's `reboot=k` restarts this way.
import { parseState } from '../../base/state-record.js';

export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;
const CMD_RESET = 0xfe;

export const I8042_STATE_KIND = 'i8042', I8042_STATE_VERSION = 1;

/** Nothing it holds changes, but a snapshot records that the device exists and which version saved it. */
export interface I8042State {
  readonly kind: typeof I8042_STATE_KIND;
  readonly version: typeof I8042_STATE_VERSION;
}

export class I8042 {
  constructor(private readonly reset: () => void) {}

  /** Status: output buffer empty, input buffer empty, so a guest waiting to send a command proceeds. */
  read(_port: number): number {
    return 0;
  }

  write(port: number, value: number): void {
    if (port === I8042_COMMAND_PORT && (value & 0xff) === CMD_RESET) this.reset();
  }

  saveState(): I8042State {
    return { kind: I8042_STATE_KIND, version: I8042_STATE_VERSION };
  }

  /** Checks a saved record (BadSnapshotState for one this version did not write); there is nothing to take from it. */
  restoreState(record: unknown): void {
    parseState('keyboard controller (i8042)', record, I8042_STATE_KIND, I8042_STATE_VERSION, () => undefined);
  }
}
