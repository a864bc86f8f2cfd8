// Just enough of the i8042 keyboard controller for a guest to reset the machine: writing 0xfe (pulse the reset
// line) to the command port stops the VM. Linux's `reboot=k` restarts this way.

export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;
const CMD_RESET = 0xfe;

export class I8042 {
  constructor(private readonly reset: () => void) {}

  /** Status: output buffer empty, input buffer empty, so a guest waiting to send a command proceeds. */
  read(_port: number): number {
    return 0;
  }

  write(port: number, value: number): void {
    if (port === I8042_COMMAND_PORT && (value & 0xff) === CMD_RESET) this.reset();
  }
}
