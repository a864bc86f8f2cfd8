// Azote's own guest-to-host signals (guest/ABI.md): the exit status of the guest's work, and a boot marker.

export const EXIT_STATUS_PORT = 0x510;
export const BOOT_MARKER_PORT = 0x511;

export class AzotePorts {
  constructor(
    private readonly exitStatus: (status: number) => void,
    private readonly marker: (value: number) => void,
  ) {}

  read(_port: number): number {
    return 0xffffffff;
  }

  write(port: number, value: number): void {
    if (port === EXIT_STATUS_PORT) this.exitStatus(value & 0xff);
    else if (port === BOOT_MARKER_PORT) this.marker(value & 0xff);
  }
}
