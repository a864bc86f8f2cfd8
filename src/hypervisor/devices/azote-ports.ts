// Azote's own ports (guest/ABI.md): from the guest, the exit status of its work and a boot marker; to the guest, the
// host's request that it shut down, which its init polls, and the run request its init reads when it continues a
// snapshot (the length still to read on one port, the bytes one by one on the next, taken with `rep insb`).
import { AzoteError } from '../../base/errors.js';
import { encodeBytes, parseState } from '../../base/state-record.js';

export const EXIT_STATUS_PORT = 0x510;
export const BOOT_MARKER_PORT = 0x511;
export const SHUTDOWN_REQUEST_PORT = 0x512;
/** Read 4 bytes wide: its own 4-byte slot, so the guest's I/O permission covers exactly its bytes. */
export const RUN_REQUEST_LENGTH_PORT = 0x514;
export const RUN_REQUEST_DATA_PORT = 0x518;
/**
 * Boot marker values: init started; init waits for its run request (where a snapshot is taken); init took its run
 * request (a VM continued from a snapshot runs again).
 */
export const MARKER_STARTED = 1, MARKER_WAITING_FOR_REQUEST = 2, MARKER_RUNNING = 3;
/** The largest run request (guest/init/init.c reads no more). */
export const MAX_RUN_REQUEST = 65536;
/** How long the host waits for a guest asked to shut down before it stops the VM hard. */
export const GUEST_SHUTDOWN_GRACE_MS = 30_000;
/** The ports from EXIT_STATUS_PORT on. */
export const AZOTE_PORT_COUNT = 9;

export const AZOTE_PORTS_STATE_KIND = 'azote-ports', AZOTE_PORTS_STATE_VERSION = 1;

/** The part of a run request the guest has not read yet, if any. */
export interface AzotePortsState {
  readonly kind: typeof AZOTE_PORTS_STATE_KIND;
  readonly version: typeof AZOTE_PORTS_STATE_VERSION;
  readonly runRequest: string;
}

export class AzotePorts {
  private runRequest: Uint8Array = new Uint8Array(0);
  private runRequestRead = 0;

  constructor(
    private readonly exitStatus: (status: number) => void,
    private readonly marker: (value: number) => void,
    private readonly shutdownRequested: () => boolean,
  ) {}

  /** Gives the guest its run request; one it has not finished reading is replaced. */
  giveRunRequest(bytes: Uint8Array): void {
    if (bytes.length > MAX_RUN_REQUEST) {
      throw new AzoteError('RunRequestTooLarge', `the run request is ${bytes.length} bytes, more than the ${MAX_RUN_REQUEST} the guest reads`,
        'pass a shorter command or environment');
    }
    this.runRequest = bytes.slice();
    this.runRequestRead = 0;
  }

  read(port: number): number {
    switch (port) {
      case SHUTDOWN_REQUEST_PORT: return this.shutdownRequested() ? 1 : 0;
      case RUN_REQUEST_LENGTH_PORT: return this.runRequest.length - this.runRequestRead;
      case RUN_REQUEST_DATA_PORT: {
        const b = this.runRequest[this.runRequestRead];
        if (b === undefined) return 0xffffffff;
        this.runRequestRead++;
        return b;
      }
      default: return 0xffffffff;
    }
  }

  write(port: number, value: number): void {
    if (port === EXIT_STATUS_PORT) this.exitStatus(value & 0xff);
    else if (port === BOOT_MARKER_PORT) this.marker(value & 0xff);
  }

  saveState(): AzotePortsState {
    return { kind: AZOTE_PORTS_STATE_KIND, version: AZOTE_PORTS_STATE_VERSION, runRequest: encodeBytes(this.runRequest.subarray(this.runRequestRead)) };
  }

  /** Takes a saved record (BadSnapshotState, and nothing changed, for one this version did not write). */
  restoreState(record: unknown): void {
    const pending = parseState('Azote ports', record, AZOTE_PORTS_STATE_KIND, AZOTE_PORTS_STATE_VERSION,
      (r) => r.bytes('runRequest', { max: MAX_RUN_REQUEST }));
    this.runRequest = pending;
    this.runRequestRead = 0;
  }
}
