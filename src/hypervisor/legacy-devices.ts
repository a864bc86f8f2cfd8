// The few legacy devices every microVM has, wired onto its bus: COM1, the CMOS RTC, the i8042 reset line and
// Azote's own exit-status, boot-marker and shutdown-request ports (guest/ABI.md). All of them are driven by the guest, so
// test/hypervisor/legacy-devices.test.ts throws arbitrary port traffic at exactly this wiring.
import type { Bus } from './bus.js';
import { AZOTE_PORT_COUNT, AzotePorts, EXIT_STATUS_PORT } from './devices/azote-ports.js';
import { CmosRtc, RTC_INDEX_PORT } from './devices/rtc.js';
import { I8042, I8042_COMMAND_PORT, I8042_DATA_PORT } from './devices/i8042.js';
import { COM1_BASE, Uart16550 } from './devices/uart.js';

export interface LegacyDeviceHooks {
  /** Bytes the guest transmitted on COM1. */
  readonly output: (bytes: Uint8Array) => void;
  /** COM1 raised its interrupt (an edge on IRQ 4). */
  readonly serialInterrupt: () => void;
  /** The guest has taken all host input queued on COM1. */
  readonly serialInputDrained: () => void;
  /** The guest pulsed the i8042 reset line. */
  readonly reset: () => void;
  readonly exitStatus: (status: number) => void;
  readonly marker: (value: number) => void;
  /** Whether the host has asked the guest to shut down. */
  readonly shutdownRequested: () => boolean;
}

/** The models attached, each of which saves and restores its state. */
export interface LegacyDevices {
  /** COM1, which also takes the host's input. */
  readonly uart: Uart16550;
  readonly rtc: CmosRtc;
  readonly i8042: I8042;
  readonly azote: AzotePorts;
}

/** Adds the legacy devices to `bus`; returns them. */
export function attachLegacyDevices(bus: Bus, hooks: LegacyDeviceHooks): LegacyDevices {
  const uart = new Uart16550(hooks.output, hooks.serialInterrupt, hooks.serialInputDrained);
  bus.addPorts('com1', COM1_BASE, 8, { read: (p) => uart.read(p - COM1_BASE), write: (p, _s, v) => uart.write(p - COM1_BASE, v) });
  const rtc = new CmosRtc();
  bus.addPorts('rtc', RTC_INDEX_PORT, 2, { read: (p) => rtc.read(p), write: (p, _s, v) => rtc.write(p, v) });
  const i8042 = new I8042(hooks.reset);
  bus.addPorts('i8042-data', I8042_DATA_PORT, 1, { read: (p) => i8042.read(p), write: (p, _s, v) => i8042.write(p, v) });
  bus.addPorts('i8042-cmd', I8042_COMMAND_PORT, 1, { read: (p) => i8042.read(p), write: (p, _s, v) => i8042.write(p, v) });
  const azote = new AzotePorts(hooks.exitStatus, hooks.marker, hooks.shutdownRequested);
  bus.addPorts('azote', EXIT_STATUS_PORT, AZOTE_PORT_COUNT, { read: (p) => azote.read(p), write: (p, _s, v) => azote.write(p, v) });
  return { uart, rtc, i8042, azote };
}
