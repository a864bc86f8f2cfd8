// A 16550A UART (COM1). Output leaves through `output`; the transmitter is always ready, and raises the THR-empty
// interrupt when enabled. Input from the host waits in a host-side queue and enters the 16-byte receive FIFO only
// while the guest's driver has the receive interrupt on: Linux's 8250 driver resets the FIFOs when it starts and
// stops the port, which would otherwise throw away what a script piped in early. When the driver turns the receiver
// off, bytes it has not read go back to the front of the host queue.
// Interrupts are edges on IRQ 4: `interrupt` is called whenever a new enabled condition arises.
// Its saved state (UartState) holds every register, the FIFO and the host input still queued: bytes a user piped in
// survive a snapshot.
import { encodeBytes, parseState } from '../../base/state-record.js';
import { AzoteError } from '../../base/errors.js';

export const COM1_BASE = 0x3f8;
export const COM1_IRQ = 4;

// Register offsets from the base port.
const RBR_THR_DLL = 0, IER_DLM = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

const IER_RDI = 0x01, IER_THRI = 0x02, IER_RLSI = 0x04, IER_MSI = 0x08;
const IIR_NONE = 0x01, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_FIFO_ENABLED = 0xc0;
const LCR_DLAB = 0x80;
const LSR_DR = 0x01, LSR_THRE = 0x20, LSR_TEMT = 0x40;
const MCR_LOOP = 0x10;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_DCD = 0x80;

/** The receive FIFO of a 16550A. */
export const UART_RX_FIFO_SIZE = 16;
/** The most queued host input a saved state holds; the hypervisor pauses its input source far below this. */
export const UART_MAX_SAVED_INPUT = 16 * 1024 * 1024;

export const UART_STATE_KIND = 'uart16550', UART_STATE_VERSION = 1;

export interface UartState {
  readonly kind: typeof UART_STATE_KIND;
  readonly version: typeof UART_STATE_VERSION;
  readonly ier: number;
  readonly lcr: number;
  readonly mcr: number;
  readonly scr: number;
  readonly dll: number;
  readonly dlm: number;
  /** The last FIFO control byte written (bit 0: FIFOs enabled, as IIR reports). */
  readonly fcr: number;
  /** A THR-empty interrupt the guest has not acknowledged by reading IIR. */
  readonly thrEmptyPending: boolean;
  /** The receive FIFO, base64. */
  readonly rx: string;
  /** Host input not in the FIFO yet, base64. */
  readonly hostInput: string;
}

/**
 * Bytes in arrival order, kept as the chunks they came in: taking a few from the front costs the same however much
 * a pipe has queued behind them (an array's splice(0, n) would move all of it every time).
 */
class ByteQueue {
  private readonly chunks: Uint8Array[] = [];
  private offset = 0; // bytes of chunks[0] already taken
  length = 0;

  append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes.slice());
    this.length += bytes.length;
  }

  prepend(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const first = this.chunks[0];
    if (first && this.offset > 0) this.chunks[0] = first.subarray(this.offset);
    this.offset = 0;
    this.chunks.unshift(bytes);
    this.length += bytes.length;
  }

  /** Everything queued, oldest first, without taking it. */
  contents(): Uint8Array {
    const out = new Uint8Array(this.length);
    let filled = 0;
    this.chunks.forEach((c, i) => {
      const part = i === 0 ? c.subarray(this.offset) : c;
      out.set(part, filled);
      filled += part.length;
    });
    return out;
  }

  clear(): void {
    this.chunks.length = 0;
    this.offset = 0;
    this.length = 0;
  }

  /** Removes and returns up to `n` bytes from the front. */
  take(n: number): Uint8Array {
    const out = new Uint8Array(Math.min(n, this.length));
    let filled = 0;
    while (filled < out.length) {
      const first = this.chunks[0];
      if (!first) break;
      const part = first.subarray(this.offset, this.offset + out.length - filled);
      out.set(part, filled);
      filled += part.length;
      this.offset += part.length;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.length -= filled;
    return out;
  }
}

export class Uart16550 {
  private ier = 0;
  private lcr = 0x03;
  private mcr = 0x08;
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private fcr = 0;
  private thrEmptyPending = false;
  /** The receive FIFO: what the guest can read now. */
  private readonly rx: number[] = [];
  /** Host input not in the FIFO yet, oldest first. */
  private readonly hostQueue = new ByteQueue();

  /** `inputDrained` is called when the guest has taken everything the host queued. */
  constructor(
    private readonly output: (bytes: Uint8Array) => void,
    private readonly interrupt: () => void,
    private readonly inputDrained: () => void = () => undefined,
  ) {}

  /** Queues host bytes for the guest; returns how many wait on the host side (not yet in the FIFO). */
  enqueueInput(bytes: Uint8Array): number {
    this.hostQueue.append(bytes);
    this.fill();
    return this.hostQueue.length;
  }

  /** Bytes the guest has not read yet, in the FIFO and in the host queue. */
  inputPending(): number {
    return this.rx.length + this.hostQueue.length;
  }

