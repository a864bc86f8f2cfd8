// The CMOS real-time clock at ports 0x70 (index) and 0x71 (data): the host's UTC time in BCD, 24-hour mode,
// never "update in progress", and status D saying the clock is valid. Other CMOS bytes are plain storage.

export const RTC_INDEX_PORT = 0x70;
export const RTC_DATA_PORT = 0x71;

const SECONDS = 0x00, MINUTES = 0x02, HOURS = 0x04, WEEKDAY = 0x06, DAY = 0x07, MONTH = 0x08, YEAR = 0x09;
const STATUS_A = 0x0a, STATUS_B = 0x0b, STATUS_C = 0x0c, STATUS_D = 0x0d, CENTURY = 0x32;

function bcd(v: number): number {
  return ((Math.floor(v / 10) % 10) << 4) | (v % 10);
}

export class CmosRtc {
  private index = 0;
  private readonly ram = new Uint8Array(128);

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
}
