// Azote's own ports (guest/ABI.md): from the guest, the exit status of its work and a boot marker; to the guest, the
// host's request that it shut down, which its init polls.
import { parseState } from '../../base/state-record.js';

export const EXIT_STATUS_PORT = 0x510;
export const BOOT_MARKER_PORT = 0x511;
export const SHUTDOWN_REQUEST_PORT = 0x512;
/** How long the host waits for a guest asked to shut down before it stops the VM hard. */
export const GUEST_SHUTDOWN_GRACE_MS = 30_000;
/** The ports from EXIT_STATUS_PORT on. */
export const AZOTE_PORT_COUNT = 3;

export const AZOTE_PORTS_STATE_KIND = 'azote-ports', AZOTE_PORTS_STATE_VERSION = 1;

/** Nothing it holds changes, but a snapshot records that the device exists and which version saved it. */
export interface AzotePortsState {
  readonly kind: typeof AZOTE_PORTS_STATE_KIND;
  readonly version: typeof AZOTE_PORTS_STATE_VERSION;
}

export class AzotePorts {
  constructor(
    private readonly exitStatus: (status: number) => void,
    private readonly marker: (value: number) => void,
    private readonly shutdownRequested: () => boolean,
  ) {}

  read(port: number): number {
    if (port === SHUTDOWN_REQUEST_PORT) return this.shutdownRequested() ? 1 : 0;
    return 0xffffffff;
  }

  write(port: number, value: number): void {
    if (port === EXIT_STATUS_PORT) this.exitStatus(value & 0xff);
    else if (port === BOOT_MARKER_PORT) this.marker(value & 0xff);
  }

  saveState(): AzotePortsState {
    return { kind: AZOTE_PORTS_STATE_KIND, version: AZOTE_PORTS_STATE_VERSION };
  }

  /** Checks a saved record (BadSnapshotState for one this version did not write); there is nothing to take from it. */
  restoreState(record: unknown): void {
    parseState('Azote ports', record, AZOTE_PORTS_STATE_KIND, AZOTE_PORTS_STATE_VERSION, () => undefined);
  }
}
