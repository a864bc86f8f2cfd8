// A 16550A UART (COM1). Output leaves through `output`; input is queued by the host and raises the
// receive interrupt; the transmitter is always ready, and raises the THR-empty interrupt when enabled.
// Interrupts are edges on IRQ 4: `interrupt` is called whenever a new enabled condition arises.

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

/** The receive buffer the host may fill ahead of the guest reading it. */
export const UART_INPUT_CAPACITY = 4096;

export class Uart16550 {
  private ier = 0;
  private lcr = 0x03;
  private mcr = 0x08;
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private fcr = 0;
  private thrEmptyPending = false;
  private readonly input: number[] = [];

  constructor(
    private readonly output: (bytes: Uint8Array) => void,
    private readonly interrupt: () => void,
  ) {}

  /** Bytes queued for the guest; returns how many were accepted. */
  enqueueInput(bytes: Uint8Array): number {
    const room = UART_INPUT_CAPACITY - this.input.length;
    const n = Math.min(room, bytes.length);
    const wasEmpty = this.input.length === 0;
    for (let i = 0; i < n; i++) this.input.push(bytes[i] ?? 0);
    if (n > 0 && wasEmpty && (this.ier & IER_RDI)) this.interrupt();
    return n;
  }

  inputPending(): number {
    return this.input.length;
  }

  read(offset: number): number {
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) return this.dll;
        return this.input.length > 0 ? (this.input.shift() ?? 0) : 0;
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR: {
        const fifo = this.fcr & 1 ? IIR_FIFO_ENABLED : 0;
        if ((this.ier & IER_RDI) && this.input.length > 0) return IIR_RDI | fifo;
        if ((this.ier & IER_THRI) && this.thrEmptyPending) {
          // Reading IIR while it reports THR empty acknowledges that interrupt.
          this.thrEmptyPending = false;
          return IIR_THRI | fifo;
        }
        return IIR_NONE | fifo;
      }
      case LCR: return this.lcr;
      case MCR: return this.mcr;
      case LSR: return LSR_THRE | LSR_TEMT | (this.input.length > 0 ? LSR_DR : 0);
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
          this.enqueueInput(Uint8Array.of(value));
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
          if ((this.ier & IER_RDI) && !(before & IER_RDI) && this.input.length > 0) this.interrupt();
        }
        return;
      case IIR_FCR:
        this.fcr = value;
        if (value & 0x02) this.input.length = 0;
        return;
      case LCR: this.lcr = value; return;
      case MCR: this.mcr = value & 0x1f; return;
      case SCR: this.scr = value; return;
      default: return;
    }
  }
}
