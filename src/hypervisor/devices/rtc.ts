// The CMOS real-time clock at ports 0x70 (index) and 0x71 (data): the host's UTC time in BCD, 24-hour mode,
// never "update in progress", and status D saying the clock is valid. Other CMOS bytes are plain storage.
// Its saved state (RtcState) is the index and the storage; the time always comes from the host's clock.
import { encodeBytes, parseState } from '../../base/state-record.js';

export const RTC_INDEX_PORT = 0x70;
export const RTC_DATA_PORT = 0x71;

const SECONDS = 0x00, MINUTES = 0x02, HOURS = 0x04, WEEKDAY = 0x06, DAY = 0x07, MONTH = 0x08, YEAR = 0x09;
const STATUS_A = 0x0a, STATUS_B = 0x0b, STATUS_C = 0x0c, STATUS_D = 0x0d, CENTURY = 0x32;

export const RTC_STATE_KIND = 'cmos-rtc', RTC_STATE_VERSION = 1;
const CMOS_BYTES = 128;

export interface RtcState {
  readonly kind: typeof RTC_STATE_KIND;
  readonly version: typeof RTC_STATE_VERSION;
  readonly index: number;
  /** The 128 bytes of CMOS, base64; those up to status D are the clock's and always zero. */
  readonly ram: string;
}

function bcd(v: number): number {
  return ((Math.floor(v / 10) % 10) << 4) | (v % 10);
}

export class CmosRtc {
  private index = 0;
  private readonly ram = new Uint8Array(CMOS_BYTES);

  constructor(private readonly now: () => Date = () => new Date()) {}

  read(port: number): number {
    if (port === RTC_INDEX_PORT) return this.index;
    const t = this.now();
    switch (this.index) {
      case SECONDS: return bcd(t.getUTCSeconds());
      case MINUTES: return bcd(t.getUTCMinutes());
      case HOURS: return bcd(t.getUTCHours());
      case WEEKDAY: return bcd(t.getUTCDay() + 1);
      case DAY: return bcd(t.getUTCDate());
      case MONTH: return bcd(t.getUTCMonth() + 1);
      case YEAR: return bcd(t.getUTCFullYear() % 100);
      case CENTURY: return bcd(Math.floor(t.getUTCFullYear() / 100));
      case STATUS_A: return 0x26; // 32.768 kHz time base, 1024 Hz rate, update not in progress
      case STATUS_B: return 0x02; // 24-hour mode, BCD, no interrupts enabled
      case STATUS_C: return 0x00;
      case STATUS_D: return 0x80; // valid RAM and time
      default: return this.ram[this.index] ?? 0;
    }
  }

  write(port: number, value: number): void {
    if (port === RTC_INDEX_PORT) {
      this.index = value & 0x7f; // bit 7 masks NMIs on real hardware
      return;
    }
    if (this.index > STATUS_D) this.ram[this.index] = value & 0xff;
  }

  saveState(): RtcState {
    return { kind: RTC_STATE_KIND, version: RTC_STATE_VERSION, index: this.index, ram: encodeBytes(this.ram) };
  }

  /** Takes the state of a saved record; BadSnapshotState, with nothing changed, for one this version did not write. */
  restoreState(record: unknown): void {
    const s = parseState('CMOS clock', record, RTC_STATE_KIND, RTC_STATE_VERSION, (r) => {
      const state = { index: r.int('index', 0, CMOS_BYTES - 1), ram: r.bytes('ram', { exact: CMOS_BYTES }) };
      if (state.ram.subarray(0, STATUS_D + 1).some((b) => b !== 0)) r.fail('ram holds bytes in the clock\'s registers (0 to 13)');
      return state;
    });
    this.index = s.index;
    this.ram.set(s.ram);
  }
}