  /** Moves host input into the FIFO while the receiver is on; a FIFO that stops being empty raises the interrupt. */
  private fill(): void {
    if (!(this.ier & IER_RDI) || this.hostQueue.length === 0) return;
    const wasEmpty = this.rx.length === 0;
    for (const b of this.hostQueue.take(UART_RX_FIFO_SIZE - this.rx.length)) this.rx.push(b);
    if (this.hostQueue.length === 0) this.inputDrained();
    if (wasEmpty && this.rx.length > 0) this.interrupt();
  }

  read(offset: number): number {
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) return this.dll;
        {
          const byte = this.rx.shift() ?? 0;
          this.fill();
          return byte;
        }
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR: {
        const fifo = this.fcr & 1 ? IIR_FIFO_ENABLED : 0;
        if ((this.ier & IER_RDI) && this.rx.length > 0) return IIR_RDI | fifo;
        if ((this.ier & IER_THRI) && this.thrEmptyPending) {
          // Reading IIR while it reports THR empty acknowledges that interrupt.
          this.thrEmptyPending = false;
          return IIR_THRI | fifo;
        }
        return IIR_NONE | fifo;
      }
      case LCR: return this.lcr;
      case MCR: return this.mcr;
      case LSR: return LSR_THRE | LSR_TEMT | (this.rx.length > 0 ? LSR_DR : 0);
      case MSR:
        if (this.mcr & MCR_LOOP) {
          // Loopback: outputs OUT2, OUT1, RTS, DTR appear as DCD, RI, CTS, DSR.
          return ((this.mcr & 0x08) << 4) | ((this.mcr & 0x04) << 4) | ((this.mcr & 0x02) << 3) | ((this.mcr & 0x01) << 5);
        }
        return MSR_DCD | MSR_DSR | MSR_CTS;
      case SCR: return this.scr;
      default: return 0xff;
    }
  }

  write(offset: number, value: number): void {
    value &= 0xff;
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) { this.dll = value; return; }
        if (this.mcr & MCR_LOOP) {
          if (this.rx.length < UART_RX_FIFO_SIZE) this.rx.push(value);
          if (this.rx.length === 1 && (this.ier & IER_RDI)) this.interrupt();
        } else {
          this.output(Uint8Array.of(value));
        }
        this.thrEmptyPending = true;
        if (this.ier & IER_THRI) this.interrupt();
        return;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) { this.dlm = value; return; }
        {
          const before = this.ier;
          this.ier = value & (IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
          // Enabling THRI while the transmitter is empty raises the interrupt at once, as real 16550s do.
          if ((this.ier & IER_THRI) && !(before & IER_THRI)) { this.thrEmptyPending = true; this.interrupt(); }
          if ((this.ier & IER_RDI) && !(before & IER_RDI)) {
            if (this.rx.length > 0) this.interrupt();
            this.fill();
          } else if (!(this.ier & IER_RDI) && (before & IER_RDI)) {
            // The driver stops receiving (port shutdown): unread bytes wait for the next reader, not for a FIFO reset.
            this.hostQueue.prepend(Uint8Array.from(this.rx.splice(0)));
          }
        }
        return;
      case IIR_FCR:
        this.fcr = value;
        if (value & 0x02) this.rx.length = 0; // only what the FIFO holds: the driver asked to discard it
        return;
      case LCR: this.lcr = value; return;
      case MCR: this.mcr = value & 0x1f; return;
      case SCR: this.scr = value; return;
      default: return;
    }
  }

  saveState(): UartState {
    if (this.hostQueue.length > UART_MAX_SAVED_INPUT) {
      throw new AzoteError('SerialInputTooLarge', `${this.hostQueue.length} bytes of console input wait for the guest, more than a saved state holds (${UART_MAX_SAVED_INPUT})`,
        'let the guest read its console input before saving it');
    }
    return {
      kind: UART_STATE_KIND, version: UART_STATE_VERSION, ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr,
      dll: this.dll, dlm: this.dlm, fcr: this.fcr, thrEmptyPending: this.thrEmptyPending,
      rx: encodeBytes(Uint8Array.from(this.rx)), hostInput: encodeBytes(this.hostQueue.contents()),
    };
  }

  /**
   * Takes the state of a saved record; BadSnapshotState, with nothing changed, for one this version did not write.
   * Raises no interrupt: whether the guest's IRQ was pending is the interrupt controller's saved state.
   */
  restoreState(record: unknown): void {
    const s = parseState('serial port (COM1)', record, UART_STATE_KIND, UART_STATE_VERSION, (r) => ({
      ier: r.int('ier', 0, IER_RDI | IER_THRI | IER_RLSI | IER_MSI), lcr: r.int('lcr', 0, 0xff), mcr: r.int('mcr', 0, 0x1f),
      scr: r.int('scr', 0, 0xff), dll: r.int('dll', 0, 0xff), dlm: r.int('dlm', 0, 0xff), fcr: r.int('fcr', 0, 0xff),
      thrEmptyPending: r.bool('thrEmptyPending'), rx: r.bytes('rx', { max: UART_RX_FIFO_SIZE }),
      hostInput: r.bytes('hostInput', { max: UART_MAX_SAVED_INPUT }),
    }));
    ({ ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, dll: this.dll, dlm: this.dlm, fcr: this.fcr } = s);
    this.thrEmptyPending = s.thrEmptyPending;
    this.rx.splice(0, this.rx.length, ...s.rx);
    this.hostQueue.clear();
    this.hostQueue.append(s.hostInput);
  }
}
